"""Marathon 1.10 behaviour of the ``marathon-1`` node, proven against real embedded clusters.

Every test drives Marathon's REST API over HTTP, lets it launch real processes on the agents
and checks the outcome where it can be seen: the tasks' HTTP answers, their environment,
their sandboxes, the master's state.  The ``default`` cluster (module-scoped) serves most
tests; a few fault-domain and failover tests run on the ``ha`` cluster at the end.
Time scale 50: a real-cluster second is 20 ms of wall time (check timers floor at 1 s).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import psutil
import pytest

from playground.backends import EmbeddedBackend
from playground.marathon import validation
from tests.support.marathon_http import (
    HTTP_CMD,
    SLEEP_CMD,
    Marathon,
    app_def,
    http_answers,
    is_healthy,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


# ---- helpers ---------------------------------------------------------------------------------
def node_by_host(backend: EmbeddedBackend) -> dict[str, Any]:
    """Agent (and public agent) nodes by their IP address, which is the tasks' ``host``."""
    return {
        n.address.split(":")[0]: n for n in backend.nodes() if n.role in ("agent", "public-agent")
    }


def agent_state(backend: EmbeddedBackend, node: str) -> dict[str, Any]:
    return dict(httpx.get(f"http://{backend.node(node).address}/state", timeout=5).json())


def master_get(backend: EmbeddedBackend, path: str) -> Any:
    url = backend.endpoints()["master"]
    assert url, "no leading master"
    return httpx.get(f"{url}{path}", timeout=5, follow_redirects=True).json()


def holds(fn: Callable[[], bool], duration: float, interval: float = 0.1, desc: str = "") -> None:
    """``fn`` stays true for ``duration`` seconds (checked every ``interval``)."""
    deadline = time.monotonic() + duration
    while time.monotonic() < deadline:
        assert fn(), f"no longer true: {desc}"
        time.sleep(interval)


def http_ok(host: str, port: int, path: str = "/", timeout: float = 10.0) -> httpx.Response:
    def get() -> httpx.Response | None:
        r = http_answers(host, port, path)
        return r if r.status_code == 200 else None

    return wait_until(get, timeout, desc=f"HTTP 200 from {host}:{port}{path}")


def health_check(path: str = "/", **extra: Any) -> dict[str, Any]:
    return {
        "protocol": "HTTP",
        "path": path,
        "portIndex": 0,
        "gracePeriodSeconds": 300,
        "intervalSeconds": 2,
        "timeoutSeconds": 2,
        "maxConsecutiveFailures": 3,
        **extra,
    }


def reject_count(entry: dict[str, Any], reason: str, key: str = "rejectSummaryLastOffers") -> int:
    rows = entry.get("processedOffersSummary", {}).get(key, [])
    return sum(int(r["declined"]) for r in rows if r["reason"] == reason)


# ---- fixtures ----------------------------------------------------------------------------------
def _connect(backend: EmbeddedBackend) -> Marathon:
    m = Marathon(str(backend.endpoints()["marathon"]))
    wait_until(lambda: m.info().get("frameworkId"), 30, desc="Marathon registered with Mesos")
    return m


@pytest.fixture(scope="module")
def marathon(cluster: EmbeddedBackend) -> Iterator[Marathon]:
    m = _connect(cluster)
    yield m
    m.close()


@pytest.fixture()
def m(marathon: Marathon) -> Iterator[Marathon]:
    """The default cluster's Marathon, empty before and after the test."""
    marathon.cleanup()
    yield marathon
    marathon.cleanup()


# =============================================================================================
# 1. placement, task ids, ports and the task environment
# =============================================================================================
def test_unique_hostname_spreads_over_private_agents_and_tasks_serve_http(
    cluster: EmbeddedBackend, m: Marathon
) -> None:
    """UNIQUE hostname puts 3 instances on agent-1..3 (never the public agent); each answers HTTP."""
    tasks = m.deploy(app_def("/web", HTTP_CMD, 3, constraints=[["hostname", "UNIQUE"]]))
    nodes = node_by_host(cluster)
    assert sorted(nodes[t["host"]].name for t in tasks) == ["agent-1", "agent-2", "agent-3"]
    app = m.app("/web")
    service_port = app["portDefinitions"][0]["port"]
    assert 10000 <= service_port <= 20000
    for t in tasks:
        assert re.fullmatch(rf"web\.instance-{UUID}\._app\.1", t["id"]), t["id"]
        assert t["appId"] == "/web"
        assert t["servicePorts"] == [service_port]
        assert len(t["ports"]) == 1
        assert t["slaveId"] == agent_state(cluster, nodes[t["host"]].name)["id"]
        assert t["version"] == app["version"]
        assert http_ok(t["host"], t["ports"][0]).status_code == 200


def test_task_environment(cluster: EmbeddedBackend, m: Marathon) -> None:
    """A task sees Marathon's environment: ports, host, app id/version, resources, labels, task id."""
    labels = {"TEAM": "core", "release / track": "stable"}
    tasks = m.deploy(
        app_def(
            "/env/printer",
            "env > env.txt; " + HTTP_CMD,
            1,
            cpus=0.1,
            mem=32,
            portDefinitions=[{"port": 0, "name": "http"}, {"port": 0, "name": "admin"}],
            labels=labels,
            env={"CUSTOM_VAR": "custom value"},
        )
    )
    (task,) = tasks
    app = m.app("/env/printer")
    text = http_ok(task["host"], task["ports"][0], "/env.txt").text
    env = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    p0, p1 = task["ports"]
    assert env["PORT0"] == str(p0) and env["PORT1"] == str(p1)
    assert env["PORT"] == str(p0)
    assert env["PORTS"] == f"{p0},{p1}"
    assert env["PORT_HTTP"] == str(p0)
    assert env["PORT_ADMIN"] == str(p1)
    assert env["HOST"] == task["host"]
    assert env["MARATHON_APP_ID"] == "/env/printer"
    assert env["MARATHON_APP_VERSION"] == app["version"]
    assert env["MARATHON_APP_RESOURCE_CPUS"] == "0.1"
    assert env["MARATHON_APP_RESOURCE_MEM"] == "32.0"
    assert env["MESOS_TASK_ID"] == task["id"]
    assert env["CUSTOM_VAR"] == "custom value"
    # EnvironmentHelper.labelsToEnvVars: runs of [^a-zA-Z0-9_] become one "_", upper-cased
    assert set(env["MARATHON_APP_LABELS"].split(" ")) == {"TEAM", "RELEASE_TRACK"}
    assert env["MARATHON_APP_LABEL_TEAM"] == "core"
    assert env["MARATHON_APP_LABEL_RELEASE_TRACK"] == "stable"


# =============================================================================================
# 2. constraints on the default cluster (the ha cluster's fault domains come at the end)
# =============================================================================================
def test_group_by_zone_and_max_per_hostname(cluster: EmbeddedBackend, m: Marathon) -> None:
    """GROUP_BY @zone spreads 3 instances over zones a/b/c; MAX_PER 1 leaves the 4th waiting."""
    tasks = m.deploy(app_def("/spread", SLEEP_CMD, 3, constraints=[["@zone", "GROUP_BY", "3"]]))
    assert sorted(t["zone"] for t in tasks) == ["a", "b", "c"]
    nodes = node_by_host(cluster)
    assert sorted(nodes[t["host"]].zone for t in tasks) == ["a", "b", "c"]

    r = m.create(app_def("/capped", SLEEP_CMD, 4, constraints=[["hostname", "MAX_PER", "1"]]))
    dep = r.headers["Marathon-Deployment-Id"]

    def three_running() -> list[dict[str, Any]] | None:
        ts = [t for t in m.tasks("/capped") if t["state"] == "TASK_RUNNING"]
        return ts if len(ts) == 3 else None

    running = wait_until(three_running, 20, desc="3 running instances of /capped")
    assert len({t["host"] for t in running}) == 3
    entry = wait_until(
        lambda: (e := m.queue_entry("/capped")) and reject_count(e, "UnfulfilledConstraint") and e,
        15,
        desc="the 4th instance declined for UnfulfilledConstraint",
    )
    assert entry["count"] == 1
    holds(lambda: len(m.tasks("/capped")) == 3, 1.0, desc="never a 4th task")
    assert m.deployment(dep) is not None, "the deployment cannot finish and must stay"


def test_like_and_unlike_on_hostname_and_attributes(cluster: EmbeddedBackend, m: Marathon) -> None:
    """LIKE on hostname pins to agent-2; UNLIKE on the zone attribute avoids zones a and b."""
    agent2 = cluster.node("agent-2").address.split(":")[0]
    tasks = m.deploy(
        app_def("/pinned", SLEEP_CMD, 2, constraints=[["hostname", "LIKE", re.escape(agent2)]])
    )
    assert {t["host"] for t in tasks} == {agent2}
    tasks = m.deploy(
        app_def(
            "/not-ab",
            SLEEP_CMD,
            2,
            constraints=[["zone", "UNLIKE", "a|b"], ["rack", "LIKE", "r1"]],
        )
    )
    nodes = node_by_host(cluster)
    assert {nodes[t["host"]].name for t in tasks} == {"agent-3"}


# =============================================================================================
# 3. offers Marathon cannot use: the queue's reject summary, and roles
# =============================================================================================
def test_unsatisfiable_constraint_keeps_deployment_and_queue_explains(m: Marathon) -> None:
    """LIKE nonexistent: the deployment stays, the queue counts UnfulfilledConstraint declines."""
    r = m.create(
        app_def("/nowhere", SLEEP_CMD, 1, constraints=[["hostname", "LIKE", "nonexistent"]])
    )
    dep = r.headers["Marathon-Deployment-Id"]
    entry = wait_until(
        lambda: (e := m.queue_entry("/nowhere")) and reject_count(e, "UnfulfilledConstraint") and e,
        15,
        desc="UnfulfilledConstraint in rejectSummaryLastOffers",
    )
    assert entry["count"] == 1
    assert entry["delay"]["overdue"] in (True, False)
    summary = entry["processedOffersSummary"]
    assert summary["processedOffersCount"] >= 1
    assert summary["unusedOffersCount"] >= 1
    embedded = m.queue_entry("/nowhere", embed=["lastUnusedOffers"])
    assert embedded is not None
    unused = embedded["lastUnusedOffers"]
    assert unused and any("UnfulfilledConstraint" in u["reason"] for u in unused)
    assert all(u["offer"]["hostname"] and u["offer"]["agentId"] for u in unused)
    holds(lambda: m.tasks("/nowhere") == [], 1.0, desc="nothing launched")
    dep_json = m.deployment(dep)
    assert dep_json is not None
    assert dep_json["affectedApps"] == ["/nowhere"]


def test_accepted_resource_roles_selects_the_public_agent(
    cluster: EmbeddedBackend, m: Marathon
) -> None:
    """acceptedResourceRoles [slave_public] lands on public-agent-1 only; default apps never do."""
    nodes = node_by_host(cluster)
    public = m.deploy(app_def("/edge", SLEEP_CMD, 2, acceptedResourceRoles=["slave_public"]))
    assert {nodes[t["host"]].name for t in public} == {"public-agent-1"}
    plain = m.deploy(app_def("/inside", SLEEP_CMD, 6))
    assert {nodes[t["host"]].role for t in plain} == {"agent"}


# =============================================================================================
# 4. rolling upgrade
# =============================================================================================
def test_rolling_upgrade_respects_minimum_health_and_maximum_capacity(m: Marathon) -> None:
    """4 instances, minimumHealthCapacity 0.5, maximumOverCapacity 0: >=2 healthy, <=4 tasks."""
    # Old tasks take a moment to stop (as real services do): the trap delays the exit.
    slow_stop = "trap 'sleep 1; exit 0' TERM; " + HTTP_CMD + " & wait"
    app = app_def(
        "/rolling",
        slow_stop,
        4,
        env={"GENERATION": "1"},
        healthChecks=[health_check("/")],
        upgradeStrategy={"minimumHealthCapacity": 0.5, "maximumOverCapacity": 0},
        taskKillGracePeriodSeconds=100,
    )
    before = m.deploy(app, healthy=True)
    assert m.app("/rolling")["tasksHealthy"] == 4
    old_ids = {t["id"] for t in before}

    r = m.put("/v2/apps/rolling", {**app, "env": {"GENERATION": "2"}})
    assert r.status_code == 200, r.text
    dep_id = r.json()["deploymentId"]
    new_version = r.json()["version"]

    min_healthy, max_total, saw_restart = 4, 0, False
    samples = 0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        body = m.get("/v2/apps/rolling", params={"embed": "apps.tasks"}).json()["app"]
        deps = m.deployments()
        tasks = body["tasks"]
        samples += 1
        max_total = max(max_total, len(tasks))
        min_healthy = min(min_healthy, sum(1 for t in tasks if is_healthy(t)))
        for d in deps:
            if d["id"] == dep_id:
                actions = [a for s in d["steps"] for a in s["actions"]]
                assert {"action": "RestartApplication", "app": "/rolling"} in actions
                saw_restart = True
        if not any(d["id"] == dep_id for d in deps):
            break
        time.sleep(0.02)
    else:
        raise AssertionError("the rolling upgrade did not finish within 60s")
    assert saw_restart, "the deployment was never listed in /v2/deployments"
    assert samples > 10
    assert min_healthy >= 2, f"healthy instances dropped to {min_healthy}"
    assert max_total <= 4, f"{max_total} tasks at once (maximumOverCapacity 0)"
    after = m.wait_running("/rolling", 4, healthy=True, timeout=20)
    assert {t["version"] for t in after} == {new_version}
    assert not old_ids & {t["id"] for t in after}
    assert m.app("/rolling")["version"] == new_version
    assert m.deployments() == []


# =============================================================================================
# 5. health checks
# =============================================================================================
def test_passing_health_check_counts_healthy_tasks(m: Marathon) -> None:
    """An HTTP health check on / passes: tasksHealthy == instances, results alive with firstSuccess."""
    m.deploy(app_def("/healthy", HTTP_CMD, 2, healthChecks=[health_check("/")]), healthy=True)
    app = m.app("/healthy", embed=["apps.tasks"])
    assert (app["tasksHealthy"], app["tasksUnhealthy"], app["tasksRunning"]) == (2, 0, 2)
    for t in app["tasks"]:
        (result,) = t["healthCheckResults"]
        assert result["alive"] is True
        assert result["firstSuccess"] and result["consecutiveFailures"] == 0
        assert result["instanceId"] == t["id"].rsplit("._app.", 1)[0]


def test_failing_health_check_kills_and_replaces_the_task(m: Marathon) -> None:
    """A health check on a 404 path: results show alive false, the task is killed and replaced."""
    hc = health_check(
        "/does-not-exist", gracePeriodSeconds=5, intervalSeconds=2, maxConsecutiveFailures=1
    )
    with m.events("unhealthy_instance_kill_event") as events:
        assert events.status == 200 and events.content_type.startswith("text/event-stream")
        m.create(app_def("/sick", HTTP_CMD, 1, healthChecks=[hc]))
        first = wait_until(
            lambda: [t for t in m.tasks("/sick") if t["state"] == "TASK_RUNNING"],
            20,
            desc="the first task running",
        )[0]
        failing: dict[str, Any] = {}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not failing:
            for t in m.tasks("/sick"):
                for res in t.get("healthCheckResults") or []:
                    if t["id"] == first["id"] and res["alive"] is False:
                        failing = res
            time.sleep(0.05)
        assert failing, "healthCheckResults never showed alive: false"
        assert failing["lastFailureCause"]
        assert failing["lastFailure"] and failing["consecutiveFailures"] >= 1

        kill = events.wait_for(
            "unhealthy_instance_kill_event", lambda e: e["taskId"] == first["id"], 30
        )
        assert kill["appId"] == "/sick"
        assert kill["instanceId"] == first["id"].rsplit("._app.", 1)[0]
        assert kill["reason"]
        replacement = wait_until(
            lambda: [t for t in m.tasks("/sick") if t["id"] != first["id"]],
            20,
            desc="a replacement task",
        )[0]
        assert replacement["appId"] == "/sick"
        wait_until(
            lambda: first["id"] not in {t["id"] for t in m.tasks("/sick")},
            10,
            desc="the unhealthy task gone",
        )


# =============================================================================================
# 6. scaling, killing, deployments, restart, versions
# =============================================================================================
def _scale(m: Marathon, app_id: str, n: int) -> None:
    r = m.put(f"/v2/apps{app_id}", {"instances": n})
    assert r.status_code == 200, r.text
    assert r.json()["deploymentId"]
    m.wait_deployment_gone(r.json()["deploymentId"])
    m.wait_running(app_id, n)


def test_scale_up_and_down_honours_kill_selection(m: Marathon) -> None:
    """PUT instances scales; scale-down kills the youngest first, or the oldest with OLDEST_FIRST."""
    for app_id, selection in (("/young", "YOUNGEST_FIRST"), ("/old", "OLDEST_FIRST")):
        m.deploy(app_def(app_id, SLEEP_CMD, 1, killSelection=selection))
        for n in (2, 3):
            time.sleep(0.05)  # distinct start times (not an assertion)
            _scale(m, app_id, n)
        assert m.app(app_id)["instances"] == 3
        by_age = sorted(m.tasks(app_id), key=lambda t: t["startedAt"])
        _scale(m, app_id, 2)
        left = {t["id"] for t in m.tasks(app_id)}
        killed = by_age[-1] if selection == "YOUNGEST_FIRST" else by_age[0]
        assert killed["id"] not in left
        assert len(left) == 2
        assert m.app(app_id)["instances"] == 2


def test_kill_tasks_with_scale_reduces_instances(m: Marathon) -> None:
    """DELETE tasks?scale=true (by host), POST /v2/tasks/delete?scale=true: instances drop."""
    tasks = m.deploy(app_def("/shrink", SLEEP_CMD, 3, constraints=[["hostname", "UNIQUE"]]))
    victim = tasks[0]
    r = m.delete("/v2/apps/shrink/tasks", params={"scale": "true", "host": victim["host"]})
    assert r.status_code == 200, r.text
    assert r.json()["deploymentId"]
    m.wait_deployment_gone(r.json()["deploymentId"])
    assert m.app("/shrink")["instances"] == 2
    left = m.wait_running("/shrink", 2)
    assert victim["id"] not in {t["id"] for t in left}

    r = m.post("/v2/tasks/delete", {"ids": [left[0]["id"]]}, params={"scale": "true"})
    assert r.status_code == 200, r.text
    m.wait_deployment_gone(r.json()["deploymentId"])
    assert m.app("/shrink")["instances"] == 1
    (last,) = m.wait_running("/shrink", 1)
    assert last["id"] == left[1]["id"]

    r = m.delete("/v2/apps/shrink/tasks", params={"scale": "true"})
    assert r.status_code == 200, r.text
    m.wait_deployment_gone(r.json()["deploymentId"])
    assert m.app("/shrink")["instances"] == 0
    m.wait_running("/shrink", 0)


def test_kill_single_task_is_replaced_by_next_incarnation_and_wipe_by_new_instance(
    m: Marathon,
) -> None:
    """DELETE tasks/{id}: same instance relaunched as ._app.2; wipe=true: a new instance."""
    (task,) = m.deploy(app_def("/phoenix", SLEEP_CMD, 1))
    instance_id = task["id"].rsplit("._app.", 1)[0]
    r = m.delete(f"/v2/apps/phoenix/tasks/{task['id']}")
    assert r.status_code == 200, r.text
    assert r.json()["task"]["id"] == task["id"]
    (second,) = wait_until(
        lambda: [
            t for t in m.tasks("/phoenix") if t["state"] == "TASK_RUNNING" and t["id"] != task["id"]
        ],
        20,
        desc="the replacement task",
    )
    assert second["id"] == f"{instance_id}._app.2"
    assert m.app("/phoenix")["instances"] == 1

    r = m.delete(f"/v2/apps/phoenix/tasks/{second['id']}", params={"wipe": "true"})
    assert r.status_code == 200, r.text
    (third,) = wait_until(
        lambda: [
            t
            for t in m.tasks("/phoenix")
            if t["state"] == "TASK_RUNNING" and t["id"] != second["id"]
        ],
        20,
        desc="a new instance after wipe",
    )
    assert not third["id"].startswith(instance_id)
    assert third["id"].endswith("._app.1")
    assert m.app("/phoenix")["instances"] == 1


def test_post_tasks_delete_without_scale_returns_killed_tasks_and_replaces_them(
    m: Marathon,
) -> None:
    """POST /v2/tasks/delete (scale=false) answers the killed tasks; Marathon replaces them."""
    tasks = m.deploy(app_def("/batch-kill", SLEEP_CMD, 2))
    ids = sorted(t["id"] for t in tasks)
    r = m.post("/v2/tasks/delete", {"ids": ids})
    assert r.status_code == 200, r.text
    # RAML tasks.raml: "If scale=false, all tasks that were killed are returned." (TaskList)
    assert sorted(t["id"] for t in r.json().get("tasks", [])) == ids, r.text
    after = wait_until(
        lambda: (
            (ts := m.wait_running("/batch-kill", 2)) and not {t["id"] for t in ts} & set(ids) and ts
        ),
        20,
        interval=0.2,
        ignore=(httpx.HTTPError, AssertionError),
        desc="both tasks replaced",
    )
    assert {t["id"].rsplit("._app.", 1)[1] for t in after} == {"2"}
    assert m.app("/batch-kill")["instances"] == 2


def test_locked_app_answers_409_and_force_overrides(m: Marathon) -> None:
    """While a deployment runs, changes and kill-and-scale answer 409; force=true replaces it."""
    (task,) = m.deploy(app_def("/locked", SLEEP_CMD, 1, constraints=[["hostname", "UNIQUE"]]))
    # 5 unique hosts on 3 private agents: this scale deployment can never finish
    r = m.put("/v2/apps/locked", {"instances": 5})
    assert r.status_code == 200, r.text
    first = r.json()["deploymentId"]
    wait_until(lambda: len(m.tasks("/locked")) == 3, 20, desc="3 tasks of /locked")
    assert m.deployment(first) is not None

    r = m.put("/v2/apps/locked", {"instances": 2})
    assert r.status_code == 409, r.text
    body = r.json()
    assert body["message"] == (
        "App is locked by one or more deployments. Override with the option '?force=true'. "
        "View details at '/v2/deployments/<DEPLOYMENT_ID>'."
    )
    assert body["deployments"] == [{"id": first}]
    r = m.delete(f"/v2/apps/locked/tasks/{task['id']}", params={"scale": "true"})
    assert r.status_code == 409, r.text
    r = m.delete("/v2/apps/locked/tasks", params={"scale": "true", "host": task["host"]})
    assert r.status_code == 409, r.text
    assert len(m.tasks("/locked")) == 3  # nothing was killed
    assert m.app("/locked")["instances"] == 5

    r = m.put("/v2/apps/locked", {"instances": 2}, params={"force": "true"})
    assert r.status_code == 200, r.text
    second = r.json()["deploymentId"]
    assert second and second != first
    m.wait_deployment_gone(second)
    assert m.deployment(first) is None
    m.wait_running("/locked", 2)
    assert m.app("/locked")["instances"] == 2


def test_delete_deployment_rolls_back_or_cancels(m: Marathon) -> None:
    """DELETE /v2/deployments/{id}: 200 + rollback deployment; with force=true: 202, no body."""
    m.deploy(app_def("/rb", SLEEP_CMD, 1))
    original = m.app("/rb")
    r = m.put("/v2/apps/rb", {"constraints": [["hostname", "LIKE", "nonexistent"]]})
    stuck = r.json()["deploymentId"]
    assert m.deployment(stuck) is not None
    r = m.delete(f"/v2/deployments/{stuck}")
    assert r.status_code == 200, r.text
    rollback = r.json()
    assert rollback["deploymentId"] and rollback["deploymentId"] != stuck
    assert rollback["version"]
    m.wait_deployment_gone(rollback["deploymentId"])
    assert m.deployment(stuck) is None
    app = m.app("/rb")
    assert app["constraints"] == original["constraints"] == []
    m.wait_running("/rb", 1)

    r = m.put("/v2/apps/rb", {"instances": 2, "constraints": [["hostname", "LIKE", "none"]]})
    stuck = r.json()["deploymentId"]
    r = m.delete(f"/v2/deployments/{stuck}", params={"force": "true"})
    assert r.status_code == 202, r.text
    assert r.content == b""
    m.wait_no_deployments(5)
    app = m.app("/rb")
    assert app["constraints"] == [["hostname", "LIKE", "none"]]  # no rollback with force
    assert app["instances"] == 2

    # rolling back the deployment of a new app removes the app
    r = m.create(app_def("/rb-new", SLEEP_CMD, 1, constraints=[["hostname", "LIKE", "none"]]))
    r = m.delete(f"/v2/deployments/{r.headers['Marathon-Deployment-Id']}")
    assert r.status_code == 200, r.text
    m.wait_deployment_gone(r.json()["deploymentId"])
    assert m.get("/v2/apps/rb-new").status_code == 404


def test_restart_replaces_every_task(m: Marathon) -> None:
    """POST /v2/apps/{id}/restart: a RestartApplication deployment; every task is new."""
    tasks = m.deploy(app_def("/again", SLEEP_CMD, 2))
    version = m.app("/again")["version"]
    with m.events("deployment_info") as events:
        r = m.post("/v2/apps/again/restart")
        assert r.status_code == 200, r.text
        dep = r.json()["deploymentId"]
        info = events.wait_for("deployment_info", lambda e: e["plan"]["id"] == dep, 10)
    actions = [a for s in info["plan"]["steps"] for a in s["actions"]]
    assert actions == [{"action": "RestartApplication", "app": "/again"}]
    m.wait_deployment_gone(dep)
    after = m.wait_running("/again", 2)
    assert not {t["id"] for t in tasks} & {t["id"] for t in after}
    assert m.app("/again")["version"] != version


def test_versions_list_fetch_and_rollback(m: Marathon) -> None:
    """Versions are listed newest first and fetchable; PUT {version} rolls back to that definition."""
    m.deploy(app_def("/hist", "sleep 1001", 1))
    v1 = m.app("/hist")["version"]
    r = m.put("/v2/apps/hist", {"cmd": "sleep 1002"})
    m.wait_deployment_gone(r.json()["deploymentId"])
    v2 = m.app("/hist")["version"]
    r = m.get("/v2/apps/hist/versions")
    assert r.status_code == 200
    assert r.json()["versions"][:2] == [v2, v1]
    old = m.get(f"/v2/apps/hist/versions/{v1}").json()
    assert old["cmd"] == "sleep 1001" and old["version"] == v1 and old["id"] == "/hist"
    assert m.get("/v2/apps/hist/versions/2001-01-01T00:00:00.000Z").status_code == 404

    r = m.put("/v2/apps/hist", {"version": v1})
    assert r.status_code == 200, r.text
    m.wait_deployment_gone(r.json()["deploymentId"])
    app = m.app("/hist")
    assert app["cmd"] == "sleep 1001"
    assert app["version"] not in (v1, v2)
    m.wait_running("/hist", 1, version=app["version"])
    assert m.get("/v2/apps/hist/versions").json()["versions"][0] == app["version"]


# =============================================================================================
# 7. launch backoff
# =============================================================================================
def test_failing_app_backs_off_and_delay_can_be_reset(m: Marathon) -> None:
    """exit 1: lastTaskFailure is set, the queue shows a delay, DELETE .../delay answers 204."""
    m.create(app_def("/crashy", "exit 1", 1, backoffSeconds=600, maxLaunchDelaySeconds=3600))
    failure = wait_until(
        lambda: m.app("/crashy", embed=["apps.lastTaskFailure"]).get("lastTaskFailure"),
        20,
        desc="lastTaskFailure",
    )
    assert failure["appId"] == "/crashy"
    assert failure["state"] == "TASK_FAILED"
    assert "exited with status 1" in failure["message"]
    assert re.fullmatch(rf"crashy\.instance-{UUID}\._app\.\d+", failure["taskId"])
    entry = wait_until(
        lambda: (e := m.queue_entry("/crashy")) and e["delay"]["timeLeftSeconds"] > 0 and e,
        10,
        interval=0.05,
        desc="a launch delay in the queue",
    )
    assert entry["delay"]["overdue"] is False
    r = m.delete("/v2/queue/crashy/delay")
    assert r.status_code == 204, r.text
    # the delay is gone: the next attempt (and its failure) comes long before 600 s / 50 = 12 s
    wait_until(
        lambda: (
            m.app("/crashy", embed=["apps.lastTaskFailure"])["lastTaskFailure"]["taskId"]
            != failure["taskId"]
        ),
        5,
        interval=0.05,
        desc="a new launch right after the delay reset",
    )
    assert m.delete("/v2/queue/nope/delay").status_code == 404


# =============================================================================================
# 8. durability: Marathon crashes and comes back with its state and framework
# =============================================================================================
def test_marathon_crash_keeps_state_framework_and_tasks(
    cluster: EmbeddedBackend, m: Marathon
) -> None:
    """kill -9 marathon-1 and restart: apps, versions, deployments, tasks and framework id stay."""
    tasks = m.deploy(app_def("/durable/web", HTTP_CMD, 2))
    r = m.put("/v2/apps/durable/web", {"cmd": HTTP_CMD + " # v2"})
    m.wait_deployment_gone(r.json()["deploymentId"])
    tasks = m.wait_running("/durable/web", 2)
    r = m.create(app_def("/durable/stuck", SLEEP_CMD, 1, constraints=[["hostname", "LIKE", "x"]]))
    stuck = r.headers["Marathon-Deployment-Id"]
    framework_id = m.info()["frameworkId"]
    apps_before = m.apps()
    versions_before = m.get("/v2/apps/durable/web/versions").json()
    deployments_before = sorted(d["id"] for d in m.deployments())
    assert stuck in deployments_before
    pid_before = cluster.node("marathon-1").pid

    cluster.crash("marathon-1")
    assert not psutil.pid_exists(pid_before) or psutil.Process(pid_before).status() == "zombie"
    cluster.start("marathon-1")
    assert cluster.node("marathon-1").pid != pid_before
    wait_until(lambda: m.info().get("frameworkId"), 30, desc="Marathon back")

    assert m.info()["frameworkId"] == framework_id
    strip = ("tasksStaged", "tasksRunning", "tasksHealthy", "tasksUnhealthy", "deployments")

    def defs(apps: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{k: v for k, v in a.items() if k not in strip} for a in apps]

    assert defs(m.apps()) == defs(apps_before)
    assert m.get("/v2/apps/durable/web/versions").json() == versions_before
    assert sorted(d["id"] for d in m.deployments()) == deployments_before
    after = m.wait_running("/durable/web", 2, timeout=20)
    assert sorted((t["id"], t["startedAt"]) for t in after) == sorted(
        (t["id"], t["startedAt"]) for t in tasks
    )
    for t in after:
        assert http_ok(t["host"], t["ports"][0]).status_code == 200
    holds(lambda: len(m.tasks("/durable/web")) == 2, 1.0, desc="no relaunch")

    frameworks = master_get(cluster, "/master/frameworks")
    marathons = [f for f in frameworks["frameworks"] if f["name"] == "marathon"]
    assert [f["id"] for f in marathons] == [framework_id]
    (fw,) = marathons
    assert fw["active"] is True
    ids = [t["id"] for t in fw["tasks"]]
    assert len(ids) == len(set(ids)), "duplicated tasks on the master"
    assert sorted(i for i in ids if i.startswith("durable_web.")) == sorted(t["id"] for t in tasks)
    assert all(
        t["state"] == "TASK_RUNNING" for t in fw["tasks"] if t["id"].startswith("durable_web.")
    )


# =============================================================================================
# 9. groups
# =============================================================================================
def test_group_with_dependencies_deploys_in_order(m: Marathon) -> None:
    """POST /v2/groups: b depends on a, so a is started and healthy before b starts."""
    group = {
        "id": "/shop",
        "apps": [
            app_def("db", HTTP_CMD, 1, healthChecks=[health_check("/")]),
            app_def("web", SLEEP_CMD, 1, dependencies=["/shop/db"]),
        ],
    }
    with m.events("deployment_info") as events:
        r = m.post("/v2/groups", group)
        assert r.status_code == 201, r.text
        dep = r.json()["deploymentId"]
        info = events.wait_for("deployment_info", lambda e: e["plan"]["id"] == dep, 10)
    steps = [s["actions"] for s in info["plan"]["steps"]]
    assert steps == [
        [
            {"action": "StartApplication", "app": "/shop/db"},
            {"action": "StartApplication", "app": "/shop/web"},
        ],
        [{"action": "ScaleApplication", "app": "/shop/db"}],
        [{"action": "ScaleApplication", "app": "/shop/web"}],
    ]
    m.wait_deployment_gone(dep)
    (db,) = m.wait_running("/shop/db", 1, healthy=True)
    (web,) = m.wait_running("/shop/web", 1)
    assert web["stagedAt"] >= db["healthCheckResults"][0]["firstSuccess"]

    g = m.get("/v2/groups/shop").json()
    assert g["id"] == "/shop"
    assert sorted(a["id"] for a in g["apps"]) == ["/shop/db", "/shop/web"]
    web_app = next(a for a in g["apps"] if a["id"] == "/shop/web")
    assert web_app["dependencies"] == ["/shop/db"]
    embedded = m.get("/v2/groups/shop", params={"embed": ["group.apps", "group.apps.tasks"]})
    assert embedded.status_code == 200, embedded.text
    by_id = {a["id"]: a for a in embedded.json()["apps"]}
    assert [t["id"] for t in by_id["/shop/db"]["tasks"]] == [db["id"]]
    assert [t["id"] for t in by_id["/shop/web"]["tasks"]] == [web["id"]]
    root = m.get("/v2/groups").json()
    assert [sub["id"] for sub in root["groups"]] == ["/shop"]
    assert m.get("/v2/groups/nope").status_code == 404


def test_group_dry_run_and_delete(m: Marathon) -> None:
    """PUT ?dryRun=true answers the steps and changes nothing; DELETE removes the group's apps."""
    r = m.post(
        "/v2/groups",
        {"id": "/grp", "apps": [app_def("one", SLEEP_CMD, 1), app_def("two", SLEEP_CMD, 1)]},
    )
    assert r.status_code == 201, r.text
    m.wait_deployment_gone(r.json()["deploymentId"])
    before = {a["id"]: a["version"] for a in m.apps()}
    r = m.put(
        "/v2/groups/grp",
        {"id": "/grp", "apps": [app_def("one", "sleep 1003", 1), app_def("two", SLEEP_CMD, 1)]},
        params={"dryRun": "true"},
    )
    assert r.status_code == 200, r.text
    actions = [a for s in r.json()["steps"] for a in s["actions"]]
    assert {"action": "RestartApplication", "app": "/grp/one"} in actions
    assert {a["app"] for a in actions} <= {"/grp/one", "/grp/two"}
    assert {a["action"] for a in actions} == {"RestartApplication"}
    assert m.deployments() == []
    assert {a["id"]: a["version"] for a in m.apps()} == before
    assert m.app("/grp/one")["cmd"] == SLEEP_CMD

    # the real update restarts only the app that changed
    two_tasks = m.tasks("/grp/two")
    r = m.put(
        "/v2/groups/grp",
        {"id": "/grp", "apps": [app_def("one", "sleep 1003", 1), app_def("two", SLEEP_CMD, 1)]},
    )
    assert r.status_code == 200, r.text
    m.wait_deployment_gone(r.json()["deploymentId"])
    assert m.app("/grp/one")["cmd"] == "sleep 1003"
    assert m.app("/grp/one")["version"] != before["/grp/one"]
    assert m.app("/grp/two")["version"] == before["/grp/two"]
    assert m.wait_running("/grp/two", 1) == two_tasks
    m.wait_running("/grp/one", 1)

    r = m.delete("/v2/groups/grp")
    assert r.status_code == 200, r.text
    assert r.json()["deploymentId"]
    m.wait_deployment_gone(r.json()["deploymentId"])
    assert m.apps() == []
    assert m.get("/v2/groups/grp").status_code == 404
    wait_until(lambda: m.get("/v2/tasks").json()["tasks"] == [], 10, desc="no tasks left")


# =============================================================================================
# 10. validation through HTTP
# =============================================================================================
def test_validation_and_error_responses(m: Marathon) -> None:
    """Malformed JSON 400; bad ids/definitions/constraints 422; duplicates 409; unknown 404."""
    r = m.post(
        "/v2/apps", content=b'{"id": "/x", "cmd": ', headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 400, r.text
    assert r.json()["message"]

    r = m.post("/v2/apps", {"id": "/Bad_Id", "cmd": "x"})
    assert r.status_code == 422, r.text
    assert r.json()["details"][0]["path"] == "/id"

    r = m.post("/v2/apps", {"id": "/x"})
    assert r.status_code == 422, r.text
    assert r.json()["message"] == "Object is not valid"
    assert {"path": "/", "errors": [validation.MSG_CMD_ARGS_CONTAINER]} in r.json()["details"]

    r = m.post("/v2/apps", app_def("/x", SLEEP_CMD, 0, constraints=[["hostname", "BOGUS"]]))
    assert r.status_code == 422, r.text
    assert r.json()["details"] == [
        {"path": "/constraints(0)", "errors": [validation.MSG_CONSTRAINT_OPERATOR]}
    ]
    assert m.get("/v2/apps/x").status_code == 404  # nothing was created by invalid requests

    m.create(app_def("/x", SLEEP_CMD, 0))
    r = m.post("/v2/apps", app_def("/x", SLEEP_CMD, 0))
    assert r.status_code == 409, r.text
    assert r.json()["message"] == "An app with id [/x] already exists."

    r = m.get("/v2/apps/nope")
    assert r.status_code == 404
    assert r.json() == {"message": "App '/nope' does not exist"}


# =============================================================================================
# 11. Docker containers: the image is recorded, the command runs on the host
# =============================================================================================
def test_docker_app_runs_and_sandbox_notes_the_image(cluster: EmbeddedBackend, m: Marathon) -> None:
    """A DOCKER app runs its cmd; the sandbox stderr says the image is recorded, not pulled."""
    app = app_def(
        "/dockerized", HTTP_CMD, 1, container={"type": "DOCKER", "docker": {"image": "nginx"}}
    )
    (task,) = m.deploy(app)
    assert m.app("/dockerized")["container"]["docker"]["image"] == "nginx"
    assert http_ok(task["host"], task["ports"][0]).status_code == 200
    node = node_by_host(cluster)[task["host"]]
    state = agent_state(cluster, node.name)
    directory = next(
        ex["directory"]
        for fw in state["frameworks"]
        for ex in fw["executors"]
        if ex["id"] == task["id"]
    )
    r = httpx.get(
        f"http://{node.address}/files/read",
        params={"path": f"{directory}/stderr", "offset": 0},
        timeout=5,
    )
    assert r.status_code == 200, r.text
    assert "image nginx is recorded, not pulled" in r.json()["data"]
