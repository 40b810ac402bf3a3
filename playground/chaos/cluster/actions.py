"""Actions on the cluster as a whole: a zone outage, the leading master, the masters' quorum."""

from typing import Any

from playground.chaos import extension as ext

__all__ = ["break_zone", "crash_leader", "heal_all", "lose_quorum"]


def break_zone(
    zone: str = "",
    app_id: str = "",
    how: str = "crash",
    for_seconds: float = 0,
    configuration: dict[str, Any] | None = None,
) -> list:
    """Break every agent of ``zone`` (without one: the zone of ``app_id``'s first task)."""
    reg = ext.faults(configuration)
    if not zone:
        nodes = ext.task_nodes(configuration, app_id) if app_id else []
        zones = [n["zone"] for n in nodes if n.get("zone")]
        if not zones:
            raise ext.fail(f"give a zone, or an app_id with a running task in a zone ({app_id!r})")
        zone = str(zones[0])
    broken = reg.break_zone(zone, how, for_seconds or None)
    ext.remember(broken)
    return [f.to_dict() for f in broken]


def crash_leader(for_seconds: float = 0, configuration: dict[str, Any] | None = None) -> dict:
    """Crash the leading master (a leader failover follows when a quorum remains)."""
    fault = ext.faults(configuration).break_leader(for_seconds or None)
    ext.remember(fault)
    return fault.to_dict()


def lose_quorum(for_seconds: float = 0, configuration: dict[str, Any] | None = None) -> list:
    """Crash masters, the leader first, until fewer than a quorum run."""
    broken = ext.faults(configuration).break_quorum(for_seconds or None)
    ext.remember(broken)
    return [f.to_dict() for f in broken]


def heal_all(configuration: dict[str, Any] | None = None) -> list:
    """Revert every active fault of the cluster (not only this run's)."""
    reverted = ext.faults(configuration).heal()
    ext.forget()
    return [f.to_dict() for f in reverted]
