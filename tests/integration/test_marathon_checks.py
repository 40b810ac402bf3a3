"""Readiness checks, health check variants, the event stream and metrics of the ``marathon-1``
node, proven against a real embedded cluster (``default`` topology, time scale 50).

References: Marathon 1.10 ``docs/readiness-checks.md``, ``docs/health-checks.md``,
``raml/v2/types/readinessCheck.raml`` (``TaskReadinessCheckResult``,
``ReadinessCheckHttpResponse``) and ``raml/v2/examples/deployments.json``
(``currentActions[].readinessCheckResults``).  Check timers floor at 1 s of wall time.
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from playground.backends import EmbeddedBackend
from tests.support.marathon_http import (
    HTTP_CMD,
    Marathon,
    app_def,
    is_healthy,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")

#: Serves HTTP at once, but ``/ready`` only exists after a few (wall) seconds.
DELAYED_READY_CMD = (
    "sh -c 'mkdir -p www; cd www; (sleep 5; touch ready) & "
    "exec python3 -m http.server $PORT0 --bind $HOST'"
)

READINESS_CHECK = {
    "name": "ready",
    "protocol": "HTTP",
    "path": "/ready",
    "portName": "http",
    "intervalSeconds": 2,  # timeoutSeconds must be smaller (readiness-checks.md)
    "timeoutSeconds": 1,
    "httpStatusCodesForReady": [200],
    "preserveLastResponse": True,
}


# ---- fixtures ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def marathon(cluster: EmbeddedBackend) -> Iterator[Marathon]:
    m = Marathon(str(cluster.endpoints()["marathon"]))
    wait_until(lambda: m.info().get("frameworkId"), 30, desc="Marathon registered with Mesos")
    yield m
    m.close()


@pytest.fixture()
def m(marathon: Marathon) -> Iterator[Marathon]:
    """The cluster's Marathon, empty before and after the test."""
    marathon.cleanup()
    yield marathon
    marathon.cleanup()


def check(protocol: str, **extra: Any) -> dict[str, Any]:
    """A fast health check: 1 s grace, interval, timeout and delay (all floored to 1 s wall)."""
    return {
        "protocol": protocol,
        "gracePeriodSeconds": 1,
        "intervalSeconds": 1,
        "timeoutSeconds": 1,
        "delaySeconds": 1,
        "maxConsecutiveFailures": 3,
        **extra,
    }


# =============================================================================================
# 1. readiness checks
# =============================================================================================
def test_readiness_check_holds_the_deployment_until_ready(m: Marathon) -> None:
    """While ``/ready`` answers 404 the deployment stays, showing the TaskReadinessCheckResult
    (with ``lastResponse`` as ``preserveLastResponse`` asks) in ``currentActions`` and in
    ``embed=apps.readiness``; once ``/ready`` exists the deployment finishes."""
    app = app_def(
        "/ready/web",
        DELAYED_READY_CMD,
        portDefinitions=[{"port": 0, "name": "http"}],
        readinessChecks=[READINESS_CHECK],
    )
    # timeoutSeconds must be smaller than intervalSeconds
    bad = {**app, "readinessChecks": [{**READINESS_CHECK, "intervalSeconds": 1}]}
    r = m.post("/v2/apps", bad)
    assert r.status_code == 422, r.text
    assert r.json()["details"] == [
        {
            "path": "/readinessChecks(0)/timeoutSeconds",
            "errors": ["got 1, expected less than 1"],
        }
    ]

    r = m.create(app)
    dep_id = r.headers["Marathon-Deployment-Id"]

    stored = m.app("/ready/web")
    assert stored["readinessChecks"] == [READINESS_CHECK]

    # --- not ready yet: the deployment shows the failing result
    def not_ready_result() -> tuple[dict[str, Any], dict[str, Any]] | None:
        dep = m.deployment(dep_id)
        assert dep is not None, "the deployment finished before /ready existed"
        actions = dep.get("currentActions") or []
        if not actions or not actions[0].get("readinessCheckResults"):
            return None
        res = actions[0]["readinessCheckResults"][0]
        status = res.get("lastResponse", {}).get("status")
        # before the server listens, a failed query counts as 504 "Marathon could not query"
        if status == 504:
            assert res["ready"] is False, res
            assert res["lastResponse"]["body"].startswith("Marathon could not query"), res
            return None
        return dep, res

    found = wait_until(
        not_ready_result, 15, interval=0.05, desc="a 404 readiness result in the deployment"
    )
    assert found is not None
    dep, result = found
    action = dep["currentActions"][0]
    assert action["action"] == "ScaleApplication"  # StartApplication (0 instances) came first
    assert action["app"] == "/ready/web"
    (task,) = [t for t in m.tasks("/ready/web") if t["state"] == "TASK_RUNNING"]
    assert set(result) == {"name", "taskId", "ready", "lastResponse"}, result
    assert result["name"] == "ready"
    assert result["taskId"] == task["id"]
    assert result["ready"] is False
    last = result["lastResponse"]
    assert set(last) == {"status", "contentType", "body"}, last
    assert last["status"] == 404
    assert last["contentType"] == "text/html"
    assert "404" in last["body"]
    assert m.app("/ready/web")["tasksRunning"] == 1

    # --- the same result through the app's readiness embed
    r = m.get("/v2/apps/ready/web", params={"embed": "apps.readiness"})
    assert r.status_code == 200, r.text
    embedded = r.json()["app"]
    assert embedded["deployments"] == [{"id": dep_id}]
    (emb,) = embedded["readinessCheckResults"]
    assert emb["name"] == "ready" and emb["taskId"] == task["id"] and emb["ready"] is False
    assert emb["lastResponse"]["status"] == 404

    # --- ready: the deployment finishes (the task keeps running, it is not replaced)
    m.wait_deployment_gone(dep_id, 20)
    (after,) = m.wait_running("/ready/web", 1)
    assert after["id"] == task["id"]
    assert http_status(after["host"], after["ports"][0], "/ready") == 200
    app_after = m.get("/v2/apps/ready/web", params={"embed": "apps.readiness"}).json()["app"]
    assert app_after["deployments"] == []
    assert app_after.get("readinessCheckResults", []) == []


def http_status(host: str, port: int, path: str) -> int:
    return httpx.get(f"http://{host}:{port}{path}", timeout=2).status_code


# =============================================================================================
# 2. health check variants
# =============================================================================================
def healthy_counts(m: Marathon, app_id: str) -> dict[str, Any] | None:
    app = m.app(app_id)
    return app if app["tasksHealthy"] == 1 else None


def running_task(m: Marathon, app_id: str) -> dict[str, Any] | None:
    return next((t for t in m.tasks(app_id) if t["state"] == "TASK_RUNNING"), None)


def test_health_check_variants(m: Marathon) -> None:
    """TCP, MESOS_HTTP and COMMAND ``exit 0`` make the task healthy; COMMAND ``exit 1`` with
    ``maxConsecutiveFailures: 1`` has the task killed and replaced by a new one."""
    apps = {
        "/hc/tcp": [check("TCP", portIndex=0)],
        "/hc/mesos-http": [check("MESOS_HTTP", path="/", portIndex=0)],
        "/hc/cmd-ok": [check("COMMAND", command={"value": "exit 0"})],
        "/hc/cmd-fail": [check("COMMAND", command={"value": "exit 1"}, maxConsecutiveFailures=1)],
    }
    for app_id, checks in apps.items():
        m.create(app_def(app_id, HTTP_CMD, healthChecks=checks, backoffSeconds=1))

    stored = m.app("/hc/cmd-fail")["healthChecks"][0]
    assert stored["protocol"] == "COMMAND"
    assert stored["command"] == {"value": "exit 1"}
    assert "portIndex" not in stored

    for app_id in ("/hc/tcp", "/hc/mesos-http", "/hc/cmd-ok"):
        (task,) = m.wait_running(app_id, 1, healthy=True, timeout=20)
        assert is_healthy(task), task
        (res,) = task["healthCheckResults"]
        assert res["alive"] is True and res["consecutiveFailures"] == 0
        assert task["id"].startswith(res["instanceId"] + ".")
        assert TIMESTAMP.fullmatch(res["firstSuccess"]), res
        counts = wait_until(
            functools.partial(healthy_counts, m, app_id), 10, desc=f"tasksHealthy 1 for {app_id}"
        )
        assert counts is not None
        assert counts["tasksUnhealthy"] == 0 and counts["tasksRunning"] == 1

    # --- the failing COMMAND check: the first task is killed and replaced
    first = wait_until(
        lambda: running_task(m, "/hc/cmd-fail"), 20, desc="the first /hc/cmd-fail task running"
    )
    assert first is not None

    def replaced() -> dict[str, Any] | None:
        tasks = m.tasks("/hc/cmd-fail")
        if any(t["id"] == first["id"] for t in tasks):
            return None
        running = [t for t in tasks if t["state"] == "TASK_RUNNING"]
        return running[0] if running else None

    second = wait_until(replaced, 25, desc="the unhealthy task replaced by a new one")
    assert second is not None
    assert second["id"] != first["id"]
    assert not is_healthy(second)
    assert m.app("/hc/cmd-fail")["tasksHealthy"] == 0
    # the app never becomes healthy, so its deployment stays
    assert m.app("/hc/cmd-fail")["deployments"] != []


# =============================================================================================
# 3. the event stream during a deployment
# =============================================================================================
def test_event_stream_during_a_deployment(m: Marathon) -> None:
    """Creating an app streams the API, deployment, status and instance events (each with
    ``eventType`` and a millisecond UTC ``timestamp``); ``event_type`` filters the stream."""
    with m.events() as everything, m.events("deployment_success") as only_success:
        assert everything.status == 200
        assert everything.content_type.startswith("text/event-stream")
        r = m.create(app_def("/events/web", HTTP_CMD))
        dep_id = r.headers["Marathon-Deployment-Id"]

        post = everything.wait_for("api_post_event", lambda e: e["uri"] == "/v2/apps/events/web")
        assert post["appDefinition"]["id"] == "/events/web"
        info = everything.wait_for("deployment_info", lambda e: e["plan"]["id"] == dep_id)
        assert info["currentStep"]["actions"][0]["app"] == "/events/web"
        running = everything.wait_for(
            "status_update_event",
            lambda e: e.get("appId") == "/events/web" and e["taskStatus"] == "TASK_RUNNING",
        )
        (task,) = m.wait_running("/events/web", 1)
        assert running["taskId"] == task["id"]
        assert running["host"] == task["host"]
        assert running["ports"] == task["ports"]
        assert running["version"] == task["version"]
        changed = everything.wait_for(
            "instance_changed_event",
            lambda e: e["runSpecId"] == "/events/web" and e["condition"] == "Running",
        )
        assert task["id"].startswith(changed["instanceId"] + ".")
        step = everything.wait_for("deployment_step_success", lambda e: e["plan"]["id"] == dep_id)
        assert step["currentStep"]["actions"]
        everything.wait_for("deployment_success", lambda e: e["id"] == dep_id)
        only_success.wait_for("deployment_success", lambda e: e["id"] == dep_id)
        time.sleep(0.3)  # let any stray event reach the filtered stream

        with everything._lock:
            seen = list(everything.events)
        with only_success._lock:
            filtered = list(only_success.events)

    for kind in (
        "api_post_event",
        "deployment_info",
        "status_update_event",
        "instance_changed_event",
        "deployment_step_success",
        "deployment_success",
    ):
        events = [e for e in seen if e["event"] == kind]
        assert events, f"no {kind} event"
        for e in events:
            assert e["data"]["eventType"] == kind, e
            assert TIMESTAMP.fullmatch(e["data"]["timestamp"]), e
    assert filtered, "the filtered stream saw nothing"
    assert {e["event"] for e in filtered} == {"deployment_success"}, filtered
    assert all(e["data"]["eventType"] == "deployment_success" for e in filtered)


# =============================================================================================
# 4. metrics
# =============================================================================================
def prometheus_value(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)}(?:\{{[^}}]*\}})? (\S+)$", text, re.MULTILINE)
    assert match, f"{name} missing from the Prometheus text"
    return float(match.group(1))


def test_metrics(m: Marathon) -> None:
    """``/metrics/prometheus`` is Prometheus text whose active-apps gauge follows the apps;
    ``/metrics`` is Dropwizard JSON with ``gauges`` and ``counters``."""
    r = m.get("/metrics/prometheus")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    text = r.text
    type_lines = re.findall(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE)
    assert type_lines, text
    types = dict(type_lines)
    assert types.get("marathon_apps_active_gauge") == "gauge", types
    assert all(kind in ("gauge", "counter", "summary", "histogram") for kind in types.values())
    before = prometheus_value(text, "marathon_apps_active_gauge")
    assert before == 0

    m.deploy(app_def("/metrics/one", HTTP_CMD))
    after_text = m.get("/metrics/prometheus").text
    assert prometheus_value(after_text, "marathon_apps_active_gauge") == before + 1
    assert prometheus_value(after_text, "marathon_instances_running_gauge") >= 1

    r = m.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert isinstance(body["gauges"], dict) and isinstance(body["counters"], dict)
    assert body["gauges"]["marathon.apps.active.gauge"] == {"value": 1.0}
    assert all(set(c) == {"count"} for c in body["counters"].values()), body["counters"]
    assert TIMESTAMP.fullmatch(body["start"]) and TIMESTAMP.fullmatch(body["end"])
