"""Alert rule files: Prometheus's rule-file format plus the kit's ``remediation`` key.

A rule file is what Prometheus loads (``groups`` of ``rules`` with ``alert``/``record``,
``expr``, ``for``, ``labels``, ``annotations``); each alerting rule may carry one kit
extension, a remediation policy::

    remediation: {action: rebuild, after: 60s, enabled: false}

``action`` is ``rebuild`` (an agent comes back with a clean disk; other nodes with
theirs), ``rebuild-keep-disk`` or ``heal`` (start the node again); ``after`` is how long
the alert fires before the action runs. Durations are real-cluster seconds: the cluster
runs them faster by its time scale. :func:`strip_kit_keys` gives the file a real
Prometheus loads (Prometheus rejects unknown keys).

The cluster's rule file is ``STATE/monitor/rules.yml``, copied from the shipped
defaults (``playground/monitor/rules.yml``) when the monitor first starts.
"""

from __future__ import annotations

import copy
import re
import shutil
from dataclasses import dataclass, field
from importlib import resources as importlib_resources
from pathlib import Path
from typing import Any

import yaml

from playground.errors import PlaygroundError
from playground.monitor import promql

ACTIONS = ("rebuild", "rebuild-keep-disk", "heal")
_RULE_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_GROUP_KEYS = {"name", "interval", "rules", "limit"}
_RULE_KEYS = {"alert", "record", "expr", "for", "labels", "annotations", "remediation"}
_REMEDIATION_KEYS = {"action", "after", "enabled"}


class RuleFileError(PlaygroundError):
    """A rule file cannot be read or is not valid."""


@dataclass(frozen=True)
class Remediation:
    """What the monitor does about a firing alert, and when."""

    action: str
    after_s: float  # real-cluster seconds
    enabled: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "after": promql.format_duration(self.after_s),
            "enabled": self.enabled,
        }


@dataclass(frozen=True)
class Rule:
    """One alerting or recording rule."""

    group: str
    name: str  # the alert name, or the recorded metric name
    kind: str  # alert | record
    expr_text: str
    expr: Any = field(compare=False, repr=False)
    for_s: float = 0.0  # real-cluster seconds
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    remediation: Remediation | None = None

    @property
    def severity(self) -> str:
        return self.labels.get("severity", "warning")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "group": self.group,
            "name": self.name,
            "type": "alerting" if self.kind == "alert" else "recording",
            "expr": self.expr_text,
            "labels": dict(self.labels),
        }
        if self.kind == "alert":
            out["for"] = promql.format_duration(self.for_s)
            out["annotations"] = dict(self.annotations)
            out["remediation"] = self.remediation.to_dict() if self.remediation else None
        return out


def shipped_path() -> Path:
    """The rule file that ships with the kit."""
    return Path(str(importlib_resources.files("playground.monitor") / "rules.yml"))


def state_rules_path(state_root: Path) -> Path:
    return state_root / "monitor" / "rules.yml"


def ensure_rules_file(state_root: Path) -> Path:
    """The cluster's rule file, copied from the shipped defaults if it is not there yet."""
    path = state_rules_path(state_root)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(".rules.yml.tmp")
        shutil.copyfile(shipped_path(), tmp)
        tmp.replace(path)
    return path


def _duration(value: Any, where: str) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        raise RuleFileError(f"{where}: durations need a unit, e.g. {value}s")
    if not isinstance(value, str):
        raise RuleFileError(f"{where}: expected a duration such as 30s, got {value!r}")
    try:
        return promql.parse_duration(value)
    except promql.PromQLError as exc:
        raise RuleFileError(f"{where}: {exc}") from None


def _str_map(value: Any, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise RuleFileError(f"{where}: expected a mapping of names to strings")
    out = {}
    for k, v in value.items():
        if not isinstance(k, str) or not _LABEL_NAME.match(k):
            raise RuleFileError(f"{where}: invalid label name {k!r}")
        if isinstance(v, dict | list) or v is None:
            raise RuleFileError(f"{where}.{k}: expected a string, got {v!r}")
        out[k] = v if isinstance(v, str) else str(v).lower() if isinstance(v, bool) else str(v)
    return out


def parse_rules(data: Any, source: str = "<rules>") -> list[Rule]:
    """Validate a rule document; errors name the file, the group and the rule."""
    if data is None:
        return []
    if not isinstance(data, dict):
        raise RuleFileError(f"{source}: a rule file is a mapping with 'groups'")
    unknown = set(data) - {"groups"}
    if unknown:
        raise RuleFileError(f"{source}: unknown key(s) {', '.join(sorted(map(str, unknown)))}")
    groups = data.get("groups") or []
    if not isinstance(groups, list):
        raise RuleFileError(f"{source}: 'groups' must be a list")
    out: list[Rule] = []
    names: set[str] = set()
    for gi, g in enumerate(groups):
        gwhere = f"{source}: groups[{gi}]"
        if not isinstance(g, dict):
            raise RuleFileError(f"{gwhere} must be a mapping with 'name' and 'rules'")
        unknown = set(g) - _GROUP_KEYS
        if unknown:
            raise RuleFileError(f"{gwhere}: unknown key(s) {', '.join(sorted(map(str, unknown)))}")
        gname = g.get("name")
        if not isinstance(gname, str) or not gname:
            raise RuleFileError(f"{gwhere}: 'name' must be a non-empty string")
        if gname in names:
            raise RuleFileError(f"{gwhere}: group name {gname!r} is used twice")
        names.add(gname)
        if "interval" in g:
            _duration(g["interval"], f"{gwhere} ({gname}).interval")
        rules = g.get("rules") or []
        if not isinstance(rules, list):
            raise RuleFileError(f"{gwhere} ({gname}): 'rules' must be a list")
        for ri, r in enumerate(rules):
            out.append(_parse_rule(r, f"{source}: group {gname!r} rules[{ri}]", gname))
    return out


def _parse_rule(r: Any, where: str, group: str) -> Rule:
    if not isinstance(r, dict):
        raise RuleFileError(f"{where} must be a mapping")
    unknown = set(r) - _RULE_KEYS
    if unknown:
        raise RuleFileError(f"{where}: unknown key(s) {', '.join(sorted(map(str, unknown)))}")
    if ("alert" in r) == ("record" in r):
        raise RuleFileError(f"{where}: a rule has exactly one of 'alert' and 'record'")
    kind = "alert" if "alert" in r else "record"
    name = r[kind]
    if not isinstance(name, str) or not (_RULE_NAME if kind == "alert" else _METRIC_NAME).match(
        name
    ):
        raise RuleFileError(f"{where}: invalid {kind} name {name!r}")
    where = f"{where} ({name})"
    text = r.get("expr")
    if isinstance(text, int | float) and not isinstance(text, bool):
        text = str(text)
    if not isinstance(text, str) or not text.strip():
        raise RuleFileError(f"{where}: 'expr' must be a PromQL expression")
    try:
        expr = promql.parse(text)
    except promql.PromQLError as exc:
        raise RuleFileError(f"{where}: expr: {exc}") from None
    if promql.type_of(expr) not in ("vector", "scalar") or (
        kind == "alert" and promql.type_of(expr) != "vector"
    ):
        raise RuleFileError(
            f"{where}: expr must be an instant vector, not a {promql.type_of(expr)}"
        )
    if kind == "record":
        for key in ("for", "annotations", "remediation"):
            if key in r:
                raise RuleFileError(f"{where}: '{key}' applies to alerting rules only")
    for_s = _duration(r["for"], f"{where}.for") if "for" in r else 0.0
    labels = _str_map(r.get("labels"), f"{where}.labels")
    annotations = _str_map(r.get("annotations"), f"{where}.annotations")
    rem = None
    if r.get("remediation") is not None:
        rem = _parse_remediation(r["remediation"], f"{where}.remediation")
    return Rule(group, name, kind, text, expr, for_s, labels, annotations, rem)


def _parse_remediation(raw: Any, where: str) -> Remediation:
    if not isinstance(raw, dict):
        raise RuleFileError(f"{where}: expected {{action: ..., after: ..., enabled: ...}}")
    unknown = set(raw) - _REMEDIATION_KEYS
    if unknown:
        raise RuleFileError(f"{where}: unknown key(s) {', '.join(sorted(map(str, unknown)))}")
    action = raw.get("action")
    if action not in ACTIONS:
        raise RuleFileError(f"{where}.action must be one of {', '.join(ACTIONS)}, got {action!r}")
    after = _duration(raw.get("after", "0s"), f"{where}.after")
    enabled = raw.get("enabled", False)
    if not isinstance(enabled, bool):
        raise RuleFileError(f"{where}.enabled must be true or false, got {enabled!r}")
    return Remediation(str(action), after, enabled)


def load_text(text: str, source: str = "<rules>") -> list[Rule]:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RuleFileError(f"{source}: not valid YAML: {exc}") from None
    return parse_rules(data, source)


def load(path: Path) -> list[Rule]:
    """Read and validate a rule file."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise RuleFileError(f"cannot read {path}: {exc.strerror or exc}") from None
    return load_text(text, str(path))


def strip_kit_keys(data: Any) -> Any:
    """The same rule document without the kit's extension keys (for a real Prometheus)."""
    out = copy.deepcopy(data)
    for g in (out or {}).get("groups") or []:
        for r in g.get("rules") or []:
            if isinstance(r, dict):
                r.pop("remediation", None)
    return out


def set_remediation(path: Path, rule: str, enabled: bool) -> list[str]:
    """Turn the remediation of the alerting rule(s) named ``rule`` on or off in ``path``.

    Comments and layout are kept where the policy is written on one line
    (``remediation: {action: ..., enabled: false}``); otherwise the file is rewritten.
    Returns the groups whose rule changed.

    Raises:
        RuleFileError: the file is invalid, has no such rule, or the rule has no policy.
    """
    text = path.read_text()
    rules = load_text(text, str(path))
    named = [r for r in rules if r.kind == "alert" and r.name == rule]
    if not named:
        alerts = sorted({r.name for r in rules if r.kind == "alert"})
        raise RuleFileError(
            f"no alerting rule named {rule!r} in {path}",
            hint="rules: " + ", ".join(alerts) if alerts else "the rule file has no alerts",
        )
    if any(r.remediation is None for r in named):
        raise RuleFileError(
            f"rule {rule!r} has no remediation policy",
            hint=f"add `remediation: {{action: rebuild, after: 60s, enabled: false}}` to it in {path}",
        )
    new = _edit_inline(text, rule, enabled)
    if new is None or _enabled_in(new, str(path), rule) != [enabled] * len(named):
        data = yaml.safe_load(text)
        for g in data.get("groups") or []:
            for r in g.get("rules") or []:
                if isinstance(r, dict) and r.get("alert") == rule:
                    r["remediation"]["enabled"] = enabled
        new = yaml.safe_dump(data, sort_keys=False, default_flow_style=False)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(new)
    tmp.replace(path)
    return sorted({r.group for r in named})


def _enabled_in(text: str, source: str, rule: str) -> list[bool]:
    try:
        return [
            bool(r.remediation and r.remediation.enabled)
            for r in load_text(text, source)
            if r.kind == "alert" and r.name == rule
        ]
    except RuleFileError:
        return []


def _edit_inline(text: str, rule: str, enabled: bool) -> str | None:
    lines = text.splitlines(keepends=True)
    start = re.compile(r"^(\s*)-\s+alert:\s*['\"]?" + re.escape(rule) + r"['\"]?\s*(#.*)?$")
    changed = False
    i = 0
    while i < len(lines):
        m = start.match(lines[i].rstrip("\n"))
        if not m:
            i += 1
            continue
        indent = len(m.group(1))
        j = i + 1
        while j < len(lines):
            line = lines[j]
            stripped = line.strip()
            if stripped and not stripped.startswith("#"):
                lead = len(line) - len(line.lstrip())
                if lead <= indent:
                    break
            if re.match(r"^\s*remediation:\s*\{.*\}\s*(#.*)?$", line.rstrip("\n")):
                new_line, n = re.subn(
                    r"enabled:\s*(true|false|True|False|yes|no)",
                    f"enabled: {'true' if enabled else 'false'}",
                    line,
                )
                if n == 0:
                    new_line = line.replace(
                        "}", f", enabled: {'true' if enabled else 'false'}}}", 1
                    )
                lines[j] = new_line
                changed = True
            j += 1
        i = j
    return "".join(lines) if changed else None
