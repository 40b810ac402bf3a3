"""replication.replicate: a file-level mirror that appends tails, rewrites what changed, removes the rest."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from playground.storage import replication
from playground.storage.replication import TEMP_PREFIX, digest_tree, replicate, usage


def tree(tmp_path: Path) -> tuple[Path, Path]:
    src, dst = tmp_path / "work", tmp_path / "replica"
    src.mkdir()
    return src, dst


def test_first_pass_copies_everything_and_keeps_modes_and_mtimes(tmp_path: Path) -> None:
    """A fresh replica gets every file and directory, with the working copy's mode and mtime."""
    src, dst = tree(tmp_path)
    (src / "a.log").write_bytes(b"x" * 1000)
    (src / "sub" / "deep").mkdir(parents=True)
    (src / "sub" / "deep" / "b.bin").write_bytes(b"y" * 10)
    (src / "empty").mkdir()
    os.chmod(src / "a.log", 0o600)
    os.utime(src / "a.log", ns=(1_000_000_000, 1_500_000_000_000_000_000))
    res = replicate(src, dst)
    assert (res.files_copied, res.bytes_copied, res.total_bytes) == (2, 1010, 1010)
    assert digest_tree(dst) == digest_tree(src)
    assert (dst / "empty").is_dir()
    st = (dst / "a.log").stat()
    assert st.st_mode & 0o777 == 0o600
    assert st.st_mtime_ns == 1_500_000_000_000_000_000
    assert set(res.known) == {"a.log", "sub/deep/b.bin"}


def test_an_unchanged_tree_copies_nothing(tmp_path: Path) -> None:
    src, dst = tree(tmp_path)
    (src / "a").write_bytes(b"abc")
    first = replicate(src, dst)
    again = replicate(src, dst, first.known)
    assert (again.files_copied, again.bytes_copied, again.removed) == (0, 0, 0)
    assert again.total_bytes == 3
    assert again.known == first.known


def test_an_append_only_file_gets_only_its_tail(tmp_path: Path) -> None:
    """Appended bytes are appended in place (same replica inode), nothing else is re-read."""
    src, dst = tree(tmp_path)
    log = src / "kv.log"
    log.write_bytes(b"r" * 100_000)
    first = replicate(src, dst)
    inode = (dst / "kv.log").stat().st_ino
    with open(log, "ab") as fh:
        fh.write(b"tail-1234")
    res = replicate(src, dst, first.known)
    assert (res.files_copied, res.bytes_copied) == (1, 9)
    assert (dst / "kv.log").stat().st_ino == inode, "appended in place, not rewritten"
    assert (dst / "kv.log").read_bytes() == log.read_bytes()
    assert res.known["kv.log"] == (log.stat().st_ino, 100_009)


def test_without_knowledge_of_the_replica_an_append_is_a_full_copy(tmp_path: Path) -> None:
    """``known`` is what proves the replica holds a prefix; without it the whole file is copied."""
    src, dst = tree(tmp_path)
    (src / "kv.log").write_bytes(b"r" * 5000)
    replicate(src, dst)
    with open(src / "kv.log", "ab") as fh:
        fh.write(b"more")
    res = replicate(src, dst, None)
    assert res.bytes_copied == 5004
    assert (dst / "kv.log").read_bytes() == (src / "kv.log").read_bytes()


def test_a_rewritten_file_is_copied_whole_and_renamed_into_place(tmp_path: Path) -> None:
    """A file replaced by rename (new inode) or shrunk is copied whole, never appended."""
    src, dst = tree(tmp_path)
    (src / "data").write_bytes(b"a" * 4000)
    known = replicate(src, dst).known
    old_inode = (dst / "data").stat().st_ino
    # Compaction: a new file renamed over the old one, longer than before.
    tmp = src / "data.new"
    tmp.write_bytes(b"b" * 6000)
    os.replace(tmp, src / "data")
    res = replicate(src, dst, known)
    assert res.bytes_copied == 6000, "a new inode is not an append of the old file"
    assert (dst / "data").read_bytes() == b"b" * 6000
    assert (dst / "data").stat().st_ino != old_inode
    # Shrunk in place: copied whole as well.
    with open(src / "data", "r+b") as fh:
        fh.truncate(10)
    res = replicate(src, dst, res.known)
    assert res.bytes_copied == 10
    assert (dst / "data").read_bytes() == b"b" * 10


def test_same_size_new_content_is_seen_by_its_mtime(tmp_path: Path) -> None:
    src, dst = tree(tmp_path)
    f = src / "f"
    f.write_bytes(b"1111")
    os.utime(f, ns=(0, 1_000_000_000))
    known = replicate(src, dst).known
    f.write_bytes(b"2222")
    os.utime(f, ns=(0, 2_000_000_000))
    res = replicate(src, dst, known)
    assert res.bytes_copied == 4
    assert (dst / "f").read_bytes() == b"2222"


def test_same_size_and_mtime_is_trusted_and_digest_tree_tells_the_difference(
    tmp_path: Path,
) -> None:
    """The mirror compares size and mtime (cheap); a replica changed behind its back shows in digests."""
    src, dst = tree(tmp_path)
    f = src / "f"
    f.write_bytes(b"good")
    known = replicate(src, dst).known
    st = (dst / "f").stat()
    (dst / "f").write_bytes(b"evil")
    os.utime(dst / "f", ns=(st.st_atime_ns, st.st_mtime_ns))
    assert replicate(src, dst, known).bytes_copied == 0
    assert digest_tree(dst)["f"] != digest_tree(src)["f"]
    # Changing the size (or mtime) of the corrupt copy gets it repaired on the next pass.
    (dst / "f").write_bytes(b"evil!")
    assert replicate(src, dst, known).bytes_copied == 4
    assert digest_tree(dst) == digest_tree(src)


def test_deletions_are_mirrored_files_and_directories(tmp_path: Path) -> None:
    src, dst = tree(tmp_path)
    (src / "keep").write_bytes(b"k")
    (src / "gone").write_bytes(b"g")
    (src / "dir" / "inner").mkdir(parents=True)
    (src / "dir" / "inner" / "x").write_bytes(b"x")
    known = replicate(src, dst).known
    (src / "gone").unlink()
    (src / "dir" / "inner" / "x").unlink()
    (src / "dir" / "inner").rmdir()
    (src / "dir").rmdir()
    res = replicate(src, dst, known)
    assert res.removed >= 2
    assert sorted(p.name for p in dst.iterdir()) == ["keep"]
    assert digest_tree(dst) == digest_tree(src)


def test_a_file_replaced_by_a_directory_and_back(tmp_path: Path) -> None:
    src, dst = tree(tmp_path)
    (src / "thing").write_bytes(b"file")
    known = replicate(src, dst).known
    (src / "thing").unlink()
    (src / "thing").mkdir()
    (src / "thing" / "in").write_bytes(b"in")
    known = replicate(src, dst, known).known
    assert (dst / "thing" / "in").read_bytes() == b"in"
    (src / "thing" / "in").unlink()
    (src / "thing").rmdir()
    (src / "thing").write_bytes(b"file again")
    replicate(src, dst, known)
    assert (dst / "thing").read_bytes() == b"file again"
    assert digest_tree(dst) == digest_tree(src)


def test_symlinks_are_copied_as_links_never_followed(tmp_path: Path) -> None:
    """A link to a file, a link to a directory outside, a dangling link: links in the replica."""
    src, dst = tree(tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"not part of the volume")
    (src / "target").write_bytes(b"t")
    os.symlink("target", src / "to-file")
    os.symlink(str(outside), src / "to-dir")
    os.symlink("nowhere", src / "dangling")
    known = replicate(src, dst).known
    for name in ("to-file", "to-dir", "dangling"):
        assert (dst / name).is_symlink(), name
    assert os.readlink(dst / "to-file") == "target"
    assert os.readlink(dst / "to-dir") == str(outside)
    assert not (dst / "secret").exists()
    assert replicate(src, dst, known).files_copied == 0
    # Re-pointed in the working copy: re-pointed in the replica.
    (src / "to-file").unlink()
    os.symlink("elsewhere", src / "to-file")
    replicate(src, dst, known)
    assert os.readlink(dst / "to-file") == "elsewhere"
    assert digest_tree(dst) == digest_tree(src)
    assert digest_tree(src)["dangling"] == "link:nowhere"


def test_durable_mode_fsyncs_files_and_directories(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """durable=True fsyncs every file written and the directories that changed; False fsyncs none."""
    src, dst = tree(tmp_path)
    (src / "a").write_bytes(b"a" * 10)
    (src / "d").mkdir()
    (src / "d" / "b").write_bytes(b"b")
    synced: list[str] = []
    real = os.fsync

    def spy(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(replication.os, "fsync", spy)
    known = replicate(src, dst, durable=False).known
    assert synced == []
    with open(src / "a", "ab") as fh:
        fh.write(b"more")
    (src / "c").write_bytes(b"new")
    replicate(src, dst, known, durable=True)
    assert str(dst / "a") in synced, "the appended file"
    # The new file was written aside and renamed: its data and the directory entry.
    assert any(Path(p).name.startswith(TEMP_PREFIX + "c") for p in synced)
    assert str(dst) in synced


def test_crash_leftovers_are_neither_copied_nor_kept(tmp_path: Path) -> None:
    """Temp files of an interrupted pass: never replicated from the source, removed from the replica."""
    src, dst = tree(tmp_path)
    (src / "real").write_bytes(b"r")
    (src / f"{TEMP_PREFIX}real.123").write_bytes(b"half a copy")
    dst.mkdir()
    (dst / f"{TEMP_PREFIX}real.999").write_bytes(b"left by a crash")
    res = replicate(src, dst)
    assert sorted(p.name for p in dst.iterdir()) == ["real"]
    assert res.total_bytes == 1
    assert digest_tree(src) == digest_tree(dst) == {"real": digest_tree(dst)["real"]}


def test_a_torn_append_is_repaired_on_the_next_pass(tmp_path: Path) -> None:
    """A crash in the middle of an append leaves a size mismatch; the next pass makes it right."""
    src, dst = tree(tmp_path)
    log = src / "kv.log"
    log.write_bytes(b"0123456789" * 100)
    known = replicate(src, dst).known
    with open(log, "ab") as fh:
        fh.write(b"ABCDEFGHIJ")
    with open(dst / "kv.log", "ab") as fh:
        fh.write(b"ABC")  # the first bytes made it, then the crash
    replicate(src, dst, known)
    assert (dst / "kv.log").read_bytes() == log.read_bytes()


def test_usage_counts_regular_files_only(tmp_path: Path) -> None:
    src, _ = tree(tmp_path)
    (src / "a").write_bytes(b"a" * 7)
    (src / "d").mkdir()
    (src / "d" / "b").write_bytes(b"b" * 5)
    os.symlink("a", src / "link")
    assert usage(src) == 12
    assert usage(tmp_path / "missing") == 0
