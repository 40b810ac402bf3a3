"""Marathon's core: apps, instances, the launch queue, offers, status updates, deployments.

One object, :class:`Marathon`, owns the state and runs on the node's event loop. The HTTP
API (``api.py``) calls its methods; the scheduler driver (``driver.py``) feeds it Mesos
events. Everything the API changes is written to the store before the API answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import math
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import aiohttp

from playground.cluster.timescale import TimeScale
from playground.marathon import appdef, external, matching, plan, resident, validation
from playground.marathon.appdef import timestamp
from playground.marathon.driver import Driver
from playground.marathon.store import Store

log = logging.getLogger("playground.marathon")

SCHEDULED = "SCHEDULED"
TERMINAL = frozenset(
    {
        "TASK_FINISHED",
        "TASK_FAILED",
        "TASK_KILLED",
        "TASK_ERROR",
        "TASK_LOST",
        "TASK_DROPPED",
        "TASK_GONE",
        "TASK_GONE_BY_OPERATOR",
    }
)
FAILURES = frozenset({"TASK_FAILED", "TASK_ERROR", "TASK_FINISHED", "TASK_DROPPED"})
CONDITIONS = {
    "TASK_STAGING": "Staging",
    "TASK_STARTING": "Starting",
    "TASK_RUNNING": "Running",
    "TASK_KILLING": "Killing",
    "TASK_FINISHED": "Finished",
    "TASK_FAILED": "Failed",
    "TASK_KILLED": "Killed",
    "TASK_ERROR": "Error",
    "TASK_LOST": "Unreachable",
    "TASK_DROPPED": "Dropped",
    "TASK_UNREACHABLE": "Unreachable",
    "TASK_GONE": "Gone",
    "TASK_GONE_BY_OPERATOR": "Gone",
    "TASK_UNKNOWN": "Unknown",
    SCHEDULED: "Scheduled",
}
REJECT_ORDER = matching.REASON_FUNNEL
#: Marathon's ``--decline_offer_duration`` (120 s), in real-cluster seconds.
DECLINE_OFFER_SECONDS = 120.0
#: Marathon's ``--task_launch_timeout`` 300 s, after which a task stuck in staging is killed.
TASK_LAUNCH_TIMEOUT = 300.0
KILL_RETRY_SECONDS = 10.0
#: Marathon's ``--launch_tokens`` and ``--launch_token_refresh_interval``: at most 100
#: launches per 30 s (cluster time), so a big scale-up cannot swamp the agents at once.
LAUNCH_TOKENS = 100
LAUNCH_TOKEN_REFRESH = 30.0
#: ``--reconciliation_initial_delay`` and ``--reconciliation_interval`` (Marathon defaults):
#: the periodic reconciliation that finds tasks returning from a partition after their
#: instance was expunged (they are killed as unknown) -- see docs/unreachable.md.
RECONCILIATION_INITIAL_DELAY = 15.0
RECONCILIATION_INTERVAL = 600.0
FAILOVER_TIMEOUT = 604800.0


class ApiError(Exception):
    """An API failure with Marathon's status and JSON body."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(body.get("message", ""))
        self.status = status
        self.body = body


def app_not_found(app_id: str) -> ApiError:
    return ApiError(404, {"message": f"App '{app_id}' does not exist"})


def app_locked(locked: list[Deployment]) -> ApiError:
    return ApiError(
        409,
        {
            "message": "App is locked by one or more deployments. Override with the option '?force=true'. View details at '/v2/deployments/<DEPLOYMENT_ID>'.",
            "deployments": [{"id": d.id} for d in locked],
        },
    )


@dataclass
class Instance:
    instance_id: str
    app_id: str
    version: str
    config_version: str
    incarnation: int = 1
    goal: str = "Running"
    state: str = SCHEDULED
    agent_id: str | None = None
    hostname: str | None = None
    host_ip: str | None = None
    ports: list[int] = field(default_factory=list)
    region: str | None = None
    zone: str | None = None
    attributes: dict[str, str] = field(default_factory=dict)
    since: float = field(default_factory=time.time)
    staged_at: float | None = None
    started_at: float | None = None
    message: str = ""
    unreachable_since: float | None = None
    inactive: bool = False
    kill_sent: float | None = None
    role: str = appdef.MARATHON_ROLE
    #: A resident instance's reservation on its agent (``resident.reserve_operations``).
    reservation: dict[str, Any] | None = None
    #: The task's addresses as its statuses report them (``container_status.network_infos``);
    #: None: not known yet (the agent's address is shown).
    ip_addresses: list[str] | None = None
    #: Why the last launch failed before the task ran (``/v2/queue`` shows it).
    launch_error: str | None = None

    @property
    def task_id(self) -> str:
        return appdef.task_id_of(self.instance_id, self.incarnation)

    @property
    def launched(self) -> bool:
        return self.state != SCHEDULED

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL

    def addresses(self) -> list[str]:
        """The task's IP addresses (``ipAddresses``): its own on a container network."""
        if self.ip_addresses is not None:
            return list(self.ip_addresses)
        return [self.host_ip] if self.host_ip else []

    def placement(self) -> matching.Placement:
        return matching.Placement(
            agent_id=self.agent_id or "",
            hostname=self.hostname or "",
            region=self.region,
            zone=self.zone,
            attributes=dict(self.attributes),
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Instance:
        return cls(**data)


@dataclass
class OfferStats:
    since: float = field(default_factory=time.time)
    processed: int = 0
    unused: int = 0
    last_unused_at: float | None = None
    last_used_at: float | None = None
    last_offers: dict[str, list[int]] = field(default_factory=dict)
    launch_attempt: dict[str, list[int]] = field(default_factory=dict)
    last_unused_offers: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=10))
    #: Why the app's instances wait for storage (the kit's addition to /v2/queue).
    waiting: str | None = None

    def record(self, reasons: list[str] | None) -> None:
        """Count one processed offer into the rejection funnels (Marathon's summary)."""
        self.processed += 1
        for summary in (self.last_offers, self.launch_attempt):
            for reason in REJECT_ORDER:
                row = summary.setdefault(reason, [0, 0])
                row[1] += 1
                if reasons and reason in reasons:
                    row[0] += 1
                    break
        if reasons:
            self.unused += 1
            self.last_unused_at = time.time()
        else:
            self.last_used_at = time.time()


@dataclass
class Deployment:
    id: str
    version: str
    steps: list[list[dict[str, Any]]]
    original: dict[str, dict[str, Any]]
    target: dict[str, dict[str, Any]]
    current_step: int = 0
    readiness: dict[str, dict[str, Any]] = field(default_factory=dict)
    task: asyncio.Task[None] | None = None

    @property
    def affected_apps(self) -> list[str]:
        return plan.affected_apps(self.steps)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "version": self.version,
            "steps": self.steps,
            "original": self.original,
            "target": self.target,
            "current_step": self.current_step,
        }


class Marathon:
    def __init__(
        self,
        *,
        store: Store,
        ts: TimeScale,
        masters: list[str],
        hostname: str,
        webui_url: str,
        default_region: str,
        stop: asyncio.Event,
        record_event: Callable[..., None] | None = None,
        storage_url: str | None = None,
        node_of: dict[tuple[str, int], str] | None = None,
        token: str | None = None,
        mesos_user: str = "root",
    ) -> None:
        self.store = store
        #: Marathon's ``--mesos_user``: the framework's user, so the user of tasks whose
        #: app names none (the cluster's ``task_user``).
        self.mesos_user = mesos_user
        #: The storage node, for tasks with external volumes (None: no storage node).
        self.storage = external.StorageView(storage_url, token)
        self._storage_session: aiohttp.ClientSession | None = None
        #: (host, port) of an agent -> its node name (for the storage pools).
        self.node_of = node_of or {}
        #: Appends to the cluster's event timeline (the node passes its state directory's).
        self.record_event = record_event or (lambda kind, **fields: None)
        #: Whether Marathon holds a subscription with a leading master (as last seen).
        self.mesos_connected = False
        self.ts = ts
        self.default_region = default_region
        self.stop = stop
        self.apps: dict[str, dict[str, Any]] = {}
        self.groups: dict[str, dict[str, Any]] = {}
        self.instances: dict[str, Instance] = {}
        self.by_app: dict[str, dict[str, Instance]] = {}
        self.deployments: dict[str, Deployment] = {}
        self.failures: dict[str, dict[str, Any]] = {}
        self.backoff: dict[str, tuple[float, float]] = {}
        self.offer_stats: dict[str, OfferStats] = {}
        self.health: dict[str, Any] = {}  # instance id -> HealthRunner
        self.readiness_tasks: dict[str, asyncio.Task[None]] = {}
        self.subscribers: set[asyncio.Queue[dict[str, Any]]] = set()
        self.clock = appdef.VersionClock()
        self.root_version = self.clock.next()
        self.suppressed = False
        self._revive_pending = False
        self.launch_tokens = LAUNCH_TOKENS
        self.tokens_refilled = time.monotonic()
        self.next_reconciliation = time.monotonic() + self.ts.wall(
            RECONCILIATION_INITIAL_DELAY, 0.5
        )
        self.started_at = time.time()
        self._dirty = asyncio.Event()
        self._background: set[asyncio.Future[Any]] = set()
        self.framework_id: str | None = None
        #: Reservation ids given up (wiped, deleted apps): cleaned up from the next offers.
        self.abandoned: set[str] = set()
        self._load()
        self.driver = Driver(
            masters,
            {
                "user": mesos_user,
                "name": "marathon",
                "failover_timeout": FAILOVER_TIMEOUT,
                "checkpoint": True,
                "hostname": hostname,
                "webui_url": webui_url,
                "roles": [appdef.MARATHON_ROLE],
                "principal": resident.PRINCIPAL,
                "capabilities": [
                    {"type": "PARTITION_AWARE"},
                    {"type": "MULTI_ROLE"},
                    {"type": "TASK_KILLING_STATE"},
                    {"type": "GPU_RESOURCES"},
                    {"type": "REGION_AWARE"},
                ],
                **({"id": {"value": self.framework_id}} if self.framework_id else {}),
            },
            self.on_mesos_event,
            stop,
        )

    # ---- persistence --------------------------------------------------------------------
    def _load(self) -> None:
        data = self.store.load()
        self.framework_id = data.get("framework_id")
        self.apps = data.get("apps", {})
        self.groups = data.get("groups", {})
        self.root_version = data.get("root_version", self.root_version)
        self.failures = data.get("failures", {})
        for raw in data.get("instances", []):
            inst = Instance.from_json(raw)
            self.add_instance(inst)
        self._pending_deployments = data.get("deployments", [])

    def snapshot(self) -> dict[str, Any]:
        return {
            "framework_id": self.driver.framework_id if hasattr(self, "driver") else None,
            "apps": self.apps,
            "groups": self.groups,
            "root_version": self.root_version,
            "failures": self.failures,
            "instances": [i.to_json() for i in self.instances.values()],
            "deployments": [d.to_json() for d in self.deployments.values()],
        }

    def save_now(self) -> None:
        self.store.write_now(self.snapshot())
        self._dirty.clear()

    def save_soon(self) -> None:
        self._dirty.set()

    async def persist_loop(self) -> None:
        while not self.stop.is_set():
            # Wake on a change or on the stop (a clean stop must not wait out the timeout).
            waits = {
                asyncio.ensure_future(self._dirty.wait()),
                asyncio.ensure_future(self.stop.wait()),
            }
            try:
                await asyncio.wait(waits, timeout=1.0, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waits:
                    w.cancel()
            if self._dirty.is_set():
                await asyncio.sleep(0.02)
                self.save_now()

    # ---- events ----------------------------------------------------------------------------
    def emit(self, event_type: str, **fields: Any) -> None:
        event = {**fields, "eventType": event_type, "timestamp": timestamp()}
        for q in list(self.subscribers):
            with contextlib.suppress(asyncio.QueueFull):
                q.put_nowait(event)

    def emit_instance_changed(self, inst: Instance, condition: str) -> None:
        self.emit(
            "instance_changed_event",
            instanceId=inst.instance_id,
            condition=condition,
            runSpecId=inst.app_id,
            agentId=inst.agent_id or "",
            host=inst.hostname or "",
            runSpecVersion=inst.version,
        )

    # ---- start-up --------------------------------------------------------------------------
    async def run(self) -> None:
        for raw in self._pending_deployments:
            dep = Deployment(
                id=raw["id"],
                version=raw["version"],
                steps=raw["steps"],
                original=raw["original"],
                target=raw["target"],
                current_step=raw.get("current_step", 0),
            )
            self.deployments[dep.id] = dep
            self._start_deployment_task(dep)
        self._pending_deployments = []
        loops = [
            self.driver.run(),
            self.persist_loop(),
            self.housekeeping_loop(),
        ]
        try:
            await asyncio.gather(*loops)
        finally:
            for dep in self.deployments.values():
                if dep.task is not None:
                    dep.task.cancel()
            for t in list(self.readiness_tasks.values()):
                t.cancel()
            for runner in list(self.health.values()):
                with contextlib.suppress(Exception):
                    await runner.stop()
            await self.driver.close()
            self.save_now()

    # ---- apps and groups -------------------------------------------------------------------
    def app(self, app_id: str) -> dict[str, Any]:
        app = self.apps.get(app_id)
        if app is None:
            raise app_not_found(app_id)
        return app

    def app_instances(self, app_id: str) -> list[Instance]:
        return list(self.by_app.get(app_id, {}).values())

    def add_instance(self, inst: Instance) -> None:
        self.instances[inst.instance_id] = inst
        self.by_app.setdefault(inst.app_id, {})[inst.instance_id] = inst

    def remove_instance(self, inst: Instance) -> None:
        self.instances.pop(inst.instance_id, None)
        bucket = self.by_app.get(inst.app_id)
        if bucket is not None:
            bucket.pop(inst.instance_id, None)
            if not bucket:
                del self.by_app[inst.app_id]

    def locking_deployments(self, app_ids: set[str]) -> list[Deployment]:
        return [d for d in self.deployments.values() if app_ids & set(d.affected_apps)]

    def group_ids(self) -> set[str]:
        """Every group implied by app ids or created explicitly (without the root)."""
        out = set(self.groups)
        for aid in self.apps:
            parent = appdef.parent_of(aid)
            while parent != "/":
                out.add(parent)
                parent = appdef.parent_of(parent)
        return out

    def deploy(
        self,
        target: dict[str, dict[str, Any]],
        *,
        force: bool,
        restart: set[str] | None = None,
        groups: dict[str, dict[str, Any]] | None = None,
    ) -> Deployment | None:
        """Replace the apps with ``target`` and start the deployment that gets there.

        ``target`` maps every app id that should exist afterwards to its new definition
        (normal form, without version); apps left out are removed.
        """
        # Root-group rules (Marathon validates the whole new root group).
        validation.raise_if_invalid(external.root_conflicts(target))
        original = copy.deepcopy(self.apps)
        version = self.clock.next()
        new_apps: dict[str, dict[str, Any]] = {}
        for aid, app in target.items():
            old = original.get(aid)
            app = copy.deepcopy(app)
            forced = aid in (restart or ())
            if old is not None and not forced and _definition(old) == _definition(app):
                new_apps[aid] = old
                continue
            vi = dict((old or {}).get("versionInfo") or {})
            if old is None or forced or plan.is_config_change(old, app):
                vi = {"lastScalingAt": version, "lastConfigChangeAt": version}
                self.backoff.pop(aid, None)
            else:
                vi["lastScalingAt"] = version
            app["version"] = version
            app["versionInfo"] = vi
            new_apps[aid] = app
        steps = plan.build_plan(original, new_apps)
        for aid in restart or ():
            if (
                aid in original
                and aid in new_apps
                and not any(a["app"] == aid for step in steps for a in step)
            ):
                steps.append([{"action": "RestartApplication", "app": aid}])
        affected = set(plan.affected_apps(steps))
        if not affected and groups is None:
            # Nothing changes: Marathon still answers with a (finished) deployment.
            noop = Deployment(
                id=str(uuid.uuid4()), version=version, steps=[], original={}, target={}
            )
            self.emit("deployment_success", id=noop.id)
            return noop
        locked = self.locking_deployments(affected)
        if locked and not force:
            raise app_locked(locked)
        for d in locked:
            self.cancel_deployment(d)
        taken: set[int] = set()
        for aid, app in new_apps.items():
            if aid in affected:
                taken |= appdef.used_service_ports(new_apps, exclude=aid)
                appdef.assign_service_ports(app, taken)
        self.apps = new_apps
        if groups is not None:
            self.groups = groups
        self.root_version = version
        for aid in affected:
            if aid in new_apps:
                self.store.save_version(new_apps[aid])
        dep = Deployment(
            id=str(uuid.uuid4()),
            version=version,
            steps=steps,
            original={k: v for k, v in original.items() if k in affected},
            target={k: v for k, v in new_apps.items() if k in affected},
        )
        if steps:
            self.deployments[dep.id] = dep
        self.save_now()
        if steps:
            self.emit("group_change_success", groupId="/", version=version)
            self.emit("deployment_info", plan=self.plan_json(dep), currentStep=self.step_json(dep))
            self._start_deployment_task(dep)
        return dep

    def cancel_deployment(self, dep: Deployment) -> None:
        if dep.task is not None:
            dep.task.cancel()
        self.deployments.pop(dep.id, None)
        self.emit("deployment_failed", id=dep.id)
        self.save_soon()

    def rollback_deployment(self, dep_id: str, force: bool) -> Deployment | None:
        dep = self.deployments.get(dep_id)
        if dep is None:
            raise ApiError(404, {"message": f"DeploymentPlan {dep_id} does not exist"})
        if force:
            self.cancel_deployment(dep)
            return None
        target = {k: v for k, v in self.apps.items()}
        for aid in dep.affected_apps:
            if aid in dep.original:
                orig = copy.deepcopy(dep.original[aid])
                orig.pop("version", None)
                orig.pop("versionInfo", None)
                target[aid] = orig
            else:
                target.pop(aid, None)
        self.cancel_deployment(dep)
        return self.deploy(target, force=True)

    # ---- deployment execution ---------------------------------------------------------
    def plan_json(self, dep: Deployment) -> dict[str, Any]:
        return {
            "id": dep.id,
            "version": dep.version,
            "original": self.group_json_for(dep.original, dep.version),
            "target": self.group_json_for(dep.target, dep.version),
            "steps": [{"actions": list(step)} for step in dep.steps],
        }

    def group_json_for(self, apps: dict[str, dict[str, Any]], version: str) -> dict[str, Any]:
        return {
            "id": "/",
            "apps": list(apps.values()),
            "groups": [],
            "pods": [],
            "dependencies": [],
            "version": version,
        }

    def step_json(self, dep: Deployment) -> dict[str, Any]:
        if dep.current_step >= len(dep.steps):
            return {"actions": []}
        return {"actions": [dict(a) for a in dep.steps[dep.current_step]]}

    def _start_deployment_task(self, dep: Deployment) -> None:
        dep.task = asyncio.ensure_future(self._run_deployment(dep))

    async def _run_deployment(self, dep: Deployment) -> None:
        try:
            while dep.current_step < len(dep.steps):
                actions = dep.steps[dep.current_step]
                await asyncio.gather(*(self._run_action(dep, a) for a in actions))
                self.emit(
                    "deployment_step_success",
                    plan=self.plan_json(dep),
                    currentStep=self.step_json(dep),
                )
                dep.current_step += 1
                self.save_soon()
                if dep.current_step < len(dep.steps):
                    self.emit(
                        "deployment_info",
                        plan=self.plan_json(dep),
                        currentStep=self.step_json(dep),
                    )
        except asyncio.CancelledError:
            return
        except Exception:
            log.exception("deployment %s failed", dep.id)
            self.deployments.pop(dep.id, None)
            self.emit("deployment_failed", id=dep.id)
            self.save_soon()
            return
        self.deployments.pop(dep.id, None)
        self.emit("deployment_success", id=dep.id)
        self.save_soon()

    async def _run_action(self, dep: Deployment, action: dict[str, Any]) -> None:
        kind, aid = action["action"], action["app"]
        tick = 0.1
        if kind == "StartApplication":
            return
        if kind == "StopApplication":
            for inst in self.app_instances(aid):
                self.kill_instance(inst, decommission=True)
            while self.app_instances(aid):
                await asyncio.sleep(tick)
            self.store.drop_versions(aid)
            self.backoff.pop(aid, None)
            self.offer_stats.pop(aid, None)
            self.failures.pop(aid, None)
            self.emit("app_terminated_event", appId=aid)
            return
        while True:
            app = self.apps.get(aid)
            if app is None:
                return
            if kind == "ScaleApplication":
                done = self._scale_tick(app)
            else:
                done = self._restart_tick(app)
            self._update_readiness(dep, app)
            if done:
                return
            await asyncio.sleep(tick)

    def _ok(self, app: dict[str, Any], inst: Instance) -> bool:
        """Running, healthy (when the app has health checks) and ready."""
        if inst.goal != "Running" or inst.state != "TASK_RUNNING" or inst.inactive:
            return False
        if app.get("healthChecks"):
            runner = self.health.get(inst.instance_id)
            if runner is None or runner.healthy() is not True:
                return False
        return not (app.get("readinessChecks") and not getattr(inst, "_ready", False))

    def _active(self, app_id: str) -> list[Instance]:
        return [i for i in self.app_instances(app_id) if i.goal == "Running" and not i.inactive]

    def _dying(self, app_id: str) -> list[Instance]:
        """Instances being killed that still run (they hold capacity until they are gone)."""
        return [
            i
            for i in self.app_instances(app_id)
            if i.goal != "Running" and i.launched and not i.terminal
        ]

    def _scale_tick(self, app: dict[str, Any]) -> bool:
        n = int(app["instances"])
        active = self._active(app["id"])
        if len(active) > n:
            self.scale_down(app, active, len(active) - n)
            active = self._active(app["id"])
        while len(active) < n:
            active.append(self.schedule_instance(app))
        gone = [i for i in self.app_instances(app["id"]) if self._leaving(i)]
        return not gone and sum(1 for i in active if self._ok(app, i)) >= n

    @staticmethod
    def _leaving(inst: Instance) -> bool:
        """Not wanted running and not yet settled (a stopped resident instance has settled
        once its task ended: it keeps its reservation)."""
        if inst.goal == "Running":
            return False
        return not (inst.goal == "Stopped" and (not inst.launched or inst.terminal))

    def _restart_tick(self, app: dict[str, Any]) -> bool:
        if resident.is_resident(app):
            return self._restart_tick_resident(app)
        n = int(app["instances"])
        cfg = app["versionInfo"]["lastConfigChangeAt"]
        active = self._active(app["id"])
        new = [i for i in active if i.config_version == cfg]
        old = [i for i in active if i.config_version != cfg]
        us = app["upgradeStrategy"]
        min_healthy = math.ceil(n * float(us["minimumHealthCapacity"]))
        max_capacity = math.floor(n * (1 + float(us["maximumOverCapacity"])))
        healthy_new = [i for i in new if self._ok(app, i)]
        if len(new) > n:
            self.scale_down(app, new, len(new) - n)
            new = [i for i in self._active(app["id"]) if i.config_version == cfg]
        # kill old instances while enough capacity stays healthy
        old_ok = [i for i in old if self._ok(app, i)]
        can_kill = len(healthy_new) + len(old_ok) - min_healthy
        # not yet running old instances can always go
        kill: list[Instance] = [i for i in old if not self._ok(app, i)]
        for i in sorted(old_ok, key=lambda x: -(x.started_at or 0)):
            if can_kill <= 0:
                break
            kill.append(i)
            can_kill -= 1
        dying = self._dying(app["id"])
        if (
            not kill
            and old
            and not dying
            and min_healthy >= max_capacity
            and len(old) + len(new) >= max_capacity
            and not [i for i in new if not self._ok(app, i)]
        ):
            kill.append(old[0])  # Marathon kills one first when there is no room to spare
        for i in kill:
            self.kill_instance(i, decommission=True)
        old = [i for i in old if i not in kill]
        # Killed instances hold their capacity until they are gone (TaskReplaceActor).
        dying = self._dying(app["id"])
        while len(old) + len(new) + len(dying) < max_capacity and len(new) < n:
            new.append(self.schedule_instance(app))
        gone = [i for i in self.app_instances(app["id"]) if i.goal != "Running"]
        return not old and not gone and len(healthy_new) >= n

    def _restart_tick_resident(self, app: dict[str, Any]) -> bool:
        """Restart/upgrade of a resident app: old tasks are killed and their instances come
        back on their own reservations with the new version (never more instances: the
        volumes are taken over, not created again), keeping ``minimumHealthCapacity``."""
        n = int(app["instances"])
        cfg = app["versionInfo"]["lastConfigChangeAt"]
        active = self._active(app["id"])
        if len(active) > n:
            self.scale_down(app, active, len(active) - n)
            active = self._active(app["id"])
        while len(active) < n:
            active.append(self.schedule_instance(app))
        min_healthy = math.ceil(n * float(app["upgradeStrategy"]["minimumHealthCapacity"]))
        old = [i for i in active if i.config_version != cfg]
        healthy = sum(1 for i in active if self._ok(app, i))
        moving = [i for i in active if not self._ok(app, i)]
        for inst in old:
            if not inst.launched or inst.kill_sent is not None:
                continue  # it takes the new version when it launches
            if not self._ok(app, inst) or healthy - 1 >= min_healthy or not moving:
                self.kill_instance(inst, decommission=False)
                if self._ok(app, inst):
                    healthy -= 1
                moving.append(inst)
        gone = [i for i in self.app_instances(app["id"]) if self._leaving(i)]
        new_ok = sum(1 for i in active if i.config_version == cfg and self._ok(app, i))
        return not old and not gone and new_ok >= n

    def _update_readiness(self, dep: Deployment, app: dict[str, Any]) -> None:
        checks = app.get("readinessChecks")
        if not checks:
            return
        from playground.marathon import health

        cfg = app["versionInfo"]["lastConfigChangeAt"]
        for inst in self._active(app["id"]):
            if inst.config_version != cfg or inst.state != "TASK_RUNNING":
                continue
            if inst.instance_id in self.readiness_tasks or getattr(inst, "_ready", False):
                continue
            stop_ev = asyncio.Event()

            def on_result(result: dict[str, Any], inst: Instance = inst) -> None:
                dep.readiness[inst.task_id] = result
                if result.get("ready"):
                    inst._ready = True  # type: ignore[attr-defined]

            host, ports, names = check_target(app, inst)

            async def run_check(
                inst: Instance = inst,
                stop_ev: asyncio.Event = stop_ev,
                host: str = host,
                ports: list[int] = ports,
                names: list[Any] = names,
            ) -> None:
                try:
                    await health.run_readiness(
                        checks[0],
                        host=host,
                        ports=ports,
                        port_names=names,
                        ts=self.ts,
                        on_result=on_result,
                        stop=stop_ev,
                        task_id=inst.task_id,
                    )
                finally:
                    self.readiness_tasks.pop(inst.instance_id, None)

            self.readiness_tasks[inst.instance_id] = asyncio.ensure_future(run_check())

    # ---- instances ------------------------------------------------------------------------
    def stop_instance(self, inst: Instance) -> None:
        """Scale a resident instance down: its task ends, its reservation and volumes stay."""
        inst.goal = "Stopped"
        if inst.launched and not inst.terminal:
            inst.kill_sent = time.monotonic()
            self.spawn(self.driver.kill(inst.task_id, inst.agent_id))
        self.emit_instance_changed(inst, "Reserved")
        self.save_soon()

    def schedule_instance(self, app: dict[str, Any]) -> Instance:
        for stopped in self.app_instances(app["id"]):
            if stopped.goal == "Stopped" and stopped.reservation is not None:
                # Scaling up reuses a reservation kept from a scale-down (with its data).
                stopped.goal = "Running"
                self.save_soon()
                self.wake_offers()
                return stopped
        inst = Instance(
            instance_id=appdef.new_instance_id(app["id"]),
            app_id=app["id"],
            version=app["version"],
            config_version=app["versionInfo"]["lastConfigChangeAt"],
            role=app.get("role", appdef.MARATHON_ROLE),
        )
        self.add_instance(inst)
        self.offer_stats.setdefault(app["id"], OfferStats())
        self.save_soon()
        self.wake_offers()
        return inst

    def scale_down(self, app: dict[str, Any], active: list[Instance], count: int) -> None:
        # Instances not launched yet go first, as Marathon drops them from the queue.
        queued = [i for i in active if not i.launched][:count]
        for i in queued:
            if i.reservation is not None:
                self.stop_instance(i)
            else:
                self.kill_instance(i, decommission=True)
        count -= len(queued)
        if count <= 0:
            return
        launched = [i for i in active if i.launched]
        ids = matching.select_kills(
            app,
            [
                (i.instance_id, i.placement(), i.started_at or i.staged_at or i.since)
                for i in launched
            ],
            count,
            app.get("killSelection", "YOUNGEST_FIRST"),
        )
        for iid in ids:
            inst = self.instances.get(iid)
            if inst is not None:
                if inst.reservation is not None:
                    self.stop_instance(inst)
                else:
                    self.kill_instance(inst, decommission=True)

    def kill_instance(self, inst: Instance, *, decommission: bool, wipe: bool = False) -> None:
        if decommission:
            inst.goal = "Decommissioned"
        if inst.reservation is not None and (wipe or decommission):
            # Wiped (or its app deleted): forgotten at once, even while its agent is away;
            # a task still running is killed, and the reservation is destroyed when offered.
            if inst.launched and not inst.terminal:
                self.spawn(self.driver.kill(inst.task_id, inst.agent_id))
            self.remove_instance(inst)
            self.abandon(inst)
            self.save_soon()
            return
        if not inst.launched or inst.terminal:
            if inst.goal not in ("Running", "Stopped"):
                self.remove_instance(inst)
            self.save_soon()
            return
        inst.kill_sent = time.monotonic()
        self.save_soon()
        self.spawn(self.driver.kill(inst.task_id, inst.agent_id))

    def spawn(self, coro: Any) -> None:
        """Run a call in the background, keeping a reference until it is done."""
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def wake_offers(self) -> None:
        if self.suppressed:
            self.suppressed = False
            self.spawn(self.driver.revive())
        elif not self._revive_pending:
            self._revive_pending = True

            async def revive() -> None:
                await asyncio.sleep(0)
                self._revive_pending = False
                await self.driver.revive()

            self.spawn(revive())

    def delayed(self, app_id: str) -> float:
        """Seconds (wall) until the app may launch again (its backoff), 0 when it may."""
        entry = self.backoff.get(app_id)
        if entry is None:
            return 0.0
        return max(0.0, entry[0] - time.monotonic())

    def _fail_backoff(self, app: dict[str, Any]) -> None:
        _, current = self.backoff.get(app["id"], (0.0, 0.0))
        current = (
            float(app["backoffSeconds"])
            if current == 0
            else min(current * float(app["backoffFactor"]), float(app["maxLaunchDelaySeconds"]))
        )
        self.backoff[app["id"]] = (time.monotonic() + self.ts.wall(current, 0.0), current)

    def reset_delay(self, app_id: str) -> None:
        self.backoff.pop(app_id, None)
        self.wake_offers()

    # ---- Mesos events -----------------------------------------------------------------
    async def on_mesos_event(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "SUBSCRIBED":
            self.framework_id = self.driver.framework_id
            self.save_now()
            await self.reconcile()
            if not any(i.state == SCHEDULED for i in self.instances.values()):
                self.suppressed = True
                await self.driver.suppress()
        elif kind == "OFFERS":
            await self.on_offers(event["offers"].get("offers", []))
        elif kind == "UPDATE":
            await self.on_update(event["update"]["status"])

    async def reconcile(self) -> None:
        tasks = [(i.task_id, i.agent_id) for i in self.instances.values() if i.launched]
        if tasks:
            await self.driver.reconcile(tasks)
        await self.driver.reconcile([])  # implicit: learn about tasks we do not know

    async def on_offers(self, offers: list[dict[str, Any]]) -> None:
        offers = await self._clean_reservations(offers)
        queued = [
            i
            for i in self.instances.values()
            if i.state == SCHEDULED and i.goal == "Running" and i.app_id in self.apps
        ]
        waiting = self._record_waiting(offers)
        ready = [i for i in queued if self.delayed(i.app_id) <= 0]
        if self.launch_tokens <= 0:
            ready = []
        if not ready:
            busy = queued or waiting or self.abandoned
            if offers:
                await self.driver.decline(
                    [o["id"]["value"] for o in offers], DECLINE_OFFER_SECONDS if not busy else 5.0
                )
            if not busy and not self.suppressed:
                self.suppressed = True
                await self.driver.suppress()
            return
        ready.sort(key=lambda i: i.since)
        by_app: dict[str, list[Instance]] = {}
        for inst in ready:
            by_app.setdefault(inst.app_id, []).append(inst)
        # Instances go round-robin over the offers, so a big scale-up spreads its
        # launches over the agents instead of filling the first offer.
        if self.storage.url and any(external.storage_volumes(self.apps[a]) for a in by_app):
            if self._storage_session is None:
                self._storage_session = external.new_session()
            await self.storage.refresh(self._storage_session)
        remaining = {o["id"]["value"]: o for o in offers}
        ops_by_offer: dict[str, list[dict[str, Any]]] = {oid: [] for oid in remaining}
        order = list(remaining)
        cursor = 0
        for aid, insts in by_app.items():
            app = self.apps[aid]
            stats = self.offer_stats.setdefault(aid, OfferStats())
            placed = [
                i.placement()
                for i in self.app_instances(aid)
                if i.launched and not i.terminal and i.goal == "Running"
            ]
            rejected: set[str] = set()
            counted: set[str] = set()
            while insts and len(rejected) < len(order) and self.launch_tokens > 0:
                inst = insts[0]
                launched = False
                steps = list(range(len(order)))
                preferred = self.storage.replica_nodes(app)
                if preferred:
                    # Hyperconvergence (what Portworx's scheduler extension does): agents
                    # holding a replica of the app's volume first, so no full copy moves.
                    steps.sort(
                        key=lambda k: (
                            self._offer_node(remaining[order[(cursor + k) % len(order)]])
                            not in preferred
                        )
                    )
                for k in steps:
                    oid = order[(cursor + k) % len(order)]
                    if oid in rejected:
                        continue
                    offer = remaining[oid]
                    result = self._match(app, inst, offer, placed)
                    if not isinstance(result, matching.NoMatch):
                        blocker = self.storage.blocker(app, self._offer_node(offer))
                        if blocker is not None:
                            stats.waiting = blocker
                            result = matching.NoMatch(["UnfulfilledConstraint"])
                    if isinstance(result, matching.NoMatch):
                        rejected.add(oid)
                        if oid not in counted:
                            counted.add(oid)
                            stats.record(result.reasons)
                            stats.last_unused_offers.append(
                                {
                                    "offer": offer,
                                    "reason": list(result.reasons),
                                    "timestamp": timestamp(),
                                }
                            )
                        continue
                    if oid not in counted:
                        counted.add(oid)
                        stats.record(None)
                    stats.waiting = None
                    insts.pop(0)
                    self.launch_tokens -= 1
                    if resident.is_resident(app) and inst.reservation is None:
                        ops_by_offer[oid].extend(self._reserve(app, inst, offer, result))
                    else:
                        ops_by_offer[oid].append(self._launch(app, inst, offer, result))
                    placed.append(result.placement)
                    remaining[oid] = result.remaining
                    cursor = (cursor + k + 1) % len(order)
                    launched = True
                    break
                if not launched:
                    break
        accepts = [(oid, ops) for oid, ops in ops_by_offer.items() if ops]
        declined = [oid for oid, ops in ops_by_offer.items() if not ops]
        if accepts:
            self.save_now()
        results = await asyncio.gather(*(self.driver.accept([oid], ops) for oid, ops in accepts))
        for (_, ops), ok in zip(accepts, results, strict=True):
            if not ok:
                for op in ops:
                    for ti in (op.get("launch") or {}).get("task_infos", []):
                        self._launch_failed(ti["task_id"]["value"])
        if declined:
            still = any(insts for insts in by_app.values())
            await self.driver.decline(declined, DECLINE_OFFER_SECONDS if still else 5.0)

    def _offer_node(self, offer: dict[str, Any]) -> str | None:
        addr = (offer.get("url") or {}).get("address") or {}
        return self.node_of.get((str(addr.get("ip", "")), int(addr.get("port", 0) or 0)))

    # ---- residency (local persistent volumes) -----------------------------------------
    def _match(
        self,
        app: dict[str, Any],
        inst: Instance,
        offer: dict[str, Any],
        placed: list[matching.Placement],
    ) -> matching.Match | matching.NoMatch:
        if not resident.is_resident(app):
            return matching.match_offer(app, offer, placed, default_region=self.default_region)
        if inst.reservation is None:
            return matching.match_offer(
                resident.reservation_app(app), offer, placed, default_region=self.default_region
            )
        return resident.reserved_match(app, offer, inst.reservation, self.framework_id or "")

    def _reserve(
        self, app: dict[str, Any], inst: Instance, offer: dict[str, Any], m: matching.Match
    ) -> list[dict[str, Any]]:
        """RESERVE + CREATE for a new resident instance: it is pinned to the offer's agent."""
        ops, record = resident.reserve_operations(
            app,
            offer,
            m,
            framework_id=self.framework_id or self.driver.framework_id or "",
            reservation_id=inst.instance_id,
        )
        inst.reservation = record
        inst.agent_id = record["agentId"]
        inst.hostname = offer["hostname"]
        inst.host_ip = ((offer.get("url") or {}).get("address") or {}).get("ip") or offer[
            "hostname"
        ]
        inst.region = m.placement.region
        inst.zone = m.placement.zone
        inst.attributes = dict(m.placement.attributes)
        inst.ports = list(m.host_ports)
        inst.message = "Reserved"
        log.info(
            "reserving resources and creating volumes for %s on agent %s",
            inst.instance_id,
            inst.agent_id,
        )
        self.emit_instance_changed(inst, "Reserved")
        self.save_soon()
        return ops

    async def _clean_reservations(self, offers: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Destroy and unreserve what this framework reserved for instances it no longer has;
        returns the offers left for launching."""
        fid = self.framework_id or self.driver.framework_id
        if not fid:
            return offers
        known = {
            str(i.reservation["id"]) for i in self.instances.values() if i.reservation is not None
        }
        left: list[dict[str, Any]] = []
        for offer in offers:
            ops, ids = resident.orphaned_operations(offer, fid, known)
            if not ops:
                left.append(offer)
                continue
            log.info(
                "destroying volumes and unreserving resources of %s on agent %s",
                ", ".join(sorted(ids)),
                offer["agent_id"]["value"],
            )
            if await self.driver.accept([offer["id"]["value"]], ops):
                self.abandoned -= ids
        return left

    def waiting_residents(self) -> list[Instance]:
        """Resident instances that wait for their agent to come back (unreachable disabled)."""
        return [
            i
            for i in self.instances.values()
            if i.reservation is not None
            and i.goal == "Running"
            and i.state == "TASK_UNREACHABLE"
            and i.app_id in self.apps
        ]

    def _record_waiting(self, offers: list[dict[str, Any]]) -> list[Instance]:
        """Count offers that cannot serve waiting resident instances (the queue shows why)."""
        waiting = self.waiting_residents()
        apps = {i.app_id for i in waiting}
        for aid in apps:
            stats = self.offer_stats.setdefault(aid, OfferStats())
            for offer in offers:
                stats.record([resident.NO_RESERVATION])
                stats.last_unused_offers.append(
                    {
                        "offer": offer,
                        "reason": [resident.NO_RESERVATION],
                        "timestamp": timestamp(),
                    }
                )
        return waiting

    def abandon(self, inst: Instance) -> None:
        """Forget a resident instance's reservation; its resources are cleaned up when offered."""
        if inst.reservation is not None:
            self.abandoned.add(str(inst.reservation["id"]))
            inst.reservation = None
            self.wake_offers()

    def _launch_failed(self, task_id: str) -> None:
        split = appdef.split_task_id(task_id)
        if split is None:
            return
        inst = self.instances.get(split[0])
        if inst is not None and inst.task_id == task_id:
            inst.state = SCHEDULED
            if inst.reservation is None:
                inst.agent_id = None

    def _launch(
        self, app: dict[str, Any], inst: Instance, offer: dict[str, Any], m: matching.Match
    ) -> dict[str, Any]:
        """Turn a matched offer into a LAUNCH operation; the instance becomes staged."""
        if inst.version != app["version"]:
            inst.version = app["version"]
            inst.config_version = app["versionInfo"]["lastConfigChangeAt"]
        host_ip = ((offer.get("url") or {}).get("address") or {}).get("ip") or offer["hostname"]
        inst.agent_id = offer["agent_id"]["value"]
        inst.hostname = offer["hostname"]
        inst.host_ip = host_ip
        # On a container network the agent's IPAM gives the address: known from the statuses.
        inst.ip_addresses = [] if appdef.container_networks(app) else None
        inst.ports = list(m.host_ports)
        inst.region = m.placement.region
        inst.zone = m.placement.zone
        inst.attributes = dict(m.placement.attributes)
        inst.state = "TASK_STAGING"
        inst.staged_at = time.time()
        inst.started_at = None
        inst.message = ""
        inst.kill_sent = None
        inst.role = (offer.get("allocation_info") or {}).get("role", appdef.MARATHON_ROLE)
        if inst.reservation is not None:
            inst.reservation["state"] = "Launched"
        stats = self.offer_stats.get(app["id"])
        if stats is not None and not any(
            i.state == SCHEDULED for i in self.app_instances(app["id"]) if i is not inst
        ):
            stats.launch_attempt = {}
        return {"type": "LAUNCH", "launch": {"task_infos": [self.task_info(app, inst, m)]}}

    def task_info(self, app: dict[str, Any], inst: Instance, m: matching.Match) -> dict[str, Any]:
        env = appdef.task_env(
            app, host=inst.hostname or "", host_ports=inst.ports, task_id=inst.task_id
        )
        command: dict[str, Any] = {
            "environment": {"variables": [{"name": k, "value": v} for k, v in env.items()]}
        }
        if app.get("cmd"):
            command.update(shell=True, value=app["cmd"])
        elif app.get("args"):
            command.update(shell=False, value=app["args"][0], arguments=list(app["args"]))
        else:
            command.update(shell=True, value="")
        if app.get("fetch"):
            command["uris"] = [
                {
                    "value": f["uri"],
                    "extract": f.get("extract", True),
                    "executable": f.get("executable", False),
                    "cache": f.get("cache", False),
                }
                for f in app["fetch"]
            ]
        if app.get("user"):
            command["user"] = app["user"]
        specs = appdef.port_specs(app)
        nets = appdef.container_networks(app)
        info: dict[str, Any] = {
            "name": appdef.mesos_task_name(app["id"]),
            "task_id": {"value": inst.task_id},
            "agent_id": {"value": inst.agent_id},
            "resources": m.resources,
            "command": command,
            "labels": {
                "labels": [{"key": k, "value": str(v)} for k, v in app.get("labels", {}).items()]
            },
            "discovery": {
                "visibility": "FRAMEWORK",
                "name": appdef.mesos_task_name(app["id"]),
                "ports": {
                    "ports": _container_discovery_ports(app, inst.ports)
                    if nets
                    else [
                        {
                            "number": port,
                            "protocol": (specs[k].get("protocol") if k < len(specs) else "tcp")
                            or "tcp",
                            **(
                                {"name": specs[k]["name"]}
                                if k < len(specs) and specs[k].get("name")
                                else {}
                            ),
                            # The port definition's labels (VIP_n among them) and
                            # Marathon's network-scope, as PortDiscovery carries them.
                            "labels": {
                                "labels": [
                                    {"key": lk, "value": str(lv)}
                                    for lk, lv in (
                                        specs[k].get("labels") if k < len(specs) else {}
                                    ).items()
                                ]
                                + [{"key": "network-scope", "value": "host"}]
                            },
                        }
                        for k, port in enumerate(inst.ports)
                    ]
                },
            },
        }
        if "taskKillGracePeriodSeconds" in app:
            info["kill_policy"] = {
                "grace_period": {"nanoseconds": int(float(app["taskKillGracePeriodSeconds"]) * 1e9)}
            }
        container = app.get("container")
        if container and container.get("type") == "DOCKER":
            info["container"] = {
                "type": "DOCKER",
                "docker": {
                    "image": container.get("docker", {}).get("image", ""),
                    "network": "HOST",
                    "force_pull_image": bool(
                        container.get("docker", {}).get("forcePullImage", False)
                    ),
                },
            }
        elif container and container.get("type") == "MESOS" and container.get("docker"):
            info["container"] = {
                "type": "MESOS",
                "mesos": {
                    "image": {
                        "type": "DOCKER",
                        "docker": {"name": container["docker"].get("image", "")},
                    }
                },
            }
        ext = external.mesos_volumes(app)
        if ext:
            info.setdefault("container", {"type": "MESOS"})
            info["container"].setdefault("volumes", []).extend(ext)
        if nets:
            # Container networks: Mesos (its CNI isolator) gives the task its address.
            info.setdefault("container", {"type": "MESOS"})
            info["container"]["network_infos"] = _network_infos(app, inst.ports)
            if "docker" in info["container"]:
                info["container"]["docker"]["network"] = "USER"
        return info

    async def on_update(self, status: dict[str, Any]) -> None:
        if status.get("uuid"):
            self.spawn(self.driver.acknowledge(status))
        task_id = status["task_id"]["value"]
        state = status["state"]
        split = appdef.split_task_id(task_id)
        inst = self.instances.get(split[0]) if split else None
        if inst is None or inst.task_id != task_id:
            if state not in TERMINAL and state != "TASK_UNKNOWN":
                log.info("killing unknown task %s (%s)", task_id, state)
                agent = (status.get("agent_id") or {}).get("value")
                self.spawn(self.driver.kill(task_id, agent))
                if split:
                    self.emit(
                        "unknown_instance_terminated_event",
                        instanceId=split[0],
                        runSpecId=appdef.app_id_of_task(task_id) or "",
                        condition=CONDITIONS.get(state, "Unknown"),
                    )
            return
        if inst.state == state and state != "TASK_RUNNING":
            return
        if _ORDER.get(state, 99) < _ORDER.get(inst.state, 0):
            return  # a retried older update arriving late (Mesos retries until acked)
        previous = inst.state
        inst.state = state
        inst.message = status.get("message", "")
        reported = _status_addresses(status)
        if reported:
            inst.ip_addresses = reported
        if status.get("agent_id") and not inst.agent_id:
            inst.agent_id = status["agent_id"]["value"]
        app = self.apps.get(inst.app_id)
        if state == "TASK_RUNNING":
            inst.unreachable_since = None
            inst.launch_error = None
            if inst.inactive:
                # Back from a partition before it was expunged: the instance counts again,
                # and the app's surplus is killed by its killSelection (housekeeping).
                inst.inactive = False
                log.info("instance %s is reachable again", inst.instance_id)
                self.emit_instance_changed(inst, "Running")
                self.save_soon()
            if inst.started_at is None:
                inst.started_at = time.time()
            # (also after a Marathon restart: reconciliation reports the running tasks)
            self._start_health(inst)
            if previous != "TASK_RUNNING":
                if inst.goal != "Running" and inst.kill_sent is None:
                    self.kill_instance(inst, decommission=False)
        elif state == "TASK_UNREACHABLE":
            if inst.unreachable_since is None:
                inst.unreachable_since = time.time()
            if inst.reservation is not None:
                self.wake_offers()  # it waits for its agent: offers tell the queue why
        if previous != state:
            self.emit(
                "status_update_event",
                slaveId=inst.agent_id or "",
                taskId=task_id,
                taskStatus=state,
                message=inst.message,
                appId=inst.app_id,
                host=inst.hostname or "",
                ipAddresses=[{"ipAddress": ip, "protocol": "IPv4"} for ip in inst.addresses()],
                ports=inst.ports,
                version=inst.version,
            )
            self.emit_instance_changed(inst, CONDITIONS.get(state, "Unknown"))
        if state in TERMINAL:
            await self._stop_health(inst)
            self.readiness_tasks.pop(inst.instance_id, None)
            if (
                state in FAILURES
                and status.get("reason") == "REASON_CONTAINER_LAUNCH_FAILED"
                and inst.started_at is None
            ):
                # It never ran (no address left, a volume not attached, ...): the queue says why.
                inst.launch_error = inst.message or "the container could not be launched"
            if state in FAILURES and app is not None and inst.goal == "Running":
                self.failures[inst.app_id] = {
                    "appId": inst.app_id,
                    "host": inst.hostname or "",
                    "message": inst.message,
                    "state": state,
                    "taskId": task_id,
                    "slaveId": inst.agent_id or "",
                    "timestamp": timestamp(),
                    "version": inst.version,
                }
                self._fail_backoff(app)
            if inst.reservation is not None and state == "TASK_GONE_BY_OPERATOR":
                # The agent is gone for good, with the volume: give the reservation up
                # (Marathon 1.8 abandons it) -- the instance starts over with a new one.
                log.warning(
                    "agent %s of resident instance %s is gone: its volumes are lost",
                    inst.agent_id,
                    inst.instance_id,
                )
                self.abandon(inst)
            if inst.goal == "Stopped" and inst.reservation is not None and app is not None:
                self._relaunch(inst)  # scaled down: keeps its reservation, waits for a scale-up
            elif inst.goal != "Running" or app is None or inst.inactive:
                self.remove_instance(inst)
                self.abandon(inst)
            else:
                self._relaunch(inst)
        self.save_soon()

    def _relaunch(self, inst: Instance) -> None:
        inst.incarnation += 1
        inst.state = SCHEDULED
        if inst.reservation is not None:
            # Pinned: the next task runs on the reservation, with the same ports and volumes.
            inst.reservation["state"] = "Suspended"
            inst.ports = list(inst.reservation.get("ports") or [])
        else:
            inst.agent_id = None
            inst.ports = []
        inst.ip_addresses = None
        inst.staged_at = inst.started_at = None
        inst.kill_sent = None
        inst.since = time.time()
        if hasattr(inst, "_ready"):
            del inst._ready
        self.wake_offers()

    # ---- health --------------------------------------------------------------------------
    def _start_health(self, inst: Instance) -> None:
        app = self.apps.get(inst.app_id)
        if app is None or not app.get("healthChecks") or inst.instance_id in self.health:
            return
        if inst.version != app["version"]:
            versioned = self.store.version(inst.app_id, inst.version)
            checks = (versioned or app).get("healthChecks") or []
        else:
            checks = app["healthChecks"]
        if not checks:
            return
        from playground.marathon import health

        host, ports, _ = check_target(app, inst)
        env = appdef.task_env(
            app,
            host=host if appdef.container_networks(app) else inst.hostname or "",
            host_ports=inst.ports,
            task_id=inst.task_id,
        )

        def on_change(instance_id: str, index: int, alive: bool | None) -> None:
            self.emit(
                "health_status_changed_event",
                appId=inst.app_id,
                instanceId=instance_id,
                version=inst.version,
                alive=bool(alive),
            )
            self.emit(
                "instance_health_changed_event",
                instanceId=instance_id,
                runSpecId=inst.app_id,
                runSpecVersion=inst.version,
                healthy=bool(alive),
            )
            if not alive and 0 <= index < len(checks):
                self.emit(
                    "failed_health_check_event",
                    appId=inst.app_id,
                    taskId=inst.task_id,
                    instanceId=instance_id,
                    healthCheck=checks[index],
                )

        def on_kill(instance_id: str, reason: str) -> None:
            current = self.instances.get(instance_id)
            if current is None or current.terminal:
                return
            log.info("killing unhealthy task %s: %s", current.task_id, reason)
            self.emit(
                "unhealthy_instance_kill_event",
                appId=current.app_id,
                taskId=current.task_id,
                instanceId=instance_id,
                version=current.version,
                reason=reason,
                host=current.hostname or "",
                slaveId=current.agent_id or "",
            )
            self.kill_instance(current, decommission=False)

        runner = health.HealthRunner(
            checks,
            instance_id=inst.instance_id,
            host=host,
            ports=ports,
            env=env,
            cwd=None,
            ts=self.ts,
            on_change=on_change,
            on_kill=on_kill,
            started_at=inst.started_at or time.time(),
        )
        self.health[inst.instance_id] = runner
        runner.start()

    async def _stop_health(self, inst: Instance) -> None:
        runner = self.health.pop(inst.instance_id, None)
        if runner is not None:
            await runner.stop()

    def health_results(self, inst: Instance) -> list[dict[str, Any]]:
        runner = self.health.get(inst.instance_id)
        return runner.results() if runner is not None else []

    # ---- housekeeping ------------------------------------------------------------------
    async def housekeeping_loop(self) -> None:
        """Retry kills, expire unreachable instances, keep apps at their instance count."""
        while not self.stop.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.stop.wait(), 0.25)
            now = time.monotonic()
            wall_now = time.time()
            if now - self.tokens_refilled >= self.ts.wall(LAUNCH_TOKEN_REFRESH, 0.5):
                self.tokens_refilled = now
                if self.launch_tokens < LAUNCH_TOKENS:
                    self.launch_tokens = LAUNCH_TOKENS
                    if any(i.state == SCHEDULED for i in self.instances.values()):
                        self.wake_offers()
            connected = self.driver.connected.is_set()
            if connected != self.mesos_connected:
                self.mesos_connected = connected
                if not connected:
                    log.warning(
                        "disconnected from the Mesos master: serving reads from Marathon's "
                        "own state, deployments wait for a leading master"
                    )
                self.record_event(
                    "marathon.connected" if connected else "marathon.disconnected",
                    master=self.driver.leader_hostport if connected else None,
                )
            if now >= self.next_reconciliation:
                self.next_reconciliation = now + self.ts.wall(RECONCILIATION_INTERVAL, 1.0)
                if self.driver.connected.is_set():
                    await self.reconcile()
            locked = {a for d in self.deployments.values() for a in d.affected_apps}
            for inst in list(self.instances.values()):
                res = inst.reservation
                if (
                    res is not None
                    and res.get("state") == "New"
                    and inst.state == SCHEDULED
                    and wall_now - float(res.get("since", wall_now))
                    > self.ts.wall(resident.RESERVATION_TIMEOUT, 2.0)
                ):
                    log.warning(
                        "reservation of %s was not offered back in time: reserving again",
                        inst.instance_id,
                    )
                    self.abandon(inst)
                    inst.agent_id = None
                    inst.ports = []
                    self.save_soon()
                if inst.kill_sent is not None and not inst.terminal:
                    if now - inst.kill_sent > self.ts.wall(KILL_RETRY_SECONDS, 1.0):
                        inst.kill_sent = now
                        await self.driver.kill(inst.task_id, inst.agent_id)
                if inst.state == "TASK_STAGING" and inst.staged_at is not None:
                    if wall_now - inst.staged_at > self.ts.wall(TASK_LAUNCH_TIMEOUT, 5.0):
                        if inst.kill_sent is None:
                            self.kill_instance(inst, decommission=False)
                if inst.unreachable_since is not None and inst.state == "TASK_UNREACHABLE":
                    app = self.apps.get(inst.app_id)
                    strategy = (app or {}).get("unreachableStrategy")
                    if not isinstance(strategy, dict):
                        continue  # "disabled": wait for the task to come back
                    age = wall_now - inst.unreachable_since
                    if not inst.inactive and age >= self.ts.wall(
                        float(strategy.get("inactiveAfterSeconds", 0)), 0.0
                    ):
                        inst.inactive = True
                        self.emit_instance_changed(inst, "UnreachableInactive")
                        self.save_soon()
                    if inst.inactive and age >= self.ts.wall(
                        float(strategy.get("expungeAfterSeconds", 0)), 0.0
                    ):
                        await self._stop_health(inst)
                        self.remove_instance(inst)
                        self.save_soon()
            for aid, app in self.apps.items():
                if aid in locked:
                    continue
                active = self._active(aid)
                missing = int(app["instances"]) - len(active)
                for _ in range(max(0, missing)):
                    self.schedule_instance(app)
                if missing < 0:
                    self.scale_down(app, active, -missing)


_ORDER = {"TASK_STAGING": 1, "TASK_STARTING": 2, "TASK_RUNNING": 3}


def _definition(app: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in app.items() if k not in ("version", "versionInfo")}


# ---- container networks (IP-per-task) ---------------------------------------------------------
def _status_addresses(status: dict[str, Any]) -> list[str]:
    """The addresses a TaskStatus reports (``container_status.network_infos``)."""
    infos = (status.get("container_status") or {}).get("network_infos") or []
    return [
        str(a["ip_address"])
        for n in infos
        for a in (n.get("ip_addresses") or [])
        if a.get("ip_address")
    ]


def _mapped_networks(app: dict[str, Any], pm: dict[str, Any]) -> list[str]:
    """The container networks a port mapping applies to (all of them by default)."""
    return list(pm.get("networkNames") or [n["name"] for n in appdef.container_networks(app)])


def _network_infos(app: dict[str, Any], host_ports: list[int]) -> list[dict[str, Any]]:
    """``ContainerInfo.network_infos`` for the app's container networks (TaskBuilder):
    the network's name and labels, and the host port mappings that apply to it."""
    mappings = (app.get("container") or {}).get("portMappings") or []
    effective = appdef.effective_ports(app, host_ports)
    out = []
    for net in appdef.container_networks(app):
        info: dict[str, Any] = {"name": net["name"]}
        if net.get("labels"):
            info["labels"] = {
                "labels": [{"key": k, "value": str(v)} for k, v in net["labels"].items()]
            }
        port_mappings = [
            {
                "host_port": hp,
                "container_port": int(pm.get("containerPort") or 0) or hp,
                "protocol": proto,
            }
            for pm, hp in zip(mappings, effective, strict=False)
            if hp is not None and net["name"] in _mapped_networks(app, pm)
            for proto in str(pm.get("protocol") or "tcp").split(",")
        ]
        if port_mappings:
            info["port_mappings"] = port_mappings
        out.append(info)
    return out


def _container_discovery_ports(app: dict[str, Any], host_ports: list[int]) -> list[dict[str, Any]]:
    """DiscoveryInfo ports of an app on container networks (Marathon's PortDiscovery): a host
    port with ``network-scope: host``; a container port once per network, with
    ``network-scope: container`` and ``network-name``."""
    mappings = (app.get("container") or {}).get("portMappings") or []
    out: list[dict[str, Any]] = []
    for pm, hp in zip(mappings, appdef.effective_ports(app, host_ports), strict=False):
        labels = [{"key": k, "value": str(v)} for k, v in (pm.get("labels") or {}).items()]
        name = {"name": pm["name"]} if pm.get("name") else {}
        for proto in str(pm.get("protocol") or "tcp").split(","):
            if hp is not None:
                scope = [{"key": "network-scope", "value": "host"}]
                out.append(
                    {"number": hp, "protocol": proto, **name, "labels": {"labels": labels + scope}}
                )
                continue
            for net in _mapped_networks(app, pm):
                scope = [
                    {"key": "network-scope", "value": "container"},
                    {"key": "network-name", "value": net},
                ]
                out.append(
                    {
                        "number": int(pm.get("containerPort") or 0),
                        "protocol": proto,
                        **name,
                        "labels": {"labels": labels + scope},
                    }
                )
    return out


def check_target(app: dict[str, Any], inst: Instance) -> tuple[str, list[int], list[str | None]]:
    """Where Marathon's health and readiness checks reach a task: address, port of each port
    index, port names. A task on a container network is reached on its own address and its
    container ports (Marathon's effective address and port), others on the agent's address
    and their host ports."""
    mappings = (app.get("container") or {}).get("portMappings") or []
    if appdef.container_networks(app) and inst.ip_addresses:
        effective = appdef.effective_ports(app, inst.ports)
        ports = [
            int(pm.get("containerPort") or 0) or (hp or 0)
            for pm, hp in zip(mappings, effective, strict=False)
        ]
        return inst.ip_addresses[0], ports, [pm.get("name") for pm in mappings]
    names = [s.get("name") for s in appdef.port_specs(app)]
    return inst.host_ip or inst.hostname or "", list(inst.ports), names
