"""Cluster lifecycle: up (create, resume, repair), down, destroy, clean, status.

``up`` is idempotent: on a running cluster it changes nothing; on a stopped one it
resumes every node with its disk; on a half-broken one it starts what is missing and
says so. A failure half way tears down what this call started and names what failed.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from playground.cluster import addresses as addr_mod
from playground.cluster import auth, isolation, network, procs
from playground.cluster import topology as topo_mod
from playground.cluster.statedir import StateDir
from playground.errors import PlaygroundError

#: How long ``up`` waits for the cluster to become healthy (wall seconds).
UP_TIMEOUT = 60.0
START_ORDER = (
    "coordinator",
    "master",
    "storage",
    "agent",
    "public-agent",
    "marathon",
    "edge",
    "monitor",
)

Progress = Callable[[str], None]


class ClusterError(PlaygroundError):
    """A lifecycle operation failed."""


@dataclass
class UpResult:
    """What ``up`` did."""

    created: bool = False
    already_running: bool = False
    started: list[str] = field(default_factory=list)
    elapsed: float = 0.0


def _quiet(_: str) -> None:
    pass


class Cluster:
    """One embedded cluster, identified by its state directory."""

    def __init__(self, state_dir: Path | str) -> None:
        self.state = StateDir(state_dir)

    # ---- records --------------------------------------------------------------------
    def record(self) -> dict[str, Any]:
        return self.state.read()

    def topology(self) -> topo_mod.Topology:
        return topo_mod.parse(self.record()["topology"], source=str(self.state.cluster_file))

    def node_ref(self, rec: dict[str, Any], name: str) -> procs.ProcRef | None:
        n = rec.get("nodes", {}).get(name) or {}
        if n.get("pid") is None:
            return None
        return procs.ProcRef(int(n["pid"]), float(n.get("create_time", 0.0)))

    def node_alive(self, rec: dict[str, Any], name: str) -> bool:
        ref = self.node_ref(rec, name)
        return ref is not None and ref.alive()

    def address(self, rec: dict[str, Any], name: str) -> addr_mod.NodeAddress:
        a = rec["addresses"][name]
        return addr_mod.from_json(a)

    # ---- up -------------------------------------------------------------------------
    def create(self, topology: str, time_scale: float) -> dict[str, Any]:
        topo = topo_mod.load(topology)
        if time_scale < 1:
            raise ClusterError(
                f"--time-scale must be >= 1 (1 reproduces real timings), got {time_scale:g}"
            )
        mode, block, addrs = addr_mod.choose(topo, str(self.state.root))
        now = time.time()
        rec: dict[str, Any] = {
            "cluster_id": str(uuid.uuid4()),
            "name": topo.name,
            "topology": topo.raw,
            "topology_source": topo.source,
            "time_scale": time_scale,
            "clock_epoch": now,
            "created": now,
            "addressing": {"mode": mode, "block": block},
            "addresses": addr_mod.to_json(addrs),
            "desired": "running",
            "nodes": {n.name: {"role": n.role, "desired": "running"} for n in topo.nodes},
            # Who tasks run as when the agents are root (Marathon's --mesos_user).
            "task_user": topo.task_user,
        }
        self.state.write(rec)
        self.state.record_event("cluster.created", topology=topo.name, time_scale=time_scale)
        return rec

    def up(
        self,
        topology: str | None = None,
        time_scale: float | None = None,
        progress: Progress = _quiet,
        timeout: float = UP_TIMEOUT,
        edge_engine: str | None = None,
    ) -> UpResult:
        """Start (or resume, or repair) the cluster and wait until it is healthy."""
        t0 = time.monotonic()
        result = UpResult()
        with self.state.lock():
            if not self.state.exists():
                progress(
                    f"creating cluster in {self.state.root} (topology {topology or 'default'})"
                )
                rec = self.create(
                    topology or "default", time_scale if time_scale is not None else 10.0
                )
                result.created = True
            else:
                rec = self.record()
                if topology is not None and topology not in (
                    rec["name"],
                    rec.get("topology_source"),
                ):
                    raise ClusterError(
                        f"this state directory holds a '{rec['name']}' cluster, not '{topology}'",
                        hint="run `playground destroy` first, or use another --state-dir",
                    )
                if time_scale is not None and float(time_scale) != float(rec["time_scale"]):
                    rec["time_scale"] = float(time_scale)
                    progress(f"time scale set to {time_scale:g}")
            if edge_engine is not None and edge_engine != rec.get("edge_engine"):
                if edge_engine == "haproxy" and shutil.which("haproxy") is None:
                    raise ClusterError(
                        "--edge-engine haproxy needs HAProxy, which is not installed",
                        hint="install Debian's package (`apt install haproxy`), or use the "
                        "kit's proxy (the default)",
                    )
                rec["edge_engine"] = edge_engine
                self.state.write(rec)
                edge_alive = [
                    n.name
                    for n in topo_mod.parse(rec["topology"]).by_role("edge")
                    if self.node_alive(rec, n.name)
                ]
                if edge_alive:
                    progress(
                        "edge engine set to " + edge_engine + "; restart the edge "
                        "(`playground rebuild edge-1 --keep-disk`) to switch"
                    )
                else:
                    progress(f"edge engine: {edge_engine}")
            topo = topo_mod.parse(rec["topology"], source=str(self.state.cluster_file))
            # The platform token: in the secret store only (never cluster.json or logs).
            auth.ensure_token(self.state.root)
            missing = [n for n in topo.nodes if not self.node_alive(rec, n.name)]
            if missing:
                task_user = str(rec.get("task_user") or topo.task_user)
                for problem, fix in isolation.task_user_problems(task_user, self.state.root):
                    progress(f"warning: {problem}; {fix}")
            if not missing:
                result.already_running = True
            else:
                if not result.created and len(missing) < len(topo.nodes):
                    progress(
                        "cluster is partly running; starting " + ", ".join(n.name for n in missing)
                    )
                elif not result.created:
                    progress("resuming stopped cluster")
                self._check_addresses(rec, missing)
                rec["desired"] = "running"
                started: list[str] = []
                try:
                    for role in START_ORDER:
                        for spec in [n for n in missing if n.role == role]:
                            ref = self._start_node(rec, spec.name)
                            started.append(spec.name)
                            progress(f"started {spec.name} (pid {ref.pid})")
                    self.state.write(rec)
                except Exception as exc:
                    self._teardown(rec, started)
                    raise ClusterError(
                        f"starting the cluster failed: {exc}", hint=self._log_hint(started)
                    ) from exc
                result.started = started
        try:
            self.wait_healthy(timeout=timeout, progress=progress)
        except ClusterError as exc:
            if result.started:
                with self.state.lock():
                    rec = self.record()
                    self._teardown(rec, result.started)
                    self.state.write(rec)
                exc.hint = (
                    exc.hint + "; " if exc.hint else ""
                ) + "started nodes were stopped again"
            raise
        result.elapsed = time.monotonic() - t0
        self.state.record_event("cluster.up", started=result.started, elapsed=result.elapsed)
        return result

    def _log_hint(self, names: list[str]) -> str:
        if not names:
            return "see `playground doctor`"
        return f"see `playground logs {names[-1]}` and `playground doctor`"

    def _check_addresses(self, rec: dict[str, Any], nodes: list[topo_mod.NodeSpec]) -> None:
        for spec in nodes:
            a = self.address(rec, spec.name)
            if not addr_mod.port_free(a.host, a.port):
                raise ClusterError(
                    f"{spec.name}'s address {a.hostport} is taken by another process",
                    hint="another cluster or program uses it: stop it, or `playground destroy` this one and start again",
                )
        # The DNS beside each master starting now (mesos-dns's ports on its address).
        topo = topo_mod.parse(rec["topology"])
        starting = {s.name: self.address(rec, s.name) for s in nodes if s.role == "master"}
        addressing = rec.get("addressing", {})
        for where in addr_mod.dns_ports_taken(
            topo, starting, addressing.get("mode", "per-ip"), addressing.get("block", 0)
        ):
            raise ClusterError(
                f"the DNS address {where} of a master is taken by another process",
                hint="another cluster or program uses it: stop it, or `playground destroy` this one and start again",
            )

    def _start_node(self, rec: dict[str, Any], name: str) -> procs.ProcRef:
        log = self.state.node_log(name)
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600), "a") as fh:
            fh.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting {name}\n")
        ref = procs.spawn_detached(self.state.root, name, log)
        node = rec["nodes"].setdefault(name, {})
        node.update(
            {
                "pid": ref.pid,
                "create_time": ref.create_time,
                "desired": "running",
                "started": time.time(),
            }
        )
        return ref

    def start_node(self, name: str, timeout: float = 20.0) -> procs.ProcRef:
        """Start one node (if it is not running), record it and wait until it answers."""
        with self.state.lock():
            rec = self.record()
            self.topology().node(name)
            ref = self.node_ref(rec, name)
            if ref is not None and ref.alive():
                return ref
            ref = self._start_node(rec, name)
            self.state.write(rec)
        self.wait_node_ready(name, ref, timeout)
        return ref

    def wait_node_ready(self, name: str, ref: procs.ProcRef, timeout: float = 20.0) -> None:
        """Wait until a node's HTTP API answers ``/health``; fail if its process exits."""
        url = self.address(self.record(), name).url + "/health"
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=1.0) as client:
            while True:
                if not ref.alive():
                    raise ClusterError(
                        f"node {name} exited while starting", hint=f"see `playground logs {name}`"
                    )
                try:
                    if client.get(url).status_code < 500:
                        return
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise ClusterError(
                        f"node {name} did not answer within {timeout:.0f}s",
                        hint=f"see `playground logs {name}`",
                    )
                time.sleep(0.05)

    def _teardown(self, rec: dict[str, Any], names: list[str]) -> None:
        for name in reversed(names):
            ref = self.node_ref(rec, name)
            procs.terminate(procs.tree(ref, self.state.root, name), grace=0.5)
            rec["nodes"][name]["pid"] = None

    # ---- health ---------------------------------------------------------------------
    def health(self, client: httpx.Client | None = None) -> dict[str, Any]:
        """Probe every node once: which are up, who leads, which agents are registered."""
        rec = self.record()
        topo = topo_mod.parse(rec["topology"])
        own = client is None
        client = client or httpx.Client(timeout=2.0)
        try:
            leader: str | None = None
            registered: set[str] = set()
            for m in topo.masters:
                if not self.node_alive(rec, m.name):
                    continue
                try:
                    r = client.get(
                        f"{self.address(rec, m.name).url}/master/state", follow_redirects=False
                    )
                except httpx.HTTPError:
                    continue
                if r.status_code == 200:
                    leader = m.name
                    for s in r.json().get("slaves", []):
                        if s.get("active"):
                            registered.add(str(s["hostname"]))
                    break
            agents = {a.name: self.address(rec, a.name).host in registered for a in topo.agents}
            if rec.get("addressing", {}).get("mode") == "shared-ip":
                # All agents share one hostname: count registrations by their API ports instead.
                agents = {a.name: self.node_alive(rec, a.name) for a in topo.agents}
            return {"leader": leader, "agents_registered": agents}
        finally:
            if own:
                client.close()

    def wait_healthy(self, timeout: float = UP_TIMEOUT, progress: Progress = _quiet) -> None:
        """Wait until a leader is elected and every agent that should run is registered."""
        deadline = time.monotonic() + timeout
        said: set[str] = set()
        with httpx.Client(timeout=2.0) as client:
            while True:
                rec = self.record()
                topo = topo_mod.parse(rec["topology"])
                dead = [
                    n.name
                    for n in topo.nodes
                    if rec["nodes"].get(n.name, {}).get("desired") == "running"
                    and not self.node_alive(rec, n.name)
                ]
                if dead:
                    raise ClusterError(
                        f"node {dead[0]} exited during start-up",
                        hint=f"see `playground logs {dead[0]}`",
                    )
                h = self.health(client)
                if h["leader"] and "leader" not in said:
                    progress(f"leading master: {h['leader']}")
                    said.add("leader")
                wanted = [
                    a
                    for a, ok in h["agents_registered"].items()
                    if rec["nodes"].get(a, {}).get("desired") == "running"
                ]
                if h["leader"] and all(h["agents_registered"][a] for a in wanted):
                    return
                if time.monotonic() > deadline:
                    waiting = [a for a in wanted if not h["agents_registered"][a]]
                    what = (
                        "no leading master"
                        if not h["leader"]
                        else "agents not registered: " + ", ".join(waiting)
                    )
                    culprit = waiting[0] if waiting and h["leader"] else topo.masters[0].name
                    tail = _tail(self.state.node_log(culprit))
                    raise ClusterError(
                        f"the cluster did not become healthy in {timeout:.0f}s ({what})"
                        + (f"; last lines of {culprit}'s log:\n{tail}" if tail else ""),
                        hint=f"see `playground status` and `playground logs {culprit}`",
                    )
                time.sleep(0.05)

    # ---- down / destroy / clean -----------------------------------------------------
    def down(self, progress: Progress = _quiet) -> list[str]:
        """Stop every process of the cluster (nodes, executors, tasks); keep the state."""
        with self.state.lock():
            rec = self.record()
            topo = topo_mod.parse(rec["topology"])
            trees = procs.cluster_trees(
                self.state.root, {spec.name: self.node_ref(rec, spec.name) for spec in topo.nodes}
            )
            everything: dict[int, Any] = {}
            stopped = []
            for spec in topo.nodes:
                tree = trees.get(spec.name, [])
                if any(p.pid == (rec["nodes"][spec.name].get("pid") or -1) for p in tree):
                    stopped.append(spec.name)
                for p in tree:
                    everything[p.pid] = p
                rec["nodes"][spec.name].update({"pid": None, "desired": "stopped"})
            for tree in trees.values():
                for p in tree:
                    everything[p.pid] = p
            survivors = procs.terminate(list(everything.values()), grace=0.5)
            rec["desired"] = "stopped"
            self.state.write(rec)
            self.state.record_event("cluster.down", stopped=stopped)
            if survivors:
                raise ClusterError(
                    f"{len(survivors)} process(es) did not stop: "
                    + ", ".join(str(p.pid) for p in survivors)
                )
            for name in stopped:
                progress(f"stopped {name}")
            return stopped

    def destroy(self, progress: Progress = _quiet) -> None:
        """Stop everything and remove the state directory."""
        if self.state.exists():
            self.down(progress)
        leftovers = procs.find_marked(self.state.root)
        procs.terminate(leftovers)
        if self.state.root.exists():
            shutil.rmtree(self.state.root)
            progress(f"removed {self.state.root}")

    def clean(self, everything: bool = False) -> list[int]:
        """End processes left behind by a crashed or interrupted run; return their PIDs."""
        found = procs.find_marked(None if everything else self.state.root)
        if self.state.exists() and not everything:
            rec = self.record()
            alive = {
                n
                for n in rec.get("nodes", {})
                if self.node_alive(rec, n) and rec["nodes"][n].get("desired") == "running"
            }
            # A running cluster's own processes are not leftovers.
            if alive and rec.get("desired") == "running":
                found = []
        pids = [p.pid for p in found]
        procs.terminate(found)
        return pids

    # ---- status ---------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """Nodes, leader, frameworks, task counts and time scale (``status --json``)."""
        rec = self.record()
        topo = topo_mod.parse(rec["topology"])
        info: dict[str, Any] = {
            "state_dir": str(self.state.root),
            "cluster_id": rec["cluster_id"],
            "topology": rec["name"],
            "time_scale": rec["time_scale"],
            "addressing": rec.get("addressing", {}).get("mode"),
            "desired": rec.get("desired"),
            "endpoints": {
                "coordinator": self.address(rec, topo.by_role("coordinator")[0].name).url
            },
            "leader": None,
            "frameworks": [],
            "tasks": {},
            "nodes": [],
        }
        state: dict[str, Any] | None = None
        with httpx.Client(timeout=2.0) as client:
            for m in topo.masters:
                if not self.node_alive(rec, m.name):
                    continue
                try:
                    r = client.get(f"{self.address(rec, m.name).url}/master/state")
                except httpx.HTTPError:
                    continue
                if r.status_code == 200:
                    state = r.json()
                    info["leader"] = m.name
                    info["endpoints"]["master"] = self.address(rec, m.name).url
                    break
        if "master" not in info["endpoints"]:
            info["endpoints"]["master"] = None
        for m in topo.by_role("marathon"):
            info["endpoints"]["marathon"] = self.address(rec, m.name).url
        for m in topo.by_role("monitor"):
            info["endpoints"]["monitor"] = self.address(rec, m.name).url
        for m in topo.by_role("storage"):
            info["endpoints"]["storage"] = self.address(rec, m.name).url
        for m in topo.by_role("edge")[:1]:
            edge = self.address(rec, m.name)
            info["endpoints"]["edge"] = edge.host
            info["endpoints"]["edge_http"] = f"http://{edge.host}:{edge.port_of('http')}"
            info["endpoints"]["edge_stats"] = edge.url
        info["endpoints"].update(self.dns_endpoints(rec, topo, info["leader"]))
        partitioned = {
            n for p in network.read_table(self.state)["partitions"] for n in p.get("nodes", [])
        }
        registered = {}
        if state is not None:
            for s in state.get("slaves", []):
                registered[s["pid"].split("@", 1)[1]] = s
            counts: dict[str, int] = {}
            for fw in state.get("frameworks", []):
                info["frameworks"].append(
                    {
                        "id": fw["id"],
                        "name": fw["name"],
                        "active": fw["active"],
                        "tasks": len(fw["tasks"]),
                    }
                )
                for t in fw["tasks"] + fw.get("unreachable_tasks", []):
                    counts[t["state"]] = counts.get(t["state"], 0) + 1
            info["tasks"] = counts
        for spec in topo.nodes:
            a = self.address(rec, spec.name)
            n = rec["nodes"].get(spec.name, {})
            alive = self.node_alive(rec, spec.name)
            if alive:
                st = "running"
            elif n.get("desired") == "stopped" or rec.get("desired") == "stopped":
                st = "stopped"
            else:
                st = "crashed"
            node = {
                "name": spec.name,
                "role": spec.role,
                "zone": spec.zone,
                "rack": spec.rack,
                "region": spec.region,
                "address": a.hostport,
                "pid": n.get("pid") if alive else None,
                "state": st,
            }
            if spec.is_agent:
                s = registered.get(a.hostport)
                node["agent_id"] = s["id"] if s else None
                node["registered"] = bool(s and s.get("active"))
                node["tasks"] = _agent_task_count(state, s["id"]) if s and state else 0
            if spec.role == "master":
                node["leading"] = info["leader"] == spec.name
            if spec.role == "marathon":
                # Subscribed to the leading master (the master's view of the framework).
                node["connected"] = alive and any(
                    fw["name"] == "marathon" and fw["active"] for fw in info["frameworks"]
                )
            node["partitioned"] = spec.name in partitioned
            info["nodes"].append(node)
        return info

    def dns_endpoints(
        self, rec: dict[str, Any], topo: topo_mod.Topology, leader: str | None
    ) -> dict[str, str | None]:
        """``dns`` (``host:port``) and ``dns_http`` (URL) of the DNS beside the leading
        master, or beside the first running master when no leader is known."""
        masters = [m.name for m in topo.masters]
        running = [n for n in masters if self.node_alive(rec, n)]
        name = leader if leader in masters else (running[0] if running else None)
        if name is None:
            return {"dns": None, "dns_http": None}
        host = self.address(rec, name).host
        dns, http = addr_mod.dns_ports(rec.get("addressing", {}), masters.index(name))
        return {"dns": f"{host}:{dns}", "dns_http": f"http://{host}:{http}"}

    def logs_path(self, name: str) -> Path:
        self.topology().node(name)
        return self.state.node_log(name)


def _tail(path: Path, lines: int = 8) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _agent_task_count(state: dict[str, Any] | None, agent_id: str) -> int:
    if state is None:
        return 0
    return sum(
        1 for fw in state.get("frameworks", []) for t in fw["tasks"] if t["slave_id"] == agent_id
    )


def dumps(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=True)
