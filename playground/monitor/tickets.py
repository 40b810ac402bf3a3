"""The cluster's incident log: a ticket per firing alert, resolved when the alert resolves.

Persisted in ``STATE/monitor/tickets.json`` (``schema_version`` 1), written atomically on
every change, together with the monitor's alert states, so a monitor that crashes or
restarts loses no ticket, keeps its ``for:`` timers and opens no duplicate::

    {"schema_version": 1, "next_id": 3,
     "tickets": [{"id": "t-1", "rule": "AgentUnreachable", "severity": "critical",
                  "subject": "agent-2", "opened_at": "2026-01-01T10:00:07.512Z",
                  "detected_after_s": 7.51, "resolved_at": null, "actions": []}],
     "open": {"<alert fingerprint>": "t-1"},
     "alerts": [{"rule": ..., "labels": {...}, "state": "firing", ...}]}

A ticket's ``detected_after_s`` is the time from the fault that caused it (from
``STATE/faults.json``) to the ticket: for an alert about a node, the fault on that node;
for one about an app or the whole cluster, the latest fault; only faults started before
the ticket and not reverted before the alert became active count. ``null`` when no fault explains it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from playground.cluster.statedir import atomic_write
from playground.monitor.alerts import Alert

SCHEMA_VERSION = 1
#: The fields of a ticket, in the order the API shows them.
FIELDS = (
    "id",
    "rule",
    "severity",
    "subject",
    "opened_at",
    "detected_after_s",
    "resolved_at",
    "actions",
)


def iso(epoch: float) -> str:
    """Wall-clock seconds as ISO 8601 UTC with milliseconds (as the fault registry writes)."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def tickets_path(state_root: Path) -> Path:
    return state_root / "monitor" / "tickets.json"


def read_faults(state_root: Path) -> list[dict[str, Any]]:
    """The fault registry's faults (``STATE/faults.json``); empty if there is none."""
    try:
        data = json.loads((state_root / "faults.json").read_text())
    except (OSError, ValueError):
        return []
    faults = data.get("faults") if isinstance(data, dict) else None
    return [f for f in faults or [] if isinstance(f, dict) and f.get("started_at")]


def detected_after(
    faults: Iterable[dict[str, Any]],
    subject: str,
    nodes: Iterable[str],
    active_at: float,
    opened_at: float,
) -> float | None:
    """Seconds from the fault that caused an alert to its ticket (None: no such fault).

    Args:
        faults: the fault registry's entries (``started_at``, ``reverted_at``, ``target``).
        subject: what the alert is about (a node name, an app id, ``cluster``).
        nodes: the cluster's node names (a subject among them is a node).
        active_at: when the alert became active (pending), wall clock.
        opened_at: when the ticket opens, wall clock.
    """
    candidates = []
    for f in faults:
        try:
            started = epoch(str(f["started_at"]))
            reverted = epoch(str(f["reverted_at"])) if f.get("reverted_at") else None
        except (KeyError, ValueError):
            continue
        # Started before the ticket (a fault may begin while the alert is already pending,
        # e.g. after a slow scrape) and not reverted before the alert became active.
        if started > opened_at or (reverted is not None and reverted < active_at):
            continue
        candidates.append((started, f))
    if subject in set(nodes):
        candidates = [(s, f) for s, f in candidates if f.get("target") == subject]
    if not candidates:
        return None
    started, _ = max(candidates, key=lambda c: c[0])
    return round(max(opened_at - started, 0.0), 3)


class IncidentLog:
    """Tickets and the alert states behind them, persisted in one file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.tickets: list[dict[str, Any]] = []
        self.open: dict[str, str] = {}  # alert fingerprint -> ticket id
        self.alerts: list[dict[str, Any]] = []
        self.next_id = 1
        self.load()

    # ---- persistence ------------------------------------------------------------------
    def load(self) -> None:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            self._set_aside(f"unreadable ({exc})")
        if not isinstance(data, dict) or data.get("schema_version") != SCHEMA_VERSION:
            version = data.get("schema_version") if isinstance(data, dict) else None
            self._set_aside(f"of schema_version {version}; this kit reads {SCHEMA_VERSION}")
        self.tickets = list(data.get("tickets", []))
        self.open = dict(data.get("open", {}))
        self.alerts = list(data.get("alerts", []))
        self.next_id = int(data.get("next_id", len(self.tickets) + 1))

    def _set_aside(self, why: str) -> None:
        """Keep a file this kit cannot read for a human; the log starts anew beside it."""
        kept = self.path.with_name(self.path.name + ".unreadable")
        self.path.replace(kept)
        raise TicketLogError(f"{self.path} was {why}; moved to {kept}")

    def save(self, alerts: Iterable[Alert] | None = None) -> None:
        if alerts is not None:
            self.alerts = [a.persist() for a in alerts if a.state in ("pending", "firing")]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = {
            "schema_version": SCHEMA_VERSION,
            "next_id": self.next_id,
            "tickets": self.tickets,
            "open": self.open,
            "alerts": self.alerts,
        }
        atomic_write(self.path, json.dumps(data, indent=2, sort_keys=True).encode())

    def restored_alerts(self) -> list[Alert]:
        out = []
        for d in self.alerts:
            try:
                out.append(Alert.restore(d))
            except (KeyError, TypeError, ValueError):
                continue
        return out

    # ---- tickets ----------------------------------------------------------------------
    def get(self, ticket_id: str) -> dict[str, Any] | None:
        for t in self.tickets:
            if t["id"] == ticket_id:
                return t
        return None

    def ticket_for(self, alert: Alert) -> dict[str, Any] | None:
        tid = self.open.get(alert.fingerprint)
        return self.get(tid) if tid else None

    def open_ticket(
        self, alert: Alert, severity: str, now: float, detected_after_s: float | None
    ) -> tuple[dict[str, Any], bool]:
        """The open ticket of a firing alert: the existing one, or a new one (``True``)."""
        existing = self.ticket_for(alert)
        if existing is not None and existing.get("resolved_at") is None:
            return existing, False
        ticket: dict[str, Any] = {
            "id": f"t-{self.next_id}",
            "rule": alert.rule,
            "severity": severity,
            "subject": alert.subject,
            "opened_at": iso(now),
            "detected_after_s": detected_after_s,
            "resolved_at": None,
            "actions": [],
        }
        self.next_id += 1
        self.tickets.append(ticket)
        self.open[alert.fingerprint] = str(ticket["id"])
        return ticket, True

    def resolve(self, fp: str, now: float) -> dict[str, Any] | None:
        """Resolve the open ticket of the alert with fingerprint ``fp`` (if there is one)."""
        tid = self.open.pop(fp, None)
        ticket = self.get(tid) if tid else None
        if ticket is None or ticket.get("resolved_at") is not None:
            return None
        ticket["resolved_at"] = iso(now)
        return ticket

    def resolve_orphans(self, live: set[str], now: float) -> list[dict[str, Any]]:
        """Resolve open tickets whose alert is neither pending nor firing any more."""
        return [t for fp in list(self.open) if fp not in live for t in [self.resolve(fp, now)] if t]

    def listing(self, open_only: bool = False) -> list[dict[str, Any]]:
        """Tickets as the API shows them (the fields of :data:`FIELDS`), oldest first."""
        return [
            {k: t.get(k) for k in FIELDS}
            for t in self.tickets
            if not (open_only and t.get("resolved_at") is not None)
        ]


class TicketLogError(Exception):
    """The ticket file could not be read as it was."""
