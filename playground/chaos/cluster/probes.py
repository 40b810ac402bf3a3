"""Probes of the cluster: masters, the leader, quorum, overall health."""

from typing import Any

from playground.chaos import extension as ext

__all__ = [
    "cluster_healthy",
    "ensure_no_leader",
    "has_leader",
    "has_masters",
    "leading_master",
    "master_count",
    "masters_running",
    "quorum",
    "wait_for_leader",
]


def leading_master(configuration: dict[str, Any] | None = None) -> str:
    """The leading master's node name, or an empty string when none leads."""
    status = ext.backend(configuration).cluster.status()
    return str(status.get("leader") or "")


def has_leader(configuration: dict[str, Any] | None = None) -> bool:
    """True when a master leads."""
    return bool(leading_master(configuration))


def master_count(configuration: dict[str, Any] | None = None) -> int:
    """How many masters the cluster's topology has."""
    return sum(n.role == "master" for n in ext.backend(configuration).nodes())


def has_masters(count: int = 3, configuration: dict[str, Any] | None = None) -> bool:
    """True when the topology has at least ``count`` masters (failover needs 3: ``ha``)."""
    return master_count(configuration) >= int(count)


def masters_running(configuration: dict[str, Any] | None = None) -> int:
    """How many masters run."""
    return sum(
        n.role == "master" and n.state == "running" for n in ext.backend(configuration).nodes()
    )


def quorum(configuration: dict[str, Any] | None = None) -> int:
    """The masters' quorum."""
    reg = ext.faults(configuration)
    return reg.quorum(reg.backend.nodes())


def cluster_healthy(configuration: dict[str, Any] | None = None) -> bool:
    """A master leads, every node runs and every agent is registered."""
    status = ext.backend(configuration).cluster.status()
    if not status.get("leader"):
        return False
    return all(n["state"] == "running" and n.get("registered", True) for n in status["nodes"])


def wait_for_leader(within: float = 60, configuration: dict[str, Any] | None = None) -> str:
    """Wait up to ``within`` cluster seconds for a leading master; returns its name."""
    name, waited = ext.poll(
        lambda: leading_master(configuration), ext.wall_seconds(configuration, within)
    )
    if not name:
        raise ext.fail(f"no master leads after {waited:.1f}s")
    return name


def ensure_no_leader(within: float = 30, configuration: dict[str, Any] | None = None) -> bool:
    """Within ``within`` cluster seconds no master leads any more (quorum lost)."""
    gone, waited = ext.poll(
        lambda: not leading_master(configuration), ext.wall_seconds(configuration, within)
    )
    if not gone:
        raise ext.fail(f"a master still leads after {waited:.1f}s: {leading_master(configuration)}")
    return True
