"""Actions on the Marathon node."""

import time
from typing import Any

from playground.chaos import extension as ext

__all__ = ["crash_marathon", "restart_marathon"]


def crash_marathon(for_seconds: float = 0, configuration: dict[str, Any] | None = None) -> dict:
    """SIGKILL the Marathon node (its tasks keep running on the agents)."""
    fault = ext.faults(configuration).break_node("marathon", "crash", for_seconds or None)
    ext.remember(fault)
    return fault.to_dict()


def restart_marathon(downtime: float = 10, configuration: dict[str, Any] | None = None) -> dict:
    """Crash Marathon, keep it down ``downtime`` cluster seconds, start it with its state."""
    reg = ext.faults(configuration)
    fault = reg.break_node("marathon", "crash")
    ext.remember(fault)
    time.sleep(max(float(downtime), 0.0) / ext.time_scale(configuration))
    reg.heal(fault.target)
    ext.forget({fault.id})
    return fault.to_dict()
