"""The Mesos master: leader election, agents, frameworks, offers and the HTTP APIs.

It reproduces what Mesos 1.11 shows a framework and an operator: the v1 scheduler API
(``POST /api/v1/scheduler``, RecordIO event stream), the v1 operator API
(``POST /api/v1``), and the JSON endpoints (``/master/state``, ``/master/slaves``, ...).
Agents talk to it with JSON messages named as Mesos names them.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import json
import logging
import random
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from playground import MESOS_VERSION
from playground.cluster import addresses as addr_mod
from playground.cluster.httpserver import json_response, read_json, run_app, supervise
from playground.cluster.node import NodeContext
from playground.dns.server import DnsService
from playground.l4lb.server import L4lb
from playground.mesos import constants as C
from playground.mesos import maintenance, persistence
from playground.mesos.recordio import encode as recordio_encode
from playground.mesos.resources import Resources, attributes_flat
from playground.mesos.transport import MessageError, Transport, internal_messages_guard

log = logging.getLogger("playground.master")

MIN_CPUS = 0.01
MIN_MEM = 32.0
MAX_COMPLETED_TASKS = 1000
MAX_COMPLETED_FRAMEWORKS = 50


class CallError(Exception):
    """A scheduler or operator call is refused with an HTTP status and a message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# --------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------


@dataclass
class TaskRec:
    info: dict[str, Any]  # the TaskInfo as launched (v1 JSON)
    framework_id: str
    agent_id: str
    state: str = "TASK_STAGING"
    status: dict[str, Any] | None = None  # the latest TaskStatus (v1 JSON)
    statuses: list[dict[str, Any]] = field(default_factory=list)
    unreachable_time: float | None = None

    @property
    def id(self) -> str:
        return str(self.info["task_id"]["value"])

    @property
    def resources(self) -> Resources:
        return Resources.from_v1(self.info.get("resources", []))

    @property
    def role(self) -> str:
        for r in self.info.get("resources", []):
            role = (r.get("allocation_info") or {}).get("role")
            if role:
                return str(role)
        return "*"

    def v1(self) -> dict[str, Any]:
        """A v1 ``Task`` (operator API)."""
        out: dict[str, Any] = {
            "name": self.info.get("name", ""),
            "task_id": {"value": self.id},
            "framework_id": {"value": self.framework_id},
            "agent_id": {"value": self.agent_id},
            "state": self.state,
            "resources": self.info.get("resources", []),
            "statuses": [s for s in self.statuses],
        }
        if self.status is not None:
            out["status_update_state"] = self.state
            if "uuid" in self.status:
                out["status_update_uuid"] = self.status["uuid"]
        for key in ("labels", "discovery", "container", "health_check", "kill_policy", "limits"):
            if key in self.info:
                out[key] = self.info[key]
        if self.unreachable_time is not None:
            out["unreachable_time"] = C.time_info(self.unreachable_time)
        return out

    def v0(self) -> dict[str, Any]:
        """The task as ``/master/state`` and ``/master/tasks`` show it."""
        out: dict[str, Any] = {
            "id": self.id,
            "name": self.info.get("name", ""),
            "framework_id": self.framework_id,
            "executor_id": "",
            "slave_id": self.agent_id,
            "state": self.state,
            "resources": self.resources.to_flat(),
            "role": self.role,
            "statuses": [
                {
                    "state": s["state"],
                    "timestamp": s.get("timestamp", 0.0),
                    **({"healthy": s["healthy"]} if "healthy" in s else {}),
                    **(
                        {"container_status": s["container_status"]}
                        if "container_status" in s
                        else {}
                    ),
                }
                for s in self.statuses
            ],
        }
        if "labels" in self.info:
            out["labels"] = (self.info["labels"] or {}).get("labels", [])
        for key in ("discovery", "container", "health_check"):
            if key in self.info:
                out[key] = self.info[key]
        if self.unreachable_time is not None:
            out["unreachable_time"] = C.time_info(self.unreachable_time)
        return out


@dataclass
class AgentRec:
    info: dict[str, Any]  # v1 AgentInfo including id
    pid: str
    url: str
    version: str
    registered_time: float
    reregistered_time: float | None = None
    active: bool = True
    missed_pings: int = 0
    tasks: dict[str, TaskRec] = field(default_factory=dict)
    offered: Resources = field(default_factory=Resources)
    capabilities: list[dict[str, Any]] = field(default_factory=list)
    deactivated: bool = False  # DEACTIVATE_AGENT / DRAIN_AGENT: no offers
    drain_info: dict[str, Any] | None = None  # DRAIN_AGENT: {"state", "config"}
    #: Dynamic reservations and persistent volumes (the agent checkpoints and re-reports them).
    checkpointed: Resources = field(default_factory=Resources)

    @property
    def id(self) -> str:
        return str(self.info["id"]["value"])

    @property
    def hostname(self) -> str:
        return str(self.info["hostname"])

    @property
    def machine(self) -> maintenance.MachineKey:
        """The machine this agent runs on, as maintenance schedules name it."""
        return (self.hostname.lower(), _split_hostport(self.pid)[0])

    @property
    def total(self) -> Resources:
        static = Resources.from_v1(self.info.get("resources", []))
        return persistence.total_with(static, self.checkpointed)

    @property
    def used(self) -> Resources:
        out = Resources()
        for t in self.tasks.values():
            if not C.is_terminal(t.state) and t.state != "TASK_UNREACHABLE":
                out = out + t.resources
        return out

    def available(self) -> Resources:
        return self.total - self.used - self.offered

    def used_by(self, framework_id: str) -> Resources:
        out = Resources()
        for t in self.tasks.values():
            if t.framework_id == framework_id and not C.is_terminal(t.state):
                out = out + t.resources
        return out

    def v0(self) -> dict[str, Any]:
        total = self.total
        reserved = Resources(r for r in total if r.role != "*")
        unreserved = Resources(r for r in total if r.role == "*")
        reserved_by_role: dict[str, dict[str, Any]] = {}
        for r in reserved:
            reserved_by_role.setdefault(r.role, {})
        for role in reserved_by_role:
            reserved_by_role[role] = Resources(r for r in reserved if r.role == role).to_flat()
        _host, _, port = self.pid.partition("@")[2].partition(":")
        out: dict[str, Any] = {
            "id": self.id,
            "pid": self.pid,
            "hostname": self.hostname,
            "port": int(self.info.get("port", port or 5051)),
            "registered_time": self.registered_time,
            "resources": total.to_flat(),
            "used_resources": self.used.to_flat(),
            "offered_resources": self.offered.to_flat(),
            "reserved_resources": reserved_by_role,
            "unreserved_resources": unreserved.to_flat(),
            "attributes": attributes_flat(self.info.get("attributes", [])),
            "active": self.active,
            "deactivated": self.deactivated,
            "version": self.version,
            "capabilities": [c["type"] for c in self.capabilities],
            "reserved_resources_full": {
                role: [r.to_v1() for r in reserved if r.role == role] for role in reserved_by_role
            },
            "unreserved_resources_full": unreserved.to_v1(),
            "used_resources_full": self.used.to_v1(),
            "offered_resources_full": self.offered.to_v1(),
        }
        if self.reregistered_time is not None:
            out["reregistered_time"] = self.reregistered_time
        if "domain" in self.info:
            out["domain"] = self.info["domain"]
        if self.drain_info is not None:
            out["drain_info"] = self.drain_info
        return out

    def v1(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "agent_info": self.info,
            "active": self.active,
            "deactivated": self.deactivated,
            "version": self.version,
            "pid": self.pid,
            "registered_time": C.time_info(self.registered_time),
            "total_resources": self.total.to_v1(),
            "allocated_resources": self.used.to_v1(),
            "offered_resources": self.offered.to_v1(),
            "capabilities": self.capabilities,
        }
        if self.reregistered_time is not None:
            out["reregistered_time"] = C.time_info(self.reregistered_time)
        if self.drain_info is not None:
            out["drain_info"] = self.drain_info
        return out


@dataclass
class OfferRec:
    id: str
    framework_id: str
    agent_id: str
    role: str
    resources: Resources


@dataclass
class FrameworkRec:
    id: str
    info: dict[str, Any]
    registered_time: float
    reregistered_time: float | None = None
    unregistered_time: float | None = None
    connected: bool = False
    active: bool = False
    recovered: bool = False
    stream_id: str | None = None
    queue: asyncio.Queue[dict[str, Any] | None] | None = None
    offers: set[str] = field(default_factory=set)
    tasks: dict[str, TaskRec] = field(default_factory=dict)
    completed_tasks: deque[TaskRec] = field(
        default_factory=lambda: deque(maxlen=MAX_COMPLETED_TASKS)
    )
    filters: dict[str, float] = field(default_factory=dict)  # agent id -> monotonic expiry
    suppressed: set[str] = field(default_factory=set)
    failover_task: asyncio.Task[None] | None = None

    @property
    def roles(self) -> list[str]:
        roles = self.info.get("roles")
        if roles:
            return [str(r) for r in roles]
        return [str(self.info.get("role", "*"))]

    @property
    def partition_aware(self) -> bool:
        return any(c.get("type") == "PARTITION_AWARE" for c in self.info.get("capabilities", []))

    def has_capability(self, name: str) -> bool:
        return any(c.get("type") == name for c in self.info.get("capabilities", []))

    def send(self, event: dict[str, Any]) -> bool:
        if self.queue is None or not self.connected:
            return False
        self.queue.put_nowait(event)
        return True

    def v0(self, master: Master, completed: bool = False) -> dict[str, Any]:
        used = Resources()
        offered = Resources()
        live = [t for t in self.tasks.values() if t.state != "TASK_UNREACHABLE"]
        for t in live:
            used = used + t.resources
        for oid in self.offers:
            if oid in master.offers:
                offered = offered + master.offers[oid].resources
        out: dict[str, Any] = {
            "id": self.id,
            "name": self.info.get("name", ""),
            "pid": "",
            "used_resources": used.to_flat(),
            "offered_resources": offered.to_flat(),
            "capabilities": [c.get("type") for c in self.info.get("capabilities", [])],
            "hostname": self.info.get("hostname", ""),
            "webui_url": self.info.get("webui_url", ""),
            "active": self.active,
            "connected": self.connected,
            "recovered": self.recovered,
            "user": self.info.get("user", ""),
            "failover_timeout": float(self.info.get("failover_timeout", 0.0)),
            "checkpoint": bool(self.info.get("checkpoint", False)),
            "registered_time": self.registered_time,
            "unregistered_time": self.unregistered_time or 0.0,
            "principal": self.info.get("principal", ""),
            "resources": used.to_flat(),
            "role": self.roles[0],
            "roles": self.roles,
            "tasks": [t.v0() for t in live],
            "unreachable_tasks": [
                t.v0() for t in self.tasks.values() if t.state == "TASK_UNREACHABLE"
            ],
            "completed_tasks": [t.v0() for t in self.completed_tasks],
            "offers": [
                master.offer_v0(master.offers[o]) for o in self.offers if o in master.offers
            ],
            "executors": [],
        }
        if self.reregistered_time is not None:
            out["reregistered_time"] = self.reregistered_time
        if completed:
            out["active"] = False
            out["connected"] = False
        return out

    def v1(self, master: Master) -> dict[str, Any]:
        offered = Resources()
        for oid in self.offers:
            if oid in master.offers:
                offered = offered + master.offers[oid].resources
        used = Resources()
        for t in self.tasks.values():
            if t.state != "TASK_UNREACHABLE":
                used = used + t.resources
        out: dict[str, Any] = {
            "framework_info": self.info,
            "active": self.active,
            "connected": self.connected,
            "recovered": self.recovered,
            "registered_time": C.time_info(self.registered_time),
            "offers": [
                master.offer_v1(master.offers[o]) for o in self.offers if o in master.offers
            ],
            "allocated_resources": used.to_v1(),
            "offered_resources": offered.to_v1(),
        }
        if self.reregistered_time is not None:
            out["reregistered_time"] = C.time_info(self.reregistered_time)
        if self.unregistered_time is not None:
            out["unregistered_time"] = C.time_info(self.unregistered_time)
        return out


# --------------------------------------------------------------------------------------
# The master
# --------------------------------------------------------------------------------------


class Master:
    def __init__(self, ctx: NodeContext) -> None:
        self.ctx = ctx
        self.ts = ctx.time
        self.id = str(uuid.uuid4())
        self.start_time = time.time()
        self.elected_time: float | None = None
        self.leading = False
        self.l4lb: L4lb | None = None
        self.leader: dict[str, Any] | None = None  # leader_data from the coordinator
        self.epoch = 0
        self.transport = Transport(ctx.name, ctx.token)
        self.agents: dict[str, AgentRec] = {}
        self.unreachable: dict[str, float] = {}  # agent id -> time marked unreachable
        self.gone: dict[str, float] = {}
        self.schedule = maintenance.Schedule()
        self.drains: dict[str, dict[str, Any]] = {}  # agent id -> drain_info (DRAIN_AGENT)
        self.deactivated: set[str] = set()  # agent ids (DEACTIVATE_AGENT or draining)
        self.registry_agents: dict[str, dict[str, Any]] = {}
        self.frameworks: dict[str, FrameworkRec] = {}
        self.completed_frameworks: deque[FrameworkRec] = deque(maxlen=MAX_COMPLETED_FRAMEWORKS)
        self.offers: dict[str, OfferRec] = {}
        self.framework_seq = 0
        self.offer_seq = 0
        self.agent_seq = 0
        self.allocate_now = asyncio.Event()
        self.counters: dict[str, int] = {
            "messages_register_slave": 0,
            "messages_reregister_slave": 0,
            "messages_status_update": 0,
            "messages_launch_tasks": 0,
            "messages_kill_task": 0,
            "valid_status_updates": 0,
            "invalid_status_updates": 0,
            "slave_registrations": 0,
            "slave_reregistrations": 0,
            "slave_removals": 0,
            "slave_unreachable_scheduled": 0,
            "slave_unreachable_completed": 0,
        }
        self.task_state_counts: dict[str, int] = {s: 0 for s in C.TASK_STATES}
        self.bg: set[asyncio.Task[Any]] = set()

    # ---- identity -------------------------------------------------------------------
    @property
    def pid(self) -> str:
        return f"master@{self.ctx.address.host}:{self.ctx.address.port}"

    def master_info(self) -> dict[str, Any]:
        a = self.ctx.address
        return {
            "id": self.id,
            "ip": _ip_to_int(a.host),
            "port": a.port,
            "pid": self.pid,
            "hostname": a.host,
            "version": MESOS_VERSION,
            "address": {"hostname": a.host, "ip": a.host, "port": a.port},
            "domain": {
                "fault_domain": {
                    "region": {"name": self.ctx.topology.region},
                    "zone": {"name": "a"},
                }
            },
        }

    def spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self.bg.add(task)
        task.add_done_callback(self.bg.discard)

    # ---- leadership -----------------------------------------------------------------
    async def election_loop(self) -> None:
        ttl = self.ts.wall(C.ZK_SESSION_TIMEOUT, 1.0)
        period = max(ttl / 4, 0.1)
        url = f"{self.ctx.coordinator_url}/v1/election/mesos/heartbeat"
        data = {
            "id": self.id,
            "pid": self.pid,
            "url": self.ctx.address.url,
            "name": self.ctx.name,
            "hostport": self.ctx.address.hostport,
        }
        last_ok = time.monotonic()
        while not self.ctx.stop.is_set():
            try:
                view = await self.transport.post(
                    url, {"member": self.ctx.name, "data": data, "ttl": ttl}, timeout=max(ttl, 1.0)
                )
                last_ok = time.monotonic()
                await self.on_election_view(view)
            except MessageError as exc:
                # The session with the coordinator is lost once its TTL passes without a heartbeat.
                if time.monotonic() - last_ok > ttl and (self.leading or self.leader):
                    log.warning("lost contact with the coordinator (%s): no leader known", exc)
                    await self.on_election_view(
                        {"leader": None, "leader_data": None, "epoch": self.epoch}
                    )
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.ctx.stop.wait(), period)

    async def on_election_view(self, view: dict[str, Any]) -> None:
        self.leader = view.get("leader_data")
        leading = view.get("leader") == self.ctx.name
        if leading and not self.leading:
            self.epoch = int(view.get("epoch", 0))
            await self.become_leader()
        elif not leading and self.leading:
            self.demote()

    async def become_leader(self) -> None:
        log.info("elected leading master (epoch %d)", self.epoch)
        # Read the registry before taking registrations: an agent admitted while it loads
        # would get an id the loaded sequence hands out again.
        await self.load_registry()
        self.leading = True
        self.elected_time = time.time()
        self.ctx.state.record_event("master.elected", node=self.ctx.name, master_id=self.id)
        self.spawn(self.reregistration_deadline())
        self.allocate_now.set()

    def demote(self) -> None:
        log.warning("no longer the leading master; dropping in-memory state")
        self.leading = False
        self.ctx.state.record_event("master.demoted", node=self.ctx.name, master_id=self.id)
        for fw in self.frameworks.values():
            if fw.queue is not None:
                fw.queue.put_nowait(None)
        self.frameworks.clear()
        self.agents.clear()
        self.offers.clear()

    def leader_url(self) -> str | None:
        if self.leader is None:
            return None
        return str(self.leader.get("url"))

    # ---- registry (admitted agents), kept by the coordinator --------------------------
    async def load_registry(self) -> None:
        try:
            data = await self.transport.get(f"{self.ctx.coordinator_url}/v1/kv/mesos/registry")
            value = data.get("value") or {}
        except MessageError:
            value = {}
        self.registry_agents = value.get("agents", {})
        self.unreachable = {k: float(v) for k, v in value.get("unreachable", {}).items()}
        self.gone = {k: float(v) for k, v in value.get("gone", {}).items()}
        self.schedule = maintenance.Schedule.from_registry(value.get("maintenance"))
        self.drains = dict(value.get("drains") or {})
        self.deactivated = set(value.get("deactivated") or [])
        self.agent_seq = int(value.get("agent_seq", 0))

    async def save_registry(self) -> None:
        body = {
            "agents": self.registry_agents,
            "unreachable": self.unreachable,
            "gone": self.gone,
            "agent_seq": self.agent_seq,
            "maintenance": self.schedule.to_registry(),
            "drains": self.drains,
            "deactivated": sorted(self.deactivated),
        }
        try:
            await self.transport.session.put(
                f"{self.ctx.coordinator_url}/v1/kv/mesos/registry", json=body
            )
        except Exception as exc:  # the registry write is retried on the next change
            log.warning("registry write failed: %s", exc)

    async def reregistration_deadline(self) -> None:
        """Agents in the registry that do not re-register in time become unreachable."""
        await asyncio.sleep(self.ts.wall(C.AGENT_REREGISTER_TIMEOUT))
        if not self.leading:
            return
        for aid in list(self.registry_agents):
            if aid not in self.agents and aid not in self.unreachable and aid not in self.gone:
                log.warning("agent %s did not re-register in time: unreachable", aid)
                self.unreachable[aid] = time.time()
        await self.save_registry()

    # ---- agents ---------------------------------------------------------------------
    def new_agent_id(self) -> str:
        while True:
            self.agent_seq += 1
            aid = f"{self.id}-S{self.agent_seq - 1}"
            if aid not in self.agents and aid not in self.registry_agents:
                return aid

    async def register_agent(self, body: dict[str, Any], reregister: bool) -> dict[str, Any]:
        if not self.leading:
            raise CallError(503, "Not the leading master")
        info = dict(body["agent_info"])
        pid = str(body["pid"])
        url = str(body["url"])
        aid = (info.get("id") or {}).get("value")
        now = time.time()
        if aid and aid in self.gone:
            raise CallError(403, f"Agent {aid} is marked gone and cannot re-register")
        machine = (str(info.get("hostname", "")).lower(), _split_hostport(pid)[0])
        if self.schedule.mode(machine) == maintenance.DOWN:
            raise CallError(
                403,
                f"Agent on machine {maintenance.machine_json(machine)} cannot register: "
                "the machine is DOWN for maintenance (bring it up with machine/up)",
            )
        if reregister and aid:
            self.counters["messages_reregister_slave"] += 1
            rec = self.agents.get(aid)
            was_unreachable = self.unreachable.pop(aid, None) is not None
            if rec is None:
                rec = AgentRec(info, pid, url, str(body.get("version", MESOS_VERSION)), now, now)
                self.agents[aid] = rec
            else:
                rec.info, rec.pid, rec.url = info, pid, url
                rec.reregistered_time = now
            rec.active = True
            rec.missed_pings = 0
            rec.capabilities = body.get("capabilities", [])
            self.counters["slave_reregistrations"] += 1
            self.reconcile_agent_tasks(rec, body, was_unreachable)
        else:
            self.counters["messages_register_slave"] += 1
            aid = self.new_agent_id()
            info["id"] = {"value": aid}
            rec = AgentRec(info, pid, url, str(body.get("version", MESOS_VERSION)), now)
            rec.capabilities = body.get("capabilities", [])
            self.agents[aid] = rec
            self.counters["slave_registrations"] += 1
        rec.checkpointed = self.checkpointed_from(body)
        self.registry_agents[aid] = {"hostname": rec.hostname, "pid": pid}
        rec.deactivated = aid in self.deactivated
        rec.drain_info = self.drains.get(aid)
        if rec.drain_info is not None and rec.drain_info["state"] == "DRAINING":
            self.spawn(self.drain_tasks(rec))  # a drain requested while it was away
        self.spawn(self.save_registry())
        log.info(
            "%s agent %s at %s (%s)",
            "re-registered" if reregister else "registered",
            aid,
            pid,
            rec.hostname,
        )
        self.ctx.state.record_event(
            "agent.reregistered" if reregister else "agent.registered",
            agent_id=aid,
            hostname=rec.hostname,
        )
        self.allocate_now.set()
        return {"agent_id": {"value": aid}, "master_id": self.id}

    def checkpointed_from(self, body: dict[str, Any]) -> Resources:
        """The reservations and volumes an agent reports when it (re-)registers."""
        try:
            reported = Resources.from_v1(body.get("checkpointed_resources") or [])
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring invalid checkpointed resources of an agent: %s", exc)
            return Resources()
        static = Resources.from_v1(body["agent_info"].get("resources", []))
        if not persistence.fits(static, reported):
            log.warning(
                "agent at %s reports reservations its resources cannot hold; ignoring them",
                body.get("pid"),
            )
            return Resources()
        return persistence.checkpointed_of(reported)

    def reconcile_agent_tasks(
        self, rec: AgentRec, body: dict[str, Any], was_unreachable: bool
    ) -> None:
        """Adopt the tasks a re-registering agent reports (after failover or a partition)."""
        for fwinfo in body.get("frameworks", []):
            fid = fwinfo["id"]["value"]
            if fid not in self.frameworks and not any(
                f.id == fid for f in self.completed_frameworks
            ):
                self.frameworks[fid] = FrameworkRec(fid, fwinfo, time.time(), recovered=True)
        reported: set[str] = set()
        for t in body.get("tasks", []):
            fid = t["framework_id"]["value"]
            fw = self.frameworks.get(fid)
            tid = t["task_id"]["value"]
            reported.add(tid)
            if fw is None:
                # The framework was torn down: the agent must kill this task.
                self.spawn(
                    self.send_agent(
                        rec, "ShutdownFrameworkMessage", {"framework_id": {"value": fid}}
                    )
                )
                continue
            task = fw.tasks.get(tid)
            if task is None:
                task = TaskRec(
                    t["info"], fid, rec.id, t["state"], t.get("status"), list(t.get("statuses", []))
                )
                fw.tasks[tid] = task
            else:
                task.state = t["state"]
                task.status = t.get("status") or task.status
                task.unreachable_time = None
            task.agent_id = rec.id
            rec.tasks[tid] = task
            if was_unreachable and not fw.partition_aware:
                self.spawn(
                    self.send_agent(
                        rec,
                        "KillTaskMessage",
                        {"framework_id": {"value": fid}, "task_id": {"value": tid}},
                    )
                )
        # Tasks the master knew on this agent that the agent no longer has are gone.
        for fw in self.frameworks.values():
            for tid, task in list(fw.tasks.items()):
                if (
                    task.agent_id == rec.id
                    and tid not in reported
                    and not C.is_terminal(task.state)
                ):
                    self.master_update(
                        fw,
                        task,
                        "TASK_GONE" if fw.partition_aware else "TASK_LOST",
                        "REASON_SLAVE_RESTARTED",
                        "Task not found on the agent after it re-registered",
                    )

    async def send_agent(self, agent: AgentRec, message: str, body: dict[str, Any]) -> bool:
        try:
            await self.transport.post(f"{agent.url}/slave(1)/mesos.internal.{message}", body)
            return True
        except MessageError as exc:
            log.warning("could not send %s to agent %s: %s", message, agent.id, exc)
            return False

    async def ping_loop(self) -> None:
        interval = self.ts.ping(C.AGENT_PING_TIMEOUT)
        while not self.ctx.stop.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.ctx.stop.wait(), interval)
            if not self.leading:
                continue
            await asyncio.gather(*(self.ping(a, interval) for a in list(self.agents.values())))

    async def ping(self, agent: AgentRec, timeout: float) -> None:
        try:
            await self.transport.post(
                f"{agent.url}/slave(1)/mesos.internal.PingSlaveMessage",
                {"connected": True, "master_id": self.id, "master_url": self.ctx.address.url},
                timeout=timeout,
            )
        except MessageError:
            agent.missed_pings += 1
            if agent.active:
                log.warning("agent %s missed a ping: deactivating it", agent.id)
                agent.active = False
                self.rescind_agent_offers(agent)
            if agent.missed_pings >= C.MAX_AGENT_PING_TIMEOUTS and agent.id in self.agents:
                self.mark_unreachable(agent)
            return
        if agent.missed_pings or not agent.active:
            log.info("agent %s answers pings again", agent.id)
        agent.missed_pings = 0
        if not agent.active:
            agent.active = True
            self.allocate_now.set()

    def mark_unreachable(self, agent: AgentRec) -> None:
        log.warning("agent %s (%s) is unreachable", agent.id, agent.hostname)
        self.counters["slave_unreachable_scheduled"] += 1
        self.counters["slave_unreachable_completed"] += 1
        now = time.time()
        self.rescind_agent_offers(agent)
        del self.agents[agent.id]
        self.unreachable[agent.id] = now
        self.ctx.state.record_event("agent.unreachable", agent_id=agent.id, hostname=agent.hostname)
        self.broadcast({"type": "FAILURE", "failure": {"agent_id": {"value": agent.id}}})
        for task in list(agent.tasks.values()):
            fw = self.frameworks.get(task.framework_id)
            if fw is None or C.is_terminal(task.state):
                continue
            if fw.partition_aware:
                task.unreachable_time = now
                self.master_update(
                    fw, task, "TASK_UNREACHABLE", "REASON_SLAVE_REMOVED", "Agent is unreachable"
                )
            else:
                self.master_update(
                    fw, task, "TASK_LOST", "REASON_SLAVE_REMOVED", "Agent is unreachable"
                )
        self.spawn(self.save_registry())

    def broadcast(self, event: dict[str, Any]) -> None:
        """Send an event to every connected framework."""
        for fw in self.frameworks.values():
            fw.send(event)

    def rescind_agent_offers(self, agent: AgentRec) -> None:
        for oid in [o for o, rec in self.offers.items() if rec.agent_id == agent.id]:
            self.rescind(oid)

    def rescind(self, offer_id: str) -> None:
        offer = self.offers.pop(offer_id, None)
        if offer is None:
            return
        agent = self.agents.get(offer.agent_id)
        if agent is not None:
            agent.offered = agent.offered - offer.resources
        fw = self.frameworks.get(offer.framework_id)
        if fw is not None:
            fw.offers.discard(offer_id)
            fw.send({"type": "RESCIND", "rescind": {"offer_id": {"value": offer_id}}})

    # ---- task status ----------------------------------------------------------------
    def master_update(
        self, fw: FrameworkRec, task: TaskRec, state: str, reason: str, message: str
    ) -> None:
        """A status update generated by the master itself (no acknowledgement needed)."""
        status = {
            "task_id": {"value": task.id},
            "state": state,
            "message": message,
            "source": "SOURCE_MASTER",
            "reason": reason,
            "agent_id": {"value": task.agent_id},
            "timestamp": time.time(),
        }
        if task.unreachable_time is not None and state == "TASK_UNREACHABLE":
            status["unreachable_time"] = C.time_info(task.unreachable_time)
        self.apply_status(fw, task, status)
        fw.send({"type": "UPDATE", "update": {"status": status}})

    def apply_status(self, fw: FrameworkRec, task: TaskRec, status: dict[str, Any]) -> None:
        old = task.state
        task.state = status["state"]
        task.status = status
        entry = {"state": status["state"], "timestamp": status.get("timestamp", time.time())}
        for k in ("container_status", "healthy"):
            if k in status:
                entry[k] = status[k]
        if not task.statuses or task.statuses[-1]["state"] != entry["state"] or "healthy" in entry:
            task.statuses.append(entry)
        if old != task.state:
            self.task_state_counts[task.state] = self.task_state_counts.get(task.state, 0) + 1
            self.ctx.state.record_event(
                "task.state",
                task_id=task.id,
                framework_id=task.framework_id,
                agent_id=task.agent_id,
                state=task.state,
                previous=old,
                reason=status.get("reason"),
            )
        if C.is_terminal(task.state):
            fw.tasks.pop(task.id, None)
            fw.completed_tasks.append(task)
            agent = self.agents.get(task.agent_id)
            if agent is not None:
                agent.tasks.pop(task.id, None)
                if agent.drain_info is not None:
                    self.check_drained(agent)
            self.allocate_now.set()

    async def on_status_update(self, body: dict[str, Any]) -> None:
        self.counters["messages_status_update"] += 1
        update = body["update"]
        status = update["status"]
        fid = update["framework_id"]["value"]
        tid = status["task_id"]["value"]
        aid = status.get("agent_id", {}).get("value") or body.get("agent_id", "")
        fw = self.frameworks.get(fid)
        if fw is None:
            self.counters["invalid_status_updates"] += 1
            # Unknown framework (torn down): acknowledge so the agent stops retrying.
            agent = self.agents.get(aid)
            if agent is not None and "uuid" in status:
                self.spawn(
                    self.send_agent(
                        agent,
                        "StatusUpdateAcknowledgementMessage",
                        {
                            "framework_id": {"value": fid},
                            "task_id": {"value": tid},
                            "uuid": status["uuid"],
                        },
                    )
                )
            return
        task = fw.tasks.get(tid)
        if task is None:
            # A status of a task this master already considers complete: forward, nothing to change.
            for t in fw.completed_tasks:
                if t.id == tid:
                    task = t
                    break
        self.counters["valid_status_updates"] += 1
        if task is not None and not C.is_terminal(task.state):
            self.apply_status(fw, task, status)
            latest = update.get("latest_state")
            if latest and latest != task.state and not C.is_terminal(task.state):
                # A retried older update: the task's state is the agent's latest (Mesos's
                # StatusUpdate.latest_state), not the retried one.
                self.apply_status(fw, task, {**status, "state": latest})
        fw.send({"type": "UPDATE", "update": {"status": status}})

    # ---- frameworks -----------------------------------------------------------------
    def new_framework_id(self) -> str:
        self.framework_seq += 1
        return f"{self.id}-{self.framework_seq - 1:04d}"

    def subscribe(self, call: dict[str, Any]) -> FrameworkRec:
        sub = call.get("subscribe") or {}
        info = sub.get("framework_info")
        if not isinstance(info, dict):
            raise CallError(400, "Expecting 'subscribe.framework_info' to be present")
        for req in ("user", "name"):
            if req not in info:
                raise CallError(
                    400,
                    f"Failed to validate scheduler::Call: Expecting 'framework_info.{req}' to be present",
                )
        fid = (info.get("id") or {}).get("value") or (call.get("framework_id") or {}).get("value")
        if fid and any(f.id == fid for f in self.completed_frameworks):
            raise CallError(403, "Framework has been removed")
        now = time.time()
        info = dict(info)
        if fid and fid in self.frameworks:
            fw = self.frameworks[fid]
            self.disconnect_stream(fw, error="Framework failed over")
            fw.info = {**info, "id": {"value": fid}}
            fw.reregistered_time = now
            fw.recovered = False
        elif fid:
            fw = FrameworkRec(fid, {**info, "id": {"value": fid}}, now, reregistered_time=now)
            self.frameworks[fid] = fw
        else:
            fid = self.new_framework_id()
            fw = FrameworkRec(fid, {**info, "id": {"value": fid}}, now)
            self.frameworks[fid] = fw
        if fw.failover_task is not None:
            fw.failover_task.cancel()
            fw.failover_task = None
        fw.suppressed = set(sub.get("suppressed_roles") or [])
        fw.filters.clear()
        # Offers do not survive a (re-)subscription.
        for oid in list(fw.offers):
            self.rescind(oid)
        fw.stream_id = str(uuid.uuid4())
        fw.queue = asyncio.Queue()
        fw.connected = True
        fw.active = True
        fw.unregistered_time = None
        log.info("framework %s (%s) subscribed", fid, info.get("name"))
        self.ctx.state.record_event("framework.subscribed", framework_id=fid, name=info.get("name"))
        self.allocate_now.set()
        return fw

    def disconnect_stream(self, fw: FrameworkRec, error: str | None = None) -> None:
        if fw.queue is not None:
            if error:
                fw.queue.put_nowait({"type": "ERROR", "error": {"message": error}})
            fw.queue.put_nowait(None)
        fw.queue = None
        fw.stream_id = None

    def on_disconnected(self, fw: FrameworkRec, stream_id: str) -> None:
        if fw.stream_id != stream_id or self.frameworks.get(fw.id) is not fw:
            return
        log.info("framework %s disconnected", fw.id)
        fw.connected = False
        fw.active = False
        fw.queue = None
        fw.stream_id = None
        fw.unregistered_time = time.time()
        for oid in list(fw.offers):
            self.rescind(oid)
        timeout = float(fw.info.get("failover_timeout", 0.0))
        fw.failover_task = asyncio.ensure_future(self.failover_timer(fw, timeout))

    async def failover_timer(self, fw: FrameworkRec, timeout: float) -> None:
        await asyncio.sleep(self.ts.wall(timeout, 0.0))
        if not fw.connected and self.frameworks.get(fw.id) is fw:
            log.warning("framework %s did not fail over in time: removing it", fw.id)
            await self.remove_framework(fw)

    async def remove_framework(self, fw: FrameworkRec) -> None:
        self.frameworks.pop(fw.id, None)
        for oid in list(fw.offers):
            self.rescind(oid)
        for agent in self.agents.values():
            if any(t.framework_id == fw.id for t in agent.tasks.values()):
                self.spawn(
                    self.send_agent(
                        agent, "ShutdownFrameworkMessage", {"framework_id": {"value": fw.id}}
                    )
                )
        for task in list(fw.tasks.values()):
            task.state = "TASK_KILLED"
            holder = self.agents.get(task.agent_id)
            if holder is not None:
                holder.tasks.pop(task.id, None)
            fw.completed_tasks.append(task)
        fw.tasks.clear()
        fw.connected = fw.active = False
        self.disconnect_stream(fw)
        self.completed_frameworks.append(fw)
        self.ctx.state.record_event("framework.removed", framework_id=fw.id)
        self.allocate_now.set()

    # ---- offers ---------------------------------------------------------------------
    def offer_v1(self, offer: OfferRec) -> dict[str, Any]:
        agent = self.agents[offer.agent_id]
        host, port = _split_hostport(agent.pid)
        out: dict[str, Any] = {
            "id": {"value": offer.id},
            "framework_id": {"value": offer.framework_id},
            "agent_id": {"value": offer.agent_id},
            "hostname": agent.hostname,
            "url": {
                "scheme": "http",
                "address": {"hostname": agent.hostname, "ip": host, "port": port},
                "path": "/slave(1)",
            },
            "resources": offer.resources.to_v1(offer.role),
            "attributes": agent.info.get("attributes", []),
            "executor_ids": [],
            "allocation_info": {"role": offer.role},
        }
        if "domain" in agent.info:
            out["domain"] = agent.info["domain"]
        unavailability = self.schedule.unavailability(agent.machine)
        if unavailability is not None:
            out["unavailability"] = unavailability
        return out

    def offer_v0(self, offer: OfferRec) -> dict[str, Any]:
        return {
            "id": offer.id,
            "framework_id": offer.framework_id,
            "slave_id": offer.agent_id,
            "resources": offer.resources.to_flat(),
            "allocation_info": {"role": offer.role},
        }

    async def allocation_loop(self) -> None:
        interval = self.ts.wall(C.ALLOCATION_INTERVAL, 0.1)
        while not self.ctx.stop.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.allocate_now.wait(), interval)
            self.allocate_now.clear()
            if self.leading:
                self.allocate()

    def allocate(self) -> None:
        now = time.monotonic()
        frameworks = [f for f in self.frameworks.values() if f.connected and f.active]
        if not frameworks:
            return
        total_cpus = sum(a.total.scalar("cpus") for a in self.agents.values()) or 1.0

        def share(fw: FrameworkRec) -> float:
            used = sum(t.resources.scalar("cpus") for t in fw.tasks.values())
            return used / total_cpus

        batches: dict[str, list[dict[str, Any]]] = {}
        agents = list(self.agents.values())
        random.shuffle(agents)
        for agent in agents:
            if not agent.active or agent.deactivated:
                continue
            available = agent.available()
            if not available:
                continue
            for fw in sorted(frameworks, key=share):
                expiry = fw.filters.get(agent.id)
                if expiry is not None:
                    if expiry > now:
                        continue
                    del fw.filters[agent.id]
                for role in fw.roles:
                    if role in fw.suppressed:
                        continue
                    res = Resources(r for r in available if r.role in ("*", role))
                    if not _allocatable(res):
                        continue
                    self.offer_seq += 1
                    oid = f"{self.id}-O{self.offer_seq}"
                    offer = OfferRec(oid, fw.id, agent.id, role, res)
                    self.offers[oid] = offer
                    fw.offers.add(oid)
                    agent.offered = agent.offered + res
                    available = available - res
                    batches.setdefault(fw.id, []).append(self.offer_v1(offer))
        for fid, offers in batches.items():
            self.frameworks[fid].send({"type": "OFFERS", "offers": {"offers": offers}})

    def recover(self, offer: OfferRec, used: Resources) -> None:
        """Take an offer back; what was not used is available again."""
        self.offers.pop(offer.id, None)
        agent = self.agents.get(offer.agent_id)
        if agent is not None:
            agent.offered = agent.offered - offer.resources
        fw = self.frameworks.get(offer.framework_id)
        if fw is not None:
            fw.offers.discard(offer.id)

    # ---- scheduler calls ------------------------------------------------------------
    def call_framework(self, request: web.Request, call: dict[str, Any]) -> FrameworkRec:
        fid = (call.get("framework_id") or {}).get("value")
        if not fid:
            raise CallError(
                400, "Failed to validate scheduler::Call: Expecting 'framework_id' to be present"
            )
        fw = self.frameworks.get(fid)
        if fw is None or not fw.connected:
            raise CallError(403, "Framework cannot be found")
        stream = request.headers.get("Mesos-Stream-Id")
        if stream != fw.stream_id:
            raise CallError(
                400,
                f"The stream ID '{stream}' included in this request didn't match the stream ID currently associated with framework ID {fid}",
            )
        return fw

    def accept(self, fw: FrameworkRec, body: dict[str, Any]) -> None:
        offer_ids = [o["value"] for o in body.get("offer_ids", [])]
        refuse = min(
            float((body.get("filters") or {}).get("refuse_seconds", C.DEFAULT_REFUSE_SECONDS)),
            C.MAX_REFUSE_SECONDS,
        )
        operations = body.get("operations") or []
        offers: list[OfferRec] = []
        error: str | None = None
        for oid in offer_ids:
            offer = self.offers.get(oid)
            if offer is None or offer.framework_id != fw.id:
                error = f"Offer {oid} is no longer valid"
                continue
            offers.append(offer)
        if offers and len({o.agent_id for o in offers}) > 1:
            error = "Aggregated offers must belong to one single agent"
        if not offer_ids:
            error = "No offers specified"
        pool = Resources()
        for offer in offers:
            pool = pool + offer.resources
            self.recover(offer, Resources())
        agent = self.agents.get(offers[0].agent_id) if offers else None
        if agent is None and error is None:
            error = "Agent is no longer registered"
        # What the agent is told, in order: a volume is created before a task uses it.
        sends: list[tuple[str, dict[str, Any], TaskRec | None]] = []
        for op in operations:
            kind = op.get("type")
            if kind in persistence.OPERATIONS:
                if error is not None or agent is None:
                    log.warning(
                        "Dropping %s offer operation from framework %s: %s", kind, fw.id, error
                    )
                    self.operation_feedback(fw, agent, op, "OPERATION_ERROR", str(error))
                    continue
                pool = self.apply_operation(fw, agent, op, pool, sends)
                continue
            if kind != "LAUNCH":
                log.warning("operation %s is not supported by the embedded master", kind)
                continue
            for tinfo in (op.get("launch") or {}).get("task_infos", []):
                self.launch(fw, agent, tinfo, pool, error, sends)
                if error is None:
                    pool = pool - Resources.from_v1(tinfo.get("resources", []))
        if agent is not None and sends:
            self.spawn(self.send_in_order(fw, agent, sends))
        if agent is not None and refuse > 0:
            fw.filters[agent.id] = time.monotonic() + self.ts.wall(refuse, 0.0)
        self.allocate_now.set()

    def apply_operation(
        self,
        fw: FrameworkRec | None,
        agent: AgentRec,
        op: dict[str, Any],
        pool: Resources,
        sends: list[tuple[str, dict[str, Any], TaskRec | None]],
    ) -> Resources:
        """RESERVE, UNRESERVE, CREATE or DESTROY on offered resources (``pool``).

        An invalid operation is dropped with Mesos's message (and OPERATION_ERROR when the
        framework gave it an id); the others change the agent's checkpointed resources,
        which the agent is sent before anything that follows in the same call.
        """
        kind = str(op.get("type"))
        try:
            items = persistence.operation_items(op)
            resources = persistence.validate_operation(
                kind,
                items,
                checkpointed=agent.checkpointed,
                used=agent.used,
                principal=(fw.info.get("principal") if fw is not None else None),
                roles=fw.roles if fw is not None else None,
            )
            after = persistence.apply(kind, pool, resources)
            total = persistence.apply(kind, agent.total, resources)
        except persistence.OperationError as exc:
            if fw is None:
                raise  # an operator call: answered with the error
            log.warning("Dropping %s offer operation from framework %s: %s", kind, fw.id, exc)
            self.operation_feedback(fw, agent, op, "OPERATION_ERROR", str(exc))
            return pool
        agent.checkpointed = persistence.checkpointed_of(total)
        self.ctx.state.record_event(
            "agent.resources",
            agent_id=agent.id,
            operation=kind,
            framework_id=fw.id if fw is not None else None,
            resources=Resources(resources).to_text(),
        )
        sends.append(
            ("CheckpointResourcesMessage", {"resources": agent.checkpointed.to_v1()}, None)
        )
        if fw is not None:
            self.operation_feedback(fw, agent, op, "OPERATION_FINISHED", None)
        return after

    def operation_feedback(
        self,
        fw: FrameworkRec,
        agent: AgentRec | None,
        op: dict[str, Any],
        state: str,
        message: str | None,
    ) -> None:
        """UPDATE_OPERATION_STATUS for an operation the framework gave an id."""
        oid = (op.get("id") or {}).get("value")
        if not oid:
            return
        status: dict[str, Any] = {
            "operation_id": {"value": oid},
            "state": state,
            "uuid": {"value": base64.b64encode(uuid.uuid4().bytes).decode()},
        }
        if message:
            status["message"] = message
        if agent is not None:
            status["agent_id"] = {"value": agent.id}
        fw.send({"type": "UPDATE_OPERATION_STATUS", "update_operation_status": {"status": status}})

    async def send_in_order(
        self,
        fw: FrameworkRec,
        agent: AgentRec,
        sends: list[tuple[str, dict[str, Any], TaskRec | None]],
    ) -> None:
        for message, body, task in sends:
            if task is None:
                await self.send_agent(agent, message, body)
            else:
                await self._run_task(fw, agent, task, body)

    def launch(
        self,
        fw: FrameworkRec,
        agent: AgentRec | None,
        tinfo: dict[str, Any],
        pool: Resources,
        error: str | None,
        sends: list[tuple[str, dict[str, Any], TaskRec | None]] | None = None,
    ) -> None:
        tid = (tinfo.get("task_id") or {}).get("value", "")
        task = TaskRec(
            tinfo, fw.id, agent.id if agent else (tinfo.get("agent_id") or {}).get("value", "")
        )

        def fail(state: str, reason: str, message: str) -> None:
            fw.completed_tasks.append(task)
            self.master_update(fw, task, state, reason, message)

        if error is not None:
            fail(
                "TASK_DROPPED" if fw.partition_aware else "TASK_LOST",
                "REASON_INVALID_OFFERS",
                error,
            )
            return
        assert agent is not None
        problem = self.validate_task(fw, agent, tinfo, pool)
        if problem:
            fail("TASK_ERROR", "REASON_TASK_INVALID", problem)
            return
        self.counters["messages_launch_tasks"] += 1
        fw.tasks[tid] = task
        agent.tasks[tid] = task
        self.task_state_counts["TASK_STAGING"] += 1
        task.statuses = []
        body = {"framework": fw.info, "framework_id": {"value": fw.id}, "task": tinfo}
        if sends is not None:
            sends.append(("RunTaskMessage", body, task))
        else:
            self.spawn(self._run_task(fw, agent, task, body))

    async def _run_task(
        self, fw: FrameworkRec, agent: AgentRec, task: TaskRec, body: dict[str, Any]
    ) -> None:
        if not await self.send_agent(agent, "RunTaskMessage", body):
            if task.state == "TASK_STAGING" and task.id in fw.tasks:
                self.master_update(
                    fw,
                    task,
                    "TASK_DROPPED" if fw.partition_aware else "TASK_LOST",
                    "REASON_SLAVE_DISCONNECTED",
                    "Agent could not be reached to launch the task",
                )

    def validate_task(
        self, fw: FrameworkRec, agent: AgentRec, tinfo: dict[str, Any], pool: Resources
    ) -> str | None:
        tid = (tinfo.get("task_id") or {}).get("value")
        if not tid:
            return "Task ID is missing"
        if tid in fw.tasks:
            return f"Task has duplicate ID: {tid}"
        if (tinfo.get("agent_id") or {}).get("value") != agent.id:
            return f"Task uses invalid agent: {(tinfo.get('agent_id') or {}).get('value')}"
        has_cmd, has_exec = "command" in tinfo, "executor" in tinfo
        if has_cmd == has_exec:
            return "Task should have at least one (but not both) of CommandInfo or ExecutorInfo present"
        try:
            res = Resources.from_v1(tinfo.get("resources", []))
        except (ValueError, KeyError, TypeError) as exc:
            return f"Task uses invalid resources: {exc}"
        if not res:
            return "Task uses no resources"
        if not pool.contains(res):
            return f"Task uses more resources {res.to_text()} than available {pool.to_text()}"
        return None

    def decline(self, fw: FrameworkRec, body: dict[str, Any]) -> None:
        refuse = min(
            float((body.get("filters") or {}).get("refuse_seconds", C.DEFAULT_REFUSE_SECONDS)),
            C.MAX_REFUSE_SECONDS,
        )
        for o in body.get("offer_ids", []):
            offer = self.offers.get(o.get("value"))
            if offer is None or offer.framework_id != fw.id:
                continue
            self.recover(offer, Resources())
            if refuse > 0:
                fw.filters[offer.agent_id] = time.monotonic() + self.ts.wall(refuse, 0.0)
        self.allocate_now.set()

    def kill(self, fw: FrameworkRec, body: dict[str, Any]) -> None:
        self.counters["messages_kill_task"] += 1
        tid = body["task_id"]["value"]
        task = fw.tasks.get(tid)
        if task is None:
            agent_id = (body.get("agent_id") or {}).get("value")
            state = "TASK_UNKNOWN" if fw.partition_aware else "TASK_LOST"
            status = {
                "task_id": {"value": tid},
                "state": state,
                "message": "Attempted to kill an unknown task",
                "source": "SOURCE_MASTER",
                "reason": "REASON_RECONCILIATION",
                "timestamp": time.time(),
            }
            if agent_id:
                status["agent_id"] = {"value": agent_id}
            fw.send({"type": "UPDATE", "update": {"status": status}})
            return
        agent = self.agents.get(task.agent_id)
        if agent is None:
            return  # unreachable: the kill is retried by the framework
        message = {"framework_id": {"value": fw.id}, "task_id": {"value": tid}}
        if "kill_policy" in body:
            message["kill_policy"] = body["kill_policy"]
        self.spawn(self.send_agent(agent, "KillTaskMessage", message))

    def reconcile(self, fw: FrameworkRec, body: dict[str, Any]) -> None:
        wanted = body.get("tasks") or []
        statuses = []
        if not wanted:
            for task in fw.tasks.values():
                statuses.append(self.reconcile_status(task))
        else:
            for item in wanted:
                tid = item["task_id"]["value"]
                aid = (item.get("agent_id") or {}).get("value")
                known = fw.tasks.get(tid)
                if known is not None:
                    statuses.append(self.reconcile_status(known))
                    continue
                if (
                    aid
                    and aid in self.registry_agents
                    and aid not in self.agents
                    and aid not in self.unreachable
                    and aid not in self.gone
                ):
                    # Recovered from the registry after a failover but not re-registered
                    # yet: no answer -- the agent reports the task when it re-registers
                    # (docs/reconciliation.md: "the master temporarily may not be able to
                    # reply for a particular task").
                    continue
                if aid and aid in self.unreachable:
                    state = "TASK_UNREACHABLE" if fw.partition_aware else "TASK_LOST"
                elif aid and aid in self.gone:
                    state = "TASK_GONE_BY_OPERATOR" if fw.partition_aware else "TASK_LOST"
                elif aid and aid in self.agents:
                    state = "TASK_GONE" if fw.partition_aware else "TASK_LOST"
                else:
                    state = "TASK_UNKNOWN" if fw.partition_aware else "TASK_LOST"
                st = {
                    "task_id": {"value": tid},
                    "state": state,
                    "message": "Reconciliation: Task is unknown",
                    "source": "SOURCE_MASTER",
                    "reason": "REASON_RECONCILIATION",
                    "timestamp": time.time(),
                }
                if aid:
                    st["agent_id"] = {"value": aid}
                statuses.append(st)
        for st in statuses:
            fw.send({"type": "UPDATE", "update": {"status": st}})

    def reconcile_status(self, task: TaskRec) -> dict[str, Any]:
        st = dict(task.status or {})
        st.update(
            {
                "task_id": {"value": task.id},
                "state": task.state,
                "source": "SOURCE_MASTER",
                "reason": "REASON_RECONCILIATION",
                "message": "Reconciliation: Latest task state",
                "agent_id": {"value": task.agent_id},
                "timestamp": time.time(),
            }
        )
        st.pop("uuid", None)
        return st

    async def acknowledge(self, fw: FrameworkRec, body: dict[str, Any]) -> None:
        aid = body["agent_id"]["value"]
        agent = self.agents.get(aid)
        if agent is None:
            return
        await self.send_agent(
            agent,
            "StatusUpdateAcknowledgementMessage",
            {"framework_id": {"value": fw.id}, "task_id": body["task_id"], "uuid": body["uuid"]},
        )

    # ---- HTTP: redirect helpers -------------------------------------------------------
    def redirect_or_unavailable(self, request: web.Request) -> web.Response:
        url = self.leader_url()
        if url is None:
            return web.Response(status=503, text="No leader elected")
        loc = f"//{url.split('//', 1)[1]}{request.path_qs}"
        return web.Response(status=307, headers={"Location": loc})

    # ---- HTTP: scheduler API ----------------------------------------------------------
    async def scheduler_api(self, request: web.Request) -> web.StreamResponse:
        if not self.leading:
            return self.redirect_or_unavailable(request)
        ctype = request.headers.get("Content-Type", "application/json").split(";")[0].strip()
        if ctype != "application/json":
            return web.Response(
                status=415,
                text=f"Expecting 'Content-Type' of application/json or application/x-protobuf; this master speaks JSON only (got {ctype})",
            )
        call = await read_json(request)
        if not isinstance(call, dict) or "type" not in call:
            return web.Response(
                status=400,
                text="Failed to validate scheduler::Call: Expecting 'type' to be present",
            )
        kind = call["type"]
        try:
            if kind == "SUBSCRIBE":
                if "Mesos-Stream-Id" in request.headers:
                    raise CallError(
                        400, "Subscribe calls should not include the 'Mesos-Stream-Id' header"
                    )
                fw = self.subscribe(call)
                return await self.stream(request, fw)
            fw = self.call_framework(request, call)
            if kind == "TEARDOWN":
                await self.remove_framework(fw)
            elif kind == "ACCEPT":
                self.accept(fw, call.get("accept") or {})
            elif kind == "DECLINE":
                self.decline(fw, call.get("decline") or {})
            elif kind == "REVIVE":
                roles = (call.get("revive") or {}).get("roles") or fw.roles
                fw.suppressed -= set(roles)
                fw.filters.clear()
                self.allocate_now.set()
            elif kind == "SUPPRESS":
                roles = (call.get("suppress") or {}).get("roles") or fw.roles
                fw.suppressed |= set(roles)
            elif kind == "KILL":
                self.kill(fw, call.get("kill") or {})
            elif kind == "SHUTDOWN":
                eid = (call.get("shutdown") or {}).get("executor_id", {}).get("value")
                if eid and eid in fw.tasks:
                    self.kill(fw, {"task_id": {"value": eid}})
            elif kind == "ACKNOWLEDGE":
                # Answered at once; the acknowledgement travels on to the agent asynchronously.
                self.spawn(self.acknowledge(fw, call.get("acknowledge") or {}))
            elif kind == "RECONCILE":
                self.reconcile(fw, call.get("reconcile") or {})
            elif kind == "UPDATE_FRAMEWORK":
                info = (call.get("update_framework") or {}).get("framework_info") or {}
                fw.info = {**info, "id": {"value": fw.id}}
                fw.suppressed = set(
                    (call.get("update_framework") or {}).get("suppressed_roles") or []
                )
                return web.Response(status=200)
            elif kind in (
                "MESSAGE",
                "REQUEST",
                "ACCEPT_INVERSE_OFFERS",
                "DECLINE_INVERSE_OFFERS",
                "ACKNOWLEDGE_OPERATION_STATUS",
                "RECONCILE_OPERATIONS",
            ):
                pass
            else:
                raise CallError(
                    400, f"Failed to validate scheduler::Call: Unknown call type '{kind}'"
                )
        except CallError as exc:
            return web.Response(status=exc.status, text=exc.message)
        except (KeyError, TypeError, ValueError) as exc:
            return web.Response(status=400, text=f"Failed to validate scheduler::Call: {exc!r}")
        return web.Response(status=202)

    async def stream(self, request: web.Request, fw: FrameworkRec) -> web.StreamResponse:
        assert fw.queue is not None and fw.stream_id is not None
        queue, stream_id = fw.queue, fw.stream_id
        resp = web.StreamResponse(
            status=200, headers={"Content-Type": "application/json", "Mesos-Stream-Id": stream_id}
        )
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        subscribed = {
            "type": "SUBSCRIBED",
            "subscribed": {
                "framework_id": {"value": fw.id},
                "heartbeat_interval_seconds": C.HEARTBEAT_INTERVAL,
                "master_info": self.master_info(),
            },
        }
        heartbeat = self.ts.wall(C.HEARTBEAT_INTERVAL, 0.5)
        try:
            await resp.write(recordio_encode(json.dumps(subscribed).encode()))
            while True:
                try:
                    event = await asyncio.wait_for(queue.get(), heartbeat)
                except TimeoutError:
                    event = {"type": "HEARTBEAT"}
                if event is None:
                    break
                await resp.write(recordio_encode(json.dumps(event).encode()))
                if event.get("type") == "ERROR":
                    break
        except (ConnectionResetError, RuntimeError):
            pass
        finally:
            self.on_disconnected(fw, stream_id)
        return resp

    # ---- HTTP: internal messages from agents ------------------------------------------
    async def internal(self, request: web.Request) -> web.Response:
        if not self.leading:
            return web.Response(status=503, text="Not the leading master")
        name = request.match_info["message"]
        body = await read_json(request)
        try:
            if name == "RegisterSlaveMessage":
                return json_response(await self.register_agent(body, reregister=False))
            if name == "ReregisterSlaveMessage":
                return json_response(await self.register_agent(body, reregister=True))
            if name == "StatusUpdateMessage":
                await self.on_status_update(body)
                return web.Response(status=202)
            if name == "UnregisterSlaveMessage":
                aid = body["agent_id"]["value"]
                agent = self.agents.get(aid)
                if agent is not None:
                    self.remove_agent(agent, "Agent unregistered")
                return web.Response(status=202)
        except CallError as exc:
            return json_response({"message": exc.message}, exc.status)
        return web.Response(status=404, text=f"Unknown message {name}")

    def remove_agent(self, agent: AgentRec, message: str) -> None:
        """An agent that left cleanly: its tasks are gone, its resources with it."""
        self.counters["slave_removals"] += 1
        self.rescind_agent_offers(agent)
        self.agents.pop(agent.id, None)
        self.registry_agents.pop(agent.id, None)
        for task in list(agent.tasks.values()):
            fw = self.frameworks.get(task.framework_id)
            if fw is not None and not C.is_terminal(task.state):
                self.master_update(
                    fw,
                    task,
                    "TASK_GONE" if fw.partition_aware else "TASK_LOST",
                    "REASON_SLAVE_REMOVED",
                    message,
                )
        self.ctx.state.record_event("agent.removed", agent_id=agent.id, hostname=agent.hostname)
        self.broadcast({"type": "FAILURE", "failure": {"agent_id": {"value": agent.id}}})
        self.spawn(self.save_registry())

    async def mark_agent_gone(self, aid: str) -> CallError | None:
        """The v1 MARK_AGENT_GONE call: the agent never comes back (idempotent).

        The agent is removed and remembered as gone in the registry (so it can never
        re-register); its tasks become TASK_GONE_BY_OPERATOR (TASK_LOST for frameworks
        that are not partition-aware) and the agent, if it still answers, is shut down.
        An agent id the master never admitted is an error (404).
        """
        if aid in self.gone:
            return None
        agent = self.agents.get(aid)
        if agent is None and aid not in self.registry_agents and aid not in self.unreachable:
            return CallError(404, f"Agent {aid} not found")
        now = time.time()
        self.counters["slave_removals"] += 1
        if agent is not None:
            self.rescind_agent_offers(agent)
            del self.agents[aid]
        hostname = agent.hostname if agent is not None else None
        self.registry_agents.pop(aid, None)
        self.unreachable.pop(aid, None)
        self.gone[aid] = now
        await self.save_registry()
        log.warning("agent %s (%s) is marked gone by the operator", aid, hostname)
        self.ctx.state.record_event("agent.gone", agent_id=aid, hostname=hostname)
        for fw in self.frameworks.values():
            for task in list(fw.tasks.values()):
                if task.agent_id != aid or C.is_terminal(task.state):
                    continue
                self.master_update(
                    fw,
                    task,
                    "TASK_GONE_BY_OPERATOR" if fw.partition_aware else "TASK_LOST",
                    "REASON_SLAVE_REMOVED_BY_OPERATOR",
                    "Agent has been marked gone",
                )
        self.broadcast({"type": "FAILURE", "failure": {"agent_id": {"value": aid}}})
        if agent is not None:
            self.spawn(self.send_agent(agent, "ShutdownMessage", {"message": "Agent is gone"}))
        self.allocate_now.set()
        return None

    # ---- maintenance: schedule, machine down/up, DRAIN/DEACTIVATE/REACTIVATE_AGENT ----
    def agents_on(self, keys: list[maintenance.MachineKey]) -> list[AgentRec]:
        return [a for a in self.agents.values() if a.machine in keys]

    async def update_schedule(self, schedule: Any) -> None:
        """``/maintenance/schedule`` POST: replace the schedule; machines in it drain."""
        changed = self.schedule.update(schedule)
        # Offers of affected agents are rescinded and re-sent with (or without) unavailability.
        for agent in self.agents.values():
            if agent.machine in changed:
                self.rescind_agent_offers(agent)
        await self.save_registry()
        self.ctx.state.record_event(
            "maintenance.scheduled",
            draining=[
                maintenance.machine_json(k)
                for k, m in self.schedule.modes.items()
                if m == maintenance.DRAINING
            ],
        )
        self.allocate_now.set()

    async def machines_down(self, machines: Any) -> None:
        """``/machine/down``: agents on these machines are removed and told to shut down."""
        keys = self.schedule.down(machines)
        await self.save_registry()
        for agent in self.agents_on(keys):
            self.remove_for_maintenance(agent)
        self.ctx.state.record_event(
            "maintenance.down", machines=[maintenance.machine_json(k) for k in keys]
        )
        self.allocate_now.set()

    def remove_for_maintenance(self, agent: AgentRec) -> None:
        log.warning("agent %s (%s): machine DOWN for maintenance", agent.id, agent.hostname)
        self.counters["slave_removals"] += 1
        self.rescind_agent_offers(agent)
        del self.agents[agent.id]
        self.registry_agents.pop(agent.id, None)
        for fw in self.frameworks.values():
            for task in list(fw.tasks.values()):
                if task.agent_id != agent.id or C.is_terminal(task.state):
                    continue
                self.master_update(
                    fw,
                    task,
                    "TASK_GONE_BY_OPERATOR" if fw.partition_aware else "TASK_LOST",
                    "REASON_SLAVE_REMOVED_BY_OPERATOR",
                    "Agent is DOWN for maintenance",
                )
        self.ctx.state.record_event(
            "agent.removed", agent_id=agent.id, hostname=agent.hostname, reason="maintenance"
        )
        self.broadcast({"type": "FAILURE", "failure": {"agent_id": {"value": agent.id}}})
        self.spawn(
            self.send_agent(
                agent, "ShutdownMessage", {"message": "Machine is DOWN for maintenance"}
            )
        )
        self.spawn(self.save_registry())

    async def machines_up(self, machines: Any) -> None:
        """``/machine/up``: maintenance ends; the machines leave the schedule."""
        keys = self.schedule.up(machines)
        await self.save_registry()
        self.ctx.state.record_event(
            "maintenance.up", machines=[maintenance.machine_json(k) for k in keys]
        )

    async def drain_agent(self, body: dict[str, Any]) -> CallError | None:
        """The v1 DRAIN_AGENT call: deactivate the agent and kill its tasks; DRAINED when done."""
        aid = ((body.get("agent_id") or {}).get("value")) or ""
        if not aid:
            return CallError(
                400, "Failed to validate master::Call: Expecting 'agent_id' to be present"
            )
        agent = self.agents.get(aid)
        if agent is None and aid not in self.unreachable:
            return CallError(404, f"Agent {aid} not found")
        if aid in self.gone:
            return CallError(400, f"Agent {aid} has been marked gone")
        config: dict[str, Any] = {"mark_gone": bool(body.get("mark_gone", False))}
        grace = body.get("max_grace_period")
        if grace is not None:
            seconds = _duration_seconds(grace)
            if seconds is None or seconds < 0:
                return CallError(400, f"Invalid 'max_grace_period': {grace!r}")
            config["max_grace_period"] = {"nanoseconds": int(seconds * 1e9)}
        # A repeated call drains again with the new configuration (DRAINED when no task is left).
        info = {"state": "DRAINING", "config": config}
        self.drains[aid] = info
        self.deactivated.add(aid)
        await self.save_registry()
        log.warning("agent %s is draining", aid)
        self.ctx.state.record_event("agent.draining", agent_id=aid, config=config)
        if agent is not None:
            agent.deactivated = True
            agent.drain_info = info
            self.rescind_agent_offers(agent)
            await self.drain_tasks(agent)
        return None

    async def drain_tasks(self, agent: AgentRec) -> None:
        info = agent.drain_info or {}
        cap = _duration_seconds((info.get("config") or {}).get("max_grace_period"))
        for task in list(agent.tasks.values()):
            if C.is_terminal(task.state):
                continue
            message: dict[str, Any] = {
                "framework_id": {"value": task.framework_id},
                "task_id": {"value": task.id},
                "drain": True,
            }
            if cap is not None:
                message["max_grace_period_seconds"] = cap
            self.spawn(self.send_agent(agent, "KillTaskMessage", message))
        self.check_drained(agent)

    def check_drained(self, agent: AgentRec) -> None:
        info = agent.drain_info
        if info is None or info["state"] != "DRAINING":
            return
        if any(not C.is_terminal(t.state) for t in agent.tasks.values()):
            return
        info["state"] = "DRAINED"
        log.info("agent %s is drained", agent.id)
        self.ctx.state.record_event("agent.drained", agent_id=agent.id, hostname=agent.hostname)
        self.spawn(self.save_registry())
        if (info.get("config") or {}).get("mark_gone"):
            self.spawn(self.mark_agent_gone(agent.id))

    async def set_deactivated(self, body: dict[str, Any], deactivate: bool) -> CallError | None:
        """DEACTIVATE_AGENT (no offers) and REACTIVATE_AGENT (offers again, drain ended)."""
        aid = ((body.get("agent_id") or {}).get("value")) or ""
        if not aid:
            return CallError(
                400, "Failed to validate master::Call: Expecting 'agent_id' to be present"
            )
        agent = self.agents.get(aid)
        if agent is None and aid not in self.unreachable and aid not in self.registry_agents:
            return CallError(404, f"Agent {aid} not found")
        if deactivate:
            self.deactivated.add(aid)
        else:
            self.deactivated.discard(aid)
            self.drains.pop(aid, None)
        if agent is not None:
            agent.deactivated = deactivate
            if not deactivate:
                agent.drain_info = None
            else:
                self.rescind_agent_offers(agent)
        await self.save_registry()
        self.ctx.state.record_event(
            "agent.deactivated" if deactivate else "agent.reactivated", agent_id=aid
        )
        self.allocate_now.set()
        return None

    async def h_maintenance_schedule(self, request: web.Request) -> web.Response:
        unavailable = self.leader_required(request)
        if unavailable:
            return unavailable
        if request.method == "GET":
            return json_response({"windows": self.schedule.windows})
        try:
            await self.update_schedule(await read_json(request))
        except maintenance.MaintenanceError as exc:
            return web.Response(status=400, text=str(exc))
        return web.Response(status=200)

    async def h_maintenance_status(self, request: web.Request) -> web.Response:
        return self.leader_required(request) or json_response(self.schedule.status())

    async def h_machine(self, request: web.Request) -> web.Response:
        unavailable = self.leader_required(request)
        if unavailable:
            return unavailable
        body = await read_json(request)
        try:
            if request.path.endswith("/down"):
                await self.machines_down(body)
            else:
                await self.machines_up(body)
        except maintenance.MaintenanceError as exc:
            return web.Response(status=400, text=str(exc))
        return web.Response(status=200)

    async def maintenance_call(self, kind: str, call: dict[str, Any]) -> web.Response | None:
        """The v1 operator calls of maintenance and draining (None: not one of them)."""
        try:
            if kind == "GET_MAINTENANCE_STATUS":
                return json_response(
                    {"type": kind, "get_maintenance_status": {"status": self.schedule.status()}}
                )
            if kind == "GET_MAINTENANCE_SCHEDULE":
                schedule = {"windows": self.schedule.windows} if self.schedule.windows else {}
                return json_response(
                    {"type": kind, "get_maintenance_schedule": {"schedule": schedule}}
                )
            if kind == "UPDATE_MAINTENANCE_SCHEDULE":
                body = call.get("update_maintenance_schedule") or {}
                await self.update_schedule(body.get("schedule") or {})
                return web.Response(status=202)
            if kind in ("START_MAINTENANCE", "STOP_MAINTENANCE"):
                key = "start_maintenance" if kind == "START_MAINTENANCE" else "stop_maintenance"
                machines = (call.get(key) or {}).get("machines")
                if kind == "START_MAINTENANCE":
                    await self.machines_down(machines)
                else:
                    await self.machines_up(machines)
                return web.Response(status=202)
        except maintenance.MaintenanceError as exc:
            return web.Response(status=400, text=str(exc))
        error: CallError | None
        if kind == "DRAIN_AGENT":
            error = await self.drain_agent(call.get("drain_agent") or {})
        elif kind == "DEACTIVATE_AGENT":
            error = await self.set_deactivated(call.get("deactivate_agent") or {}, True)
        elif kind == "REACTIVATE_AGENT":
            error = await self.set_deactivated(call.get("reactivate_agent") or {}, False)
        else:
            return None
        if error is not None:
            return web.Response(status=error.status, text=error.message)
        return web.Response(status=200)

    # ---- HTTP: read-only endpoints ----------------------------------------------------
    def recovered_agents(self) -> list[dict[str, Any]]:
        """Agents recovered from the registry after a failover that have not re-registered
        yet (Mesos's ``recovered_slaves``: their tasks are unknown until they do)."""
        out = []
        for aid, info in self.registry_agents.items():
            if aid in self.agents or aid in self.unreachable or aid in self.gone:
                continue
            pid = str(info.get("pid") or "")
            try:
                _, port = _split_hostport(pid)
            except ValueError:
                port = 0
            out.append({"id": aid, "hostname": info.get("hostname", ""), "port": port, "pid": pid})
        return out

    def leader_required(self, request: web.Request) -> web.Response | None:
        if self.leading:
            return None
        return self.redirect_or_unavailable(request)

    def flags(self) -> dict[str, str]:
        return {
            "agent_ping_timeout": "15secs",
            "agent_reregister_timeout": "10mins",
            "allocation_interval": "1secs",
            "allocator": "hierarchical",
            "authenticate_agents": "false",
            "authenticate_frameworks": "false",
            "authenticate_http_frameworks": "false",
            "authenticate_http_readonly": "false",
            "authenticate_http_readwrite": "false",
            "cluster": self.ctx.cluster.get("name", "playground"),
            "hostname_lookup": "false",
            "ip": self.ctx.address.host,
            "log_dir": str(self.ctx.state.node_dir(self.ctx.name)),
            "max_agent_ping_timeouts": str(C.MAX_AGENT_PING_TIMEOUTS),
            "max_completed_frameworks": str(MAX_COMPLETED_FRAMEWORKS),
            "max_completed_tasks_per_framework": str(MAX_COMPLETED_TASKS),
            "port": str(self.ctx.address.port),
            "quorum": str(self.ctx.topology.quorum),
            "registry": "replicated_log",
            "work_dir": str(self.ctx.work_dir),
            "zk_session_timeout": "10secs",
            "time_scale": f"{self.ts.scale:g}",
        }

    def state(self) -> dict[str, Any]:
        a = self.ctx.address
        leader_pid = self.leader.get("pid") if self.leader else None
        out: dict[str, Any] = {
            "version": MESOS_VERSION,
            "git_sha": C.GIT_SHA,
            "git_tag": C.GIT_TAG,
            "build_date": C.BUILD_DATE,
            "build_time": C.BUILD_TIME,
            "build_user": C.BUILD_USER,
            "start_time": self.start_time,
            "id": self.id,
            "pid": self.pid,
            "hostname": a.host,
            "capabilities": ["AGENT_UPDATE", "AGENT_DRAINING", "QUOTA_V2"],
            "activated_slaves": sum(1 for x in self.agents.values() if x.active),
            "deactivated_slaves": sum(1 for x in self.agents.values() if not x.active),
            "unreachable_slaves": len(self.unreachable),
            "cluster": self.ctx.cluster.get("name", "playground"),
            "log_dir": str(self.ctx.state.node_dir(self.ctx.name)),
            "flags": self.flags(),
            "slaves": [x.v0() for x in self.agents.values()],
            "recovered_slaves": self.recovered_agents(),
            "frameworks": [f.v0(self) for f in self.frameworks.values()],
            "completed_frameworks": [f.v0(self, completed=True) for f in self.completed_frameworks],
            "orphan_tasks": [],
            "unregistered_frameworks": [],
        }
        if self.elected_time is not None and self.leading:
            out["elected_time"] = self.elected_time
        if leader_pid:
            out["leader"] = leader_pid
            li = dict(self.leader or {})
            host, port = _split_hostport(str(leader_pid))
            out["leader_info"] = {
                "id": li.get("id"),
                "pid": leader_pid,
                "port": port,
                "hostname": host,
                "ip": _ip_to_int(host),
                "address": {"hostname": host, "ip": host, "port": port},
                "version": MESOS_VERSION,
            }
        return out

    async def h_state(self, request: web.Request) -> web.Response:
        return self.leader_required(request) or json_response(self.state())

    async def h_slaves(self, request: web.Request) -> web.Response:
        redirect = self.leader_required(request)
        if redirect:
            return redirect
        return json_response(
            {
                "slaves": [x.v0() for x in self.agents.values()],
                "recovered_slaves": self.recovered_agents(),
            }
        )

    async def h_frameworks(self, request: web.Request) -> web.Response:
        redirect = self.leader_required(request)
        if redirect:
            return redirect
        return json_response(
            {
                "frameworks": [f.v0(self) for f in self.frameworks.values()],
                "completed_frameworks": [
                    f.v0(self, completed=True) for f in self.completed_frameworks
                ],
                "unregistered_frameworks": [],
            }
        )

    async def h_tasks(self, request: web.Request) -> web.Response:
        redirect = self.leader_required(request)
        if redirect:
            return redirect
        limit = int(request.query.get("limit", 100))
        offset = int(request.query.get("offset", 0))
        order = request.query.get("order", "des")
        tasks: list[TaskRec] = []
        for fw in list(self.frameworks.values()) + list(self.completed_frameworks):
            tasks.extend(fw.tasks.values())
            tasks.extend(fw.completed_tasks)
        tasks.sort(
            key=lambda t: t.statuses[0]["timestamp"] if t.statuses else 0.0, reverse=order == "des"
        )
        return json_response({"tasks": [t.v0() for t in tasks[offset : offset + limit]]})

    async def h_health(self, request: web.Request) -> web.Response:
        return web.Response(status=200)

    async def h_redirect(self, request: web.Request) -> web.Response:
        url = self.leader_url()
        if url is None:
            return web.Response(status=503, text="No leader elected")
        return web.Response(status=307, headers={"Location": f"//{url.split('//', 1)[1]}"})

    async def h_version(self, request: web.Request) -> web.Response:
        return json_response(C.version_info())

    def metrics(self) -> dict[str, float]:
        agents = list(self.agents.values())
        total = Resources()
        used = Resources()
        for ag in agents:
            total = total + ag.total
            used = used + ag.used
        m: dict[str, float] = {
            "master/elected": 1.0 if self.leading else 0.0,
            "master/uptime_secs": time.time() - self.start_time,
            "master/slaves_active": float(sum(1 for x in agents if x.active)),
            "master/slaves_inactive": float(sum(1 for x in agents if not x.active)),
            "master/slaves_connected": float(sum(1 for x in agents if x.active)),
            "master/slaves_disconnected": float(sum(1 for x in agents if not x.active)),
            "master/slaves_unreachable": float(len(self.unreachable)),
            "master/frameworks_active": float(sum(1 for f in self.frameworks.values() if f.active)),
            "master/frameworks_inactive": float(
                sum(1 for f in self.frameworks.values() if not f.active)
            ),
            "master/frameworks_connected": float(
                sum(1 for f in self.frameworks.values() if f.connected)
            ),
            "master/frameworks_disconnected": float(
                sum(1 for f in self.frameworks.values() if not f.connected)
            ),
            "master/outstanding_offers": float(len(self.offers)),
            "master/event_queue_messages": 0.0,
            "master/event_queue_http_requests": 0.0,
            "master/event_queue_dispatches": 0.0,
            "master/invalid_status_updates": float(self.counters["invalid_status_updates"]),
            "master/valid_status_updates": float(self.counters["valid_status_updates"]),
            "master/messages_register_slave": float(self.counters["messages_register_slave"]),
            "master/messages_reregister_slave": float(self.counters["messages_reregister_slave"]),
            "master/messages_status_update": float(self.counters["messages_status_update"]),
            "master/messages_launch_tasks": float(self.counters["messages_launch_tasks"]),
            "master/messages_kill_task": float(self.counters["messages_kill_task"]),
            "master/slave_registrations": float(self.counters["slave_registrations"]),
            "master/slave_reregistrations": float(self.counters["slave_reregistrations"]),
            "master/slave_removals": float(self.counters["slave_removals"]),
            "master/slave_unreachable_scheduled": float(
                self.counters["slave_unreachable_scheduled"]
            ),
            "master/slave_unreachable_completed": float(
                self.counters["slave_unreachable_completed"]
            ),
        }
        live: dict[str, int] = {}
        for fw in self.frameworks.values():
            for t in fw.tasks.values():
                live[t.state] = live.get(t.state, 0) + 1
        for state in C.TASK_STATES:
            key = "tasks_" + state[len("TASK_") :].lower()
            if state in (
                "TASK_STAGING",
                "TASK_STARTING",
                "TASK_RUNNING",
                "TASK_KILLING",
                "TASK_UNREACHABLE",
            ):
                m[f"master/{key}"] = float(live.get(state, 0))
            else:
                m[f"master/{key}"] = float(self.task_state_counts.get(state, 0))
        for res in ("cpus", "mem", "disk", "gpus"):
            tot, usd = total.scalar(res), used.scalar(res)
            m[f"master/{res}_total"] = tot
            m[f"master/{res}_used"] = usd
            m[f"master/{res}_percent"] = (usd / tot) if tot else 0.0
        return m

    def no_leader(self) -> web.Response | None:
        """503 while no master leads (quorum lost): only health and version still answer."""
        if self.leading or self.leader_url() is not None:
            return None
        return web.Response(status=503, text="No leader elected")

    async def h_metrics(self, request: web.Request) -> web.Response:
        return self.no_leader() or json_response(self.metrics())

    # ---- HTTP: v1 operator API --------------------------------------------------------
    def v1_tasks(self) -> dict[str, Any]:
        tasks: list[dict[str, Any]] = []
        unreachable: list[dict[str, Any]] = []
        completed: list[dict[str, Any]] = []
        for fw in self.frameworks.values():
            for t in fw.tasks.values():
                (unreachable if t.state == "TASK_UNREACHABLE" else tasks).append(t.v1())
            completed.extend(t.v1() for t in fw.completed_tasks)
        return {"tasks": tasks, "unreachable_tasks": unreachable, "completed_tasks": completed}

    def v1_agents(self) -> dict[str, Any]:
        return {"agents": [x.v1() for x in self.agents.values()], "recovered_agents": []}

    def v1_frameworks(self) -> dict[str, Any]:
        return {
            "frameworks": [f.v1(self) for f in self.frameworks.values()],
            "completed_frameworks": [f.v1(self) for f in self.completed_frameworks],
        }

    async def operator_api(self, request: web.Request) -> web.Response:
        call = await read_json(request)
        if not isinstance(call, dict) or "type" not in call:
            return web.Response(
                status=400, text="Failed to validate master::Call: Expecting 'type' to be present"
            )
        kind = call["type"]
        if kind == "GET_HEALTH":
            return json_response({"type": kind, "get_health": {"healthy": True}})
        if kind == "GET_VERSION":
            return json_response(
                {
                    "type": kind,
                    "get_version": {
                        "version_info": {
                            "version": MESOS_VERSION,
                            "build_date": C.BUILD_DATE,
                            "build_time": C.BUILD_TIME,
                            "build_user": C.BUILD_USER,
                            "git_sha": C.GIT_SHA,
                            "git_tag": C.GIT_TAG,
                        }
                    },
                }
            )
        unavailable = self.no_leader()
        if unavailable is not None:
            return unavailable
        if kind == "GET_MASTER":
            out: dict[str, Any] = {"master_info": self.master_info(), "start_time": self.start_time}
            if self.elected_time is not None and self.leading:
                out["elected_time"] = self.elected_time
            return json_response({"type": kind, "get_master": out})
        if kind == "GET_METRICS":
            return json_response(
                {
                    "type": kind,
                    "get_metrics": {
                        "metrics": [{"name": k, "value": v} for k, v in self.metrics().items()]
                    },
                }
            )
        if kind == "GET_FLAGS":
            return json_response(
                {
                    "type": kind,
                    "get_flags": {
                        "flags": [{"name": k, "value": v} for k, v in self.flags().items()]
                    },
                }
            )
        if not self.leading:
            return self.redirect_or_unavailable(request)
        if kind == "GET_STATE":
            return json_response(
                {
                    "type": kind,
                    "get_state": {
                        "get_tasks": self.v1_tasks(),
                        "get_executors": {"executors": []},
                        "get_frameworks": self.v1_frameworks(),
                        "get_agents": self.v1_agents(),
                    },
                }
            )
        if kind == "GET_AGENTS":
            return json_response({"type": kind, "get_agents": self.v1_agents()})
        if kind == "GET_TASKS":
            return json_response({"type": kind, "get_tasks": self.v1_tasks()})
        if kind == "GET_FRAMEWORKS":
            return json_response({"type": kind, "get_frameworks": self.v1_frameworks()})
        if kind == "GET_EXECUTORS":
            return json_response({"type": kind, "get_executors": {"executors": []}})
        if kind == "MARK_AGENT_GONE":
            aid = ((call.get("mark_agent_gone") or {}).get("agent_id") or {}).get("value")
            if not isinstance(aid, str) or not aid:
                return web.Response(
                    status=400,
                    text="Failed to validate master::Call: "
                    "Expecting 'mark_agent_gone.agent_id' to be present",
                )
            err = await self.mark_agent_gone(aid)
            if err is not None:
                return web.Response(status=err.status, text=err.message)
            return web.Response(status=200)
        if kind in OPERATOR_OPERATIONS:
            try:
                self.operator_operation(kind, call)
            except CallError as exc:
                return web.Response(status=exc.status, text=exc.message)
            return web.Response(status=202)
        handled = await self.maintenance_call(kind, call)
        if handled is not None:
            return handled
        return web.Response(
            status=400,
            text=f"Failed to validate master::Call: call type {kind} is not supported by this cluster",
        )

    def operator_operation(self, kind: str, call: dict[str, Any]) -> None:
        """RESERVE_RESOURCES, UNRESERVE_RESOURCES, CREATE_VOLUMES, DESTROY_VOLUMES (v1 API).

        Applied to what the agent has free; offers outstanding on the agent are rescinded
        when they hold what the call needs (as the Mesos master does).
        """
        op_kind, field_name, items_key = OPERATOR_OPERATIONS[kind]
        body = call.get(field_name)
        if not isinstance(body, dict):
            raise CallError(
                400, f"Failed to validate master::Call: Expecting '{field_name}' to be present"
            )
        aid = (body.get("agent_id") or {}).get("value")
        if not aid:
            raise CallError(
                400,
                f"Failed to validate master::Call: Expecting '{field_name}.agent_id' to be present",
            )
        agent = self.agents.get(str(aid))
        if agent is None:
            raise CallError(404, f"No agent found with specified ID {aid}")
        op = {"type": op_kind, op_kind.lower(): {items_key: body.get(items_key)}}
        sends: list[tuple[str, dict[str, Any], TaskRec | None]] = []
        for attempt in (0, 1):
            try:
                self.apply_operation(None, agent, op, agent.available(), sends)
                break
            except persistence.OperationError as exc:
                text = str(exc)
                if text.startswith("Invalid ") and " Operation: " in text:
                    if attempt == 0 and agent.offered:
                        self.rescind_agent_offers(agent)
                        continue
                    raise CallError(409, f"Insufficient resources: {text}") from None
                raise CallError(400, f"Failed to validate master::Call: {text}") from None
        self.spawn(self.send_agent_all(agent, sends))
        self.allocate_now.set()

    async def send_agent_all(
        self, agent: AgentRec, sends: list[tuple[str, dict[str, Any], TaskRec | None]]
    ) -> None:
        for message, body, _task in sends:
            await self.send_agent(agent, message, body)

    # ---- wiring ---------------------------------------------------------------------
    async def end_streams(self, _app: web.Application) -> None:
        """On a clean stop, end the schedulers' event streams instead of waiting them out."""
        for fw in self.frameworks.values():
            if fw.queue is not None:
                fw.queue.put_nowait(None)

    def app(self) -> web.Application:
        app = web.Application(
            client_max_size=16 * 1024 * 1024,
            middlewares=[internal_messages_guard(self.ctx.token, "the master")],
        )
        app.on_shutdown.append(self.end_streams)
        r = app.router
        r.add_post("/api/v1/scheduler", self.scheduler_api)
        r.add_post("/api/v1", self.operator_api)
        r.add_post("/master/api/v1", self.operator_api)
        r.add_post("/master/api/v1/scheduler", self.scheduler_api)
        r.add_post("/master/mesos.internal.{message}", self.internal)
        for path in ("/master/state", "/state", "/state.json", "/master/state.json"):
            r.add_get(path, self.h_state)
        for path in ("/master/slaves", "/slaves"):
            r.add_get(path, self.h_slaves)
        for path in ("/master/frameworks", "/frameworks"):
            r.add_get(path, self.h_frameworks)
        for path in ("/master/tasks", "/tasks", "/master/tasks.json", "/tasks.json"):
            r.add_get(path, self.h_tasks)
        for path in ("/master/health", "/health"):
            r.add_get(path, self.h_health)
        for path in ("/master/redirect", "/redirect"):
            r.add_get(path, self.h_redirect)
        for prefix in ("/master", ""):
            r.add_get(f"{prefix}/maintenance/schedule", self.h_maintenance_schedule)
            r.add_post(f"{prefix}/maintenance/schedule", self.h_maintenance_schedule)
            r.add_get(f"{prefix}/maintenance/status", self.h_maintenance_status)
            r.add_post(f"{prefix}/machine/down", self.h_machine)
            r.add_post(f"{prefix}/machine/up", self.h_machine)
        r.add_get("/version", self.h_version)
        r.add_get("/metrics/snapshot", self.h_metrics)
        # DC/OS serves dcos-l4lb's view on every master (Admin Router's /net/ prefix).
        r.add_get("/net/v1/vips", self.h_vips)
        return app

    async def h_vips(self, request: web.Request) -> web.Response:
        if self.l4lb is None:
            return json_response({"message": "this master's VIP balancer is not running"}, 503)
        return json_response(self.l4lb.status())

    async def start_dns(self, dns: DnsService) -> DnsService | None:
        """Start the mesos-dns beside this master (as on DC/OS); it lives and dies with it."""
        try:
            await dns.start()
        except OSError as exc:
            log.error("mesos-dns could not start (%s); this master runs without it", exc)
            return None
        return dns

    def start_l4lb(self, dns: DnsService) -> L4lb:
        """The VIP balancer beside this master: reads the state in process while this
        master leads, from the leader (as mesos-dns does) otherwise."""

        async def fetch() -> dict[str, Any]:
            if self.leading:
                return self.state()
            return await dns.fetch_state()

        marathons = [self.ctx.address_of(n.name).url for n in self.ctx.topology.by_role("marathon")]

        async def fetch_tasks() -> list[dict[str, Any]]:
            async with dns.session.get(f"{marathons[0]}/v2/tasks") as resp:
                resp.raise_for_status()
                return list((await resp.json(content_type=None)).get("tasks") or [])

        self.l4lb = L4lb(
            fetch,
            self.ctx.cluster.get("addressing") or {},
            addr_mod.low_ports_allowed(),
            name=self.ctx.name,
            on_table=lambda t: dns.resolver.set_vips(
                {v.key.fqdn: v.host for v in t.vips.values() if v.key.fqdn}
            ),
            fetch_tasks=fetch_tasks if marathons else None,
        )
        return self.l4lb

    async def run(self) -> int:
        loops = [
            asyncio.ensure_future(supervise(fn.__name__, fn, self.ctx.stop))
            for fn in (self.election_loop, self.ping_loop, self.allocation_loop)
        ]
        beside = DnsService.beside_master(self.ctx)
        l4lb = self.start_l4lb(beside)
        loops.append(
            asyncio.ensure_future(
                supervise("l4lb_loop", functools.partial(l4lb.run, self.ctx.stop), self.ctx.stop)
            )
        )
        dns = await self.start_dns(beside)
        if dns is not None:
            loops.append(
                asyncio.ensure_future(
                    supervise(
                        "dns_refresh_loop",
                        functools.partial(dns.refresh_loop, self.ctx.stop),
                        self.ctx.stop,
                    )
                )
            )
        try:
            await run_app(self.app(), self.ctx.address.host, self.ctx.address.port, self.ctx.stop)
        finally:
            for t in loops:
                t.cancel()
            await l4lb.close()
            await beside.close()
            with contextlib.suppress(MessageError):
                await asyncio.wait_for(
                    self.transport.session.delete(
                        f"{self.ctx.coordinator_url}/v1/election/mesos/{self.ctx.name}"
                    ),
                    1.0,
                )
            await self.transport.close()
        return 0


#: Operator calls that are offer operations: (operation, call field, resources field).
OPERATOR_OPERATIONS = {
    "RESERVE_RESOURCES": ("RESERVE", "reserve_resources", "resources"),
    "UNRESERVE_RESOURCES": ("UNRESERVE", "unreserve_resources", "resources"),
    "CREATE_VOLUMES": ("CREATE", "create_volumes", "volumes"),
    "DESTROY_VOLUMES": ("DESTROY", "destroy_volumes", "volumes"),
}


def _allocatable(res: Resources) -> bool:
    return res.scalar("cpus") >= MIN_CPUS or res.scalar("mem") >= MIN_MEM


def _duration_seconds(value: Any) -> float | None:
    """A v1 DurationInfo (``{"nanoseconds": N}``, or ``{"seconds": N}`` as the docs show)."""
    if not isinstance(value, dict):
        return None
    try:
        if "nanoseconds" in value:
            return int(value["nanoseconds"]) / 1e9
        if "seconds" in value:
            return float(value["seconds"])
    except (TypeError, ValueError):
        return None
    return None


def _split_hostport(pid: str) -> tuple[str, int]:
    hostport = pid.split("@", 1)[-1]
    host, _, port = hostport.rpartition(":")
    return host, int(port)


def _ip_to_int(ip: str) -> int:
    """Mesos's ``MasterInfo.ip``: the IPv4 address as a network-order uint32 read little-endian."""
    try:
        parts = [int(p) for p in ip.split(".")]
        return parts[0] | parts[1] << 8 | parts[2] << 16 | parts[3] << 24
    except (ValueError, IndexError):
        return 0


def uuid_b64() -> str:
    return base64.b64encode(uuid.uuid4().bytes).decode()


async def serve(ctx: NodeContext) -> int:
    return await Master(ctx).run()
