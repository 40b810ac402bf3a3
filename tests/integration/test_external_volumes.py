"""External volumes through Marathon on a real cluster: the lessons, with `data load` / `data verify`.

A ``kv --durable`` app keeps its data on a volume of the storage node (``external``,
provider ``dvdi``, driver ``pxd``): with replication 2 the task moves when its node dies
and every acknowledged record is there; with replication 1 it waits (and ``/v2/queue``
says why) until the node is back; one task per volume; a full volume refuses writes
until it is resized online.
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
from tests.support import auth
from tests.support.marathon_http import Marathon, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

KV_CMD = "playground workload kv --data pgdata --durable"


def kv_app(app_id: str, volume: str, repl: int | None = 2, **extra: Any) -> dict[str, Any]:
    options = {"dvdi/driver": "pxd"}
    if repl is not None:
        options["dvdi/repl"] = str(repl)
    external = {"name": volume, "provider": "dvdi", "size": 1, "options": options}
    return {
        "id": app_id,
        "cmd": KV_CMD,
        "cpus": 0.1,
        "mem": 64,
        "instances": 1,
        "portDefinitions": [{"port": 0}],
        "container": {
            "type": "MESOS",
            "volumes": [{"containerPath": "pgdata", "mode": "RW", "external": external}],
        },
        "upgradeStrategy": {"minimumHealthCapacity": 0, "maximumOverCapacity": 0},
        **extra,
    }


@pytest.fixture(scope="module")
def marathon(cluster: EmbeddedBackend) -> Iterator[Marathon]:
    m = Marathon(str(cluster.endpoints()["marathon"]))
    wait_until(lambda: m.info().get("frameworkId"), 30, desc="Marathon registered with Mesos")
    yield m
    m.close()


@pytest.fixture(scope="module")
def storage(cluster: EmbeddedBackend) -> Iterator[httpx.Client]:
    client = httpx.Client(
        base_url=str(cluster.endpoints()["storage"]), timeout=30, headers=auth.headers(cluster)
    )
    wait_until(
        lambda: all(p["online"] for p in client.get("/v1/pools").json()), 20, desc="pools online"
    )
    yield client
    client.close()


@pytest.fixture()
def faults(cluster: EmbeddedBackend, marathon: Marathon) -> Iterator[Faults]:
    marathon.cleanup()
    reg = Faults(cluster)
    try:
        yield reg
    finally:
        reg.heal()
        marathon.cleanup()


def data(cluster: EmbeddedBackend, *args: str) -> subprocess.CompletedProcess[str]:
    """``playground data ARGS`` against this cluster."""
    env = {**os.environ, "PLAYGROUND_STATE_DIR": str(cluster.state_dir)}
    return subprocess.run(
        [*playground_cmd(), "data", *args], capture_output=True, text=True, env=env, timeout=120
    )


def kv_ready(task: dict[str, Any]) -> None:
    """Wait until the task's kv answers (TASK_RUNNING comes before it listens)."""
    url = f"http://{task['host']}:{task['ports'][0]}/health"
    wait_until(lambda: httpx.get(url, timeout=2).status_code == 200, 10, desc="kv answering")


def node_of_host(cluster: EmbeddedBackend, host: str) -> str:
    return next(n.name for n in cluster.nodes() if n.address.split(":")[0] == host)


def running_elsewhere(marathon: Marathon, app_id: str, old: dict[str, Any]) -> Any:
    tasks = [t for t in marathon.tasks(app_id) if t["state"] == "TASK_RUNNING"]
    return tasks[0] if len(tasks) == 1 and tasks[0]["id"] != old["id"] else None


def test_replicated_volume_moves_with_its_task_and_every_record_survives(
    cluster: EmbeddedBackend, marathon: Marathon, storage: httpx.Client, faults: Faults
) -> None:
    (task,) = marathon.deploy(kv_app("/db", "dbvol", repl=2))
    kv_ready(task)
    vol = storage.get("/v1/volumes/dbvol").json()
    node = node_of_host(cluster, task["host"])
    assert vol["repl"] == 2 and vol["primary"] == node, "provisioned where the task runs"
    assert vol["attachment"]["task_id"] == task["id"]
    assert len({r["zone"] for r in vol["replicas"]}) == 2

    load = data(cluster, "load", "--app", "/db", "--records", "200", "--seed", "7")
    assert load.returncode == 0, load.stdout + load.stderr
    assert "loaded 200 records" in load.stdout

    # A snapshot while the task runs freezes its process group for the capture.
    wait_until(
        lambda: storage.get("/v1/volumes/dbvol").json()["attachment"].get("pid"),
        10,
        desc="the agent reported the task's pid",
    )
    snap = storage.post("/v1/volumes/dbvol/snapshots", json={"name": "while-running"})
    assert snap.status_code == 201, snap.text
    assert snap.json()["freeze_ms"] is not None and snap.json()["freeze_ms"] >= 0
    assert snap.json()["source_node"] == node

    faults.break_node(node, "crash")
    moved = wait_until(
        lambda: running_elsewhere(marathon, "/db", task), 30, desc="/db running on another node"
    )
    assert node_of_host(cluster, moved["host"]) != node
    vol = storage.get("/v1/volumes/dbvol").json()
    assert vol["primary"] == node_of_host(cluster, moved["host"])
    assert vol["attachment"]["task_id"] == moved["id"]
    kv_ready(moved)
    verify = data(cluster, "verify", "--app", "/db")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "ok: 200 records" in verify.stdout and moved["id"] in verify.stdout


def test_unreplicated_volume_makes_the_app_wait_and_says_why(
    cluster: EmbeddedBackend, marathon: Marathon, storage: httpx.Client, faults: Faults
) -> None:
    (task,) = marathon.deploy(kv_app("/single", "onevol", repl=1))
    kv_ready(task)
    load = data(cluster, "load", "--app", "/single", "--records", "50", "--seed", "3")
    assert load.returncode == 0, load.stdout + load.stderr
    node = node_of_host(cluster, task["host"])

    faults.break_node(node, "crash")

    def waiting() -> str | None:
        entry = marathon.queue_entry("/single")
        return entry.get("waitingReason") if entry else None

    reason = wait_until(waiting, 30, desc="/single queued with a waitingReason")
    assert reason == f"volume onevol has no online replica (on {node})"
    assert not [t for t in marathon.tasks("/single") if t["state"] == "TASK_RUNNING"]
    # It keeps waiting: not placed anywhere else while the only replica is offline.
    wait_until(lambda: marathon.queue_entry("/single"), 2, desc="still queued")
    assert marathon.tasks("/single") == [] or all(
        t["state"] != "TASK_RUNNING" for t in marathon.tasks("/single")
    )

    faults.heal(node)
    back = wait_until(
        lambda: running_elsewhere(marathon, "/single", task), 30, desc="/single running again"
    )
    kv_ready(back)
    vol = storage.get("/v1/volumes/onevol").json()
    here = node_of_host(cluster, back["host"])
    # Wherever it runs now, the working copy came from the one replica, and it is still one.
    assert vol["primary"] == here and vol["attachment"]["task_id"] == back["id"]
    assert [r["node"] for r in vol["replicas"]] == [here], "replication 1 stays 1"
    verify = data(cluster, "verify", "--app", "/single")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "ok: 50 records" in verify.stdout


def test_one_task_per_volume(
    cluster: EmbeddedBackend, marathon: Marathon, storage: httpx.Client, faults: Faults
) -> None:
    (task,) = marathon.deploy(kv_app("/owner", "sharedvol"))
    # Marathon refuses more than one instance of an app with an external volume.
    r = marathon.post("/v2/apps", kv_app("/twice", "othervol", instances=2))
    assert r.status_code == 422, r.text
    assert r.json() == {
        "message": "Object is not valid",
        "details": [
            {
                "path": "/",
                "errors": [
                    "Number of instances is limited to 1 when declaring DVDI volumes in "
                    "app [/twice]"
                ],
            }
        ],
    }
    r = marathon.put("/v2/apps/owner", {"instances": 2})
    assert r.status_code == 422 and "Number of instances is limited to 1" in r.text

    # A second app naming the same volume: refused by Marathon's root-group rule...
    r = marathon.post("/v2/apps", kv_app("/intruder", "sharedvol"))
    assert r.status_code == 422, r.text
    assert r.json()["details"] == [
        {
            "path": "/",
            "errors": [
                "Volume name 'sharedvol' in /intruder conflicts with volume(s) of same name "
                "in app(s): /owner",
                "Volume name 'sharedvol' in /owner conflicts with volume(s) of same name "
                "in app(s): /intruder",
            ],
        }
    ]
    # Portworx's inline form names the same volume in words Marathon does not compare: the
    # app is accepted, and the storage node refuses the attach while the first task runs.
    marathon.create(kv_app("/intruder", "name=sharedvol,repl=2"))

    def failure() -> dict[str, Any] | None:
        app = marathon.app("/intruder", embed=["apps.lastTaskFailure"])
        return app.get("lastTaskFailure")

    failed = wait_until(failure, 20, desc="the intruder's task failure")
    assert failed["state"] == "TASK_FAILED"
    assert failed["message"] == (
        "Failed to mount the external volume: volume sharedvol is attached to task "
        f"{task['id']} on {node_of_host(cluster, task['host'])}; a volume is attached to one "
        "task at a time"
    )
    assert [t["id"] for t in marathon.tasks("/owner") if t["state"] == "TASK_RUNNING"] == [
        task["id"]
    ]
    att = storage.get("/v1/volumes/sharedvol").json()["attachment"]
    assert att["task_id"] == task["id"], "the owner keeps its volume"


def test_full_volume_refuses_writes_until_an_online_resize(
    cluster: EmbeddedBackend, marathon: Marathon, storage: httpx.Client, faults: Faults
) -> None:
    created = storage.post("/v1/volumes", json={"name": "tinyvol", "size": 0.001, "repl": 2})
    assert created.status_code == 201, created.text
    limit = created.json()["size_bytes"]
    assert limit == int(0.001 * 1024**3)
    # The volume exists: its own size wins over the app's options.
    (task,) = marathon.deploy(kv_app("/full", "tinyvol", repl=1))
    assert storage.get("/v1/volumes/tinyvol").json()["repl"] == 2
    kv = httpx.Client(base_url=f"http://{task['host']}:{task['ports'][0]}", timeout=30)
    kv_ready(task)
    # Fill most of it with one value, so 200 records overflow it.
    filler = kv.put("/v1/kv/filler", content=b"f" * (limit - 60_000))
    assert filler.status_code == 201, filler.text

    load = data(cluster, "load", "--app", "/full", "--records", "200", "--seed", "7")
    assert load.returncode == 1
    assert "volume is full" in load.stderr and "no manifest written" in load.stderr
    refused = kv.put("/v1/kv/one-more", content=b"x" * 1000)
    assert refused.status_code == 507
    assert "volume is full" in refused.json()["message"]

    # The monitor scrapes the storage node: the volume is nearly full.
    monitor = str(cluster.endpoints()["monitor"])

    def nearly_full() -> dict[str, Any] | None:
        alerts = httpx.get(f"{monitor}/v1/alerts", timeout=5).json()
        return next(
            (
                a
                for a in alerts
                if a["labels"]["alertname"] == "VolumeNearlyFull"
                and a["labels"].get("volume") == "tinyvol"
            ),
            None,
        )

    wait_until(nearly_full, 15, desc="the VolumeNearlyFull alert for tinyvol")

    resized = storage.post("/v1/volumes/tinyvol/resize", json={"size": 0.01})
    assert resized.status_code == 200, resized.text
    load = data(cluster, "load", "--app", "/full", "--records", "200", "--seed", "7")
    assert load.returncode == 0, load.stdout + load.stderr
    assert kv.put("/v1/kv/one-more", content=b"x" * 1000).status_code == 201
    (same,) = marathon.tasks("/full")
    assert same["id"] == task["id"] and same["state"] == "TASK_RUNNING", "no restart"
    verify = data(cluster, "verify", "--app", "/full")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert kv.get("/v1/kv/filler").content == b"f" * (limit - 60_000)
    kv.close()


def test_snapshot_restore_brings_deleted_records_back_waiting_for_the_detach(
    cluster: EmbeddedBackend, marathon: Marathon, storage: httpx.Client, faults: Faults
) -> None:
    """The snapshot lesson: records deleted after a snapshot come back with a restore in
    place (and a clone of the volume carries them to a second app). The app is scaled to 0 and the restore asked for at once, while its task (which
    outlives SIGTERM) is still being stopped: the restore waits for that detach in progress
    instead of refusing, then the app comes back on the restored volume."""
    app = kv_app(
        "/restored",
        "restovol",
        repl=2,
        # kv ends on SIGTERM; the shell and its sleep ignore it, so the task stops slowly
        cmd=f"trap '' TERM; {KV_CMD}; sleep 60",
        taskKillGracePeriodSeconds=150,  # 3 s of wall time at the tests' time scale 50
    )
    (task,) = marathon.deploy(app)
    kv_ready(task)
    load = data(cluster, "load", "--app", "/restored", "--records", "60", "--seed", "11")
    assert load.returncode == 0, load.stdout + load.stderr
    snap = storage.post("/v1/volumes/restovol/snapshots", json={"name": "before-the-loss"})
    assert snap.status_code == 201, snap.text

    url = f"http://{task['host']}:{task['ports'][0]}"
    keys = [k for k in httpx.get(f"{url}/v1/kv", timeout=5).json()["keys"] if "manifest" not in k]
    for key in keys[:5]:
        assert httpx.delete(f"{url}/v1/kv/{key}", timeout=5).status_code == 200
    lost = data(cluster, "verify", "--app", "/restored")
    assert lost.returncode == 1 and keys[0] in lost.stdout + lost.stderr

    assert marathon.put("/v2/apps/restored", {"instances": 0}).status_code == 200
    wait_until(
        lambda: (storage.get("/v1/volumes/restovol").json()["attachment"] or {}).get("detaching"),
        10,
        desc="the stopping task's detach announced",
    )
    restored = storage.post(f"/v1/snapshots/{snap.json()['id']}/restore", json={}, timeout=90)
    assert restored.status_code == 200, restored.text
    assert restored.json()["volume"]["attachment"] is None

    wait_until(
        lambda: not [d for d in marathon.deployments() if "/restored" in d["affectedApps"]],
        10,
        desc="the scale-down deployment over",
    )
    assert marathon.put("/v2/apps/restored", {"instances": 1}).status_code == 200
    back = wait_until(
        lambda: next(
            (t for t in marathon.tasks("/restored") if t["state"] == "TASK_RUNNING"), None
        ),
        30,
        desc="/restored running again",
    )
    kv_ready(back)
    verify = data(cluster, "verify", "--app", "/restored")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "ok: 60 records" in verify.stdout

    # A clone carries the records and their manifest: a second app on it verifies too.
    clone = storage.post("/v1/volumes/restovol/clone", json={"name": "restoclone"})
    assert clone.status_code == 201, clone.text
    (other,) = marathon.deploy(kv_app("/cloned", "restoclone", repl=None))
    kv_ready(other)
    on_clone = data(cluster, "verify", "--app", "/cloned")
    assert on_clone.returncode == 0, on_clone.stdout + on_clone.stderr
    assert "ok: 60 records" in on_clone.stdout and other["id"] in on_clone.stdout
