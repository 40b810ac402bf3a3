"""Crash safety of the storage node: SIGKILL in the middle of an operation, then start it again.

Each test fires a long-ish operation at ``storage-1`` (a snapshot of a volume of a few
hundred MiB in files, a cloud backup, a snapshot restore, a cloud restore), kills the
node's whole process tree with SIGKILL while it runs (``EmbeddedBackend.crash``), starts
it again and checks what the issue promises: every volume verifies (its replicas equal, its
snapshots intact), a restore is all or nothing, an in-place restore leaves the old content
or the snapshot's, no task stays frozen, an interrupted backup is resumed or failed and the
next one succeeds, and no temporary leftovers remain.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import psutil
import pytest

from playground.backends import EmbeddedBackend
from playground.cloud import Cloud
from playground.storage.replication import digest_tree
from tests.support import auth

pytestmark = [pytest.mark.integration, pytest.mark.slow]

T = TypeVar("T")
NODE = "storage-1"
MiB = 1 << 20
FILE = 4 * MiB


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cloud]:
    c = Cloud(tmp_path_factory.mktemp("crash-cloud") / "cloud")
    c.up()
    try:
        yield c
    finally:
        c.down()


@pytest.fixture
def exec_spawn(cluster: EmbeddedBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    """Nodes started from the test runner get a fresh interpreter (as in tests/conftest.py);
    the storage node has every pool online (it probes them after it starts)."""
    monkeypatch.setenv("PLAYGROUND_SPAWN", "exec")
    wait_healthy(cluster)


# ---- helpers --------------------------------------------------------------------------
def eventually(fn: Callable[[], T | None], timeout: float = 30.0, what: str = "") -> T:
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or fn}: last {last!r}")


def api(cluster: EmbeddedBackend) -> httpx.Client:
    return httpx.Client(
        base_url=cluster.endpoints()["storage"], timeout=120, headers=auth.headers(cluster)
    )


def call(cluster: EmbeddedBackend, method: str, path: str, **kw: Any) -> Any:
    with api(cluster) as c:
        r = c.request(method, path, **kw)
    assert r.status_code < 400, f"{method} {path}: {r.status_code} {r.text}"
    return r.json()


def pools(cluster: EmbeddedBackend) -> list[Path]:
    return sorted(cluster.state_dir.glob("nodes/*/work/pool"))


def working_copy(cluster: EmbeddedBackend, vol: dict[str, Any]) -> Path:
    return cluster.state_dir / "nodes" / vol["primary"] / "work" / "pool" / vol["id"]


def content(cluster: EmbeddedBackend, name: str) -> dict[str, str]:
    """``file -> sha256`` of a volume's working copy."""
    return digest_tree(working_copy(cluster, call(cluster, "GET", f"/v1/volumes/{name}")))


def make_volume(cluster: EmbeddedBackend, name: str, mib: int, repl: int = 2) -> dict[str, Any]:
    """A volume holding ``mib`` MiB in 4 MiB files of random bytes, synced to its replicas."""
    vol = call(cluster, "POST", "/v1/volumes", json={"name": name, "size": 1, "repl": repl})
    root = working_copy(cluster, vol)
    for i in range(mib * MiB // FILE):
        (root / f"part-{i:03d}.bin").write_bytes(os.urandom(FILE))
    call(cluster, "POST", f"/v1/volumes/{name}/sync")
    return vol


class Fired:
    """A request running in a thread (the node is killed under it)."""

    def __init__(self, cluster: EmbeddedBackend, method: str, path: str, **kw: Any) -> None:
        self.result: Any = None
        self.error: BaseException | None = None

        def go() -> None:
            try:
                with api(cluster) as c:
                    self.result = c.request(method, path, **kw)
            except BaseException as exc:  # the connection dies with the node
                self.error = exc

        self.thread = threading.Thread(target=go, daemon=True)
        self.thread.start()

    def done(self) -> bool:
        return not self.thread.is_alive()

    def join(self) -> None:
        self.thread.join(timeout=120)
        assert not self.thread.is_alive()


def crash(cluster: EmbeddedBackend, fired: Fired | None = None) -> bool:
    """SIGKILL the storage node; True if the fired request was still running (a real cut)."""
    running = fired is None or not fired.done()
    cluster.crash(NODE)
    if fired is not None:
        fired.join()
    return running


def heal(cluster: EmbeddedBackend) -> None:
    """Start storage-1 again and wait until every pool is online (its recovery has run)."""
    cluster.start(NODE)
    wait_healthy(cluster)


def wait_healthy(cluster: EmbeddedBackend) -> None:
    def healthy() -> bool:
        try:
            with api(cluster) as c:
                h = c.get("/health", timeout=2).json()
        except (httpx.HTTPError, ValueError):
            return False
        return bool(h["pools"]) and all(h["pools"].values())

    eventually(healthy, timeout=30, what="storage-1 with every pool online")


def assert_all_intact(cluster: EmbeddedBackend) -> None:
    """Every volume verifies (replicas equal, snapshots intact); no leftovers on disk."""
    bad = {}
    for vol in call(cluster, "GET", "/v1/volumes"):
        out = call(cluster, "POST", f"/v1/volumes/{vol['name']}/verify")
        if not out["ok"]:
            bad[vol["name"]] = out
    assert not bad, bad
    leftovers = [
        p.name
        for pool in pools(cluster)
        for p in pool.iterdir()
        if p.name.startswith((".restore-", ".replaced-"))
    ]
    assert not leftovers, leftovers
    chunks = cluster.state_dir / "nodes" / NODE / "work" / "chunks"
    assert not list(chunks.glob("*/.tmp-*")), "chunk writes left temporary files"


def staging_appears(cluster: EmbeddedBackend) -> bool:
    return any(p.name.startswith(".restore-") for pool in pools(cluster) for p in pool.iterdir())


def staged_or_done(cluster: EmbeddedBackend, fired: Fired) -> bool:
    """A restore's staging tree is being built (or the request is over already)."""
    return staging_appears(cluster) or fired.done()


def volume_names(cluster: EmbeddedBackend) -> set[str]:
    return {v["name"] for v in call(cluster, "GET", "/v1/volumes")}


# ---- (a) snapshots ----------------------------------------------------------------------
def test_kill_during_a_snapshot(cluster: EmbeddedBackend, exec_spawn: None) -> None:
    """A snapshot of 160 MiB cut at several points: no snapshot or an intact one, the volume
    verifies, and the next snapshot succeeds and restores to the volume's content."""
    make_volume(cluster, "crash-snap", 160)
    expected = content(cluster, "crash-snap")
    cuts = 0
    for delay in (0.05, 0.3, 0.7):
        fired = Fired(cluster, "POST", "/v1/volumes/crash-snap/snapshots", json={})
        time.sleep(delay)
        cuts += crash(cluster, fired)
        heal(cluster)
        assert_all_intact(cluster)
        assert content(cluster, "crash-snap") == expected
    assert cuts >= 2, "the snapshots finished before the kill: nothing was tested"
    snap = call(cluster, "POST", "/v1/volumes/crash-snap/snapshots", json={})
    call(cluster, "POST", f"/v1/snapshots/{snap['id']}/restore", json={"to": "crash-snap-copy"})
    assert content(cluster, "crash-snap-copy") == expected
    assert_all_intact(cluster)
    for name in ("crash-snap", "crash-snap-copy"):
        call(cluster, "DELETE", f"/v1/volumes/{name}")


KV_APP: dict[str, Any] = {
    "id": "/crash/kv",
    "cmd": "playground workload kv --data data --durable",
    "cpus": 0.1,
    "mem": 64,
    "instances": 1,
    "portDefinitions": [{"port": 0, "name": "http"}],
    "container": {
        "type": "MESOS",
        "volumes": [
            {
                "containerPath": "data",
                "mode": "RW",
                "external": {
                    "name": "crash-kv",
                    "provider": "dvdi",
                    "size": 1,
                    "options": {"dvdi/driver": "playground", "dvdi/repl": "2"},
                },
            }
        ],
    },
    "upgradeStrategy": {"minimumHealthCapacity": 0, "maximumOverCapacity": 0},
}


def test_kill_during_a_snapshot_of_an_attached_kv_leaves_no_task_frozen(
    cluster: EmbeddedBackend, exec_spawn: None
) -> None:
    """The node freezes the kv task (SIGSTOP) for the capture and dies: started again, it
    resumes the task, which answers and takes writes; the volume verifies."""
    marathon = cluster.endpoints()["marathon"]
    r = httpx.post(f"{marathon}/v2/apps", json=KV_APP, timeout=30)
    assert r.status_code == 201, r.text

    def running_task() -> dict[str, Any] | None:
        tasks = httpx.get(f"{marathon}/v2/apps{KV_APP['id']}/tasks", timeout=5).json()["tasks"]
        return next((t for t in tasks if t["state"] == "TASK_RUNNING"), None)

    task = eventually(running_task, timeout=60, what="the kv task")
    url = f"http://{task['host']}:{task['ports'][0]}"
    vol = eventually(
        lambda: (
            (v := call(cluster, "GET", "/v1/volumes/crash-kv"))["attachment"]
            and v["attachment"].get("pid")
            and v
        ),
        what="the kv task's pid on its attachment",
    )
    pid = vol["attachment"]["pid"]

    def answers() -> bool:
        try:
            return httpx.get(f"{url}/stats", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    eventually(answers, timeout=30, what="the kv task to answer")
    assert httpx.put(f"{url}/v1/kv/before", content=b"1", timeout=10).status_code in (200, 201)
    blobs = working_copy(cluster, vol) / "blobs"  # bulk for the capture to chew on
    blobs.mkdir()
    for i in range(24):
        (blobs / f"b{i:02d}").write_bytes(os.urandom(FILE))
    proc = psutil.Process(pid)
    try:
        fired = Fired(cluster, "POST", "/v1/volumes/crash-kv/snapshots", json={})
        eventually(
            lambda: proc.status() == psutil.STATUS_STOPPED, timeout=10, what="the frozen task"
        )
        assert crash(cluster, fired), "the snapshot finished before the kill"
        assert proc.status() == psutil.STATUS_STOPPED  # the dead node cannot resume it
        heal(cluster)
        eventually(
            lambda: proc.status() != psutil.STATUS_STOPPED, timeout=10, what="the task resumed"
        )
        assert httpx.get(f"{url}/v1/kv/before", timeout=10).content == b"1"
        assert httpx.put(f"{url}/v1/kv/after", content=b"2", timeout=10).status_code in (200, 201)
        assert_all_intact(cluster)
    finally:
        with contextlib.suppress(OSError):
            os.killpg(pid, signal.SIGCONT)  # never leave a frozen task behind a failed test
        httpx.delete(f"{marathon}/v2/apps{KV_APP['id']}", timeout=30)


# ---- (c) snapshot restores --------------------------------------------------------------
@pytest.fixture(scope="module")
def restore_source(cluster: EmbeddedBackend) -> dict[str, Any]:
    """Volume ``crash-rs`` with a snapshot of content A, then changed to content B."""
    wait_healthy(cluster)
    make_volume(cluster, "crash-rs", 96)
    a = content(cluster, "crash-rs")
    snap = call(cluster, "POST", "/v1/volumes/crash-rs/snapshots", json={"name": "a"})
    change_to_b(cluster)
    b = content(cluster, "crash-rs")
    assert a != b
    return {"snapshot": snap["id"], "a": a, "b": b}


def change_to_b(cluster: EmbeddedBackend) -> None:
    """Overwrite two files, add one, delete one (always to the same content B)."""
    root = working_copy(cluster, call(cluster, "GET", "/v1/volumes/crash-rs"))
    for i in (1, 2, 30):
        (root / f"part-{i:03d}.bin").write_bytes(bytes([i]) * FILE)
    (root / "part-005.bin").unlink(missing_ok=True)
    call(cluster, "POST", "/v1/volumes/crash-rs/sync")


def test_kill_during_an_in_place_restore(
    cluster: EmbeddedBackend, exec_spawn: None, restore_source: dict[str, Any]
) -> None:
    """A restore in place cut before, during and after the swap: the volume holds either
    its old content or the snapshot's, on every replica."""
    snap, a, b = restore_source["snapshot"], restore_source["a"], restore_source["b"]
    seen = []
    for delay in (0.0, 0.15, 0.4):
        if content(cluster, "crash-rs") != b:
            change_to_b(cluster)
        fired = Fired(cluster, "POST", f"/v1/snapshots/{snap}/restore", json={})
        eventually(functools.partial(staged_or_done, cluster, fired), timeout=10)
        time.sleep(delay)
        crash(cluster, fired)
        heal(cluster)
        got = content(cluster, "crash-rs")
        assert got in (a, b), "the volume is neither its old content nor the snapshot's"
        seen.append("snapshot" if got == a else "old")
        assert_all_intact(cluster)
    print(f"\nin-place restore cut at 3 points left: {seen}")
    # and a restore that is left alone completes
    call(cluster, "POST", f"/v1/snapshots/{snap}/restore", json={})
    assert content(cluster, "crash-rs") == a
    assert_all_intact(cluster)


def test_kill_during_a_restore_into_a_new_volume(
    cluster: EmbeddedBackend, exec_spawn: None, restore_source: dict[str, Any]
) -> None:
    """A restore into a new volume cut while its tree is being built: afterwards the new
    volume either does not exist or holds exactly the snapshot's content."""
    snap, a = restore_source["snapshot"], restore_source["a"]
    fired = Fired(cluster, "POST", f"/v1/snapshots/{snap}/restore", json={"to": "crash-rs-new"})
    eventually(functools.partial(staged_or_done, cluster, fired), timeout=10)
    assert crash(cluster, fired), "the restore finished before the kill"
    heal(cluster)
    try:
        if "crash-rs-new" in volume_names(cluster):
            assert content(cluster, "crash-rs-new") == a, "a half-restored volume was kept"
        assert_all_intact(cluster)
    finally:
        with api(cluster) as c:
            c.delete("/v1/volumes/crash-rs-new")


# ---- (b, d) cloud backups and restores --------------------------------------------------
def test_kill_during_a_cloud_backup_and_a_cloud_restore(
    cluster: EmbeddedBackend, exec_spawn: None, cloud: Cloud
) -> None:
    """A backup cut mid-upload is resumed (or marked failed) when the node returns, a new
    backup succeeds; a cloud restore cut half way leaves no volume (or a complete one), and
    restoring again gives the volume's content back."""
    cdir = str(cloud.root)
    vol = make_volume(cluster, "crash-cb", 64)
    expected = content(cluster, "crash-cb")
    size = sum(p.stat().st_size for p in working_copy(cluster, vol).iterdir())

    def status(bid: str) -> dict[str, Any]:
        return dict(call(cluster, "GET", f"/v1/cloudsnaps/{bid}", params={"cloud_dir": cdir}))

    def finished(bid: str, timeout: float = 90) -> dict[str, Any]:
        return eventually(
            lambda: (st := status(bid))["status"] != "running" and st,
            timeout=timeout,
            what=f"backup {bid} to finish",
        )

    started = call(cluster, "POST", "/v1/volumes/crash-cb/cloudsnaps", json={"cloud_dir": cdir})
    bid = started["id"]
    assert started["status"] == "running"
    time.sleep(0.3)  # into the upload
    crash(cluster)
    journal = json.loads(
        (cluster.state_dir / "nodes" / NODE / "work" / "cloudsnaps.json").read_text()
    )
    assert journal[bid]["status"] == "running", "the backup finished before the kill"
    heal(cluster)
    first = finished(bid)
    assert first["status"] in ("done", "failed"), first
    if first["status"] == "failed":
        assert first["error"], first
    print(f"\ninterrupted backup {bid}: {first['status']}")
    second = call(cluster, "POST", "/v1/volumes/crash-cb/cloudsnaps", json={"cloud_dir": cdir})
    done = finished(second["id"])
    assert done["status"] == "done" and done["size"] == size, done
    # the local snapshots that served the uploads are gone
    left = [s for s in call(cluster, "GET", "/v1/snapshots") if s.get("schedule") == "cloudsnap"]
    assert not left, left
    assert_all_intact(cluster)

    # (d) cloud restores cut at two points, then one left alone
    cuts = 0
    for i, delay in enumerate((0.1, 0.6)):
        name = f"crash-cr-{i}"
        fired = Fired(
            cluster,
            "POST",
            f"/v1/cloudsnaps/{second['id']}/restore",
            json={"to": name, "cloud_dir": cdir},
        )
        time.sleep(delay)
        cuts += crash(cluster, fired)
        heal(cluster)
        if name in volume_names(cluster):  # finished before the kill, or rolled back
            assert content(cluster, name) == expected, "a half-restored volume was kept"
        assert_all_intact(cluster)
    assert cuts >= 1, "the cloud restores finished before the kill: nothing was tested"
    out = call(
        cluster,
        "POST",
        f"/v1/cloudsnaps/{second['id']}/restore",
        json={"to": "crash-cr-final", "cloud_dir": cdir},
    )
    assert out["volume"]["name"] == "crash-cr-final"
    assert content(cluster, "crash-cr-final") == expected
    assert_all_intact(cluster)
