"""The kv log: replay, torn tails, corruption, durability, size limits, checksums, listing."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import pytest

from playground.workloads import kvlog
from playground.workloads.kvlog import HEADER, KVLog, Record, VolumeFullError


def filled(path: Path, n: int = 3, durable: bool = False) -> KVLog:
    log = KVLog(path, durable=durable)
    for i in range(n):
        log.put(f"k{i}", f"value-{i}".encode())
    return log


def record_ends(path: Path, n: int) -> list[int]:
    """Log sizes after each of ``n`` puts made by ``filled``."""
    ends = []
    with KVLog(path) as log:
        for i in range(n):
            log.put(f"k{i}", f"value-{i}".encode())
            ends.append(log.size)
    return ends


def test_replay_restores_content_and_counts(tmp_path: Path) -> None:
    """Reopening a log gives back every put and delete in order, with the same record count."""
    log = filled(tmp_path)
    log.delete("k1")
    log.put("k0", b"new")
    log.put("uni-\u00e9", b"\x00\xff")
    log.close()
    again = KVLog(tmp_path)
    assert again.keys() == ["k0", "k2", "uni-\u00e9"]
    assert again.get("k0") == b"new"
    assert again.get("k1") is None
    assert again.get("uni-\u00e9") == b"\x00\xff"
    assert again.record_count == 6
    assert again.truncated_bytes == 0
    assert again.size == (tmp_path / "data.log").stat().st_size


def test_put_and_delete_report_what_happened(tmp_path: Path) -> None:
    """put() says whether the key was new, delete() whether it existed, and only real changes append."""
    log = KVLog(tmp_path)
    assert log.put("a", b"1") is True
    assert log.put("a", b"2") is False
    assert log.delete("a") is True
    assert log.delete("a") is False
    assert log.record_count == 3


def test_every_torn_tail_of_the_last_record_is_truncated(tmp_path: Path) -> None:
    """Cutting the last record at any byte loses only that record, reports the cut bytes, and the log stays writable."""
    src = tmp_path / "src"
    ends = record_ends(src, 3)
    data = (src / "data.log").read_bytes()
    last_start = ends[1]
    assert len(data) == ends[2]
    for cut in range(last_start, len(data)):
        d = tmp_path / f"cut{cut}"
        d.mkdir()
        (d / "data.log").write_bytes(data[:cut])
        log = KVLog(d)
        assert log.keys() == ["k0", "k1"], cut
        assert log.record_count == 2
        assert log.truncated_bytes == cut - last_start
        assert (d / "data.log").stat().st_size == last_start
        log.put("k9", b"x")
        log.close()
        again = KVLog(d)
        assert again.keys() == ["k0", "k1", "k9"] and again.truncated_bytes == 0
        again.close()


@pytest.mark.parametrize("where", ["payload", "crc", "magic", "length"])
def test_corruption_in_the_middle_truncates_from_there(tmp_path: Path, where: str) -> None:
    """A damaged record 2 of 4 (payload, CRC, magic or length) keeps record 1 only and cuts the rest."""
    ends = record_ends(tmp_path, 4)
    f = tmp_path / "data.log"
    data = bytearray(f.read_bytes())
    start = ends[0]
    offset = {"magic": 0, "length": 5, "crc": 9, "payload": HEADER.size + 4}[where]
    data[start + offset] ^= 0xFF
    f.write_bytes(bytes(data))
    log = KVLog(tmp_path)
    assert log.keys() == ["k0"]
    assert log.truncated_bytes == ends[3] - ends[0]
    assert f.stat().st_size == ends[0]


def test_garbage_file_is_truncated_to_empty(tmp_path: Path) -> None:
    """A log holding no valid record at all opens empty, with every byte reported truncated."""
    (tmp_path / "data.log").write_bytes(b"not a log at all")
    log = KVLog(tmp_path)
    assert log.keys() == [] and log.record_count == 0 and log.truncated_bytes == 16
    log.put("a", b"1")
    log.close()
    assert KVLog(tmp_path).get("a") == b"1"


def test_durable_mode_fsyncs_each_write_then_calls_the_hook(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In durable mode the file and directory are fsynced on creation, and each write is fsynced before after_sync runs."""
    events: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        events.append("fsync")
        real_fsync(fd)

    def fsync_dir(path: Path) -> None:
        events.append(f"dir:{Path(path).name}")
        fd = os.open(path, os.O_RDONLY)
        try:
            real_fsync(fd)
        finally:
            os.close(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(kvlog, "_fsync_dir", fsync_dir)
    seen: list[Record] = []

    def hook(rec: Record) -> None:
        events.append("hook")
        seen.append(rec)

    log = KVLog(tmp_path / "data", durable=True, after_sync=hook)
    assert events == ["dir:" + tmp_path.name, "fsync", "dir:data"]
    events.clear()
    log.put("a", b"1")
    log.delete("a")
    assert events == ["fsync", "hook", "fsync", "hook"]
    assert [(r.op, r.key, r.value, r.version) for r in seen] == [
        (kvlog.OP_PUT, "a", b"1", 1),
        (kvlog.OP_DELETE, "a", b"", 2),
    ]
    assert b"".join(r.raw for r in seen) == (tmp_path / "data" / "data.log").read_bytes()


def test_buffered_mode_never_fsyncs_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without durable, writes reach the file (readable by a new reader) without any fsync."""
    calls: list[int] = []
    monkeypatch.setattr(os, "fsync", lambda fd: calls.append(fd))
    log = KVLog(tmp_path)
    log.put("a", b"1")
    assert calls == []
    assert KVLog(tmp_path).get("a") == b"1"


def test_failing_hook_leaves_the_record_applied(tmp_path: Path) -> None:
    """If after_sync raises, the error reaches the writer and the record stays in log and index."""

    def hook(rec: Record) -> None:
        raise RuntimeError("replica down")

    log = KVLog(tmp_path, durable=True, after_sync=hook)
    with pytest.raises(RuntimeError, match="replica down"):
        log.put("a", b"1")
    assert log.get("a") == b"1"
    log.close()
    assert KVLog(tmp_path).get("a") == b"1"


def test_size_limit_refuses_writes_and_resize_cures_it(tmp_path: Path) -> None:
    """A write over the limit raises VolumeFullError naming size and limit, loses nothing, and works after an online resize."""
    log = KVLog(tmp_path, size_limit_bytes=60)
    log.put("a", b"x" * 10)
    size = log.size
    with pytest.raises(VolumeFullError, match=rf"volume is full.*{size} bytes.*limit is 60") as ei:
        log.put("b", b"y" * 100)
    assert "resized" in str(ei.value) and ei.value.errno == errno.ENOSPC
    assert log.keys() == ["a"] and log.size == size and log.record_count == 1
    log.set_size_limit(10_000)
    assert log.put("b", b"y" * 100) is True
    log.set_size_limit(None)
    log.put("c", b"z" * 20_000)
    log.close()
    again = KVLog(tmp_path, size_limit_bytes=1)
    assert again.keys() == ["a", "b", "c"] and again.get("a") == b"x" * 10
    with pytest.raises(VolumeFullError):
        again.delete("a")
    assert again.get("a") == b"x" * 10


def test_size_limit_is_inclusive(tmp_path: Path) -> None:
    """A write that makes the log exactly as large as the limit is accepted; one byte more is not."""
    probe = KVLog(tmp_path / "probe")
    probe.put("k", b"v" * 10)
    exact = probe.size
    assert KVLog(tmp_path / "exact", size_limit_bytes=exact).put("k", b"v" * 10)
    with pytest.raises(VolumeFullError):
        KVLog(tmp_path / "short", size_limit_bytes=exact - 1).put("k", b"v" * 10)
    with pytest.raises(ValueError):
        probe.set_size_limit(-1)


def test_disk_full_midway_leaves_no_partial_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the disk fills half-way through a record, the half is cut off, VolumeFullError is raised and later writes replay."""
    log = KVLog(tmp_path)
    log.put("a", b"1")
    size = log.size
    real_write = os.write

    def half_then_enospc(fd: int, data: bytes | memoryview) -> int:
        if len(data) > 4:
            return real_write(fd, bytes(data)[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", half_then_enospc)
    with pytest.raises(VolumeFullError, match="volume is full"):
        log.put("b", b"22222222")
    monkeypatch.undo()
    assert (tmp_path / "data.log").stat().st_size == size
    assert log.keys() == ["a"]
    log.put("c", b"3")
    log.close()
    again = KVLog(tmp_path)
    assert again.keys() == ["a", "c"] and again.truncated_bytes == 0


def test_checksum_depends_on_live_content_only(tmp_path: Path) -> None:
    """Two logs with the same live content have the same checksum whatever their history, and it survives a reopen."""
    a = KVLog(tmp_path / "a")
    b = KVLog(tmp_path / "b")
    assert a.checksum() == b.checksum()
    a.put("x", b"1")
    a.put("y", b"2")
    b.put("y", b"0")
    b.put("z", b"9")
    b.put("x", b"1")
    b.put("y", b"2")
    b.delete("z")
    assert a.checksum() == b.checksum()
    assert len(a.checksum()) == 64
    b.delete("x")
    assert a.checksum() != b.checksum()
    expected = a.checksum()
    a.close()
    assert KVLog(tmp_path / "a").checksum() == expected


def test_checksum_is_unambiguous(tmp_path: Path) -> None:
    """Moving bytes between a key and its value changes the checksum (lengths are hashed too)."""
    a = KVLog(tmp_path / "a")
    b = KVLog(tmp_path / "b")
    a.put("ab", b"c")
    b.put("a", b"bc")
    assert a.checksum() != b.checksum()


def test_keys_prefix_and_limit(tmp_path: Path) -> None:
    """keys() filters by prefix, sorts, limits, and refuses a negative limit."""
    log = KVLog(tmp_path)
    for k in ("b1", "a2", "a1", "a3", "ab"):
        log.put(k, b"")
    assert log.keys() == ["a1", "a2", "a3", "ab", "b1"]
    assert log.keys("a", 2) == ["a1", "a2"]
    assert log.keys("a") == ["a1", "a2", "a3", "ab"]
    assert log.keys(limit=0) == []
    assert log.keys("zz") == []
    with pytest.raises(ValueError):
        log.keys(limit=-1)


def test_closed_log_refuses_writes(tmp_path: Path) -> None:
    """After close() writes raise ValueError, and closing again is harmless."""
    log = KVLog(tmp_path)
    log.close()
    log.close()
    assert log.closed
    with pytest.raises(ValueError, match="closed"):
        log.put("a", b"1")


def test_copy_of_a_durable_log_replays_identically(tmp_path: Path) -> None:
    """A byte copy of a log (a replica's volume) opens with the same keys, record count and checksum."""
    log = filled(tmp_path / "a", 5, durable=True)
    log.delete("k2")
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    copy = KVLog(tmp_path / "b")
    assert copy.keys() == log.keys()
    assert copy.record_count == log.record_count == 6
    assert copy.checksum() == log.checksum()
