"""The chunk store: deduplication, checksums, crash-safe writes and restores."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from playground.storage.chunks import ChunkError, ChunkStore, restore_file, store_file


def test_same_content_is_stored_once(tmp_path: Path) -> None:
    store = ChunkStore(tmp_path / "chunks")
    a = store.put(b"hello")
    b = store.put(b"hello")
    assert a.digest == b.digest and a.new and not b.new
    assert list(store.digests()) == [a.digest]
    assert store.get(a.digest) == b"hello"
    assert store.size() == 5


def test_a_changed_block_costs_one_chunk(tmp_path: Path) -> None:
    """Cost grows with changed data, not with the file's size."""
    store = ChunkStore(tmp_path / "chunks")
    data = bytearray(os.urandom(64 * 1024))
    f = tmp_path / "volume.bin"
    f.write_bytes(data)
    first = store_file(store, f, chunk_size=4096)
    assert len(first) == 16 and all(r.new for r in first)
    data[5000] ^= 0xFF  # one byte in the second chunk
    f.write_bytes(data + b"appended")
    second = store_file(store, f, chunk_size=4096)
    assert [r.new for r in second].count(True) == 2  # the changed chunk and the new tail
    assert len(list(store.digests())) == 18


def test_corrupt_and_missing_chunks_are_refused(tmp_path: Path) -> None:
    store = ChunkStore(tmp_path / "chunks")
    good = store.put(b"good").digest
    bad = store.put(b"will rot").digest
    store.path(bad).write_bytes(b"rotten")
    with pytest.raises(ChunkError, match="corrupt"):
        store.get(bad)
    gone = "0" * 64
    with pytest.raises(ChunkError, match="missing"):
        store.get(gone)
    assert store.verify([good, bad, gone, bad]) == [bad, gone]
    with pytest.raises(ChunkError, match="not a chunk digest"):
        store.get("../../etc/passwd")


def test_restore_is_checked_and_atomic(tmp_path: Path) -> None:
    store = ChunkStore(tmp_path / "chunks")
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(10_000))
    manifest = [r.digest for r in store_file(store, src, chunk_size=3000)]
    dest = tmp_path / "restored" / "data.bin"
    assert restore_file(store, manifest, dest) == 10_000
    assert dest.read_bytes() == src.read_bytes()

    # A corrupt chunk: the restore fails and leaves neither a partial file nor a temp file.
    store.path(manifest[-1]).write_bytes(b"x")
    other = tmp_path / "restored" / "other.bin"
    with pytest.raises(ChunkError):
        restore_file(store, manifest, other)
    assert not other.exists()
    assert sorted(p.name for p in other.parent.iterdir()) == ["data.bin"]


def test_collect_and_sweep(tmp_path: Path) -> None:
    store = ChunkStore(tmp_path / "chunks")
    keep = store.put(b"keep").digest
    store.put(b"drop")
    # A writer killed mid-chunk leaves only a temporary file, never a chunk.
    (store.path(keep).parent / f".tmp-{'1' * 64}.123").write_bytes(b"half")
    assert list(store.digests()) == sorted([keep, store.put(b"drop").digest])
    assert store.collect([keep]) == 1
    assert store.sweep() == 1
    assert list(store.digests()) == [keep]
    assert ChunkStore(tmp_path / "none").collect([]) == 0
