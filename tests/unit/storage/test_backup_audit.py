"""A cloud backup's end is audited by the storage node (``StorageNode.run_backup``): the
request is audited ``ok`` when accepted, and ``done`` or ``failed`` (with the error, no
secret) when the upload ends. Run on a minimal node: a fake target, no cluster."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from playground.storage.audit import AuditLog
from playground.storage.server import StorageNode

SNAP = {"id": "snap-1", "volume_id": "vol-1"}
VOL = {"id": "vol-1", "name": "orders", "labels": {}, "size_gb": 1, "repl": 1, "secure": False}


class FakeTarget:
    def __init__(self, error: Exception | None) -> None:
        self.error = error

    def backup(self, *args: Any) -> None:
        if self.error is not None:
            raise self.error


def node(tmp_path: Path) -> StorageNode:
    n = object.__new__(StorageNode)
    n.ctx = SimpleNamespace(name="storage-1", cluster_id="c-1")  # type: ignore[assignment]
    n.work = tmp_path
    n.progress = {}
    n.backups_done = n.backups_failed = 0
    n.audit = AuditLog(tmp_path / "audit.jsonl", fsync=False)
    n.reg = SimpleNamespace(delete_snapshot=lambda sid: None)  # type: ignore[assignment]
    fakes = {
        "store_of": lambda snap: None,
        "manifest_of": lambda snap: {},
        "event": lambda kind, **fields: None,
    }
    for name, fake in fakes.items():
        setattr(n, name, fake)
    n.write_journal({"bk-1": {"volume": "orders", "status": "running"}})
    return n


def test_a_backup_that_ends_well_is_audited_done(tmp_path: Path) -> None:
    n = node(tmp_path)
    asyncio.run(n.run_backup(FakeTarget(None), VOL, SNAP, "bk-1"))
    (entry,) = n.audit.read()
    assert entry["who"] == "storage-1" and entry["action"] == "cloudsnap.backup"
    assert entry["target"] == "orders" and entry["outcome"] == "done"
    assert entry["details"] == {"id": "bk-1", "snapshot": "snap-1"}
    assert n.journal()["bk-1"]["status"] == "done"


def test_a_backup_that_fails_is_audited_failed_with_the_error(tmp_path: Path) -> None:
    n = node(tmp_path)
    asyncio.run(n.run_backup(FakeTarget(OSError("bucket gone")), VOL, SNAP, "bk-1"))
    (entry,) = n.audit.read()
    assert entry["outcome"] == "failed" and entry["target"] == "orders"
    assert entry["details"] == {"id": "bk-1", "snapshot": "snap-1", "error": "bucket gone"}
    assert n.backups_failed == 1 and n.journal()["bk-1"]["status"] == "failed"
