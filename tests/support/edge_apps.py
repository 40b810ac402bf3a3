"""Marathon 1.5+ app and task payloads (``GET /v2/apps?embed=apps.tasks`` shapes) for the
edge's unit tests."""

from __future__ import annotations

from typing import Any


def task(
    task_id: str,
    host: str = "10.0.0.1",
    ports: tuple[int, ...] = (31000,),
    *,
    state: str | None = "TASK_RUNNING",
    alive: bool | list[bool] | None = None,
    ips: tuple[str, ...] = (),
    **extra: Any,
) -> dict[str, Any]:
    """A task; ``alive`` gives its ``healthCheckResults`` (one per value), None: none."""
    t: dict[str, Any] = {
        "id": task_id,
        "host": host,
        "ports": list(ports),
        "slaveId": "agent-" + host,
        "appId": "/" + task_id.split(".")[0],
        "stagedAt": "2024-01-01T00:00:00.000Z",
        "startedAt": "2024-01-01T00:00:01.000Z",
        "version": "2024-01-01T00:00:00.000Z",
    }
    if state is not None:
        t["state"] = state
    if alive is not None:
        results = alive if isinstance(alive, list) else [alive]
        t["healthCheckResults"] = [
            {"alive": a, "consecutiveFailures": 0 if a else 3, "instanceId": task_id}
            for a in results
        ]
    if ips:
        t["ipAddresses"] = [{"ipAddress": ip, "protocol": "IPv4"} for ip in ips]
    t.update(extra)
    return t


def health_check(protocol: str = "HTTP", port_index: int = 0, **extra: Any) -> dict[str, Any]:
    check: dict[str, Any] = {
        "protocol": protocol,
        "portIndex": port_index,
        "gracePeriodSeconds": 10,
        "intervalSeconds": 2,
        "timeoutSeconds": 10,
        "maxConsecutiveFailures": 10,
    }
    if protocol in ("HTTP", "HTTPS", "MESOS_HTTP", "MESOS_HTTPS"):
        check["path"] = "/"
    check.update(extra)
    return check


def host_app(
    app_id: str,
    service_ports: tuple[int, ...] = (10000,),
    tasks: list[dict[str, Any]] | None = None,
    labels: dict[str, str] | None = None,
    *,
    group: str | None = "external",
    health_checks: list[dict[str, Any]] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """An app on host networking (``portDefinitions``)."""
    lab = dict(labels or {})
    if group is not None:
        lab.setdefault("HAPROXY_GROUP", group)
    app: dict[str, Any] = {
        "id": app_id,
        "cmd": "sleep 1000",
        "instances": len(tasks or []),
        "labels": lab,
        "portDefinitions": [{"port": p, "protocol": "tcp"} for p in service_ports],
        "networks": [{"mode": "host"}],
        "healthChecks": health_checks or [],
        "tasks": tasks or [],
        "versionInfo": {
            "lastScalingAt": "2024-01-01T00:00:00.000Z",
            "lastConfigChangeAt": "2024-01-01T00:00:00.000Z",
        },
    }
    app.update(extra)
    return app


def bridge_app(
    app_id: str,
    mappings: tuple[tuple[int, int], ...] = ((80, 10000),),
    tasks: list[dict[str, Any]] | None = None,
    labels: dict[str, str] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A Docker app on bridge networking: ``mappings`` are (containerPort, servicePort)."""
    app = host_app(app_id, (), tasks, labels, **extra)
    del app["portDefinitions"]
    app["networks"] = [{"mode": "container/bridge"}]
    app["container"] = {
        "type": "DOCKER",
        "docker": {"image": "nginx"},
        "portMappings": [
            {"containerPort": c, "hostPort": 0, "servicePort": s, "protocol": "tcp"}
            for c, s in mappings
        ],
    }
    return app


def ip_per_task_app(
    app_id: str,
    mappings: tuple[tuple[int, int], ...] = ((80, 10000),),
    tasks: list[dict[str, Any]] | None = None,
    labels: dict[str, str] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """An app on a container network (IP-per-task): ``mappings`` as for bridge."""
    app = bridge_app(app_id, mappings, tasks, labels, **extra)
    app["networks"] = [{"mode": "container", "name": "dcos"}]
    for mapping in app["container"]["portMappings"]:
        del mapping["hostPort"]
    return app
