"""The ``playground`` command as a user runs it: exit codes, JSON, lifecycle."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from playground.cluster import procs
from tests.conftest import playground_cmd


def run(
    *args: str, check: int | None = 0, env_state: Path | None = None
) -> subprocess.CompletedProcess[str]:
    import os

    env = dict(os.environ)
    if env_state is not None:
        env["PLAYGROUND_STATE_DIR"] = str(env_state)
    cp = subprocess.run(
        [*playground_cmd(), *args], capture_output=True, text=True, timeout=120, env=env
    )
    if check is not None:
        assert cp.returncode == check, (
            f"exit {cp.returncode}\nstdout: {cp.stdout}\nstderr: {cp.stderr}"
        )
    return cp


def as_json(cp: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(cp.stdout)


def test_help_lists_the_commands() -> None:
    """`playground --help` exits 0 and names every command group."""
    out = run("--help").stdout
    for cmd in ("up", "down", "status", "destroy", "clean", "logs", "doctor", "topology", "task"):
        assert f"  {cmd}" in out


@pytest.mark.parametrize(
    "sub", ["up", "down", "status", "destroy", "clean", "logs", "doctor", "topology", "task"]
)
def test_every_command_has_help(sub: str) -> None:
    """Every command answers --help with exit 0 and a usage line."""
    assert "Usage:" in run(sub, "--help").stdout


def test_typo_is_a_usage_error() -> None:
    """An unknown command exits 2 with click's message on stderr."""
    cp = run("stauts", check=2)
    assert "No such command 'stauts'" in cp.stderr


def test_status_without_a_cluster_says_what_to_do(tmp_path: Path) -> None:
    """status on an empty state dir exits 1 and tells the user to run `playground up`."""
    cp = run("status", "--state-dir", str(tmp_path / "none"), check=1)
    assert cp.stdout == ""
    assert "error: no cluster in" in cp.stderr
    assert "playground up" in cp.stderr


def test_unknown_topology_is_an_error(tmp_path: Path) -> None:
    """up with an unknown topology exits 1 and lists the shipped ones, starting nothing."""
    cp = run("up", "--topology", "nope", "--state-dir", str(tmp_path / "s"), check=1)
    assert "unknown topology 'nope'" in cp.stderr and "default" in cp.stderr
    assert procs.find_marked(tmp_path / "s") == []


def test_topology_commands() -> None:
    """topology list names default and ha; show --json gives the nodes with zones."""
    names = [t["name"] for t in as_json(run("topology", "list", "--json"))]
    assert {"default", "ha"} <= set(names)
    ha = as_json(run("topology", "show", "ha", "--json"))
    assert ha["quorum"] == 2 and len(ha["nodes"]) == 17
    assert run("topology", "show", "nope", check=1).stderr.startswith("error: unknown topology")


def test_doctor_json() -> None:
    """doctor --json reports each check with ok and detail."""
    results = as_json(run("doctor", "--json"))
    names = {r["check"] for r in results}
    assert {"python", "loopback addressing", "disk", "ports"} <= names
    assert all(r["ok"] for r in results if r["check"] in ("python", "loopback"))


@pytest.mark.slow
def test_lifecycle_up_status_down_resume_destroy(tmp_path: Path) -> None:
    """up, status, up again, repair, down, resume and destroy behave as the CLI contract says."""
    state = tmp_path / "state"
    up = as_json(run("up", "--json", "--time-scale", "20", "--state-dir", str(state)))
    assert up["created"] and not up["already_running"]
    st = as_json(run("--state-dir", str(state), "status", "--json"))
    assert st["time_scale"] == 20
    assert st["endpoints"]["master"].startswith("http://127.")
    assert st["endpoints"]["storage"].startswith("http://127.")
    assert st["leader"] == "master-1"
    names = [n["name"] for n in st["nodes"]]
    assert names == [
        "coordinator-1",
        "master-1",
        "agent-1",
        "agent-2",
        "agent-3",
        "public-agent-1",
        "storage-1",
        "marathon-1",
        "edge-1",
        "monitor-1",
    ]
    for n in st["nodes"]:
        assert set(n) >= {"name", "role", "zone", "rack", "address", "pid", "state"}
        assert n["state"] == "running" and isinstance(n["pid"], int)
    agents = [n for n in st["nodes"] if n["role"] in ("agent", "public-agent")]
    assert all(n["registered"] for n in agents)
    # Running already: says so, exit 0.
    again = run("up", "--state-dir", str(state))
    assert "already running" in again.stdout
    # Half-broken: a crashed agent is started again and named.
    from playground.backends import EmbeddedBackend

    EmbeddedBackend(state).crash("agent-2")
    repaired = as_json(run("up", "--json", "--state-dir", str(state)))
    assert repaired["started"] == ["agent-2"]
    assert "listening on" in run("logs", "agent-2", "--state-dir", str(state)).stdout
    assert as_json(run("task", "list", "--json", "--state-dir", str(state))) == []
    # down: nothing of the cluster is left.
    down = as_json(run("down", "--json", "--state-dir", str(state)))
    assert len(down["stopped"]) == 10
    assert procs.find_marked(state) == []
    st = as_json(run("status", "--json", "--state-dir", str(state)))
    assert {n["state"] for n in st["nodes"]} == {"stopped"}
    assert st["endpoints"]["master"] is None
    # Resume keeps the agents' identities (their disks).
    resumed = as_json(run("up", "--json", "--state-dir", str(state)))
    assert len(resumed["started"]) == 10
    run("destroy", "--yes", "--state-dir", str(state))
    assert not state.exists()
    assert procs.find_marked(state) == []


@pytest.mark.slow
def test_two_clusters_get_disjoint_addresses_and_clean_finds_leftovers(tmp_path: Path) -> None:
    """Two state dirs run side by side on different addresses; clean ends processes a lost record left."""
    a, b = tmp_path / "a", tmp_path / "b"
    run("up", "--state-dir", str(a))
    run("up", "--state-dir", str(b))
    try:
        sa = as_json(run("status", "--json", "--state-dir", str(a)))
        sb = as_json(run("status", "--json", "--state-dir", str(b)))
        hosts_a = {n["address"] for n in sa["nodes"]}
        hosts_b = {n["address"] for n in sb["nodes"]}
        assert hosts_a.isdisjoint(hosts_b)
        assert all(n["state"] == "running" for n in sa["nodes"] + sb["nodes"])
        # Simulate an interrupted run that lost track of its processes.
        rec = json.loads((a / "cluster.json").read_text())
        for node in rec["nodes"].values():
            node["pid"] = None
        rec["desired"] = "stopped"
        (a / "cluster.json").write_text(json.dumps(rec))
        ended = as_json(run("clean", "--json", "--state-dir", str(a)))["ended"]
        assert len(ended) == 10
        assert procs.find_marked(a) == []
        assert len(procs.find_marked(b)) == 10, "clean must not touch another cluster"
    finally:
        run("destroy", "-y", "--state-dir", str(a), check=None)
        run("destroy", "-y", "--state-dir", str(b), check=None)
