"""The fault registry: faults broken into a cluster, and their reverts.

Persisted in ``STATE/faults.json`` (``schema_version`` 1), written atomically under the
state directory's lock::

    {"schema_version": 1, "next_id": 4, "faults": [
        {"id": "f-3", "kind": "crash", "target": "agent-1",
         "started_at": "2026-01-01T10:00:00.000Z", "revert_at": null, "reverted_at": null}]}

Reverted faults stay in the file (the history); :meth:`Faults.active` filters them out.
Every break and revert also goes into the cluster's event timeline (``fault.started``,
``fault.reverted``; a rebuild is ``fault.rebuilt``). A timed fault (``revert_at``) is
reverted on time by the backend's reverter process (``playground.chaos.reverter``), and
by :meth:`Faults.revert_due`, which the ``break``, ``faults`` and ``heal`` commands call
first, should the reverter be gone. A ``partition`` fault is an entry in the networking
layer's partition table (``STATE/network.json``, see ``playground.cluster.network``),
removed when the fault is reverted.

A ``route`` fault is a set of toxics (``playground.edge.toxics``: latency, bandwidth,
reset_peer, loss) on an edge route; its target is the app id, or ``APP_ID:SERVICE_PORT``,
and its entry carries ``route``: ``{"app", "port", "toxics": [...]}``. The edge reads the
active ones from this file (when it starts and whenever the file changes), so a reverted
fault leaves the data plane even while the edge is down, and a restarted edge applies
what is still active.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from playground.backends.base import Backend, BackendError, NodeInfo
from playground.client.edge import EdgeClient, EdgeClientError
from playground.cluster import network
from playground.cluster.statedir import StateDir, atomic_write
from playground.edge import toxics as toxics_mod
from playground.errors import PlaygroundError

SCHEMA_VERSION = 1
KINDS = ("crash", "stop", "partition", "agent-restart")
#: Toxics on an edge route (``break_route``); not a way to break a node, so not in KINDS.
ROUTE = "route"
AGENT_ROLES = ("agent", "public-agent")
#: Shorthands accepted wherever a node name is (besides a role with exactly one node).
SHORTHANDS = ("leader",)


class FaultError(BackendError):
    """A fault cannot be broken or healed (unknown node or zone, unsupported fault)."""


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


@dataclass
class Fault:
    """One fault: what was done to which node, when, and when it is (or was) reverted."""

    id: str
    kind: str  # crash | stop | partition | agent-restart | drain | route
    target: str  # node name; route: the app id, or APP_ID:SERVICE_PORT
    started_at: str  # wall clock, ISO 8601 UTC
    revert_at: str | None = None
    reverted_at: str | None = None
    route: dict[str, Any] | None = None  # route faults: {"app", "port", "toxics"}

    @property
    def active(self) -> bool:
        return self.reverted_at is None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if d["route"] is None:
            del d["route"]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Fault:
        return cls(
            id=str(d["id"]),
            kind=str(d["kind"]),
            target=str(d["target"]),
            started_at=str(d["started_at"]),
            revert_at=d.get("revert_at"),
            reverted_at=d.get("reverted_at"),
            route=d.get("route"),
        )


@dataclass
class Rebuild:
    """What :meth:`Faults.rebuild` did to a node."""

    node: str
    keep_disk: bool
    crashed: bool  # the node was running and got SIGKILL first
    old_agent_id: str | None  # agents: the id before the rebuild
    agent_id: str | None  # agents: the id it registered with afterwards (None: not yet)
    reverted: list[str]  # ids of the node's active faults, now healed

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Faults:
    """Break and heal a cluster through its backend; remember what was broken.

    Args:
        backend: the cluster's backend (crash, stop, start, restart_agent_process).
        state_dir: where ``faults.json`` lives; default the backend's ``state_dir``.
        clock: wall-clock seconds (tests pass their own).
    """

    def __init__(
        self,
        backend: Backend,
        state_dir: Path | str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.backend = backend
        root = state_dir if state_dir is not None else getattr(backend, "state_dir", None)
        if root is None:
            raise FaultError(f"the {backend.name} backend has no state directory for faults")
        self.state = StateDir(root)
        self.clock = clock

    @property
    def path(self) -> Path:
        return self.state.root / "faults.json"

    # ---- persistence ------------------------------------------------------------------
    def _load(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {"schema_version": SCHEMA_VERSION, "next_id": 1, "faults": []}
        except (OSError, json.JSONDecodeError) as exc:
            raise FaultError(f"cannot read {self.path}: {exc}") from None
        if data.get("schema_version") != SCHEMA_VERSION:
            raise FaultError(
                f"{self.path} has schema_version {data.get('schema_version')}; "
                f"this kit reads {SCHEMA_VERSION}",
                hint=f"remove {self.path} (the fault history) and heal nodes by name",
            )
        return data

    def _save(self, data: dict[str, Any]) -> None:
        data["schema_version"] = SCHEMA_VERSION
        atomic_write(self.path, json.dumps(data, indent=2, sort_keys=True).encode())

    def all(self) -> list[Fault]:
        """Every fault in the registry, reverted ones included, oldest first."""
        return [Fault.from_dict(d) for d in self._load()["faults"]]

    def active(self) -> list[Fault]:
        """Faults not reverted yet, oldest first."""
        return [f for f in self.all() if f.active]

    def _add(
        self,
        kind: str,
        target: str,
        revert_at: float | None,
        reverted: bool,
        extra: dict[str, Any] | None = None,
        route: dict[str, Any] | None = None,
    ) -> Fault:
        now = self.clock()
        with self.state.lock():
            data = self._load()
            fault = Fault(
                id=f"f-{data['next_id']}",
                kind=kind,
                target=target,
                started_at=_iso(now),
                revert_at=_iso(revert_at) if revert_at is not None else None,
                reverted_at=_iso(now) if reverted else None,
                route=route,
            )
            data["next_id"] += 1
            data["faults"].append(fault.to_dict())
            if kind == "partition":
                # A machine is cut off with everything on it (the edge on its public agent).
                companions = self._topology_companions(target)
                network.add_partition(self.state, fault.id, [target, *companions])
            self._save(data)
        self.state.record_event(
            "fault.started",
            fault=fault.id,
            how=kind,
            target=target,
            revert_at=fault.revert_at,
            **(extra or {}),
        )
        if reverted:
            self.state.record_event("fault.reverted", fault=fault.id, how=kind, target=target)
        return fault

    def _topology_companions(self, node: str) -> list[str]:
        from playground.cluster import topology as topo_mod

        try:
            rec = self.state.read()
            return topo_mod.parse(rec["topology"]).host_companions(node)
        except Exception:  # no embedded cluster record (another backend): no companions
            return []

    def _mark_reverted(self, ids: set[str]) -> list[Fault]:
        if not ids:
            return []
        now = _iso(self.clock())
        done: list[Fault] = []
        with self.state.lock():
            data = self._load()
            for d in data["faults"]:
                if d["id"] in ids and d.get("reverted_at") is None:
                    d["reverted_at"] = now
                    done.append(Fault.from_dict(d))
            network.remove_partitions(self.state, {f.id for f in done if f.kind == "partition"})
            self._save(data)
        for f in done:
            self.state.record_event("fault.reverted", fault=f.id, how=f.kind, target=f.target)
        if any(f.kind == ROUTE for f in done):
            self._poke_edge()
        return done

    # ---- names ----------------------------------------------------------------------
    def leader(self, nodes: list[NodeInfo] | None = None) -> str:
        """The leading master's node name (from the backend's ``master`` endpoint)."""
        nodes = nodes if nodes is not None else self.backend.nodes()
        url = self.backend.endpoints().get("master") or ""
        hostport = url.split("://", 1)[-1].rstrip("/")
        for n in nodes:
            if n.role == "master" and hostport and n.address == hostport:
                return n.name
        raise FaultError(
            "no leading master (quorum lost, or every master is down)",
            hint="see `playground status`; `playground heal --all` starts the masters again",
        )

    def resolve(self, name: str, nodes: list[NodeInfo] | None = None) -> NodeInfo:
        """A node by name or shorthand: ``leader``, or a role with one node (``marathon``)."""
        nodes = nodes if nodes is not None else self.backend.nodes()
        if name == "leader":
            name = self.leader(nodes)
        for n in nodes:
            if n.name == name:
                return n
        single = [n for n in nodes if n.role == name]
        if len(single) == 1:
            return single[0]
        hint = "valid nodes: " + ", ".join(n.name for n in nodes) + "; shorthands: leader"
        roles = sorted({n.role for n in nodes if sum(m.role == n.role for m in nodes) == 1})
        if roles:
            hint += ", " + ", ".join(roles)
        raise FaultError(f"unknown node {name!r}", hint=hint)

    # ---- breaking -------------------------------------------------------------------
    def break_node(self, node: str, how: str = "crash", for_seconds: float | None = None) -> Fault:
        """Break one node; an active fault of the same kind on it is returned unchanged."""
        self.revert_due()
        return self._break(self.resolve(node), how, for_seconds)

    def _break(self, info: NodeInfo, how: str, for_seconds: float | None) -> Fault:
        if how not in KINDS:
            raise FaultError(f"unknown fault {how!r}", hint="valid faults: " + ", ".join(KINDS))
        if for_seconds is not None and for_seconds <= 0:
            raise FaultError(f"--for must be positive, not {for_seconds:g}")
        active = [f for f in self.active() if f.target == info.name]
        for f in active:
            if f.kind == how:
                return f
        if how == "agent-restart":
            if info.role not in AGENT_ROLES:
                raise FaultError(
                    f"agent-restart applies to agents; {info.name} is a {info.role}",
                    hint="use --how crash or --how stop",
                )
            if for_seconds is not None:
                raise FaultError(
                    "agent-restart reverts itself at once; --for does not apply",
                    hint="use --how crash or --how stop with --for",
                )
            if active or info.state != "running":
                raise FaultError(
                    f"{info.name} is not running, so its agent process cannot restart",
                    hint=f"`playground heal {info.name}` first",
                )
            self.backend.restart_agent_process(info.name)
            return self._add(how, info.name, None, reverted=True)
        if how == "partition":
            if not getattr(self.backend, "supports_partitions", False):
                raise FaultError(
                    f"the {self.backend.name} backend cannot partition nodes",
                    hint="partitions are made by the embedded cluster's networking layer",
                )
        elif how == "crash":
            self.backend.crash(info.name)
        else:
            self.backend.stop(info.name)
        revert_at = self.clock() + for_seconds if for_seconds is not None else None
        fault = self._add(how, info.name, revert_at, reverted=False)
        self._schedule(fault)
        return fault

    def _schedule(self, fault: Fault) -> None:
        """Have the backend revert a timed fault on time (the embedded one runs a reverter)."""
        schedule = getattr(self.backend, "schedule_reverts", None)
        if fault.revert_at is not None and schedule is not None:
            schedule()

    def break_zone(
        self, zone: str, how: str = "crash", for_seconds: float | None = None
    ) -> list[Fault]:
        """Break every agent of a zone (a zone outage)."""
        self.revert_due()
        nodes = self.backend.nodes()
        agents = [n for n in nodes if n.role in AGENT_ROLES and n.zone == zone]
        if not agents:
            zones = sorted({n.zone for n in nodes if n.role in AGENT_ROLES and n.zone})
            raise FaultError(
                f"no agents in zone {zone!r}", hint="zones with agents: " + ", ".join(zones)
            )
        return [self._break(n, how, for_seconds) for n in agents]

    def break_leader(self, for_seconds: float | None = None) -> Fault:
        """Crash the leading master."""
        self.revert_due()
        nodes = self.backend.nodes()
        return self._break(self.resolve(self.leader(nodes), nodes), "crash", for_seconds)

    def quorum(self, nodes: list[NodeInfo]) -> int:
        """The masters' quorum: the topology's, else a majority of the masters."""
        cluster = getattr(self.backend, "cluster", None)
        try:
            return int(cluster.topology().quorum)  # type: ignore[union-attr]
        except Exception:
            return sum(n.role == "master" for n in nodes) // 2 + 1

    def break_quorum(self, for_seconds: float | None = None) -> list[Fault]:
        """Crash masters (the leader first) until fewer than a quorum run."""
        self.revert_due()
        nodes = self.backend.nodes()
        quorum = self.quorum(nodes)
        running = [n for n in nodes if n.role == "master" and n.state == "running"]
        try:
            lead = self.leader(nodes)
        except FaultError:
            lead = None
        running.sort(key=lambda n: n.name != lead)
        out: list[Fault] = []
        while len(running) >= quorum and running:
            out.append(self._break(running.pop(0), "crash", for_seconds))
        return out

    # ---- route faults -----------------------------------------------------------------
    def _edge(self) -> EdgeClient:
        url = self.backend.endpoints().get("edge_stats")
        if not url:
            raise FaultError(
                "this cluster has no edge, so it has no routes to break",
                hint="the shipped topologies run edge-1 on the public agent",
            )
        return EdgeClient(str(url), timeout=5)

    def _poke_edge(self) -> None:
        """Have the edge re-read the route faults now (it also notices within a second;
        an edge that is down reads them when it starts)."""
        try:
            with self._edge() as edge:
                edge.reload_toxics()
        except (PlaygroundError, httpx.HTTPError):
            pass

    def break_route(
        self,
        app_id: str,
        toxics: list[dict[str, Any]],
        port: int | None = None,
        for_seconds: float | None = None,
    ) -> Fault:
        """Put toxics on an edge route: the app ``app_id`` as ``playground routes`` shows it
        (only its service port ``port`` when given). ``toxics`` are Toxiproxy's JSON
        (``type``, ``stream``, ``toxicity``, ``attributes``); the edge applies them to the
        data flowing on the route until the fault is reverted."""
        self.revert_due()
        if for_seconds is not None and for_seconds <= 0:
            raise FaultError(f"--for must be positive, not {for_seconds:g}")
        if not toxics:
            raise FaultError(
                "a route fault needs at least one toxic",
                hint="give --latency, --jitter, --loss, --bandwidth or --reset",
            )
        app_id = "/" + app_id.strip("/")
        for d in toxics:
            try:
                toxics_mod.Toxic.parse(d, app=app_id, port=port, name="check")
            except toxics_mod.ToxicError as exc:
                raise FaultError(str(exc), hint=exc.hint) from None
        target = app_id if port is None else f"{app_id}:{port}"
        try:
            with self._edge() as edge:
                status = edge.status()
                routes = edge.routes()
        except EdgeClientError as exc:
            raise FaultError(
                f"cannot break a route: {exc}",
                hint=exc.hint or "`playground status` shows whether edge-1 runs",
            ) from None
        if status.get("engine") != "proxy":
            raise FaultError(toxics_mod.NOT_ON_HAPROXY, hint=toxics_mod.NOT_ON_HAPROXY_HINT)
        ports = [r["service_port"] for r in routes if r["app"] == app_id]
        if not ports:
            served = sorted({str(r["app"]) for r in routes})
            raise FaultError(
                f"the edge serves no route for {app_id}",
                hint=(
                    "routes: " + ", ".join(served)
                    if served
                    else "no app is exposed: `playground expose APP_ID` puts one on the edge"
                ),
            )
        if port is not None and port not in ports:
            raise FaultError(
                f"{app_id} has no route on service port {port}",
                hint="its service ports: " + ", ".join(str(p) for p in sorted(ports)),
            )
        spec = {"app": app_id, "port": port, "toxics": [dict(d) for d in toxics]}
        revert_at = self.clock() + for_seconds if for_seconds is not None else None
        fault = self._add(ROUTE, target, revert_at, reverted=False, route=spec)
        self._poke_edge()
        self._schedule(fault)
        return fault

    def route_faults(self, route: str | None = None) -> list[Fault]:
        """Active route faults (of the app, or ``APP_ID:PORT``, ``route`` names)."""
        out = [f for f in self.active() if f.kind == ROUTE]
        if route is None:
            return out
        if ":" in route:
            app, _, port = route.rpartition(":")
            want = f"/{app.strip('/')}:{port}"
            return [f for f in out if f.target == want]
        app = "/" + route.strip("/")
        return [f for f in out if f.target.split(":", 1)[0] == app]

    def drain(
        self, node: str, for_seconds: float | None = None, max_grace: float | None = None
    ) -> Fault:
        """Drain an agent for maintenance (v1 ``DRAIN_AGENT``): it gets no offers, its tasks
        are killed (within ``max_grace`` seconds when given) and Marathon replaces them
        elsewhere. Healing the fault reactivates the agent (``REACTIVATE_AGENT``)."""
        self.revert_due()
        nodes = self.backend.nodes()
        info = self.resolve(node, nodes)
        if info.role not in AGENT_ROLES:
            raise FaultError(
                f"drain applies to agents; {info.name} is a {info.role}",
                hint="drain one of: " + ", ".join(n.name for n in nodes if n.role in AGENT_ROLES),
            )
        if for_seconds is not None and for_seconds <= 0:
            raise FaultError(f"--for must be positive, not {for_seconds:g}")
        for f in self.active():
            if f.target == info.name and f.kind == "drain":
                return f
        master = self._master()
        aid = self._registered_id(info, master)
        if aid is None:
            raise FaultError(
                f"{info.name} is not registered with the leading master, so it cannot drain",
                hint=f"`playground heal {info.name}` first, or see `playground status`",
            )
        call: dict[str, Any] = {"agent_id": {"value": aid}}
        if max_grace is not None:
            call["max_grace_period"] = {"nanoseconds": int(max_grace * 1e9)}
        self._operator(master, {"type": "DRAIN_AGENT", "drain_agent": call})
        revert_at = self.clock() + for_seconds if for_seconds is not None else None
        fault = self._add("drain", info.name, revert_at, reverted=False, extra={"agent_id": aid})
        self._schedule(fault)
        return fault

    def _master(self) -> str:
        master = (self.backend.endpoints().get("master") or "").rstrip("/")
        if not master:
            raise FaultError(
                "no leading master (quorum lost, or every master is down)",
                hint="`playground heal --all` first",
            )
        return master

    def _operator(
        self, master: str, call: dict[str, Any], ok_missing: bool = False
    ) -> httpx.Response:
        """A v1 operator call to the leading master; ``ok_missing``: a 404 is no error."""
        try:
            r = httpx.post(f"{master}/api/v1", json=call, timeout=10)
        except httpx.HTTPError as exc:
            raise FaultError(f"{call['type']} failed: {exc}") from None
        if r.status_code == 404 and ok_missing:
            return r
        if r.status_code >= 300:
            raise FaultError(f"{call['type']} failed: {r.status_code} {r.text.strip()}")
        return r

    def _reactivate(self, fault: Fault, nodes: list[NodeInfo]) -> None:
        info = next((n for n in nodes if n.name == fault.target), None)
        if info is None:
            return
        master = self._master()
        aid = self._registered_id(info, master)
        if aid is None:
            return  # not registered (crashed or rebuilt): nothing is deactivated any more
        call = {"type": "REACTIVATE_AGENT", "reactivate_agent": {"agent_id": {"value": aid}}}
        self._operator(master, call)

    # ---- healing --------------------------------------------------------------------
    def heal(self, node: str | None = None) -> list[Fault]:
        """Start the nodes of active faults again with their disks; mark the faults reverted.

        With ``node``, only that node (a node that is down without a recorded fault is
        started too). Nodes start in topology order (coordinator, masters, agents, Marathon).
        """
        nodes = self.backend.nodes()
        if node is None:
            return self._revert(self.active(), nodes)
        if node.startswith("/"):  # a route: its route faults
            return self._revert(self.route_faults(node), nodes)
        info = self.resolve(node, nodes)
        faults = [f for f in self.active() if f.target == info.name]
        if not faults and info.state != "running":
            self._start(info.name)
        return self._revert(faults, nodes)

    def revert(self, ids: set[str]) -> list[Fault]:
        """Revert the active faults with these ids (others are ignored)."""
        faults = [f for f in self.active() if f.id in ids]
        return self._revert(faults, self.backend.nodes()) if faults else []

    def revert_due(self) -> list[Fault]:
        """Revert the faults whose ``revert_at`` has passed."""
        now = self.clock()
        due = [f for f in self.active() if f.revert_at is not None and _epoch(f.revert_at) <= now]
        if not due:
            return []
        return self._revert(due, self.backend.nodes())

    def _revert(self, faults: list[Fault], nodes: list[NodeInfo]) -> list[Fault]:
        """Revert faults: end partitions first, then start the nodes that are down."""
        order = {n.name: i for i, n in enumerate(nodes)}
        down = [f for f in faults if f.kind in ("crash", "stop")]
        others = [f for f in faults if f.kind not in ("crash", "stop")]
        for f in others:
            if f.kind == "drain":
                self._reactivate(f, nodes)
        done = self._mark_reverted({f.id for f in others})
        targets = sorted({f.target for f in down}, key=lambda t: order.get(t, len(order)))
        for target in targets:
            self._start(target)
        return done + self._mark_reverted({f.id for f in down})

    def _start(self, node: str) -> None:
        """Start a node; if it stops at once, say why (from its log) and what to do."""
        try:
            self.backend.start(node)
        except PlaygroundError as exc:
            why = self._last_error(node)
            if why is None:
                raise
            hint = exc.hint
            if "marked gone" in why:
                hint = f"`playground rebuild {node}` brings it back with a clean disk and a new id"
            elif "DOWN for maintenance" in why:
                hint = f"`playground maintenance up {node}` ends its maintenance and starts it"
            raise FaultError(f"{exc}: {why}", hint=hint) from None

    def _last_error(self, node: str) -> str | None:
        """The last ERROR line of a node's log (its own words on why it stopped)."""
        try:
            lines = self.state.node_log(node).read_text(errors="replace").splitlines()[-50:]
        except OSError:
            return None
        for line in reversed(lines):
            if " ERROR " in line:
                return line.split(": ", 1)[-1].strip()
        return None

    # ---- rebuilding -----------------------------------------------------------------
    def rebuild(self, node: str, keep_disk: bool = False, wait: float = 20.0) -> Rebuild:
        """Bring a node back under the same name and address with one call.

        The node is crashed first if it runs. With ``keep_disk`` it starts again with its
        work directory: the same machine returning (an agent recovers with its agent id;
        tasks that died with the crash are reported lost). Without it, only agents: a
        replaced machine with a clean disk -- the old agent id is marked gone on the
        leading master (v1 ``MARK_AGENT_GONE``, so it can never re-register), the node's
        work directory is deleted and the agent registers with a new id. Masters, the
        coordinator and Marathon keep cluster state on their disks and are refused
        without ``keep_disk``. Active faults of the node are marked reverted. ``wait``:
        seconds to wait for an agent to register afterwards (0: do not wait).
        """
        self.revert_due()
        nodes = self.backend.nodes()
        info = self.resolve(node, nodes)
        is_agent = info.role in AGENT_ROLES
        if not keep_disk and not is_agent:
            raise FaultError(
                f"a clean-disk rebuild applies to agents; {info.name} is a {info.role} "
                "whose disk holds cluster state",
                hint=f"`playground rebuild {info.name} --keep-disk` restarts it with its disk",
            )
        master = None
        if is_agent and not keep_disk:
            master = (self.backend.endpoints().get("master") or "").rstrip("/")
            if not master:
                raise FaultError(
                    "no leading master to mark the old agent gone",
                    hint="`playground heal --all` first (quorum lost, or every master is down)",
                )
        old_id = self._agent_id(info, master) if is_agent else None
        crashed = info.state == "running"
        if crashed:
            self.backend.crash(info.name)
        if master is not None:
            if old_id is not None:
                self._mark_gone(master, old_id)
            work = (self.state.node_dir(info.name) / "work").resolve()
            if self.state.root.resolve() not in work.parents:
                raise FaultError(f"{work} is outside the state directory; not deleting it")
            shutil.rmtree(work, ignore_errors=True)
        self._start(info.name)
        reverted = self._mark_reverted({f.id for f in self.active() if f.target == info.name})
        new_id = self._wait_registered(info, old_id, keep_disk, wait) if is_agent else None
        result = Rebuild(
            info.name, keep_disk, crashed, old_id, new_id, sorted(f.id for f in reverted)
        )
        self.state.record_event(
            "fault.rebuilt",
            target=info.name,
            keep_disk=keep_disk,
            old_agent_id=old_id,
            agent_id=new_id,
            reverted=result.reverted,
        )
        return result

    def _agent_id(self, info: NodeInfo, master: str | None) -> str | None:
        """An agent's id: from its checkpoint in its work dir, else from the master."""
        meta = self.state.node_dir(info.name) / "work" / "meta" / "agent.json"
        try:
            aid = json.loads(meta.read_text()).get("agent_id")
        except (OSError, ValueError):
            aid = None
        if aid:
            return str(aid)
        return self._registered_id(info, master) if master else None

    def _registered_id(self, info: NodeInfo, master: str) -> str | None:
        """The id of the agent the master lists at the node's address, if any."""
        try:
            slaves = httpx.get(f"{master}/master/slaves", timeout=5).json()["slaves"]
        except (httpx.HTTPError, ValueError, KeyError):
            return None
        for s in slaves:
            if str(s.get("pid", "")).split("@", 1)[-1] == info.address:
                return str(s["id"])
        return None

    def _mark_gone(self, master: str, agent_id: str) -> None:
        call = {"type": "MARK_AGENT_GONE", "mark_agent_gone": {"agent_id": {"value": agent_id}}}
        self._operator(master, call, ok_missing=True)  # never admitted: nothing to mark

    def _wait_registered(
        self, info: NodeInfo, old_id: str | None, keep_disk: bool, wait: float
    ) -> str | None:
        deadline = time.monotonic() + wait
        while True:
            master = (self.backend.endpoints().get("master") or "").rstrip("/")
            aid = self._registered_id(info, master) if master else None
            if aid is not None and (keep_disk or aid != old_id):
                return aid
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.2)
