"""Draining and maintenance on a real cluster: DRAIN_AGENT, the schedule, machine down/up.

As in Marathon 1.10, Marathon declines offers from machines whose maintenance window has
started; the tasks move because Mesos kills them (DRAIN_AGENT or machine/down) and
Marathon replaces them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from playground.backends import EmbeddedBackend
from playground.chaos.faults import FaultError, Faults
from playground.chaos.maintenance import Maintenance
from tests.integration.test_partition import agent_task_states, master, node_of_host
from tests.support.marathon_http import SLEEP_CMD, Marathon, app_def, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def marathon(cluster: EmbeddedBackend) -> Iterator[Marathon]:
    m = Marathon(str(cluster.endpoints()["marathon"]))
    wait_until(lambda: m.info().get("frameworkId"), 30, desc="Marathon registered with Mesos")
    yield m
    m.close()


@pytest.fixture()
def clean(cluster: EmbeddedBackend, marathon: Marathon) -> Iterator[Faults]:
    marathon.cleanup()
    reg = Faults(cluster)
    try:
        yield reg
    finally:
        reg.heal()
        ops = Maintenance(cluster)
        down = [s.node for s in ops.status() if s.mode == "DOWN" and s.node]
        if down:
            ops.up(down)
        httpx.post(
            f"{cluster.endpoints()['master']}/master/maintenance/schedule",
            json={"windows": []},
            timeout=5,
        )
        marathon.cleanup()


def operator(cluster: EmbeddedBackend, call: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{cluster.endpoints()['master']}/api/v1", json=call, timeout=10)


def agent_record(cluster: EmbeddedBackend, node: str) -> dict[str, Any]:
    host = cluster.node(node).address.split(":")[0]
    agents = operator(cluster, {"type": "GET_AGENTS"}).json()["get_agents"]["agents"]
    return next(a for a in agents if a["agent_info"]["hostname"] == host)


def test_drain_kills_tasks_marathon_replaces_them_heal_reactivates(
    cluster: EmbeddedBackend, marathon: Marathon, clean: Faults
) -> None:
    tasks = marathon.deploy(
        app_def("/maint/web", SLEEP_CMD, 2, constraints=[["hostname", "UNIQUE"]])
    )
    victim = tasks[0]
    node = node_of_host(cluster, victim["host"])

    fault = clean.drain(node, max_grace=2)
    assert (fault.kind, fault.target) == ("drain", node)
    assert clean.drain(node).id == fault.id  # idempotent
    rec = wait_until(
        lambda: (r := agent_record(cluster, node))["drain_info"]["state"] == "DRAINED" and r,
        15,
        desc="the agent drained",
    )
    assert rec["deactivated"] is True
    assert rec["drain_info"]["config"]["max_grace_period"] == {"nanoseconds": 2_000_000_000}
    # The task was killed by the drain, with Mesos's reason.
    completed = master(cluster, "/master/tasks?limit=1000")["tasks"]
    killed = next(t for t in completed if t["id"] == victim["id"])
    assert killed["state"] == "TASK_KILLED"
    assert agent_task_states(cluster, node)[victim["id"]] == "TASK_KILLED"
    # Marathon replaces it elsewhere: the draining agent gets no offers.
    running = marathon.wait_running("/maint/web", 2)
    assert victim["id"] not in {t["id"] for t in running}
    assert cluster.node(node).address.split(":")[0] not in {t["host"] for t in running}

    clean.heal(node)
    rec = agent_record(cluster, node)
    assert rec["deactivated"] is False and "drain_info" not in rec


def test_drain_and_operator_errors(cluster: EmbeddedBackend, clean: Faults) -> None:
    r = operator(cluster, {"type": "DRAIN_AGENT", "drain_agent": {}})
    assert r.status_code == 400 and "agent_id" in r.text
    r = operator(cluster, {"type": "DRAIN_AGENT", "drain_agent": {"agent_id": {"value": "nope"}}})
    assert (r.status_code, r.text) == (404, "Agent nope not found")
    with pytest.raises(FaultError, match="drain applies to agents"):
        clean.drain("marathon")
    with pytest.raises(FaultError, match="unknown node"):
        clean.drain("agent-99")


def test_schedule_down_up_moves_tasks_and_brings_the_node_back(
    cluster: EmbeddedBackend, marathon: Marathon, clean: Faults
) -> None:
    ops = Maintenance(cluster)
    target = "agent-2"
    host = cluster.node(target).address.split(":")[0]
    (task,) = marathon.deploy(
        app_def("/maint/pinned", SLEEP_CMD, 1, constraints=[["hostname", "LIKE", host]])
    )

    # Scheduling drains the machine: offers carry the unavailability, Marathon declines
    # them (AgentMaintenance), the running task is left alone.
    (st,) = ops.schedule([target], start_in=0, duration=600)
    assert (st.node, st.mode, st.duration) == (target, "DRAINING", 600.0)
    r = operator(cluster, {"type": "GET_MAINTENANCE_STATUS"})
    assert r.json()["get_maintenance_status"]["status"]["draining_machines"] == [
        {"id": {"hostname": host, "ip": host}}
    ]
    marathon.put("/v2/apps/maint/pinned", {"instances": 2}, params={"force": "true"})

    def declined_for_maintenance() -> bool:
        entry = marathon.queue_entry("/maint/pinned")
        rows = (entry or {}).get("processedOffersSummary", {}).get("rejectSummaryLastOffers", [])
        return any(r["reason"] == "AgentMaintenance" and r["declined"] > 0 for r in rows)

    wait_until(declined_for_maintenance, 15, desc="Marathon declining the draining agent")
    assert [t["id"] for t in marathon.tasks("/maint/pinned") if t["state"] == "TASK_RUNNING"] == [
        task["id"]
    ]

    # Down: the agent is removed and shut down; its task is gone; it cannot register.
    (st,) = ops.down([target])
    assert st.mode == "DOWN"
    assert cluster.node(target).state == "stopped"
    wait_until(
        lambda: not [t for t in marathon.tasks("/maint/pinned") if t["id"] == task["id"]],
        15,
        desc="Marathon forgetting the task of the downed agent",
    )
    assert host not in [s["hostname"] for s in master(cluster, "/master/slaves")["slaves"]]
    events = [e["kind"] for e in cluster.cluster.state.events(kinds=("maintenance.",))]
    assert events[-2:] == ["maintenance.scheduled", "maintenance.down"]

    # Up: maintenance ends, the node starts and registers, the app gets its instances.
    assert ops.up([target]) == [target]
    wait_until(
        lambda: host in [s["hostname"] for s in master(cluster, "/master/slaves")["slaves"]],
        15,
        desc="the agent registered again",
    )
    assert ops.status() == []
    marathon.wait_running("/maint/pinned", 2, timeout=30)


def test_invalid_schedule_and_machine_lists_are_400_and_change_nothing(
    cluster: EmbeddedBackend, clean: Faults
) -> None:
    base = cluster.endpoints()["master"]
    bad = {
        "windows": [
            {
                "machine_ids": [{"hostname": "h", "ip": "bad"}],
                "unavailability": {"start": {"nanoseconds": 1}},
            }
        ]
    }
    r = httpx.post(f"{base}/master/maintenance/schedule", json=bad, timeout=5)
    assert (r.status_code, r.text) == (400, "Failed to parse IP address: bad")
    r = httpx.post(
        f"{base}/master/machine/down", json=[{"hostname": "x", "ip": "10.9.9.9"}], timeout=5
    )
    assert r.status_code == 400 and "not part of a maintenance schedule" in r.text
    r = httpx.post(f"{base}/master/machine/up", json=[], timeout=5)
    assert (r.status_code, r.text) == (400, "List of machines is empty")
    assert httpx.get(f"{base}/master/maintenance/status", timeout=5).json() == {}
    # The v1 calls: UPDATE answers 202, GET shows the schedule.
    window = {
        "machine_ids": [{"hostname": "spare", "ip": "10.9.9.9"}],
        "unavailability": {"start": {"nanoseconds": int(time.time() * 1e9)}},
    }
    r = operator(
        cluster,
        {
            "type": "UPDATE_MAINTENANCE_SCHEDULE",
            "update_maintenance_schedule": {"schedule": {"windows": [window]}},
        },
    )
    assert r.status_code == 202
    r = operator(cluster, {"type": "GET_MAINTENANCE_SCHEDULE"})
    assert r.json()["get_maintenance_schedule"]["schedule"]["windows"] == [window]
