"""Isolation on a real cluster: a task can neither read the secrets nor use the platform.

The probe (``tests/support/isolation_probe.py``) runs as an app's task with the default
user and tries to read the state directory and to use the coordination node, the storage
control API and the nodes' internal messages without the platform token. As root the
task runs as ``nobody``, so the files are closed to it; without root (the task runs as
the cluster's own user) the file part is skipped with its reason while the token part
still holds. The kit's own clients keep working, and so does a ``kv --durable`` task's
sync through its volume token.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from playground.backends import EmbeddedBackend
from tests.conftest import playground_cmd
from tests.support import auth
from tests.support.marathon_http import Marathon, wait_until

pytestmark = [pytest.mark.integration]

PROBE = Path(__file__).resolve().parents[1] / "support" / "isolation_probe.py"
ROOT = os.geteuid() == 0


def pg(cluster: EmbeddedBackend, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PLAYGROUND_STATE_DIR": str(cluster.state_dir)}
    return subprocess.run(
        [*playground_cmd(), *args], capture_output=True, text=True, env=env, timeout=120
    )


@pytest.fixture(scope="module")
def marathon(cluster: EmbeddedBackend) -> Iterator[Marathon]:
    m = Marathon(str(cluster.endpoints()["marathon"]))
    wait_until(lambda: m.info().get("frameworkId"), 30, desc="Marathon registered with Mesos")
    yield m
    m.close()


def task_output(cluster: EmbeddedBackend, task_id: str, until: str) -> str:
    """The task's sandbox stdout, through the CLI, once it contains ``until``."""
    out: dict[str, str] = {}

    def ready() -> bool:
        cp = pg(cluster, "task", "logs", task_id)
        out["text"] = cp.stdout
        return cp.returncode == 0 and until in cp.stdout

    wait_until(ready, 30, desc=f"{until!r} in the task's stdout")
    return out["text"]


@pytest.fixture(scope="module")
def probe(cluster: EmbeddedBackend, marathon: Marathon) -> dict[str, dict[str, Any]]:
    """Run the probe as a task of an app with the default user; its attempts by name."""

    # The agents' storage pools come online a moment after `up`: retry until one is.
    def create() -> subprocess.CompletedProcess[str] | None:
        cp = pg(cluster, "volume", "create", "victim", "--size", "1")
        if cp.returncode != 0 and "available: none" in cp.stderr:
            return None
        return cp

    created = wait_until(create, 30, desc="an online storage pool for the victim volume")
    assert created.returncode == 0, created.stderr
    ep = cluster.endpoints()
    nodes = {n.name: n for n in cluster.nodes()}
    master = next(n for n in nodes.values() if n.role == "master")
    app = {
        "id": "/probe",
        "cmd": f"python {PROBE}",
        "cpus": 0.1,
        "mem": 64,
        "instances": 1,
        "constraints": [["hostname", "LIKE", nodes["agent-1"].address.split(":")[0]]],
        "env": {
            "PROBE_AGENT": "agent-1",
            "PROBE_AGENT_URL": f"http://{nodes['agent-1'].address}",
            "PROBE_MASTER": f"http://{master.address}",
            "PROBE_COORDINATOR": str(ep["coordinator"]),
            "PROBE_STORAGE": str(ep["storage"]),
            "PROBE_VICTIM": "victim",
        },
    }
    (task,) = marathon.deploy(app)
    text = task_output(cluster, task["id"], "probe done")
    lines = [json.loads(raw) for raw in text.splitlines() if raw.startswith("{")]
    return {line["what"]: line for line in lines}


HTTP_ATTEMPTS = [
    "coordinator election",
    "coordinator registry",
    "coordinator write",
    "coordinator guessed token",
    "storage list",
    "storage create",
    "storage delete",
    "storage sync other volume",
    "storage guessed token",
    "master forged update",
    "agent launch as root",
    "agent shutdown",
]
FILE_ATTEMPTS = [
    "secret store",
    "platform token",
    "cluster.json",
    "events",
    "state dir",
    "agent log",
]


@pytest.mark.parametrize("what", HTTP_ATTEMPTS)
def test_a_task_cannot_use_the_platform_services_without_the_token(
    probe: dict[str, dict[str, Any]], what: str
) -> None:
    """Every call of the probe to a platform service is answered 401 with a message."""
    attempt = probe[what]
    assert attempt["outcome"] == 401, attempt
    assert "requires the platform token" in attempt["detail"]


def test_nothing_the_probe_tried_took_effect(cluster: EmbeddedBackend) -> None:
    """The victim volume survives, no 'evil' volume exists, the agent still runs."""
    listing = pg(cluster, "volume", "list", "--json")
    assert listing.returncode == 0, listing.stderr
    names = {v["name"] for v in json.loads(listing.stdout)}
    assert "victim" in names and "evil" not in names
    status = json.loads(pg(cluster, "status", "--json").stdout)
    agent = next(n for n in status["nodes"] if n["name"] == "agent-1")
    assert agent["state"] == "running" and agent["registered"]


@pytest.mark.skipif(not ROOT, reason="tasks run as another user only when the agents are root")
def test_a_task_runs_unprivileged_and_cannot_read_the_state_directory(
    probe: dict[str, dict[str, Any]],
) -> None:
    """As root, the task runs as nobody: every read of the state directory is refused."""
    assert probe["uid"]["outcome"] not in (0, os.getuid()), probe["uid"]
    for what in FILE_ATTEMPTS:
        assert probe[what]["outcome"] == "denied", probe[what]


def test_the_state_directory_is_private(cluster: EmbeddedBackend) -> None:
    """Others may traverse the state directory but list or read nothing in it."""
    root = Path(cluster.state_dir)
    assert root.stat().st_mode & 0o777 == 0o711
    assert (root / "secrets").stat().st_mode & 0o777 == 0o700
    for f in ("cluster.json", "events.jsonl", "secrets/platform-token"):
        assert (root / f).stat().st_mode & 0o077 == 0, f
    assert (root / "nodes" / "agent-1" / "node.log").stat().st_mode & 0o077 == 0
    token = (root / "secrets" / "platform-token").read_bytes().hex()
    assert token not in (root / "cluster.json").read_text()
    assert token not in (root / "nodes" / "agent-1" / "node.log").read_text()


def test_the_kit_clients_present_the_token(cluster: EmbeddedBackend) -> None:
    """The CLI works, and a direct call works with the token and fails without it."""
    for args in (("volume", "list"), ("volume", "pools"), ("status",)):
        cp = pg(cluster, *args)
        assert cp.returncode == 0, cp.stderr
    url = str(cluster.endpoints()["coordinator"]) + "/v1/election/mesos"
    assert httpx.get(url, headers=auth.headers(cluster), timeout=5).json()["leader"]
    refused = httpx.get(url, timeout=5)
    assert refused.status_code == 401
    assert refused.headers["content-type"].startswith("application/json")
    assert "requires the platform token" in refused.json()["message"]
    assert httpx.get(str(cluster.endpoints()["coordinator"]) + "/health").status_code == 200


def test_a_durable_kv_still_syncs_its_volume(cluster: EmbeddedBackend, marathon: Marathon) -> None:
    """A ``kv --durable`` task syncs its volume with its volume token: writes succeed."""
    options = {"dvdi/driver": "pxd", "dvdi/repl": "2"}
    external = {"name": "isovol", "provider": "dvdi", "size": 1, "options": options}
    app = {
        "id": "/isokv",
        "cmd": "playground workload kv --data pgdata --durable",
        "cpus": 0.1,
        "mem": 64,
        "instances": 1,
        "portDefinitions": [{"port": 0}],
        "container": {
            "type": "MESOS",
            "volumes": [{"containerPath": "pgdata", "mode": "RW", "external": external}],
        },
    }
    (task,) = marathon.deploy(app)
    url = f"http://{task['host']}:{task['ports'][0]}"
    wait_until(lambda: httpx.get(url + "/health", timeout=2).status_code == 200, 15, desc="kv")
    for i in range(5):
        r = httpx.put(f"{url}/v1/kv/k{i}", content=b"v%d" % i, timeout=30)
        assert r.status_code in (200, 201), r.text
    assert httpx.get(f"{url}/v1/kv/k4", timeout=5).content == b"v4"
    stats = httpx.get(f"{url}/stats", timeout=5).json()
    assert stats["durable"] and stats["volume"] == "isovol", "writes went through sync"
    verify = pg(cluster, "volume", "verify", "isovol")
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_an_app_whose_user_does_not_exist_fails_clearly(
    cluster: EmbeddedBackend, marathon: Marathon
) -> None:
    """With root agents, a missing user fails the task with Mesos's message."""
    if not ROOT:
        pytest.skip("an agent that is not root ignores the app's user")
    app = {"id": "/ghost", "cmd": "sleep 100", "cpus": 0.1, "mem": 32, "instances": 1}
    marathon.post("/v2/apps", {**app, "user": "no-such-user-x"}).raise_for_status()
    failure: dict[str, Any] = {}

    def failed() -> bool:
        got = marathon.get("/v2/apps/ghost").json()["app"].get("lastTaskFailure")
        failure.update(got or {})
        return bool(got)

    wait_until(failed, 30, desc="a task failure of /ghost")
    assert failure["state"] == "TASK_FAILED"
    assert "Failed to get user information for 'no-such-user-x'" in failure["message"]
    marathon.delete("/v2/apps/ghost")
