"""The embedded backend: the kit's own nodes as local processes on loopback."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

from playground.backends.base import Backend, BackendError, NodeInfo
from playground.cluster import procs
from playground.cluster.lifecycle import Cluster


class EmbeddedBackend(Backend):
    """Runs the cluster of one state directory (see ``playground.cluster.lifecycle``)."""

    name = "embedded"
    #: Partitions are made by the kit's networking layer (playground.cluster.network).
    supports_partitions = True

    def __init__(
        self, state_dir: Path | str, topology: str | None = None, time_scale: float | None = None
    ) -> None:
        self.cluster = Cluster(state_dir)
        self.topology = topology
        self.time_scale = time_scale

    @property
    def state_dir(self) -> Path:
        return self.cluster.state.root

    def up(self) -> None:
        self.cluster.up(self.topology, self.time_scale)

    def down(self) -> None:
        self.cluster.down()

    def destroy(self) -> None:
        self.cluster.destroy()

    def endpoints(self) -> dict[str, Any]:
        return dict(self.cluster.status()["endpoints"])

    def nodes(self) -> list[NodeInfo]:
        return [
            NodeInfo(
                n["name"],
                n["role"],
                n["address"],
                n["state"],
                n["zone"],
                n["rack"],
                n["region"],
                n["pid"],
            )
            for n in self.cluster.status()["nodes"]
        ]

    def _check(self, node: str) -> None:
        self.cluster.topology().node(node)

    def _machine(self, node: str) -> list[str]:
        """``node`` and the nodes on its machine (the edge on its public agent)."""
        return [node, *self.cluster.topology().host_companions(node)]

    def crash(self, node: str) -> None:
        self._check(node)
        survivors: list[Any] = []
        with self.cluster.state.lock():
            rec = self.cluster.record()
            for name in self._machine(node):
                tree = procs.tree(self.cluster.node_ref(rec, name), self.state_dir, name)
                survivors += procs.kill(tree)
                rec["nodes"][name].update({"pid": None, "desired": "running"})
                if name != node:
                    self.cluster.state.record_event(
                        "node.crashed", node=name, processes=len(tree), machine=node
                    )
                else:
                    self.cluster.state.record_event("node.crashed", node=node, processes=len(tree))
            self.cluster.state.write(rec)
        if survivors:
            raise BackendError(f"{len(survivors)} process(es) of {node} survived SIGKILL")

    def stop(self, node: str) -> None:
        self._check(node)
        with self.cluster.state.lock():
            rec = self.cluster.record()
            for name in reversed(self._machine(node)):
                tree = procs.tree(self.cluster.node_ref(rec, name), self.state_dir, name)
                procs.terminate(tree, grace=2.0)
                rec["nodes"][name].update({"pid": None, "desired": "stopped"})
            self.cluster.state.write(rec)
        for name in self._machine(node):
            self.cluster.state.record_event("node.stopped", node=name)

    def start(self, node: str) -> None:
        self._check(node)
        for name in self._machine(node):
            self.cluster.start_node(name)
            self.cluster.state.record_event("node.started", node=name)

    def schedule_reverts(self) -> None:
        """Make sure a reverter process reverts timed faults when they are due."""
        from playground.chaos import reverter

        reverter.spawn(self.state_dir)

    def restart_agent_process(self, node: str) -> None:
        spec = self.cluster.topology().node(node)
        if not spec.is_agent:
            raise BackendError(
                f"{node} is not an agent",
                hint="agent-restart applies to agent and public-agent nodes",
            )
        with self.cluster.state.lock():
            rec = self.cluster.record()
            ref = self.cluster.node_ref(rec, node)
            if ref is not None and ref.alive():
                import psutil

                p = psutil.Process(ref.pid)
                p.send_signal(signal.SIGKILL)
                procs.wait_gone([p], 3.0)
            rec["nodes"][node]["pid"] = None
            self.cluster.state.write(rec)
        self.cluster.start_node(node)
        self.cluster.state.record_event("node.agent_restarted", node=node)
