"""Cloud snapshots against an in-process S3 (moto): roundtrip, dedup, increments, keys, tampering."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from playground.cluster.secrets import SecretStore
from playground.storage import cloudsnap, snapshots
from playground.storage.chunks import ChunkStore
from playground.storage.cloudsnap import (
    CHUNK_PREFIX,
    INDEX_PREFIX,
    MANIFEST_PREFIX,
    CloudSnapError,
    CloudTarget,
    TamperedError,
    WrongKeyError,
)

BUCKET = "backups"
CHUNK = 64 << 10


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(var, "testing")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client


def make_volume(root: Path, mib: int = 4) -> Path:
    (root / "db").mkdir(parents=True)
    (root / "db" / "data.bin").write_bytes(os.urandom(mib << 20))
    (root / "db" / "notes.txt").write_text("customer records\n" * 5000)  # compressible
    (root / "README").write_text("volume")
    return root


def capture(tmp_path: Path, vol: Path, previous: dict[str, Any] | None = None) -> Any:
    return snapshots.capture(ChunkStore(tmp_path / "local"), vol, previous, chunk_size=CHUNK)


def objects(client: Any, prefix: str = "") -> dict[str, bytes]:
    out = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        for o in page.get("Contents", []):
            out[o["Key"]] = client.get_object(Bucket=BUCKET, Key=o["Key"])["Body"].read()
    return out


def test_backup_then_restore_into_an_empty_store_gives_the_same_tree(
    s3: Any, tmp_path: Path
) -> None:
    """A backup restored into a fresh chunk store rebuilds the volume byte for byte."""
    vol = make_volume(tmp_path / "vol")
    snap = capture(tmp_path, vol)
    target = CloudTarget(s3, BUCKET, os.urandom(32))
    seen: list[tuple[int, int]] = []
    rec = target.backup(
        ChunkStore(tmp_path / "local"),
        snap.manifest,
        "vol1",
        {"region": "eu"},
        progress=lambda d, t: seen.append((d, t)),
    )
    assert rec.status == "done" and rec.volume == "vol1" and rec.labels == {"region": "eu"}
    assert rec.chunk_count == len(snapshots.digests(snap.manifest))
    assert rec.chunks_uploaded == rec.chunk_count and rec.chunks_reused == 0
    assert seen[-1] == (rec.bytes_total, rec.bytes_total) and rec.bytes_done == rec.bytes_total
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert target.status(rec.id).status == "done"

    fresh = ChunkStore(tmp_path / "fresh")
    manifest = target.restore(rec.id, fresh)
    snapshots.restore(fresh, manifest, tmp_path / "restored")
    for rel in ("db/data.bin", "db/notes.txt", "README"):
        assert (tmp_path / "restored" / rel).read_bytes() == (vol / rel).read_bytes()


def test_objects_are_encrypted_compressed_and_named_without_digests(
    s3: Any, tmp_path: Path
) -> None:
    """No object name carries a chunk digest; no object carries plaintext; text shrinks."""
    vol = make_volume(tmp_path / "vol")
    snap = capture(tmp_path, vol)
    target = CloudTarget(s3, BUCKET, os.urandom(32))
    rec = target.backup(ChunkStore(tmp_path / "local"), snap.manifest, "vol1")
    stored = objects(s3)
    digests = snapshots.digests(snap.manifest)
    names = " ".join(stored)
    assert not any(d in names or d[:16] in names for d in digests)
    blobs = b"".join(v for k, v in stored.items() if not k.startswith(INDEX_PREFIX))
    assert b"customer records" not in blobs and b"data.bin" not in blobs
    assert not any(d.encode() in blobs for d in digests)
    # random data does not compress, the repeated text does: less than sent in clear
    assert rec.uploaded_bytes < rec.bytes_total
    index = json.loads(stored[INDEX_PREFIX + rec.id + ".json"])
    assert index["volume"] == "vol1" and index["status"] == "done"
    assert set(index) >= {"id", "created_at", "size", "chunk_count", "uploaded_bytes", "labels"}


def test_a_one_percent_change_uploads_about_one_percent(s3: Any, tmp_path: Path) -> None:
    """The second backup after ~1 % of the bytes changed uploads ~1 % of the volume."""
    vol = tmp_path / "vol"
    vol.mkdir()
    for i in range(10):
        (vol / f"f{i}.bin").write_bytes(os.urandom(1 << 20))
    store = ChunkStore(tmp_path / "local")
    first = snapshots.capture(store, vol, chunk_size=CHUNK)
    target = CloudTarget(s3, BUCKET, os.urandom(32))
    r1 = target.backup(store, first.manifest, "vol1")
    assert r1.uploaded_bytes >= r1.bytes_total  # random: nothing to compress
    with open(vol / "f3.bin", "r+b") as fh:  # 1 % of 10 MiB, in place
        fh.seek(300_000)
        fh.write(os.urandom(104_858))
    second = snapshots.capture(store, vol, first.manifest, chunk_size=CHUNK)
    r2 = target.backup(store, second.manifest, "vol1")
    ratio = r2.uploaded_bytes / second.manifest["size"]
    assert r2.chunks_reused == r2.chunk_count - r2.chunks_uploaded
    assert 0.005 < ratio < 0.03, ratio  # 2-3 chunks of 64 KiB + the manifest
    fresh = ChunkStore(tmp_path / "fresh")
    snapshots.restore(fresh, target.restore(r2.id, fresh), tmp_path / "restored")
    assert (tmp_path / "restored" / "f3.bin").read_bytes() == (vol / "f3.bin").read_bytes()


def test_identical_content_is_uploaded_once(s3: Any, tmp_path: Path) -> None:
    """Duplicate files and a second volume with the same data add no chunk objects."""
    vol = tmp_path / "vol"
    vol.mkdir()
    blob = os.urandom(512 << 10)
    (vol / "a").write_bytes(blob)
    (vol / "b").write_bytes(blob)
    store = ChunkStore(tmp_path / "local")
    snap = snapshots.capture(store, vol, chunk_size=CHUNK)
    target = CloudTarget(s3, BUCKET, os.urandom(32))
    rec = target.backup(store, snap.manifest, "vol1")
    assert rec.chunk_count == 8 and rec.chunks_uploaded == 8
    assert len(objects(s3, CHUNK_PREFIX)) == 8
    other = target.backup(store, snap.manifest, "vol2")
    assert other.chunks_uploaded == 0 and other.chunks_reused == 8
    assert len(objects(s3, CHUNK_PREFIX)) == 8
    assert [r.volume for r in target.list_backups()] == ["vol1", "vol2"]
    assert [r.id for r in target.list_backups("vol2")] == [other.id]
    assert cloudsnap.count_backups(s3, BUCKET) == 2


def test_a_wrong_key_is_a_clear_error(s3: Any, tmp_path: Path) -> None:
    """Restoring with another key names the key it needs and writes nothing."""
    vol = make_volume(tmp_path / "vol", mib=1)
    snap = capture(tmp_path, vol)
    rec = CloudTarget(s3, BUCKET, os.urandom(32)).backup(
        ChunkStore(tmp_path / "local"), snap.manifest, "vol1"
    )
    other = CloudTarget(s3, BUCKET, os.urandom(32))
    fresh = ChunkStore(tmp_path / "fresh")
    with pytest.raises(WrongKeyError) as err:
        other.restore(rec.id, fresh)
    assert rec.key_fingerprint in str(err.value) and "key import" in (err.value.hint or "")
    assert list(fresh.digests()) == []
    # a forged index entry that claims the other key: the manifest does not authenticate
    index = INDEX_PREFIX + rec.id + ".json"
    entry = json.loads(s3.get_object(Bucket=BUCKET, Key=index)["Body"].read())
    entry["key_fingerprint"] = other.key_fingerprint
    s3.put_object(Bucket=BUCKET, Key=index, Body=json.dumps(entry).encode())
    with pytest.raises(TamperedError, match="does not authenticate"):
        other.restore(rec.id, fresh)
    assert list(fresh.digests()) == []


def test_a_tampered_chunk_or_manifest_is_refused(s3: Any, tmp_path: Path) -> None:
    """One flipped byte in a chunk, or a chunk swapped for another, fails the restore."""
    vol = make_volume(tmp_path / "vol", mib=1)
    snap = capture(tmp_path, vol)
    target = CloudTarget(s3, BUCKET, os.urandom(32))
    rec = target.backup(ChunkStore(tmp_path / "local"), snap.manifest, "vol1")
    chunks = objects(s3, CHUNK_PREFIX)
    names = sorted(chunks)
    victim = names[0]
    flipped = bytearray(chunks[victim])
    flipped[len(flipped) // 2] ^= 0x01
    s3.put_object(Bucket=BUCKET, Key=victim, Body=bytes(flipped))
    with pytest.raises(TamperedError, match="does not authenticate"):
        target.restore(rec.id, ChunkStore(tmp_path / "fresh1"))
    s3.put_object(Bucket=BUCKET, Key=victim, Body=chunks[names[1]])  # a valid object, misplaced
    with pytest.raises(TamperedError):
        target.restore(rec.id, ChunkStore(tmp_path / "fresh2"))
    s3.put_object(Bucket=BUCKET, Key=victim, Body=chunks[victim])  # put back: restores again
    manifest_key = MANIFEST_PREFIX + rec.id
    good = s3.get_object(Bucket=BUCKET, Key=manifest_key)["Body"].read()
    s3.put_object(Bucket=BUCKET, Key=manifest_key, Body=good[:-1] + bytes([good[-1] ^ 1]))
    with pytest.raises(TamperedError, match="manifest"):
        target.restore(rec.id, ChunkStore(tmp_path / "fresh3"))
    s3.put_object(Bucket=BUCKET, Key=manifest_key, Body=good)
    manifest = target.restore(rec.id, ChunkStore(tmp_path / "fresh4"))
    assert manifest["files"].keys() == snap.manifest["files"].keys()


def test_restore_repairs_a_corrupt_local_chunk(s3: Any, tmp_path: Path) -> None:
    """A chunk the destination holds but corrupt is downloaded again and repaired."""
    vol = make_volume(tmp_path / "vol", mib=1)
    store = ChunkStore(tmp_path / "local")
    snap = snapshots.capture(store, vol, chunk_size=CHUNK)
    target = CloudTarget(s3, BUCKET, os.urandom(32))
    rec = target.backup(store, snap.manifest, "vol1")
    digest = sorted(snapshots.digests(snap.manifest))[0]
    store.path(digest).write_bytes(b"rot")
    target.restore(rec.id, store)
    assert hashlib.sha256(store.get(digest)).hexdigest() == digest


def test_a_failed_backup_is_recorded_and_the_retry_reuses_its_chunks(
    s3: Any, tmp_path: Path
) -> None:
    """An upload error marks the record failed (with the reason); the next run resumes."""
    vol = make_volume(tmp_path / "vol", mib=2)
    store = ChunkStore(tmp_path / "local")
    snap = snapshots.capture(store, vol, chunk_size=CHUNK)
    target = CloudTarget(s3, BUCKET, os.urandom(32), workers=1)
    real_put = s3.put_object
    calls = {"n": 0}

    def flaky(**kw: Any) -> Any:
        if kw["Key"].startswith(CHUNK_PREFIX):
            calls["n"] += 1
            if calls["n"] == 10:
                raise OSError("connection reset by peer")
        return real_put(**kw)

    s3.put_object = flaky
    with pytest.raises(CloudSnapError, match="connection reset"):
        target.backup(store, snap.manifest, "vol1", backup_id="cs-first")
    s3.put_object = real_put
    failed = target.status("cs-first")
    assert failed.status == "failed" and "connection reset" in (failed.error or "")
    with pytest.raises(CloudSnapError, match="failed, not done"):
        target.restore("cs-first", ChunkStore(tmp_path / "fresh"))
    retry = target.backup(store, snap.manifest, "vol1")
    assert retry.chunks_reused >= 9 and retry.status == "done"


def test_bad_input_changes_nothing(s3: Any, tmp_path: Path) -> None:
    """Invalid volume names, ids, manifests and missing chunks upload nothing."""
    vol = make_volume(tmp_path / "vol", mib=1)
    store = ChunkStore(tmp_path / "local")
    snap = snapshots.capture(store, vol, chunk_size=CHUNK)
    target = CloudTarget(s3, BUCKET, os.urandom(32))
    with pytest.raises(CloudSnapError, match="invalid volume name"):
        target.backup(store, snap.manifest, "../etc")
    with pytest.raises(CloudSnapError, match="not a snapshot manifest"):
        target.backup(store, {"files": {}}, "vol1")
    with pytest.raises(CloudSnapError, match="invalid backup id"):
        target.status("../../x")
    with pytest.raises(CloudSnapError, match="no backup"):
        target.status("cs-nope")
    store.path(sorted(snapshots.digests(snap.manifest))[0]).unlink()
    with pytest.raises(CloudSnapError, match="missing"):
        target.backup(store, snap.manifest, "vol1")
    assert objects(s3) == {}


def test_keys_export_import_and_old_keys_keep_restoring(s3: Any, tmp_path: Path) -> None:
    """A key moves between clusters; an imported key keeps the replaced one for restores."""
    old_cluster = SecretStore(tmp_path / "old-state")
    vol = make_volume(tmp_path / "vol", mib=1)
    store = ChunkStore(tmp_path / "local")
    snap = snapshots.capture(store, vol, chunk_size=CHUNK)
    rec_old = cloudsnap.target_from_secrets(s3, BUCKET, old_cluster).backup(
        store, snap.manifest, "vol1"
    )
    exported = cloudsnap.export_key(old_cluster)
    assert json.loads(exported)["fingerprint"] == rec_old.key_fingerprint

    new_cluster = SecretStore(tmp_path / "new-state")
    rec_new = cloudsnap.target_from_secrets(s3, BUCKET, new_cluster).backup(
        store, snap.manifest, "vol2"
    )
    with pytest.raises(WrongKeyError):
        cloudsnap.target_from_secrets(s3, BUCKET, new_cluster).restore(
            rec_old.id, ChunkStore(tmp_path / "x")
        )
    with pytest.raises(CloudSnapError, match="not a cloud snapshot key file"):
        cloudsnap.import_key(new_cluster, b'{"kind": "other"}')
    damaged = json.loads(exported)
    damaged["fingerprint"] = "0" * 16
    with pytest.raises(CloudSnapError, match="damaged"):
        cloudsnap.import_key(new_cluster, json.dumps(damaged).encode())
    result = cloudsnap.import_key(new_cluster, exported)
    assert result.changed and result.fingerprint == rec_old.key_fingerprint
    assert result.previous == rec_new.key_fingerprint
    assert not cloudsnap.import_key(new_cluster, exported).changed
    target = cloudsnap.target_from_secrets(s3, BUCKET, new_cluster)
    assert target.key_fingerprint == rec_old.key_fingerprint
    for rec in (rec_old, rec_new):  # both keys restore
        assert target.restore(rec.id, ChunkStore(tmp_path / rec.id))["size"] == rec.size


def test_the_key_never_shows(s3: Any, tmp_path: Path) -> None:
    """Neither repr, records, nor the index carry the key."""
    key = os.urandom(32)
    target = CloudTarget(s3, BUCKET, key)
    vol = make_volume(tmp_path / "vol", mib=1)
    store = ChunkStore(tmp_path / "local")
    rec = target.backup(store, snapshots.capture(store, vol).manifest, "vol1")
    text = repr(target) + json.dumps(rec.to_json()) + repr(target._key)
    for form in (key.hex(), key.hex()[:16]):
        assert form not in text
    assert all(key not in blob for blob in objects(s3).values())
