"""`playground chaos list|run|monkey` as a user runs them, and chaostoolkit's own `chaos run`.

Every command runs with a scratch working directory and HOME: nothing may land there
(journals and logs belong in the state directory, and ~/.chaostoolkit is never read).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from playground.chaos import catalogue
from tests.conftest import playground_cmd

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The working directory and HOME of every command here."""
    return tmp_path_factory.mktemp("chaos-cwd")


def pg(
    scratch: Path, state: Path, *args: str, check: int | None = 0, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, HOME=str(scratch), PLAYGROUND_STATE_DIR=str(state))
    cp = subprocess.run(
        [*playground_cmd(), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=scratch,
    )
    if check is not None:
        assert cp.returncode == check, f"exit {cp.returncode}\n{cp.stdout}\n{cp.stderr}"
    return cp


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory, scratch: Path) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("chaos") / "state"
    pg(scratch, root, "up", "--time-scale", "50")
    try:
        yield root
    finally:
        pg(scratch, root, "destroy", "--yes", check=None)
        assert sorted(p.name for p in scratch.iterdir()) == [], "a command wrote into CWD/HOME"


def test_list_json_names_the_catalogue_and_what_it_needs(scratch: Path, state: Path) -> None:
    items = json.loads(pg(scratch, state, "chaos", "list", "--json").stdout)
    assert [i["name"] for i in items] == catalogue.names()
    by = {i["name"]: i for i in items}
    assert by["LeaderFailover"]["topology"] == "ha" and by["QuorumLoss"]["needs"]["masters"] == 3
    assert by["CrashOneNode"]["topology"] == "default"
    assert all(i["title"] and i["description"] for i in items)
    text = pg(scratch, state, "chaos", "list").stdout
    assert "ZoneOutage" in text and "ha" in text


def test_run_crash_one_node_passes_and_keeps_its_journal(scratch: Path, state: Path) -> None:
    cp = pg(scratch, state, "chaos", "run", "CrashOneNode")
    assert "result: passed" in cp.stdout
    assert "steady state before the method: met" in cp.stdout
    assert "crash-a-node-running-the-probe-app: ok" in cp.stdout
    assert "remove-the-probe-app: ok" in cp.stdout
    (journal,) = (state / "chaos" / "journals").glob("*-CrashOneNode.json")
    assert f"journal: {journal}" in cp.stdout
    data = json.loads(journal.read_text())
    assert data["status"] == "completed" and data["deviated"] is False
    assert (state / "chaos" / "chaostoolkit.log").stat().st_size > 0
    assert "method" in cp.stderr  # progress as it goes
    assert json.loads(pg(scratch, state, "faults", "--json").stdout) == []


def test_bad_experiments_exit_1_saying_why(scratch: Path, state: Path, tmp_path: Path) -> None:
    bad = tmp_path / "broken.json"
    bad.write_text('{"title": "broken", "method": [\n')
    cp = pg(scratch, state, "chaos", "run", str(bad), check=1)
    assert "error:" in cp.stderr and "not valid JSON" in cp.stderr and "line 2" in cp.stderr
    bad.write_text(json.dumps({"title": "t", "description": "d", "method": [{"type": "action"}]}))
    cp = pg(scratch, state, "chaos", "run", str(bad), check=1)
    assert "error: invalid experiment" in cp.stderr and "hint:" in cp.stderr
    cp = pg(scratch, state, "chaos", "run", "NoSuchExperiment", check=1)
    assert "no experiment named 'NoSuchExperiment'" in cp.stderr and "CrashOneNode" in cp.stderr
    assert "No such file" not in cp.stderr
    pg(scratch, state, "chaos", "run", check=2)


def test_dry_run_acts_on_nothing(scratch: Path, state: Path) -> None:
    history = pg(scratch, state, "faults", "--all", "--json").stdout
    cp = pg(scratch, state, "chaos", "run", "AppTasksDown", "--dry", "--json")
    out: dict[str, Any] = json.loads(cp.stdout)
    assert out["ok"] and out["status"] == "completed" and Path(out["journal"]).is_file()
    assert pg(scratch, state, "faults", "--all", "--json").stdout == history
    assert json.loads(pg(scratch, state, "app", "list", "--json").stdout) in ([], {"apps": []})


def test_chaostoolkits_own_chaos_run_uses_the_extension(scratch: Path, state: Path) -> None:
    """`chaos run experiment.json` from the venv runs a shipped experiment unchanged."""
    chaos = Path(sys.executable).parent / "chaos"
    out = state / "chaos"
    env = dict(os.environ, HOME=str(scratch), PLAYGROUND_STATE_DIR=str(state))
    cp = subprocess.run(
        [str(chaos), "--no-version-check", "--log-file", str(out / "ctk.log"),
         "--settings", str(out / "settings.yaml"), "run", "--rollback-strategy", "always",
         "--journal-path", str(out / "ctk-journal.json"),
         str(catalogue.find("AppTasksDown").path)],
        capture_output=True, text=True, timeout=120, env=env, cwd=scratch,
    )  # fmt: skip
    assert cp.returncode == 0, cp.stdout + cp.stderr
    journal = json.loads((out / "ctk-journal.json").read_text())
    assert journal["status"] == "completed" and not journal["deviated"]
    assert journal["steady_states"]["after"]["steady_state_met"]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_an_aborted_run_still_rolls_back(scratch: Path, state: Path, sig: signal.Signals) -> None:
    """SIGTERM or Ctrl-C in the middle of the method: the rollbacks heal and clean up."""
    env = dict(os.environ, HOME=str(scratch), PLAYGROUND_STATE_DIR=str(state))
    p = subprocess.Popen(
        [*playground_cmd(), "chaos", "run", "CrashOneNode"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=scratch,
    )  # fmt: skip
    assert p.stderr is not None
    seen = []
    for line in p.stderr:
        seen.append(line)
        if "probe-app-recovers" in line:  # the node is crashed; recovery is awaited
            break
    p.send_signal(sig)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 1, "".join(seen) + out + err
    assert "status interrupted" in out and "heal-what-the-experiment-broke: ok" in out
    assert "remove-the-probe-app: ok" in out
    assert json.loads(pg(scratch, state, "faults", "--json").stdout) == []
    status = json.loads(pg(scratch, state, "status", "--json").stdout)
    assert all(n["state"] == "running" for n in status["nodes"])
    journal = sorted((state / "chaos" / "journals").glob("*-CrashOneNode.json"))[-1]
    assert json.loads(journal.read_text())["status"] == "interrupted"


def test_monkey_breaks_and_reverts_everything(scratch: Path, state: Path) -> None:
    cp = pg(scratch, state, "chaos", "monkey", "--for", "5", "--seed", "1")
    assert "monkey: breaking" in cp.stderr
    assert "healed" in cp.stderr or "agent-restart" in cp.stderr
    assert "all reverted" in cp.stdout
    assert json.loads(pg(scratch, state, "faults", "--json").stdout) == []
    kinds = [json.loads(line)["kind"] for line in (state / "events.jsonl").read_text().splitlines()]
    assert "chaos.monkey.started" in kinds and "chaos.monkey.broke" in kinds
    assert kinds.index("chaos.monkey.stopped") > kinds.index("chaos.monkey.broke")
    status = json.loads(pg(scratch, state, "status", "--json").stdout)
    assert all(n["state"] == "running" for n in status["nodes"])
