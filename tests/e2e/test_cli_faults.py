"""`playground break|faults|heal` as a user runs them, against a real cluster."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from playground.client import auth as client_auth
from playground.cluster import auth
from tests.e2e.test_cli import as_json, run

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A ``default`` cluster started with the CLI, shared by this module's tests."""
    root = tmp_path_factory.mktemp("faults") / "state"
    run("up", "--time-scale", "20", "--state-dir", str(root))
    try:
        yield root
    finally:
        run("destroy", "--yes", "--state-dir", str(root), check=None)


def pg(state: Path, *args: str, check: int | None = 0) -> Any:
    cp = run(*args, "--state-dir", str(state), check=check)
    return as_json(cp) if "--json" in args else cp


def node(st: dict[str, Any], name: str) -> dict[str, Any]:
    return next(n for n in st["nodes"] if n["name"] == name)


def wait_for(state: Path, ok: Any, timeout: float = 20.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        st = pg(state, "status", "--json")
        if ok(st):
            return st
        assert time.monotonic() < deadline, f"not reached in {timeout}s: {st}"
        time.sleep(0.2)


def healthy(st: dict[str, Any]) -> bool:
    return st["leader"] is not None and all(
        n["state"] == "running" and n.get("registered", True) for n in st["nodes"]
    )


def test_typos_are_errors(state: Path) -> None:
    """An unknown node exits 1 naming the valid ones; bad usage exits 2; nothing breaks."""
    cp = pg(state, "break", "nonexistent", check=1)
    assert "error: unknown node 'nonexistent'" in cp.stderr
    assert "agent-1" in cp.stderr and "marathon-1" in cp.stderr and "leader" in cp.stderr
    assert (
        "Invalid value for '--how'"
        in pg(state, "break", "agent-1", "--how", "nope", check=2).stderr
    )
    assert "exactly one of" in pg(state, "break", check=2).stderr
    assert "exactly one of" in pg(state, "break", "agent-1", "--leader", check=2).stderr
    assert "nothing to heal" in pg(state, "heal").stdout
    cp = pg(state, "break", "master-1", "--how", "agent-restart", check=1)
    assert "agent-restart applies to agents" in cp.stderr
    assert pg(state, "faults", "--json") == []


def test_crash_an_agent_and_heal_it(state: Path) -> None:
    """A crashed agent shows in status and faults; heal starts it and it re-registers."""
    f = pg(state, "break", "agent-2", "--json")
    assert f["id"].startswith("f-") and (f["kind"], f["target"]) == ("crash", "agent-2")
    st = pg(state, "status", "--json")
    assert node(st, "agent-2")["state"] == "crashed"
    listed = pg(state, "faults", "--json")
    assert [(x["id"], x["kind"], x["target"], x["reverted_at"]) for x in listed] == [
        (f["id"], "crash", "agent-2", None)
    ]
    # Again: idempotent, the same fault.
    assert pg(state, "break", "agent-2", "--json") == f
    assert "agent-2" in pg(state, "faults").stdout
    healed = pg(state, "heal", "agent-2", "--json")
    assert [x["id"] for x in healed] == [f["id"]] and healed[0]["reverted_at"]
    assert node(pg(state, "status", "--json"), "agent-2")["state"] == "running"
    wait_for(state, lambda st: node(st, "agent-2")["registered"])
    assert pg(state, "faults", "--json") == []
    events = (state / "events.jsonl").read_text()
    assert '"fault.started"' in events and '"fault.reverted"' in events


def test_agent_restart_keeps_the_node_running(state: Path) -> None:
    """agent-restart restarts only the agent process; the node runs afterwards, no fault stays."""
    agent_id = node(pg(state, "status", "--json"), "agent-1")["agent_id"]
    f = pg(state, "break", "agent-1", "--how", "agent-restart", "--json")
    assert f["kind"] == "agent-restart" and f["reverted_at"] is not None
    assert node(pg(state, "status", "--json"), "agent-1")["state"] == "running"
    assert pg(state, "faults", "--json") == []
    st = wait_for(state, lambda st: node(st, "agent-1")["registered"])
    assert node(st, "agent-1")["agent_id"] == agent_id  # recovered, not a new agent


def test_break_leader_then_heal_all(state: Path) -> None:
    """--leader crashes master-1 (the only master); heal --all brings the cluster back."""
    f = pg(state, "break", "--leader", "--json")
    assert (f["kind"], f["target"]) == ("crash", "master-1")
    st = pg(state, "status", "--json")
    assert node(st, "master-1")["state"] == "crashed" and st["leader"] is None
    healed = pg(state, "heal", "--all", "--json")
    assert [x["target"] for x in healed] == ["master-1"]
    wait_for(state, healthy)
    assert "no active faults" in pg(state, "faults").stdout


def test_break_for_reverts_when_due(state: Path) -> None:
    """A fault with --for is reverted when its time has passed (by the reverter, or by the
    next `faults` should the reverter be late)."""
    f = pg(state, "break", "marathon", "--how", "stop", "--for", "3", "--json")
    assert (f["kind"], f["target"]) == ("stop", "marathon-1") and f["revert_at"]
    assert node(pg(state, "status", "--json"), "marathon-1")["state"] == "stopped"
    time.sleep(3.2)
    assert pg(state, "faults", "--json") == []
    assert node(pg(state, "status", "--json"), "marathon-1")["state"] == "running"


def test_a_timed_partition_is_reverted_by_the_reverter(state: Path) -> None:
    """No command needs to run: the reverter process ends the partition on time."""
    f = pg(state, "break", "agent-2", "--how", "partition", "--for", "4", "--json")
    assert (f["kind"], f["target"], f["reverted_at"]) == ("partition", "agent-2", None)
    table = json.loads((state / "network.json").read_text())
    assert table["partitions"] == [{"id": f["id"], "nodes": ["agent-2"]}]
    st = pg(state, "status", "--json")
    assert node(st, "agent-2")["state"] == "running" and node(st, "agent-2")["partitioned"]
    assert not node(st, "agent-1")["partitioned"]
    assert "PARTITIONED" in pg(state, "status").stdout

    def registry() -> dict[str, Any]:
        return next(
            x
            for x in json.loads((state / "faults.json").read_text())["faults"]
            if x["id"] == f["id"]
        )

    deadline = time.monotonic() + 10
    while registry()["reverted_at"] is None:
        assert time.monotonic() < deadline, "the reverter did not revert the partition"
        time.sleep(0.1)
    assert json.loads((state / "network.json").read_text())["partitions"] == []
    events = [json.loads(x) for x in (state / "events.jsonl").read_text().splitlines()]
    reverted = [e for e in events if e["kind"] == "fault.reverted" and e["fault"] == f["id"]]
    assert [e["source"] for e in reverted] == ["fault-reverter"]
    # The agent answers the master again (it re-registers).
    st = wait_for(state, healthy)
    assert not node(st, "agent-2")["partitioned"] and node(st, "marathon-1")["connected"]
    assert "connected to the leading master" in pg(state, "status").stdout


def test_rebuild_agent_with_a_clean_disk_gets_a_new_id(state: Path) -> None:
    """rebuild agent-2: same name and address, a new agent id; the old id is refused for good."""
    before = node(wait_for(state, lambda st: node(st, "agent-2")["registered"]), "agent-2")
    r = pg(state, "rebuild", "agent-2", "--json")
    assert (r["node"], r["keep_disk"], r["crashed"]) == ("agent-2", False, True)
    assert r["old_agent_id"] == before["agent_id"] and r["agent_id"] not in (
        None,
        r["old_agent_id"],
    )
    st = wait_for(state, lambda st: node(st, "agent-2")["registered"])
    after = node(st, "agent-2")
    assert (after["agent_id"], after["address"]) == (r["agent_id"], before["address"])
    master = st["endpoints"]["master"].rstrip("/")
    back = httpx.post(
        f"{master}/master/mesos.internal.ReregisterSlaveMessage",
        json={
            "agent_info": {"id": {"value": r["old_agent_id"]}, "hostname": "x"},
            "pid": f"slave(1)@{before['address']}",
            "url": f"http://{before['address']}",
        },
        headers=client_auth.headers(auth.load_token(state)),  # as an agent would
        timeout=5,
    )
    assert back.status_code == 403 and "gone" in back.text
    assert '"fault.rebuilt"' in (state / "events.jsonl").read_text()
    cp = pg(state, "rebuild", "master-1", check=1)
    assert "applies to agents" in cp.stderr and "--keep-disk" in cp.stderr


def test_rebuild_agent_keeping_its_disk_keeps_its_id(state: Path) -> None:
    """rebuild agent-1 --keep-disk: the same machine returns and recovers its agent id."""
    before = node(wait_for(state, lambda st: node(st, "agent-1")["registered"]), "agent-1")
    out = pg(state, "rebuild", "agent-1", "--keep-disk").stdout
    assert "rebuilt agent-1 with its disk" in out
    st = wait_for(state, lambda st: node(st, "agent-1")["registered"])
    assert node(st, "agent-1")["agent_id"] == before["agent_id"]


def test_drain_and_maintenance_from_the_cli(state: Path) -> None:
    """drain -> faults -> heal; maintenance schedule -> status -> down -> up."""
    f = pg(state, "drain", "agent-3", "--json")
    assert (f["kind"], f["target"]) == ("drain", "agent-3")
    assert [x["id"] for x in pg(state, "faults", "--json")] == [f["id"]]
    assert "reverted" in pg(state, "heal", "agent-3").stdout
    cp = pg(state, "drain", "coordinator-1", check=1)
    assert "drain applies to agents" in cp.stderr and "agent-1" in cp.stderr

    assert pg(state, "maintenance", "status", "--json") == []
    (st,) = pg(state, "maintenance", "schedule", "agent-3", "--duration", "60", "--json")
    assert (st["node"], st["mode"], st["unavailability_duration"]) == ("agent-3", "DRAINING", 60)
    assert "DRAINING" in pg(state, "maintenance", "status").stdout
    cp = pg(state, "maintenance", "down", "agent-1", check=1)
    assert "not part of a maintenance schedule" in cp.stderr
    (st,) = pg(state, "maintenance", "down", "agent-3", "--json")
    assert st["mode"] == "DOWN"
    assert node(pg(state, "status", "--json"), "agent-3")["state"] == "stopped"
    assert pg(state, "maintenance", "up", "agent-3", "--json") == ["agent-3"]
    assert pg(state, "maintenance", "status", "--json") == []
    wait_for(state, healthy)
    cp = pg(state, "maintenance", "up", check=2)
    assert "Missing argument" in cp.stderr


def test_heal_without_a_node_heals_everything(state: Path) -> None:
    pg(state, "break", "agent-1", "--how", "partition")
    healed = pg(state, "heal", "--json")
    assert [(f["kind"], f["target"]) for f in healed] == [("partition", "agent-1")]
    assert pg(state, "faults", "--json") == []
    cp = pg(state, "heal", "agent-1", "--all", check=2)
    assert "not both" in cp.stderr
