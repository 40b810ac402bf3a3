"""The fault registry's bookkeeping: persistence, idempotency, shorthands, revert_due.

The backend here is an in-memory fake: these tests judge the registry's records, not a
cluster (the e2e tests in tests/e2e/test_cli_faults.py break a real one).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from playground.backends.base import Backend, BackendError, NodeInfo
from playground.chaos.faults import FaultError, Faults


class FakeBackend(Backend):
    """Nodes in a dict; every call is logged."""

    name = "fake"

    def __init__(self, state_dir: Path, masters: int = 1) -> None:
        self.state_dir = state_dir
        nodes = [NodeInfo("coordinator-1", "coordinator", "127.0.0.1:1", "running")]
        nodes += [
            NodeInfo(f"master-{i}", "master", f"127.0.0.1:{10 + i}", "running")
            for i in range(1, masters + 1)
        ]
        nodes += [
            NodeInfo("agent-1", "agent", "127.0.0.1:21", "running", zone="a"),
            NodeInfo("agent-2", "agent", "127.0.0.1:22", "running", zone="b"),
            NodeInfo("agent-3", "agent", "127.0.0.1:23", "running", zone="b"),
            NodeInfo("public-agent-1", "public-agent", "127.0.0.1:31", "running", zone="a"),
            NodeInfo("marathon-1", "marathon", "127.0.0.1:41", "running"),
        ]
        self._nodes = {n.name: n for n in nodes}
        self.calls: list[tuple[str, str]] = []

    def up(self) -> None:  # pragma: no cover - not used
        pass

    def down(self) -> None:  # pragma: no cover - not used
        pass

    def endpoints(self) -> dict[str, Any]:
        # With a quorum, the leader is the running master with the lowest number.
        masters = [n for n in self._nodes.values() if n.role == "master"]
        running = [n for n in masters if n.state == "running"]
        if len(running) >= len(masters) // 2 + 1:
            return {"master": f"http://{running[0].address}"}
        return {"master": None}

    def nodes(self) -> list[NodeInfo]:
        return list(self._nodes.values())

    def _set(self, node: str, state: str) -> None:
        self._nodes[node] = replace(self._nodes[node], state=state)

    def crash(self, node: str) -> None:
        self.calls.append(("crash", node))
        self._set(node, "crashed")

    def stop(self, node: str) -> None:
        self.calls.append(("stop", node))
        self._set(node, "stopped")

    def start(self, node: str) -> None:
        self.calls.append(("start", node))
        self._set(node, "running")

    def restart_agent_process(self, node: str) -> None:
        self.calls.append(("agent-restart", node))


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def backend(tmp_path: Path) -> FakeBackend:
    return FakeBackend(tmp_path / "state")


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def faults(backend: FakeBackend, clock: Clock) -> Faults:
    return Faults(backend, clock=clock)


def events(backend: FakeBackend) -> list[dict[str, Any]]:
    path = backend.state_dir / "events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_crash_is_persisted_with_schema_and_timeline(faults: Faults, backend: FakeBackend) -> None:
    """A crash calls the backend, lands in faults.json (schema 1) and the event timeline."""
    f = faults.break_node("agent-1")
    assert (f.id, f.kind, f.target, f.revert_at, f.reverted_at) == (
        "f-1",
        "crash",
        "agent-1",
        None,
        None,
    )
    assert f.started_at.endswith("Z") and f.started_at.startswith("2023-11-14T22:13:20")
    assert backend.calls == [("crash", "agent-1")]
    data = json.loads((backend.state_dir / "faults.json").read_text())
    assert data["schema_version"] == 1 and data["faults"] == [f.to_dict()]
    # A new registry on the same state dir sees it (persistence, not memory).
    again = Faults(backend)
    assert [x.to_dict() for x in again.active()] == [f.to_dict()]
    assert [(e["kind"], e["fault"], e["how"], e["target"]) for e in events(backend)] == [
        ("fault.started", "f-1", "crash", "agent-1")
    ]


def test_repeated_fault_is_idempotent_and_ids_increase(
    faults: Faults, backend: FakeBackend
) -> None:
    """The same fault again returns the active one without touching the node; ids go up."""
    first = faults.break_node("agent-1")
    assert faults.break_node("agent-1") == first
    assert backend.calls == [("crash", "agent-1")]
    second = faults.break_node("agent-2", how="stop")
    assert second.id == "f-2" and backend.calls[-1] == ("stop", "agent-2")
    assert [f.id for f in faults.active()] == ["f-1", "f-2"]


def test_shorthands_resolve(faults: Faults, backend: FakeBackend) -> None:
    """`marathon` is marathon-1, `leader` the leading master, a single-node role its node."""
    assert faults.break_node("marathon").target == "marathon-1"
    assert faults.break_node("leader").target == "master-1"
    assert faults.resolve("coordinator").name == "coordinator-1"
    with pytest.raises(FaultError) as exc:
        faults.resolve("agent")  # three agents: not a shorthand
    assert "unknown node 'agent'" in str(exc.value)


def test_unknown_node_lists_the_valid_ones(faults: Faults, backend: FakeBackend) -> None:
    """An unknown node is a BackendError whose hint names every node and the shorthands."""
    with pytest.raises(BackendError) as exc:
        faults.break_node("agnet-1")
    assert "unknown node 'agnet-1'" in str(exc.value)
    assert exc.value.hint is not None
    assert "agent-1" in exc.value.hint and "marathon-1" in exc.value.hint
    assert "leader" in exc.value.hint and "marathon" in exc.value.hint
    assert backend.calls == []
    assert not (backend.state_dir / "faults.json").exists()


def test_agent_restart_only_for_agents_and_reverts_itself(
    faults: Faults, backend: FakeBackend
) -> None:
    """agent-restart is refused for non-agents with the reason; for agents it is momentary."""
    with pytest.raises(FaultError) as exc:
        faults.break_node("master-1", how="agent-restart")
    assert "master-1 is a master" in str(exc.value)
    f = faults.break_node("public-agent-1", how="agent-restart")
    assert backend.calls == [("agent-restart", "public-agent-1")]
    assert f.reverted_at == f.started_at and faults.active() == []
    assert [e["kind"] for e in events(backend)] == ["fault.started", "fault.reverted"]
    with pytest.raises(FaultError):
        faults.break_node("agent-1", how="agent-restart", for_seconds=5)
    with pytest.raises(FaultError):
        faults.break_node("agent-1", how="reboot")


def test_heal_starts_nodes_and_marks_faults_reverted(
    faults: Faults, backend: FakeBackend, clock: Clock
) -> None:
    """heal(node) reverts only that node's faults; heal() the rest, in topology order."""
    faults.break_node("marathon-1")
    faults.break_node("agent-2", how="stop")
    faults.break_node("master-1")
    clock.now += 10
    healed = faults.heal("agent-2")
    assert [f.target for f in healed] == ["agent-2"]
    assert healed[0].reverted_at is not None and healed[0].reverted_at > healed[0].started_at
    assert backend.calls[-1] == ("start", "agent-2")
    backend.calls.clear()
    assert {f.target for f in faults.heal()} == {"marathon-1", "master-1"}
    assert backend.calls == [("start", "master-1"), ("start", "marathon-1")]
    assert faults.active() == [] and len(faults.all()) == 3
    kinds = [e["kind"] for e in events(backend)]
    assert kinds.count("fault.started") == 3 and kinds.count("fault.reverted") == 3
    # A broken node can be broken again afterwards: a new fault.
    assert faults.break_node("agent-2").id == "f-4"


def test_heal_a_node_down_without_a_fault_starts_it(faults: Faults, backend: FakeBackend) -> None:
    """heal NODE starts a node that is down even when the registry has no fault for it."""
    backend.crash("agent-3")
    assert faults.heal("agent-3") == []
    assert backend.calls[-1] == ("start", "agent-3")


def test_revert_due(faults: Faults, backend: FakeBackend, clock: Clock) -> None:
    """Faults with --for are reverted by revert_due once their time has passed, not before."""
    timed = faults.break_node("agent-1", for_seconds=30)
    forever = faults.break_node("agent-2")
    assert timed.revert_at is not None and forever.revert_at is None
    clock.now += 29
    assert faults.revert_due() == []
    clock.now += 2
    done = faults.revert_due()
    assert [f.id for f in done] == [timed.id]
    assert backend.calls[-1] == ("start", "agent-1")
    assert [f.id for f in faults.active()] == [forever.id]
    # Breaking calls revert_due first.
    faults.break_node("agent-3", for_seconds=1)
    clock.now += 5
    faults.break_node("marathon-1")
    assert {f.target for f in faults.active()} == {"agent-2", "marathon-1"}


def test_break_zone(faults: Faults, backend: FakeBackend) -> None:
    """A zone outage breaks every agent (public ones too) of the zone; unknown zones list zones."""
    got = faults.break_zone("a")
    assert [f.target for f in got] == ["agent-1", "public-agent-1"]
    with pytest.raises(FaultError) as exc:
        faults.break_zone("z")
    assert exc.value.hint == "zones with agents: a, b"


def test_break_leader_and_quorum(tmp_path: Path, clock: Clock) -> None:
    """--leader crashes the leading master; --quorum crashes masters until under quorum."""
    ha = FakeBackend(tmp_path / "ha", masters=3)
    faults = Faults(ha, clock=clock)
    assert faults.break_leader().target == "master-1"
    # master-1 is down: 2 of 3 run, quorum 2 -> one more crash (the new leader first).
    got = faults.break_quorum()
    assert [f.target for f in got] == ["master-2"]
    assert faults.break_quorum() == []
    with pytest.raises(FaultError) as exc:
        faults.break_leader()
    assert "no leading master" in str(exc.value)
    faults.heal()
    assert all(n.state == "running" for n in ha.nodes())


def test_unreadable_or_foreign_registry_is_an_error(faults: Faults, backend: FakeBackend) -> None:
    """A faults.json of another schema version is refused with a hint."""
    backend.state_dir.mkdir(parents=True)
    (backend.state_dir / "faults.json").write_text('{"schema_version": 9, "faults": []}')
    with pytest.raises(FaultError) as exc:
        faults.active()
    assert "schema_version 9" in str(exc.value)


# ---- partitions and timed reverts ------------------------------------------------------
class PartitioningBackend(FakeBackend):
    supports_partitions = True

    def __init__(self, state_dir: Path) -> None:
        super().__init__(state_dir)
        self.scheduled = 0

    def schedule_reverts(self) -> None:
        self.scheduled += 1


def test_partition_is_a_table_entry_until_healed(tmp_path: Path) -> None:
    from playground.cluster import network
    from playground.cluster.statedir import StateDir

    backend = PartitioningBackend(tmp_path)
    reg = Faults(backend, clock=Clock())
    f = reg.break_node("agent-1", "partition")
    assert f.kind == "partition" and f.active
    assert backend.calls == []  # the node keeps running
    table = network.read_table(StateDir(tmp_path))
    assert table["partitions"] == [{"id": f.id, "nodes": ["agent-1"]}]
    assert reg.break_node("agent-1", "partition").id == f.id  # idempotent
    reg.heal("agent-1")
    assert network.read_table(StateDir(tmp_path))["partitions"] == []
    assert backend.calls == []  # healing a partition starts nothing
    assert reg.active() == []


def test_a_backend_without_partitions_refuses_with_the_reason(tmp_path: Path) -> None:
    reg = Faults(FakeBackend(tmp_path), clock=Clock())
    with pytest.raises(FaultError, match="cannot partition"):
        reg.break_node("agent-1", "partition")
    assert reg.active() == []


def test_heal_all_ends_partitions_before_starting_nodes(tmp_path: Path) -> None:
    from playground.cluster import network
    from playground.cluster.statedir import StateDir

    backend = PartitioningBackend(tmp_path)
    reg = Faults(backend, clock=Clock())
    reg.break_node("agent-2", "partition")
    reg.break_node("agent-1", "crash")
    reg.heal()
    assert network.read_table(StateDir(tmp_path))["partitions"] == []
    assert backend.calls == [("crash", "agent-1"), ("start", "agent-1")]


def test_timed_faults_ask_the_backend_to_schedule_their_revert(tmp_path: Path) -> None:
    backend = PartitioningBackend(tmp_path)
    reg = Faults(backend, clock=Clock())
    reg.break_node("agent-1", "crash")
    assert backend.scheduled == 0
    reg.break_node("agent-2", "partition", for_seconds=5)
    assert backend.scheduled == 1
