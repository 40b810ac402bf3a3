"""marathon-lb's configuration rules: Marathon's apps in, the edge model and HAProxy out.

:func:`build` reads the ``apps`` list of Marathon's ``GET /v2/apps?embed=apps.tasks`` as
marathon-lb's ``get_apps()`` and ``config()`` do (marathon-lb ``marathon_lb.py``,
``utils.py``, ``config.py``; their tests ``tests/test_marathon_lb.py`` and
``tests/test_zdd.py`` are the oracle of ``tests/unit/edge``) and returns an
:class:`~playground.edge.model.EdgeConfig`. :func:`render_haproxy` renders that model as
marathon-lb's default templates render it, adapted to HAProxy 2.6; :func:`vhost_map` and
:func:`app_map` give the text of ``/_haproxy_getvhostmap`` and ``/_haproxy_getappmap``.

What ``build`` reproduces
-------------------------
* **Groups.** ``HAPROXY_{n}_GROUP`` (per port) wins over ``HAPROXY_GROUP`` (app-wide);
  both are comma-separated lists. A port is served when one of its groups is one of the
  edge's groups (``group`` is a comma-separated list too) or when the edge's groups hold
  ``*`` (which also takes apps without a group). Apps without a group are skipped
  otherwise (marathon-lb's default without ``--group '*'``).
* **Service ports.** ``container.portMappings[].servicePort`` (also under
  ``container.docker``) for ``container`` and ``container/bridge`` networking, else
  ``portDefinitions[].port`` (else the legacy ``ports``); ``HAPROXY_{n}_PORT`` overrides
  it. IP-per-task apps without any service port get one from 10050-10100, derived from
  the app id and task port (marathon-lb's ``ServicePortAssigner`` with its default range).
* **Names.** Backend ``<app id without the leading slash, / as _>_<service port>``;
  server ``<host>_<ip>_<port>`` (``<ip>_<port>`` when host and IP are the same), every
  character outside ``[a-zA-Z0-9-]`` as ``_``; HAProxy server ``id`` from the SHA-256 of
  the name modulo 32767, collisions resolved as ``calculate_server_id`` does.
* **Mode.** ``HAPROXY_{n}_MODE`` if set; else ``http`` when the port's Marathon health
  check has protocol ``HTTP`` (exactly: ``MESOS_HTTP`` does not count) or when a vhost is
  set; else ``tcp``. A health check borrowed through
  ``HAPROXY_{n}_BACKEND_HEALTHCHECK_PORT_INDEX`` with protocol ``HTTP``, ``HTTPS``,
  ``MESOS_HTTP`` or ``MESOS_HTTPS`` forces ``http`` even over the label. The port's
  health check is marathon-lb's ``get_health_check``: the first check with a fixed
  ``port``, or else with ``portIndex`` equal to the port index.
* **Tasks.** Tasks without a host or in a state marathon-lb excludes (staging, starting,
  killing, terminal, ``TASK_UNKNOWN``...) are left out. ``TASK_RUNNING``,
  ``TASK_LOST``, ``TASK_UNREACHABLE`` and tasks without a state are kept. If the app has
  health checks, a task gets traffic only if at least one of its ``healthCheckResults``
  is ``alive`` (marathon-lb's loop sets ``alive`` on any live result); a task without
  results uses the last result seen for it (``health_cache``), else gets none. This is
  marathon-lb run with ``--health-check``: the edge always respects health (DESIGN §4).
  Every kept task is in ``Service.servers``; the ones marathon-lb would leave out have
  ``healthy=False`` and a ``reason``; ``Service.live_servers`` get new traffic. A
  service none of whose servers is healthy (or without tasks) stays in the model, so
  ``playground routes`` shows it; marathon-lb, and :func:`render_haproxy`, leave it out.
* **Addresses.** Networking mode as ``get_app_networking_mode``: ``networks[].mode``,
  else ``container.docker.network`` (``USER`` is IP-per-task, ``BRIDGE`` is bridge),
  else ``ipAddress`` (IP-per-task), else host. Host and bridge: the task's ``host`` and
  its host ports (``tasks[].ports``). IP-per-task (``container``): the first of
  ``ipAddresses`` and the container ports (``ipAddress.discovery.ports``, else
  ``portMappings[].containerPort``). Task ports pair with service ports by index.
* **zdd.** Apps sharing ``HAPROXY_DEPLOYMENT_GROUP`` become one app named after the group
  (``/<group>``) with the labels and ports of the old app (older
  ``HAPROXY_DEPLOYMENT_STARTED_AT``; with ``HAPROXY_DEPLOYMENT_NEW_INSTANCES`` set, the
  later ``versionInfo.lastScalingAt`` is the new one) and the tasks of both. The first
  ``min(old tasks, healthy new tasks, healthy new + old instances - target)`` old tasks
  by task id are ``draining`` (HAProxy ``disabled``); the target is
  ``HAPROXY_DEPLOYMENT_TARGET_INSTANCES`` when ``HAPROXY_DEPLOYMENT_NEW_INSTANCES`` is
  set, else 1. ``Service.deployment`` holds the ``HAPROXY_DEPLOYMENT_*`` values and the
  merged app ids.
* **Weights.** ``HAPROXY_{n}_BACKEND_WEIGHT`` (per port, there is no app-wide form)
  orders the vhost rules, largest first; a port with a path and weight 0 weighs 1.

What ``build`` adds (marathon-lb has no equivalent)
---------------------------------------------------
* **Malformed labels** (a port that is not a port number, a mode other than ``tcp`` or
  ``http``, a balance other than ``roundrobin``, ``leastconn``, ``source``, a weight or
  index that is not an integer, a boolean other than true/t/yes/y/false/f/no/n, an
  empty group, a vhost or bind address with characters that would break the
  configuration, a label for a port the app does not have, an unknown ``HAPROXY_``
  label, an unreadable ``HAPROXY_DEPLOYMENT_*`` value) are skipped, with a
  ``Notice(kind="malformed-label")`` naming the app and the label. marathon-lb passes
  most of them to HAProxy, whose check then fails and the app is dropped (or crashes on
  ``int()``). ``HAPROXY_{n}_VHOST`` on a port whose mode is ``tcp`` is dropped the same
  way (HAProxy refuses an http frontend using a tcp backend).
* **Conflicts.** Two services of this group on the same service port, a service on one of
  the edge's own ports (``reserved_ports``: http, https, stats, app-id), or two services
  claiming the same vhost and path: the first by (app id, port index) keeps the claim;
  the other loses it (the whole service for a port, the vhost for a vhost) and a
  ``Notice(kind="conflict")`` names both. marathon-lb renders both and lets HAProxy
  (``SO_REUSEPORT``, first ``use_backend``) pick one silently.
* **Unsupported labels** (table below) stay in ``Service.labels``, with a
  ``Notice(kind="unsupported-label")``: marathon-lb would change its output for them,
  the edge does not.
* Whitespace around group names and vhosts is ignored (marathon-lb keeps it).

Where ``build`` differs from marathon-lb on purpose
---------------------------------------------------
* A task's ``host`` is not resolved through DNS: the kit's hosts are addresses, a name is
  kept as the server address (marathon-lb uses the resolved IP and, when it differs,
  names the server ``<host>_<ip>_<port>``).
* ``HAPROXY_{n}_BACKEND_HEALTHCHECK_PORT_INDEX``: the check port is the same task's port
  at that index (the task's own port when the index is out of range). marathon-lb pairs
  the i-th server of one service with the i-th of the other, both sorted by (host,
  port), which is the same task unless ports sort differently, and fails on an index
  equal to the number of ports.
* The health-check cache lives only as long as the caller keeps ``health_cache``.

Labels kept in ``Service.labels`` that change marathon-lb's rendering
---------------------------------------------------------------------
=============================================== ==============================================
label                                            what marathon-lb does with it
=============================================== ==============================================
``HAPROXY_{n}_SSL_CERT``                         ``ssl crt`` on the service frontend's bind
``HAPROXY_{n}_BIND_OPTIONS``                     extra options on the service frontend's bind
``HAPROXY_{n}_AUTH``                             ``userlist`` and ``http-request auth`` rules
``HAPROXY_{n}_REDIRECT_TO_HTTPS``                ``redirect scheme https`` for the vhosts
``HAPROXY_{n}_USE_HSTS``                         ``rspadd Strict-Transport-Security`` (1.x)
``HAPROXY_{n}_HTTP_BACKEND_PROXYPASS_PATH``      ``reqirep`` path rewrite (1.x)
``HAPROXY_{n}_HTTP_BACKEND_REVPROXY_PATH``       ``rspirep`` Location rewrite (1.x)
``HAPROXY_{n}_HTTP_BACKEND_REDIR``               ``redirect code 301`` of ``/``
``HAPROXY_{n}_BACKEND_NETWORK_ALLOWED_ACL``      source-address allow/deny ACLs
``HAPROXY_{n}_<TEMPLATE>``                       per-port template override, e.g.
                                                 ``FRONTEND_HEAD``, ``BACKEND_HEAD``,
                                                 ``BACKEND_SERVER_OPTIONS``,
                                                 ``HTTP_FRONTEND_ACL``... (all of
                                                 :data:`TEMPLATE_LABELS`)
=============================================== ==============================================

``HAPROXY_APP_ID`` and ``HAPROXY_DEPLOYMENT_NEW_INSTANCES`` (zdd.py's) are read or kept
without a notice; they change no rendering by themselves.

Rendering: adaptations to HAProxy 2.6
-------------------------------------
:func:`render_haproxy` follows marathon-lb's default templates (``HAPROXY_HEAD``, the
``marathon_http_in``, ``marathon_http_appid_in`` and ``marathon_https_in`` frontends,
``FRONTEND_HEAD``, ``BACKEND_HEAD``, ``BACKEND_HTTP_OPTIONS``, the health-check,
sticky and server templates, the vhost ACL templates) section for section and line for
line, with these changes:

* no ``lua-load`` and none of the lua-served ``http-request use-service lua.*`` lines
  (``/_haproxy_getpids``, ``/_haproxy_getconfig``, ``/_haproxy_getvhostmap``,
  ``/_haproxy_getappmap``, ``/_mlb_signal/*``): the edge process serves those itself;
* ``stats socket``, ``pidfile`` (marathon-lb passes ``-p``), ``server-state-file`` (an
  absolute path instead of ``global`` under ``server-state-base /var/state/haproxy/``)
  and the ``ssl crt`` of the https frontend come from :class:`RenderSettings` (files
  in the state directory); ``maxconn``, the bind host and the http, https, stats and
  app-id ports too;
* ``stats uri /haproxy?stats`` is written out (HAProxy's default, which marathon-lb
  relies on);
* no ``daemon`` and no ``nbproc`` (removed from HAProxy 2.5; marathon-lb 1.12 already
  dropped ``daemon``); ``tune.ssl.default-dh-param`` kept;
* no 1.x-only directives (``reqadd``, ``rspadd``, ``reqirep``, ``rspirep``): the
  default templates already use ``http-request set-header``/``add-header``; the labels
  whose templates need the 1.x ones are the unsupported ones above;
* a service binds ``edge_host`` (when given to :func:`build`) instead of ``*`` unless
  ``HAPROXY_{n}_BIND_ADDR`` says otherwise: every embedded cluster's edge has its own
  loopback address.

Only what marathon-lb would emit is rendered: servers that are healthy (draining ones
``disabled``), services with at least one such server.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import ipaddress
import os
import re
from collections.abc import Iterable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from playground.edge.model import BALANCES, STICKY_COOKIE, EdgeConfig, Notice, Server, Service

__all__ = [
    "EXCLUDED_TASK_STATES",
    "TEMPLATE_LABELS",
    "UNSUPPORTED_PORT_LABELS",
    "RenderSettings",
    "app_map",
    "build",
    "calculate_server_id",
    "generate_certificate",
    "render_haproxy",
    "server_name",
    "vhost_map",
]

#: Task states marathon-lb never routes to (``marathon_lb.EXCLUDED_TASK_STATES``).
EXCLUDED_TASK_STATES = frozenset(
    {
        "TASK_STAGING",
        "TASK_STARTING",
        "TASK_KILLING",
        "TASK_FINISHED",
        "TASK_FAILED",
        "TASK_KILLED",
        "TASK_ERROR",
        "TASK_DROPPED",
        "TASK_GONE",
        "TASK_GONE_BY_OPERATOR",
        "TASK_UNKNOWN",
    }
)

#: Per-port template overrides (``HAPROXY_{n}_<name>``) marathon-lb honours; the edge
#: keeps them in ``Service.labels`` without using them.
TEMPLATE_LABELS = frozenset(
    {
        "BACKEND_HEAD",
        "BACKEND_HSTS_OPTIONS",
        "BACKEND_HTTP_HEALTHCHECK_OPTIONS",
        "BACKEND_HTTP_OPTIONS",
        "BACKEND_REDIRECT_HTTP_TO_HTTPS",
        "BACKEND_REDIRECT_HTTP_TO_HTTPS_WITH_PATH",
        "BACKEND_SERVER_HTTP_HEALTHCHECK_OPTIONS",
        "BACKEND_SERVER_OPTIONS",
        "BACKEND_SERVER_TCP_HEALTHCHECK_OPTIONS",
        "BACKEND_STICKY_OPTIONS",
        "BACKEND_TCP_HEALTHCHECK_OPTIONS",
        "FRONTEND_BACKEND_GLUE",
        "FRONTEND_HEAD",
        "HTTPS_FRONTEND_ACL",
        "HTTPS_FRONTEND_ACL_ONLY_WITH_PATH",
        "HTTPS_FRONTEND_ACL_WITH_AUTH",
        "HTTPS_FRONTEND_ACL_WITH_AUTH_AND_PATH",
        "HTTPS_FRONTEND_ACL_WITH_PATH",
        "HTTPS_FRONTEND_AUTH_ACL_ONLY",
        "HTTPS_FRONTEND_AUTH_REQUEST_ONLY",
        "HTTPS_FRONTEND_ROUTING_ONLY_WITH_PATH_AND_AUTH",
        "HTTP_BACKEND_NETWORK_ALLOWED_ACL",
        "HTTP_BACKEND_PROXYPASS_GLUE",
        "HTTP_BACKEND_REVPROXY_GLUE",
        "HTTP_FRONTEND_ACL",
        "HTTP_FRONTEND_ACL_ONLY",
        "HTTP_FRONTEND_ACL_ONLY_WITH_PATH",
        "HTTP_FRONTEND_ACL_ONLY_WITH_PATH_AND_AUTH",
        "HTTP_FRONTEND_ACL_WITH_AUTH",
        "HTTP_FRONTEND_ACL_WITH_AUTH_AND_PATH",
        "HTTP_FRONTEND_ACL_WITH_PATH",
        "HTTP_FRONTEND_APPID_ACL",
        "HTTP_FRONTEND_ROUTING_ONLY",
        "HTTP_FRONTEND_ROUTING_ONLY_WITH_AUTH",
        "HTTP_FRONTEND_ROUTING_ONLY_WITH_PATH",
        "HTTP_FRONTEND_ROUTING_ONLY_WITH_PATH_AND_AUTH",
        "MAP_HTTPS_FRONTEND_ACL",
        "MAP_HTTP_FRONTEND_ACL",
        "MAP_HTTP_FRONTEND_ACL_ONLY",
        "MAP_HTTP_FRONTEND_APPID_ACL",
        "TCP_BACKEND_NETWORK_ALLOWED_ACL",
        "USERLIST_HEAD",
    }
)

#: Per-port labels (``HAPROXY_{n}_<name>``) marathon-lb renders and the edge does not.
UNSUPPORTED_PORT_LABELS = frozenset(
    {
        "AUTH",
        "BACKEND_NETWORK_ALLOWED_ACL",
        "BIND_OPTIONS",
        "HTTP_BACKEND_PROXYPASS_PATH",
        "HTTP_BACKEND_REDIR",
        "HTTP_BACKEND_REVPROXY_PATH",
        "REDIRECT_TO_HTTPS",
        "SSL_CERT",
        "USE_HSTS",
    }
    | TEMPLATE_LABELS
)

#: Per-port labels the edge implements.
_PORT_LABELS = frozenset(
    {
        "BACKEND_HEALTHCHECK_PORT_INDEX",
        "BACKEND_WEIGHT",
        "BALANCE",
        "BIND_ADDR",
        "ENABLED",
        "GROUP",
        "MODE",
        "PATH",
        "PORT",
        "STICKY",
        "VHOST",
    }
)
#: App-wide labels read by marathon-lb (or zdd.py) that need no notice.
_APP_LABELS = frozenset(
    {
        "HAPROXY_GROUP",
        "HAPROXY_APP_ID",
        "HAPROXY_DEPLOYMENT_GROUP",
        "HAPROXY_DEPLOYMENT_ALT_PORT",
        "HAPROXY_DEPLOYMENT_COLOUR",
        "HAPROXY_DEPLOYMENT_STARTED_AT",
        "HAPROXY_DEPLOYMENT_TARGET_INSTANCES",
        "HAPROXY_DEPLOYMENT_NEW_INSTANCES",
    }
)
_PORT_LABEL_RE = re.compile(r"^HAPROXY_(\d+)_(.+)$")
_NON_NAME = re.compile(r"[^a-zA-Z0-9\-]")
_HOSTNAME_RE = re.compile(r"^[A-Za-z0-9._:-]+$")
_BIND_RE = re.compile(r"^[A-Za-z0-9._:*\[\]-]+$")
_TRUE = frozenset({"true", "t", "yes", "y"})
_FALSE = frozenset({"false", "f", "no", "n"})
_HTTP_CHECKS = frozenset({"HTTP", "HTTPS", "MESOS_HTTP", "MESOS_HTTPS"})
# Marathon's health-check defaults (healthCheck.raml), for checks missing a field.
_CHECK_DEFAULTS = {
    "gracePeriodSeconds": 300,
    "intervalSeconds": 60,
    "timeoutSeconds": 20,
    "maxConsecutiveFailures": 3,
}
#: marathon-lb's --min/--max-serv-port-ip-per-task defaults.
IP_PER_TASK_PORT_RANGE = (10050, 10100)
#: The edge's own listeners marathon-lb binds by default (port: name).
DEFAULT_RESERVED_PORTS: Mapping[int, str] = {
    80: "marathon_http_in",
    443: "marathon_https_in",
    9090: "stats",
    9091: "marathon_http_appid_in",
}


# --------------------------------------------------------------------------- names


def backend_name(app_id: str, service_port: int) -> str:
    """marathon-lb's backend (and service frontend) name."""
    return app_id[1:].replace("/", "_") + "_" + str(service_port)


def server_name(host: str, ip: str, port: int) -> str:
    """marathon-lb's server name: ``host_ip_port``, or ``ip_port`` when host is the IP."""
    raw = f"{host}_{ip}_{port}" if host != ip else f"{ip}_{port}"
    return _NON_NAME.sub("_", raw)


def calculate_server_id(name: str, taken: set[int]) -> int:
    """A stable HAProxy server ``id`` in 1..32766, unique in ``taken`` (which it updates).

    marathon-lb's ``calculate_server_id``: SHA-256 of the name modulo 32767; on a
    collision (or 0) the name plus its hex digest is tried again.
    """
    if not name:
        raise ValueError(f"malformed server name: {name!r}")
    while True:
        digest = hashlib.sha256(name.encode("utf-8")).hexdigest()
        server_id = int(digest, 16) % 32767
        if server_id > 0 and server_id not in taken:
            taken.add(server_id)
            return server_id
        name = f"{name} {digest}"


def _normalize_app_id(app_id: str) -> str:
    return app_id if app_id.startswith("/") else "/" + app_id


# --------------------------------------------------------------------------- Marathon shapes


def _container(app: Mapping[str, Any]) -> Mapping[str, Any]:
    return app.get("container") or {}


def networking_mode(app: Mapping[str, Any]) -> str:
    """``host``, ``container/bridge`` or ``container`` (marathon-lb's rules)."""
    mode = "host"
    if app.get("ipAddress"):
        mode = "container"
    docker_network = (_container(app).get("docker") or {}).get("network", "")
    if docker_network == "USER":
        mode = "container"
    elif docker_network == "BRIDGE":
        mode = "container/bridge"
    for network in app.get("networks") or []:
        mode = network.get("mode", "container")
    return str(mode)


def _port_mappings(app: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    container = _container(app)
    mappings = (container.get("docker") or {}).get("portMappings") or []
    if mappings:
        return list(mappings)
    return list(container.get("portMappings") or [])


def _port_definition_ports(app: Mapping[str, Any]) -> list[int]:
    return [p["port"] for p in app.get("portDefinitions") or [] if "port" in p]


def _task_ports(app: Mapping[str, Any], task: Mapping[str, Any], mode: str) -> list[int]:
    if mode in ("host", "container/bridge"):
        ports = list(task.get("ports") or [])
        if ports:
            return ports
        ports = _port_definition_ports(app)
        if ports or mode == "host":
            return ports
        return [p["containerPort"] for p in _port_mappings(app) if "containerPort" in p]
    discovery = (app.get("ipAddress") or {}).get("discovery") or {}
    ports = [int(p["number"]) for p in discovery.get("ports") or [] if "number" in p]
    if ports:
        return ports
    return [p["containerPort"] for p in _port_mappings(app) if "containerPort" in p]


def _task_ip(task: Mapping[str, Any], mode: str) -> str:
    if mode == "container":
        addresses = task.get("ipAddresses") or []
        return str(addresses[0].get("ipAddress", "")) if addresses else ""
    # marathon-lb resolves the host name; the kit's hosts are addresses already, and a
    # name is kept as it is (HAProxy resolves it when it parses the configuration).
    return str(task.get("host") or "")


class _ServicePortAssigner:
    """marathon-lb's ``ServicePortAssigner``: service ports for legacy IP-per-task apps."""

    def __init__(self, low: int, high: int) -> None:
        self.low, self.high = low, high
        self.count = high - low + 1
        self.by_app: dict[tuple[str, int], int | None] = {}

    def _assign(self, app_id: str, task_port: int) -> int | None:
        if self.count <= len(self.by_app):
            return None
        taken = set(self.by_app.values())
        for i in range(50):
            digest = hashlib.sha1(f"{app_id}-{task_port}-{i}".encode()).hexdigest()
            trial = self.low + int(digest[:8], 16) % self.count
            if trial not in taken:
                return trial
        for port in range(self.low, self.high + 1):
            if port not in taken:
                return port
        return None  # pragma: no cover - the count check above prevents it

    def service_ports(self, app: Mapping[str, Any], mode: str) -> list[int | None]:
        if mode in ("container", "container/bridge"):
            mapped = [
                p.get("servicePort")
                for p in _port_mappings(app)
                if p.get("servicePort") is not None
            ]
            if mapped:
                return mapped
        ports: list[int | None] = list(app.get("ports") or [])
        if "portDefinitions" in app:
            ports = [p.get("port") for p in app.get("portDefinitions") or []]
            ports = [p for p in ports if p is not None]
        tasks = app.get("tasks") or []
        if not ports and mode == "container" and tasks:
            out: list[int | None] = []
            for task_port in _task_ports(app, tasks[0], mode):
                key = (str(app["id"]), task_port)
                if self.by_app.get(key) is None:
                    self.by_app[key] = self._assign(*key)
                out.append(self.by_app[key])
            return out
        return ports


def health_check_for(app: Mapping[str, Any], port_index: int) -> dict[str, Any] | None:
    """marathon-lb's ``get_health_check``: the first check with a fixed ``port`` or with
    ``portIndex`` equal to ``port_index``."""
    for check in app.get("healthChecks") or []:
        if check.get("port"):
            return dict(check)
        if check.get("portIndex") == port_index:
            return dict(check)
    return None


def _parse_time(value: str) -> dt.datetime:
    parsed = dt.datetime.fromisoformat(value.strip())
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(dt.UTC).replace(tzinfo=None)
    return parsed


# --------------------------------------------------------------------------- labels


def _split_list(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


def _parse_bool(value: str) -> bool | None:
    v = value.strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    return None


def _bool_label(
    named: Mapping[str, tuple[str, str]], name: str, default: bool, notes: _Notes
) -> bool:
    """A boolean ``HAPROXY_{n}_<name>`` label; a malformed one is noted and ``default`` kept."""
    if name not in named:
        return default
    key, value = named[name]
    parsed = _parse_bool(value)
    if parsed is None:
        notes.malformed(key, value, "not a boolean (true/t/yes/y or false/f/no/n)")
        return default
    return parsed


def _parse_int(value: str) -> int | None:
    try:
        return int(str(value).strip())
    except ValueError:
        return None


@dataclass
class _AppView:
    """One app as ``build`` processes it (after the zdd merge)."""

    app: dict[str, Any]
    app_id: str
    labels: dict[str, str]
    #: The Marathon id of the app whose labels these are (before the zdd renaming).
    original_id: str = ""
    deployment: dict[str, Any] = field(default_factory=dict)
    notices: list[Notice] = field(default_factory=list)


class _Notes:
    """Notices of one app port, kept only if the port turns out to be served."""

    def __init__(self, app_id: str) -> None:
        self.app_id = app_id
        self.items: list[Notice] = []

    def malformed(self, label: str, value: str, why: str) -> None:
        self.items.append(
            Notice(
                kind="malformed-label",
                app_id=self.app_id,
                label=label,
                message=f"{self.app_id}: label {label}={value!r} ignored: {why}",
            )
        )

    def unsupported(self, label: str) -> None:
        self.items.append(
            Notice(
                kind="unsupported-label",
                app_id=self.app_id,
                label=label,
                message=(
                    f"{self.app_id}: label {label} is kept but not applied: the edge "
                    "does not implement it (marathon-lb would change its HAProxy "
                    "configuration for it)"
                ),
            )
        )


# --------------------------------------------------------------------------- zdd merge


def _merge_deployment_groups(apps: list[dict[str, Any]]) -> list[_AppView]:
    """marathon-lb's first pass of ``get_apps``: merge the apps of a deployment group."""
    processed: list[_AppView] = []
    groups: dict[str, _AppView] = {}
    for app in apps:
        labels = {str(k): str(v) for k, v in (app.get("labels") or {}).items()}
        original_id = _normalize_app_id(str(app.get("id", "")))
        view = _AppView(app=app, app_id=original_id, labels=labels, original_id=original_id)
        group = labels.get("HAPROXY_DEPLOYMENT_GROUP", "").strip().strip("/")
        if "HAPROXY_DEPLOYMENT_GROUP" in labels and not group:
            notes = _Notes(original_id)
            notes.malformed(
                "HAPROXY_DEPLOYMENT_GROUP", labels["HAPROXY_DEPLOYMENT_GROUP"], "no group named"
            )
            view.notices.extend(notes.items)
        if not group:
            processed.append(view)
            continue
        group_id = "/" + group
        view.app_id = group_id
        view.deployment = _deployment_info(labels, view.notices, original_id)
        view.deployment["apps"] = [original_id]
        if group_id not in groups:
            groups[group_id] = view
            continue
        groups[group_id] = _merge_pair(groups[group_id], view)
    processed.extend(groups.values())
    return processed


def _deployment_info(labels: Mapping[str, str], notices: list[Notice], app_id: str) -> dict:
    info: dict[str, Any] = {"group": labels["HAPROXY_DEPLOYMENT_GROUP"]}
    notes = _Notes(app_id)
    if "HAPROXY_DEPLOYMENT_COLOUR" in labels:
        info["colour"] = labels["HAPROXY_DEPLOYMENT_COLOUR"]
    for label, key in (
        ("HAPROXY_DEPLOYMENT_ALT_PORT", "alt_port"),
        ("HAPROXY_DEPLOYMENT_TARGET_INSTANCES", "target_instances"),
        ("HAPROXY_DEPLOYMENT_NEW_INSTANCES", "new_instances"),
    ):
        if label in labels:
            number = _parse_int(labels[label])
            if number is None or number < 0:
                notes.malformed(label, labels[label], "not a non-negative integer")
            else:
                info[key] = number
    if "HAPROXY_DEPLOYMENT_STARTED_AT" in labels:
        raw = labels["HAPROXY_DEPLOYMENT_STARTED_AT"]
        try:
            _parse_time(raw)
            info["started_at"] = raw
        except ValueError:
            notes.malformed("HAPROXY_DEPLOYMENT_STARTED_AT", raw, "not an ISO 8601 time")
    notices.extend(notes.items)
    return info


def _started_at(view: _AppView) -> dt.datetime:
    raw = view.labels.get("HAPROXY_DEPLOYMENT_STARTED_AT")
    if raw is None:
        return dt.datetime.min
    try:
        return _parse_time(raw)
    except ValueError:
        return dt.datetime.min


def _last_scaling(view: _AppView) -> dt.datetime:
    raw = (view.app.get("versionInfo") or {}).get("lastScalingAt")
    try:
        return _parse_time(str(raw)) if raw else dt.datetime.min
    except ValueError:
        return dt.datetime.min


def _alive(task: Mapping[str, Any]) -> bool:
    return any(r.get("alive") for r in task.get("healthCheckResults") or [])


def _merge_pair(prev: _AppView, cur: _AppView) -> _AppView:
    """Merge ``cur`` into the group holding ``prev``; the old app's view survives."""
    if _started_at(prev) < _started_at(cur):
        old, new = prev, cur
    else:
        old, new = cur, prev
    target = 1
    if "HAPROXY_DEPLOYMENT_NEW_INSTANCES" in new.labels:
        # marathon-lb tests ``int(label != 0)``: a label is a string, so this is always
        # true and the later ``lastScalingAt`` always decides which app is the new one.
        if _last_scaling(old) > _last_scaling(new):
            old, new = new, old
        target_label = new.labels.get("HAPROXY_DEPLOYMENT_TARGET_INSTANCES")
        parsed = _parse_int(target_label) if target_label is not None else None
        if parsed is None:
            notes = _Notes(new.original_id)
            notes.malformed(
                "HAPROXY_DEPLOYMENT_TARGET_INSTANCES",
                str(target_label),
                "an integer is needed with HAPROXY_DEPLOYMENT_NEW_INSTANCES; 1 is used",
            )
            old.notices.extend(notes.items)
        else:
            target = parsed
    old_tasks = sorted(old.app.get("tasks") or [], key=lambda t: str(t.get("id", "")))
    # marathon-lb reads the health checks of the app being merged (``cur``).
    if cur.app.get("healthChecks"):
        healthy_new = sum(
            1 for t in new.app.get("tasks") or [] if "healthCheckResults" in t and _alive(t)
        )
    else:
        healthy_new = int(new.app.get("instances", len(new.app.get("tasks") or [])))
    old_instances = int(old.app.get("instances", len(old.app.get("tasks") or [])))
    maximum_drainable = max(0, healthy_new + old_instances - target)
    for task in old_tasks[: min(len(old_tasks), healthy_new, maximum_drainable)]:
        task["draining"] = True
    old.app["tasks"] = old_tasks + list(new.app.get("tasks") or [])
    old.deployment["apps"] = list(old.deployment.get("apps", [])) + list(
        new.deployment.get("apps", [])
    )
    old.deployment["old_app"] = old.deployment["apps"][0]
    old.deployment["new_app"] = new.deployment["apps"][-1]
    old.notices.extend(new.notices)
    return old


# --------------------------------------------------------------------------- build


@dataclass
class _Candidate:
    service: Service
    notices: list[Notice]
    vhost_label: str
    port_label: str | None


def build(
    apps: Sequence[Mapping[str, Any]],
    group: str = "external",
    *,
    strict_mode: bool = False,
    edge_host: str | None = None,
    reserved_ports: Mapping[int, str] | None = None,
    health_cache: MutableMapping[str, bool] | None = None,
) -> EdgeConfig:
    """What marathon-lb in group ``group`` would serve from Marathon's ``apps``.

    Args:
        apps: the ``apps`` list of ``GET /v2/apps?embed=apps.tasks`` (not modified).
        group: the edge's group(s), comma-separated; ``*`` takes every app.
        strict_mode: marathon-lb's ``--strict-mode``: only ports with
            ``HAPROXY_{n}_ENABLED=true`` are served.
        edge_host: the address the edge listens on; services bind it unless
            ``HAPROXY_{n}_BIND_ADDR`` says otherwise (``*`` when None).
        reserved_ports: the edge's own listeners (port: name) no service may take;
            marathon-lb's 80, 443, 9090 and 9091 when None (see
            :meth:`RenderSettings.reserved_ports`).
        health_cache: task id -> last health verdict, kept by the caller across builds:
            a task whose results are missing keeps its last verdict (marathon-lb's LRU
            cache). Entries of tasks no longer listed are dropped.
    """
    groups = frozenset(_split_list(group))
    reserved = DEFAULT_RESERVED_PORTS if reserved_ports is None else reserved_ports
    views = _merge_deployment_groups([_copy_app(a) for a in apps])
    assigner = _ServicePortAssigner(*IP_PER_TASK_PORT_RANGE)
    candidates: list[_Candidate] = []
    seen_tasks: set[str] = set()
    app_notices: list[Notice] = []
    for view in views:
        found, notes = _services_of(view, groups, strict_mode, edge_host, health_cache, assigner)
        candidates.extend(found)
        if found:  # an app none of whose ports this edge serves is not its business
            app_notices.extend([*view.notices, *notes])
        seen_tasks.update(str(t.get("id", "")) for t in view.app.get("tasks") or [])
    if health_cache is not None:
        for task_id in [k for k in health_cache if k not in seen_tasks]:
            del health_cache[task_id]
    services, notices = _resolve_conflicts(candidates, reserved)
    services.sort(key=lambda s: (s.app_id, s.service_port))
    return EdgeConfig(group=group, services=tuple(services), notices=(*app_notices, *notices))


def _copy_app(app: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(app)
    out["tasks"] = [dict(t) for t in app.get("tasks") or []]
    out["labels"] = dict(app.get("labels") or {})
    return out


def _port_labels(labels: Mapping[str, str]) -> dict[int, dict[str, tuple[str, str]]]:
    """index -> name -> (full label, value) for the ``HAPROXY_{n}_*`` labels."""
    out: dict[int, dict[str, tuple[str, str]]] = {}
    for key, value in labels.items():
        m = _PORT_LABEL_RE.match(key)
        if m:
            out.setdefault(int(m.group(1)), {})[m.group(2)] = (key, value)
    return out


def _services_of(
    view: _AppView,
    groups: frozenset[str],
    strict_mode: bool,
    edge_host: str | None,
    health_cache: MutableMapping[str, bool] | None,
    assigner: _ServicePortAssigner,
) -> tuple[list[_Candidate], list[Notice]]:
    """The candidate services of one app in this edge's groups, and the app's notices."""
    app, app_id, labels = view.app, view.app_id, view.labels
    mode_net = networking_mode(app)
    service_ports = assigner.service_ports(app, mode_net)
    per_port = _port_labels(labels)
    app_groups = _split_list(labels.get("HAPROXY_GROUP", ""))
    app_notes = _Notes(app_id)
    for key, value in labels.items():
        if key.startswith("HAPROXY_") and not _PORT_LABEL_RE.match(key):
            if key not in _APP_LABELS:
                app_notes.malformed(key, value, "not a marathon-lb label")
    for index, named in sorted(per_port.items()):
        if index >= len(service_ports):
            for key, value in named.values():
                app_notes.malformed(
                    key, value, f"the app has no port index {index} ({len(service_ports)} ports)"
                )

    tasks = _usable_tasks(app, mode_net, health_cache)
    out: list[_Candidate] = []
    for index, raw_port in enumerate(service_ports):
        if raw_port is None:
            continue
        named = per_port.get(index, {})
        notes = _Notes(app_id)
        selected = _port_groups(named, app_groups, notes)
        if not ("*" in groups or set(selected) & groups):
            continue
        if not _bool_label(named, "ENABLED", not strict_mode, notes):
            continue
        candidate = _service(
            view, index, int(raw_port), named, selected, notes, tasks, edge_host, service_ports
        )
        if candidate is not None:
            out.append(candidate)
    return out, app_notes.items


def _port_groups(
    named: Mapping[str, tuple[str, str]], app_groups: tuple[str, ...], notes: _Notes
) -> tuple[str, ...]:
    if "GROUP" in named:
        key, value = named["GROUP"]
        parsed = _split_list(value)
        if parsed:
            return parsed
        notes.malformed(key, value, "no group named; HAPROXY_GROUP applies")
    return app_groups


@dataclass
class _Task:
    task: Mapping[str, Any]
    task_id: str
    agent_host: str
    ip: str
    ports: list[int]
    healthy: bool
    reason: str
    draining: bool


def _usable_tasks(
    app: Mapping[str, Any], mode_net: str, health_cache: MutableMapping[str, bool] | None
) -> list[_Task]:
    has_checks = bool(app.get("healthChecks"))
    out: list[_Task] = []
    for task in app.get("tasks") or []:
        host = task.get("host")
        if not host:
            continue
        if task.get("state") in EXCLUDED_TASK_STATES:
            continue
        task_id = str(task.get("id", ""))
        healthy, reason = True, ""
        if has_checks:
            if "healthCheckResults" not in task:
                if not (health_cache or {}).get(task_id, False):
                    healthy, reason = False, "no health check result yet"
            else:
                alive = _alive(task)
                if health_cache is not None:
                    health_cache[task_id] = alive
                if not alive:
                    healthy, reason = False, "health checks failing"
        ip = _task_ip(task, mode_net)
        ports = _task_ports(app, task, mode_net)
        if not (ip and ports):
            continue
        out.append(
            _Task(
                task=task,
                task_id=task_id,
                agent_host=str(host),
                ip=ip,
                ports=[int(p) for p in ports],
                healthy=healthy,
                reason=reason,
                draining=bool(task.get("draining", False)),
            )
        )
    return out


def _service(
    view: _AppView,
    index: int,
    service_port: int,
    named: Mapping[str, tuple[str, str]],
    selected_groups: tuple[str, ...],
    notes: _Notes,
    tasks: list[_Task],
    edge_host: str | None,
    all_ports: Sequence[int | None],
) -> _Candidate | None:
    app, app_id = view.app, view.app_id
    # Kept: the app-wide HAPROXY_ labels build does not turn into fields (HAPROXY_APP_ID,
    # unknown ones) and this port's unsupported or unknown ones.
    kept: dict[str, str] = {
        k: v
        for k, v in view.labels.items()
        if k.startswith("HAPROXY_")
        and not _PORT_LABEL_RE.match(k)
        and k != "HAPROXY_GROUP"
        and not k.startswith("HAPROXY_DEPLOYMENT_")
    }
    for name, (key, value) in named.items():
        if name in UNSUPPORTED_PORT_LABELS:
            kept[key] = value
            notes.unsupported(key)
        elif name not in _PORT_LABELS:
            kept[key] = value
            notes.malformed(key, value, "not a marathon-lb label")

    port_label = None
    if "PORT" in named:
        key, value = named["PORT"]
        parsed = _parse_int(value)
        if parsed is None or not 1 <= parsed <= 65535:
            notes.malformed(key, value, "not a port number (1-65535)")
        else:
            service_port, port_label = parsed, key
    if service_port <= 0:
        return None

    health_check = health_check_for(app, index)
    mode: str | None = "http" if health_check and health_check.get("protocol") == "HTTP" else None
    if "MODE" in named:
        key, value = named["MODE"]
        if value.strip().lower() in ("tcp", "http"):
            mode = value.strip().lower()
        else:
            notes.malformed(key, value, "not a mode (tcp or http)")
    check_index: int | None = None
    if "BACKEND_HEALTHCHECK_PORT_INDEX" in named:
        key, value = named["BACKEND_HEALTHCHECK_PORT_INDEX"]
        parsed = _parse_int(value)
        if parsed is None or parsed < 0:
            notes.malformed(key, value, "not a port index (an integer from 0)")
        else:
            check_index = parsed
    if health_check is None and check_index is not None:
        health_check = health_check_for(app, check_index)
        if health_check and health_check.get("protocol") in _HTTP_CHECKS:
            mode = "http"

    vhosts: list[str] = []
    vhost_label = named.get("VHOST", ("", ""))[0]
    if "VHOST" in named:
        key, value = named["VHOST"]
        for host in _split_list(value.lower()):
            if _HOSTNAME_RE.match(host):
                if host not in vhosts:
                    vhosts.append(host)
            else:
                notes.malformed(key, host, "not a host name")
        if not vhosts and not _split_list(value):
            notes.malformed(key, value, "no host named")
    if mode is None:
        mode = "http" if vhosts else "tcp"
    if vhosts and mode != "http":
        notes.malformed(
            vhost_label,
            named["VHOST"][1],
            "vhosts need http mode and this port's mode is tcp "
            "(HAProxy refuses an http frontend using a tcp backend)",
        )
        vhosts = []

    path: str | None = None
    if "PATH" in named:
        key, value = named["PATH"]
        if value.strip() and not any(c in value for c in "\n\r#"):
            path = value.strip()
        else:
            notes.malformed(key, value, "not a path_beg pattern")

    balance = "roundrobin"
    if "BALANCE" in named:
        key, value = named["BALANCE"]
        if value.strip() in BALANCES:
            balance = value.strip()
        else:
            notes.malformed(key, value, "not a balance algorithm (" + ", ".join(BALANCES) + ")")

    sticky = _bool_label(named, "STICKY", False, notes)

    weight = 0
    if "BACKEND_WEIGHT" in named:
        key, value = named["BACKEND_WEIGHT"]
        parsed = _parse_int(value)
        if parsed is None:
            notes.malformed(key, value, "not an integer")
        else:
            weight = parsed
    if path is not None and weight == 0:
        weight = 1

    bind_address = edge_host or "*"
    if "BIND_ADDR" in named:
        key, value = named["BIND_ADDR"]
        if _BIND_RE.match(value.strip()):
            bind_address = value.strip()
        else:
            notes.malformed(key, value, "not an address")

    servers = _servers(tasks, index, health_check, check_index, all_ports)
    service = Service(
        app_id=app_id,
        port_index=index,
        service_port=service_port,
        backend=backend_name(app_id, service_port),
        mode=mode,
        vhosts=tuple(vhosts),
        path=path,
        balance=balance,
        sticky=sticky,
        bind_address=bind_address,
        groups=selected_groups,
        servers=servers,
        health_check=health_check,
        deployment=dict(view.deployment),
        labels=kept,
        backend_weight=weight,
    )
    return _Candidate(service, notes.items, vhost_label, port_label)


def _servers(
    tasks: list[_Task],
    index: int,
    health_check: Mapping[str, Any] | None,
    check_index: int | None,
    all_ports: Sequence[int | None],
) -> tuple[Server, ...]:
    out: list[Server] = []
    for t in tasks:
        # marathon-lb zips task ports with service ports: a task with fewer ports than
        # the app feeds only the first services.
        if index >= min(len(t.ports), len(all_ports)):
            continue
        port = t.ports[index]
        check_port: int | None = None
        if check_index is not None:
            check_port = t.ports[check_index] if check_index < len(t.ports) else port
        elif health_check is not None and health_check.get("port"):
            check_port = int(health_check["port"])
        out.append(
            Server(
                name=server_name(t.agent_host, t.ip, port),
                task_id=t.task_id,
                host=t.ip,
                port=port,
                agent_host=t.agent_host,
                healthy=t.healthy,
                draining=t.draining,
                check_port=check_port,
                reason=t.reason,
            )
        )
    out.sort(key=lambda s: (s.agent_host, s.port, s.host, s.task_id))
    return tuple(out)


def _resolve_conflicts(
    candidates: list[_Candidate], reserved: Mapping[int, str]
) -> tuple[list[Service], list[Notice]]:
    notices: list[Notice] = []
    ordered = sorted(candidates, key=lambda c: (c.service.app_id, c.service.port_index))
    for c in ordered:
        notices.extend(c.notices)
    kept: list[_Candidate] = []
    by_port: dict[int, Service] = {}
    for c in ordered:
        s = c.service
        where = f"{s.app_id} port index {s.port_index}"
        if s.service_port in reserved:
            notices.append(
                Notice(
                    kind="conflict",
                    app_id=s.app_id,
                    label=c.port_label,
                    message=(
                        f"{where}: service port {s.service_port} is the edge's own "
                        f"{reserved[s.service_port]} listener; {s.backend} is not served"
                    ),
                )
            )
            continue
        holder = by_port.get(s.service_port)
        if holder is not None:
            notices.append(
                Notice(
                    kind="conflict",
                    app_id=s.app_id,
                    label=c.port_label,
                    message=(
                        f"{where}: service port {s.service_port} is already served for "
                        f"{holder.app_id} port index {holder.port_index} ({holder.backend}); "
                        f"{s.backend} is not served"
                    ),
                )
            )
            continue
        by_port[s.service_port] = s
        kept.append(c)

    claims: dict[tuple[str, str], Service] = {}
    services: list[Service] = []
    for c in kept:
        s = c.service
        if s.mode != "http" or not s.vhosts:
            services.append(s)
            continue
        keep: list[str] = []
        for vhost in s.vhosts:
            key = (vhost, s.path or "")
            holder = claims.get(key)
            if holder is None:
                claims[key] = s
                keep.append(vhost)
                continue
            on_path = f" path {s.path!r}" if s.path else ""
            notices.append(
                Notice(
                    kind="conflict",
                    app_id=s.app_id,
                    label=c.vhost_label or None,
                    message=(
                        f"{s.app_id} port index {s.port_index}: vhost {vhost}{on_path} is "
                        f"already routed to {holder.app_id} port index {holder.port_index} "
                        f"({holder.backend}); {s.backend} does not get it"
                    ),
                )
            )
        services.append(replace(s, vhosts=tuple(keep)) if len(keep) != len(s.vhosts) else s)
    return services, notices


# --------------------------------------------------------------------------- rendering

_CIPHERS = (
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:DHE-RSA-AES128-GCM-SHA256:"
    "DHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-AES128-SHA256:ECDHE-RSA-AES128-SHA256:"
    "ECDHE-ECDSA-AES256-SHA384:ECDHE-RSA-AES256-SHA384:DHE-RSA-AES128-SHA256:"
    "DHE-RSA-AES256-SHA256:AES128-GCM-SHA256:AES256-GCM-SHA384:AES128-SHA256:"
    "AES256-SHA256:!aNULL:!MD5:!DSS"
)
# marathon-lb's HAPROXY_GLOBAL_DEFAULT_OPTIONS default, rendered sorted as it does.
_DEFAULT_OPTIONS = ("dontlognull", "http-server-close", "redispatch")


@dataclass(frozen=True)
class RenderSettings:
    """Where and how the rendered HAProxy listens, and its files in the state directory.

    ``pid_path``, ``socket_path``, ``cert_path`` and ``server_state_path`` default to
    ``haproxy.pid``, ``haproxy.sock``, ``edge-cert.pem`` and ``haproxy.state`` in
    ``state_dir``.
    """

    state_dir: Path
    bind_host: str = "*"
    http_port: int = 80
    https_port: int = 443
    stats_port: int = 9090
    #: marathon-lb's ``marathon_http_appid_in`` (``X-Marathon-App-Id`` routing); None: none.
    appid_port: int | None = 9091
    #: marathon-lb's ``--dont-bind-http-https`` when False.
    bind_http_https: bool = True
    maxconn: int = 50000
    #: The ``log`` target of the global section; None: no logging.
    log_target: str | None = "/dev/log"
    #: ``http-request use-service prometheus-exporter`` on ``/metrics`` of the stats port.
    prometheus: bool = True
    pid_path: Path | None = None
    socket_path: Path | None = None
    cert_path: Path | None = None
    server_state_path: Path | None = None

    def __post_init__(self) -> None:
        base = Path(self.state_dir)
        object.__setattr__(self, "state_dir", base)
        for attr, name in (
            ("pid_path", "haproxy.pid"),
            ("socket_path", "haproxy.sock"),
            ("cert_path", "edge-cert.pem"),
            ("server_state_path", "haproxy.state"),
        ):
            value = getattr(self, attr)
            object.__setattr__(self, attr, base / name if value is None else Path(value))

    @property
    def stats_bind_host(self) -> str:
        """marathon-lb binds stats on 0.0.0.0; an edge with its own address binds that."""
        return "0.0.0.0" if self.bind_host in ("*", "") else self.bind_host

    def reserved_ports(self) -> dict[int, str]:
        """The edge's own listeners, for :func:`build`'s ``reserved_ports``."""
        out = {self.stats_port: "stats"}
        if self.appid_port is not None:
            out[self.appid_port] = "marathon_http_appid_in"
        if self.bind_http_https:
            out[self.http_port] = "marathon_http_in"
            out[self.https_port] = "marathon_https_in"
        return out


def _head(settings: RenderSettings) -> str:
    log = ""
    if settings.log_target:
        log = f"  log {settings.log_target} local0\n  log {settings.log_target} local1 notice\n"
    options = "".join(f"  option            {o}\n" for o in _DEFAULT_OPTIONS)
    metrics = (
        "  http-request use-service prometheus-exporter if { path /metrics }\n"
        if settings.prometheus
        else ""
    )
    return (
        "global\n"
        f"{log}"
        "  spread-checks 5\n"
        "  max-spread-checks 15000\n"
        f"  maxconn {settings.maxconn}\n"
        f"  pidfile {settings.pid_path}\n"
        "  tune.ssl.default-dh-param 2048\n"
        f"  ssl-default-bind-ciphers {_CIPHERS}\n"
        "  ssl-default-bind-options no-sslv3 no-tlsv10 no-tls-tickets\n"
        f"  ssl-default-server-ciphers {_CIPHERS}\n"
        "  ssl-default-server-options no-sslv3 no-tlsv10 no-tls-tickets\n"
        f"  stats socket {settings.socket_path} expose-fd listeners\n"
        f"  server-state-file {settings.server_state_path}\n"
        "defaults\n"
        "  load-server-state-from-file global\n"
        "  log               global\n"
        "  retries                   3\n"
        "  backlog               10000\n"
        "  maxconn               10000\n"
        "  timeout connect          3s\n"
        "  timeout client          30s\n"
        "  timeout server          30s\n"
        "  timeout tunnel        3600s\n"
        "  timeout http-keep-alive  1s\n"
        "  timeout http-request    15s\n"
        "  timeout queue           30s\n"
        "  timeout tarpit          60s\n"
        f"{options}"
        "listen stats\n"
        f"  bind {settings.stats_bind_host}:{settings.stats_port}\n"
        "  balance\n"
        "  mode http\n"
        "  stats enable\n"
        "  stats uri /haproxy?stats\n"
        f"{metrics}"
        "  monitor-uri /_haproxy_health_check\n"
    )


def emitted_servers(service: Service) -> tuple[Server, ...]:
    """The servers marathon-lb writes into the backend: healthy ones, draining included."""
    return tuple(s for s in service.servers if s.healthy)


def _emitted(cfg: EdgeConfig) -> list[tuple[Service, tuple[Server, ...]]]:
    out = []
    for service in sorted(cfg.services, key=lambda s: (s.app_id, s.service_port)):
        servers = emitted_servers(service)
        if servers:
            out.append((service, servers))
    return out


def _routes_vhosts(service: Service) -> bool:
    return service.mode == "http" and bool(service.vhosts)


def _vhost_acls(service: Service) -> tuple[str, str]:
    """marathon-lb's ``generateHttpVhostAcl`` without auth, redirect or maps."""
    backend, app_id, path = service.backend, service.app_id, service.path
    app_part = app_id[1:].replace("/", "_")
    http = https = ""
    vhosts = service.vhosts
    if len(vhosts) > 1:
        acl = _NON_NAME.sub("_", vhosts[0]) + "_" + app_part
        if path:
            http += f"  acl path_{backend} path_beg {path}\n"
            https += f"  acl path_{backend} path_beg {path}\n"
        for vhost in vhosts:
            http += f"  acl host_{acl} hdr(host) -i {vhost}\n"
            if path:
                https += f"  use_backend {backend} if {{ ssl_fc_sni {vhost} }} path_{backend}\n"
            else:
                https += f"  use_backend {backend} if {{ ssl_fc_sni {vhost} }}\n"
        if path:
            http += f"  use_backend {backend} if host_{acl} path_{backend}\n"
        else:
            http += f"  use_backend {backend} if host_{acl}\n"
        return http, https
    vhost = vhosts[0]
    acl = _NON_NAME.sub("_", vhost) + "_" + app_part
    if path:
        http += (
            f"  acl host_{acl} hdr(host) -i {vhost}\n"
            f"  acl path_{backend} path_beg {path}\n"
            f"  use_backend {backend} if host_{acl} path_{backend}\n"
        )
        https += (
            f"  acl path_{backend} path_beg {path}\n"
            f"  use_backend {backend} if {{ ssl_fc_sni {vhost} }} path_{backend}\n"
        )
    else:
        http += f"  acl host_{acl} hdr(host) -i {vhost}\n  use_backend {backend} if host_{acl}\n"
        https += f"  use_backend {backend} if {{ ssl_fc_sni {vhost} }}\n"
    return http, https


def _check_options(check: Mapping[str, Any], check_port: int | None) -> dict[str, Any]:
    def get(key: str) -> Any:
        return check.get(key, _CHECK_DEFAULTS[key])

    return {
        "path": check.get("path", "/"),
        "timeout": get("timeoutSeconds"),
        "interval": get("intervalSeconds"),
        "falls": int(get("maxConsecutiveFailures")) + 1,
        "port": f" port {check_port}" if check_port else "",
    }


def _backend(service: Service, servers: tuple[Server, ...]) -> str:
    b = service.backend
    text = f"\nbackend {b}\n  balance {service.balance}\n  mode {service.mode}\n"
    if service.mode == "http":
        text += (
            "  option forwardfor\n"
            "  http-request set-header X-Forwarded-Port %[dst_port]\n"
            "  http-request add-header X-Forwarded-Proto https if { ssl_fc }\n"
        )
    if service.sticky:
        text += f"  cookie {STICKY_COOKIE} insert indirect nocache\n"
    check = service.health_check
    tcp_check = check is not None and (
        service.mode == "tcp" or check.get("protocol") in ("TCP", "MESOS_TCP")
    )
    if check is not None and not tcp_check and service.mode == "http":
        opts = _check_options(check, None)
        text += f"  option  httpchk GET {opts['path']}\n  timeout check {opts['timeout']}s\n"
    taken: set[int] = set()
    for server in servers:
        server_id = calculate_server_id(server.name, taken)
        cookie = ""
        if service.sticky:
            cookie = " check cookie " + hashlib.sha1(server.name.encode()).hexdigest()[:10]
        checks = ""
        if check is not None:
            opts = _check_options(check, server.check_port)
            checks = f" check inter {opts['interval']}s fall {opts['falls']}{opts['port']}"
        other = " disabled" if server.draining else ""
        text += (
            f"  server {server.name} {server.host}:{server.port} id {server_id}"
            f"{cookie}{checks}{other}\n"
        )
    return text


def render_haproxy(cfg: EdgeConfig, settings: RenderSettings) -> str:
    """The HAProxy 2.6 configuration marathon-lb's default templates give for ``cfg``."""
    config = _head(settings)
    bind = settings.bind_host or "*"
    http_frontends = (
        f"\nfrontend marathon_http_in\n  bind {bind}:{settings.http_port}\n  mode http\n"
    )
    https_frontends = (
        f"\nfrontend marathon_https_in\n  bind {bind}:{settings.https_port} ssl "
        f"crt {settings.cert_path}\n  mode http\n"
    )
    appid_frontends = ""
    if settings.appid_port is not None:
        appid_frontends = (
            f"\nfrontend marathon_http_appid_in\n  bind {bind}:{settings.appid_port}\n  mode http\n"
        )
    http_rules: list[tuple[int, str]] = []
    https_rules: list[tuple[int, str]] = []
    appids: set[str] = set()
    frontends = backends = ""
    for service, servers in _emitted(cfg):
        b = service.backend
        frontends += (
            f"\nfrontend {b}\n  bind {service.bind_address}:{service.service_port}\n"
            f"  mode {service.mode}\n  use_backend {b}\n"
        )
        if settings.bind_http_https and _routes_vhosts(service):
            http, https = _vhost_acls(service)
            http_rules.append((service.backend_weight, http))
            https_rules.append((service.backend_weight, https))
        if service.mode == "http" and service.app_id not in appids:
            appids.add(service.app_id)
            cleaned = _NON_NAME.sub("_", service.app_id)
            appid_frontends += (
                f"  acl app_{cleaned} hdr(x-marathon-app-id) -i {service.app_id}\n"
                f"  use_backend {b} if app_{cleaned}\n"
            )
        backends += _backend(service, servers)
    # Stable sorts: equal weights keep the (app id, service port) order.
    http_rules.sort(key=lambda r: r[0], reverse=True)
    https_rules.sort(key=lambda r: r[0], reverse=True)
    if settings.bind_http_https:
        config += http_frontends + "".join(r[1] for r in http_rules)
    if settings.appid_port is not None:
        config += appid_frontends
    if settings.bind_http_https:
        config += https_frontends + "".join(r[1] for r in https_rules)
    return config + frontends + backends


def vhost_map(cfg: EdgeConfig) -> str:
    """``/_haproxy_getvhostmap``: marathon-lb's ``domain2backend.map`` (``vhost backend``).

    As marathon-lb fills it with ``--haproxy-map``: the vhosts of rendered http services
    without a path (path rules stay ACLs), in (app id, service port) order.
    """
    lines: list[str] = []
    for service, _ in _emitted(cfg):
        if not _routes_vhosts(service) or service.path:
            continue
        for vhost in service.vhosts:
            line = f"{vhost} {service.backend}\n"
            if line not in lines:
                lines.append(line)
    return "".join(lines)


def app_map(cfg: EdgeConfig) -> str:
    """``/_haproxy_getappmap``: marathon-lb's ``app2backend.map`` (``app_id backend``):
    the first rendered http service of every app."""
    lines: list[str] = []
    seen: set[str] = set()
    for service, _ in _emitted(cfg):
        if service.mode == "http" and service.app_id not in seen:
            seen.add(service.app_id)
            lines.append(f"{service.app_id} {service.backend}\n")
    return "".join(lines)


# --------------------------------------------------------------------------- certificate


def generate_certificate(
    path: Path | str,
    *,
    common_name: str = "playground-edge",
    hostnames: Iterable[str] = ("localhost", "127.0.0.1"),
    days: int = 3650,
) -> Path:
    """Write a self-signed certificate and its key as one PEM file (HAProxy's ``crt``).

    The file is written atomically (a temporary file in the same directory, fsynced,
    renamed) with mode 0600 from its creation on: the key is never readable by others.
    marathon-lb's ``run`` script makes the same kind of certificate when none is given.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    target = Path(path)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    alt_names: list[x509.GeneralName] = []
    for host in hostnames:
        try:
            alt_names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            alt_names.append(x509.DNSName(host))
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    )
    if alt_names:
        builder = builder.add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
    cert = builder.sign(key, hashes.SHA256())
    data = cert.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o600)  # whatever the umask did to the creation mode
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    dfd = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
    return target
