"""The chaos monkey's blast radius, with the in-memory fake backend of test_faults.py.

A fake clock drives the monkey, so minutes of monkey business take milliseconds: at every
step no more than ``max_nodes`` nodes are broken and never nodes of two zones.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from playground.backends.base import NodeInfo
from playground.chaos.faults import FaultError, Faults
from playground.chaos.monkey import Monkey, broken_now, kinds_for, plan, select
from tests.unit.chaos.test_faults import FakeBackend


class Clock:
    """Wall and monotonic time in one; ``sleep`` advances it."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class Watched(FakeBackend):
    """Checks the blast radius after every crash or stop."""

    def __init__(self, state_dir: Path, max_nodes: int) -> None:
        super().__init__(state_dir)
        self.max_nodes = max_nodes
        self.worst = 0

    def _check(self) -> None:
        down = [n for n in self._nodes.values() if n.state != "running"]
        assert len(down) <= self.max_nodes, down
        assert len({n.zone for n in down} - {None}) <= 1, down
        self.worst = max(self.worst, len(down))

    def crash(self, node: str) -> None:
        super().crash(node)
        self._check()

    def stop(self, node: str) -> None:
        super().stop(node)
        self._check()


def monkey(tmp_path: Path, clock: Clock, max_nodes: int = 1, **kw: Any) -> tuple[Monkey, Watched]:
    backend = Watched(tmp_path / "state", max_nodes)
    m = Monkey(
        Faults(backend, clock=clock), max_nodes=max_nodes, clock=clock, sleep=clock.sleep, **kw
    )
    return m, backend


def events(backend: FakeBackend) -> list[dict[str, Any]]:
    path = backend.state_dir / "events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_targets_default_to_agents_and_take_names_roles_zones_and_excludes(tmp_path: Path) -> None:
    nodes = FakeBackend(tmp_path).nodes()
    names = lambda ns: [n.name for n in ns]  # noqa: E731
    assert names(select(nodes, (), ())) == ["agent-1", "agent-2", "agent-3", "public-agent-1"]
    assert names(select(nodes, ("zone:b",), ())) == ["agent-2", "agent-3"]
    assert names(select(nodes, ("master,marathon-1",), ())) == ["master-1", "marathon-1"]
    assert names(select(nodes, (), ("public-agent", "agent-2"))) == ["agent-1", "agent-3"]
    with pytest.raises(FaultError, match="no node matches 'agent-9'") as info:
        select(nodes, ("agent-9",), ())
    assert "zone:a" in str(info.value.hint) and "marathon-1" in str(info.value.hint)


def test_plan_respects_max_nodes_and_one_zone_at_a_time() -> None:
    nodes = [
        NodeInfo("agent-1", "agent", "a:1", "running", zone="a"),
        NodeInfo("agent-2", "agent", "a:2", "running", zone="b"),
        NodeInfo("agent-3", "agent", "a:3", "running", zone="b"),
        NodeInfo("master-1", "master", "a:4", "running"),
    ]
    rng = random.Random(0)
    kinds = ["crash", "stop", "agent-restart"]
    assert plan(nodes, nodes, {"agent-1"}, 1, rng, kinds) is None
    for _ in range(50):
        choice = plan(nodes, nodes, {"agent-2"}, 3, rng, kinds)
        assert choice is not None and choice[0].name in ("agent-3", "master-1")
    assert kinds_for(nodes[3], kinds) == ["crash", "stop"]
    assert plan(nodes, nodes[1:3], {"agent-2", "agent-3"}, 3, rng, kinds) is None
    assert broken_now([NodeInfo("x", "agent", "a", "crashed")], []) == {"x"}


@pytest.mark.parametrize("max_nodes", [1, 2, 3])
def test_a_long_run_keeps_the_blast_radius_and_heals_everything(
    tmp_path: Path, max_nodes: int
) -> None:
    clock = Clock()
    m, backend = monkey(tmp_path, clock, max_nodes, interval=2.0, duration=160.0, seed=7)
    done = m.run()
    assert len(done) > 30
    # The limit is reached, never passed; one zone at a time holds 2 agents at most.
    assert backend.worst == min(max_nodes, 2)
    assert all(n.state == "running" for n in backend.nodes())
    assert m.faults.active() == [] and m.mine == {}
    assert {d["how"] for d in done} == {"crash", "stop", "agent-restart"}
    kinds = [e["kind"] for e in events(backend) if e["kind"].startswith("chaos.monkey.")]
    assert kinds[0] == "chaos.monkey.started" and kinds[-1] == "chaos.monkey.stopped"
    assert kinds.count("chaos.monkey.broke") == len(done)
    stopped = events(backend)[-1]
    assert stopped["reason"] == "done" and stopped["unhealed"] == []


def test_the_same_seed_breaks_the_same_nodes(tmp_path: Path) -> None:
    runs = []
    for i in range(2):
        m, _ = monkey(tmp_path / str(i), Clock(), 1, interval=1.0, duration=20.0, seed=42)
        runs.append([(d["how"], d["target"]) for d in m.run()])
    assert runs[0] == runs[1] and len(runs[0]) >= 10


def test_faults_made_by_others_count_against_the_limit(tmp_path: Path) -> None:
    clock = Clock()
    m, backend = monkey(tmp_path, clock, 1, interval=1.0, duration=5.0, seed=1)
    m.faults.break_node("master-1")
    assert m.step() is None
    assert backend.calls == [("crash", "master-1")]


def test_ctrl_c_heals_what_the_monkey_broke(tmp_path: Path) -> None:
    clock = Clock()
    m, backend = monkey(tmp_path, clock, 2, interval=1.0, seed=3)
    ticks = 0

    def sleep(seconds: float) -> None:
        nonlocal ticks
        ticks += 1
        clock.sleep(seconds)
        if ticks == 3:
            raise KeyboardInterrupt

    m.sleep = sleep
    m.run()
    assert all(n.state == "running" for n in backend.nodes())
    assert m.faults.active() == []
    assert events(backend)[-1]["reason"] == "interrupted"


def test_bad_settings_are_refused(tmp_path: Path) -> None:
    with pytest.raises(FaultError, match="--interval"):
        monkey(tmp_path, Clock(), interval=0)
    with pytest.raises(FaultError, match="no node left"):
        monkey(tmp_path, Clock(), targets=("agent-1",), exclude=("agent",))
