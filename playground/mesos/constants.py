"""Names and defaults of Mesos 1.11 that the master and agents share."""

from __future__ import annotations

import time

TERMINAL_STATES = frozenset(
    {
        "TASK_FINISHED",
        "TASK_FAILED",
        "TASK_KILLED",
        "TASK_LOST",
        "TASK_ERROR",
        "TASK_DROPPED",
        "TASK_GONE",
        "TASK_GONE_BY_OPERATOR",
    }
)
TASK_STATES = (
    "TASK_STAGING",
    "TASK_STARTING",
    "TASK_RUNNING",
    "TASK_KILLING",
    "TASK_FINISHED",
    "TASK_FAILED",
    "TASK_KILLED",
    "TASK_LOST",
    "TASK_ERROR",
    "TASK_DROPPED",
    "TASK_UNREACHABLE",
    "TASK_GONE",
    "TASK_GONE_BY_OPERATOR",
    "TASK_UNKNOWN",
)

# Master flags (real-cluster seconds; the cluster scales them).
AGENT_PING_TIMEOUT = 15.0
MAX_AGENT_PING_TIMEOUTS = 5
AGENT_REREGISTER_TIMEOUT = 600.0
ALLOCATION_INTERVAL = 1.0
ZK_SESSION_TIMEOUT = 10.0
HEARTBEAT_INTERVAL = 15.0
DEFAULT_REFUSE_SECONDS = 5.0
MAX_REFUSE_SECONDS = 31536000.0
# Agent flags.
STATUS_UPDATE_RETRY = 10.0
DEFAULT_KILL_GRACE = 3.0
EXECUTOR_SHUTDOWN_GRACE = 5.0

# Build information reported by /version and /master/state.
BUILD_DATE = "2020-11-24 19:56:44"
BUILD_TIME = 1606247804.0
BUILD_USER = "playground"
GIT_SHA = "1a4fbc8f1b36ffc6fa60c73c5a6c4ed5d6b9b3b0"
GIT_TAG = "1.11.0"


def now() -> float:
    return time.time()


def is_terminal(state: str) -> bool:
    return state in TERMINAL_STATES


def time_info(t: float) -> dict[str, int]:
    """A v1 ``TimeInfo``."""
    return {"nanoseconds": int(t * 1e9)}


def version_info() -> dict[str, str | float]:
    """What ``/version`` answers (and the build fields of ``/state``)."""
    from playground import MESOS_VERSION

    return {
        "build_date": BUILD_DATE,
        "build_time": BUILD_TIME,
        "build_user": BUILD_USER,
        "git_sha": GIT_SHA,
        "git_tag": GIT_TAG,
        "version": MESOS_VERSION,
    }
