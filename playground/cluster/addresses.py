"""Addresses: one loopback IP per node on Linux, disjoint ports elsewhere.

On Linux all of 127.0.0.0/8 is local, so each node of a cluster gets its own IP in a
/24 block ``127.77.K.0`` and every agent offers the real ports 31000-32000. Clusters of
different state directories get different blocks: the block is derived from the state
directory and moved on while its addresses are taken. Where only 127.0.0.1 exists
(macOS without aliases) the kit falls back to one IP with disjoint port ranges.
"""

from __future__ import annotations

import errno
import hashlib
import socket
import sys
from dataclasses import dataclass
from typing import Any

from playground.cluster.topology import NodeSpec, Topology
from playground.errors import PlaygroundError

PREFIX = "127.77"
BLOCKS = 254
#: Well-known ports of the real systems, used in per-IP mode.
WELL_KNOWN = {
    "coordinator": 2181,
    "master": 5050,
    "agent": 5051,
    "public-agent": 5051,
    "marathon": 8080,
    "monitor": 9090,  # Prometheus's default port
    "storage": 9001,  # Portworx's REST API port
    "edge": 9090,  # marathon-lb's stats and admin port (on the public agent's address)
}
#: Host offset of each role inside a block.
ROLE_BASE = {
    "coordinator": 2,
    "marathon": 3,
    "storage": 4,
    "monitor": 5,
    "master": 10,
    "agent": 20,
    "public-agent": 60,
}
#: marathon-lb's HTTP and HTTPS listeners; without the right to bind them, these instead.
EDGE_HTTP_PORTS = ((80, 443), (8080, 8443))
TASK_PORTS = (31000, 32000)


class AddressError(PlaygroundError):
    """No free addresses, or this host cannot give nodes their own loopback IPs."""


@dataclass(frozen=True)
class NodeAddress:
    host: str
    port: int
    task_ports: tuple[int, int] | None = None
    #: Extra listeners of the node (the edge's ``http`` and ``https`` ports).
    extra: tuple[tuple[str, int], ...] = ()

    def port_of(self, name: str) -> int | None:
        return dict(self.extra).get(name)

    @property
    def hostport(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


def per_ip_supported() -> bool:
    """True when binding to an arbitrary 127.x address works (Linux, or macOS with aliases)."""
    if sys.platform.startswith("linux"):
        return True
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((f"{PREFIX}.1.2", 0))
        return True
    except OSError:
        return False


def port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            if exc.errno == errno.EADDRNOTAVAIL:
                raise AddressError(
                    f"address {host} is not available on this host",
                    hint="run `playground doctor` for the one-time loopback alias commands",
                ) from None
            raise
    return True


def node_index(spec: NodeSpec) -> int:
    return int(spec.name.rsplit("-", 1)[1])


def plan(topology: Topology, mode: str, block: int) -> dict[str, NodeAddress]:
    """The address of every node of ``topology`` in ``block``."""
    out: dict[str, NodeAddress] = {}
    if mode == "per-ip":
        for spec in topology.nodes:
            role = "public-agent" if spec.role == "edge" else spec.role
            host = f"{PREFIX}.{block}.{ROLE_BASE[role] + node_index(spec) - 1}"
            extra: tuple[tuple[str, int], ...] = ()
            if spec.role == "edge":
                http, https = EDGE_HTTP_PORTS[0 if low_ports_allowed() else 1]
                extra = (("http", http), ("https", https))
            out[spec.name] = NodeAddress(
                host, WELL_KNOWN[spec.role], TASK_PORTS if spec.is_agent else None, extra
            )
        return out
    # shared-ip: 127.0.0.1, API ports 20000 + 100*block + n, task ports in slices of 100.
    agents = [s for s in topology.nodes if s.is_agent]
    for i, spec in enumerate(topology.nodes):
        port = 20000 + 100 * (block % 100) + i
        task_ports = None
        if spec.is_agent:
            j = agents.index(spec)
            lo = 31000 + 1000 * (block % 30) + 100 * j
            task_ports = (lo, lo + 99)
        extra = ()
        if spec.role == "edge":
            extra = (("http", port + 70), ("https", port + 85))  # beside the DNS ports (+50..)
        out[spec.name] = NodeAddress("127.0.0.1", port, task_ports, extra)
    return out


def low_ports_allowed() -> bool:
    """True when this user may bind ports below 1024 (root, or a lowered
    ``net.ipv4.ip_unprivileged_port_start``, as in many containers)."""
    import os

    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return True
    try:
        with open("/proc/sys/net/ipv4/ip_unprivileged_port_start") as fh:
            return int(fh.read().strip()) <= 80
    except (OSError, ValueError):
        return False


def choose(topology: Topology, seed: str) -> tuple[str, int, dict[str, NodeAddress]]:
    """Pick the addressing mode and a free block for a new cluster.

    Args:
        topology: the nodes to place.
        seed: a stable string (the state directory) so a cluster tends to keep its block.
    """
    mode = "per-ip" if per_ip_supported() else "shared-ip"
    start = int(hashlib.sha256(seed.encode()).hexdigest(), 16) % BLOCKS
    for k in range(BLOCKS):
        block = (start + k) % BLOCKS + 1
        addrs = plan(topology, mode, block)
        if all(
            port_free(a.host, p) for a in addrs.values() for p in (a.port, *dict(a.extra).values())
        ) and not dns_ports_taken(topology, addrs, mode, block):
            return mode, block, addrs
    raise AddressError(
        "every address block is in use by other clusters on this host",
        hint="stop a cluster you no longer need (`playground down --state-dir ...`)",
    )


EXTRA_KEYS = ("http", "https")


def from_json(a: dict[str, Any]) -> NodeAddress:
    """One node's address as ``cluster.json`` records it."""
    tp = a.get("task_ports")
    extra = tuple((k, int(a[k])) for k in EXTRA_KEYS if k in a)
    return NodeAddress(a["host"], int(a["port"]), tuple(tp) if tp else None, extra)


def to_json(addrs: dict[str, NodeAddress]) -> dict[str, Any]:
    return {
        n: {
            "host": a.host,
            "port": a.port,
            **({"task_ports": list(a.task_ports)} if a.task_ports else {}),
            **{k: v for k, v in a.extra},
        }
        for n, a in addrs.items()
    }


#: mesos-dns's ports in per-IP mode: DNS 53 moved to 8053 (no privileged port), HTTP 8123.
DNS_PORT = 8053
DNS_HTTP_PORT = 8123


def dns_ports(addressing: dict[str, Any], master_index: int) -> tuple[int, int]:
    """(DNS port, HTTP API port) of the mesos-dns beside a master, on the master's host.

    Args:
        addressing: ``cluster.json``'s ``addressing`` (``mode`` and ``block``).
        master_index: the master's position among the topology's masters (0 for master-1).

    Per-IP mode uses mesos-dns's own ports on each master's address; shared-IP mode gives
    master ``i`` the ports ``20000 + 100 * (block % 100) + 50 + 2 * i`` and the next one,
    above the node API ports of the block.
    """
    if addressing.get("mode") == "shared-ip":
        port = 20000 + 100 * (int(addressing.get("block", 0)) % 100) + 50 + 2 * master_index
        return port, port + 1
    return DNS_PORT, DNS_HTTP_PORT


def udp_port_free(host: str, port: int) -> bool:
    """Whether ``host:port`` is free for a UDP socket (the DNS listens on both protocols)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def dns_ports_taken(
    topology: Topology, addrs: dict[str, NodeAddress], mode: str, block: int
) -> list[str]:
    """``host:port`` of every DNS port (DNS on UDP and TCP, HTTP API on TCP) that is taken."""
    taken = []
    for i, m in enumerate(topology.masters):
        if m.name not in addrs:
            continue
        host = addrs[m.name].host
        dns, http = dns_ports({"mode": mode, "block": block}, i)
        if not (port_free(host, dns) and udp_port_free(host, dns)):
            taken.append(f"{host}:{dns}")
        if not port_free(host, http):
            taken.append(f"{host}:{http}")
    return taken
