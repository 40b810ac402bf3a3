"""The chaos monkey: random faults within a blast radius, all reverted at the end.

Every ``interval`` seconds the monkey picks one node among its targets and breaks it
(``crash``, ``stop``, ``agent-restart`` for agents, ``partition`` where the kit has it) for
a random while (between half and one and a half intervals). The blast radius holds at every
step: never more than ``max_nodes`` nodes broken at once (counting what others broke too),
never nodes of more than one zone at once. Its faults also carry a ``revert_at``, so even a
monkey killed with SIGKILL leaves faults that ``playground faults``/``heal`` revert. At the
end (``--for``), on Ctrl-C or SIGTERM it heals everything it broke. What it does goes on
the timeline: ``chaos.monkey.started``, ``.broke``, ``.healed``, ``.stopped``.
"""

from __future__ import annotations

import contextlib
import random
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from playground.backends.base import BackendError, NodeInfo
from playground.chaos import faults as faults_mod
from playground.chaos.faults import AGENT_ROLES, Fault, FaultError, Faults

#: Targets when none are given: the agents (private and public).
DEFAULT_TARGETS = AGENT_ROLES


@contextlib.contextmanager
def _shielded() -> Iterator[None]:
    """Ignore Ctrl-C and SIGTERM while healing (main thread only), so healing finishes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def kinds_available() -> list[str]:
    """The faults the monkey uses: crash, stop, agent-restart, and partition once the kit has it."""
    return [k for k in ("crash", "stop", "agent-restart", "partition") if k in faults_mod.KINDS]


def kinds_for(node: NodeInfo, kinds: Sequence[str]) -> list[str]:
    return [k for k in kinds if k != "agent-restart" or node.role in AGENT_ROLES]


def _split(specs: Iterable[str]) -> list[str]:
    return [s.strip() for spec in specs for s in spec.split(",") if s.strip()]


def _matches(node: NodeInfo, spec: str) -> bool:
    if spec.startswith("zone:"):
        return node.zone == spec[5:]
    return spec in (node.name, node.role)


def select(
    nodes: Sequence[NodeInfo], targets: Iterable[str], exclude: Iterable[str]
) -> list[NodeInfo]:
    """The nodes the monkey may break: ``targets`` (node names, roles, ``zone:Z``; default the
    agents) less ``exclude``. An unknown name is an error listing the valid ones."""
    want, skip = _split(targets), _split(exclude)
    for spec in want + skip:
        if not any(_matches(n, spec) for n in nodes):
            zones = sorted({f"zone:{n.zone}" for n in nodes if n.zone})
            roles = sorted({n.role for n in nodes})
            raise FaultError(
                f"no node matches {spec!r}",
                hint="targets are node names ("
                + ", ".join(n.name for n in nodes)
                + "), roles ("
                + ", ".join(roles)
                + ") or zones ("
                + ", ".join(zones)
                + ")",
            )
    chosen = [
        n
        for n in nodes
        if (any(_matches(n, s) for s in want) if want else n.role in DEFAULT_TARGETS)
    ]
    return [n for n in chosen if not any(_matches(n, s) for s in skip)]


def broken_now(nodes: Sequence[NodeInfo], active: Iterable[Fault]) -> set[str]:
    """Nodes broken now: not running, or the target of an active fault (routes are no node)."""
    return {n.name for n in nodes if n.state != "running"} | {
        f.target for f in active if f.kind != "route"
    }


def plan(
    nodes: Sequence[NodeInfo],
    candidates: Sequence[NodeInfo],
    broken: set[str],
    max_nodes: int,
    rng: random.Random,
    kinds: Sequence[str],
) -> tuple[NodeInfo, str] | None:
    """The next fault within the blast radius, or None when none fits.

    Never more than ``max_nodes`` broken nodes, never broken nodes in two zones: once a
    node of a zone is broken, only nodes of that zone (or nodes without a zone) qualify.
    """
    if len(broken) >= max_nodes:
        return None
    zone_of = {n.name: n.zone for n in nodes}
    zones = {zone_of.get(b) for b in broken} - {None}
    eligible = [
        n
        for n in candidates
        if n.name not in broken
        and n.state == "running"
        and (not zones or n.zone is None or n.zone in zones)
        and kinds_for(n, kinds)
    ]
    if not eligible:
        return None
    node = rng.choice(eligible)
    return node, rng.choice(kinds_for(node, kinds))


@dataclass
class Monkey:
    faults: Faults
    interval: float = 10.0
    duration: float | None = None
    targets: Sequence[str] = ()
    exclude: Sequence[str] = ()
    max_nodes: int = 1
    seed: int | None = None
    say: Callable[[str], None] = lambda _msg: None
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    mine: dict[str, tuple[Fault, float]] = field(default_factory=dict)  # fault id -> (fault, due)
    done: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.interval <= 0:
            raise FaultError(f"--interval must be positive, not {self.interval:g}")
        if self.max_nodes < 1:
            raise FaultError(f"--max-nodes must be at least 1, not {self.max_nodes}")
        self.rng = random.Random(self.seed)
        self.kinds = kinds_available()
        self.start = self.clock()
        self.candidates = select(self.faults.backend.nodes(), self.targets, self.exclude)
        if not self.candidates:
            raise FaultError("no node left to break", hint="check --targets and --exclude")

    def _t(self) -> str:
        return f"[{self.clock() - self.start:6.1f}s]"

    def _event(self, kind: str, **fields: Any) -> None:
        self.faults.state.record_event(kind, **fields)

    def heal_due(self, everything: bool = False) -> None:
        now = self.clock()
        for fid, (fault, due) in list(self.mine.items()):
            if not everything and due > now:
                continue
            try:
                self.faults.heal(fault.target)
            except BackendError as exc:
                self.say(f"{self._t()} could not heal {fault.target} ({fid}): {exc}")
                continue
            del self.mine[fid]
            self.say(f"{self._t()} healed {fault.target} ({fid})")
            self._event("chaos.monkey.healed", fault=fid, target=fault.target)

    def step(self) -> Fault | None:
        """Heal what is due, then break one node if the blast radius allows it."""
        self.heal_due()
        nodes = self.faults.backend.nodes()
        by_name = {n.name: n for n in nodes}
        candidates = [by_name[c.name] for c in self.candidates if c.name in by_name]
        broken = broken_now(nodes, self.faults.active())
        choice = plan(nodes, candidates, broken, self.max_nodes, self.rng, self.kinds)
        if choice is None:
            self.say(
                f"{self._t()} nothing to break within the blast radius "
                f"({len(broken)} node(s) broken: {', '.join(sorted(broken)) or '-'})"
            )
            return None
        node, how = choice
        lasts = round(self.rng.uniform(0.5, 1.5) * self.interval, 1)
        try:
            fault = self.faults.break_node(
                node.name, how, None if how == "agent-restart" else lasts
            )
        except BackendError as exc:
            self.say(f"{self._t()} could not {how} {node.name}: {exc}")
            return None
        record = {"fault": fault.id, "how": how, "target": node.name, "zone": node.zone}
        self.done.append(record)
        if how == "agent-restart":
            self.say(f"{self._t()} {how} {node.name} ({fault.id}; its tasks keep running)")
            self._event("chaos.monkey.broke", **record, revert_in=0)
        else:
            self.mine[fault.id] = (fault, self.clock() + lasts)
            self.say(f"{self._t()} {how} {node.name} ({fault.id}) for {lasts:g}s")
            self._event("chaos.monkey.broke", **record, revert_in=lasts)
        return fault

    def run(self) -> list[dict[str, Any]]:
        """Break and heal until ``duration`` passes (or KeyboardInterrupt); heal everything."""
        self._event(
            "chaos.monkey.started",
            interval=self.interval,
            duration=self.duration,
            targets=[n.name for n in self.candidates],
            max_nodes=self.max_nodes,
            seed=self.seed,
            kinds=self.kinds,
        )
        reason = "done"
        try:
            end = None if self.duration is None else self.start + self.duration
            next_at = self.clock()
            while end is None or self.clock() < end:
                if self.clock() >= next_at:
                    self.step()
                    next_at += self.interval
                else:
                    self.heal_due()
                wake = min(next_at, end if end is not None else next_at)
                for _fid, (_f, due) in self.mine.items():
                    wake = min(wake, due)
                self.sleep(max(0.05, min(wake - self.clock(), 0.5)))
        except KeyboardInterrupt:
            reason = "interrupted"
            self.say(f"{self._t()} interrupted: healing what the monkey broke")
        finally:
            with _shielded():
                self.heal_due(everything=True)
            left = sorted(f.target for f, _ in self.mine.values())
            self._event("chaos.monkey.stopped", reason=reason, faults=len(self.done), unhealed=left)
        return self.done
