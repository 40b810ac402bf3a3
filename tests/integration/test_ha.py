"""Leader election, redirects, failover and quorum in the ``ha`` topology."""

from __future__ import annotations

import time
from typing import Any

import httpx
import psutil
import pytest

from playground.backends import EmbeddedBackend
from tests.integration.test_scheduler_api import sandbox_pid
from tests.support.v1scheduler import V1Scheduler, task_info

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def masters(cluster: EmbeddedBackend) -> list[Any]:
    return [n for n in cluster.nodes() if n.role == "master"]


def leader_name(cluster: EmbeddedBackend) -> str | None:
    st = cluster.cluster.status()
    return st["leader"]


def wait_leader(
    cluster: EmbeddedBackend, timeout: float = 15.0, other_than: str | None = None
) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        name = leader_name(cluster)
        if name and name != other_than:
            return name
        time.sleep(0.1)
    raise AssertionError("no new leading master elected")


def test_ha_topology_has_regions_zones_and_racks(ha_cluster: EmbeddedBackend) -> None:
    """The ha cluster has 3 masters, 6 agents in eu over zones a/b/c x racks r1/r2, 2 agents in us."""
    nodes = ha_cluster.nodes()
    agents = [n for n in nodes if n.role == "agent"]
    assert len(masters(ha_cluster)) == 3
    assert sorted((n.zone, n.rack) for n in agents if n.region == "eu") == [
        (z, r) for z in "abc" for r in ("r1", "r2")
    ]
    assert sum(1 for n in agents if n.region == "us") == 2
    # every node has its own address, but the edge runs on its public agent's
    own = [n for n in nodes if n.role != "edge"]
    assert len({n.address.split(":")[0] for n in own}) == len(own)
    hosts = {n.name: n.address.split(":")[0] for n in nodes}
    assert hosts["edge-1"] == hosts["public-agent-1"]


def test_non_leaders_redirect_to_the_leader(ha_cluster: EmbeddedBackend) -> None:
    """Every non-leading master answers 307 to the leader's address; the leader answers 200."""
    leader = wait_leader(ha_cluster)
    leader_addr = ha_cluster.node(leader).address
    for m in masters(ha_cluster):
        r = httpx.get(f"http://{m.address}/master/state", follow_redirects=False, timeout=5)
        if m.name == leader:
            assert r.status_code == 200
            assert r.json()["leader"] == f"master@{leader_addr}"
        else:
            assert r.status_code == 307
            assert r.headers["Location"] == f"//{leader_addr}/master/state"
        r = httpx.get(f"http://{m.address}/master/redirect", follow_redirects=False, timeout=5)
        assert r.status_code == 307 and r.headers["Location"] == f"//{leader_addr}"


def test_leader_failover_keeps_tasks_and_framework(ha_cluster: EmbeddedBackend) -> None:
    """Killing the leading master elects a new one; agents and the framework follow; the task keeps running once."""
    leader = wait_leader(ha_cluster)
    follower = next(m for m in masters(ha_cluster) if m.name != leader)
    sched = V1Scheduler(f"http://{follower.address}", failover_timeout=3600)
    sched.subscribe()
    try:
        offer = sched.wait_offers(predicate=lambda o: o["allocation_info"]["role"] == "*")[0]
        node = next(
            n.name for n in ha_cluster.nodes() if n.address.split(":")[0] == offer["hostname"]
        )
        sched.launch(
            offer,
            [
                task_info(
                    "survivor", "survivor-1", None, "echo $$ > pid; exec sleep 600", offer=offer
                )
            ],
        )
        sched.wait_task_state("survivor-1", "TASK_RUNNING")
        proc = psutil.Process(sandbox_pid(ha_cluster, node, "survivor-1"))
        t0 = time.monotonic()
        ha_cluster.crash(leader)
        new_leader = wait_leader(ha_cluster, other_than=leader)
        elapsed = time.monotonic() - t0
        assert new_leader != leader
        assert elapsed < 10, f"failover took {elapsed:.1f}s"
        assert sched.disconnected.wait(10)
        # A scheduler detects masters again after losing one: any live master redirects.
        live = next(m for m in masters(ha_cluster) if m.name not in (leader, new_leader))
        sched.endpoint = f"http://{live.address}/api/v1/scheduler"
        sched.subscribe(timeout=20)
        assert proc.is_running()
        url = f"http://{ha_cluster.node(new_leader).address}"
        deadline = time.monotonic() + 20
        state: dict[str, Any] = {}
        while time.monotonic() < deadline:
            state = httpx.get(f"{url}/master/state", timeout=5).json()
            ours = [f for f in state["frameworks"] if f["id"] == sched.framework_id]
            if len(state["slaves"]) == 9 and ours and ours[0]["tasks"]:
                break
            time.sleep(0.2)
        ours = [f for f in state["frameworks"] if f["id"] == sched.framework_id]
        assert len(state["slaves"]) == 9
        assert [t["id"] for t in ours[0]["tasks"]] == ["survivor-1"]
        assert ours[0]["tasks"][0]["state"] == "TASK_RUNNING"
        sched.reconcile([])
        assert (
            sched.wait_task_state("survivor-1", "TASK_RUNNING")["reason"] == "REASON_RECONCILIATION"
        )
        ha_cluster.start(leader)
        sched.kill("survivor-1")
        sched.wait_task_state("survivor-1", "TASK_KILLED")
    finally:
        sched.close()


def test_losing_quorum_stops_leadership_not_tasks(ha_cluster: EmbeddedBackend) -> None:
    """With 2 of 3 masters down there is no leader, running tasks keep running; one master back restores it."""
    leader = wait_leader(ha_cluster)
    sched = V1Scheduler(f"http://{ha_cluster.node(leader).address}", failover_timeout=3600)
    sched.subscribe()
    try:
        offer = sched.wait_offers(predicate=lambda o: o["allocation_info"]["role"] == "*")[0]
        node = next(
            n.name for n in ha_cluster.nodes() if n.address.split(":")[0] == offer["hostname"]
        )
        sched.launch(
            offer, [task_info("q", "quorum-1", None, "echo $$ > pid; exec sleep 600", offer=offer)]
        )
        sched.wait_task_state("quorum-1", "TASK_RUNNING")
        proc = psutil.Process(sandbox_pid(ha_cluster, node, "quorum-1"))
        down = [m.name for m in masters(ha_cluster)][:2]
        for name in down:
            ha_cluster.crash(name)
        survivor = next(m for m in masters(ha_cluster) if m.name not in down)
        deadline = time.monotonic() + 15
        r = httpx.get(f"http://{survivor.address}/master/state", follow_redirects=False, timeout=5)
        while time.monotonic() < deadline and r.status_code != 503:
            time.sleep(0.1)
            r = httpx.get(
                f"http://{survivor.address}/master/state", follow_redirects=False, timeout=5
            )
        assert r.status_code == 503, "the surviving master still acts as if there were a leader"
        assert r.text == "No leader elected"
        assert leader_name(ha_cluster) is None
        time.sleep(1.0)
        assert proc.is_running()
        ha_cluster.start(down[0])
        assert wait_leader(ha_cluster, timeout=20)
        assert proc.is_running()
        ha_cluster.start(down[1])
    finally:
        sched.close()
