"""Incremental snapshots into the chunk store: capture, verify, restore."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from playground.storage import snapshots
from playground.storage.chunks import ChunkError, ChunkStore


def volume(tmp_path: Path) -> Path:
    root = tmp_path / "vol"
    (root / "data" / "deep").mkdir(parents=True)
    (root / "data" / "log").write_bytes(os.urandom(20_000))
    (root / "data" / "deep" / "meta.json").write_text('{"v": 1}')
    (root / "README").write_text("hello")
    os.chmod(root / "README", 0o600)
    os.symlink("data/log", root / "current")
    return root


def test_capture_then_restore_gives_the_same_tree(tmp_path: Path) -> None:
    store = ChunkStore(tmp_path / "chunks")
    root = volume(tmp_path)
    snap = snapshots.capture(store, root, chunk_size=4096)
    assert snap.files_read == 3 and snap.manifest["size"] == 20_000 + 8 + 5
    dest = tmp_path / "restored"
    snapshots.restore(store, snap.manifest, dest)
    assert (dest / "data" / "log").read_bytes() == (root / "data" / "log").read_bytes()
    assert (dest / "data" / "deep" / "meta.json").read_text() == '{"v": 1}'
    assert oct((dest / "README").stat().st_mode & 0o777) == "0o600"
    assert os.readlink(dest / "current") == "data/log"
    assert snapshots.verify(store, snap.manifest) == []


def test_the_next_snapshot_reads_only_what_changed(tmp_path: Path) -> None:
    store = ChunkStore(tmp_path / "chunks")
    root = volume(tmp_path)
    first = snapshots.capture(store, root, chunk_size=4096)
    with open(root / "data" / "log", "ab") as fh:  # an append-only log grows
        fh.write(b"more")
    second = snapshots.capture(store, root, first.manifest, chunk_size=4096)
    assert second.files_read == 1  # only the log; README and meta.json are reused
    assert second.bytes_new == 20_004 - 4 * 4096  # only its last chunk is new
    # The first snapshot still restores its own content.
    dest = tmp_path / "old"
    snapshots.restore(store, first.manifest, dest)
    assert (dest / "data" / "log").stat().st_size == 20_000


def test_restore_replaces_a_tree_atomically_and_refuses_corrupt_snapshots(
    tmp_path: Path,
) -> None:
    store = ChunkStore(tmp_path / "chunks")
    root = volume(tmp_path)
    snap = snapshots.capture(store, root, chunk_size=4096).manifest
    dest = tmp_path / "target"
    dest.mkdir()
    (dest / "mine").write_text("keep me unless the restore completes")
    victim = snap["files"]["data/deep/meta.json"]["chunks"][0]
    store.path(victim).write_bytes(b"rot")
    assert snapshots.verify(store, snap) == ["data/deep/meta.json"]
    with pytest.raises(ChunkError):
        snapshots.restore(store, snap, dest)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    assert (dest / "mine").exists()  # the old tree is untouched
    assert not store.put(b'{"v": 1}').new  # a plain put trusts what is there
    assert store.put(b'{"v": 1}', repair=True).new  # repaired from a good copy
    snapshots.restore(store, snap, dest)
    assert not (dest / "mine").exists() and (dest / "README").read_text() == "hello"


def test_manifests_round_trip_and_paths_stay_inside(tmp_path: Path) -> None:
    store = ChunkStore(tmp_path / "chunks")
    snap = snapshots.capture(store, volume(tmp_path)).manifest
    path = tmp_path / "snaps" / "s1.json"
    snapshots.save_manifest(snap, path)
    assert snapshots.load_manifest(path) == snap
    assert snapshots.digests(snap) == {d for f in snap["files"].values() for d in f["chunks"]}
    evil = {**snap, "files": {"../escape": snap["files"]["README"]}}
    with pytest.raises(ChunkError, match="leaves the volume"):
        snapshots.restore(store, evil, tmp_path / "x")
    assert not (tmp_path / "escape").exists()


def test_a_parallel_restore_writes_every_file_and_stops_whole_on_a_bad_chunk(
    tmp_path: Path,
) -> None:
    store = ChunkStore(tmp_path / "chunks")
    root = tmp_path / "many"
    for i in range(40):
        d = root / f"d{i % 5}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i:02d}").write_bytes(os.urandom(3000 + i))
    snap = snapshots.capture(store, root, chunk_size=1024).manifest
    assert snapshots.RESTORE_WORKERS > 1 and len(snap["files"]) == 40
    dest = tmp_path / "out"
    snapshots.restore(store, snap, dest)
    for rel in snap["files"]:
        assert (dest / rel).read_bytes() == (root / rel).read_bytes()
    store.path(snap["files"]["d3/f23"]["chunks"][1]).write_bytes(b"rot")
    other = tmp_path / "other"
    with pytest.raises(ChunkError, match="corrupt"):
        snapshots.restore(store, snap, other)
    assert not other.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
