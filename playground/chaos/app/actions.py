"""Actions on Marathon apps: deploy and remove an experiment's probe app, kill, scale, restart."""

from typing import Any

from playground.chaos import extension as ext
from playground.chaos.app import probes
from playground.client import MarathonNotFound

__all__ = ["deploy_app", "kill_app_tasks", "remove_app", "restart_app", "scale_app"]

#: The probe app's command: the kit's ``web`` workload (``GET /health`` answers 200).
WEB_CMD = "playground workload web"


def probe_app_definition(
    app_id: str,
    instances: int = 2,
    constraints: list[list[str]] | None = None,
    cmd: str = WEB_CMD,
    labels: dict[str, str] | None = None,
) -> dict:
    """A probe app: the ``web`` workload with an HTTP health check on ``/health``
    (``labels`` added to its own: ``{"HAPROXY_GROUP": "external"}`` puts it on the edge)."""
    return {
        "id": app_id,
        "cmd": cmd,
        "cpus": 0.1,
        "mem": 128,
        "instances": int(instances),
        "constraints": [list(c) for c in constraints or []],
        "portDefinitions": [{"port": 0, "name": "http"}],
        "healthChecks": [
            {
                "protocol": "HTTP",
                "path": "/health",
                "portIndex": 0,
                "gracePeriodSeconds": 300,
                "intervalSeconds": 2,
                "timeoutSeconds": 2,
                "maxConsecutiveFailures": 3,
            }
        ],
        "labels": {**(labels or {}), "playground.chaos": "probe-app"},
    }


def deploy_app(
    app_id: str,
    instances: int = 2,
    constraints: list[list[str]] | None = None,
    cmd: str = WEB_CMD,
    within: float = 300,
    labels: dict[str, str] | None = None,
    configuration: dict[str, Any] | None = None,
) -> dict:
    """Deploy (or replace) a probe app running the ``web`` workload; wait until it is healthy.

    Waits up to ``within`` cluster seconds; returns the app's state then (``healthy`` says
    whether it got there: the steady-state hypothesis judges it).
    """
    defn = probe_app_definition(app_id, instances, constraints, cmd, labels)
    with ext.marathon(configuration, timeout=10) as client:
        try:
            client.get_app(app_id)
            client.update_app(app_id, defn, force=True, partial=False)
        except MarathonNotFound:
            client.create_app(defn)
    return probes.wait_app_healthy(
        app_id, instances, within, raise_on_timeout=False, configuration=configuration
    )


def remove_app(app_id: str, configuration: dict[str, Any] | None = None) -> bool:
    """Remove an app and its tasks (forcing past its deployments); False if it did not exist."""
    with ext.marathon(configuration, timeout=10) as client:
        try:
            client.delete_app(app_id, force=True)
        except MarathonNotFound:
            return False
    return True


def kill_app_tasks(
    app_id: str, count: int = 0, configuration: dict[str, Any] | None = None
) -> list:
    """Kill ``count`` running tasks of the app (0: all of them); Marathon replaces them."""
    with ext.marathon(configuration, timeout=10) as client:
        tasks = sorted(
            (t for t in client.list_tasks(app_id) if t.get("state") == "TASK_RUNNING"),
            key=lambda t: str(t["id"]),
        )
        if not tasks:
            raise ext.fail(f"{app_id} has no running task to kill")
        chosen = [str(t["id"]) for t in (tasks if int(count) <= 0 else tasks[: int(count)])]
        client.kill_given_tasks(chosen)
    return chosen


def scale_app(
    app_id: str,
    instances: int,
    within: float = 300,
    configuration: dict[str, Any] | None = None,
) -> dict:
    """Scale the app to ``instances`` and wait (``within`` cluster seconds) until it is healthy."""
    with ext.marathon(configuration, timeout=10) as client:
        client.scale_app(app_id, int(instances), force=True)
    return probes.wait_app_healthy(app_id, instances, within, configuration=configuration)


def restart_app(
    app_id: str, within: float = 300, configuration: dict[str, Any] | None = None
) -> dict:
    """Replace every task of the app (a rolling restart) and wait until it is healthy again."""
    with ext.marathon(configuration, timeout=10) as client:
        instances = int(client.get_app(app_id).get("instances", 0))
        client.restart_app(app_id, force=True)
    return probes.wait_app_healthy(app_id, instances, within, configuration=configuration)
