"""The kit's networking layer: network partitions without root.

Nodes talk to each other over HTTP on their own loopback addresses; the kernel offers no
way to drop packets between two loopback addresses without privileges. So partitions are
made where the kit's own traffic starts: every HTTP client of a node process carries a
trace hook that refuses requests to peers it is cut off from (as a connection error, the
way a dropped SYN ends after its timeout), and long-lived streams (Marathon's
subscription to the master) are closed when a partition begins.

The partition table is ``STATE/network.json`` (``schema_version`` 1), written by the fault
registry and read (cached by modification time) by every node::

    {"schema_version": 1, "partitions": [{"id": "f-3", "nodes": ["agent-1"]}]}

Each partition isolates its nodes from every node outside it (they still reach each
other). Traffic from outside the cluster -- the ``playground`` commands, a browser, a
learner's ``curl`` -- is not affected: a partition is between nodes. What counts as a
node's address: its HTTP address, and on agents every port of the agent's address (the
tasks'), so Marathon's health checks of tasks on a partitioned agent fail too.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from yarl import URL

from playground.cluster.statedir import StateDir, atomic_write

if TYPE_CHECKING:  # aiohttp is imported when a node makes its hooks, not by the CLI
    import aiohttp

SCHEMA_VERSION = 1
FILE_NAME = "network.json"
#: How long a node trusts its cached copy of the table before it looks at the file again.
REFRESH_SECONDS = 0.05


_partitioned: type[Exception] | None = None


def partitioned_error() -> type[Exception]:
    """The error of a request cut off by a partition (an ``aiohttp.ClientConnectionError``,
    so a node's code handles it as any failed connection)."""
    global _partitioned
    if _partitioned is None:
        import aiohttp

        class Partitioned(aiohttp.ClientConnectionError):
            """A request to a peer this node is cut off from."""

        _partitioned = Partitioned
    return _partitioned


def table_path(state: StateDir) -> Path:
    return state.root / FILE_NAME


def read_table(state: StateDir) -> dict[str, Any]:
    """The partition table (empty when there is none or it cannot be read)."""
    try:
        data = json.loads(table_path(state).read_text())
    except (OSError, ValueError):
        return {"schema_version": SCHEMA_VERSION, "partitions": []}
    if not isinstance(data, dict) or data.get("schema_version") != SCHEMA_VERSION:
        return {"schema_version": SCHEMA_VERSION, "partitions": []}
    return data


def add_partition(state: StateDir, pid: str, nodes: list[str]) -> None:
    """Cut ``nodes`` off from the rest of the cluster (the caller holds the state lock)."""
    data = read_table(state)
    data["partitions"] = [p for p in data["partitions"] if p.get("id") != pid]
    data["partitions"].append({"id": pid, "nodes": sorted(nodes)})
    _write(state, data)


def remove_partitions(state: StateDir, ids: set[str]) -> None:
    """End the partitions with these ids (the caller holds the state lock)."""
    data = read_table(state)
    kept = [p for p in data["partitions"] if p.get("id") not in ids]
    if len(kept) != len(data["partitions"]):
        data["partitions"] = kept
        _write(state, data)


def _write(state: StateDir, data: dict[str, Any]) -> None:
    data["schema_version"] = SCHEMA_VERSION
    atomic_write(table_path(state), json.dumps(data, indent=2, sort_keys=True).encode())


class Network:
    """One node's view of the partition table.

    Args:
        state: the cluster's state directory.
        me: this node's name.
        addresses: ``cluster.json``'s ``addresses`` (node name -> host, port, task ports).
    """

    def __init__(self, state: StateDir, me: str, addresses: dict[str, dict[str, Any]]) -> None:
        self.state = state
        self.me = me
        self._by_hostport: dict[tuple[str, int], str] = {}
        self._by_host: dict[str, str] = {}
        self._task_ranges: list[tuple[str, int, int, str]] = []
        hosts: dict[str, list[str]] = {}
        for name, a in addresses.items():
            self._by_hostport[(str(a["host"]), int(a["port"]))] = name
            hosts.setdefault(str(a["host"]), []).append(name)
            tp = a.get("task_ports")
            if tp:
                self._task_ranges.append((str(a["host"]), int(tp[0]), int(tp[1]), name))
        # Per-IP mode: every port of a node's own address is that node's (its tasks').
        # The edge shares the public agent's address: that address's other ports are the
        # agent's (its tasks').
        for host, names in hosts.items():
            agents = [n for n in names if addresses[n].get("task_ports")]
            if len(names) == 1:
                self._by_host[host] = names[0]
            elif len(agents) == 1 and all(n.startswith("edge-") for n in names if n not in agents):
                self._by_host[host] = agents[0]
        self._mtime: int | None = None
        self._checked = 0.0
        self._groups: list[frozenset[str]] = []

    # ---- the table ----------------------------------------------------------------
    def _refresh(self) -> None:
        now = time.monotonic()
        if now - self._checked < REFRESH_SECONDS:
            return
        self._checked = now
        try:
            mtime = os.stat(table_path(self.state)).st_mtime_ns
        except OSError:
            mtime = None
        if mtime == self._mtime:
            return
        self._mtime = mtime
        parts = read_table(self.state)["partitions"] if mtime is not None else []
        self._groups = [frozenset(p.get("nodes", [])) for p in parts]

    def node_at(self, host: str, port: int | None) -> str | None:
        """The node owning ``host:port`` (its HTTP port, or a task port of an agent)."""
        if port is not None:
            name = self._by_hostport.get((host, port))
            if name is not None:
                return name
        name = self._by_host.get(host)
        if name is not None:
            return name
        if port is not None:
            for h, lo, hi, n in self._task_ranges:
                if h == host and lo <= port <= hi:
                    return n
        return None

    def cut_off(self, peer: str) -> bool:
        """Whether this node and ``peer`` are on different sides of a partition."""
        if peer == self.me:
            return False
        self._refresh()
        return any((self.me in g) != (peer in g) for g in self._groups)

    def blocks(self, url: str | URL) -> bool:
        """Whether a request from this node to ``url`` is cut off by a partition."""
        u = url if isinstance(url, URL) else URL(url)
        if u.host is None:
            return False
        peer = self.node_at(u.host, u.port)
        return peer is not None and self.cut_off(peer)

    # ---- client hooks ---------------------------------------------------------------
    def trace_config(self) -> aiohttp.TraceConfig:
        """A client hook refusing requests to peers this node is cut off from."""
        import aiohttp

        error = partitioned_error()

        async def on_start(
            _session: aiohttp.ClientSession, _ctx: SimpleNamespace, params: Any
        ) -> None:
            if self.blocks(params.url):
                raise error(f"{params.url.host}:{params.url.port}: network partition")

        tc = aiohttp.TraceConfig()
        tc.on_request_start.append(on_start)
        return tc

    async def wait_cut_off(self, url: str | URL, poll: float = 0.1) -> None:
        """Return once a partition cuts this node off from ``url`` (for open streams)."""
        while not self.blocks(url):
            await asyncio.sleep(poll)


_current: Network | None = None


def install(state: StateDir, me: str, addresses: dict[str, dict[str, Any]]) -> Network:
    """Make ``me``'s view of the table this process's (node processes call it at start)."""
    global _current
    _current = Network(state, me, addresses)
    return _current


def current() -> Network | None:
    """This process's network view, if it is a node process."""
    return _current


def trace_configs() -> list[aiohttp.TraceConfig]:
    """Trace hooks for a node's HTTP client sessions (none outside node processes)."""
    return [_current.trace_config()] if _current is not None else []
