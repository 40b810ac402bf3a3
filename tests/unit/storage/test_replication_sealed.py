"""Sealed replicas of secure volumes: only ciphertext at rest, the same mirror semantics."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from playground.storage.replication import (
    BLOCK,
    OVERHEAD,
    SEALED_MARKER,
    SealError,
    dec_size,
    digest_tree,
    enc_size,
    is_sealed,
    replicate,
    usage,
)

KEY = bytes(range(32))
OTHER = bytes(32)
MARKER = b"SECRET-MARKER-7f3a"


def tree(tmp_path: Path) -> tuple[Path, Path]:
    src, dst = tmp_path / "work", tmp_path / "replica"
    src.mkdir()
    return src, dst


def all_bytes(path: Path) -> bytes:
    out = b""
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            out += (Path(dirpath) / name).read_bytes()
    return out


def test_enc_size_and_its_inverse() -> None:
    assert enc_size(0) == 0
    assert enc_size(1) == 1 + OVERHEAD
    assert enc_size(BLOCK) == BLOCK + OVERHEAD
    assert enc_size(BLOCK + 1) == BLOCK + 1 + 2 * OVERHEAD
    for n in (0, 1, 5, BLOCK - 1, BLOCK, BLOCK + 1, 3 * BLOCK + 17):
        assert dec_size(enc_size(n)) == n


def test_a_sealed_mirror_holds_no_plaintext_and_unseals_to_the_source(tmp_path: Path) -> None:
    src, dst = tree(tmp_path)
    (src / "a.txt").write_bytes(MARKER * 100)
    (src / "sub").mkdir()
    (src / "sub" / "big.bin").write_bytes(MARKER + os.urandom(2 * BLOCK + 5) + MARKER)
    (src / "empty.txt").write_bytes(b"")
    os.symlink("a.txt", src / "link")
    res = replicate(src, dst, seal=KEY)
    assert is_sealed(dst)
    assert MARKER not in all_bytes(dst)
    assert res.total_bytes == usage(src) == usage(dst)
    assert (dst / "a.txt").stat().st_size == enc_size(len(MARKER) * 100)
    assert os.readlink(dst / "link") == "a.txt"
    assert digest_tree(dst, unseal=KEY) == digest_tree(src)
    # an unchanged tree copies nothing
    again = replicate(src, dst, res.known, seal=KEY)
    assert again.files_copied == 0
    # unsealed back into a plaintext copy
    back = tmp_path / "back"
    replicate(dst, back, unseal=KEY)
    assert not is_sealed(back)
    assert digest_tree(back) == digest_tree(src)
    assert (back / "a.txt").read_bytes() == MARKER * 100


def test_appends_reseal_only_the_last_block(tmp_path: Path) -> None:
    src, dst = tree(tmp_path)
    data = os.urandom(BLOCK + 100)
    (src / "log").write_bytes(data)
    res = replicate(src, dst, seal=KEY)
    first_block = (dst / "log").read_bytes()[: BLOCK + OVERHEAD]
    with open(src / "log", "ab") as fh:
        fh.write(MARKER * 10)
    res = replicate(src, dst, res.known, seal=KEY)
    assert res.bytes_copied == 100 + len(MARKER) * 10  # from the last partial block on
    assert (dst / "log").read_bytes()[: BLOCK + OVERHEAD] == first_block
    assert digest_tree(dst, unseal=KEY) == digest_tree(src)
    assert MARKER not in all_bytes(dst)


def test_a_torn_sealed_append_is_repaired_by_the_next_pass(tmp_path: Path) -> None:
    src, dst = tree(tmp_path)
    (src / "log").write_bytes(b"a" * 1000)
    res = replicate(src, dst, seal=KEY)
    with open(src / "log", "ab") as fh:
        fh.write(b"b" * 1000)
    with open(dst / "log", "ab") as fh:
        fh.write(b"torn")  # a crash in the middle of an append
    replicate(src, dst, res.known, seal=KEY)
    assert digest_tree(dst, unseal=KEY) == digest_tree(src)


def test_rewrite_shrink_and_delete(tmp_path: Path) -> None:
    src, dst = tree(tmp_path)
    (src / "f").write_bytes(b"x" * 5000)
    (src / "gone").write_bytes(b"y")
    (src / "d").mkdir()
    (src / "d" / "g").write_bytes(b"z")
    res = replicate(src, dst, seal=KEY)
    (src / "f").write_bytes(MARKER)
    os.utime(src / "f", ns=(1, 2_000_000_000_000_000_000))
    (src / "gone").unlink()
    (src / "d" / "g").unlink()
    (src / "d").rmdir()
    res = replicate(src, dst, res.known, seal=KEY)
    assert res.removed == 3
    assert sorted(os.listdir(dst)) == sorted([SEALED_MARKER, "f"])
    assert digest_tree(dst, unseal=KEY) == digest_tree(src)
    assert MARKER not in all_bytes(dst)


def test_tampering_a_wrong_key_or_no_key_is_detected(tmp_path: Path) -> None:
    src, dst = tree(tmp_path)
    (src / "f").write_bytes(MARKER * 3)
    (src / "g").write_bytes(MARKER * 2)
    replicate(src, dst, seal=KEY)
    with pytest.raises(SealError):
        digest_tree(dst)
    with pytest.raises(SealError):
        digest_tree(dst, unseal=OTHER)
    with pytest.raises(SealError):
        replicate(dst, tmp_path / "x")  # ciphertext is never read as data
    with pytest.raises(SealError):
        replicate(dst, tmp_path / "y", unseal=OTHER)
    blob = bytearray((dst / "f").read_bytes())
    blob[20] ^= 1
    (dst / "f").write_bytes(bytes(blob))
    with pytest.raises(SealError):
        digest_tree(dst, unseal=KEY)
    # blocks are bound to their file: swapping two files does not authenticate either
    (dst / "f").write_bytes((dst / "g").read_bytes())
    with pytest.raises(SealError):
        digest_tree(dst, unseal=KEY)


def test_a_plaintext_replica_turned_secondary_is_resealed_whole(tmp_path: Path) -> None:
    """Files equal in size by chance must not stay plaintext: the marker tells."""
    src, dst = tree(tmp_path)
    (src / "f").write_bytes(MARKER * 4)
    replicate(src, dst)
    # a plaintext file that happens to have the sealed size and the same mtime
    st = (src / "f").stat()
    (dst / "g").write_bytes(b"q" * enc_size(3))
    (src / "g").write_bytes(MARKER[:3])
    os.utime(dst / "g", ns=(st.st_atime_ns, st.st_mtime_ns))
    os.utime(src / "g", ns=(st.st_atime_ns, st.st_mtime_ns))
    replicate(src, dst, seal=KEY)
    assert is_sealed(dst)
    assert MARKER not in all_bytes(dst)
    assert digest_tree(dst, unseal=KEY) == digest_tree(src)
    assert not any(n.startswith((".restore-", ".replaced-")) for n in os.listdir(tmp_path))
    # and back to plaintext (the working copy moves here)
    replicate(src, dst)
    assert not is_sealed(dst)
    assert digest_tree(dst) == digest_tree(src)


def test_unsealing_in_place(tmp_path: Path) -> None:
    src, dst = tree(tmp_path)
    (src / "f").write_bytes(MARKER * 4)
    replicate(src, dst, seal=KEY)
    replicate(dst, dst, unseal=KEY)
    assert not is_sealed(dst)
    assert (dst / "f").read_bytes() == MARKER * 4
    assert digest_tree(dst) == digest_tree(src)


def test_sealed_to_sealed_keeps_ciphertext_only(tmp_path: Path) -> None:
    src, dst = tree(tmp_path)
    (src / "f").write_bytes(MARKER * 4 + os.urandom(BLOCK))
    mid = tmp_path / "mid"
    replicate(src, mid, seal=KEY)
    res = replicate(mid, dst, unseal=KEY, seal=KEY)
    assert res.total_bytes == usage(src)
    assert MARKER not in all_bytes(dst)
    assert digest_tree(dst, unseal=KEY) == digest_tree(src)
    assert replicate(mid, dst, res.known, unseal=KEY, seal=KEY).files_copied == 0


def test_appending_after_a_whole_block_and_cutting_at_a_block_boundary(tmp_path: Path) -> None:
    """The last block is marked as such: an append re-seals it, a cut-off tail is seen."""
    src, dst = tree(tmp_path)
    (src / "log").write_bytes(os.urandom(BLOCK))
    res = replicate(src, dst, seal=KEY)
    with open(src / "log", "ab") as fh:
        fh.write(os.urandom(BLOCK))
    res = replicate(src, dst, res.known, seal=KEY)
    assert res.bytes_copied == 2 * BLOCK  # the block marked last is sealed again
    assert digest_tree(dst, unseal=KEY) == digest_tree(src)
    with open(dst / "log", "r+b") as fh:
        fh.truncate(BLOCK + OVERHEAD)  # a whole trailing block cut off
    with pytest.raises(SealError):
        digest_tree(dst, unseal=KEY)
