"""Marathon on the `ha` topology: zones, regions and master failover (own module, so the
`default` cluster of the behaviour tests is gone before this one starts)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from playground.backends import EmbeddedBackend
from tests.integration.test_marathon_behaviour import _connect, holds, master_get, node_by_host
from tests.support.marathon_http import (
    SLEEP_CMD,
    Marathon,
    app_def,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]


# =============================================================================================
# ha cluster: fault domains and leader failover (kept few: the cluster is expensive)
# =============================================================================================
@pytest.fixture(scope="module")
def ha_marathon(ha_cluster: EmbeddedBackend) -> Iterator[Marathon]:
    hm = _connect(ha_cluster)
    yield hm
    hm.close()


@pytest.fixture()
def hm(ha_marathon: Marathon) -> Iterator[Marathon]:
    ha_marathon.cleanup()
    yield ha_marathon
    ha_marathon.cleanup()


def test_ha_zones_and_regions(ha_cluster: EmbeddedBackend, hm: Marathon) -> None:
    """GROUP_BY @zone spreads over a/b/c in eu; apps stay in eu unless @region says us."""
    nodes = node_by_host(ha_cluster)
    tasks = hm.deploy(app_def("/zones", SLEEP_CMD, 3, constraints=[["@zone", "GROUP_BY", "3"]]))
    assert sorted(t["zone"] for t in tasks) == ["a", "b", "c"]
    assert {t["region"] for t in tasks} == {"eu"}
    assert {nodes[t["host"]].region for t in tasks} == {"eu"}

    r = hm.create(app_def("/local", SLEEP_CMD, 7, constraints=[["hostname", "UNIQUE"]]))
    dep = r.headers["Marathon-Deployment-Id"]
    running = wait_until(
        lambda: (
            len(ts := [t for t in hm.tasks("/local") if t["state"] == "TASK_RUNNING"]) == 6 and ts
        ),
        20,
        desc="6 instances of /local on the 6 eu agents",
    )
    assert {nodes[t["host"]].region for t in running} == {"eu"}
    assert len({t["host"] for t in running}) == 6
    wait_until(lambda: hm.queue_entry("/local"), 10, desc="the 7th instance waiting in the queue")
    holds(lambda: len(hm.tasks("/local")) == 6, 1.0, desc="no instance in us")
    assert hm.deployment(dep) is not None

    us = hm.deploy(app_def("/abroad", SLEEP_CMD, 2, constraints=[["@region", "IS", "us"]]))
    assert {nodes[t["host"]].name for t in us} <= {"agent-7", "agent-8"}
    assert {t["region"] for t in us} == {"us"}


def test_ha_master_failover_marathon_resubscribes(
    ha_cluster: EmbeddedBackend, hm: Marathon
) -> None:
    """Crash the leading master: Marathon follows the new leader with its framework id and tasks."""
    (task,) = hm.deploy(app_def("/survivor", SLEEP_CMD, 1))
    framework_id = hm.info()["frameworkId"]
    old_leader = ha_cluster.cluster.status()["leader"]
    assert old_leader
    ha_cluster.crash(old_leader)
    new_leader = wait_until(
        lambda: (name := ha_cluster.cluster.status()["leader"]) and name != old_leader and name,
        30,
        desc="a new leading master",
    )
    new_addr = ha_cluster.node(new_leader).address

    def subscribed() -> bool:
        fws = master_get(ha_cluster, "/master/frameworks")["frameworks"]
        return any(f["id"] == framework_id and f["active"] for f in fws)

    wait_until(subscribed, 30, desc="Marathon's framework active on the new leader")
    assert hm.info()["frameworkId"] == framework_id
    assert new_addr in hm.info()["marathon_config"]["mesos_leader_ui_url"]
    (again,) = hm.wait_running("/survivor", 1)
    assert again["id"] == task["id"]

    fresh = hm.deploy(app_def("/after-failover", SLEEP_CMD, 2), timeout=30)
    assert len(fresh) == 2
    fws = master_get(ha_cluster, "/master/frameworks")["frameworks"]
    assert [f["id"] for f in fws if f["name"] == "marathon"] == [framework_id]
    ha_cluster.start(old_leader)


def test_ha_quorum_loss_marathon_disconnected_holds_deployments(
    ha_cluster: EmbeddedBackend, hm: Marathon
) -> None:
    """No quorum: masters answer 503 except health and version; Marathon keeps serving
    reads, says it is disconnected, holds a new deployment; tasks keep running; with the
    quorum back the deployment finishes and nothing ran twice."""
    import httpx

    from playground.chaos.faults import Faults

    (task,) = hm.deploy(app_def("/steady", SLEEP_CMD, 1))
    faults = Faults(ha_cluster)
    broken = faults.break_quorum()
    try:
        assert len(broken) == 2
        survivor = next(
            n for n in ha_cluster.nodes() if n.role == "master" and n.state == "running"
        )
        base = f"http://{survivor.address}"

        def no_leader() -> bool:
            r = httpx.get(f"{base}/master/state", follow_redirects=False, timeout=5)
            return r.status_code == 503

        wait_until(no_leader, 15, desc="the surviving master losing its leadership")
        for path in ("/master/slaves", "/master/frameworks", "/master/tasks", "/metrics/snapshot"):
            r = httpx.get(f"{base}{path}", follow_redirects=False, timeout=5)
            assert (r.status_code, r.text) == (503, "No leader elected"), path
        r = httpx.post(f"{base}/api/v1", json={"type": "GET_METRICS"}, timeout=5)
        assert r.status_code == 503
        assert httpx.get(f"{base}/master/health", timeout=5).status_code == 200
        assert httpx.get(f"{base}/version", timeout=5).json()["version"]
        r = httpx.post(f"{base}/api/v1", json={"type": "GET_HEALTH"}, timeout=5)
        assert r.json()["get_health"]["healthy"] is True

        def disconnected() -> bool:
            r = hm.get("/metrics")
            return r.json()["gauges"]["marathon.mesos.connected.gauge"]["value"] == 0.0

        wait_until(disconnected, 20, desc="Marathon reporting itself disconnected")
        assert [t["id"] for t in hm.tasks("/steady")] == [task["id"]]
        r = hm.create(app_def("/held", SLEEP_CMD, 1))
        dep = r.headers["Marathon-Deployment-Id"]
        holds(lambda: hm.deployment(dep) is not None, 1.5, desc="the deployment held")
        assert hm.tasks("/held") == []
        events = [e["kind"] for e in ha_cluster.cluster.state.events(kinds=("marathon.",))]
        assert "marathon.disconnected" in events
    finally:
        faults.heal()
    # While the new leader waits for agents to re-register it does not answer for their
    # tasks (no TASK_UNKNOWN): Marathon keeps seeing the task running.
    holds(
        lambda: [t["state"] for t in hm.tasks("/steady")] == ["TASK_RUNNING"],
        2.0,
        desc="the steady task stays TASK_RUNNING through the recovery",
    )
    wait_until(lambda: hm.deployment(dep) is None, 30, desc="the held deployment finishing")
    hm.wait_running("/held", 1)
    (again,) = hm.wait_running("/steady", 1)
    assert again["id"] == task["id"]
    r = hm.get("/metrics")
    assert r.json()["gauges"]["marathon.mesos.connected.gauge"]["value"] == 1.0
