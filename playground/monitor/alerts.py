"""Alert states as Prometheus keeps them: inactive, pending for ``for:``, firing, resolved.

Each evaluation of an alerting rule yields a vector; each element is an alert whose
labels are the element's (without ``__name__``) plus the rule's labels and ``alertname``.
A new element is ``pending`` from that moment (``active_at``); once it has been in every
evaluation for the rule's ``for:`` duration it is ``firing``; when it leaves the vector
it is ``resolved`` (a pending one is simply dropped).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from playground.monitor import promql
from playground.monitor.rules import Rule

_TEMPLATE = re.compile(r"\{\{\s*\$(labels\.([a-zA-Z_][a-zA-Z0-9_]*)|value)\s*\}\}")
#: Labels that name what an alert is about, in order of preference (see :func:`subject`).
SUBJECT_LABELS = ("subject", "agent", "app", "instance", "node")


def fingerprint(labels: Mapping[str, str]) -> str:
    """A stable id of an alert's label set."""
    raw = json.dumps(sorted(labels.items()), separators=(",", ":"))
    return hashlib.sha1(raw.encode()).hexdigest()[:16]


def render(template: str, labels: Mapping[str, str], value: float) -> str:
    """Expand ``{{ $labels.NAME }}`` and ``{{ $value }}`` (the template subset the kit uses)."""

    def sub(m: re.Match[str]) -> str:
        if m.group(1) == "value":
            return format_value(value)
        return labels.get(m.group(2), "")

    return _TEMPLATE.sub(sub, template)


def format_value(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return f"{value:g}"


def subject(labels: Mapping[str, str]) -> str:
    """What an alert is about: a node name or an app id; ``cluster`` for cluster-wide ones."""
    for key in SUBJECT_LABELS:
        if labels.get(key):
            return labels[key]
    return "cluster"


@dataclass
class Alert:
    """One alert of one rule."""

    rule: str
    labels: dict[str, str]
    annotations: dict[str, str]
    state: str  # pending | firing | resolved
    active_at: float  # wall clock
    value: float
    fired_at: float | None = None
    resolved_at: float | None = None

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.labels)

    @property
    def subject(self) -> str:
        return subject(self.labels)

    def to_dict(self) -> dict[str, Any]:
        return {
            "labels": dict(self.labels),
            "annotations": dict(self.annotations),
            "state": self.state,
            "activeAt": self.active_at,
            "firedAt": self.fired_at,
            "value": format_value(self.value),
        }

    def persist(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "labels": self.labels,
            "state": self.state,
            "active_at": self.active_at,
            "fired_at": self.fired_at,
            "value": self.value if math.isfinite(self.value) else None,
        }

    @classmethod
    def restore(cls, d: Mapping[str, Any]) -> Alert:
        value = d.get("value")
        return cls(
            rule=str(d["rule"]),
            labels={str(k): str(v) for k, v in d["labels"].items()},
            annotations={},
            state=str(d["state"]),
            active_at=float(d["active_at"]),
            value=float(value) if value is not None else math.nan,
            fired_at=float(d["fired_at"]) if d.get("fired_at") is not None else None,
        )


@dataclass
class Changes:
    """What one evaluation changed: alerts that started firing, and that resolved."""

    fired: list[Alert] = field(default_factory=list)
    resolved: list[Alert] = field(default_factory=list)
    pending: list[Alert] = field(default_factory=list)  # new pending alerts


class RuleState:
    """An alerting rule and its active alerts."""

    def __init__(self, rule: Rule) -> None:
        self.rule = rule
        self.active: dict[str, Alert] = {}
        self.last_error: str | None = None
        self.last_eval: float | None = None

    @property
    def state(self) -> str:
        states = {a.state for a in self.active.values()}
        return "firing" if "firing" in states else "pending" if "pending" in states else "inactive"

    def evaluate(
        self, ctx: promql.Context, for_wall: float, changes: Changes
    ) -> list[promql.Sample]:
        """Evaluate at ``ctx.now``; record fired/resolved alerts in ``changes``.

        Returns the vector (recording rules: the samples to record).
        """
        now = ctx.now
        self.last_eval = now
        try:
            result = promql.evaluate(self.rule.expr, ctx)
        except promql.PromQLError as exc:
            self.last_error = str(exc)
            return []
        self.last_error = None
        if isinstance(result, float):  # a scalar recording rule
            result = [promql.Sample({}, result)]
        assert isinstance(result, list)
        vec = [s for s in result if isinstance(s, promql.Sample)]
        if self.rule.kind == "record":
            return [
                promql.Sample(
                    {**s.labels, promql.NAME: self.rule.name, **self.rule.labels}, s.value
                )
                for s in vec
            ]
        seen: set[str] = set()
        for s in vec:
            labels = {k: v for k, v in s.labels.items() if k != promql.NAME}
            labels.update({k: render(v, labels, s.value) for k, v in self.rule.labels.items()})
            labels["alertname"] = self.rule.name
            fp = fingerprint(labels)
            seen.add(fp)
            annotations = {k: render(v, labels, s.value) for k, v in self.rule.annotations.items()}
            alert = self.active.get(fp)
            if alert is None or alert.state == "resolved":
                alert = Alert(self.rule.name, labels, annotations, "pending", now, s.value)
                self.active[fp] = alert
                changes.pending.append(alert)
            alert.value = s.value
            alert.annotations = annotations
            if alert.state == "pending" and now - alert.active_at >= for_wall:
                alert.state = "firing"
                alert.fired_at = now
                changes.fired.append(alert)
        for fp in [fp for fp in self.active if fp not in seen]:
            alert = self.active.pop(fp)
            if alert.state == "firing":
                alert.state = "resolved"
                alert.resolved_at = now
                changes.resolved.append(alert)
        return []


class Engine:
    """The loaded rules and their alerts; evaluates them group by group, in file order."""

    def __init__(self, rules: list[Rule]) -> None:
        self.states = [RuleState(r) for r in rules]

    def replace_rules(self, rules: list[Rule]) -> None:
        """New rules (a reloaded file); alerts of rules that did not change carry over."""
        old = {(s.rule.name, s.rule.expr_text, s.rule.for_s): s for s in self.states}
        new_states = []
        for r in rules:
            prev = old.pop((r.name, r.expr_text, r.for_s), None)
            st = RuleState(r)
            if prev is not None:
                st.active = prev.active
            new_states.append(st)
        self.states = new_states

    def restore(self, alerts: list[Alert]) -> None:
        """Alert states saved before a restart (so ``for:`` timers and tickets survive it)."""
        by_rule = {s.rule.name: s for s in self.states if s.rule.kind == "alert"}
        for a in alerts:
            st = by_rule.get(a.rule)
            if st is not None and a.state in ("pending", "firing"):
                st.active[a.fingerprint] = a

    def alerts(self) -> list[Alert]:
        return [a for s in self.states for a in s.active.values()]

    def rule(self, name: str) -> Rule | None:
        for s in self.states:
            if s.rule.name == name and s.rule.kind == "alert":
                return s.rule
        return None

    def evaluate(
        self,
        samples: list[promql.Sample],
        now: float,
        to_wall: Callable[[float], float],
        history: Callable[[promql.VectorSelector, float], list[promql.Series]] | None = None,
    ) -> Changes:
        """One evaluation of every rule at ``now``; recording rules feed the later ones."""
        changes = Changes()
        current = list(samples)
        ctx = promql.Context(current, now=now, to_wall=to_wall)
        if history is not None:
            ctx.history = history
        for st in self.states:
            recorded = st.evaluate(ctx, to_wall(st.rule.for_s), changes)
            if recorded:
                current.extend(recorded)
        return changes
