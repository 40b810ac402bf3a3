"""The kv log: replay, torn tails, corruption, durability, size limits, checksums."""

from __future__ import annotations

from pathlib import Path

import pytest

from playground.workloads.kvlog import KVLog, VolumeFullError


def filled(path: Path, n: int = 3, durable: bool = False) -> KVLog:
    log = KVLog(path, durable=durable)
    for i in range(n):
        log.put(f"k{i}", f"value-{i}".encode())
    return log


def test_replay_restores_content(tmp_path: Path) -> None:
    """Reopening a log gives back every put and delete in order."""
    log = filled(tmp_path)
    log.delete("k1")
    log.put("k0", b"new")
    log.close()
    again = KVLog(tmp_path)
    assert again.keys() == ["k0", "k2"]
    assert again.get("k0") == b"new"
    assert again.record_count == 5
    assert again.truncated_bytes == 0


def test_every_torn_tail_is_truncated(tmp_path: Path) -> None:
    """Cutting the last record at any byte loses only that record, and the log stays writable."""
    filled(tmp_path, 2).close()
    data = (tmp_path / "data.log").read_bytes()
    full = KVLog(tmp_path)
    last_start = len(data) - (len(data) - 0) // 2  # records have equal size here
    full.close()
    for cut in range(last_start, len(data)):
        d = tmp_path / f"cut{cut}"
        d.mkdir()
        (d / "data.log").write_bytes(data[:cut])
        log = KVLog(d)
        assert log.keys() == ["k0"], cut
        assert log.truncated_bytes == cut - last_start
        log.put("k9", b"x")
        log.close()
        assert KVLog(d).keys() == ["k0", "k9"]


def test_corruption_in_the_middle_truncates_from_there(tmp_path: Path) -> None:
    """A flipped byte in record 2 of 3 keeps record 1 only (checksums catch it)."""
    filled(tmp_path, 3).close()
    f = tmp_path / "data.log"
    data = bytearray(f.read_bytes())
    rec = len(data) // 3
    data[rec + rec // 2] ^= 0xFF
    f.write_bytes(bytes(data))
    log = KVLog(tmp_path)
    assert log.keys() == ["k0"]
    assert log.truncated_bytes == 2 * rec


def test_durable_mode_calls_the_sync_hook(tmp_path: Path) -> None:
    """In durable mode each write is fsynced and then the after_sync hook runs before it returns."""
    log = KVLog(tmp_path, durable=True)
    calls: list[int] = []
    log.after_sync = lambda: calls.append(log.size)
    log.put("a", b"1")
    log.delete("a")
    assert len(calls) == 2 and calls[0] > 0


def test_size_limit_refuses_writes_and_resize_cures_it(tmp_path: Path) -> None:
    """A write over the limit fails with VolumeFullError, keeps what was stored, and works after a resize."""
    log = KVLog(tmp_path, size_limit_bytes=60)
    log.put("a", b"x" * 10)
    with pytest.raises(VolumeFullError, match="resize"):
        log.put("b", b"y" * 100)
    assert log.keys() == ["a"]
    log.set_size_limit(10_000)
    log.put("b", b"y" * 100)
    assert log.keys() == ["a", "b"]


def test_checksum_depends_on_content_only(tmp_path: Path) -> None:
    """Two logs with the same live content have the same checksum, whatever their history."""
    a = KVLog(tmp_path / "a")
    b = KVLog(tmp_path / "b")
    a.put("x", b"1")
    a.put("y", b"2")
    b.put("y", b"0")
    b.put("x", b"1")
    b.put("y", b"2")
    assert a.checksum() == b.checksum()
    b.delete("x")
    assert a.checksum() != b.checksum()


def test_keys_prefix_and_limit(tmp_path: Path) -> None:
    """keys() filters by prefix, sorts and limits."""
    log = KVLog(tmp_path)
    for k in ("b1", "a2", "a1", "a3"):
        log.put(k, b"")
    assert log.keys("a", 2) == ["a1", "a2"]
