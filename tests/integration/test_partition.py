"""Network partitions on a real cluster: what dies, what survives, what comes back.

``break --how partition`` keeps the node's processes running but cuts it off from every
other node (the kit's networking layer, ``playground.cluster.network``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from playground.backends import EmbeddedBackend
from playground.chaos.faults import Faults
from tests.support.marathon_http import HTTP_CMD, Marathon, app_def, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def marathon(cluster: EmbeddedBackend) -> Iterator[Marathon]:
    m = Marathon(str(cluster.endpoints()["marathon"]))
    wait_until(lambda: m.info().get("frameworkId"), 30, desc="Marathon registered with Mesos")
    yield m
    m.close()


@pytest.fixture()
def faults(cluster: EmbeddedBackend, marathon: Marathon) -> Iterator[Faults]:
    marathon.cleanup()
    reg = Faults(cluster)
    try:
        yield reg
    finally:
        reg.heal()
        marathon.cleanup()


def master(cluster: EmbeddedBackend, path: str) -> Any:
    return httpx.get(f"{cluster.endpoints()['master']}{path}", timeout=5).json()


def node_of_host(cluster: EmbeddedBackend, host: str) -> str:
    return next(n.name for n in cluster.nodes() if n.address.split(":")[0] == host)


def agent_task_states(cluster: EmbeddedBackend, node: str) -> dict[str, str]:
    """What the agent itself says about its tasks (asked from outside the cluster)."""
    addr = next(n.address for n in cluster.nodes() if n.name == node)
    state = httpx.get(f"http://{addr}/state", timeout=5).json()
    out: dict[str, str] = {}
    for f in state["frameworks"] + state.get("completed_frameworks", []):
        for e in f.get("executors", []) + f.get("completed_executors", []):
            for t in e.get("tasks", []) + e.get("completed_tasks", []):
                out[t["id"]] = t["state"]
    return out


def task_state(marathon: Marathon, app_id: str, task_id: str) -> str | None:
    return next((t["state"] for t in marathon.tasks(app_id) if t["id"] == task_id), None)


def test_partitioned_agent_is_unreachable_its_task_replaced_then_killed_on_return(
    cluster: EmbeddedBackend, marathon: Marathon, faults: Faults
) -> None:
    app = app_def("/part/web", HTTP_CMD, instances=2, constraints=[["hostname", "UNIQUE"]])
    (victim, *_) = marathon.deploy(app)
    node = node_of_host(cluster, victim["host"])

    fault = faults.break_node(node, "partition")
    assert fault.kind == "partition"
    # Mesos: 5 missed pings of 15 s (scaled) -> unreachable; Marathon: TASK_UNREACHABLE.
    wait_until(
        lambda: master(cluster, "/master/state")["unreachable_slaves"],
        15,
        desc="the master marking the partitioned agent unreachable",
    )
    # The node keeps running and so does its task -- it is only cut off.
    assert next(n.state for n in cluster.nodes() if n.name == node) == "running"
    assert agent_task_states(cluster, node).get(victim["id"]) == "TASK_RUNNING"

    # unreachableStrategy defaults (0 s / 0 s): a replacement runs elsewhere, UNIQUE held.
    def replaced() -> list[dict[str, Any]] | None:
        tasks = [t for t in marathon.tasks("/part/web") if t["state"] == "TASK_RUNNING"]
        ok = len(tasks) == 2 and victim["id"] not in {t["id"] for t in tasks}
        return tasks if ok else None

    tasks = wait_until(replaced, 15, desc="a replacement running on another agent")
    assert victim["host"] not in {t["host"] for t in tasks}
    assert len({t["host"] for t in tasks}) == 2

    faults.heal(node)
    # The agent re-registers; the returning task is unknown to Marathon (expunged) and
    # its periodic reconciliation kills it.
    wait_until(
        lambda: agent_task_states(cluster, node).get(victim["id"]) in ("TASK_KILLED", None),
        30,
        desc="the returning task killed after reconciliation",
    )
    assert {t["id"] for t in marathon.tasks("/part/web")} == {t["id"] for t in tasks}


def test_partitioned_marathon_loses_its_subscription_and_keeps_its_tasks(
    cluster: EmbeddedBackend, marathon: Marathon, faults: Faults
) -> None:
    (task,) = marathon.deploy(app_def("/part/keep", HTTP_CMD))
    fid = marathon.info()["frameworkId"]

    faults.break_node("marathon", "partition")

    def framework_active() -> bool:
        fws = master(cluster, "/master/frameworks")["frameworks"]
        return any(f["id"] == fid and f.get("active") for f in fws)

    wait_until(lambda: not framework_active(), 10, desc="the master sees Marathon disconnected")
    # Marathon still answers its users from its own state; the task keeps running.
    assert [t["id"] for t in marathon.tasks("/part/keep")] == [task["id"]]
    host = node_of_host(cluster, task["host"])
    assert agent_task_states(cluster, host)[task["id"]] == "TASK_RUNNING"

    faults.heal("marathon")
    wait_until(framework_active, 15, desc="Marathon re-subscribed")
    assert marathon.info()["frameworkId"] == fid
    assert [t["id"] for t in marathon.tasks("/part/keep")] == [task["id"]]


def test_a_task_returning_before_expunge_counts_again_and_the_surplus_is_killed(
    cluster: EmbeddedBackend, marathon: Marathon, faults: Faults
) -> None:
    """inactiveAfterSeconds short, expungeAfterSeconds long: a replacement starts; when the
    partition heals the old task is reported running again (reconciliation) and Marathon
    kills the surplus by the app's killSelection (YoungestFirst: the replacement)."""
    app = app_def(
        "/part/back",
        HTTP_CMD,
        instances=1,
        unreachableStrategy={"inactiveAfterSeconds": 1, "expungeAfterSeconds": 100000},
    )
    (old,) = marathon.deploy(app)
    node = node_of_host(cluster, old["host"])
    faults.break_node(node, "partition")

    def replacement() -> dict[str, Any] | None:
        return next(
            (
                t
                for t in marathon.tasks("/part/back")
                if t["state"] == "TASK_RUNNING" and t["id"] != old["id"]
            ),
            None,
        )

    new = wait_until(replacement, 20, desc="a replacement for the unreachable instance")
    # The inactive instance is not listed; its task still runs behind the partition.
    assert task_state(marathon, "/part/back", old["id"]) is None
    assert agent_task_states(cluster, node)[old["id"]] == "TASK_RUNNING"

    faults.heal(node)
    # Marathon's reconciliation (600 s real, 12 s at this time scale) finds the old task.
    wait_until(
        lambda: [t["id"] for t in marathon.tasks("/part/back")] == [old["id"]],
        40,
        desc="the surplus (the younger replacement) killed, the returning task kept",
    )
    assert task_state(marathon, "/part/back", old["id"]) == "TASK_RUNNING"
    new_node = node_of_host(cluster, new["host"])
    wait_until(
        lambda: agent_task_states(cluster, new_node).get(new["id"]) == "TASK_KILLED",
        10,
        desc="the replacement's process killed",
    )
