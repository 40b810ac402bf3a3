"""Cluster time: real-cluster seconds run faster by a time scale, with floors.

Every duration in an app definition, a flag or a topology is written in real-cluster
seconds. A cluster running with time scale ``s`` waits ``seconds / s`` of wall time,
never less than the floor of the kind of timer, so a busy laptop stays stable.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

#: No check interval or check timeout below one second of wall time.
CHECK_FLOOR = 1.0
#: No agent ping below half a second of wall time.
PING_FLOOR = 0.5
#: Generic floor for other timers (allocation, retries, backoff).
DEFAULT_FLOOR = 0.05


@dataclass(frozen=True)
class TimeScale:
    """Converts real-cluster durations to wall-clock durations.

    Attributes:
        scale: how many real-cluster seconds pass in one wall second (>= 1).
        epoch_wall: wall time at which the cluster clock started.
        epoch_cluster: cluster-clock time at ``epoch_wall``.
    """

    scale: float = 10.0
    epoch_wall: float = 0.0
    epoch_cluster: float = 0.0

    def __post_init__(self) -> None:
        if not self.scale >= 1:
            raise ValueError(f"time scale must be >= 1, got {self.scale}")

    def wall(self, seconds: float, floor: float = DEFAULT_FLOOR) -> float:
        """Wall seconds to wait for ``seconds`` of real-cluster time."""
        if seconds <= 0:
            return 0.0
        return max(seconds / self.scale, floor)

    def check(self, seconds: float) -> float:
        """Wall seconds for a check interval, timeout or grace period."""
        return self.wall(seconds, CHECK_FLOOR)

    def ping(self, seconds: float) -> float:
        """Wall seconds for an agent ping period or timeout."""
        return self.wall(seconds, PING_FLOOR)

    def cluster_now(self, wall_now: float | None = None) -> float:
        """The scaled cluster clock (for calendar-like schedules), in seconds since epoch."""
        now = time.time() if wall_now is None else wall_now
        base = self.epoch_wall or now
        return self.epoch_cluster + (now - base) * self.scale if self.epoch_wall else now

    def describe(self, seconds: float, floor: float = DEFAULT_FLOOR) -> str:
        """Both timings, for status output: ``75s (7.5s wall)``."""
        return f"{seconds:g}s ({self.wall(seconds, floor):.3g}s wall)"
