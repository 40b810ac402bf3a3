"""`playground data load|verify` as a user runs them, against a kv app in a real cluster.

The kv app runs `playground workload kv --data data --durable` as a Marathon task; the CLI
finds it through Marathon and writes Faker records and their manifest into it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from playground.backends import EmbeddedBackend
from tests.conftest import playground_cmd

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.slow]

KV_APP = {
    "id": "/e2e/customers-kv",
    "cmd": "playground workload kv --data data --durable",
    "cpus": 0.1,
    "mem": 64,
    "instances": 1,
    "portDefinitions": [{"port": 0, "name": "http"}],
}


def pg(
    cluster: EmbeddedBackend, *args: str, check: int | None = 0
) -> subprocess.CompletedProcess[str]:
    """Run `playground ARGS --state-dir <the cluster's>`; assert the exit code unless None."""
    cp = subprocess.run(
        [*playground_cmd(), *args, "--state-dir", str(cluster.state_dir)],
        capture_output=True,
        text=True,
        timeout=180,
        env=dict(os.environ),
    )
    if check is not None:
        assert cp.returncode == check, (
            f"playground {' '.join(args)}: exit {cp.returncode}\n"
            f"stdout: {cp.stdout}\nstderr: {cp.stderr}"
        )
    return cp


def add_app(cluster: EmbeddedBackend, tmp_path: Path, defn: dict[str, Any], wait: bool) -> None:
    path = tmp_path / f"{defn['id'].strip('/').replace('/', '-')}.json"
    path.write_text(json.dumps(defn))
    pg(cluster, "app", "add", str(path), *(["--wait", "--timeout", "90"] if wait else []))


def kv_url(cluster: EmbeddedBackend, app_id: str) -> str:
    app = json.loads(pg(cluster, "app", "show", app_id, "--json").stdout)
    (task,) = [t for t in app["tasks"] if t["state"] == "TASK_RUNNING"]
    return f"http://{task['host']}:{task['ports'][0]}"


def test_load_verify_then_damage_is_named(cluster: EmbeddedBackend, tmp_path: Path) -> None:
    """Load 200 records (seed 7), verify (exit 0, count and checksum), then delete one and
    change another through the kv API: verify exits 1 naming both."""
    add_app(cluster, tmp_path, KV_APP, wait=True)
    app = KV_APP["id"]

    loaded = pg(cluster, "data", "load", "--app", app, "--records", "200", "--seed", "7")
    m = re.search(
        r"loaded 200 records 'customers' \(seed 7\) into task (\S+) at (\S+) ", loaded.stdout
    )
    assert m, loaded.stdout
    task_id, url = m.groups()
    assert url == kv_url(cluster, app)
    checksum = re.search(r"checksum ([0-9a-f]{64})", loaded.stdout)
    assert checksum, loaded.stdout
    assert "warning" not in loaded.stderr  # the kv is durable

    ok = pg(cluster, "data", "verify", "--app", app)
    assert ok.stdout.startswith("ok: 200 records 'customers' present and unchanged")
    assert f"checksum {checksum.group(1)}" in ok.stdout and task_id in ok.stdout

    stats = httpx.get(f"{url}/stats", timeout=5).json()
    assert stats["keys"] == 201 and stats["durable"] is True and stats["task_id"] == task_id
    first = json.loads(httpx.get(f"{url}/v1/kv/customers-000001", timeout=5).content)
    assert first["id"] == "customers-000001" and "@" in first["email"]

    # The same seed writes the same data: loading it again gives the same checksum.
    again = pg(cluster, "data", "load", "--app", app, "--records", "200", "--seed", "7", "--json")
    assert json.loads(again.stdout)["checksum"] == checksum.group(1)

    # Damage: one record deleted, one changed, through the kv's own API.
    assert httpx.delete(f"{url}/v1/kv/customers-000042", timeout=5).status_code == 200
    changed = {**first, "email": "someone.else@example.org"}
    r = httpx.put(f"{url}/v1/kv/customers-000107", content=json.dumps(changed), timeout=5)
    assert r.status_code == 200

    bad = pg(cluster, "data", "verify", "--app", app, check=1)
    assert bad.stdout.startswith("FAILED: 1 missing and 1 changed of 200 records"), bad.stdout
    assert "missing: customers-000042" in bad.stdout
    assert "changed: customers-000107" in bad.stdout
    report = json.loads(pg(cluster, "data", "verify", "--app", app, "--json", check=1).stdout)
    assert report["ok"] is False and report["count"] == 200 and report["present"] == 199
    assert report["missing"] == ["customers-000042"]
    assert report["changed"] == ["customers-000107"]
    assert report["expected_checksum"] == checksum.group(1) != report["checksum"]

    # Another data set in the same kv is verified on its own.
    pg(cluster, "data", "load", "--app", app, "--records", "20", "--prefix", "orders")
    assert (
        "ok: 20 records 'orders'"
        in pg(cluster, "data", "verify", "--app", app, "--prefix", "orders").stdout
    )


def test_errors_without_a_kv_are_clear(cluster: EmbeddedBackend, tmp_path: Path) -> None:
    """No such app, an app with no running task, an app that is not kv, no manifest:
    exit 1 with an error and a hint."""
    gone = pg(cluster, "data", "verify", "--app", "/e2e/nothere", check=1)
    assert "error:" in gone.stderr and "/e2e/nothere" in gone.stderr
    assert "playground app list" in gone.stderr

    waiting = {
        "id": "/e2e/nowhere-kv",
        "cmd": KV_APP["cmd"],
        "cpus": 0.1,
        "mem": 32,
        "constraints": [["hostname", "LIKE", "nonexistent"]],
    }
    add_app(cluster, tmp_path, waiting, wait=False)
    none = pg(cluster, "data", "load", "--app", "/e2e/nowhere-kv", "--records", "5", check=1)
    assert "error: app /e2e/nowhere-kv has no running task" in none.stderr
    assert "playground queue" in none.stderr

    web = {
        "id": "/e2e/not-kv",
        "cmd": f"exec {sys.executable} -m http.server $PORT0 --bind ${{HOST:-127.0.0.1}}",
        "cpus": 0.1,
        "mem": 32,
        "portDefinitions": [{"port": 0}],
    }
    add_app(cluster, tmp_path, web, wait=True)
    notkv = pg(cluster, "data", "load", "--app", "/e2e/not-kv", "--records", "5", check=1)
    assert "is not a kv workload" in notkv.stderr and "playground workload kv" in notkv.stderr

    empty = {**KV_APP, "id": "/e2e/empty-kv"}
    add_app(cluster, tmp_path, empty, wait=True)
    nomanifest = pg(cluster, "data", "verify", "--app", "/e2e/empty-kv", check=1)
    assert "no manifest _manifest.customers" in nomanifest.stderr
    assert "playground data load" in nomanifest.stderr

    bad_prefix = pg(
        cluster,
        "data",
        "load",
        "--app",
        "/e2e/empty-kv",
        "--records",
        "1",
        "--prefix",
        "../x",
        check=1,
    )
    assert "invalid prefix" in bad_prefix.stderr
    assert httpx.get(f"{kv_url(cluster, '/e2e/empty-kv')}/stats", timeout=5).json()["keys"] == 0
