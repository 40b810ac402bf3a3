"""`playground app|deployment|queue` as a user runs them, against a real embedded cluster.

The CLI is run as a subprocess against the module's `default` cluster (with its node
`marathon-1`); the apps are real tasks on the agents.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from playground.backends import EmbeddedBackend
from tests.conftest import playground_cmd

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.slow]

T = TypeVar("T")

#: A web server on the task's first port, bound to the agent's address.
WEB_CMD = f"exec {sys.executable} -m http.server $PORT0 --bind ${{HOST:-127.0.0.1}}"
NOWHERE = [["hostname", "LIKE", "nonexistent"]]


def pg(
    cluster: EmbeddedBackend, *args: str, check: int | None = 0, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `playground ARGS --state-dir <the cluster's>`; assert the exit code unless None."""
    cp = subprocess.run(
        [*playground_cmd(), *args, "--state-dir", str(cluster.state_dir)],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ),
    )
    if check is not None:
        assert cp.returncode == check, (
            f"playground {' '.join(args)}: exit {cp.returncode}\n"
            f"stdout: {cp.stdout}\nstderr: {cp.stderr}\n{marathon_log(cluster)}"
        )
    return cp


def marathon_log(cluster: EmbeddedBackend, lines: int = 30) -> str:
    """The end of marathon-1's log, for failure messages."""
    log = cluster.state_dir / "nodes" / "marathon-1" / "node.log"
    if not log.exists():
        return "(no marathon-1 log)"
    return "marathon-1 log:\n" + "\n".join(log.read_text().splitlines()[-lines:])


def pg_json(cluster: EmbeddedBackend, *args: str) -> Any:
    return json.loads(pg(cluster, *args, "--json").stdout)


def eventually(fn: Callable[[], T | None], timeout: float = 30.0, what: str = "") -> T:
    """Call fn until it returns something truthy; fail after timeout seconds."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or fn}: last {last!r}")


def write(path: Path, data: dict[str, Any] | str) -> str:
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return str(path)


@pytest.fixture(scope="module")
def marathon(cluster: EmbeddedBackend) -> str:
    """The cluster's Marathon URL, once it answers."""
    url = cluster.endpoints().get("marathon")
    assert url, f"the default topology has a Marathon endpoint: {cluster.endpoints()}"

    def pong() -> bool:
        try:
            return httpx.get(f"{url}/ping", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    eventually(pong, 30, "Marathon to answer /ping")
    return str(url)


def running_tasks(app: dict[str, Any]) -> list[dict[str, Any]]:
    return [t for t in app.get("tasks") or [] if t.get("state") == "TASK_RUNNING"]


def test_app_lifecycle_add_list_show_scale_restart_update_remove(
    cluster: EmbeddedBackend, marathon: str, tmp_path: Path
) -> None:
    """An http.server app goes through add, list, show, scale, restart, update and remove."""
    defn = {"id": "e2e/web", "cmd": WEB_CMD, "cpus": 0.1, "mem": 32, "instances": 1}
    added = pg_json(
        cluster, "app", "add", write(tmp_path / "web.json", defn), "--wait", "--timeout", "60"
    )
    assert added["id"] == "/e2e/web"
    assert added["deploymentId"]

    # list: the app, its instance running, as JSON and as a table.
    apps = {a["id"]: a for a in pg_json(cluster, "app", "list")}
    assert apps["/e2e/web"]["instances"] == 1
    table = pg(cluster, "app", "list").stdout.splitlines()
    assert table[0].split()[:3] == ["ID", "STATUS", "RUNNING"]
    row = next(line.split() for line in table if line.startswith("/e2e/web "))
    assert row[1:3] == ["running", "1/1"]

    # show: the running task answers HTTP on its host and port.
    shown = pg_json(cluster, "app", "show", "/e2e/web")
    (task,) = running_tasks(shown)
    r = eventually(
        lambda: _get(f"http://{task['host']}:{task['ports'][0]}/"), 20, "the web task to answer"
    )
    assert r.status_code == 200
    human = pg(cluster, "app", "show", "e2e/web").stdout
    assert human.startswith("app /e2e/web")
    assert task["id"] in human and "TASK_RUNNING" in human

    # scale to 2 and wait: two running tasks.
    scaled = pg_json(cluster, "app", "scale", "/e2e/web", "2", "--wait")
    assert scaled["deploymentId"] and scaled["instances"] == 2
    shown = pg_json(cluster, "app", "show", "/e2e/web")
    assert len(running_tasks(shown)) == 2
    before = {t["id"] for t in running_tasks(shown)}

    # restart: every task is replaced.
    out = pg(cluster, "app", "restart", "/e2e/web", "--wait")
    assert "deployment" in out.stdout and "finished" in out.stderr
    after = {t["id"] for t in running_tasks(pg_json(cluster, "app", "show", "/e2e/web"))}
    assert len(after) == 2 and after.isdisjoint(before)

    # update from YAML: only the given field changes, the tasks are replaced again.
    pg(cluster, "app", "update", "/e2e/web", write(tmp_path / "upd.yaml", "mem: 48\n"), "--wait")
    shown = pg_json(cluster, "app", "show", "/e2e/web")
    assert shown["mem"] == 48 and shown["cmd"] == WEB_CMD and shown["instances"] == 2
    assert len(running_tasks(shown)) == 2
    assert pg(cluster, "deployment", "list").stdout.strip() == "no deployments running"

    # remove: gone from the list; show says so with a hint.
    pg(cluster, "app", "remove", "/e2e/web", "--wait")
    assert "/e2e/web" not in {a["id"] for a in pg_json(cluster, "app", "list")}
    gone = pg(cluster, "app", "show", "/e2e/web", check=1)
    assert "does not exist" in gone.stderr and "playground app list" in gone.stderr


def _get(url: str) -> httpx.Response | None:
    try:
        return httpx.get(url, timeout=2)
    except httpx.HTTPError:
        return None


def test_queue_explains_an_unsatisfiable_constraint(
    cluster: EmbeddedBackend, marathon: str, tmp_path: Path
) -> None:
    """An app no agent can take: the deployment stays, the queue says UnfulfilledConstraint,
    the app is locked (scale needs --force), and a rollback undoes the deployment."""
    defn = {"id": "/e2e/nowhere", "cmd": "sleep 1000", "cpus": 0.1, "mem": 16}
    defn["constraints"] = NOWHERE
    out = pg(cluster, "app", "add", write(tmp_path / "nowhere.json", defn)).stdout
    assert out.startswith("app /e2e/nowhere added: deployment ")
    dep_id = out.split()[-1]

    deps = pg_json(cluster, "deployment", "list")
    assert any(d["id"] == dep_id and "/e2e/nowhere" in d["affectedApps"] for d in deps)
    assert dep_id in pg(cluster, "deployment", "list").stdout

    def explained() -> str | None:
        text = pg(cluster, "queue").stdout
        return text if "UnfulfilledConstraint:" in text else None

    text = eventually(explained, 30, "the queue to explain the constraint")
    assert "/e2e/nowhere: 1 instance(s) waiting" in text
    assert "hostname LIKE nonexistent" in text
    line = next(x for x in text.splitlines() if "UnfulfilledConstraint:" in x)
    declined, _, processed = line.split("UnfulfilledConstraint:")[1].split("offers")[0].split()
    assert int(declined) == int(processed) >= 1, line
    entry = next(e for e in pg_json(cluster, "queue") if e["app"]["id"] == "/e2e/nowhere")
    reasons = {
        s["reason"]: s["declined"]
        for s in entry["processedOffersSummary"]["rejectSummaryLastOffers"]
    }
    assert reasons["UnfulfilledConstraint"] >= 1

    # A deployment holds the app: changes need --force; the hint says so.
    locked = pg(cluster, "app", "scale", "/e2e/nowhere", "2", check=1)
    assert "locked" in locked.stderr.lower() and "--force" in locked.stderr
    # --wait on a deployment that cannot finish times out with the queue as the hint.
    slow = pg(
        cluster, "app", "restart", "/e2e/nowhere", "--force", "--wait", "--timeout", "2", check=1
    )
    assert "did not finish" in slow.stderr and "playground queue" in slow.stderr

    # Rolling back the app's deployment(s) removes the never-started app again.
    for d in pg_json(cluster, "deployment", "list"):
        if "/e2e/nowhere" in d["affectedApps"]:
            pg(cluster, "deployment", "rollback", d["id"], "--force")
    pg(cluster, "app", "remove", "/e2e/nowhere", "--force", "--wait")
    eventually(
        lambda: "/e2e/nowhere" not in {a["id"] for a in pg_json(cluster, "app", "list")},
        30,
        "the app to be gone",
    )
    assert "no app is waiting" in pg(cluster, "queue").stdout


def test_rollback_reverts_a_deployment(
    cluster: EmbeddedBackend, marathon: str, tmp_path: Path
) -> None:
    """deployment rollback (no --force) starts a deployment that undoes the app's creation."""
    defn = {"id": "/e2e/undo", "cmd": "sleep 1000", "cpus": 0.1, "mem": 16}
    defn["constraints"] = NOWHERE
    dep_id = pg_json(cluster, "app", "add", write(tmp_path / "undo.json", defn))["deploymentId"]
    rolled = pg_json(cluster, "deployment", "rollback", dep_id, "--wait")
    assert rolled["cancelled"] == dep_id and rolled["deploymentId"] != dep_id
    missing = pg(cluster, "app", "show", "/e2e/undo", check=1)
    assert "does not exist" in missing.stderr
    unknown = pg(cluster, "deployment", "rollback", dep_id, check=1)
    assert "playground deployment list" in unknown.stderr


def test_typos_and_invalid_definitions_say_what_is_wrong(
    cluster: EmbeddedBackend, marathon: str, tmp_path: Path
) -> None:
    """A misspelt command exits 2; an invalid field exits 1 with `path: message`; a misspelt
    field is named with a guess; an unknown app exits 1 with a hint."""
    typo = pg(cluster, "app", "lsit", check=2)
    assert "No such command 'lsit'" in typo.stderr

    bad = {"id": "/e2e/bad", "cmd": "sleep 1", "cpus": "0.1x", "mem": 16}
    invalid = pg(cluster, "app", "add", write(tmp_path / "bad.json", bad), check=1)
    assert invalid.stdout == ""
    assert invalid.stderr.startswith("error: ")
    assert "  /cpus: " in invalid.stderr
    assert "hint: " in invalid.stderr

    misspelt = {"id": "/e2e/misspelt", "cmd": "sleep 1000", "cpus": 0.1, "mem": 16, "instanses": 0}
    cp = pg(cluster, "app", "add", "-", stdin=json.dumps(misspelt))
    assert "unknown field 'instanses'" in cp.stderr and "did you mean 'instances'" in cp.stderr
    pg(cluster, "app", "remove", "/e2e/misspelt", "--force", "--wait")

    missing = pg(cluster, "app", "scale", "/e2e/nope", "3", check=1)
    assert "/e2e/nope" in missing.stderr and "playground app list" in missing.stderr


def test_no_cluster_or_marathon_down_says_playground_up(
    cluster: EmbeddedBackend, marathon: str, tmp_path: Path
) -> None:
    """Without a cluster, or with marathon-1 stopped: exit 1 and a hint to run `playground up`
    (which starts Marathon again)."""
    cp = subprocess.run(
        [*playground_cmd(), "app", "list", "--state-dir", str(tmp_path / "none")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert cp.returncode == 1 and "playground up" in cp.stderr

    cluster.stop("marathon-1")
    try:
        for args in (("app", "list"), ("deployment", "list"), ("queue",)):
            down = pg(cluster, *args, check=1)
            assert down.stdout == ""
            assert "Marathon" in down.stderr and "playground up" in down.stderr
    finally:
        pg(cluster, "up")
    assert pg_json(cluster, "app", "list") is not None
