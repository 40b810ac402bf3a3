"""The Mesos agent: registers with the leading master, runs tasks, survives its own restart.

Each task runs under its own command executor (``executor.py``), a process that
outlives the agent process. Everything the agent knows is checkpointed under its work
directory, so a restarted agent process recovers its tasks (Mesos agent recovery):
executors still alive are watched again, tasks that ended meanwhile get their terminal
status, and status updates not yet acknowledged are sent again.

A task on a container network (``ContainerInfo.network_infos`` with a name) gets an
address of its own from the agent's IPAM (``ipam.py``), as a CNI plugin would give it:
it is in ``$HOST`` (the task has no network namespace here, so it binds that address),
reported in ``container_status.network_infos`` and freed when the task ends. Its host
ports (``port_mappings``) lead from the agent's address to the task's (``portmap.py``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from aiohttp import web

from playground import MESOS_VERSION
from playground.cluster import auth
from playground.cluster.httpserver import json_response, read_json, run_app, supervise
from playground.cluster.node import NodeContext
from playground.cluster.procs import ProcRef
from playground.cluster.statedir import atomic_write
from playground.mesos import constants as C
from playground.mesos import ipam, persistence, portmap, users
from playground.mesos.resources import Resources, attributes_flat
from playground.mesos.transport import MessageError, Transport, internal_messages_guard
from playground.storage import driver as storage_driver

log = logging.getLogger("playground.agent")

EXECUTOR = Path(__file__).with_name("executor.py")
CAPABILITIES = [
    {"type": t}
    for t in (
        "MULTI_ROLE",
        "HIERARCHICAL_ROLE",
        "RESERVATION_REFINEMENT",
        "RESOURCE_PROVIDER",
        "RESIZE_VOLUME",
        "AGENT_OPERATION_FEEDBACK",
        "AGENT_DRAINING",
        "TASK_RESOURCE_LIMITS",
    )
]


def _signal_name(num: int) -> str:
    names = {
        signal.SIGTERM: "Terminated",
        signal.SIGKILL: "Killed",
        signal.SIGINT: "Interrupt",
        signal.SIGSEGV: "Segmentation fault",
        signal.SIGABRT: "Aborted",
        signal.SIGHUP: "Hangup",
    }
    try:
        return names.get(signal.Signals(num), signal.Signals(num).name)
    except ValueError:
        return f"signal {num}"


@dataclass
class Run:
    """One task, its executor and its container (a run of the executor)."""

    framework_id: str
    framework_info: dict[str, Any]
    info: dict[str, Any]
    container_id: str
    sandbox: Path
    meta: Path
    state: str = "TASK_STAGING"
    statuses: list[dict[str, Any]] = field(default_factory=list)
    pending: deque[dict[str, Any]] = field(default_factory=deque)
    executor: ProcRef | None = None
    task_pid: int | None = None
    killing: bool = False
    kill_reason: str | None = None
    mem_peak: int = 0
    launched_at: float = field(default_factory=time.time)
    last_sent: float = 0.0
    popen: subprocess.Popen[bytes] | None = None
    watch_fd: int | None = None
    #: The container's addresses on its container networks (network name -> IP).
    networks: dict[str, str] = field(default_factory=dict)

    @property
    def task_id(self) -> str:
        return str(self.info["task_id"]["value"])

    @property
    def executor_id(self) -> str:
        return self.task_id

    @property
    def resources(self) -> Resources:
        return Resources.from_v1(self.info.get("resources", []))

    @property
    def terminal(self) -> bool:
        return C.is_terminal(self.state)

    @property
    def mem_limit_mb(self) -> float:
        limits = self.info.get("limits") or {}
        if "mem" in limits:
            return float(limits["mem"])
        return self.resources.scalar("mem")

    def checkpoint(self) -> None:
        data = {
            "framework_id": self.framework_id,
            "framework_info": self.framework_info,
            "info": self.info,
            "container_id": self.container_id,
            "sandbox": str(self.sandbox),
            "state": self.state,
            "statuses": self.statuses,
            "pending": list(self.pending),
            "executor": self.executor.to_json() if self.executor else None,
            "task_pid": self.task_pid,
            "killing": self.killing,
            "kill_reason": self.kill_reason,
            "mem_peak": self.mem_peak,
            "launched_at": self.launched_at,
            "networks": self.networks,
        }
        atomic_write(self.meta / "task.json", json.dumps(data).encode(), durable=False)

    @classmethod
    def restore(cls, meta: Path) -> Run:
        d = json.loads((meta / "task.json").read_text())
        ex = d.get("executor")
        return cls(
            framework_id=d["framework_id"],
            framework_info=d["framework_info"],
            info=d["info"],
            container_id=d["container_id"],
            sandbox=Path(d["sandbox"]),
            meta=meta,
            state=d["state"],
            statuses=d.get("statuses", []),
            pending=deque(d.get("pending", [])),
            executor=ProcRef(int(ex["pid"]), float(ex["create_time"])) if ex else None,
            task_pid=d.get("task_pid"),
            killing=bool(d.get("killing")),
            kill_reason=d.get("kill_reason"),
            mem_peak=int(d.get("mem_peak", 0)),
            launched_at=float(d.get("launched_at", time.time())),
            networks=dict(d.get("networks") or {}),
        )


class Agent:
    def __init__(self, ctx: NodeContext) -> None:
        self.ctx = ctx
        self.ts = ctx.time
        self.spec = ctx.spec
        self.host = ctx.address.host
        self.port = ctx.address.port
        self.transport = Transport(ctx.name, ctx.token)
        self.registration_warned = 0.0
        self.work = ctx.work_dir
        self.meta = self.work / "meta"
        (self.meta / "runs").mkdir(parents=True, exist_ok=True)
        #: Dynamic reservations and persistent volumes (checkpointed in the work dir).
        self.volumes = persistence.AgentVolumes(self.work, self.meta)
        self.agent_id: str | None = None
        self.master_url: str | None = None
        self.master_epoch: int | None = None
        self.registered = False
        self.last_ping = time.monotonic()
        self.runs: dict[str, Run] = {}  # task id -> active run
        self.completed: deque[Run] = deque(maxlen=200)
        self.start_time = time.time()
        self.counters = {
            "tasks_finished": 0,
            "tasks_failed": 0,
            "tasks_killed": 0,
            "tasks_lost": 0,
            "recovery_errors": 0,
            "valid_status_updates": 0,
        }
        self.bg: set[asyncio.Task[Any]] = set()
        self.register_lock = asyncio.Lock()
        resources = self.spec.agent_resources()
        if ctx.address.task_ports and ctx.address.task_ports != (31000, 32000):
            # Shared-address fallback: each agent offers its own slice of ports.
            lo, hi = ctx.address.task_ports
            text = resources.to_text()
            import re

            text = re.sub(
                r"ports(\([^)]*\))?:\[[^\]]*\]",
                lambda m: f"ports{m.group(1) or ''}:[{lo}-{hi}]",
                text,
            )
            resources = Resources.parse(text)
        self.resources = resources
        addressing = ctx.cluster.get("addressing") or {}
        #: Addresses of tasks on container networks (the CNI IPAM plugin's role).
        self.ipam = ipam.Ipam(
            self.meta / "ipam.json",
            ctx.name,
            ipam.pools_for(ctx.topology, ctx.name, int(addressing.get("block", 1))),
            shared_ip=addressing.get("mode") == "shared-ip",
        )
        #: Host ports of tasks on container networks (the CNI port-mapper's role).
        self.portmap = portmap.PortMapper(self.host)

    # ---- identity -------------------------------------------------------------------
    @property
    def pid(self) -> str:
        return f"slave(1)@{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def agent_info(self) -> dict[str, Any]:
        info: dict[str, Any] = {
            "hostname": self.host,
            "port": self.port,
            "resources": self.resources.to_v1(),
            "attributes": self.spec.agent_attributes(),
        }
        dom = self.spec.fault_domain()
        if dom:
            info["domain"] = dom
        if self.agent_id:
            info["id"] = {"value": self.agent_id}
        return info

    def spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self.bg.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self.bg.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task failed", exc_info=task.exception())

    # ---- recovery -------------------------------------------------------------------
    def recover(self) -> None:
        meta_file = self.meta / "agent.json"
        if meta_file.exists():
            self.agent_id = json.loads(meta_file.read_text()).get("agent_id")
            log.info("recovering agent %s", self.agent_id)
        for run_meta in sorted((self.meta / "runs").iterdir()):
            try:
                run = Run.restore(run_meta)
            except (OSError, ValueError, KeyError) as exc:
                self.counters["recovery_errors"] += 1
                log.error("cannot recover %s: %s", run_meta, exc)
                continue
            if run.terminal and not run.pending:
                self.completed.append(run)
                continue
            self.runs[run.task_id] = run
            if run.terminal:
                continue  # only updates left to deliver
            if run.executor is not None and run.executor.alive():
                log.info("recovered task %s (executor pid %d)", run.task_id, run.executor.pid)
                if run.task_pid is None:
                    run.task_pid = self.read_task_pid(run)
                self.watch(run)
            else:
                log.info("task %s: its executor is gone", run.task_id)
                self.on_executor_exit(run)
        # Addresses of containers that no longer run are freed; live ones keep theirs.
        freed, conflicts = self.ipam.reconcile(
            {r.container_id: (r.task_id, r.networks) for r in self.runs.values() if not r.terminal}
        )
        if freed:
            log.info("freed the addresses of ended containers: %s", ", ".join(freed))
        for ip in conflicts:
            log.error("address %s is claimed by two live containers", ip)

    def save_agent_id(self) -> None:
        atomic_write(self.meta / "agent.json", json.dumps({"agent_id": self.agent_id}).encode())

    # ---- master detection and registration -----------------------------------------
    async def detect_loop(self) -> None:
        period = 0.2
        lost_after = self.ts.ping(C.AGENT_PING_TIMEOUT) * C.MAX_AGENT_PING_TIMEOUTS
        while not self.ctx.stop.is_set():
            try:
                view = await self.transport.get(
                    f"{self.ctx.coordinator_url}/v1/election/mesos", timeout=2.0
                )
                leader = view.get("leader_data")
                url = leader.get("url") if leader else None
                epoch = view.get("epoch")
            except MessageError:
                url, epoch = self.master_url, self.master_epoch
            if url and (
                url != self.master_url or epoch != self.master_epoch or not self.registered
            ):
                if url != self.master_url or epoch != self.master_epoch:
                    log.info("new leading master detected at %s", url)
                    self.registered = False
                self.master_url, self.master_epoch = url, epoch
                await self.register()
            elif self.registered and time.monotonic() - self.last_ping > lost_after:
                log.warning("no ping from the master for %.1fs: re-registering", lost_after)
                self.registered = False
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.ctx.stop.wait(), period)

    async def register(self) -> None:
        async with self.register_lock:
            if self.registered or self.master_url is None:
                return
            reregister = self.agent_id is not None
            body: dict[str, Any] = {
                "agent_info": self.agent_info(),
                "pid": self.pid,
                "url": self.url,
                "version": MESOS_VERSION,
                "capabilities": CAPABILITIES,
                "checkpointed_resources": self.volumes.checkpointed.to_v1(),
            }
            if reregister:
                body["tasks"] = [
                    {
                        "framework_id": {"value": r.framework_id},
                        "task_id": {"value": r.task_id},
                        "info": r.info,
                        "state": r.state,
                        "status": r.pending[-1]
                        if r.pending
                        else (r.statuses[-1] if r.statuses else None),
                        "statuses": [self.v0_status(s) for s in r.statuses],
                    }
                    for r in self.runs.values()
                    if not r.terminal
                ]
                fws: dict[str, dict[str, Any]] = {}
                for r in self.runs.values():
                    fws[r.framework_id] = r.framework_info
                body["frameworks"] = list(fws.values())
            message = "ReregisterSlaveMessage" if reregister else "RegisterSlaveMessage"
            try:
                reply = await self.transport.post(
                    f"{self.master_url}/master/mesos.internal.{message}", body
                )
            except MessageError as exc:
                if exc.status == 403:
                    log.error("the master refused this agent: %s; shutting down", exc.body)
                    self.ctx.state.record_event(
                        "agent.refused", node=self.ctx.name, agent_id=self.agent_id
                    )
                    await self.shutdown_all_tasks()
                    self.ctx.stop.set()
                else:
                    # Retried every 0.2 s (a partition may last minutes): log every 10 s.
                    now = time.monotonic()
                    if now - self.registration_warned > 10.0:
                        self.registration_warned = now
                        log.warning(
                            "registration with %s failed (retrying): %s", self.master_url, exc
                        )
                return
            self.agent_id = reply["agent_id"]["value"]
            self.save_agent_id()
            self.registered = True
            self.last_ping = time.monotonic()
            log.info(
                "%s with master %s as %s",
                "re-registered" if reregister else "registered",
                self.master_url,
                self.agent_id,
            )
            for run in list(self.runs.values()):
                if run.pending:
                    run.last_sent = 0.0
                    self.spawn(self.send_head(run))

    # ---- status updates -------------------------------------------------------------
    def v0_status(self, s: dict[str, Any]) -> dict[str, Any]:
        out = {"state": s["state"], "timestamp": s.get("timestamp", 0.0)}
        if "container_status" in s:
            out["container_status"] = s["container_status"]
        return out

    def container_status(self, run: Run) -> dict[str, Any]:
        infos: list[dict[str, Any]] = [
            {"ip_addresses": [{"protocol": "IPv4", "ip_address": self.host}]}
        ]
        requested = [n for n in _network_infos(run.info) if n.get("name")]
        if requested:
            # As the CNI isolator reports them: the requested NetworkInfos, each with the
            # address it got (none when the allocation failed).
            infos = []
            for n in requested:
                info = {k: v for k, v in n.items() if k != "ip_addresses"}
                ip = run.networks.get(str(n["name"]))
                if ip:
                    info["ip_addresses"] = [{"protocol": "IPv4", "ip_address": ip}]
                infos.append(info)
        cs: dict[str, Any] = {
            "container_id": {"value": run.container_id},
            "network_infos": infos,
        }
        if run.executor is not None:
            cs["executor_pid"] = run.executor.pid
        return cs

    def update(
        self,
        run: Run,
        state: str,
        message: str | None = None,
        reason: str | None = None,
        source: str = "SOURCE_EXECUTOR",
    ) -> None:
        if run.terminal:
            return
        status: dict[str, Any] = {
            "task_id": {"value": run.task_id},
            "state": state,
            "source": source,
            "agent_id": {"value": self.agent_id or ""},
            "executor_id": {"value": run.executor_id},
            "timestamp": time.time(),
            "uuid": base64.b64encode(uuid.uuid4().bytes).decode(),
            "container_status": self.container_status(run),
        }
        if message:
            status["message"] = message
        if reason:
            status["reason"] = reason
        run.state = state
        run.statuses.append(status)
        run.pending.append(status)
        if C.is_terminal(state):
            key = {
                "TASK_FINISHED": "tasks_finished",
                "TASK_FAILED": "tasks_failed",
                "TASK_KILLED": "tasks_killed",
            }.get(state, "tasks_lost")
            self.counters[key] += 1
            self.ctx.state.record_event(
                "task.terminal", node=self.ctx.name, task_id=run.task_id, state=state
            )
            if storage_driver.external_volumes(run.info):
                self.spawn(self.detach_volumes(run))
            self.portmap.unmap(run.container_id)
            freed = self.ipam.release(run.container_id)
            if freed:
                log.info("task %s ended: freed %s", run.task_id, ", ".join(freed))
        run.checkpoint()
        if len(run.pending) == 1:
            self.spawn(self.send_head(run))

    async def send_head(self, run: Run) -> None:
        if not run.pending or not self.registered or self.master_url is None:
            return
        status = dict(run.pending[0])
        if not status["agent_id"]["value"] and self.agent_id:
            status["agent_id"] = {"value": self.agent_id}
        run.last_sent = time.monotonic()
        body = {
            "update": {
                "framework_id": {"value": run.framework_id},
                "status": status,
                "uuid": status["uuid"],
                "latest_state": run.state,
            },
            "agent_id": self.agent_id,
        }
        try:
            await self.transport.post(
                f"{self.master_url}/master/mesos.internal.StatusUpdateMessage", body
            )
        except MessageError as exc:
            log.debug("status update for %s not delivered yet: %s", run.task_id, exc)

    async def retry_loop(self) -> None:
        interval = self.ts.wall(C.STATUS_UPDATE_RETRY, 0.5)
        while not self.ctx.stop.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.ctx.stop.wait(), interval / 2)
            now = time.monotonic()
            for run in list(self.runs.values()):
                if run.pending and now - run.last_sent >= interval:
                    self.spawn(self.send_head(run))

    def acknowledge(self, body: dict[str, Any]) -> None:
        tid = body["task_id"]["value"]
        run = self.runs.get(tid)
        if run is None or not run.pending:
            return
        if run.pending[0].get("uuid") != body.get("uuid"):
            return
        run.pending.popleft()
        self.counters["valid_status_updates"] += 1
        run.checkpoint()
        if run.pending:
            self.spawn(self.send_head(run))
        elif run.terminal:
            self.runs.pop(tid, None)
            self.completed.append(run)

    # ---- launching ------------------------------------------------------------------
    def sandbox_of(self, framework_id: str, executor_id: str, container_id: str) -> Path:
        return (
            self.work
            / "slaves"
            / (self.agent_id or "unregistered")
            / "frameworks"
            / framework_id
            / "executors"
            / executor_id
            / "runs"
            / container_id
        )

    def task_env(self, run: Run) -> dict[str, str]:
        env = dict(os.environ)
        kit_bin = str(Path(sys.executable).parent)
        env["PATH"] = kit_bin + os.pathsep + env.get("PATH", "/usr/local/bin:/usr/bin:/bin")
        env.update(
            {
                "MESOS_FRAMEWORK_ID": run.framework_id,
                "MESOS_EXECUTOR_ID": run.executor_id,
                "MESOS_TASK_ID": run.task_id,
                "MESOS_DIRECTORY": str(run.sandbox),
                "MESOS_SANDBOX": str(run.sandbox),
                "MESOS_AGENT_ENDPOINT": f"{self.host}:{self.port}",
                "MESOS_SLAVE_ID": self.agent_id or "",
                "MESOS_SLAVE_PID": self.pid,
                "MESOS_CHECKPOINT": "1" if run.framework_info.get("checkpoint") else "0",
                "MESOS_HTTP_COMMAND_EXECUTOR": "0",
                "MESOS_CONTAINER_IP": self.host,
                "LIBPROCESS_IP": self.host,
                "MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD": "5secs",
                "PLAYGROUND_STATE_DIR": str(self.ctx.state.root),
            }
        )
        for var in ((run.info.get("command") or {}).get("environment") or {}).get("variables", []):
            if var.get("type", "VALUE") == "VALUE" and "name" in var:
                env[str(var["name"])] = str(var.get("value", ""))
        if run.networks:
            # The task's own address: without a network namespace it must bind it itself.
            ip = next(iter(run.networks.values()))
            env.update({"HOST": ip, "MESOS_CONTAINER_IP": ip, "LIBPROCESS_IP": ip})
        return env

    async def run_task(self, body: dict[str, Any]) -> None:
        info = body["task"]
        fid = body["framework_id"]["value"]
        tid = info["task_id"]["value"]
        if tid in self.runs and not self.runs[tid].terminal:
            log.warning("task %s is already running; ignoring a second launch", tid)
            return
        cid = str(uuid.uuid4())
        sandbox = self.sandbox_of(fid, tid, cid)
        meta = self.meta / "runs" / cid
        sandbox.mkdir(parents=True, exist_ok=True)
        meta.mkdir(parents=True, exist_ok=True)
        latest = sandbox.parent / "latest"
        with contextlib.suppress(OSError):
            if latest.is_symlink():
                latest.unlink()
            latest.symlink_to(cid)
        run = Run(fid, body.get("framework") or {"id": {"value": fid}}, info, cid, sandbox, meta)
        self.runs[tid] = run
        if "command" not in info:
            self.update(
                run,
                "TASK_FAILED",
                "This cluster runs command tasks only (no custom executors)",
                "REASON_CONTAINER_LAUNCH_FAILED",
                "SOURCE_AGENT",
            )
            return
        user: users.TaskUser | None = None
        if users.can_switch():
            # Mesos's --switch_user: the command's user, else the framework's.
            name = users.requested(
                (info.get("command") or {}).get("user"),
                run.framework_info.get("user"),
                self.ctx.task_user,
            )
            try:
                user = users.resolve(name)
            except users.UserError as exc:
                with open(sandbox / "stderr", "ab") as fh:
                    fh.write(f"playground: {exc}\n".encode())
                self.update(
                    run, "TASK_FAILED", str(exc), "REASON_CONTAINER_LAUNCH_FAILED", "SOURCE_AGENT"
                )
                return
        problem = self.volumes.mount(info.get("resources") or [], sandbox)
        if problem is not None:
            self.update(
                run, "TASK_FAILED", problem, "REASON_CONTAINER_LAUNCH_FAILED", "SOURCE_AGENT"
            )
            return
        problem = self.allocate_addresses(run) or await self.map_ports(run)
        if problem is not None:
            log.warning("task %s: %s", tid, problem)
            with open(sandbox / "stderr", "ab") as fh:
                fh.write(f"playground: {problem}\n".encode())
            self.update(
                run, "TASK_FAILED", problem, "REASON_CONTAINER_LAUNCH_FAILED", "SOURCE_AGENT"
            )
            return
        self.update(run, "TASK_STARTING")
        vol_env = await self.attach_volumes(run)
        if vol_env is None:
            return
        cmd = dict(info["command"])
        if not cmd.get("shell", True) and not cmd.get("value") and cmd.get("arguments"):
            cmd["value"] = cmd["arguments"][0]
        image = _container_image(info)
        if image:
            with open(sandbox / "stderr", "ab") as fh:
                fh.write(
                    f"playground: image {image} is recorded, not pulled; this agent runs the "
                    "task's cmd/args directly on the host\n".encode()
                )
        launch = {
            "sandbox": str(sandbox),
            "shell": cmd.get("shell", True),
            "value": cmd.get("value", ""),
            "arguments": cmd.get("arguments", []),
            "env": {**self.task_env(run), **vol_env},
        }
        if user is not None:
            launch["user"] = user.to_json()
            launch["env"].update(user.env())
            await asyncio.to_thread(self.hand_over, run, user, vol_env)
        (meta / "launch.json").write_text(json.dumps(launch))
        rfd, wfd = os.pipe()
        try:
            run.popen = subprocess.Popen(
                [sys.executable, "-I", "-S", str(EXECUTOR), str(meta), str(wfd)],
                stdin=subprocess.DEVNULL,
                stdout=open(sandbox / "executor.log", "ab"),
                stderr=subprocess.STDOUT,
                close_fds=True,
                pass_fds=(wfd,),
                env={
                    "PATH": os.environ.get("PATH", ""),
                    "PLAYGROUND_MARK": os.environ.get("PLAYGROUND_MARK", ""),
                },
            )
        except OSError as exc:
            os.close(rfd)
            os.close(wfd)
            self.update(
                run,
                "TASK_FAILED",
                f"Failed to launch the executor: {exc}",
                "REASON_CONTAINER_LAUNCH_FAILED",
                "SOURCE_AGENT",
            )
            return
        os.close(wfd)
        try:
            run.executor = ProcRef(run.popen.pid, psutil.Process(run.popen.pid).create_time())
        except psutil.NoSuchProcess:
            run.executor = ProcRef(run.popen.pid, 0.0)
        run.checkpoint()
        self.watch(run)
        # TASK_RUNNING once the executor says (through the pipe) that the command runs.
        loop = asyncio.get_running_loop()
        launched: asyncio.Future[bytes] = loop.create_future()

        def on_pipe() -> None:
            try:
                data = os.read(rfd, 64)
            except OSError:
                data = b""
            loop.remove_reader(rfd)
            os.close(rfd)
            if not launched.done():
                launched.set_result(data)

        loop.add_reader(rfd, on_pipe)
        try:
            data = await asyncio.wait_for(launched, 30)
        except TimeoutError:
            if not launched.done():
                loop.remove_reader(rfd)
                os.close(rfd)
            log.warning("task %s: the executor did not report a launch within 30s", run.task_id)
            return
        if not data.strip().isdigit():
            # The pipe gave no pid (a lost wake-up): the executor's task.pid file is the
            # durable record of the launch, so wait for it instead.
            log.warning(
                "task %s: no pid on the launch pipe (%r); reading task.pid", run.task_id, data
            )
            for _ in range(300):
                pid = self.read_task_pid(run)
                if pid is not None or run.terminal:
                    data = str(pid or "").encode()
                    break
                await asyncio.sleep(0.1)
        if data.strip().isdigit() and not run.terminal:
            run.task_pid = int(data)
            if run.killing:
                self.signal_task(run, signal.SIGKILL)
            self.update(run, "TASK_RUNNING")
            if vol_env:
                self.spawn(self.report_volume_pid(run))

    def hand_over(self, run: Run, user: users.TaskUser, vol_env: dict[str, str]) -> None:
        """Give the sandbox and the task's volumes to the task's user (it is not ours).

        The directories from the state directory down to them become traversable (o+x,
        never readable) by others. An external volume's working copy is handed over on
        every attach (the storage node writes replicas as root); a local persistent
        volume only while it is empty, as Mesos does.
        """
        root = self.ctx.state.root
        users.make_traversable(run.sandbox, root)
        users.chown_tree(run.sandbox, user)
        external = set()
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            for v in json.loads(vol_env.get("PLAYGROUND_VOLUMES") or "{}").values():
                external.add(os.path.realpath(v["path"]))
        for dirpath, dirnames, filenames in os.walk(run.sandbox):
            for name in dirnames + filenames:
                link = os.path.join(dirpath, name)
                if not os.path.islink(link):
                    continue
                target = Path(os.path.realpath(link))
                if not target.is_dir():
                    continue
                users.make_traversable(target, root)
                if str(target) in external:
                    users.chown_tree(target, user)
                elif not any(target.iterdir()):
                    os.chown(target, user.uid, user.gid)

    def allocate_addresses(self, run: Run) -> str | None:
        """Give the task an address on each of its container networks; None, or why not."""
        for info in _network_infos(run.info):
            name = info.get("name")
            if not name:
                continue
            try:
                run.networks[str(name)] = self.ipam.allocate(
                    str(name), run.container_id, run.task_id
                )
            except ipam.IpamError as exc:
                return f"Failed to allocate an IP address on network '{name}': {exc}"
        if run.networks:
            log.info(
                "task %s: %s",
                run.task_id,
                ", ".join(f"{ip} on {n}" for n, ip in run.networks.items()),
            )
        return None

    async def map_ports(self, run: Run) -> str | None:
        """Forward the task's host ports to its address; None, or why not."""
        for info in _network_infos(run.info):
            ip = run.networks.get(str(info.get("name")))
            if not ip or not info.get("port_mappings"):
                continue
            try:
                mapped = await self.portmap.map(run.container_id, ip, info["port_mappings"])
            except portmap.PortMapError as exc:
                return f"Failed to map the host ports on network '{info['name']}': {exc}"
            if mapped:
                log.info(
                    "task %s: %s",
                    run.task_id,
                    ", ".join(f"{self.host}:{h} -> {ip}:{c}" for h, c in mapped),
                )
        return None

    # ---- external volumes (the storage node's driver) ---------------------------------
    def storage_url(self) -> str | None:
        nodes = self.ctx.topology.by_role("storage")
        return self.ctx.address_of(nodes[0].name).url if nodes else None

    async def attach_volumes(self, run: Run) -> dict[str, str] | None:
        """Attach the task's external volumes; None (and the task failed) if one cannot be."""
        vols = storage_driver.external_volumes(run.info)
        if not vols:
            return {}
        url = self.storage_url()
        mounted: dict[str, dict[str, Any]] = {}
        running = [t for t, r in self.runs.items() if not r.terminal and t != run.task_id]
        try:
            if url is None:
                raise MessageError("this cluster has no storage node")
            for vol in vols:
                reply = await self.transport.post(
                    f"{url}/v1/volumes/{vol.name}/attach",
                    {
                        "node": self.ctx.name,
                        "task_id": run.task_id,
                        "running": running,
                        "create": vol.create_options(),
                    },
                    timeout=120,
                )
                where = storage_driver.link(vol, run.sandbox, reply["path"])
                mounted[vol.container_path] = {
                    "id": reply["volume"]["id"],
                    "name": reply["volume"]["name"],
                    "path": str(where),
                    "size_bytes": reply["volume"]["size_bytes"],
                    # Good for this volume's GET and sync only (the kv's durable mode).
                    "token": auth.volume_token(self.ctx.token, reply["volume"]["id"]),
                }
        except (MessageError, OSError, ValueError, KeyError) as exc:
            detail = (
                exc.body.get("message")
                if isinstance(exc, MessageError) and isinstance(exc.body, dict)
                else str(exc)
            )
            log.warning("task %s: cannot attach its volumes: %s", run.task_id, detail)
            with open(run.sandbox / "stderr", "ab") as fh:
                fh.write(f"playground: cannot attach volume: {detail}\n".encode())
            self.update(
                run,
                "TASK_FAILED",
                f"Failed to mount the external volume: {detail}",
                "REASON_CONTAINER_LAUNCH_FAILED",
                "SOURCE_AGENT",
            )
            return None
        return storage_driver.task_env(url, mounted)

    async def report_volume_pid(self, run: Run) -> None:
        """Tell the storage node the task's process group (it freezes it for snapshots)."""
        url = self.storage_url()
        for vol in storage_driver.external_volumes(run.info):
            with contextlib.suppress(MessageError):
                await self.transport.post(
                    f"{url}/v1/volumes/{vol.name}/attachment",
                    {"task_id": run.task_id, "pid": run.task_pid},
                )

    async def detach_volumes(self, run: Run, begin: bool = False) -> None:
        """Detach the task's external volumes once it ended; with ``begin``, only tell the
        storage node the detach is coming (the task is being killed), so a restore waits
        for it instead of refusing a volume about to be free."""
        url = self.storage_url()
        if url is None:
            return
        for vol in storage_driver.external_volumes(run.info):
            try:
                await self.transport.post(
                    f"{url}/v1/volumes/{vol.name}/detach",
                    {"node": self.ctx.name, "task_id": run.task_id, "begin": begin},
                    timeout=120,
                )
            except MessageError as exc:
                log.warning("task %s: detaching volume %s failed: %s", run.task_id, vol.name, exc)

    def read_task_pid(self, run: Run) -> int | None:
        try:
            return int((run.meta / "task.pid").read_text())
        except (OSError, ValueError):
            return None

    def watch(self, run: Run) -> None:
        """Report the executor's exit as soon as it happens (pidfd where available)."""
        assert run.executor is not None
        loop = asyncio.get_running_loop()
        try:
            fd = os.pidfd_open(run.executor.pid)
        except (AttributeError, OSError):
            self.spawn(self.poll_exit(run))
            return
        run.watch_fd = fd

        def on_ready() -> None:
            loop.remove_reader(fd)
            os.close(fd)
            run.watch_fd = None
            if run.popen is not None:
                run.popen.poll()
            self.on_executor_exit(run)

        loop.add_reader(fd, on_ready)

    async def poll_exit(self, run: Run) -> None:
        while run.executor is not None and run.executor.alive():
            if run.popen is not None and run.popen.poll() is not None:
                break
            await asyncio.sleep(0.1)
        self.on_executor_exit(run)

    def on_executor_exit(self, run: Run) -> None:
        if run.terminal:
            return
        exit_file = run.meta / "exit.json"
        result: dict[str, Any] | None = None
        with contextlib.suppress(OSError, ValueError):
            result = json.loads(exit_file.read_text())
        if result is None:
            # The executor died without recording the task's end (a crash): end the container.
            if run.task_pid:
                self.signal_task(run, signal.SIGKILL)
            self.update(
                run,
                "TASK_FAILED",
                "Executor terminated",
                "REASON_EXECUTOR_TERMINATED",
                "SOURCE_AGENT",
            )
            return
        if "launch_error" in result:
            self.update(
                run,
                "TASK_FAILED",
                f"Failed to launch the command: {result['launch_error']}",
                "REASON_CONTAINER_LAUNCH_FAILED",
                "SOURCE_AGENT",
            )
            return
        code = int(result["status"])
        if run.kill_reason == "memory":
            limit = run.mem_limit_mb
            self.update(
                run,
                "TASK_FAILED",
                f"Memory limit exceeded: Requested: {limit:g}MB Maximum Used: {run.mem_peak / 1048576:.0f}MB",
                "REASON_CONTAINER_LIMITATION_MEMORY",
                "SOURCE_AGENT",
            )
        elif run.killing:
            msg = (
                f"Command terminated with signal {_signal_name(-code)}"
                if code < 0
                else f"Command exited with status {code}"
            )
            reason = "REASON_AGENT_DRAINING" if run.kill_reason == "draining" else None
            self.update(run, "TASK_KILLED", msg, reason)
        elif code == 0:
            self.update(run, "TASK_FINISHED", "Command exited with status 0")
        elif code > 0:
            self.update(run, "TASK_FAILED", f"Command exited with status {code}")
        else:
            self.update(run, "TASK_FAILED", f"Command terminated with signal {_signal_name(-code)}")

    # ---- killing --------------------------------------------------------------------
    def signal_task(self, run: Run, sig: int) -> None:
        if run.task_pid is None:
            return
        if run.executor is not None and not run.executor.alive():
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(run.task_pid, sig)

    async def kill_task(self, run: Run, grace: float | None = None) -> None:
        if run.terminal or run.killing:
            return
        run.killing = True
        run.checkpoint()
        caps = {c.get("type") for c in run.framework_info.get("capabilities", [])}
        if "TASK_KILLING_STATE" in caps and run.state == "TASK_RUNNING":
            self.update(run, "TASK_KILLING")
        if storage_driver.external_volumes(run.info):
            self.spawn(self.detach_volumes(run, begin=True))
        if run.task_pid is None:
            run.task_pid = self.read_task_pid(run)
        if grace is None:
            ns = ((run.info.get("kill_policy") or {}).get("grace_period") or {}).get("nanoseconds")
            grace = ns / 1e9 if ns is not None else C.DEFAULT_KILL_GRACE
        self.signal_task(run, signal.SIGTERM)
        wall = self.ts.wall(grace, 0.2) if grace > 0 else 0.0
        deadline = time.monotonic() + wall
        while time.monotonic() < deadline and not run.terminal:
            await asyncio.sleep(0.05)
        if not run.terminal:
            self.signal_task(run, signal.SIGKILL)

    async def shutdown_all_tasks(self) -> None:
        await asyncio.gather(*(self.kill_task(r, 0) for r in list(self.runs.values())))

    async def _shutdown(self) -> None:
        await self.shutdown_all_tasks()
        self.ctx.stop.set()

    # ---- memory limits --------------------------------------------------------------
    async def monitor_loop(self) -> None:
        while not self.ctx.stop.is_set():
            busy = sum(1 for r in self.runs.values() if not r.terminal)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.ctx.stop.wait(), max(0.5, busy * 0.005))
            for run in list(self.runs.values()):
                if run.terminal or run.task_pid is None or run.killing:
                    continue
                rss = _tree_rss(run.task_pid)
                run.mem_peak = max(run.mem_peak, rss)
                limit = run.mem_limit_mb
                if limit > 0 and rss > limit * 1048576:
                    log.warning(
                        "task %s uses %d MB, over its %g MB: killing it",
                        run.task_id,
                        rss // 1048576,
                        limit,
                    )
                    run.kill_reason = "memory"
                    run.killing = True
                    run.checkpoint()
                    self.signal_task(run, signal.SIGKILL)

    # ---- HTTP: internal messages ----------------------------------------------------
    async def internal(self, request: web.Request) -> web.Response:
        name = request.match_info["message"]
        body = await read_json(request)
        if name == "PingSlaveMessage":
            self.last_ping = time.monotonic()
            return json_response({"type": "PONG"})
        if name == "RunTaskMessage":
            self.spawn(self.run_task(body))
            return web.Response(status=202)
        if name == "KillTaskMessage":
            run = self.runs.get(body["task_id"]["value"])
            if run is None:
                self.spawn(self.unknown_kill(body))
            else:
                grace = None
                ns = ((body.get("kill_policy") or {}).get("grace_period") or {}).get("nanoseconds")
                if ns is not None:
                    grace = ns / 1e9
                if body.get("drain") and not run.terminal and not run.killing:
                    run.kill_reason = "draining"  # the master drains this agent (DRAIN_AGENT)
                    cap = body.get("max_grace_period_seconds")
                    own = ((run.info.get("kill_policy") or {}).get("grace_period") or {}).get(
                        "nanoseconds"
                    )
                    grace = own / 1e9 if own is not None else C.DEFAULT_KILL_GRACE
                    if cap is not None:
                        grace = min(grace, float(cap))
                self.spawn(self.kill_task(run, grace))
            return web.Response(status=202)
        if name == "StatusUpdateAcknowledgementMessage":
            self.acknowledge(body)
            return web.Response(status=202)
        if name == "CheckpointResourcesMessage":
            self.checkpoint_resources(body)
            return web.Response(status=202)
        if name == "ShutdownMessage":
            # The master removed this agent for good (MARK_AGENT_GONE): end every task, exit.
            log.error("the master shut this agent down: %s", (body or {}).get("message"))
            self.ctx.state.record_event(
                "agent.shutdown", node=self.ctx.name, agent_id=self.agent_id
            )
            self.spawn(self._shutdown())
            return web.Response(status=202)
        if name == "ShutdownFrameworkMessage":
            fid = body["framework_id"]["value"]
            for run in list(self.runs.values()):
                if run.framework_id == fid:
                    self.spawn(self.kill_task(run))
            return web.Response(status=202)
        return web.Response(status=404, text=f"Unknown message {name}")

    def checkpoint_resources(self, body: dict[str, Any]) -> None:
        """The master's view of this agent's reservations and volumes: keep it on disk."""
        resources = Resources.from_v1(body.get("resources") or [])
        created, deleted = self.volumes.update(resources)
        for path in created:
            log.info("created persistent volume %s", path)
        for path in deleted:
            log.info("destroyed persistent volume %s (its data is deleted)", path)

    async def unknown_kill(self, body: dict[str, Any]) -> None:
        """A kill for a task this agent does not know: tell the master so it forgets it."""
        if not self.registered or self.master_url is None:
            return
        fid = body["framework_id"]["value"]
        status = {
            "task_id": body["task_id"],
            "state": "TASK_LOST",
            "source": "SOURCE_AGENT",
            "reason": "REASON_TASK_UNKNOWN",
            "message": "Attempted to kill an unknown task",
            "agent_id": {"value": self.agent_id},
            "timestamp": time.time(),
        }
        with contextlib.suppress(MessageError):
            await self.transport.post(
                f"{self.master_url}/master/mesos.internal.StatusUpdateMessage",
                {
                    "update": {"framework_id": {"value": fid}, "status": status},
                    "agent_id": self.agent_id,
                },
            )

    # ---- HTTP: public endpoints -----------------------------------------------------
    def task_v0(self, run: Run) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": run.task_id,
            "name": run.info.get("name", ""),
            "framework_id": run.framework_id,
            "executor_id": "",
            "slave_id": self.agent_id or "",
            "state": run.state,
            "resources": run.resources.to_flat(),
            "role": _role_of(run.info),
            "statuses": [self.v0_status(s) for s in run.statuses],
        }
        if "labels" in run.info:
            out["labels"] = (run.info["labels"] or {}).get("labels", [])
        for key in ("discovery", "container", "health_check"):
            if key in run.info:
                out[key] = run.info[key]
        return out

    def executor_v0(self, run: Run) -> dict[str, Any]:
        active = not run.terminal
        return {
            "id": run.executor_id,
            "name": f"Command Executor (Task: {run.task_id}) (Command: sh -c '{(run.info.get('command') or {}).get('value', '')[:40]}')",
            "source": run.task_id,
            "container": run.container_id,
            "directory": str(run.sandbox),
            "resources": run.resources.to_flat(),
            "role": _role_of(run.info),
            "type": "COMMAND",
            "tasks": [self.task_v0(run)] if active else [],
            "queued_tasks": [],
            "completed_tasks": [] if active else [self.task_v0(run)],
        }

    def state(self) -> dict[str, Any]:
        frameworks: dict[str, dict[str, Any]] = {}
        completed_fw: dict[str, dict[str, Any]] = {}
        for run in list(self.runs.values()) + list(self.completed):
            fw = frameworks.setdefault(
                run.framework_id,
                {
                    "id": run.framework_id,
                    "name": run.framework_info.get("name", ""),
                    "user": run.framework_info.get("user", ""),
                    "failover_timeout": float(run.framework_info.get("failover_timeout", 0.0)),
                    "checkpoint": bool(run.framework_info.get("checkpoint", False)),
                    "hostname": run.framework_info.get("hostname", ""),
                    "role": (
                        run.framework_info.get("roles") or [run.framework_info.get("role", "*")]
                    )[0],
                    "roles": run.framework_info.get("roles")
                    or [run.framework_info.get("role", "*")],
                    "capabilities": [
                        c.get("type") for c in run.framework_info.get("capabilities", [])
                    ],
                    "executors": [],
                    "completed_executors": [],
                },
            )
            (fw["completed_executors"] if run.terminal else fw["executors"]).append(
                self.executor_v0(run)
            )
        total = persistence.total_with(self.resources, self.volumes.checkpointed)
        reserved = Resources(r for r in total if r.role != "*")
        unreserved = Resources(r for r in total if r.role == "*")
        out: dict[str, Any] = {
            "version": MESOS_VERSION,
            "git_sha": C.GIT_SHA,
            "git_tag": C.GIT_TAG,
            "build_date": C.BUILD_DATE,
            "build_time": C.BUILD_TIME,
            "build_user": C.BUILD_USER,
            "start_time": self.start_time,
            "id": self.agent_id or "",
            "pid": self.pid,
            "hostname": self.host,
            "capabilities": [c["type"] for c in CAPABILITIES],
            "resources": total.to_flat(),
            "reserved_resources": {
                role: Resources(r for r in reserved if r.role == role).to_flat()
                for role in sorted({r.role for r in reserved})
            },
            "unreserved_resources": unreserved.to_flat(),
            "reserved_resources_full": {
                role: [r.to_v1() for r in reserved if r.role == role]
                for role in sorted({r.role for r in reserved})
            },
            "unreserved_resources_full": unreserved.to_v1(),
            "reserved_resources_allocated": {},
            "attributes": attributes_flat(self.spec.agent_attributes()),
            "log_dir": str(self.ctx.state.node_dir(self.ctx.name)),
            "flags": {
                "work_dir": str(self.work),
                "port": str(self.port),
                "ip": self.host,
                "hostname": self.host,
                "resources": self.resources.to_text(),
                "attributes": self.spec.attributes or "",
                "checkpoint": "true",
                "executor_shutdown_grace_period": "5secs",
                "recover": "reconnect",
                "strict": "true",
            },
            "frameworks": list(frameworks.values()),
            "completed_frameworks": list(completed_fw.values()),
        }
        if self.master_url:
            out["master_hostname"] = self.master_url.split("//", 1)[1].rsplit(":", 1)[0]
        dom = self.spec.fault_domain()
        if dom:
            out["domain"] = dom
        return out

    async def h_state(self, request: web.Request) -> web.Response:
        return json_response(self.state())

    async def h_health(self, request: web.Request) -> web.Response:
        return web.Response(status=200)

    async def h_metrics(self, request: web.Request) -> web.Response:
        live = [r for r in self.runs.values() if not r.terminal]
        used = Resources()
        for r in live:
            used = used + r.resources
        m: dict[str, float] = {
            "slave/registered": 1.0 if self.registered else 0.0,
            "slave/uptime_secs": time.time() - self.start_time,
            "slave/recovery_errors": float(self.counters["recovery_errors"]),
            "slave/executors_running": float(len(live)),
            "slave/executors_terminated": float(len(self.completed)),
            "slave/frameworks_active": float(len({r.framework_id for r in live})),
            "slave/tasks_staging": float(sum(1 for r in live if r.state == "TASK_STAGING")),
            "slave/tasks_starting": float(sum(1 for r in live if r.state == "TASK_STARTING")),
            "slave/tasks_running": float(sum(1 for r in live if r.state == "TASK_RUNNING")),
            "slave/tasks_killing": float(sum(1 for r in live if r.state == "TASK_KILLING")),
            "slave/tasks_finished": float(self.counters["tasks_finished"]),
            "slave/tasks_failed": float(self.counters["tasks_failed"]),
            "slave/tasks_killed": float(self.counters["tasks_killed"]),
            "slave/tasks_lost": float(self.counters["tasks_lost"]),
            "slave/valid_status_updates": float(self.counters["valid_status_updates"]),
        }
        for res in ("cpus", "mem", "disk", "gpus"):
            t, u = self.resources.scalar(res), used.scalar(res)
            m[f"slave/{res}_total"] = t
            m[f"slave/{res}_used"] = u
            m[f"slave/{res}_percent"] = (u / t) if t else 0.0
        return json_response(m)

    def _safe_path(self, request: web.Request) -> Path:
        raw = request.query.get("path")
        if not raw:
            raise web.HTTPBadRequest(text="Expecting 'path=value' in query.")
        path = Path(raw)
        try:
            resolved = path.resolve()
            resolved.relative_to(self.work.resolve() / "slaves")
        except (ValueError, OSError):
            raise web.HTTPNotFound(text=f"No such file or directory: {raw}") from None
        if not resolved.exists():
            raise web.HTTPNotFound(text=f"No such file or directory: {raw}")
        return resolved

    async def h_browse(self, request: web.Request) -> web.Response:
        path = self._safe_path(request)
        if not path.is_dir():
            entries = [path]
        else:
            entries = sorted(path.iterdir())
        out = []
        for p in entries:
            st = p.lstat()
            out.append(
                {
                    "path": str(Path(request.query["path"]) / p.name)
                    if path.is_dir()
                    else request.query["path"],
                    "nlink": st.st_nlink,
                    "size": st.st_size,
                    "mtime": st.st_mtime,
                    "mode": stat.filemode(st.st_mode),
                    "uid": _user(st.st_uid),
                    "gid": _group(st.st_gid),
                }
            )
        return json_response(out)

    async def h_read(self, request: web.Request) -> web.Response:
        path = self._safe_path(request)
        if path.is_dir():
            raise web.HTTPBadRequest(text="Cannot read a directory")
        size = path.stat().st_size
        try:
            offset = int(request.query.get("offset", 0))
            length = int(request.query["length"]) if "length" in request.query else None
        except ValueError:
            raise web.HTTPBadRequest(text="Failed to parse offset/length") from None
        if offset == -1:
            return json_response({"data": "", "offset": size})
        if offset < 0:
            raise web.HTTPBadRequest(text="Negative offset provided")
        with open(path, "rb") as fh:
            fh.seek(offset)
            data = fh.read(min(length if length is not None else size, 4 * 1024 * 1024))
        return json_response({"data": data.decode("utf-8", errors="replace"), "offset": offset})

    async def h_download(self, request: web.Request) -> web.StreamResponse:
        path = self._safe_path(request)
        if path.is_dir():
            raise web.HTTPBadRequest(text="Cannot download a directory")
        return web.FileResponse(
            path, headers={"Content-Disposition": f"attachment; filename={path.name}"}
        )

    def app(self) -> web.Application:
        app = web.Application(
            client_max_size=16 * 1024 * 1024,
            middlewares=[internal_messages_guard(self.ctx.token, "the agent")],
        )
        r = app.router
        r.add_post("/slave(1)/mesos.internal.{message}", self.internal)
        for path in ("/state", "/slave(1)/state", "/state.json", "/slave(1)/state.json"):
            r.add_get(path, self.h_state)
        for path in ("/health", "/slave(1)/health"):
            r.add_get(path, self.h_health)
        r.add_get("/metrics/snapshot", self.h_metrics)
        for path in ("/files/browse", "/files/browse.json"):
            r.add_get(path, self.h_browse)
        for path in ("/files/read", "/files/read.json"):
            r.add_get(path, self.h_read)
        for path in ("/files/download", "/files/download.json"):
            r.add_get(path, self.h_download)
        r.add_get("/version", self.h_version)
        return app

    async def h_version(self, request: web.Request) -> web.Response:
        return json_response(C.version_info())

    async def run(self) -> int:
        self.recover()
        for run in list(self.runs.values()):
            if run.networks and not run.terminal:
                problem = await self.map_ports(run)  # the forwarders died with the agent
                if problem:
                    log.error("task %s: %s", run.task_id, problem)
        loops = [
            asyncio.ensure_future(supervise(fn.__name__, fn, self.ctx.stop))
            for fn in (self.detect_loop, self.retry_loop, self.monitor_loop)
        ]
        try:
            await run_app(self.app(), self.host, self.port, self.ctx.stop)
        finally:
            for t in loops:
                t.cancel()
            self.portmap.close()
            await self.transport.close()
        return 0


def _role_of(info: dict[str, Any]) -> str:
    for r in info.get("resources", []):
        role = (r.get("allocation_info") or {}).get("role")
        if role:
            return str(role)
    return "*"


_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_PROC_CHILDREN = Path("/proc/self/task").is_dir() and any(
    (t / "children").exists() for t in Path("/proc/self/task").iterdir()
)


def _tree_rss(pid: int) -> int:
    """Resident memory of a task and its descendants.

    On Linux this walks ``/proc/PID/task/TID/children`` (cost: the size of the tree);
    psutil's ``children(recursive=True)`` scans every process on the host, which with
    hundreds of tasks per agent costs more than the tasks themselves.
    """
    if not _PROC_CHILDREN:
        try:
            root = psutil.Process(pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            return 0
        total = 0
        for p in procs:
            with contextlib.suppress(psutil.Error):
                total += p.memory_info().rss
        return total
    total = 0
    stack = [pid]
    seen: set[int] = set()
    while stack:
        cur = stack.pop()
        if cur in seen:
            continue
        seen.add(cur)
        try:
            with open(f"/proc/{cur}/statm", "rb") as fh:
                total += int(fh.read().split()[1]) * _PAGE
            for tdir in os.scandir(f"/proc/{cur}/task"):
                with open(f"{tdir.path}/children", "rb") as fh:
                    stack.extend(int(x) for x in fh.read().split())
        except (OSError, ValueError, IndexError):
            continue
    return total


def _user(uid: int) -> str:
    try:
        import pwd

        return pwd.getpwuid(uid).pw_name
    except (KeyError, ImportError):
        return str(uid)


def _group(gid: int) -> str:
    try:
        import grp

        return grp.getgrgid(gid).gr_name
    except (KeyError, ImportError):
        return str(gid)


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


async def serve(ctx: NodeContext) -> int:
    return await Agent(ctx).run()


def _network_infos(info: dict[str, Any]) -> list[dict[str, Any]]:
    """The NetworkInfos a task asks for (named ones are container networks)."""
    infos = (info.get("container") or {}).get("network_infos") or []
    return [n for n in infos if isinstance(n, dict)]


def _container_image(info: dict[str, Any]) -> str | None:
    """The image a Docker or UCR container asks for (recorded, never pulled)."""
    container = info.get("container") or {}
    docker = container.get("docker") or {}
    if docker.get("image"):
        return str(docker["image"])
    image = (container.get("mesos") or {}).get("image") or {}
    name = (image.get("docker") or {}).get("name")
    return str(name) if name else None
