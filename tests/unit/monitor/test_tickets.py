"""The incident log: tickets open, resolve, persist, reload without duplicates; faults explain them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from playground.monitor.alerts import Alert
from playground.monitor.tickets import (
    FIELDS,
    IncidentLog,
    TicketLogError,
    detected_after,
    epoch,
    iso,
)

NODES = ["master-1", "agent-1", "agent-2", "marathon-1"]


def alert(agent: str = "agent-2") -> Alert:
    labels = {"agent": agent, "alertname": "AgentUnreachable", "severity": "critical"}
    return Alert("AgentUnreachable", labels, {}, "firing", 100.0, 1.0, fired_at=100.0)


def fault(
    fid: str, target: str, started: float, reverted: float | None = None
) -> dict[str, object]:
    return {
        "id": fid,
        "kind": "crash",
        "target": target,
        "started_at": iso(started),
        "revert_at": None,
        "reverted_at": iso(reverted) if reverted is not None else None,
    }


def test_open_resolve_and_fields(tmp_path: Path) -> None:
    """A ticket has exactly the contract's fields; one alert opens one ticket until it resolves."""
    log = IncidentLog(tmp_path / "tickets.json")
    t, new = log.open_ticket(alert(), "critical", 100.0, 7.5)
    assert new and t["id"] == "t-1"
    assert log.open_ticket(alert(), "critical", 101.0, 7.5) == (t, False)
    (shown,) = log.listing()
    assert tuple(shown) == FIELDS
    assert shown == {
        "id": "t-1",
        "rule": "AgentUnreachable",
        "severity": "critical",
        "subject": "agent-2",
        "opened_at": iso(100.0),
        "detected_after_s": 7.5,
        "resolved_at": None,
        "actions": [],
    }
    assert log.resolve(alert().fingerprint, 130.0) is t
    assert t["resolved_at"] == iso(130.0)
    assert log.listing(open_only=True) == []
    t2, new = log.open_ticket(alert(), "critical", 200.0, None)
    assert new and t2["id"] == "t-2", "the same alert firing again is a new incident"


def test_persist_and_reload_without_duplicates(tmp_path: Path) -> None:
    """After a restart the open ticket is found again (no duplicate) and alert states come back."""
    path = tmp_path / "monitor" / "tickets.json"
    log = IncidentLog(path)
    a = alert()
    log.open_ticket(a, "critical", 100.0, 7.5)
    log.open_ticket(alert("agent-1"), "critical", 100.0, None)
    log.resolve(alert("agent-1").fingerprint, 110.0)
    log.save([a])
    again = IncidentLog(path)
    assert again.listing() == log.listing()
    assert again.open_ticket(a, "critical", 120.0, 7.5)[1] is False
    (restored,) = again.restored_alerts()
    assert restored.fingerprint == a.fingerprint and restored.state == "firing"
    assert json.loads(path.read_text())["schema_version"] == 1
    assert not list(path.parent.glob(".*tmp")), "written atomically (no temp file left)"


def test_unreadable_log_is_set_aside(tmp_path: Path) -> None:
    """A torn or foreign tickets file is kept beside a new log, with the reason."""
    path = tmp_path / "tickets.json"
    for content in ("{not json", '{"schema_version": 99}'):
        path.write_text(content)
        with pytest.raises(TicketLogError, match="moved to"):
            IncidentLog(path)
        assert (tmp_path / "tickets.json.unreadable").read_text() == content
        assert IncidentLog(path).listing() == []


def test_orphans_resolve(tmp_path: Path) -> None:
    """An open ticket whose alert is gone (rule removed, cleared while the monitor was down) resolves."""
    log = IncidentLog(tmp_path / "t.json")
    log.open_ticket(alert(), "critical", 100.0, None)
    assert log.resolve_orphans({alert().fingerprint}, 105.0) == []
    (t,) = log.resolve_orphans(set(), 106.0)
    assert t["resolved_at"] == iso(106.0)


def test_detected_after_node_subject() -> None:
    """A node's alert is explained by the fault on that node, active when the alert became active."""
    faults = [fault("f-1", "agent-1", 90.0), fault("f-2", "agent-2", 92.5)]
    assert detected_after(faults, "agent-2", NODES, 99.0, 100.0) == 7.5
    assert detected_after(faults, "master-1", NODES, 99.0, 100.0) is None
    # A fault reverted before the alert was active explains nothing; one after the ticket neither.
    assert (
        detected_after([fault("f-3", "agent-2", 50.0, 60.0)], "agent-2", NODES, 99.0, 100.0) is None
    )
    assert detected_after([fault("f-4", "agent-2", 100.5)], "agent-2", NODES, 99.0, 100.0) is None
    # One that began while the alert was already pending (after a slow scrape) counts.
    assert detected_after([fault("f-6", "agent-2", 99.5)], "agent-2", NODES, 99.0, 100.0) == 0.5
    # Reverted after the alert became active (a --for that ran out) still counts.
    assert (
        detected_after([fault("f-5", "agent-2", 95.0, 99.5)], "agent-2", NODES, 99.0, 100.0) == 5.0
    )


def test_detected_after_cluster_and_app_subjects() -> None:
    """An app's or the cluster's alert is explained by the latest fault active at the time."""
    faults = [
        fault("f-1", "agent-1", 80.0),
        fault("f-2", "master-1", 90.0),
        fault("f-3", "agent-2", 95.0, 96.0),
    ]
    assert detected_after(faults, "/web", NODES, 99.0, 100.0) == 10.0
    assert detected_after(faults, "cluster", NODES, 99.0, 100.0) == 10.0
    assert detected_after([], "cluster", NODES, 99.0, 100.0) is None


def test_iso_round_trip() -> None:
    """Timestamps are ISO 8601 UTC with milliseconds, as the fault registry writes them."""
    assert iso(0.0) == "1970-01-01T00:00:00.000Z"
    assert epoch(iso(1234.5)) == 1234.5
