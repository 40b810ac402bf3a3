"""Disaster recovery as a user runs it: a cloud backup outlives `playground destroy`.

The cloud (`playground cloud up`, a real S3 server) lives in its own directory; a kv app
keeps 200 customer records on an external volume; the volume is backed up, the key
exported, the cluster destroyed. A new cluster in a new state directory finds the backup,
refuses to restore it without the key (naming it), restores it once the key is imported,
and the kv app started on the restored volume passes `data verify`.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import playground_cmd

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.slow]

VOLUME = "orders-vol"
APP_ID = "/e2e/dr-kv"
KV_APP: dict[str, Any] = {
    "id": APP_ID,
    "cmd": "playground workload kv --data data --durable",
    "cpus": 0.1,
    "mem": 64,
    "instances": 1,
    "portDefinitions": [{"port": 0, "name": "http"}],
    "container": {
        "type": "MESOS",
        "volumes": [
            {
                "containerPath": "data",
                "mode": "RW",
                "external": {
                    "name": VOLUME,
                    "provider": "dvdi",
                    "size": 1,
                    "options": {"dvdi/driver": "playground", "dvdi/repl": "2"},
                },
            }
        ],
    },
    "upgradeStrategy": {"minimumHealthCapacity": 0, "maximumOverCapacity": 0},
}


def run(
    *args: str, state: Path | None = None, check: int | None = 0
) -> subprocess.CompletedProcess[str]:
    """`playground [--state-dir STATE] ARGS`; assert the exit code unless ``check`` is None."""
    env = dict(os.environ)
    pre: list[str] = []
    if state is not None:
        env["PLAYGROUND_STATE_DIR"] = str(state)
        pre = ["--state-dir", str(state)]
    cp = subprocess.run(
        [*playground_cmd(), *pre, *args], capture_output=True, text=True, timeout=180, env=env
    )
    if check is not None:
        assert cp.returncode == check, (
            f"playground {' '.join(args)}: exit {cp.returncode}\n"
            f"stdout: {cp.stdout}\nstderr: {cp.stderr}"
        )
    return cp


def run_json(*args: str, state: Path) -> Any:
    return json.loads(run(*args, "--json", state=state).stdout)


def wait_pools(state: Path, timeout: float = 30.0) -> None:
    """Until the storage node has probed every agent's pool online (it starts offline)."""
    deadline = time.monotonic() + timeout
    while not all(p["online"] for p in run_json("volume", "pools", state=state)):
        assert time.monotonic() < deadline, "the storage pools did not come online"
        time.sleep(0.3)


def test_cloud_backup_survives_destroy_and_restores_into_a_new_cluster(tmp_path: Path) -> None:
    cloud = ["--cloud-dir", str(tmp_path / "cloud")]
    old, new = tmp_path / "old" / "state", tmp_path / "new" / "state"
    app_file = tmp_path / "kv.json"
    app_file.write_text(json.dumps(KV_APP))
    key_file = tmp_path / "cloudsnap-key.json"
    try:
        run("cloud", "up", *cloud)
        # ---- the old cluster: data, backup, key --------------------------------------
        run("up", "--time-scale", "50", state=old)
        wait_pools(old)
        run("app", "add", str(app_file), "--wait", "--timeout", "90", state=old)
        loaded = run_json(
            "data", "load", "--app", APP_ID, "--records", "200", "--seed", "7", state=old
        )
        checksum = loaded["checksum"]
        backup = run_json("cloudsnap", "backup", VOLUME, *cloud, state=old)
        bid = backup["id"]
        assert backup["status"] == "done" and backup["volume"] == VOLUME, backup
        assert backup["progress"] == 1.0 and backup["size"] > 0
        listed = {b["id"]: b for b in run_json("cloudsnap", "list", *cloud, state=old)}
        assert listed[bid]["status"] == "done"
        status = run_json("cloudsnap", "status", bid, *cloud, state=old)
        assert status["status"] == "done" and status["volume"] == VOLUME
        run("cloudsnap", "key", "export", "--out", str(key_file), state=old)
        key_doc = json.loads(key_file.read_text())
        # the key never reaches the audit log, which records the backup
        audit = (old / "storage" / "audit.jsonl").read_text()
        assert key_doc["key"] not in audit
        assert any(
            json.loads(x)["action"] == "cloudsnap.backup" and json.loads(x)["outcome"] == "ok"
            for x in audit.splitlines()
        )
        # ... and, by the storage node, how it ended (written just after the cloud's record)
        deadline = time.monotonic() + 10
        while True:
            ends = [
                e
                for e in map(json.loads, audit.splitlines())
                if e["action"] == "cloudsnap.backup" and e["outcome"] == "done"
            ]
            if ends or time.monotonic() > deadline:
                break
            time.sleep(0.2)
            audit = (old / "storage" / "audit.jsonl").read_text()
        assert [(e["who"], e["target"], e["details"]["id"]) for e in ends] == [
            ("storage-1", VOLUME, bid)
        ], ends

        run("destroy", "--yes", state=old)
        assert not old.exists()

        # ---- a new cluster in a new state directory -----------------------------------
        run("up", "--time-scale", "50", state=new)
        wait_pools(new)
        found = {b["id"]: b for b in run_json("cloudsnap", "list", *cloud, state=new)}
        assert found[bid]["status"] == "done" and found[bid]["volume"] == VOLUME

        # Without the old key: refused, the key named, nothing created.
        cp = run("cloudsnap", "restore", bid, "--to", VOLUME, *cloud, state=new, check=1)
        assert cp.stderr.startswith("error: "), cp.stderr
        assert f"encrypted with key {key_doc['fingerprint']}" in cp.stderr, cp.stderr
        assert "hint: import the key" in cp.stderr and "cloudsnap key import" in cp.stderr
        assert run_json("volume", "list", state=new) == []

        imported = run_json("cloudsnap", "key", "import", str(key_file), state=new)
        assert imported["fingerprint"] == key_doc["fingerprint"] and imported["changed"]
        restored = run_json("cloudsnap", "restore", bid, "--to", VOLUME, *cloud, state=new)
        assert restored["backup"] == bid and restored["volume"]["name"] == VOLUME
        assert restored["volume"]["status"] == "up" and restored["volume"]["attachment"] is None
        assert run_json("volume", "verify", VOLUME, state=new)["ok"] is True

        # The same app on the restored volume: every record back, unchanged.
        run("app", "add", str(app_file), "--wait", "--timeout", "90", state=new)
        vol = run_json("volume", "inspect", VOLUME, state=new)
        assert vol["id"] == restored["volume"]["id"] and vol["attachment"] is not None
        verified = run("data", "verify", "--app", APP_ID, state=new)
        assert verified.stdout.startswith("ok: 200 records 'customers' present and unchanged")
        assert f"checksum {checksum}" in verified.stdout
        assert key_doc["key"] not in (new / "storage" / "audit.jsonl").read_text()
    finally:
        run("destroy", "--yes", state=old, check=None)
        run("destroy", "--yes", state=new, check=None)
        run("cloud", "down", *cloud, check=None)
