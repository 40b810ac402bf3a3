"""The backend contract: one abstract class, one test suite for every implementation."""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any

from playground.errors import PlaygroundError


class BackendError(PlaygroundError):
    """A backend cannot do what was asked (unknown node, unsupported fault, failure)."""


@dataclass(frozen=True)
class NodeInfo:
    """A node as the backend sees it."""

    name: str
    role: str
    address: str  # host:port of the node's API
    state: str  # running | stopped | crashed | partitioned
    zone: str | None = None
    rack: str | None = None
    region: str | None = None
    pid: int | None = None


class Backend(abc.ABC):
    """What runs a cluster, and the node operations no HTTP API offers."""

    name: str = "abstract"

    @abc.abstractmethod
    def up(self) -> None:
        """Start the cluster (or resume or repair it); return once it is healthy."""

    @abc.abstractmethod
    def down(self) -> None:
        """Stop every process of the cluster; its state stays for the next ``up``."""

    @abc.abstractmethod
    def endpoints(self) -> dict[str, Any]:
        """URLs of the cluster's APIs: at least ``master`` (the leading master) when one leads."""

    @abc.abstractmethod
    def nodes(self) -> list[NodeInfo]:
        """Every node of the cluster with its current state."""

    @abc.abstractmethod
    def crash(self, node: str) -> None:
        """Kill the node's whole process tree with SIGKILL (its tasks die with it)."""

    @abc.abstractmethod
    def start(self, node: str) -> None:
        """Start a stopped or crashed node with its disk (agent recovery)."""

    @abc.abstractmethod
    def stop(self, node: str) -> None:
        """Stop the node cleanly (SIGTERM, then SIGKILL after a grace period)."""

    @abc.abstractmethod
    def restart_agent_process(self, node: str) -> None:
        """Restart only the agent process of an agent node; its tasks keep running."""

    def node(self, name: str) -> NodeInfo:
        for n in self.nodes():
            if n.name == name:
                return n
        raise BackendError(
            f"unknown node {name!r}", hint="valid nodes: " + ", ".join(n.name for n in self.nodes())
        )
