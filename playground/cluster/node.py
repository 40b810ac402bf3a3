"""The entry point of every node process: ``python -m playground.cluster.node STATE NODE``.

A node reads its own record from ``cluster.json`` (role, address, peers), serves its
HTTP API on its address and runs until SIGTERM (clean stop) or SIGKILL (a crash).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from playground.cluster import auth, network, statedir
from playground.cluster import topology as topology_mod
from playground.cluster.addresses import NodeAddress, from_json
from playground.cluster.procs import title
from playground.cluster.statedir import StateDir, set_event_source
from playground.cluster.timescale import TimeScale

log = logging.getLogger("playground.node")


@dataclass
class NodeContext:
    """What a node process knows about itself and its cluster."""

    state: StateDir
    name: str
    cluster: dict[str, Any]
    spec: topology_mod.NodeSpec
    topology: topology_mod.Topology
    address: NodeAddress
    time: TimeScale
    #: The cluster's platform token (from the secret store; never logged or passed on).
    token: str = field(default="", repr=False)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def cluster_id(self) -> str:
        return str(self.cluster["cluster_id"])

    @property
    def work_dir(self) -> Path:
        path = self.state.node_dir(self.name) / "work"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def address_of(self, name: str) -> NodeAddress:
        a = self.cluster["addresses"][name]
        return from_json(a)

    @property
    def task_user(self) -> str:
        """Who tasks run as by default when the agents run as root (``task_user``)."""
        return str(self.cluster.get("task_user") or self.topology.task_user)

    @property
    def coordinator_url(self) -> str:
        return self.address_of(self.topology.by_role("coordinator")[0].name).url

    def master_addresses(self) -> dict[str, NodeAddress]:
        return {m.name: self.address_of(m.name) for m in self.topology.masters}


def load_context(state_dir: Path, name: str) -> NodeContext:
    state = StateDir(state_dir)
    cluster = state.read()
    topo = topology_mod.parse(cluster["topology"], source=str(state.cluster_file))
    spec = topo.node(name)
    addr = from_json(cluster["addresses"][name])
    ts = TimeScale(
        float(cluster["time_scale"]),
        float(cluster.get("clock_epoch", 0.0)),
        float(cluster.get("clock_epoch", 0.0)),
    )
    token = auth.load_token(state.root)
    if token is None:
        raise RuntimeError(
            f"no platform token in {state.root}/secrets (or it is unreadable): "
            "start the cluster with `playground up`, which creates it"
        )
    return NodeContext(state, name, cluster, spec, topo, addr, ts, token)


def preload() -> None:
    """Import what the node roles need, so forked nodes share the loaded code."""
    import playground.coordinator.server
    import playground.edge.server
    import playground.marathon.server
    import playground.mesos.agent
    import playground.mesos.master
    import playground.monitor.server
    import playground.storage.server  # noqa: F401


async def _serve(ctx: NodeContext) -> int:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, ctx.stop.set)
    role = ctx.spec.role
    if role == "coordinator":
        from playground.coordinator.server import serve
    elif role == "master":
        from playground.mesos.master import serve
    elif role in ("agent", "public-agent"):
        from playground.mesos.agent import serve
    elif role == "marathon":
        from playground.marathon.server import serve
    elif role == "monitor":
        from playground.monitor.server import serve
    elif role == "storage":
        from playground.storage.server import serve
    elif role == "edge":
        from playground.edge.server import serve
    else:
        log.error("no implementation for role %s", role)
        return 2
    return await serve(ctx)


def main(state_dir: Path | str, name: str) -> int:
    """Run node ``name`` of the cluster in ``state_dir`` until it is stopped."""
    try:
        import setproctitle

        setproctitle.setproctitle(title(Path(state_dir), name))
    except ImportError:  # pragma: no cover - the dependency is declared
        pass
    # Everything a node writes in the state directory is the cluster user's only.
    os.umask(statedir.UMASK)
    logging.basicConfig(
        level=os.environ.get("PLAYGROUND_LOG_LEVEL", "INFO"),
        format=f"%(asctime)s {name} %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    try:
        ctx = load_context(Path(state_dir), name)
    except RuntimeError as exc:
        log.error("node %s cannot start: %s", name, exc)
        return 2
    set_event_source(name)
    network.install(ctx.state, name, ctx.cluster["addresses"])
    log.info(
        "starting %s (%s) on %s, pid %d", name, ctx.spec.role, ctx.address.hostport, os.getpid()
    )
    try:
        return asyncio.run(_serve(ctx))
    except OSError as exc:
        log.error("node %s failed: %s", name, exc)
        return 3


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
