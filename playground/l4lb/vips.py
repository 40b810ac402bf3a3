"""VIPs from the leading master's state, as DC/OS's layer-4 load balancer reads them.

A task's DiscoveryInfo ports carry the labels of the app's port definitions (or port
mappings); a label ``VIP_{n}`` on a port makes that port a backend of a VIP:

* ``"/name:port"`` (or ``"name:port"``) is a *named* VIP, reachable as
  ``<name>.marathon.l4lb.thisdcos.directory:<port>``; slashes inside the name are
  dropped (``/prod/web`` becomes ``prodweb``), as DC/OS does;
* ``"10.0.0.1:80"`` is an *IP* VIP.

DC/OS routes a VIP's address in the kernel (IPVS) on every node. The kit cannot take over
an arbitrary address without root, so every VIP is *served at* a loopback address of the
cluster's own VIP block, ``127.78.K.0/24`` for the cluster's block K (one IP on hosts
with only 127.0.0.1, with ports from a per-cluster range). The address is derived from
the VIP alone, so every master's balancer and the DNS agree on it without talking.
A VIP port below 1024 that this user may not bind is served 10000 higher (80 -> 10080).

Backends are the ``TASK_RUNNING`` tasks of the VIP, on their agent's address and host
port, or on the task's own IP and container port for a port of a container network
(``network-scope: container``). A task whose latest status says ``healthy: false``
(a Mesos-level health check failing), or whose health check results in Marathon are all
dead, is left out. (DC/OS's balancer sees only Mesos's results; the kit's Marathon runs
the Mesos-level checks itself, so their results live in Marathon, which is asked too.)
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any

#: The zone named VIPs live in.
L4LB_DOMAIN = "l4lb.thisdcos.directory"
#: The loopback /16 the VIP blocks are cut from (nodes are in 127.77, IPAM in 127.80+).
VIP_PREFIX = "127.78"
#: Host octets of a VIP block: .1 is left out, so are .0 and .255.
VIP_HOSTS = range(2, 255)
#: Shared-IP mode: VIPs on 127.0.0.1, ports from 61000 + 40 * (block % 100), 40 slots.
SHARED_BASE = 61000
SHARED_SLOTS = 40
#: Added to a VIP port below 1024 when this user may not bind it.
LOW_PORT_SHIFT = 10000

_LABEL = re.compile(r"^VIP_(\d+)$")
_NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$")


class VipError(ValueError):
    """A ``VIP_n`` label's value is not ``/name:port`` nor ``ip:port``."""


@dataclass(frozen=True, order=True)
class VipKey:
    """What a ``VIP_n`` label names: a named VIP or an IP VIP, and its port."""

    kind: str  #: ``name`` or ``ip``
    name: str  #: the DNS label of a named VIP (slashes dropped), or the IP
    port: int
    protocol: str = "tcp"

    @property
    def label(self) -> str:
        """The VIP as users write it (``/web:80``, ``10.0.0.1:80``)."""
        return f"/{self.name}:{self.port}" if self.kind == "name" else f"{self.name}:{self.port}"

    @property
    def fqdn(self) -> str | None:
        return f"{self.name}.marathon.{L4LB_DOMAIN}" if self.kind == "name" else None


def parse_vip(value: str, protocol: str = "tcp") -> VipKey:
    """The VIP of a label value.

    Raises:
        VipError: not ``[/]name:port`` nor ``ip:port``, or a port out of 1-65535.
    """
    text = str(value).strip()
    head, sep, port_text = text.rpartition(":")
    if not sep or not head or not port_text.isdigit():
        raise VipError(f"VIP {value!r} is not '/name:port' nor 'ip:port'")
    port = int(port_text)
    if not 0 < port < 65536:
        raise VipError(f"VIP {value!r}: port {port} is not in 1-65535")
    try:
        ip = ipaddress.ip_address(head)
    except ValueError:
        ip = None
    if ip is not None:
        if ip.version != 4:
            raise VipError(f"VIP {value!r}: only IPv4 VIPs are served")
        return VipKey("ip", str(ip), port, protocol)
    name = head.strip("/").replace("/", "").lower()
    if not _NAME.match(name) or ".." in name:
        raise VipError(
            f"VIP {value!r}: the name must be letters, digits, '-', '_' or '.' "
            "(at most 63), optionally after a '/'"
        )
    return VipKey("name", name, port, protocol)


@dataclass(frozen=True)
class Backend:
    task_id: str
    host: str
    port: int
    agent_host: str = ""
    healthy: bool | None = None  #: the latest Mesos health result (None: no check)
    app_id: str = ""


@dataclass
class Vip:
    key: VipKey
    written: str = ""  #: the label's value as the first app wrote it
    host: str = ""  #: where the kit serves it
    port: int = 0
    backends: list[Backend] = field(default_factory=list)
    apps: set[str] = field(default_factory=set)

    def to_json(self) -> dict[str, Any]:
        return {
            "vip": self.key.label,
            "label": self.written or self.key.label,
            "name": self.key.name if self.key.kind == "name" else None,
            "fqdn": self.key.fqdn,
            "port": self.key.port,
            "protocol": self.key.protocol,
            "address": f"{self.host}:{self.port}",
            "host": self.host,
            "served_port": self.port,
            "apps": sorted(self.apps),
            "backends": [
                {
                    "task_id": b.task_id,
                    "app_id": b.app_id,
                    "host": b.host,
                    "port": b.port,
                    "agent_host": b.agent_host,
                    "healthy": b.healthy,
                }
                for b in sorted(self.backends, key=lambda b: (b.host, b.port, b.task_id))
            ],
        }


@dataclass
class VipTable:
    vips: dict[VipKey, Vip] = field(default_factory=dict)
    #: Labels that could not be used: ``{"task_id", "label", "message"}``.
    notices: list[dict[str, str]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "vips": [v.to_json() for _, v in sorted(self.vips.items())],
            "notices": self.notices,
        }


# --------------------------------------------------------------------------------------
# Where a VIP is served
# --------------------------------------------------------------------------------------


def _hash(text: str) -> int:
    return int.from_bytes(hashlib.blake2s(text.encode(), digest_size=8).digest(), "big")


def place(
    keys: list[VipKey], addressing: dict[str, Any], low_ports: bool
) -> dict[VipKey, tuple[str, int]]:
    """The loopback address and port each VIP is served at.

    The host octet (per-IP mode) or the port slot (shared-IP mode) comes from a hash of
    the VIP's name or IP; collisions are settled in sorted order, so the same set of VIPs
    always gets the same addresses on every master. A VIP left out of the result has no
    free address (more than 253 VIPs on one port, or 40 in shared-IP mode).

    Args:
        keys: every VIP of the cluster.
        addressing: ``cluster.json``'s ``addressing`` (``mode`` and ``block``).
        low_ports: whether ports below 1024 may be bound.
    """
    block = int(addressing.get("block") or 1)
    shared = addressing.get("mode") == "shared-ip"
    taken: set[tuple[str, int]] = set()
    out: dict[VipKey, tuple[str, int]] = {}
    slots: dict[str, int] = {}  # one slot per VIP name / IP in shared mode
    for key in sorted(keys):
        ident = f"{key.kind}:{key.name}"
        if shared:
            base = SHARED_BASE + SHARED_SLOTS * (block % 100)
            if ident not in slots:
                used = set(slots.values())
                slot = _hash(ident) % SHARED_SLOTS
                for _ in range(SHARED_SLOTS):
                    if slot not in used:
                        break
                    slot = (slot + 1) % SHARED_SLOTS
                slots[ident] = slot
            # Shared mode: one port per VIP (name + port), from the cluster's range.
            port = base + (slots[ident] + _hash(f"{ident}:{key.port}")) % SHARED_SLOTS
            for _ in range(SHARED_SLOTS):
                if ("127.0.0.1", port) not in taken:
                    break
                port = base + (port - base + 1) % SHARED_SLOTS
            else:
                continue  # every port of the range is taken: not served
            addr = ("127.0.0.1", port)
        else:
            n = len(VIP_HOSTS)
            octet = VIP_HOSTS[_hash(ident) % n]
            port = key.port + LOW_PORT_SHIFT if key.port < 1024 and not low_ports else key.port
            host = f"{VIP_PREFIX}.{block}.{octet}"
            for _ in range(n):
                if (host, port) not in taken:
                    break
                octet = VIP_HOSTS[(octet - VIP_HOSTS[0] + 1) % n]
                host = f"{VIP_PREFIX}.{block}.{octet}"
            else:
                continue  # every address of the block has this port taken: not served
            addr = (host, port)
        taken.add(addr)
        out[key] = addr
    return out


# --------------------------------------------------------------------------------------
# From the master's state
# --------------------------------------------------------------------------------------


def carry_over(new: VipTable, old: VipTable, hosts: set[str]) -> VipTable:
    """Keep ``old``'s backends on the agents at ``hosts`` in ``new``.

    A master elected a moment ago knows the agents of its registry but not their tasks
    until they re-register (its state lists them as ``recovered_slaves``); their tasks
    still run, so the balancer keeps serving them rather than dropping them for a few
    seconds at every failover.
    """
    if not hosts:
        return new
    for key, vip in old.vips.items():
        kept = [b for b in vip.backends if b.agent_host in hosts]
        if not kept:
            continue
        target = new.vips.get(key)
        if target is None:
            target = new.vips[key] = Vip(key, written=vip.written, host=vip.host, port=vip.port)
        target.apps |= vip.apps
        seen = {b.task_id for b in target.backends}
        target.backends.extend(b for b in kept if b.task_id not in seen)
    return new


def recovering_hosts(state: dict[str, Any]) -> set[str]:
    """Hosts of the agents the state lists as recovered but not re-registered."""
    return {
        str(s.get("hostname"))
        for s in state.get("recovered_slaves") or []
        if isinstance(s, dict) and s.get("hostname")
    }


def marathon_health(tasks: list[dict[str, Any]]) -> dict[str, bool]:
    """Task id -> alive from Marathon's ``GET /v2/tasks`` (tasks with health results only):
    alive when any result is alive, as marathon-lb counts it."""
    out: dict[str, bool] = {}
    for t in tasks:
        results = t.get("healthCheckResults") or []
        if results and t.get("id"):
            out[str(t["id"])] = any(bool(r.get("alive")) for r in results)
    return out


def _labels(value: Any) -> dict[str, str]:
    if isinstance(value, dict):
        value = value.get("labels")
    return {
        str(x.get("key")): str(x.get("value", ""))
        for x in value or []
        if isinstance(x, dict) and x.get("key") is not None
    }


def _latest(statuses: list[dict[str, Any]]) -> dict[str, Any] | None:
    best: dict[str, Any] | None = None
    for s in statuses:
        if best is None or float(s.get("timestamp", 0)) >= float(best.get("timestamp", 0)):
            best = s
    return best


def _task_ips(status: dict[str, Any] | None, network: str) -> list[str]:
    out: list[str] = []
    for ni in ((status or {}).get("container_status") or {}).get("network_infos") or []:
        if network and ni.get("name") != network:
            continue
        for a in ni.get("ip_addresses") or []:
            if a.get("ip_address"):
                out.append(str(a["ip_address"]))
    return out


def _app_id(task: dict[str, Any]) -> str:
    """``web.prod`` (Marathon's Mesos task name) -> ``/prod/web``."""
    return "/" + "/".join(reversed([p for p in str(task.get("name") or "").split(".") if p]))


def table(
    state: dict[str, Any],
    addressing: dict[str, Any],
    low_ports: bool,
    marathon_health: dict[str, bool] | None = None,
) -> VipTable:
    """The VIPs of a master's ``/master/state`` and their backends.

    Args:
        marathon_health: task id -> alive, for tasks Marathon has health results of (its
            own HTTP/TCP checks and the Mesos-level ones it runs for the agents); a task
            Marathon calls dead is unhealthy here too.
    """
    marathon_health = marathon_health or {}
    agents = {
        str(s.get("id")): str(s.get("hostname") or "")
        for s in state.get("slaves") or []
        if isinstance(s, dict)
    }
    out = VipTable()
    for fw in state.get("frameworks") or []:
        for task in fw.get("tasks") or []:
            tid = str(task.get("id") or "")
            ports = ((task.get("discovery") or {}).get("ports") or {}).get("ports") or []
            for dport in ports:
                labels = _labels(dport.get("labels"))
                vip_labels = {k: v for k, v in labels.items() if _LABEL.match(k)}
                if not vip_labels:
                    continue
                for lname, value in sorted(vip_labels.items()):
                    for proto in str(dport.get("protocol") or "tcp").split(","):
                        try:
                            key = parse_vip(value, proto)
                        except VipError as exc:
                            out.notices.append(
                                {"task_id": tid, "label": lname, "message": str(exc)}
                            )
                            continue
                        if proto != "tcp":
                            out.notices.append(
                                {
                                    "task_id": tid,
                                    "label": lname,
                                    "message": f"VIP {key.label}: only TCP VIPs are served "
                                    f"(this port is {proto})",
                                }
                            )
                            continue
                        vip = out.vips.setdefault(key, Vip(key, written=value))
                        app_id = _app_id(task)
                        vip.apps.add(app_id)
                        if task.get("state") != "TASK_RUNNING":
                            continue
                        status = _latest(task.get("statuses") or [])
                        healthy = (status or {}).get("healthy")
                        if marathon_health.get(tid) is False:
                            healthy = False
                        elif healthy is None and tid in marathon_health:
                            healthy = True
                        agent = agents.get(str(task.get("slave_id") or ""), "")
                        if labels.get("network-scope") == "container":
                            ips = _task_ips(status, labels.get("network-name", ""))
                            host = ips[0] if ips else ""
                        else:
                            host = agent
                        if not host:
                            continue
                        vip.backends.append(
                            Backend(
                                task_id=tid,
                                host=host,
                                port=int(dport.get("number") or 0),
                                agent_host=agent,
                                healthy=healthy if isinstance(healthy, bool) else None,
                                app_id=app_id,
                            )
                        )
    placed = place(list(out.vips), addressing, low_ports)
    for key in sorted(out.vips):
        if key not in placed:
            vip = out.vips.pop(key)
            out.notices.append(
                {
                    "task_id": ", ".join(sorted({b.task_id for b in vip.backends})),
                    "label": vip.written,
                    "message": f"VIP {key.label}: no free address left for it in the "
                    "cluster's VIP block; remove VIPs you no longer need",
                }
            )
            continue
        out.vips[key].host, out.vips[key].port = placed[key]
    return out
