"""App definitions as Marathon 1.10 keeps them: path ids, defaults, rendering, task names.

An app definition travels through the node as a plain JSON dict in Marathon's *normal
form*: every default filled in, exactly the fields ``GET /v2/apps`` shows (without the
runtime fields such as ``tasks`` or ``deployments``, which the API adds when it renders).
"""

from __future__ import annotations

import copy
import datetime as dt
import functools
import random
import re
import time
import uuid
from typing import Any

#: The role Marathon registers with and gives apps (DC/OS runs Marathon with
#: ``--mesos_role slave_public``, so the public agent's reserved resources reach it).
MARATHON_ROLE = "slave_public"
SERVICE_PORT_RANGE = (10000, 20000)

#: Fields of the API that describe a running app rather than its definition.
RUNTIME_FIELDS = frozenset(
    {
        "version",
        "versionInfo",
        "tasks",
        "tasksStaged",
        "tasksRunning",
        "tasksHealthy",
        "tasksUnhealthy",
        "deployments",
        "readinessCheckResults",
        "lastTaskFailure",
        "taskStats",
        "tasksStats",
        "counts",
    }
)

DEFAULTS: dict[str, Any] = {
    "backoffFactor": 1.15,
    "backoffSeconds": 1,
    "constraints": [],
    "cpus": 1.0,
    "disk": 0,
    "executor": "",
    "gpus": 0,
    "instances": 1,
    "killSelection": "YOUNGEST_FIRST",
    "labels": {},
    "maxLaunchDelaySeconds": 300,
    "mem": 128.0,
    "requirePorts": False,
    "unreachableStrategy": {"inactiveAfterSeconds": 0, "expungeAfterSeconds": 0},
    "upgradeStrategy": {"maximumOverCapacity": 1, "minimumHealthCapacity": 1},
}

#: Optional fields shown only when set (Marathon omits them rather than sending null).
OPTIONAL = (
    "cmd",
    "args",
    "user",
    "env",
    "container",
    "healthChecks",
    "readinessChecks",
    "check",
    "dependencies",
    "fetch",
    "acceptedResourceRoles",
    "residency",
    "secrets",
    "taskKillGracePeriodSeconds",
    "ipAddress",
    "tty",
    "storeUrls",
    "executorResources",
    "resourceLimits",
)


# ---- time and versions ----------------------------------------------------------------
def timestamp(t: float | None = None) -> str:
    """Marathon's timestamps: ISO 8601, UTC, milliseconds, ``Z``."""
    return _timestamp(time.time() if t is None else t)


@functools.lru_cache(maxsize=8192)
def _timestamp(t: float) -> str:
    when = dt.datetime.fromtimestamp(t, dt.UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def parse_timestamp(text: str) -> float:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class VersionClock:
    """Versions are timestamps; two changes in the same millisecond still differ."""

    def __init__(self) -> None:
        self.last = 0.0

    def next(self) -> str:
        now = max(time.time(), self.last + 0.001)
        self.last = now
        return timestamp(now)


# ---- path ids --------------------------------------------------------------------------
def canonical_id(raw: str, base: str = "/") -> str:
    """Resolve an app or group id the way Marathon's PathId does (relative to ``base``)."""
    raw = raw.strip()
    parts: list[str] = [] if raw.startswith("/") else [p for p in base.split("/") if p]
    for p in raw.split("/"):
        if p in ("", "."):
            continue
        if p == "..":
            if parts:
                parts.pop()
            continue
        parts.append(p)
    return "/" + "/".join(parts)


def parent_of(path: str) -> str:
    parts = [p for p in path.split("/") if p]
    return "/" + "/".join(parts[:-1])


def mesos_task_name(app_id: str) -> str:
    """``/prod/web`` -> ``web.prod``: Marathon's Mesos task name (and mesos-dns's label)."""
    return ".".join(reversed([p for p in app_id.split("/") if p]))


def app_id_for_task_prefix(app_id: str) -> str:
    return "_".join(p for p in app_id.split("/") if p)


def new_instance_id(app_id: str) -> str:
    return f"{app_id_for_task_prefix(app_id)}.instance-{uuid.uuid4()}"


def task_id_of(instance_id: str, incarnation: int) -> str:
    """Task ids in the 1.8+ form: ``<app>.instance-<uuid>._app.<n>``."""
    return f"{instance_id}._app.{incarnation}"


_TASK_RE = re.compile(r"^(?P<instance>.+\.instance-[0-9a-f-]{36})\._app\.(?P<n>\d+)$")
_LEGACY_TASK_RE = re.compile(r"^(?P<app>.+)[._](?P<uuid>[0-9a-f-]{36})$")


def split_task_id(task_id: str) -> tuple[str, int] | None:
    """The instance id and incarnation of a task id, or None when it is not ours."""
    m = _TASK_RE.match(task_id)
    if not m:
        return None
    return m.group("instance"), int(m.group("n"))


def app_id_of_task(task_id: str) -> str | None:
    m = _TASK_RE.match(task_id)
    if m:
        prefix = m.group("instance").rsplit(".instance-", 1)[0]
        return "/" + prefix.replace("_", "/")
    return None


def _number(v: Any) -> Any:
    """Render whole numbers without a fraction, as Marathon's JSON writer does."""
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return v


# ---- normal form -----------------------------------------------------------------------
def _host_networking(app: dict[str, Any]) -> bool:
    nets = app.get("networks") or [{"mode": "host"}]
    return all(n.get("mode", "container") == "host" for n in nets)


def _bridge_networking(app: dict[str, Any]) -> bool:
    return any(n.get("mode") == "container/bridge" for n in app.get("networks") or [])


def container_networks(app: dict[str, Any]) -> list[dict[str, Any]]:
    """The app's ``container`` mode networks (IP-per-task), in order."""
    return [n for n in app.get("networks") or [] if n.get("mode", "container") == "container"]


def normalize_app(raw: dict[str, Any], base: str = "/") -> dict[str, Any]:
    """A validated definition in Marathon's normal form (defaults filled, ids resolved)."""
    from playground.marathon import health  # late: the health module is optional to load

    src = {k: copy.deepcopy(v) for k, v in raw.items() if k not in RUNTIME_FIELDS}
    app: dict[str, Any] = {"id": canonical_id(str(src.pop("id", "")), base)}
    for key, default in DEFAULTS.items():
        value = src.pop(key, None)
        app[key] = copy.deepcopy(default) if value is None else value
    for key in ("cpus", "mem", "disk", "gpus"):
        app[key] = _number(app[key])
    us = app["upgradeStrategy"]
    if isinstance(us, dict):
        us.setdefault("maximumOverCapacity", 1)
        us.setdefault("minimumHealthCapacity", 1)
    un = app["unreachableStrategy"]
    if isinstance(un, dict):
        un.setdefault("inactiveAfterSeconds", 0)
        un.setdefault("expungeAfterSeconds", 0)
    app["role"] = src.pop("role", None) or MARATHON_ROLE
    # networking and ports (the deprecated ipAddress and docker.network become networks)
    networks = src.pop("networks", None)
    ip_address = src.pop("ipAddress", None)
    if not networks:
        container = src.get("container") or {}
        docker_net = ((container.get("docker") or {}).get("network") or "").upper()
        net_name = (ip_address or {}).get("networkName") or "dcos"
        if docker_net == "BRIDGE":
            networks = [{"mode": "container/bridge"}]
        elif docker_net == "USER" or ip_address is not None:
            networks = [{"mode": "container", "name": net_name}]
        else:
            networks = [{"mode": "host"}]
    app["networks"] = networks
    if _resident(src):
        # Apps with local persistent volumes: Marathon's resident defaults.
        if "upgradeStrategy" not in raw:
            app["upgradeStrategy"] = {"maximumOverCapacity": 0, "minimumHealthCapacity": 0.5}
        if "unreachableStrategy" not in raw:
            app["unreachableStrategy"] = "disabled"
    elif _external(src) and "upgradeStrategy" not in raw:
        # Apps with external volumes: one task per volume, so never over capacity.
        app["upgradeStrategy"] = {"maximumOverCapacity": 0, "minimumHealthCapacity": 0.5}
    ports = src.pop("ports", None)
    port_defs = src.pop("portDefinitions", None)
    if _host_networking(app):
        if port_defs is None:
            if ports is not None:
                port_defs = [{"port": int(p), "protocol": "tcp"} for p in ports]
            else:
                port_defs = [{"port": 0, "name": "default", "protocol": "tcp"}]
        app["portDefinitions"] = [
            {**pd, "protocol": pd.get("protocol", "tcp"), "port": int(pd.get("port", 0))}
            for pd in port_defs
        ]
    uris = src.pop("uris", None)
    if uris and not src.get("fetch"):
        src["fetch"] = [
            {"uri": u, "extract": True, "executable": False, "cache": False} for u in uris
        ]
    container = src.get("container")
    if isinstance(container, dict):
        container.setdefault("type", "DOCKER" if "docker" in container else "MESOS")
        container.setdefault("volumes", [])
        docker = container.get("docker")
        if isinstance(docker, dict):
            docker.setdefault("forcePullImage", False)
            docker.setdefault("parameters", [])
            docker.setdefault("privileged", False)
            docker.pop("network", None)
            legacy_maps = docker.pop("portMappings", None)
            if legacy_maps and "portMappings" not in container:
                container["portMappings"] = legacy_maps
        for pm in container.get("portMappings") or []:
            pm.setdefault("containerPort", 0)
            pm.setdefault("protocol", "tcp")
            if _bridge_networking(app):
                # Only in bridge mode does a missing hostPort mean "any host port"; on a
                # container network it means none (the task is reached on its own IP).
                pm.setdefault("hostPort", 0)
            pm.setdefault("servicePort", 0)
    if "healthChecks" in src:
        src["healthChecks"] = [health.normalize_health_check(h) for h in src["healthChecks"]]
    if "readinessChecks" in src:
        src["readinessChecks"] = [
            health.normalize_readiness_check(r) for r in src["readinessChecks"]
        ]
    if "dependencies" in src:
        src["dependencies"] = [canonical_id(d, parent_of(app["id"])) for d in src["dependencies"]]
    for key in OPTIONAL:
        value = src.pop(key, None)
        if value is None or (value in ([], {}) and key not in ("env",)):
            continue
        if key == "env" and value == {}:
            continue
        app[key] = value
    return app


def _external(app: dict[str, Any]) -> bool:
    volumes = (app.get("container") or {}).get("volumes") or []
    return any(isinstance(v, dict) and isinstance(v.get("external"), dict) for v in volumes)


def _resident(app: dict[str, Any]) -> bool:
    volumes = (app.get("container") or {}).get("volumes") or []
    return any(isinstance(v, dict) and "persistent" in v for v in volumes)


def service_ports(app: dict[str, Any]) -> list[int]:
    if "portDefinitions" in app:
        return [int(p["port"]) for p in app["portDefinitions"]]
    return [
        int(pm.get("servicePort", 0))
        for pm in (app.get("container") or {}).get("portMappings") or []
    ]


def port_specs(app: dict[str, Any]) -> list[dict[str, Any]]:
    """What each of the app's ports needs on the agent (requested host port, name, protocol)."""
    if "portDefinitions" in app:
        return [
            {
                "host_port": int(p["port"]) if app.get("requirePorts") else 0,
                "name": p.get("name"),
                "protocol": p.get("protocol", "tcp"),
                "labels": p.get("labels") or {},
            }
            for p in app["portDefinitions"]
        ]
    out = []
    for pm in (app.get("container") or {}).get("portMappings") or []:
        if pm.get("hostPort") is None:
            continue
        out.append(
            {
                "host_port": int(pm["hostPort"]),
                "name": pm.get("name"),
                "protocol": pm.get("protocol", "tcp"),
                "labels": pm.get("labels") or {},
            }
        )
    return out


def assign_service_ports(app: dict[str, Any], taken: set[int]) -> None:
    """Give every port 0 a free service port from 10000-20000, as Marathon does."""
    lo, hi = SERVICE_PORT_RANGE
    candidates = (p for p in range(lo, hi + 1) if p not in taken)

    def pick() -> int:
        port = next(candidates)
        taken.add(port)
        return port

    for pd in app.get("portDefinitions") or []:
        if int(pd.get("port", 0)) == 0:
            pd["port"] = pick()
    for pm in (app.get("container") or {}).get("portMappings") or []:
        if int(pm.get("servicePort", 0)) == 0:
            pm["servicePort"] = pick()


def used_service_ports(apps: dict[str, dict[str, Any]], exclude: str | None = None) -> set[int]:
    out: set[int] = set()
    for aid, app in apps.items():
        if aid != exclude:
            out.update(p for p in service_ports(app) if p)
    return out


# ---- the task environment --------------------------------------------------------------
def _port_mappings(app: dict[str, Any]) -> list[dict[str, Any]]:
    return list((app.get("container") or {}).get("portMappings") or [])


def effective_ports(app: dict[str, Any], host_ports: list[int]) -> list[int | None]:
    """One entry per port definition or port mapping: its host port, or None for a mapping
    without one (container networking; Marathon's ``Seq[Option[Int]]``).

    Args:
        app: the app definition.
        host_ports: the host ports the task got, in order (``Match.host_ports``).
    """
    if "portDefinitions" in app:
        return list(host_ports)
    assigned = iter(host_ports)
    return [
        next(assigned, None) if pm.get("hostPort") is not None else None
        for pm in _port_mappings(app)
    ]


def _env_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", name).upper()


def ports_env(
    requested: list[tuple[str | None, int]],
    effective: list[int | None],
    rng: random.Random | None = None,
) -> dict[str, str]:
    """Marathon's ``EnvironmentHelper.portsEnv``: ``PORT0..n``, ``PORT_<port>``, ``PORT_<NAME>``,
    ``PORT`` and ``PORTS``.

    Args:
        requested: (name, port) of each port definition (its ``port``) or port mapping (its
            ``containerPort``); 0 where any port will do.
        effective: the host port of each (None for a container port without a host port).
        rng: picks the container port of a mapping with neither a container nor a host port.

    A mapping without a host port gives its container port in ``PORTn`` and its by-port and
    by-name variables, but Marathon leaves it out of ``PORT``/``PORTS`` (only host ports and
    generated container ports are "assigned" there).
    """
    if not effective:
        return {}
    rng = rng or random.Random()
    env: dict[str, str] = {}
    consumed = {p for _, p in requested} | {p for p in effective if p is not None}
    generated: dict[int, int] = {}
    for i, port in enumerate(effective):
        if port is not None:
            env[f"PORT{i}"] = str(port)
        elif i < len(requested):
            container_port = requested[i][1]
            if container_port == 0:
                # carefully pick a port no other variable of this task names, above 1024
                while True:
                    candidate = rng.randrange(1025, 65536)
                    if candidate not in consumed:
                        break
                consumed.add(candidate)
                generated[i] = candidate
                container_port = candidate
            env[f"PORT{i}"] = str(container_port)
    for i, ((_, req), port) in enumerate(zip(requested, effective, strict=False)):
        if port is not None:
            env[f"PORT_{req if req else port}"] = str(port)
        elif req:
            env[f"PORT_{req}"] = str(req)
        else:
            env[f"PORT_{generated[i]}"] = str(generated[i])
    for (name, req), port in zip(requested, effective, strict=False):
        if name:
            env[f"PORT_{_env_name(name)}"] = str(port if port is not None else req)
    assigned = [p for p in effective if p is not None] + list(generated.values())
    if assigned:
        env["PORT"] = str(assigned[0])
    env["PORTS"] = ",".join(str(p) for p in assigned)
    return env


def port_requests(app: dict[str, Any]) -> list[tuple[str | None, int]]:
    """(name, port) of each port definition, else (name, containerPort) of each mapping."""
    if "portDefinitions" in app:
        return [(p.get("name"), int(p.get("port", 0))) for p in app["portDefinitions"]]
    return [(pm.get("name"), int(pm.get("containerPort", 0))) for pm in _port_mappings(app)]


def task_env(
    app: dict[str, Any], *, host: str, host_ports: list[int], task_id: str
) -> dict[str, str]:
    """The environment Marathon gives a task (EnvironmentHelper)."""
    env = ports_env(port_requests(app), effective_ports(app, host_ports))
    env["HOST"] = host
    env["MESOS_TASK_ID"] = task_id
    env["MARATHON_APP_ID"] = app["id"]
    env["MARATHON_APP_VERSION"] = str(app.get("version", ""))
    image = ((app.get("container") or {}).get("docker") or {}).get("image")
    if image:
        env["MARATHON_APP_DOCKER_IMAGE"] = str(image)
    env["MARATHON_APP_RESOURCE_CPUS"] = str(float(app["cpus"]))
    env["MARATHON_APP_RESOURCE_MEM"] = str(float(app["mem"]))
    env["MARATHON_APP_RESOURCE_DISK"] = str(float(app["disk"]))
    env["MARATHON_APP_RESOURCE_GPUS"] = str(int(app.get("gpus", 0)))
    # EnvironmentHelper.labelsToEnvVars: runs of other characters become one "_"
    labels = {
        re.sub(r"[^a-zA-Z0-9_]+", "_", k).upper(): str(v)
        for k, v in (app.get("labels") or {}).items()
        if len(k) < 493 and len(str(v)) < 512
    }
    env["MARATHON_APP_LABELS"] = " ".join(labels)
    for k, v in labels.items():
        env[f"MARATHON_APP_LABEL_{k}"] = v
    for k, v in (app.get("env") or {}).items():
        if isinstance(v, str):
            env[k] = v
    return env


def merge_update(current: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """A partial update (PATCH, or PUT with ``partialUpdate=true``) applied to ``current``.

    Top-level fields of the update replace the current ones; runtime fields are ignored.
    """
    out = {k: copy.deepcopy(v) for k, v in current.items() if k not in RUNTIME_FIELDS}
    for k, v in update.items():
        if k in RUNTIME_FIELDS or k == "id":
            continue
        if k == "cmd" and v is not None:
            out.pop("args", None)
        if k == "args" and v is not None:
            out.pop("cmd", None)
        if k == "ports":
            out.pop("portDefinitions", None)
        if v is None:
            out.pop(k, None)
        else:
            out[k] = copy.deepcopy(v)
    return out
