"""The sealed chunk store of secure volumes: encrypted, HMAC-named, checked like the plain one."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from playground.storage import snapshots
from playground.storage.chunks import ChunkError, ChunkStore
from playground.storage.sealed import SealedChunkStore

KEY = bytes(range(32))


def files_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def test_content_and_digests_never_reach_the_disk(tmp_path: Path) -> None:
    """What is stored is neither the plaintext nor named by its SHA-256; reads give it back."""
    store = SealedChunkStore(tmp_path / "s", KEY)
    secret = b"card 4111-1111-1111-1111 " * 100
    res = store.put(secret)
    assert res.new and store.get(res.digest) == secret
    [only] = files_under(tmp_path / "s")
    assert res.digest not in str(only)
    assert b"4111-1111" not in only.read_bytes()
    again = store.put(secret)
    assert not again.new and len(files_under(tmp_path / "s")) == 1


def test_a_wrong_key_or_a_flipped_byte_is_corruption(tmp_path: Path) -> None:
    """Another key cannot read the chunk; a tampered chunk is reported corrupt and repairable."""
    store = SealedChunkStore(tmp_path / "s", KEY)
    d = store.put(b"hello").digest
    other = SealedChunkStore(tmp_path / "s", bytes(32))
    with pytest.raises(ChunkError):
        other.get(d)  # another key names it differently: missing
    [f] = files_under(tmp_path / "s")
    blob = bytearray(f.read_bytes())
    blob[-1] ^= 1
    f.write_bytes(bytes(blob))
    assert store.verify([d]) == [d]
    with pytest.raises(ChunkError, match="corrupt"):
        store.get(d)
    store.put(b"hello", repair=True)
    assert store.verify([d]) == []


def test_snapshot_roundtrip_collect_and_sealed_manifest(tmp_path: Path) -> None:
    """A directory snapshotted into the sealed store restores byte for byte; collect keeps live chunks."""
    src = tmp_path / "vol"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_bytes(b"alpha")
    (src / "sub" / "b.bin").write_bytes(os.urandom(3 << 20))
    store = SealedChunkStore(tmp_path / "s", KEY)
    cap = snapshots.capture(store, src)
    sealed = store.seal_manifest(cap.manifest, "snap-1")
    assert "a.txt" not in sealed
    manifest = store.open_manifest(sealed, "snap-1")
    with pytest.raises(ChunkError):
        store.open_manifest(sealed, "snap-2")  # bound to its snapshot id
    out = tmp_path / "out"
    snapshots.restore(store, manifest, out)
    assert (out / "a.txt").read_bytes() == b"alpha"
    assert (out / "sub" / "b.bin").read_bytes() == (src / "sub" / "b.bin").read_bytes()
    store.put(b"orphan")
    assert store.collect(snapshots.digests(manifest)) == 1
    assert snapshots.verify(store, manifest) == []


def test_plain_and_sealed_stores_side_by_side(tmp_path: Path) -> None:
    """The same content in a plain store is readable there and only there by its digest."""
    plain, sealed = ChunkStore(tmp_path / "p"), SealedChunkStore(tmp_path / "s", KEY)
    d = plain.put(b"x").digest
    assert sealed.put(b"x").digest == d
    assert plain.path(d) != sealed.path(d)
