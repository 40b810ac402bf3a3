"""Scraping: the cluster's components, turned into Prometheus-style samples.

Every target gets ``job`` and ``instance`` (the node name) labels and an
``up{job, instance}`` sample: 1 when it answered, 0 when it did not (a crashed,
stopped or partitioned node is a 0, never an error of the monitor). What is read:

| job | endpoint | series |
|---|---|---|
| ``coordinator`` | ``/v1/election/mesos`` | ``playground_quorum_ok``, ``playground_quorum_members``, ``playground_quorum_required``, ``playground_election_epoch`` |
| ``coordinator`` | ``/v1/kv/mesos/registry`` (the masters' registry) | ``mesos_agent_unreachable{agent}`` (1: the masters marked the agent unreachable) |
| ``mesos-master`` | ``/metrics/snapshot`` of every master | ``mesos_master_*`` (``master/elected`` -> ``mesos_master_elected``), ``playground_mesos_leader`` (1 when some master leads) |
| ``mesos-master`` | ``/master/slaves`` of the leader | ``mesos_agent_registered{agent}``, ``mesos_agent_active{agent}`` |
| ``mesos-agent`` | ``/metrics/snapshot`` of every agent | ``mesos_slave_*`` |
| ``marathon`` | ``/ping``, ``/metrics/prometheus`` | ``marathon_*`` as Marathon exposes them |
| ``marathon`` | ``/v2/apps?embed=apps.counts&embed=apps.lastTaskFailure`` | ``marathon_app_instances{app}``, ``marathon_app_tasks_running``, ``_staged``, ``_healthy``, ``_unhealthy``, ``marathon_app_task_failures_total{app}`` (task failures seen since the monitor started) |
| ``marathon`` | ``/v2/deployments`` | ``marathon_deployment_age_seconds{deployment, app}`` |
| ``storage`` | ``/metrics`` of the storage node | ``playground_storage_*`` as it exposes them (pools by ``node``, volumes by ``volume``) |

Ages are real-cluster seconds (wall seconds times the time scale), so thresholds in
rules read as they would on a real cluster. Cluster-wide series (the leader, quorum,
agents, apps, and the storage node's pools and volumes) carry no ``instance`` label, so
a leader change does not make them new series, and an alert about a pool names its agent
(``node``), not the storage node.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from playground.monitor import exposition
from playground.monitor.promql import NAME, Sample
from playground.monitor.tickets import epoch

#: ``fetch(url) -> (status, body)``; raises on a connection error or timeout.
Fetch = Callable[[str], Awaitable[tuple[int, str]]]


@dataclass(frozen=True)
class Node:
    """A node of the cluster as the monitor sees it."""

    name: str
    role: str
    url: str
    hostport: str


@dataclass
class TargetHealth:
    job: str
    instance: str
    url: str
    up: bool
    duration: float
    error: str | None = None
    last_scrape: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "job": self.job,
            "instance": self.instance,
            "url": self.url,
            "health": "up" if self.up else "down",
            "lastError": self.error or "",
            "lastScrape": self.last_scrape,
            "lastScrapeDuration": round(self.duration, 4),
        }


@dataclass
class Round:
    """What one scrape round gathered."""

    samples: list[Sample] = field(default_factory=list)
    targets: list[TargetHealth] = field(default_factory=list)
    started: float = 0.0
    duration: float = 0.0


JOBS = {
    "coordinator": "coordinator",
    "master": "mesos-master",
    "agent": "mesos-agent",
    "public-agent": "mesos-agent",
    "marathon": "marathon",
    "storage": "storage",
}


class FetchError(Exception):
    pass


class Scraper:
    """Scrapes the cluster's nodes; keeps what must persist between rounds.

    Args:
        nodes: the cluster's nodes.
        fetch: the HTTP GET to use (the monitor's node client, so partitions apply).
        scale: the cluster's time scale (ages are reported in real-cluster seconds).
        clock: wall clock.
    """

    def __init__(
        self,
        nodes: list[Node],
        fetch: Fetch,
        scale: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.nodes = nodes
        self.fetch = fetch
        self.scale = scale
        self.clock = clock
        self.started_at = clock()
        self.failure_counts: dict[str, int] = {}
        self.last_failure: dict[str, tuple[str, str]] = {}

    def _of(self, *roles: str) -> list[Node]:
        return [n for n in self.nodes if n.role in roles]

    async def _get(self, url: str) -> str:
        status, body = await self.fetch(url)
        if status >= 300:
            raise FetchError(f"HTTP {status}")
        return body

    async def _get_json(self, url: str) -> Any:
        try:
            return json.loads(await self._get(url))
        except ValueError as exc:
            raise FetchError(f"not JSON: {exc}") from None

    async def round(self) -> Round:
        """Scrape every target once (concurrently)."""
        r = Round(started=self.clock())
        t0 = time.monotonic()
        masters = self._of("master")
        results = await asyncio.gather(
            self._coordinator(r),
            asyncio.gather(*(self._master(r, m) for m in masters)),
            asyncio.gather(*(self._agent(r, a) for a in self._of("agent", "public-agent"))),
            self._marathon(r),
            self._storage(r),
        )
        leaders = [m for m, elected in zip(masters, results[1], strict=True) if elected]
        r.samples.append(Sample({NAME: "playground_mesos_leader"}, 1.0 if leaders else 0.0))
        if leaders:
            await self._agents_of_leader(r, leaders[0])
        r.duration = time.monotonic() - t0
        return r

    async def _target(
        self, r: Round, job: str, node: Node, work: Callable[[], Awaitable[None]]
    ) -> bool:
        t0 = time.monotonic()
        err = None
        try:
            await work()
        except Exception as exc:
            err = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        dt = time.monotonic() - t0
        r.targets.append(TargetHealth(job, node.name, node.url, err is None, dt, err, self.clock()))
        labels = {"job": job, "instance": node.name}
        r.samples.append(Sample({NAME: "up", **labels}, 0.0 if err else 1.0))
        r.samples.append(Sample({NAME: "scrape_duration_seconds", **labels}, round(dt, 6)))
        return err is None

    # ---- coordinator ------------------------------------------------------------------
    async def _coordinator(self, r: Round) -> None:
        for node in self._of("coordinator"):

            async def work(node: Node = node) -> None:
                view = await self._get_json(f"{node.url}/v1/election/mesos")
                r.samples += [
                    Sample({NAME: "playground_quorum_ok"}, 1.0 if view.get("has_quorum") else 0.0),
                    Sample(
                        {NAME: "playground_quorum_members"}, float(len(view.get("members", [])))
                    ),
                    Sample({NAME: "playground_quorum_required"}, float(view.get("quorum") or 0)),
                    Sample({NAME: "playground_election_epoch"}, float(view.get("epoch") or 0)),
                ]
                try:
                    reg = await self._get_json(f"{node.url}/v1/kv/mesos/registry")
                except FetchError:
                    reg = {}  # no registry yet: nothing admitted, nothing unreachable
                value = reg.get("value") or {}
                unreachable = set(value.get("unreachable") or {})
                for a in self._of("agent", "public-agent"):
                    ids = [
                        aid
                        for aid, info in (value.get("agents") or {}).items()
                        if str((info or {}).get("pid", "")).endswith("@" + a.hostport)
                    ]
                    bad = any(aid in unreachable for aid in ids)
                    r.samples.append(
                        Sample(
                            {NAME: "mesos_agent_unreachable", "agent": a.name}, 1.0 if bad else 0.0
                        )
                    )

            await self._target(r, "coordinator", node, work)

    # ---- masters and agents -----------------------------------------------------------
    async def _master(self, r: Round, node: Node) -> bool:
        elected = False

        async def work() -> None:
            nonlocal elected
            status, body = await self.fetch(f"{node.url}/metrics/snapshot")
            if status == 503:
                # No leader anywhere (quorum lost): the master answers only its health.
                await self._get(f"{node.url}/master/health")
                r.samples.append(
                    Sample(
                        {
                            NAME: "mesos_master_elected",
                            "job": "mesos-master",
                            "instance": node.name,
                        },
                        0.0,
                    )
                )
                return
            if status >= 300:
                raise FetchError(f"HTTP {status}")
            try:
                snap = json.loads(body)
            except ValueError as exc:
                raise FetchError(f"not JSON: {exc}") from None
            for key, value in sorted(snap.items()):
                if isinstance(value, int | float):
                    name = "mesos_" + exposition.metric_name(key)
                    r.samples.append(
                        Sample(
                            {NAME: name, "job": "mesos-master", "instance": node.name}, float(value)
                        )
                    )
            elected = bool(snap.get("master/elected"))

        await self._target(r, "mesos-master", node, work)
        return elected

    async def _agents_of_leader(self, r: Round, leader: Node) -> None:
        try:
            data = await self._get_json(f"{leader.url}/master/slaves")
        except Exception:
            return  # the leader just stepped down: the next round sees the new one
        by_hostport = {str(s.get("pid", "")).split("@", 1)[-1]: s for s in data.get("slaves", [])}
        for a in self._of("agent", "public-agent"):
            s = by_hostport.get(a.hostport)
            r.samples.append(
                Sample({NAME: "mesos_agent_registered", "agent": a.name}, 1.0 if s else 0.0)
            )
            r.samples.append(
                Sample(
                    {NAME: "mesos_agent_active", "agent": a.name},
                    1.0 if s and s.get("active") else 0.0,
                )
            )

    async def _agent(self, r: Round, node: Node) -> None:
        async def work() -> None:
            snap = await self._get_json(f"{node.url}/metrics/snapshot")
            for key, value in sorted(snap.items()):
                if isinstance(value, int | float):
                    name = "mesos_" + exposition.metric_name(key)
                    r.samples.append(
                        Sample(
                            {NAME: name, "job": "mesos-agent", "instance": node.name}, float(value)
                        )
                    )

        await self._target(r, "mesos-agent", node, work)

    # ---- marathon ---------------------------------------------------------------------
    async def _marathon(self, r: Round) -> None:
        for node in self._of("marathon"):

            async def work(node: Node = node) -> None:
                await self._get(f"{node.url}/ping")
                page, apps, deps = await asyncio.gather(
                    self._get(f"{node.url}/metrics/prometheus"),
                    self._get_json(
                        f"{node.url}/v2/apps?embed=apps.counts&embed=apps.lastTaskFailure"
                    ),
                    self._get_json(f"{node.url}/v2/deployments"),
                )
                target = {"job": "marathon", "instance": node.name}
                for s in exposition.parse(page):
                    r.samples.append(Sample({**s.labels, **target}, s.value))
                self._apps(r, apps.get("apps", []))
                self._deployments(r, deps if isinstance(deps, list) else [])

            await self._target(r, "marathon", node, work)

    # ---- storage ----------------------------------------------------------------------
    async def _storage(self, r: Round) -> None:
        for node in self._of("storage"):

            async def work(node: Node = node) -> None:
                page = await self._get(f"{node.url}/metrics")
                for s in exposition.parse(page):
                    labels = {k: v for k, v in s.labels.items() if k not in ("job", "instance")}
                    r.samples.append(Sample({**labels, "job": "storage"}, s.value))

            await self._target(r, "storage", node, work)

    def _apps(self, r: Round, apps: list[dict[str, Any]]) -> None:
        for app in apps:
            aid = str(app.get("id", ""))
            lab = {"app": aid}
            r.samples += [
                Sample({NAME: "marathon_app_instances", **lab}, float(app.get("instances", 0))),
                Sample(
                    {NAME: "marathon_app_tasks_running", **lab}, float(app.get("tasksRunning", 0))
                ),
                Sample(
                    {NAME: "marathon_app_tasks_staged", **lab}, float(app.get("tasksStaged", 0))
                ),
                Sample(
                    {NAME: "marathon_app_tasks_healthy", **lab}, float(app.get("tasksHealthy", 0))
                ),
                Sample(
                    {NAME: "marathon_app_tasks_unhealthy", **lab},
                    float(app.get("tasksUnhealthy", 0)),
                ),
            ]
            self._count_failure(aid, app.get("lastTaskFailure"))
            r.samples.append(
                Sample(
                    {NAME: "marathon_app_task_failures_total", **lab},
                    float(self.failure_counts.get(aid, 0)),
                )
            )

    def _count_failure(self, app_id: str, failure: Any) -> None:
        """Count a task failure each time an app's ``lastTaskFailure`` changes."""
        if not isinstance(failure, dict):
            return
        mark = (str(failure.get("taskId", "")), str(failure.get("timestamp", "")))
        before = self.last_failure.get(app_id)
        if before == mark:
            return
        self.last_failure[app_id] = mark
        if before is None:
            try:  # a failure from before the monitor started is history, not news
                if epoch(mark[1]) < self.started_at:
                    return
            except ValueError:
                return
        self.failure_counts[app_id] = self.failure_counts.get(app_id, 0) + 1

    def _deployments(self, r: Round, deps: list[dict[str, Any]]) -> None:
        now = self.clock()
        for d in deps:
            try:
                age = max(now - epoch(str(d.get("version", ""))), 0.0) * self.scale
            except ValueError:
                continue
            for app in d.get("affectedApps") or [""]:
                r.samples.append(
                    Sample(
                        {
                            NAME: "marathon_deployment_age_seconds",
                            "deployment": str(d.get("id", "")),
                            "app": str(app),
                        },
                        round(age, 3),
                    )
                )
