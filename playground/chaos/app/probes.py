"""Probes of a Marathon app: instance count, running and healthy tasks, HTTP answers."""

from datetime import datetime
from typing import Any

import httpx

from playground.chaos import extension as ext
from playground.client import MarathonClient, MarathonNotFound

__all__ = [
    "app_healthy",
    "app_status",
    "ensure_app_avoids_broken_nodes",
    "ensure_app_serving",
    "ensure_tasks_survived",
    "tasks_answering",
    "tasks_healthy",
    "tasks_running",
    "wait_app_healthy",
    "wait_tasks_running",
]


def _healthy(task: dict[str, Any], checked: bool) -> bool:
    if task.get("state") != "TASK_RUNNING":
        return False
    if not checked:
        return True
    results = task.get("healthCheckResults") or []
    return bool(results) and all(r.get("alive") for r in results)


def _answers(task: dict[str, Any], path: str = "/health") -> bool:
    ports = task.get("ports") or []
    if task.get("state") != "TASK_RUNNING" or not ports:
        return False
    try:
        r = httpx.get(f"http://{task['host']}:{ports[0]}{path}", timeout=2.0)
    except httpx.HTTPError:
        return False
    return r.status_code == 200


def _status(client: MarathonClient, app_id: str, http: bool = True) -> dict:
    try:
        app = client.get_app(app_id, embed=("app.tasks", "app.deployments"))
    except MarathonNotFound:
        return {
            "app": app_id,
            "exists": False,
            "instances": 0,
            "tasks": 0,
            "running": 0,
            "healthy": 0,
            "answering": 0,
            "deploying": False,
        }
    tasks = list(app.get("tasks") or [])
    checked = bool(app.get("healthChecks"))
    return {
        "app": app_id,
        "exists": True,
        "instances": int(app.get("instances", 0)),
        "tasks": len(tasks),
        "running": sum(t.get("state") == "TASK_RUNNING" for t in tasks),
        "healthy": sum(_healthy(t, checked) for t in tasks),
        "answering": sum(_answers(t) for t in tasks) if http else None,
        "deploying": bool(app.get("deployments")),
    }


def _at_rest(st: dict[str, Any], instances: int | None) -> bool:
    want = st["instances"] if instances is None else int(instances)
    return (
        st["exists"]
        and st["instances"] == want
        and st["tasks"] == want
        and st["healthy"] == want
        and (st["answering"] is None or st["answering"] == want)
        and not st["deploying"]
    )


def app_status(app_id: str, configuration: dict[str, Any] | None = None) -> dict:
    """The app's instances and how many of its tasks run, are healthy and answer HTTP."""
    with ext.marathon(configuration) as client:
        return _status(client, app_id)


def tasks_running(app_id: str, configuration: dict[str, Any] | None = None) -> int:
    """How many tasks of the app are TASK_RUNNING."""
    return int(app_status(app_id, configuration)["running"])


def tasks_healthy(app_id: str, configuration: dict[str, Any] | None = None) -> int:
    """How many tasks of the app run and pass their health checks (all running, without checks)."""
    return int(app_status(app_id, configuration)["healthy"])


def tasks_answering(
    app_id: str, path: str = "/health", configuration: dict[str, Any] | None = None
) -> int:
    """How many running tasks of the app answer ``GET path`` with 200 on their first port."""
    with ext.marathon(configuration) as client:
        return sum(_answers(t, path) for t in client.list_tasks(app_id))


def app_healthy(
    app_id: str, instances: int = 0, configuration: dict[str, Any] | None = None
) -> bool:
    """The app is at its instance count (``instances``, if given), every task runs, is
    healthy and answers HTTP, and no deployment is changing it."""
    st = app_status(app_id, configuration)
    return _at_rest(st, int(instances) or None)


def wait_app_healthy(
    app_id: str,
    instances: int = 0,
    within: float = 300,
    raise_on_timeout: bool = True,
    configuration: dict[str, Any] | None = None,
) -> dict:
    """Wait up to ``within`` cluster seconds until :func:`app_healthy`; returns the app's status.

    On time out the activity fails (``raise_on_timeout``) naming what was missing.
    """
    wall = ext.wall_seconds(configuration, within)
    last: dict[str, Any] = {}
    with ext.marathon(configuration) as client:

        def ok() -> bool:
            nonlocal last
            last = _status(client, app_id)
            return _at_rest(last, int(instances) or None)

        done, waited = ext.poll(ok, wall, interval=0.25)
    out = dict(last, healthy_after_seconds=round(waited, 2), at_rest=bool(done))
    if not done and raise_on_timeout:
        raise ext.fail(
            f"{app_id} is not healthy after {waited:.1f}s (bound {wall:.1f}s): "
            + ", ".join(
                f"{k} {last.get(k)}"
                for k in ("instances", "tasks", "running", "healthy", "answering", "deploying")
            )
        )
    return out


def ensure_app_serving(
    app_id: str, min_tasks: int = 1, within: float = 30, configuration: dict[str, Any] | None = None
) -> int:
    """At least ``min_tasks`` tasks of the app answer HTTP (waiting up to ``within`` cluster
    seconds); fails the activity otherwise. Returns how many answered."""
    count, waited = ext.poll(
        lambda: (n := tasks_answering(app_id, configuration=configuration)) >= int(min_tasks) and n,
        ext.wall_seconds(configuration, within),
    )
    if not count:
        raise ext.fail(f"fewer than {min_tasks} task(s) of {app_id} answer after {waited:.1f}s")
    return int(count)


def ensure_tasks_survived(app_id: str, configuration: dict[str, Any] | None = None) -> int:
    """Every task of the app started before this run's last fault: nothing was relaunched.

    Fails the activity naming the tasks started since. Returns how many tasks survived.
    """
    since = ext.last_fault_at()
    if since is None:
        raise ext.fail("this run broke nothing yet: no fault to have survived")
    with ext.marathon(configuration) as client:
        tasks = client.list_tasks(app_id)
    if not tasks:
        raise ext.fail(f"{app_id} has no tasks")
    newer = []
    for t in tasks:
        started = t.get("startedAt") or t.get("stagedAt")
        if not started:
            newer.append(str(t["id"]))
            continue
        epoch = datetime.fromisoformat(str(started).replace("Z", "+00:00")).timestamp()
        if epoch >= since:
            newer.append(str(t["id"]))
    if newer:
        raise ext.fail(f"task(s) of {app_id} started after the fault: {', '.join(newer)}")
    return len(tasks)


def ensure_app_avoids_broken_nodes(
    app_id: str, within: float = 0, configuration: dict[str, Any] | None = None
) -> int:
    """No running task of the app is on a node this run broke (crashed, partitioned, drained).

    Waits up to ``within`` cluster seconds for it (0: checks once), then fails the activity
    naming the tasks that still are. Returns how many tasks run elsewhere.
    """
    broken = {f.target for f in ext.remembered()}
    if not broken:
        raise ext.fail("this run broke nothing yet: no node to avoid")
    on_broken: list[str] = []

    def ok() -> int:
        nonlocal on_broken
        nodes = ext.task_nodes_by_task(configuration, app_id)
        on_broken = sorted(tid for tid, node in nodes.items() if node in broken)
        return 0 if on_broken else max(len(nodes), 1)

    wall = ext.wall_seconds(configuration, within) if within else 0.0
    count, waited = ext.poll(ok, wall, interval=0.25)
    if not count:
        raise ext.fail(
            f"after {waited:.1f}s task(s) of {app_id} still run on {', '.join(sorted(broken))}: "
            + ", ".join(on_broken)
        )
    return int(count)


def wait_tasks_running(
    app_id: str, count: int, within: float = 300, configuration: dict[str, Any] | None = None
) -> int:
    """Wait up to ``within`` cluster seconds until exactly ``count`` tasks of the app run
    (e.g. Marathon has noticed that the tasks of a lost zone are gone); fails otherwise."""
    last = -1

    def ok() -> bool:
        nonlocal last
        last = tasks_running(app_id, configuration)
        return last == int(count)

    done, waited = ext.poll(ok, ext.wall_seconds(configuration, within), interval=0.25)
    if not done:
        raise ext.fail(f"{app_id} has {last} running task(s), not {count}, after {waited:.1f}s")
    return last
