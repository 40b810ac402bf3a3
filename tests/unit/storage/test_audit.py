"""The storage audit log: entries, scrubbing, filters, torn lines, concurrent writers."""

from __future__ import annotations

import datetime as dt
import json
import multiprocessing
import time
from pathlib import Path

import pytest

from playground.storage.audit import (
    MAX_VALUE_CHARS,
    SCRUBBED,
    AuditLog,
    audit_path,
    current_user,
    scrub,
)


def test_record_appends_one_json_line_with_time_and_fields(tmp_path: Path) -> None:
    """record() writes who/action/target/outcome/details with a UTC time and returns it."""
    path = audit_path(tmp_path / "state")
    assert path == tmp_path / "state" / "storage" / "audit.jsonl"
    log = AuditLog(path)
    before = time.time()
    e = log.record("alice@cli", "volume.create", "orders", "ok", size_gb=2, repl=2)
    lines = path.read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0]) == e
    assert e["who"] == "alice@cli" and e["action"] == "volume.create"
    assert e["target"] == "orders" and e["outcome"] == "ok"
    assert e["details"] == {"size_gb": 2, "repl": 2}
    assert before - 1 <= e["ts"] <= time.time() + 1
    assert e["time"].endswith("Z")
    parsed = dt.datetime.fromisoformat(e["time"].replace("Z", "+00:00"))
    assert abs(parsed.timestamp() - e["ts"]) < 0.01
    log.record("bob@cli", "volume.delete", "orders", "refused", reason="in use")
    assert [x["action"] for x in log.read()] == ["volume.create", "volume.delete"]
    assert len(path.read_text().splitlines()) == 2


def test_secrets_are_scrubbed_at_any_depth_and_long_values_truncated(tmp_path: Path) -> None:
    """Fields named like key/secret/token/password become ***; > 4 KiB text is cut."""
    log = AuditLog(tmp_path / "audit.jsonl")
    secret = "s3cr3t-AKIA-value"
    log.record(
        "storage-1",
        "cloudsnap.backup",
        "vol1",
        "ok",
        encryption_key=secret,
        target={"endpoint": "http://127.0.0.1:8333", "Secret_Access_Key": secret},
        credentials=[{"session_token": secret, "user": "u"}],
        Password=secret,
        apiToken=secret,
        blob=b"\x00" * 10,
        big="x" * (MAX_VALUE_CHARS + 100),
        path=tmp_path,
    )
    text = (tmp_path / "audit.jsonl").read_text()
    assert secret not in text
    (e,) = AuditLog(tmp_path / "audit.jsonl").read()
    d = e["details"]
    assert d["encryption_key"] == SCRUBBED and d["Password"] == SCRUBBED
    assert d["apiToken"] == SCRUBBED
    assert d["target"] == {"endpoint": "http://127.0.0.1:8333", "Secret_Access_Key": SCRUBBED}
    assert d["credentials"] == [{"session_token": SCRUBBED, "user": "u"}]
    assert d["blob"] == "<10 bytes>"
    assert d["big"].startswith("x" * MAX_VALUE_CHARS)
    assert d["big"].endswith("[truncated 100 chars]")
    assert d["path"] == str(tmp_path)


def test_scrub_keeps_plain_values() -> None:
    assert scrub({"size_gb": 1.5, "ok": True, "n": None, "labels": {"pii": "true"}}) == {
        "size_gb": 1.5,
        "ok": True,
        "n": None,
        "labels": {"pii": "true"},
    }
    assert scrub({"zones": {"b", "a"}, "nan": float("nan")}) == {"zones": ["a", "b"], "nan": "nan"}


def test_read_filters_by_time_action_pattern_and_target(tmp_path: Path) -> None:
    """read(since=..., action=...) filters; action takes shell patterns; no file: empty."""
    log = AuditLog(tmp_path / "audit.jsonl", fsync=False)
    assert log.read() == []
    log.record("a", "volume.create", "v1", "ok")
    time.sleep(0.02)
    mid = time.time()
    time.sleep(0.02)
    log.record("a", "snapshot.create", "v1", "ok")
    log.record("a", "volume.delete", "v2", "failed", error="in use")
    assert [e["action"] for e in log.read(since=mid)] == ["snapshot.create", "volume.delete"]
    since_dt = dt.datetime.fromtimestamp(mid, dt.UTC)
    assert len(log.read(since=since_dt)) == 2
    assert len(log.read(since=since_dt.isoformat())) == 2
    assert [e["target"] for e in log.read(action="volume.*")] == ["v1", "v2"]
    assert [e["action"] for e in log.read(action="volume.delete")] == ["volume.delete"]
    assert [e["action"] for e in log.read(target="v1")] == ["volume.create", "snapshot.create"]
    with pytest.raises(ValueError):
        log.read(since="yesterday")


def test_a_torn_last_line_is_skipped_and_the_next_record_starts_a_fresh_line(
    tmp_path: Path,
) -> None:
    """A crash mid-line leaves a fragment: read() skips it, record() starts on a new line."""
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path)
    log.record("a", "volume.create", "v1", "ok")
    with path.open("ab") as fh:
        fh.write(b'{"time": "2026-01-01T00:00:00Z", "who": "a", "acti')
    assert [e["target"] for e in log.read()] == ["v1"]
    log.record("a", "volume.create", "v2", "ok")
    assert [e["target"] for e in log.read()] == ["v1", "v2"]
    lines = path.read_bytes().split(b"\n")
    assert lines[1].startswith(b'{"time": "2026') and lines[2].startswith(b'{"time":"')


def _writer(path: str, n: int, who: str) -> None:
    log = AuditLog(path, fsync=False)
    for i in range(n):
        # Long enough lines that unlocked, unbuffered writes could interleave.
        log.record(who, "volume.write", f"v{i}", "ok", note=who * 500, i=i)


def test_concurrent_appends_from_several_processes_never_interleave(tmp_path: Path) -> None:
    """Four processes append 200 ~2 KiB entries each: 800 whole lines, each writer's in
    order, and the file as a whole in time order (stamps are taken under the lock)."""
    path = tmp_path / "audit.jsonl"
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(path), 200, f"w{k}")) for k in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    raw = path.read_bytes().splitlines()
    assert len(raw) == 800
    entries = [json.loads(line) for line in raw]  # every line is whole JSON
    for k in range(4):
        mine = [e["details"]["i"] for e in entries if e["who"] == f"w{k}"]
        assert mine == list(range(200))
        assert all(e["details"]["note"] == f"w{k}" * 500 for e in entries if e["who"] == f"w{k}")
    stamps = [e["ts"] for e in entries]
    assert stamps == sorted(stamps)


def test_current_user_names_the_login_and_channel() -> None:
    who = current_user("cli")
    assert who.endswith("@cli") and len(who) > 4
