"""What the Chaos Toolkit targets share: the cluster from an experiment's configuration.

Every action and probe of ``playground.chaos.<target>`` takes plain arguments and the
experiment's ``configuration``; the cluster is the one of ``configuration["state_dir"]``,
else ``$PLAYGROUND_STATE_DIR``, else the kit's default state directory. Durations given to
the targets (``within``, ``downtime``) are real-cluster seconds: they run ``time_scale``
times faster, plus ``wall_grace`` wall seconds (default 5) for what does not scale
(process start-ups on a busy laptop).

Faults broken by actions of this process are remembered (:func:`remember`), so a rollback
can heal exactly what its experiment broke (``node.actions.heal_node()`` without a node).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from playground.backends import EmbeddedBackend
from playground.chaos.faults import AGENT_ROLES, Fault, Faults
from playground.client import MarathonClient
from playground.cluster.statedir import StateDir, default_state_dir
from playground.errors import PlaygroundError

T = TypeVar("T")

#: Wall seconds added to every scaled bound (process start-ups do not scale).
DEFAULT_WALL_GRACE = 5.0
#: The probe apps' group: other apps on the cluster never decide an experiment's outcome.
PROBE_GROUP = "/playground-chaos"

_lock = threading.Lock()
_broken: list[Fault] = []
_last_fault_at: float | None = None


class ExperimentError(PlaygroundError):
    """An action or probe cannot do what the experiment asks (raised as ActivityFailed)."""


def fail(message: str) -> Exception:
    """An ``ActivityFailed`` (chaoslib's way of failing an activity) with ``message``."""
    from chaoslib.exceptions import ActivityFailed

    return ActivityFailed(message)


def state_dir(configuration: dict[str, Any] | None) -> Path:
    """The cluster's state directory for an experiment."""
    value = (configuration or {}).get("state_dir")
    return Path(str(value)).expanduser().absolute() if value else default_state_dir()


def backend(configuration: dict[str, Any] | None) -> EmbeddedBackend:
    root = state_dir(configuration)
    StateDir(root).read()  # no cluster -> an error naming `playground up`
    return EmbeddedBackend(root)


def faults(configuration: dict[str, Any] | None) -> Faults:
    return Faults(backend(configuration))


def marathon(configuration: dict[str, Any] | None, timeout: float = 5.0) -> MarathonClient:
    url = backend(configuration).endpoints().get("marathon")
    if not url:
        raise fail("the cluster has no Marathon node")
    return MarathonClient(str(url), timeout=timeout)


def time_scale(configuration: dict[str, Any] | None) -> float:
    try:
        return float(StateDir(state_dir(configuration)).read().get("time_scale") or 1.0)
    except (PlaygroundError, TypeError, ValueError):
        return 1.0


def wall_seconds(configuration: dict[str, Any] | None, cluster_seconds: float) -> float:
    """Wall seconds to allow for ``cluster_seconds`` of real-cluster time, plus the grace."""
    grace = float((configuration or {}).get("wall_grace", DEFAULT_WALL_GRACE))
    return max(float(cluster_seconds), 0.0) / time_scale(configuration) + grace


def poll(fn: Callable[[], T | None], wall: float, interval: float = 0.2) -> tuple[T | None, float]:
    """Call ``fn`` until it returns something truthy or ``wall`` seconds pass.

    Errors of the kit (a node restarting, Marathon not answering yet) count as "not yet".
    Returns the last value and the seconds waited.
    """
    start = time.monotonic()
    while True:
        try:
            value = fn()
        except PlaygroundError:
            value = None
        waited = time.monotonic() - start
        if value or waited >= wall:
            return value, waited
        time.sleep(interval)


# ---- this run's faults -------------------------------------------------------------------
def remember(items: Fault | list[Fault]) -> None:
    """Note faults this run broke (and when: the last fault's time for the probes)."""
    global _last_fault_at
    items = items if isinstance(items, list) else [items]
    with _lock:
        _broken.extend(items)
        for f in items:
            try:
                at = datetime.fromisoformat(f.started_at.replace("Z", "+00:00")).timestamp()
            except ValueError:
                at = time.time()
            _last_fault_at = max(_last_fault_at or 0.0, at)


def last_fault_at() -> float | None:
    """Wall-clock time of this run's last fault (None: nothing broken yet)."""
    return _last_fault_at


def reset() -> None:
    """Start a new run: nothing broken, no last fault."""
    global _last_fault_at
    with _lock:
        _broken.clear()
        _last_fault_at = None


def remembered() -> list[Fault]:
    with _lock:
        return list(_broken)


def forget(ids: set[str] | None = None) -> None:
    with _lock:
        if ids is None:
            _broken.clear()
        else:
            _broken[:] = [f for f in _broken if f.id not in ids]


# ---- where an app's tasks run ------------------------------------------------------------
def agent_nodes(configuration: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Agent nodes as ``playground status --json`` shows them (with ``agent_id``)."""
    status = backend(configuration).cluster.status()
    return [n for n in status["nodes"] if n["role"] in AGENT_ROLES]


def _running_tasks_with_nodes(
    configuration: dict[str, Any] | None, app_id: str
) -> list[tuple[str, dict[str, Any] | None]]:
    with marathon(configuration) as client:
        tasks = client.list_tasks(app_id)
    agents = agent_nodes(configuration)
    by_id = {n.get("agent_id"): n for n in agents if n.get("agent_id")}
    by_host = {n["address"].rsplit(":", 1)[0]: n for n in agents}
    return [
        (str(t["id"]), by_id.get(t.get("slaveId")) or by_host.get(str(t.get("host"))))
        for t in sorted(tasks, key=lambda t: str(t.get("id")))
        if t.get("state") == "TASK_RUNNING"
    ]


def task_nodes(configuration: dict[str, Any] | None, app_id: str) -> list[dict[str, Any]]:
    """The agent nodes running tasks of ``app_id``, in the order of the tasks' ids."""
    out: list[dict[str, Any]] = []
    for _, node in _running_tasks_with_nodes(configuration, app_id):
        if node is not None and node not in out:
            out.append(node)
    return out


def task_nodes_by_task(configuration: dict[str, Any] | None, app_id: str) -> dict[str, str | None]:
    """Running task id -> the name of the agent node it runs on (None: not known)."""
    return {
        tid: (str(node["name"]) if node else None)
        for tid, node in _running_tasks_with_nodes(configuration, app_id)
    }


def pick_node(configuration: dict[str, Any] | None, node: str, app_id: str) -> str:
    """``node`` itself, or (without one) the agent running the first task of ``app_id``."""
    if node:
        return node
    if not app_id:
        raise fail("give a node, or an app_id whose task's node is to be broken")
    nodes = task_nodes(configuration, app_id)
    if not nodes:
        raise fail(f"no running task of {app_id} to pick a node from")
    return str(nodes[0]["name"])
