"""The monitor's round against a fake cluster: tickets, rules reload, restarts, remediation, the API."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from playground.cluster.statedir import StateDir
from playground.cluster.timescale import TimeScale
from playground.monitor import rules as rules_mod
from playground.monitor.scrape import Node
from playground.monitor.server import Api, Monitor
from playground.monitor.tickets import iso

NODES = [
    Node("coordinator-1", "coordinator", "http://c", "c:2181"),
    Node("master-1", "master", "http://m", "m:5050"),
    Node("agent-1", "agent", "http://a1", "a1:5051"),
    Node("agent-2", "agent", "http://a2", "a2:5051"),
    Node("marathon-1", "marathon", "http://mar", "mar:8080"),
]


class FakeCluster:
    """Answers the monitor's requests like a small cluster; tests change its state."""

    def __init__(self) -> None:
        self.unreachable: set[str] = set()
        self.marathon_up = True
        self.leader = True
        self.apps: list[dict[str, Any]] = [
            {"id": "/web", "instances": 2, "tasksRunning": 2, "tasksStaged": 0}
        ]
        self.requests: list[str] = []

    async def fetch(self, url: str) -> tuple[int, str]:
        self.requests.append(url)
        if url.startswith("http://mar") and not self.marathon_up:
            raise ConnectionRefusedError("connection refused")
        path = url.split("/", 3)[3] if url.count("/") >= 3 else ""
        host = url.split("/")[2]
        if host == "c" and path == "v1/election/mesos":
            return 200, json.dumps(
                {"has_quorum": True, "members": ["master-1"], "quorum": 1, "epoch": 1}
            )
        if host == "c" and path == "v1/kv/mesos/registry":
            agents = {"S0": {"pid": "slave(1)@a1:5051"}, "S1": {"pid": "slave(1)@a2:5051"}}
            unreachable = {aid: 1.0 for aid in self.unreachable}
            return 200, json.dumps({"value": {"agents": agents, "unreachable": unreachable}})
        if host == "m" and path == "metrics/snapshot":
            return 200, json.dumps(
                {"master/elected": 1.0 if self.leader else 0.0, "master/uptime_secs": 5}
            )
        if host == "m" and path == "master/slaves":
            return 200, json.dumps({"slaves": [{"pid": "slave(1)@a1:5051", "active": True}]})
        if host in ("a1", "a2") and path == "metrics/snapshot":
            return 200, json.dumps({"slave/uptime_secs": 3.0})
        if host == "mar" and path == "ping":
            return 200, "pong"
        if host == "mar" and path == "metrics/prometheus":
            return 200, "# TYPE marathon_apps_active_gauge gauge\nmarathon_apps_active_gauge 1\n"
        if host == "mar" and path.startswith("v2/apps"):
            return 200, json.dumps({"apps": self.apps})
        if host == "mar" and path == "v2/deployments":
            return 200, "[]"
        return 404, "not found"


class Clock:
    def __init__(self) -> None:
        self.t = 1_000_000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def env(tmp_path: Path) -> tuple[StateDir, FakeCluster, Clock]:
    return StateDir(tmp_path / "state"), FakeCluster(), Clock()


def monitor(env: tuple[StateDir, FakeCluster, Clock], **kw: Any) -> Monitor:
    state, fake, clock = env
    return Monitor(state, "monitor-1", NODES, TimeScale(10), fake.fetch, clock=clock, **kw)


def tick(m: Monitor, clock: Clock, dt: float = 0.5) -> None:
    clock.t += dt
    asyncio.run(m.tick())


def events(state: StateDir, prefix: str = "") -> list[dict[str, Any]]:
    return [e for e in state.events() if e["kind"].startswith(prefix)]


def write_faults(state: StateDir, *faults: dict[str, Any]) -> None:
    state.root.mkdir(parents=True, exist_ok=True)
    (state.root / "faults.json").write_text(
        json.dumps({"schema_version": 1, "next_id": 9, "faults": list(faults)})
    )


def test_agent_unreachable_opens_and_resolves_a_ticket(env: Any) -> None:
    """A crashed agent the masters marked unreachable gets a ticket naming it and the time since the fault."""
    state, fake, clock = env
    m = monitor(env)
    tick(m, clock)
    assert m.incidents.listing() == []
    write_faults(
        state,
        {
            "id": "f-1",
            "kind": "crash",
            "target": "agent-2",
            "started_at": iso(clock.t),
            "reverted_at": None,
        },
    )
    clock.t += 7.0
    fake.unreachable = {"S1"}
    tick(m, clock)
    (t,) = m.incidents.listing()
    assert (t["rule"], t["severity"], t["subject"], t["resolved_at"]) == (
        "AgentUnreachable",
        "critical",
        "agent-2",
        None,
    )
    assert t["detected_after_s"] == 7.5
    tick(m, clock)
    assert len(m.incidents.listing()) == 1, "no second ticket while it keeps firing"
    fake.unreachable = set()
    tick(m, clock)
    (t,) = m.incidents.listing()
    assert t["resolved_at"] == iso(clock.t)
    kinds = [e["kind"] for e in events(state) if e["kind"].startswith(("alert.", "ticket."))]
    assert kinds == ["alert.firing", "ticket.opened", "alert.resolved", "ticket.resolved"]
    opened = events(state, "ticket.opened")[0]
    assert (opened["ticket"], opened["subject"], opened["detected_after_s"]) == (
        "t-1",
        "agent-2",
        7.5,
    )


def test_marathon_down_is_up_zero_then_a_ticket(env: Any) -> None:
    """A target that does not answer is up 0 (not an error); MarathonDown fires after its scaled for:."""
    _state, fake, clock = env
    m = monitor(env)
    fake.marathon_up = False
    tick(m, clock)
    text = m.metrics_text()
    assert 'up{instance="marathon-1",job="marathon"} 0' in text
    assert 'up{instance="master-1",job="mesos-master"} 1' in text
    assert [a["labels"]["alertname"] for a in m.alerts_view()] == ["MarathonDown"]
    assert m.alerts_view()[0]["state"] == "pending"
    tick(m, clock, 2.9)  # for: 30s at time scale 10 is 3 s
    assert m.incidents.listing() == []
    tick(m, clock, 0.2)
    (t,) = m.incidents.listing()
    assert (t["rule"], t["subject"], t["detected_after_s"]) == ("MarathonDown", "marathon-1", None)
    targets = {x.instance: x for x in m.last_round.targets}  # type: ignore[union-attr]
    assert not targets["marathon-1"].up and "ConnectionRefusedError" in (
        targets["marathon-1"].error or ""
    )


def test_bad_rules_file_keeps_the_old_rules(env: Any) -> None:
    """A rules file that does not load keeps the previous rules and says why: log, timeline, API, metric."""
    state, fake, clock = env
    m = monitor(env)
    tick(m, clock)
    assert len(m.engine.states) == 12 and m.rules_error is None
    path = rules_mod.state_rules_path(state.root)
    good = path.read_text()
    path.write_text(
        good.replace("expr: mesos_agent_unreachable == 1", "expr: mesos_agent_unreachable ==")
    )
    tick(m, clock)
    assert len(m.engine.states) == 12
    assert m.rules_error is not None and "AgentUnreachable" in m.rules_error
    assert m.rules_view()["error"] == m.rules_error and m.health_view()["rules_error"]
    assert "playground_monitor_rules_last_reload_successful 0" in m.metrics_text()
    (ev,) = events(state, "monitor.rules_rejected")
    assert "AgentUnreachable" in ev["error"]
    tick(m, clock)
    assert len(events(state, "monitor.rules_rejected")) == 1, "said once, not every round"
    fake.unreachable = {"S1"}
    tick(m, clock)
    assert [t["rule"] for t in m.incidents.listing()] == ["AgentUnreachable"], (
        "old rules still work"
    )
    path.write_text(
        "groups:\n  - name: only\n    rules:\n      - alert: Always\n        expr: vector(1)\n"
    )
    tick(m, clock)
    assert m.rules_error is None and [s.rule.name for s in m.engine.states] == ["Always"]
    assert m.incidents.listing()[0]["resolved_at"] is not None, "its rule is gone: resolved"


def test_restart_loses_nothing_and_opens_no_duplicate(env: Any) -> None:
    """A new monitor on the same state dir finds the open ticket and its alert; clearing resolves it."""
    _state, fake, clock = env
    m = monitor(env)
    fake.unreachable = {"S1"}
    tick(m, clock)
    assert len(m.incidents.listing(open_only=True)) == 1
    m2 = monitor(env)
    tick(m2, clock)
    assert [t["id"] for t in m2.incidents.listing()] == ["t-1"]
    fake.unreachable = set()
    m3 = monitor(env)
    tick(m3, clock)
    (t,) = m3.incidents.listing()
    assert t["resolved_at"] is not None


def test_remediation_runs_after_its_delay_and_is_written_on_the_ticket(env: Any) -> None:
    """An enabled policy runs its action on the subject once the alert fired for `after`; the ticket says so."""
    state, fake, clock = env
    calls: list[tuple[str, str]] = []
    outcome = [False, True]

    async def runner(root: Path, action: str, node: str, source: str) -> tuple[bool, str]:
        calls.append((action, node))
        ok = outcome.pop(0)
        return ok, "rebuilt agent-2" if ok else "no leading master"

    m = monitor(env, runner=runner)
    rules_mod.set_remediation(rules_mod.state_rules_path(state.root), "AgentUnreachable", True)
    fake.unreachable = {"S1"}
    tick(m, clock)
    tick(m, clock, 5.0)
    assert calls == [], "after: 60s at time scale 10 is 6 s"

    async def two_ticks() -> None:
        clock.t += 1.5
        await m.tick()
        await asyncio.sleep(0.05)
        await asyncio.gather(*m.running.values())

    asyncio.run(two_ticks())
    assert calls == [("rebuild", "agent-2")]
    (t,) = m.incidents.listing()
    assert [(a["action"], a["target"], a["result"], a["detail"]) for a in t["actions"]] == [
        ("rebuild", "agent-2", "failed", "no leading master")
    ]
    tick(m, clock, 1.0)
    assert len(calls) == 1, "a retry waits `after` again"
    clock.t += 6.0
    asyncio.run(two_ticks())
    assert [a["result"] for a in m.incidents.listing()[0]["actions"]] == ["failed", "succeeded"]
    tick(m, clock, 10.0)
    assert len(calls) == 2, "nothing more after a success"
    kinds = [e["kind"] for e in events(state, "remediation.")]
    assert kinds == [
        "remediation.started",
        "remediation.failed",
        "remediation.started",
        "remediation.succeeded",
    ]
    saved = json.loads((state.root / "monitor" / "tickets.json").read_text())
    assert [a["result"] for a in saved["tickets"][0]["actions"]] == ["failed", "succeeded"]


def test_remediation_off_by_default(env: Any) -> None:
    """Shipped policies are off: a firing alert gets a ticket and no action."""
    _state, fake, clock = env
    ran: list[str] = []

    async def runner(root: Path, action: str, node: str, source: str) -> tuple[bool, str]:
        ran.append(node)
        return True, ""

    m = monitor(env, runner=runner)
    fake.unreachable = {"S1"}
    for _ in range(3):
        tick(m, clock, 10.0)
    assert ran == [] and m.incidents.listing()[0]["actions"] == []


def test_flapping_counts_task_failures(env: Any) -> None:
    """Each new lastTaskFailure of an app counts; three within 5m (scaled) fire TaskFlapping."""
    _state, fake, clock = env
    m = monitor(env)
    tick(m, clock)  # the app is seen before it fails (its counter starts at 0)
    for i in range(3):
        fake.apps[0]["lastTaskFailure"] = {"taskId": f"web.{i}", "timestamp": iso(clock.t + 0.1)}
        tick(m, clock, 1.0)
        tick(m, clock, 1.0)
    assert 'marathon_app_task_failures_total{app="/web"} 3' in m.metrics_text()
    assert [t["rule"] for t in m.incidents.listing()] == ["TaskFlapping"]
    assert m.incidents.listing()[0]["subject"] == "/web"


def test_http_api(env: Any) -> None:
    """/health, /v1/tickets (?open=true), /v1/alerts, /v1/rules, /v1/targets and /metrics answer."""
    _state, fake, clock = env
    m = monitor(env)
    fake.unreachable = {"S1"}
    tick(m, clock)
    fake.unreachable = set()
    tick(m, clock)
    fake.marathon_up = False
    tick(m, clock)

    async def go() -> dict[str, Any]:
        async with TestClient(TestServer(Api(m).application())) as client:
            out: dict[str, Any] = {}
            for path in (
                "/health",
                "/v1/tickets",
                "/v1/tickets?open=true",
                "/v1/alerts",
                "/v1/rules",
                "/v1/targets",
            ):
                r = await client.get(path)
                assert r.status == 200, path
                out[path] = await r.json()
            r = await client.get("/metrics")
            assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            out["/metrics"] = await r.text()
            return out

    got = asyncio.run(go())
    assert got["/health"]["status"] == "ok"
    assert [t["id"] for t in got["/v1/tickets"]] == ["t-1"] and got["/v1/tickets?open=true"] == []
    assert got["/v1/alerts"][0]["labels"]["alertname"] == "MarathonDown"
    assert {r["name"] for r in got["/v1/rules"]["rules"]} >= {"AgentUnreachable", "MarathonDown"}
    assert {t["instance"] for t in got["/v1/targets"]} == {n.name for n in NODES}
    assert "playground_monitor_scrape_rounds_total 3" in got["/metrics"]


class StorageCluster(FakeCluster):
    """The fake cluster with a storage node: pools, one volume, its backups' failures."""

    def __init__(self) -> None:
        super().__init__()
        self.pools = {"agent-1": 1, "agent-2": 1}
        self.volume = {"replicas": 2, "online": 2, "used": 100, "size": 1000}
        self.backup_failures = 0

    async def fetch(self, url: str) -> tuple[int, str]:
        if url == "http://st/metrics":
            self.requests.append(url)
            v = self.volume
            lines = ["# TYPE playground_storage_pool_online gauge"]
            lines += [
                f'playground_storage_pool_online{{node="{n}"}} {up}' for n, up in self.pools.items()
            ]
            lines += [
                f'playground_storage_volume_replicas{{volume="db"}} {v["replicas"]}',
                f'playground_storage_volume_replicas_online{{volume="db"}} {v["online"]}',
                f'playground_storage_volume_used_bytes{{volume="db"}} {v["used"]}',
                f'playground_storage_volume_size_bytes{{volume="db"}} {v["size"]}',
                f"playground_storage_cloud_backup_failed_total {self.backup_failures}",
            ]
            return 200, "\n".join(lines) + "\n"
        return await super().fetch(url)


def firing(m: Monitor) -> dict[str, str]:
    return {a["rule"]: a["subject"] for a in m.alerts_view() if a["state"] == "firing"}


def test_storage_node_is_scraped_and_its_alerts_fire(tmp_path: Path) -> None:
    """storage-1's /metrics is a target (job storage); pool, replication, fullness and backup alerts fire and resolve."""
    state, fake, clock = StateDir(tmp_path / "state"), StorageCluster(), Clock()
    nodes = [*NODES, Node("storage-1", "storage", "http://st", "st:9700")]
    m = Monitor(state, "monitor-1", nodes, TimeScale(10), fake.fetch, clock=clock)
    tick(m, clock)
    text = m.metrics_text()
    assert 'up{instance="storage-1",job="storage"} 1' in text
    assert 'playground_storage_pool_online{job="storage",node="agent-2"} 1' in text
    assert firing(m) == {}

    fake.pools["agent-2"] = 0
    fake.volume.update(online=1, used=950)
    tick(m, clock)
    # A pool alert is about its agent (so a remediation would heal that node).
    assert firing(m) == {"StoragePoolOffline": "agent-2", "VolumeNearlyFull": "cluster"}
    tick(m, clock, 3.1)  # VolumeReplicationDegraded has for: 30s (3 s at time scale 10)
    assert "VolumeReplicationDegraded" in firing(m)
    degraded = next(a for a in m.alerts_view() if a["rule"] == "VolumeReplicationDegraded")
    assert degraded["labels"]["volume"] == "db"

    fake.volume["used"] = 1000
    fake.backup_failures = 1
    tick(m, clock)
    got = firing(m)
    assert "VolumeFull" in got and "VolumeNearlyFull" not in got, "full is not also nearly full"
    assert "CloudBackupFailed" in got

    fake.pools["agent-2"] = 1
    fake.volume.update(online=2, size=4000)
    tick(m, clock)
    assert set(firing(m)) == {"CloudBackupFailed"}, "only the backup failure is still recent"
