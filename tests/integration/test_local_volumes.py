"""Local persistent volumes on a real cluster: the resident ``kv`` app and its agent.

The classic lesson: the volume lives on one agent. The agent dies -> the task waits (it is
not relaunched elsewhere); the agent returns with its disk -> the data is there; a clean
disk (``rebuild``) or ``wipe=true`` -> the data is gone and a new, empty volume is made.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from playground.backends import EmbeddedBackend
from playground.chaos.faults import Faults
from tests.conftest import playground_cmd
from tests.support.marathon_http import Marathon, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

APP = "/stateful/kv"


@pytest.fixture(scope="module")
def marathon(cluster: EmbeddedBackend) -> Iterator[Marathon]:
    m = Marathon(str(cluster.endpoints()["marathon"]))
    wait_until(lambda: m.info().get("frameworkId"), 30, desc="Marathon registered with Mesos")
    yield m
    m.close()


@pytest.fixture()
def faults(cluster: EmbeddedBackend, marathon: Marathon) -> Iterator[Faults]:
    reg = Faults(cluster)
    try:
        yield reg
    finally:
        reg.heal()
        marathon.cleanup()


def kv_app(app_id: str = APP) -> dict[str, Any]:
    return {
        "id": app_id,
        "cmd": "playground workload kv --data data --durable",
        "cpus": 0.1,
        "mem": 64,
        "instances": 1,
        "container": {
            "type": "MESOS",
            "volumes": [{"containerPath": "data", "mode": "RW", "persistent": {"size": 16}}],
        },
    }


def node_of(cluster: EmbeddedBackend, host: str) -> str:
    return next(
        n.name for n in cluster.nodes() if n.address.split(":")[0] == host and "agent" in n.role
    )


def running(marathon: Marathon, app_id: str = APP) -> dict[str, Any]:
    def one() -> dict[str, Any] | None:
        tasks = [t for t in marathon.tasks(app_id) if t["state"] == "TASK_RUNNING"]
        return tasks[0] if len(tasks) == 1 else None

    return wait_until(one, 30, desc=f"a running task of {app_id}")


def put(task: dict[str, Any], key: str, value: str) -> None:
    url = f"http://{task['host']}:{task['ports'][0]}/v1/kv/{key}"
    r = wait_until(lambda: httpx.put(url, content=value.encode(), timeout=2), 15, desc="kv up")
    assert r.status_code == 201, r.text


def get(task: dict[str, Any], key: str) -> int:
    url = f"http://{task['host']}:{task['ports'][0]}/v1/kv/{key}"
    return wait_until(lambda: httpx.get(url, timeout=2), 15, desc="kv up").status_code


def data(cluster: EmbeddedBackend, *args: str) -> subprocess.CompletedProcess[str]:
    """``playground data ARGS`` against this cluster (the lab's records and their manifest)."""
    env = {**os.environ, "PLAYGROUND_STATE_DIR": str(cluster.state_dir)}
    return subprocess.run(
        [*playground_cmd(), "data", *args], capture_output=True, text=True, env=env, timeout=120
    )


def verified(cluster: EmbeddedBackend, app_id: str, count: int) -> None:
    out = data(cluster, "verify", "--app", app_id)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"ok: {count} records" in out.stdout


def master(cluster: EmbeddedBackend, path: str) -> Any:
    return httpx.get(f"{cluster.endpoints()['master']}{path}", timeout=5).json()


def test_resident_kv_is_pinned_waits_for_its_agent_and_keeps_its_data(
    cluster: EmbeddedBackend, marathon: Marathon, faults: Faults
) -> None:
    marathon.create(kv_app())
    first = running(marathon)
    (vol,) = first["localVolumes"]
    assert vol["containerPath"] == "data" and vol["persistenceId"].startswith("stateful_kv#data#")
    put(first, "customer-1", "alice")
    load = data(cluster, "load", "--app", APP, "--records", "80", "--seed", "5")
    assert load.returncode == 0, load.stdout + load.stderr

    # The agent holds the reservation and the volume, as /master/slaves shows them.
    slave = next(
        s for s in master(cluster, "/master/slaves")["slaves"] if s["id"] == first["slaveId"]
    )
    reserved = slave["reserved_resources_full"]["slave_public"]
    volumes = [r for r in reserved if (r.get("disk") or {}).get("persistence")]
    assert [v["disk"]["persistence"]["id"] for v in volumes] == [vol["persistenceId"]]
    assert volumes[0]["disk"]["volume"] == {"container_path": "data", "mode": "RW"}
    labels = {x["key"]: x["value"] for x in volumes[0]["reservations"][0]["labels"]["labels"]}
    assert labels["marathon_framework_id"] == marathon.info()["frameworkId"]

    node = node_of(cluster, first["host"])
    faults.break_node(node, "crash")
    # Unreachable strategy disabled: the task is not replaced elsewhere, and the queue
    # shows the instance waiting for its reservation.
    entry = wait_until(
        lambda: (
            (q := marathon.queue_entry(APP))
            and q["processedOffersSummary"].get("rejectSummaryLastOffers")
            and any(
                r["reason"] == "NoCorrespondingReservationFound" and r["declined"] > 0
                for r in q["processedOffersSummary"]["rejectSummaryLastOffers"]
            )
            and q
        ),
        40,
        desc="the queue saying the instance waits for its reservation",
    )
    assert entry["count"] == 1
    tasks = marathon.tasks(APP)
    assert [t["id"] for t in tasks] == [first["id"]] and tasks[0]["state"] == "TASK_UNREACHABLE"

    faults.heal(node)
    again = running(marathon)
    assert again["slaveId"] == first["slaveId"] and again["id"] != first["id"]
    assert again["localVolumes"] == first["localVolumes"]
    assert get(again, "customer-1") == 200
    verified(cluster, APP, 80)

    # A rebuild with its disk: the same agent id, the same volume, the data.
    faults.rebuild(node, keep_disk=True)
    kept = wait_until(
        lambda: (t := running(marathon))["id"] != again["id"] and t, 40, desc="relaunch"
    )
    assert kept["slaveId"] == first["slaveId"] and get(kept, "customer-1") == 200
    verified(cluster, APP, 80)

    # wipe=true: the volume is destroyed, the instance starts over with a new, empty one.
    r = marathon.delete(f"/v2/apps{APP}/tasks/{kept['id']}", params={"wipe": "true"})
    assert r.status_code == 200, r.text
    fresh = wait_until(
        lambda: (t := running(marathon))["id"] != kept["id"] and t, 40, desc="a wiped relaunch"
    )
    assert fresh["localVolumes"][0]["persistenceId"] != vol["persistenceId"]
    assert get(fresh, "customer-1") == 404
    lost = data(cluster, "verify", "--app", APP)
    assert lost.returncode == 1, "a wiped volume has no records and no manifest"
    wait_until(
        lambda: (
            not any(
                (r.get("disk") or {}).get("persistence", {}).get("id") == vol["persistenceId"]
                for s in master(cluster, "/master/slaves")["slaves"]
                for rs in s["reserved_resources_full"].values()
                for r in rs
            )
        ),
        20,
        desc="the wiped volume destroyed on its agent",
    )


def test_clean_disk_rebuild_loses_the_volume_and_a_new_one_is_made(
    cluster: EmbeddedBackend, marathon: Marathon, faults: Faults
) -> None:
    marathon.create(kv_app("/stateful/kv2"))
    first = running(marathon, "/stateful/kv2")
    put(first, "customer-1", "bob")
    load = data(cluster, "load", "--app", "/stateful/kv2", "--records", "40", "--seed", "6")
    assert load.returncode == 0, load.stdout + load.stderr
    node = node_of(cluster, first["host"])
    result = faults.rebuild(node)
    assert result.old_agent_id == first["slaveId"]
    # TASK_GONE_BY_OPERATOR: the reservation is abandoned, a new volume is created.
    fresh = wait_until(
        lambda: (t := running(marathon, "/stateful/kv2"))["id"] != first["id"] and t,
        40,
        desc="a relaunch with a new volume",
    )
    assert fresh["slaveId"] != first["slaveId"]
    assert fresh["localVolumes"][0]["persistenceId"] != first["localVolumes"][0]["persistenceId"]
    assert get(fresh, "customer-1") == 404
    lost = data(cluster, "verify", "--app", "/stateful/kv2")
    assert lost.returncode == 1, "a clean disk keeps no records"


def volume_ids(cluster: EmbeddedBackend) -> set[str]:
    return {
        r["disk"]["persistence"]["id"]
        for s in master(cluster, "/master/slaves")["slaves"]
        for rs in s["reserved_resources_full"].values()
        for r in rs
        if (r.get("disk") or {}).get("persistence")
    }


def test_scale_down_keeps_the_reservation_and_app_deletion_destroys_it(
    cluster: EmbeddedBackend, marathon: Marathon, faults: Faults
) -> None:
    app_id = "/stateful/kv3"
    marathon.create(kv_app(app_id))
    first = running(marathon, app_id)
    put(first, "customer-1", "carol")
    pid = first["localVolumes"][0]["persistenceId"]
    r = marathon.put(f"/v2/apps{app_id}", {"instances": 0})
    assert r.status_code == 200, r.text
    reserved = wait_until(
        lambda: [t for t in marathon.tasks(app_id) if t["state"] == "TASK_RESERVED"],
        20,
        desc="the scaled-down instance kept on its reservation",
    )
    assert reserved[0]["localVolumes"] == first["localVolumes"] and "stagedAt" not in reserved[0]
    assert pid in volume_ids(cluster)
    # A resident app cannot change its volumes or resources.
    r = marathon.put(f"/v2/apps{app_id}", {"cpus": 0.2})
    assert r.status_code == 422
    assert "Resident Tasks may not change resource requirements!" in r.text
    marathon.put(f"/v2/apps{app_id}", {"instances": 1})
    back = running(marathon, app_id)
    assert back["slaveId"] == first["slaveId"] and back["localVolumes"] == first["localVolumes"]
    assert get(back, "customer-1") == 200
    marathon.delete(f"/v2/apps{app_id}")
    wait_until(lambda: pid not in volume_ids(cluster), 30, desc="the volume destroyed")
