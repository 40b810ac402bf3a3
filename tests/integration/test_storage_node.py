"""The storage node (storage-1) on a real cluster: its HTTP API, replicas, snapshots, pools.

Volumes are plain directories in pools on the agents (``/v1/pools`` gives each pool's
path; a replica is ``POOL/VOLUME_ID``), so the tests write into the working copy directly
and compare replicas byte for byte.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from playground.backends import EmbeddedBackend
from playground.chaos.faults import Faults
from playground.cluster.statedir import StateDir
from playground.storage.replication import digest_tree
from tests.support import auth
from tests.support.marathon_http import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]


class Storage:
    """The storage node's API (JSON in, JSON out, the status kept)."""

    def __init__(self, url: str, headers: dict[str, str] | None = None) -> None:
        self.http = httpx.Client(base_url=url.rstrip("/"), timeout=30, headers=headers)

    def call(self, method: str, path: str, body: Any = None, status: int = 200) -> Any:
        r = self.http.request(method, path, json=body)
        assert r.status_code == status, (method, path, body, r.status_code, r.text)
        return r.json()

    def get(self, path: str, status: int = 200) -> Any:
        return self.call("GET", path, status=status)

    def post(self, path: str, body: Any = None, status: int = 200) -> Any:
        return self.call("POST", path, body if body is not None else {}, status)

    def delete(self, path: str, status: int = 200) -> Any:
        return self.call("DELETE", path, status=status)

    def create(self, name: str, size: float = 1, repl: int = 1, **extra: Any) -> dict[str, Any]:
        return dict(
            self.post("/v1/volumes", {"name": name, "size": size, "repl": repl, **extra}, 201)
        )

    def pools(self) -> dict[str, dict[str, Any]]:
        return {p["node"]: p for p in self.get("/v1/pools")}

    def replica_dir(self, vol: dict[str, Any], node: str) -> Path:
        return Path(self.pools()[node]["path"]) / vol["id"]

    def working_copy(self, name: str) -> Path:
        vol = self.get(f"/v1/volumes/{name}")
        return self.replica_dir(vol, vol["primary"])


@pytest.fixture(scope="module")
def storage(cluster: EmbeddedBackend) -> Iterator[Storage]:
    st = Storage(str(cluster.endpoints()["storage"]), auth.headers(cluster))
    wait_until(lambda: all(p["online"] for p in st.get("/v1/pools")), 20, desc="every pool online")
    yield st
    st.http.close()


@pytest.fixture()
def faults(cluster: EmbeddedBackend, storage: Storage) -> Iterator[Faults]:
    reg = Faults(cluster)
    try:
        yield reg
    finally:
        reg.heal()
        wait_until(
            lambda: all(p["online"] for p in storage.get("/v1/pools")),
            20,
            desc="every pool back online",
        )


def volume_names(st: Storage) -> list[str]:
    return [v["name"] for v in st.get("/v1/volumes")]


def stable(st: Storage) -> list[tuple[Any, ...]]:
    """What a refused request must not change (lags and sync times move on their own)."""
    return [
        (
            v["id"], v["name"], v["size_gb"], v["repl"], v["labels"], v["secure"],
            v["primary"], v["attachment"], [r["node"] for r in v["replicas"]], v["snapshots"],
        )
        for v in st.get("/v1/volumes")
    ]  # fmt: skip


def write_tree(root: Path) -> None:
    (root / "db").mkdir(parents=True, exist_ok=True)
    (root / "db" / "big.bin").write_bytes(os.urandom(2 * 1024 * 1024 + 17))
    (root / "db" / "log").write_bytes(b"record\n" * 1000)
    (root / "README").write_text("volume contents\n")
    os.symlink("db/log", root / "current")


# ---- API: create / list / inspect / delete, and the errors ---------------------------------
def test_volume_lifecycle_and_clear_errors_that_change_nothing(storage: Storage) -> None:
    st = storage
    vol = st.create("api-orders", size=2, repl=2, labels={"team": "core"})
    assert (vol["name"], vol["size_gb"], vol["repl"], vol["labels"]) == (
        "api-orders",
        2.0,
        2,
        {"team": "core"},
    )
    assert vol["id"].startswith("vol-") and vol["status"] == "up"
    assert st.get(f"/v1/volumes/{vol['id']}")["name"] == "api-orders"
    assert st.get("/v1/volumes/api-orders")["id"] == vol["id"]
    assert "api-orders" in volume_names(st)
    for r in vol["replicas"]:
        assert st.replica_dir(vol, r["node"]).is_dir()

    before, snaps_before = stable(st), st.get("/v1/snapshots")
    bad: list[tuple[str, str, Any, int, str]] = [
        ("POST", "/v1/volumes", {"name": "../x", "size": 1}, 400, "invalid volume name '../x'"),
        ("POST", "/v1/volumes", {"name": "a/b", "size": 1}, 400, "invalid volume name"),
        ("POST", "/v1/volumes", {"name": "", "size": 1}, 400, "invalid volume name"),
        ("POST", "/v1/volumes", {"name": "x" * 64, "size": 1}, 400, "1 to 63 characters"),
        ("POST", "/v1/volumes", {"name": "s0", "size": 0}, 400, "invalid size 0"),
        ("POST", "/v1/volumes", {"name": "s1", "size": "big"}, 400, "a number of GB"),
        ("POST", "/v1/volumes", {"name": "s2", "size": 1e9}, 400, "from 0.001 to 65536 GB"),
        ("POST", "/v1/volumes", {"name": "r4", "size": 1, "repl": 4}, 400, "from 1 to 3"),
        ("POST", "/v1/volumes", {"name": "r0", "size": 1, "repl": 0}, 400, "from 1 to 3"),
        ("POST", "/v1/volumes", {"name": "api-orders", "size": 1}, 409, "exists already"),
        ("POST", "/v1/volumes", {"name": "l", "labels": ["x"]}, 400, "labels must be an object"),
        ("POST", "/v1/volumes", {"name": "b", "secure": "maybe"}, 400, "invalid secure"),
        ("GET", "/v1/volumes/nope", None, 404, "no volume 'nope'"),
        ("DELETE", "/v1/volumes/nope", None, 404, "no volume 'nope'"),
        ("POST", "/v1/volumes/nope/resize", {"size": 2}, 404, "no volume 'nope'"),
        ("POST", "/v1/volumes/nope/snapshots", {}, 404, "no volume 'nope'"),
        ("POST", "/v1/volumes/api-orders/resize", {"size": -1}, 400, "invalid size -1"),
        ("POST", "/v1/volumes/api-orders/ha-update", {"repl": 4}, 400, "from 1 to 3"),
        ("POST", "/v1/volumes/api-orders/clone", {"name": "../c"}, 400, "invalid volume name"),
        ("POST", "/v1/volumes/api-orders/snapshots", {"name": "../s"}, 400, "invalid snapshot"),
        ("GET", "/v1/snapshots/snap-nope", None, 404, "no snapshot 'snap-nope'"),
    ]
    for method, path, body, status, words in bad:
        got = st.call(method, path, body, status)
        assert words in got["message"], (path, body, got)
    r = st.http.post(
        "/v1/volumes", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert r.status_code == 400 and "not JSON" in r.json()["message"]
    assert stable(st) == before, "refused requests changed nothing"
    assert st.get("/v1/snapshots") == snaps_before

    gone = st.delete("/v1/volumes/api-orders")
    assert gone == {"id": vol["id"], "name": "api-orders", "deleted": True}
    assert "api-orders" not in volume_names(st)
    for r2 in vol["replicas"]:
        assert not st.replica_dir(vol, r2["node"]).exists(), "its replicas are removed"
    st.get("/v1/volumes/api-orders", status=404)


# ---- placement, replication, verify ---------------------------------------------------------
def test_replicas_in_distinct_zones_sync_to_identical_content_and_verify(storage: Storage) -> None:
    st = storage
    vol = st.create("repl-three", repl=3)
    zones = [r["zone"] for r in vol["replicas"]]
    assert sorted(zones) == ["a", "b", "c"], "three replicas in three zones"
    assert sum(r["primary"] for r in vol["replicas"]) == 1
    work = st.working_copy("repl-three")
    write_tree(work)
    synced = st.post("/v1/volumes/repl-three/sync")
    assert synced["source"] == vol["primary"]
    assert set(synced["replicas"].values()) == {"synced"} and len(synced["replicas"]) == 2
    want = digest_tree(work)
    assert len(want) == 4
    for r in vol["replicas"]:
        assert digest_tree(st.replica_dir(vol, r["node"])) == want, r["node"]
    assert os.readlink(st.replica_dir(vol, vol["replicas"][1]["node"]) / "current") == "db/log"

    # Lag is measured and shown for every secondary replica.
    view = st.get("/v1/volumes/repl-three")
    assert view["used_bytes"] == sum(
        p.stat().st_size for p in work.rglob("*") if p.is_file() and not p.is_symlink()
    )
    for r in view["replicas"]:
        assert r["lag_seconds"] is not None and r["lag_seconds"] >= 0
        assert r["state"] in ("working-copy", "in-sync", "syncing")
    metrics = st.http.get("/metrics").text
    assert 'playground_storage_volume_replicas_online{volume="repl-three"} 3' in metrics
    assert 'playground_storage_replica_lag_seconds{volume="repl-three",node=' in metrics

    ok = st.post("/v1/volumes/repl-three/verify")
    assert ok["ok"] is True and all(r["ok"] for r in ok["replicas"])

    # A replica corrupted with a different size: verify's sync pass repairs it.
    victim = next(r["node"] for r in vol["replicas"] if not r["primary"])
    log = st.replica_dir(vol, victim) / "db" / "log"
    log.write_bytes(b"garbage")
    repaired = st.post("/v1/volumes/repl-three/verify")
    assert repaired["ok"] is True
    assert digest_tree(st.replica_dir(vol, victim)) == want

    # Corrupted keeping size and mtime: the mirror cannot see it, verify must report it.
    st_before = log.stat()
    with open(log, "r+b") as fh:
        fh.write(b"XXXXXX")
    os.utime(log, ns=(st_before.st_atime_ns, st_before.st_mtime_ns))
    bad = st.post("/v1/volumes/repl-three/verify")
    assert bad["ok"] is False
    by_node = {r["node"]: r for r in bad["replicas"]}
    assert by_node[victim]["ok"] is False and by_node[victim]["differing"] == ["db/log"]
    assert all(r["ok"] for n, r in by_node.items() if n != victim)
    st.delete("/v1/volumes/repl-three")


def test_sync_fails_when_an_online_replica_cannot_be_written(storage: Storage) -> None:
    """``sync`` promises every online replica: one that cannot be written makes it fail
    (503, naming the replica), so ``kv --durable`` does not acknowledge the write."""
    st = storage
    vol = st.create("unsyncable", repl=2)
    (st.working_copy("unsyncable") / "f").write_text("x")
    secondary = next(r["node"] for r in vol["replicas"] if not r["primary"])
    rep = st.replica_dir(vol, secondary)
    # A file where the replica's directory should be: every copy there fails.
    wait_until(lambda: rep.is_dir(), 5, desc="the replica written once")
    moved = rep.with_name(rep.name + ".aside")
    rep.rename(moved)
    rep.write_text("not a directory")
    try:
        failed = st.post("/v1/volumes/unsyncable/sync", status=503)
        assert secondary in failed["message"] and "not every online replica" in failed["message"]
    finally:
        rep.unlink()
        moved.rename(rep)
    ok = st.post("/v1/volumes/unsyncable/sync")
    assert ok["replicas"] == {secondary: "synced"}
    st.delete("/v1/volumes/unsyncable")


# ---- snapshots -----------------------------------------------------------------------------
def test_snapshots_incremental_restore_clone_and_chunk_collection(storage: Storage) -> None:
    st = storage
    vol = st.create("snappy", repl=2)
    work = st.working_copy("snappy")
    write_tree(work)
    first = st.post("/v1/volumes/snappy/snapshots", {"name": "snappy-1"}, 201)
    assert first["files"] == 3 and first["bytes_new"] >= 2 * 1024 * 1024
    assert first["freeze_ms"] is None, "nothing attached: nothing to freeze"
    (work / "db" / "new-records").write_bytes(b"n" * 1000)
    second = st.post("/v1/volumes/snappy/snapshots", {"name": "snappy-2"}, 201)
    assert second["files"] == 4
    assert second["files_read"] == 1, "only the new file is read"
    assert second["bytes_new"] <= 1000, "incremental: the cost is the change"
    listed = st.get("/v1/volumes/snappy/snapshots")
    assert [s["id"] for s in listed] == [first["id"], second["id"]]
    assert all("manifest" not in s for s in listed)
    want = digest_tree(work)

    # Delete records, restore in place: all back in the working copy when the call returns,
    # then on every replica (they catch up in the background, shown as resync meanwhile).
    (work / "db" / "big.bin").unlink()
    (work / "db" / "log").write_bytes(b"truncated")
    restored = st.post(f"/v1/snapshots/{second['id']}/restore")
    assert restored["volume"]["name"] == "snappy"
    assert digest_tree(work) == want
    assert {r["state"] for r in restored["volume"]["replicas"] if not r["primary"]} <= {
        "resync",
        "in-sync",
        "syncing",
    }
    wait_until(
        lambda: all(r["state"] in ("working-copy", "in-sync") for r in
                    st.get("/v1/volumes/snappy")["replicas"]),
        10,
        desc="every replica level after the restore",
    )  # fmt: skip
    for r in vol["replicas"]:
        assert digest_tree(st.replica_dir(vol, r["node"])) == want, r["node"]

    # Refused while a task has the volume attached; allowed again after the detach.
    node = vol["primary"]
    st.post("/v1/volumes/snappy/attach", {"node": node, "task_id": "t-snap"})
    refused = st.post(f"/v1/snapshots/{first['id']}/restore", None, 409)
    assert "attached to task t-snap" in refused["message"]
    assert "restore into a new volume" in refused["hint"]
    assert st.get("/v1/volumes/snappy")["attachment"]["task_id"] == "t-snap"
    deleting = st.delete("/v1/volumes/snappy", status=409)
    assert "in use by task t-snap" in deleting["message"]
    assert st.post("/v1/volumes/snappy/detach", {"node": node, "task_id": "t-snap"})["detached"]

    # Restore into a new volume; an existing other volume's name is refused.
    st.create("snappy-taken")
    taken = st.post(f"/v1/snapshots/{first['id']}/restore", {"to": "snappy-taken"}, 409)
    assert "exists already" in taken["message"]
    to = st.post(f"/v1/snapshots/{first['id']}/restore", {"to": "snappy-old"})
    old = st.get("/v1/volumes/snappy-old")
    assert (to["volume"]["id"], old["repl"]) == (old["id"], 2)
    old_tree = digest_tree(st.working_copy("snappy-old"))
    assert "db/new-records" not in old_tree and old_tree["db/big.bin"] == want["db/big.bin"]

    # Clone: a new volume with the same content (through a snapshot of its own).
    clone = st.post("/v1/volumes/snappy/clone", {"name": "snappy-clone"}, 201)
    assert clone["repl"] == 2 and clone["id"] != vol["id"]
    assert digest_tree(st.working_copy("snappy-clone")) == want
    st.post("/v1/volumes/snappy/clone", {"name": "snappy-clone"}, 409)

    # Deleting a snapshot frees the chunks only it held; shared chunks stay.
    (work / "db" / "only-in-third").write_bytes(os.urandom(5000))
    third = st.post("/v1/volumes/snappy/snapshots", {}, 201)
    assert third["bytes_new"] == 5000
    freed = st.delete(f"/v1/snapshots/{third['id']}")
    assert freed["deleted"] is True and freed["chunks_removed"] == 1
    again = st.delete(f"/v1/snapshots/{first['id']}")
    assert again["chunks_removed"] == 0, "its chunks are shared with the later snapshots"
    st.get(f"/v1/snapshots/{first['id']}", status=404)
    verified = st.post("/v1/volumes/snappy/verify")
    assert verified["ok"] is True and {s["ok"] for s in verified["snapshots"]} == {True}
    for name in ("snappy", "snappy-old", "snappy-clone", "snappy-taken"):
        st.delete(f"/v1/volumes/{name}")


# ---- resize and ha-update -------------------------------------------------------------------
def test_a_damaged_snapshot_chunk_is_found_and_never_restored(
    cluster: EmbeddedBackend, storage: Storage
) -> None:
    """Every chunk carries its checksum: ``verify`` names the snapshot's damaged file, and a
    restore from it fails and leaves the volume as it was."""
    st = storage
    st.create("damaged")
    work = st.working_copy("damaged")
    (work / "ledger").write_bytes(os.urandom(300_000))
    (work / "notes").write_text("kept\n")
    snap = st.post("/v1/volumes/damaged/snapshots", {}, 201)
    before = digest_tree(work)
    chunks = Path(cluster.state_dir) / "nodes" / "storage-1" / "work" / "chunks"
    ledger = snap_manifest_chunks(chunks, work / "ledger")
    with open(ledger, "r+b") as fh:
        fh.seek(1000)
        fh.write(b"bitrot")
    bad = st.post("/v1/volumes/damaged/verify")
    assert bad["ok"] is False
    (entry,) = bad["snapshots"]
    assert entry["ok"] is False and entry["damaged_files"] == ["ledger"]
    refused = st.post(f"/v1/snapshots/{snap['id']}/restore", None, 409)
    assert "corrupt" in refused["message"] and "volume verify" in refused["hint"]
    assert digest_tree(work) == before, "a failed restore changes nothing"
    st.delete(f"/v1/snapshots/{snap['id']}")
    st.delete("/v1/volumes/damaged")


def snap_manifest_chunks(chunks: Path, path: Path) -> Path:
    """The chunk file holding the start of ``path`` (content-addressed: its SHA-256)."""
    with open(path, "rb") as fh:
        digest = hashlib.sha256(fh.read(1 << 20)).hexdigest()
    found = chunks / digest[:2] / digest
    assert found.exists(), f"no chunk {digest} under {chunks}"
    return found


def test_resize_up_and_not_below_usage(storage: Storage) -> None:
    st = storage
    st.create("growing", size=0.01)
    work = st.working_copy("growing")
    (work / "blob").write_bytes(os.urandom(3 * 1024 * 1024))
    st.post("/v1/volumes/growing/sync")
    view = st.get("/v1/volumes/growing")
    assert view["used_bytes"] == 3 * 1024 * 1024
    assert view["usage"] > 0.27
    grown = st.post("/v1/volumes/growing/resize", {"size": 0.02})
    assert grown["size_gb"] == 0.02 and grown["size_bytes"] == int(0.02 * 1024**3)
    small = st.post("/v1/volumes/growing/resize", {"size": 0.001}, 409)
    assert "holds 3145728 bytes" in small["message"]
    assert small["hint"] == "a volume shrinks only down to what it holds"
    assert st.get("/v1/volumes/growing")["size_gb"] == 0.02
    st.delete("/v1/volumes/growing")


def test_ha_update_one_step_at_a_time(storage: Storage) -> None:
    st = storage
    vol = st.create("ha", repl=1)
    (st.working_copy("ha") / "data").write_bytes(b"d" * 4096)
    jump = st.post("/v1/volumes/ha/ha-update", {"repl": 3}, 409)
    assert jump["message"] == "replication changes one step at a time (1 -> 2, not 1 -> 3)"
    assert jump["hint"] == "run ha-update to 2 first"
    two = st.post("/v1/volumes/ha/ha-update", {"repl": 2})
    assert two["repl"] == 2 and len({r["zone"] for r in two["replicas"]}) == 2
    three = st.post("/v1/volumes/ha/ha-update", {"repl": 3})
    assert sorted(r["zone"] for r in three["replicas"]) == ["a", "b", "c"]
    st.post("/v1/volumes/ha/sync")
    for r in three["replicas"]:
        assert (st.replica_dir(vol, r["node"]) / "data").read_bytes() == b"d" * 4096
    down = st.post("/v1/volumes/ha/ha-update", {"repl": 1}, 409)
    assert "(3 -> 2, not 3 -> 1)" in down["message"]
    two_again = st.post("/v1/volumes/ha/ha-update", {"repl": 2})
    kept = {r["node"] for r in two_again["replicas"]}
    assert vol["primary"] in kept, "the working copy is never the replica dropped"
    dropped = ({r["node"] for r in three["replicas"]} - kept).pop()
    wait_until(
        lambda: not st.replica_dir(vol, dropped).exists(), 5, desc="the dropped replica removed"
    )
    st.delete("/v1/volumes/ha")


# ---- pools: a crash takes them offline, a rebuild brings an empty one ------------------------
def test_pools_follow_their_agents_and_placement_sees_it(
    cluster: EmbeddedBackend, storage: Storage, faults: Faults
) -> None:
    st = storage
    vol = st.create("pooled", repl=2)
    secondary = next(r["node"] for r in vol["replicas"] if not r["primary"])
    others = [n for n in ("agent-1", "agent-2", "agent-3") if n not in (secondary,)]
    faults.break_node(secondary, "crash")
    wait_until(lambda: not st.pools()[secondary]["online"], 10, desc=f"{secondary}'s pool offline")
    assert st.pools()[secondary]["status"] == "offline"
    view = st.get("/v1/volumes/pooled")
    assert view["status"] == "degraded"
    assert {r["node"]: r["state"] for r in view["replicas"]}[secondary] == "offline"
    metrics = st.http.get("/metrics").text
    assert f'playground_storage_pool_online{{node="{secondary}"}} 0' in metrics
    assert 'playground_storage_volume_replicas_online{volume="pooled"} 1' in metrics

    # The monitor scrapes storage-1 and alerts on the pool, naming the agent.
    monitor = str(cluster.endpoints()["monitor"])

    def pool_alert() -> dict[str, Any] | None:
        alerts = httpx.get(f"{monitor}/v1/alerts", timeout=5).json()
        return next((a for a in alerts if a["labels"]["alertname"] == "StoragePoolOffline"), None)

    alert = wait_until(pool_alert, 15, desc="the StoragePoolOffline alert")
    assert alert["labels"]["node"] == secondary

    # With a second zone down, replication 2 has one zone left: refused, naming why.
    second = next(n for n in others if n != vol["primary"])
    faults.break_node(second, "crash")
    wait_until(lambda: not st.pools()[second]["online"], 10, desc=f"{second}'s pool offline")
    before = volume_names(st)
    got = st.post("/v1/volumes", {"name": "two-zones", "size": 1, "repl": 2}, 409)
    left = st.pools()[vol["primary"]]["zone"]
    assert got["message"] == (
        f"replication factor 2 needs 2 zones with an online storage pool; available: {left}"
    )
    assert "`playground heal`" in got["hint"]
    assert volume_names(st) == before
    up = st.post("/v1/volumes/pooled/ha-update", {"repl": 3}, 409)
    assert up["message"].startswith(
        "replication factor 3 needs 3 zones with an online storage pool"
    )

    faults.heal()
    wait_until(
        lambda: all(p["online"] for p in st.pools().values()), 20, desc="pools online after heal"
    )
    wait_until(lambda: st.get("/v1/volumes/pooled")["status"] == "up", 10, desc="pooled back to up")
    st.delete("/v1/volumes/pooled")


def test_a_replica_a_restore_left_behind_is_never_promoted(
    cluster: EmbeddedBackend, storage: Storage, faults: Faults
) -> None:
    """A restore returns once the working copy holds the snapshot; a replica offline then
    still holds the replaced data, so losing the working copy's node does not promote it:
    the attach waits, naming the node to bring back, and gets the restored data after."""
    st = storage
    vol = st.create("left-behind", repl=2)
    work = st.working_copy("left-behind")
    (work / "data").write_text("snapshot\n")
    snap = st.post("/v1/volumes/left-behind/snapshots", {}, 201)
    (work / "data").write_text("replaced by the restore\n")
    st.post("/v1/volumes/left-behind/sync")
    primary = vol["primary"]
    secondary = next(r["node"] for r in vol["replicas"] if not r["primary"])

    faults.break_node(secondary, "crash")
    wait_until(lambda: not st.pools()[secondary]["online"], 10, desc=f"{secondary}'s pool offline")
    st.post(f"/v1/snapshots/{snap['id']}/restore")
    assert (work / "data").read_text() == "snapshot\n"
    faults.break_node(primary, "crash")
    wait_until(lambda: not st.pools()[primary]["online"], 10, desc=f"{primary}'s pool offline")
    faults.heal(secondary)
    wait_until(lambda: st.pools()[secondary]["online"], 20, desc=f"{secondary}'s pool online")
    states = {r["node"]: r["state"] for r in st.get("/v1/volumes/left-behind")["replicas"]}
    assert states == {primary: "offline", secondary: "resync"}
    assert (st.replica_dir(vol, secondary) / "data").read_text() == "replaced by the restore\n"

    refused = st.post(
        "/v1/volumes/left-behind/attach", {"node": secondary, "task_id": "t-behind"}, 409
    )
    assert "still hold what a restore replaced" in refused["message"]
    assert primary in refused["message"] and "`playground heal`" in refused["hint"]
    assert st.get("/v1/volumes/left-behind")["attachment"] is None

    faults.heal(primary)
    wait_until(lambda: st.pools()[primary]["online"], 20, desc=f"{primary}'s pool online")
    wait_until(
        lambda: (
            {r["state"] for r in st.get("/v1/volumes/left-behind")["replicas"]}
            == {"working-copy", "in-sync"}
        ),
        10,
        desc="the replica levelled from the working copy",
    )
    assert (st.replica_dir(vol, secondary) / "data").read_text() == "snapshot\n"
    st.post("/v1/volumes/left-behind/attach", {"node": secondary, "task_id": "t-behind"})
    st.post("/v1/volumes/left-behind/detach", {"node": secondary, "task_id": "t-behind"})
    st.delete("/v1/volumes/left-behind")


def test_keep_disk_rebuild_brings_the_same_pool_back(
    cluster: EmbeddedBackend, storage: Storage, faults: Faults
) -> None:
    """``rebuild --keep-disk``: the agent's pool comes back as it was (same pool id, the
    replica intact), so nothing is copied again."""
    st = storage
    vol = st.create("kept-disk", repl=2)
    work = st.working_copy("kept-disk")
    write_tree(work)
    st.post("/v1/volumes/kept-disk/sync")
    want = digest_tree(work)
    secondary = next(r["node"] for r in vol["replicas"] if not r["primary"])
    pool_id = st.pools()[secondary]["pool_id"]
    t0 = time.time()
    faults.rebuild(secondary, keep_disk=True)
    wait_until(lambda: st.pools()[secondary]["online"], 30, desc=f"{secondary}'s pool back")
    assert st.pools()[secondary]["pool_id"] == pool_id
    assert digest_tree(st.replica_dir(vol, secondary)) == want
    states = {r["node"]: r["state"] for r in st.get("/v1/volumes/kept-disk")["replicas"]}
    assert states[secondary] in ("in-sync", "syncing"), states
    events = StateDir(cluster.state_dir).events(since=t0, kinds=("storage.replica.resynced",))
    assert not [e for e in events if e.get("volume") == "kept-disk"], "copied again"
    st.delete("/v1/volumes/kept-disk")


SECRET = b"PLAINTEXT-MARKER-4c1e9b"


def holds_marker(root: Path) -> bool:
    """Some regular file under ``root`` holds :data:`SECRET` in clear."""
    return any(
        SECRET in p.read_bytes() for p in root.rglob("*") if p.is_file() and not p.is_symlink()
    )


def test_secure_volume_secondaries_hold_only_ciphertext_and_failover_unseals(
    cluster: EmbeddedBackend, storage: Storage, faults: Faults
) -> None:
    """A ``secure`` volume's working copy is plaintext, its other replicas ciphertext; a
    snapshot taken while the working copy's node is down holds the plaintext; the replica
    promoted by an attach elsewhere is unsealed, the old working copy sealed once back."""
    st = storage
    vol = st.create("secure-repl", repl=2, secure=True)
    primary = vol["primary"]
    secondary = next(r["node"] for r in vol["replicas"] if not r["primary"])
    work = st.working_copy("secure-repl")
    (work / "db").mkdir()
    (work / "db" / "big.bin").write_bytes(SECRET + os.urandom(2 * 1024 * 1024 + 17) + SECRET)
    (work / "db" / "log").write_bytes(SECRET * 1000)
    (work / "README").write_bytes(SECRET)
    os.symlink("db/log", work / "current")
    want = digest_tree(work)
    st.post("/v1/volumes/secure-repl/sync")
    sec_dir = st.replica_dir(vol, secondary)
    assert holds_marker(work)
    assert not holds_marker(sec_dir)
    assert (sec_dir / ".pg-sealed").is_file()
    assert os.readlink(sec_dir / "current") == "db/log"  # names are not secret
    ok = st.post("/v1/volumes/secure-repl/verify")
    assert ok["ok"] is True, ok
    assert {r["node"]: r["sealed"] for r in ok["replicas"]} == {primary: False, secondary: True}
    assert st.get("/v1/volumes/secure-repl")["used_bytes"] == sum(
        p.stat().st_size for p in work.rglob("*") if p.is_file() and not p.is_symlink()
    )

    faults.break_node(primary, "crash")
    wait_until(lambda: not st.pools()[primary]["online"], 10, desc=f"{primary}'s pool offline")
    # Captured from the sealed replica: the snapshot holds the plaintext.
    snap = st.post("/v1/volumes/secure-repl/snapshots", {}, 201)
    assert snap["source_node"] == secondary and snap["sealed"] is True
    st.post("/v1/volumes/secure-repl/attach", {"node": secondary, "task_id": "t-secure"})
    new_work = st.working_copy("secure-repl")
    assert new_work == sec_dir
    assert not (new_work / ".pg-sealed").exists()
    assert holds_marker(new_work)
    assert digest_tree(new_work) == want
    (new_work / "README").write_bytes(SECRET + b" after the failover\n")

    faults.heal(primary)
    wait_until(lambda: st.pools()[primary]["online"], 20, desc=f"{primary}'s pool online")
    old_dir = st.replica_dir(vol, primary)
    wait_until(
        lambda: (old_dir / ".pg-sealed").is_file() and not holds_marker(old_dir),
        10,
        desc="the old working copy sealed",
    )
    st.post("/v1/volumes/secure-repl/sync")
    assert not holds_marker(old_dir)
    ok = st.post("/v1/volumes/secure-repl/verify")
    assert ok["ok"] is True, ok
    assert {r["node"]: r["sealed"] for r in ok["replicas"]} == {primary: True, secondary: False}
    st.post("/v1/volumes/secure-repl/detach", {"node": secondary, "task_id": "t-secure"})

    # The snapshot taken from the sealed replica restores the original plaintext.
    st.post(f"/v1/snapshots/{snap['id']}/restore")
    assert digest_tree(st.working_copy("secure-repl")) == want
    st.delete(f"/v1/snapshots/{snap['id']}")
    st.delete("/v1/volumes/secure-repl")


def test_rebuilt_agent_gets_a_new_pool_that_resyncs(
    cluster: EmbeddedBackend, storage: Storage, faults: Faults
) -> None:
    st = storage
    vol = st.create("rebuilt", repl=2)
    work = st.working_copy("rebuilt")
    write_tree(work)
    st.post("/v1/volumes/rebuilt/sync")
    want = digest_tree(work)
    secondary = next(r["node"] for r in vol["replicas"] if not r["primary"])
    old_pool = st.pools()[secondary]["pool_id"]
    t0 = time.time()

    faults.rebuild(secondary)  # crash, clean disk, start
    wait_until(
        lambda: st.pools()[secondary]["online"] and st.pools()[secondary]["pool_id"] != old_pool,
        30,
        desc=f"{secondary} back with a new pool",
    )
    state = StateDir(cluster.state_dir)

    def resynced() -> list[dict[str, Any]]:
        return [
            e
            for e in state.events(since=t0, kinds=("storage.replica.resynced",))
            if e.get("volume") == "rebuilt" and e.get("node") == secondary
        ]

    wait_until(resynced, 20, desc="storage.replica.resynced in the timeline")
    replaced = state.events(since=t0, kinds=("storage.pool.replaced",))
    assert any(e["node"] == secondary and "rebuilt" in e["volumes"] for e in replaced)
    assert digest_tree(st.replica_dir(vol, secondary)) == want
    view = st.get("/v1/volumes/rebuilt")
    assert view["status"] == "up"
    assert {r["node"]: r["state"] for r in view["replicas"]}[secondary] in ("in-sync", "syncing")
    assert st.post("/v1/volumes/rebuilt/verify")["ok"] is True
    st.delete("/v1/volumes/rebuilt")
