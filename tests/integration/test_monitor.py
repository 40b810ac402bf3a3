"""The monitor node on a real cluster: faults become tickets, heals resolve them, remediation acts."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import httpx
import pytest

from playground.backends import EmbeddedBackend
from playground.chaos.faults import Faults
from playground.cluster.statedir import StateDir
from playground.monitor import rules as rules_mod
from playground.monitor.tickets import epoch

pytestmark = [pytest.mark.integration, pytest.mark.slow]

T = TypeVar("T")


def wait_for(fn: Callable[[], T | None], timeout: float, what: str) -> T:
    deadline = time.monotonic() + timeout
    while True:
        got = fn()
        if got:
            return got
        assert time.monotonic() < deadline, f"{what}: not within {timeout}s"
        time.sleep(0.1)


def api(cluster: EmbeddedBackend, path: str) -> Any:
    r = httpx.get(cluster.endpoints()["monitor"] + path, timeout=5)
    r.raise_for_status()
    return r.json() if path != "/metrics" else r.text


def ticket_for(
    cluster: EmbeddedBackend, rule: str, subject: str, since: float
) -> dict[str, Any] | None:
    for t in api(cluster, "/v1/tickets"):
        if t["rule"] == rule and t["subject"] == subject and epoch(t["opened_at"]) >= since:
            return dict(t)
    return None


def resolved(cluster: EmbeddedBackend, tid: str) -> dict[str, Any] | None:
    t = next(t for t in api(cluster, "/v1/tickets") if t["id"] == tid)
    return dict(t) if t["resolved_at"] else None


def test_monitor_runs_and_scrapes_everything(cluster: EmbeddedBackend) -> None:
    """monitor-1 is a node with an endpoint; every component is up; the shipped rules are loaded."""
    assert cluster.node("monitor-1").state == "running"
    assert api(cluster, "/health")["status"] == "ok"
    names = {r["name"] for r in api(cluster, "/v1/rules")["rules"]}
    assert {"AgentUnreachable", "MarathonDown", "NoLeader", "QuorumLost"} <= names
    targets = wait_for(
        lambda: [t for t in api(cluster, "/v1/targets") if t["health"] == "up"] or None,
        10,
        "targets",
    )
    assert {t["instance"] for t in targets} >= {
        "coordinator-1",
        "master-1",
        "agent-1",
        "public-agent-1",
        "marathon-1",
    }
    text = api(cluster, "/metrics")
    assert 'up{instance="marathon-1",job="marathon"} 1' in text
    assert "mesos_master_elected" in text and "playground_mesos_leader 1" in text
    assert 'mesos_agent_unreachable{agent="agent-2"} 0' in text


def test_crashed_agent_opens_a_ticket_and_heal_resolves_it(cluster: EmbeddedBackend) -> None:
    """A SIGKILLed agent gets an AgentUnreachable ticket once Mesos marks it unreachable; heal resolves it."""
    faults = Faults(cluster)
    t0 = time.time()
    fault = faults.break_node("agent-2")
    try:
        ticket = wait_for(
            lambda: ticket_for(cluster, "AgentUnreachable", "agent-2", t0),
            30,
            "AgentUnreachable ticket",
        )
        assert ticket["severity"] == "critical" and ticket["resolved_at"] is None
        # Mesos marks it after 5 missed pings (15 s real, never under 0.5 s wall each).
        assert ticket["detected_after_s"] is not None
        assert 1.5 <= ticket["detected_after_s"] <= 10.0, ticket
        assert ticket["detected_after_s"] == pytest.approx(
            epoch(ticket["opened_at"]) - epoch(fault.started_at), abs=0.01
        )
    finally:
        faults.heal("agent-2")
    done = wait_for(lambda: resolved(cluster, ticket["id"]), 30, "ticket resolved")
    assert epoch(done["resolved_at"]) > epoch(done["opened_at"])
    kinds = [
        (e["kind"], e.get("ticket"))
        for e in StateDir(cluster.state_dir).events(since=t0)
        if e["kind"].startswith(("alert.", "ticket.")) and e.get("subject") == "agent-2"
    ]
    assert ("ticket.opened", ticket["id"]) in kinds and ("ticket.resolved", ticket["id"]) in kinds
    assert [k for k, _ in kinds][:2] == ["alert.firing", "ticket.opened"]


def test_marathon_down_opens_a_ticket(cluster: EmbeddedBackend) -> None:
    """A crashed Marathon is up 0, then a MarathonDown ticket; healed, the ticket resolves."""
    faults = Faults(cluster)
    t0 = time.time()
    faults.break_node("marathon-1")
    try:
        ticket = wait_for(
            lambda: ticket_for(cluster, "MarathonDown", "marathon-1", t0), 30, "MarathonDown ticket"
        )
        assert 'up{instance="marathon-1",job="marathon"} 0' in api(cluster, "/metrics")
        assert ticket["detected_after_s"] is not None and ticket["detected_after_s"] < 10
    finally:
        faults.heal("marathon-1")
    wait_for(lambda: resolved(cluster, ticket["id"]), 30, "MarathonDown resolved")


def test_remediation_rebuilds_a_crashed_agent(cluster: EmbeddedBackend) -> None:
    """With AgentUnreachable's remediation on, the monitor rebuilds the agent and writes it on the ticket."""
    path = rules_mod.state_rules_path(cluster.state_dir)
    faults = Faults(cluster)
    rules_mod.set_remediation(path, "AgentUnreachable", True)
    try:
        wait_for(
            lambda: any(
                r["name"] == "AgentUnreachable" and (r["remediation"] or {}).get("enabled")
                for r in api(cluster, "/v1/rules")["rules"]
            ),
            10,
            "rules reloaded",
        )
        old_id = next(n for n in cluster.cluster.status()["nodes"] if n["name"] == "agent-3")[
            "agent_id"
        ]
        t0 = time.time()
        fault = faults.break_node("agent-3")
        ticket = wait_for(
            lambda: (
                (t := ticket_for(cluster, "AgentUnreachable", "agent-3", t0))
                and t["actions"]
                and t["actions"][-1]["result"] != "running"
                and t
            ),
            40,
            "remediation finished",
        )
        (action,) = ticket["actions"]
        assert (action["action"], action["target"], action["result"]) == (
            "rebuild",
            "agent-3",
            "succeeded",
        ), action
        assert "clean disk" in action["detail"]
        wait_for(lambda: resolved(cluster, ticket["id"]), 30, "ticket resolved after the rebuild")
        node = next(n for n in cluster.cluster.status()["nodes"] if n["name"] == "agent-3")
        assert node["state"] == "running" and node["registered"] and node["agent_id"] != old_id
        assert fault.id not in {f.id for f in faults.active()}
        kinds = [
            e["kind"] for e in StateDir(cluster.state_dir).events(since=t0, kinds=("remediation.",))
        ]
        assert kinds == ["remediation.started", "remediation.succeeded"]
    finally:
        rules_mod.set_remediation(path, "AgentUnreachable", False)
        faults.heal("agent-3")
