"""Alert states with a fake clock: pending for `for:`, firing, resolved; carried over reloads and restarts."""

from __future__ import annotations

from playground.monitor import rules as r
from playground.monitor.alerts import Alert, Engine, render, subject
from playground.monitor.promql import NAME, Sample

RULES = """
groups:
  - name: g
    rules:
      - record: app:missing
        expr: marathon_app_instances - marathon_app_tasks_running
      - alert: AppUnderCapacity
        expr: app:missing > 0
        for: 2m
        labels: {severity: warning}
        annotations: {summary: "{{ $labels.app }} misses {{ $value }}"}
      - alert: AgentUnreachable
        expr: mesos_agent_unreachable == 1
        labels: {severity: critical}
"""


def samples(running: float, unreachable: float = 0) -> list[Sample]:
    return [
        Sample({NAME: "marathon_app_instances", "app": "/web"}, 3),
        Sample({NAME: "marathon_app_tasks_running", "app": "/web"}, running),
        Sample({NAME: "mesos_agent_unreachable", "agent": "agent-2"}, unreachable),
    ]


def scale10(seconds: float) -> float:
    return seconds / 10


def test_for_duration_is_scaled_and_kept() -> None:
    """An alert is pending until it has held for `for:` (real-cluster seconds / time scale), then fires."""
    eng = Engine(r.load_text(RULES))
    ch = eng.evaluate(samples(1), 100.0, scale10)
    assert [a.rule for a in ch.pending] == ["AppUnderCapacity"] and ch.fired == []
    (alert,) = eng.alerts()
    assert alert.state == "pending" and alert.active_at == 100.0
    assert alert.annotations == {"summary": "/web misses 2"}
    assert alert.labels == {"app": "/web", "severity": "warning", "alertname": "AppUnderCapacity"}
    assert eng.evaluate(samples(1), 111.9, scale10).fired == []  # 2m at scale 10 = 12 s
    ch = eng.evaluate(samples(2), 112.0, scale10)
    assert [a.rule for a in ch.fired] == ["AppUnderCapacity"]
    assert eng.alerts()[0].state == "firing" and eng.alerts()[0].fired_at == 112.0
    assert eng.alerts()[0].annotations["summary"] == "/web misses 1"
    ch = eng.evaluate(samples(3), 113.0, scale10)
    assert [a.rule for a in ch.resolved] == ["AppUnderCapacity"] and eng.alerts() == []


def test_pending_alert_that_clears_never_fires() -> None:
    """A condition that clears before `for:` leaves no alert behind, and restarts its timer."""
    eng = Engine(r.load_text(RULES))
    eng.evaluate(samples(1), 100.0, scale10)
    ch = eng.evaluate(samples(3), 105.0, scale10)
    assert ch.fired == ch.resolved == [] and eng.alerts() == []
    eng.evaluate(samples(1), 106.0, scale10)
    assert eng.evaluate(samples(1), 115.0, scale10).fired == []  # 9 s since it came back


def test_zero_for_fires_at_once() -> None:
    """Without `for:` an alert fires in the evaluation that first sees it."""
    eng = Engine(r.load_text(RULES))
    ch = eng.evaluate(samples(3, unreachable=1), 1.0, scale10)
    assert [a.subject for a in ch.fired] == ["agent-2"]


def test_reload_keeps_alerts_of_unchanged_rules() -> None:
    """Replacing the rules keeps the state of rules whose expr and for did not change."""
    eng = Engine(r.load_text(RULES))
    eng.evaluate(samples(1, unreachable=1), 100.0, scale10)
    changed = RULES.replace("for: 2m", "for: 5m")
    eng.replace_rules(r.load_text(changed))
    assert sorted(a.rule for a in eng.alerts()) == ["AgentUnreachable"]


def test_restore_keeps_for_timer() -> None:
    """Alert states saved before a restart come back with their active_at."""
    eng = Engine(r.load_text(RULES))
    eng.evaluate(samples(1), 100.0, scale10)
    saved = [Alert.restore(a.persist()) for a in eng.alerts()]
    fresh = Engine(r.load_text(RULES))
    fresh.restore(saved)
    assert [a.rule for a in fresh.evaluate(samples(1), 112.0, scale10).fired] == [
        "AppUnderCapacity"
    ]


def test_subject_and_templates() -> None:
    """The subject is the agent, app or instance label, else the cluster; templates expand."""
    assert subject({"agent": "agent-2", "instance": "master-1"}) == "agent-2"
    assert subject({"app": "/web", "job": "marathon"}) == "/web"
    assert subject({"instance": "marathon-1", "job": "marathon"}) == "marathon-1"
    assert subject({"alertname": "NoLeader"}) == "cluster"
    assert render("{{$labels.a}} is {{ $value }}{{ $labels.nope }}", {"a": "x"}, 2.5) == "x is 2.5"
