"""What the edge serves: the contract between the configuration builder and the data planes.

:func:`playground.edge.config.build` turns Marathon's apps into an :class:`EdgeConfig`;
the kit's proxy (:mod:`playground.edge.proxy`) and the HAProxy renderer
(:func:`playground.edge.config.render_haproxy`) both read only this model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: Balance algorithms the edge honours (``HAPROXY_{n}_BALANCE``).
BALANCES = ("roundrobin", "leastconn", "source")
#: The cookie marathon-lb's sticky backends insert.
STICKY_COOKIE = "mesosphere_server_id"


@dataclass(frozen=True)
class Server:
    """One task port behind a service (an HAProxy ``server`` line)."""

    name: str  #: marathon-lb's server name (unique inside its backend)
    task_id: str
    host: str  #: the address the edge connects to (the task's IP)
    port: int
    agent_host: str = ""  #: the agent the task runs on
    healthy: bool = True  #: alive by marathon-lb's rules (one health check result alive, if any)
    draining: bool = False  #: kept for open connections, no new ones (zdd)
    weight: int = 1
    #: The port HAProxy health-checks instead of ``port`` (the check's fixed ``port``, or the
    #: task's port at ``HAPROXY_{n}_BACKEND_HEALTHCHECK_PORT_INDEX``); None: ``port`` itself.
    check_port: int | None = None
    #: Why marathon-lb gives this server no traffic ("" when it is healthy).
    reason: str = ""


@dataclass(frozen=True)
class Service:
    """One (app, port index) the edge serves: a frontend on ``service_port`` and a backend."""

    app_id: str
    port_index: int
    service_port: int  #: the port the edge listens on (``HAPROXY_{n}_PORT`` or servicePort)
    backend: str  #: marathon-lb's backend name, ``<app id with / as _>_<servicePort>``
    mode: str = "tcp"  #: ``tcp`` or ``http``
    vhosts: tuple[str, ...] = ()  #: ``HAPROXY_{n}_VHOST`` (comma-separated in the label)
    path: str | None = None  #: ``HAPROXY_{n}_PATH``
    balance: str = "roundrobin"
    sticky: bool = False
    bind_address: str = "*"
    #: ``HAPROXY_{n}_BACKEND_WEIGHT`` (1 when a path is set and no weight is): vhost routing
    #: rules are tried from the largest weight down, as HAProxy evaluates ``use_backend`` lines.
    backend_weight: int = 0
    groups: tuple[str, ...] = ()
    servers: tuple[Server, ...] = ()
    #: The app's Marathon health check for this port, if any (for HAProxy check lines).
    health_check: dict[str, Any] | None = None
    #: zdd: ``HAPROXY_DEPLOYMENT_GROUP``, ``HAPROXY_DEPLOYMENT_COLOUR``, alt port, ...
    deployment: dict[str, Any] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def live_servers(self) -> tuple[Server, ...]:
        """The servers that get new traffic: healthy and not draining."""
        return tuple(s for s in self.servers if s.healthy and not s.draining)


@dataclass(frozen=True)
class Notice:
    """A problem found while building: a malformed label (skipped) or a conflict."""

    kind: str  #: ``malformed-label``, ``unsupported-label`` (kept, not applied) or ``conflict``
    app_id: str
    message: str
    label: str | None = None


@dataclass(frozen=True)
class EdgeConfig:
    """Everything one edge serves, built from one view of Marathon's apps."""

    group: str
    services: tuple[Service, ...] = ()
    notices: tuple[Notice, ...] = ()

    def by_port(self) -> dict[int, Service]:
        return {s.service_port: s for s in self.services}

    def http_services(self) -> tuple[Service, ...]:
        """Services reachable on the vhost listener (HTTP mode with at least one vhost)."""
        return tuple(s for s in self.services if s.mode == "http" and s.vhosts)
