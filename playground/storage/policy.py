"""The placement policy: where a volume's data may live, by its labels.

The policy is a YAML file in the state directory, ``STATE/storage/policy.yaml``::

    schema_version: 1
    version: 3                      # kept by save_policy: +1 on every save
    rules:
      - name: pii-stays-in-eu
        description: personal data stays in the EU
        match: {labels: {pii: "true", residency: eu}}
        allow: {regions: [eu]}      # and/or zones: [a, b]
        kinds: [replica, snapshot, cloud-backup]   # optional: default every kind

A rule applies to a volume whose labels include every label of ``match.labels`` (a rule
without ``match`` applies to every volume). Each place the volume's data lives is a
:class:`Location`: a replica (on a node of a region and zone), a snapshot (stored on the
storage node, in its region and zone) or a cloud backup (at a cloud target, in the region
of the target's label; no zone). A location breaks a rule when its region is not one of
the rule's ``allow.regions`` or its zone not one of ``allow.zones``; an unknown region or
zone breaks a rule that restricts it (the data cannot be shown to be where it may be).

Everything here is pure except :func:`load_policy` and :func:`save_policy` (file I/O).
The storage node calls :func:`check_placement` before creating, replicating, snapshotting,
restoring or backing up, and :func:`enforce` to refuse with a :class:`PolicyError`.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from playground.errors import PlaygroundError

SCHEMA_VERSION = 1
POLICY_FILE = "policy.yaml"
#: The kinds of location a rule can apply to.
KINDS = ("replica", "snapshot", "cloud-backup")
RULE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
_TOP_FIELDS = ("schema_version", "version", "rules")
_RULE_FIELDS = ("name", "description", "match", "allow", "kinds")
_HINT = (
    "a policy is `schema_version: 1` and `rules:`, each rule with `name`, optional "
    "`match: {labels: {k: v}}`, `allow: {regions: [..], zones: [..]}` and optional "
    "`kinds: [replica, snapshot, cloud-backup]`"
)


class PolicyFileError(PlaygroundError):
    """The policy file cannot be read or is not a valid policy (the message says where)."""


class PolicyError(PlaygroundError):
    """An operation would place data where the policy forbids it.

    Attributes:
        violations: what is wrong, one per rule and location.
        rules: the names of the rules broken, in order.
    """

    def __init__(self, message: str, violations: Sequence[Violation], hint: str | None = None):
        super().__init__(message, hint)
        self.violations = list(violations)
        self.rules = list(dict.fromkeys(v.rule for v in self.violations))


@dataclass(frozen=True)
class Rule:
    """One rule: volumes whose labels include ``labels`` may only be in ``regions``/``zones``.

    Attributes:
        name: names the rule in every message.
        labels: the labels a volume must carry for the rule to apply (empty: every volume).
        regions: the allowed regions (None: any region).
        zones: the allowed zones (None: any zone).
        kinds: the kinds of location the rule constrains.
        description: free text, shown with the rule.
    """

    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    regions: frozenset[str] | None = None
    zones: frozenset[str] | None = None
    kinds: frozenset[str] = frozenset(KINDS)
    description: str = ""

    def applies_to(self, volume_labels: Mapping[str, Any]) -> bool:
        """Whether a volume with these labels is under this rule."""
        have = {str(k): label_value(v) for k, v in volume_labels.items()}
        return all(have.get(k) == v for k, v in self.labels.items())

    def as_dict(self) -> dict[str, Any]:
        """The rule as it is written in the policy file."""
        out: dict[str, Any] = {"name": self.name}
        if self.description:
            out["description"] = self.description
        if self.labels:
            out["match"] = {"labels": dict(self.labels)}
        allow: dict[str, list[str]] = {}
        if self.regions is not None:
            allow["regions"] = sorted(self.regions)
        if self.zones is not None:
            allow["zones"] = sorted(self.zones)
        out["allow"] = allow
        if self.kinds != frozenset(KINDS):
            out["kinds"] = [k for k in KINDS if k in self.kinds]
        return out


@dataclass(frozen=True)
class Policy:
    """The rules in force and the policy file's version (0: never saved)."""

    rules: tuple[Rule, ...] = ()
    version: int = 0

    def rules_for(self, volume_labels: Mapping[str, Any]) -> list[Rule]:
        """The rules that apply to a volume with these labels."""
        return [r for r in self.rules if r.applies_to(volume_labels)]

    def as_dict(self) -> dict[str, Any]:
        """The policy as it is written in the policy file."""
        return {
            "schema_version": SCHEMA_VERSION,
            "version": self.version,
            "rules": [r.as_dict() for r in self.rules],
        }


@dataclass(frozen=True)
class Location:
    """A place where a volume's data is or would be.

    Attributes:
        kind: ``replica``, ``snapshot`` or ``cloud-backup``.
        target: the node (replica, snapshot) or cloud target (backup) holding it.
        region: the target's region (None: unknown).
        zone: the target's zone (None: unknown or none, e.g. a cloud target).
    """

    kind: str
    target: str
    region: str | None = None
    zone: str | None = None

    def describe(self) -> str:
        where = f"region {self.region or '(unknown)'}"
        if self.zone is not None:
            where += f", zone {self.zone}"
        return f"{self.kind} on {self.target} ({where})"


@dataclass(frozen=True)
class Violation:
    """A location that breaks a rule; ``message`` says so in a sentence."""

    rule: str
    location: Location
    message: str

    def __str__(self) -> str:
        return self.message

    def as_dict(self) -> dict[str, Any]:
        loc = self.location
        return {
            "rule": self.rule,
            "kind": loc.kind,
            "target": loc.target,
            "region": loc.region,
            "zone": loc.zone,
            "message": self.message,
        }


def label_value(value: Any) -> str:
    """A label value as a string: YAML's ``true`` is ``"true"``, ``1`` is ``"1"``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def policy_path(state_dir: Path | str) -> Path:
    """``STATE/storage/policy.yaml``."""
    return Path(state_dir) / "storage" / POLICY_FILE


# ---- checking ---------------------------------------------------------------------------
def _allowed(values: frozenset[str] | None) -> str:
    return ", ".join(sorted(values or ())) or "(none)"


def check_placement(
    policy: Policy,
    volume_labels: Mapping[str, Any],
    locations: Iterable[Location | tuple[str, str, str | None, str | None]],
    volume: str | None = None,
) -> list[Violation]:
    """Every (rule, location) pair where a location breaks a rule that applies to the volume.

    Args:
        policy: the policy.
        volume_labels: the volume's labels (values compared as strings).
        locations: :class:`Location`s, or ``(kind, target, region, zone)`` tuples.
        volume: the volume's name, for the messages.

    Returns:
        The violations, in rule order then location order; empty when all is allowed.

    Raises:
        ValueError: a location's kind is not one of :data:`KINDS`.
    """
    locs = [loc if isinstance(loc, Location) else Location(*loc) for loc in locations]
    for loc in locs:
        if loc.kind not in KINDS:
            raise ValueError(f"unknown location kind {loc.kind!r}; kinds are {', '.join(KINDS)}")
    subject = f"volume {volume}" if volume else "the volume"
    out: list[Violation] = []
    for rule in policy.rules_for(volume_labels):
        labels = ", ".join(f"{k}={v}" for k, v in sorted(rule.labels.items()))
        why = f" (labelled {labels})" if labels else ""
        for loc in locs:
            if loc.kind not in rule.kinds:
                continue
            wrong: list[str] = []
            if rule.regions is not None and loc.region not in rule.regions:
                got = f"region {loc.region}" if loc.region else "an unknown region"
                wrong.append(f"{got}, but only {_allowed(rule.regions)} is allowed")
            if rule.zones is not None and loc.zone not in rule.zones:
                got = f"zone {loc.zone}" if loc.zone else "no known zone"
                wrong.append(f"{got}, but only zones {_allowed(rule.zones)} are allowed")
            if wrong:
                msg = (
                    f"rule {rule.name}: {subject}{why}: {loc.kind} on {loc.target} is in "
                    f"{'; and in '.join(wrong)}"
                )
                out.append(Violation(rule.name, loc, msg))
    return out


def enforce(
    policy: Policy,
    volume_labels: Mapping[str, Any],
    locations: Iterable[Location | tuple[str, str, str | None, str | None]],
    action: str,
    volume: str | None = None,
) -> None:
    """Raise :class:`PolicyError` if ``action`` would break a rule; else return.

    Args:
        policy, volume_labels, locations, volume: as for :func:`check_placement`.
        action: what is refused, e.g. ``"create"``, ``"backup"`` (for the message).

    Raises:
        PolicyError: naming the rule(s) broken and why.
    """
    violations = check_placement(policy, volume_labels, locations, volume)
    if not violations:
        return
    names = ", ".join(dict.fromkeys(v.rule for v in violations))
    what = f"{action} of volume {volume}" if volume else action
    lines = "; ".join(v.message for v in violations)
    raise PolicyError(
        f"{what} refused by the placement policy (rule {names}): {lines}",
        violations,
        hint="place the data in an allowed region or zone (e.g. a cloud target in that "
        "region), or change the volume's labels or the policy (`STATE/storage/policy.yaml`)",
    )


# ---- the file ---------------------------------------------------------------------------
class _FieldError(Exception):
    """Raised by the loader; parse_policy adds the file's name."""

    def __init__(self, line: int, problem: str) -> None:
        super().__init__(problem)
        self.line = line
        self.problem = problem


class _Lines:
    """Line numbers (1-based) of mapping keys and sequence items, by object id."""

    def __init__(self) -> None:
        self.of: dict[int, int] = {}
        self.keys: dict[int, dict[Any, int]] = {}
        self.items: dict[int, list[int]] = {}


def _loader(lines: _Lines) -> type[yaml.SafeLoader]:
    """A SafeLoader that records where each mapping key and list item is, and refuses
    duplicate keys (YAML would keep the last one silently)."""

    class Loader(yaml.SafeLoader):
        pass

    def mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
        loader.flatten_mapping(node)
        out: dict[Any, Any] = {}
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, str | int | float | bool) or key is None:
                raise _FieldError(key_node.start_mark.line + 1, "a field name must be text")
            if key in seen:
                raise _FieldError(
                    key_node.start_mark.line + 1,
                    f"{key}: duplicate field (first on line {seen[key]})",
                )
            seen[key] = key_node.start_mark.line + 1
            out[key] = loader.construct_object(value_node, deep=True)
        lines.of[id(out)] = node.start_mark.line + 1
        lines.keys[id(out)] = seen
        return out

    def sequence(loader: yaml.SafeLoader, node: yaml.SequenceNode) -> list[Any]:
        out = [loader.construct_object(n, deep=True) for n in node.value]
        lines.of[id(out)] = node.start_mark.line + 1
        lines.items[id(out)] = [n.start_mark.line + 1 for n in node.value]
        return out

    Loader.add_constructor("tag:yaml.org,2002:map", mapping)
    Loader.add_constructor("tag:yaml.org,2002:seq", sequence)
    return Loader


class _Checker:
    def __init__(self, source: str, lines: _Lines) -> None:
        self.source = source
        self.lines = lines

    def fail(self, where: str, line: int | None, problem: str) -> PolicyFileError:
        at = f"{self.source}:{line}" if line else self.source
        return PolicyFileError(f"{at}: {where}: {problem}", hint=_HINT)

    def line_of(self, parent: Any, key: Any) -> int | None:
        if isinstance(parent, dict):
            return self.lines.keys.get(id(parent), {}).get(key) or self.lines.of.get(id(parent))
        if isinstance(parent, list):
            items = self.lines.items.get(id(parent), [])
            return items[key] if isinstance(key, int) and key < len(items) else None
        return None

    def mapping(
        self, value: Any, where: str, line: int | None, known: Iterable[str] | None
    ) -> dict[Any, Any]:
        if not isinstance(value, dict):
            raise self.fail(where, line, f"must be a mapping, not {_kind(value)}")
        for k in value:
            if known is not None and k not in known:
                raise self.fail(
                    f"{where}.{k}" if where else str(k),
                    self.line_of(value, k),
                    f"unknown field (known: {', '.join(known or ())})",
                )
        return value

    def names(self, value: Any, where: str, line: int | None) -> frozenset[str]:
        if not isinstance(value, list) or not value:
            raise self.fail(where, line, f"must be a non-empty list of names, not {_kind(value)}")
        out = []
        for i, item in enumerate(value):
            if not isinstance(item, str) or not item.strip():
                raise self.fail(f"{where}[{i}]", self.line_of(value, i), "must be a name")
            out.append(item.strip())
        return frozenset(out)


def _kind(value: Any) -> str:
    if value is None:
        return "empty"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f"the text {value!r}"
    return f"{type(value).__name__} {value!r}"


def parse_policy(text: str, source: str = POLICY_FILE) -> Policy:
    """A policy from its YAML text.

    Raises:
        PolicyFileError: not YAML, or not a valid policy; the message names the file,
            the line and the field (``policy.yaml:7: rules[0].allow.regions: ...``).
    """
    lines = _Lines()
    try:
        doc = yaml.load(text, Loader=_loader(lines))  # a SafeLoader subclass
    except _FieldError as exc:
        raise PolicyFileError(f"{source}:{exc.line}: {exc.problem}", hint=_HINT) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        at = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        raise PolicyFileError(
            f"{at}: not valid YAML: {exc.problem or exc.context}", hint=_HINT
        ) from None
    except yaml.YAMLError as exc:
        raise PolicyFileError(f"{source}: not valid YAML: {exc}", hint=_HINT) from None
    if doc is None:
        return Policy()
    c = _Checker(source, lines)
    c.mapping(doc, "", 1, _TOP_FIELDS)
    schema = doc.get("schema_version", SCHEMA_VERSION)
    if schema != SCHEMA_VERSION:
        raise c.fail(
            "schema_version",
            c.line_of(doc, "schema_version"),
            f"{schema!r} is not supported; this kit reads schema_version {SCHEMA_VERSION}",
        )
    version = doc.get("version", 0)
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        raise c.fail("version", c.line_of(doc, "version"), "must be an integer >= 0")
    raw_rules = doc.get("rules")
    if raw_rules is None:
        raw_rules = []
    if not isinstance(raw_rules, list):
        raise c.fail("rules", c.line_of(doc, "rules"), f"must be a list, not {_kind(raw_rules)}")
    rules: list[Rule] = []
    names: set[str] = set()
    for i, raw in enumerate(raw_rules):
        where = f"rules[{i}]"
        line = c.line_of(raw_rules, i)
        c.mapping(raw, where, line, _RULE_FIELDS)
        name = raw.get("name")
        if not isinstance(name, str) or not RULE_NAME.match(name):
            raise c.fail(
                f"{where}.name",
                c.line_of(raw, "name") if "name" in raw else line,
                "required: 1 to 63 characters from A-Z a-z 0-9 . _ -, not "
                + ("missing" if name is None else _kind(name)),
            )
        if name in names:
            raise c.fail(f"{where}.name", c.line_of(raw, "name"), f"duplicate rule {name!r}")
        names.add(name)
        where = f"rules[{i}] ({name})"
        description = raw.get("description") or ""
        if not isinstance(description, str):
            raise c.fail(f"{where}.description", c.line_of(raw, "description"), "must be text")
        labels: dict[str, str] = {}
        if raw.get("match") is not None:
            match = c.mapping(raw["match"], f"{where}.match", c.line_of(raw, "match"), ["labels"])
            raw_labels = match.get("labels") or {}
            c.mapping(raw_labels, f"{where}.match.labels", c.line_of(match, "labels"), None)
            for k, v in raw_labels.items():
                if not isinstance(k, str) or not k or isinstance(v, dict | list) or v is None:
                    raise c.fail(
                        f"{where}.match.labels.{k}",
                        c.line_of(raw_labels, k),
                        'a label is a name and a text value (e.g. pii: "true")',
                    )
                labels[k] = label_value(v)
        if "allow" not in raw:
            raise c.fail(f"{where}.allow", line, "required: allow: {regions: [...]} and/or zones")
        allow = c.mapping(
            raw["allow"], f"{where}.allow", c.line_of(raw, "allow"), ["regions", "zones"]
        )
        if not allow:
            raise c.fail(f"{where}.allow", c.line_of(raw, "allow"), "give regions and/or zones")
        regions = zones = None
        if "regions" in allow:
            regions = c.names(
                allow["regions"], f"{where}.allow.regions", c.line_of(allow, "regions")
            )
        if "zones" in allow:
            zones = c.names(allow["zones"], f"{where}.allow.zones", c.line_of(allow, "zones"))
        kinds = frozenset(KINDS)
        if "kinds" in raw:
            kinds = c.names(raw["kinds"], f"{where}.kinds", c.line_of(raw, "kinds"))
            bad = sorted(kinds - set(KINDS))
            if bad:
                raise c.fail(
                    f"{where}.kinds",
                    c.line_of(raw, "kinds"),
                    f"unknown kind {', '.join(bad)} (kinds: {', '.join(KINDS)})",
                )
        rules.append(Rule(name, labels, regions, zones, kinds, description))
    return Policy(tuple(rules), version)


def load_policy(path: Path | str) -> Policy:
    """The policy in ``path``; no rules (version 0) when the file does not exist.

    Raises:
        PolicyFileError: the file cannot be read or is not a valid policy (the message
            names the line and the field).
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Policy()
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyFileError(f"cannot read the policy file {p}: {exc}") from None
    return parse_policy(text, str(p))


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    lock = path.with_name(path.name + ".lock")
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def _backups(path: Path) -> list[int]:
    out = []
    for p in path.parent.glob(path.name + ".*"):
        suffix = p.name[len(path.name) + 1 :]
        if suffix.isdigit():
            out.append(int(suffix))
    return sorted(out)


def save_policy(path: Path | str, policy: Policy | str, source: str = "the new policy") -> Policy:
    """Replace the policy file atomically, with the next ``version``.

    The file in place (if any) is kept as ``policy.yaml.N`` (N its version) before the
    new one is renamed over it. Saves are serialized with a lock file next to it. The
    new version is one more than the highest of the current file's and its backups'.

    Args:
        path: the policy file (its directory is created).
        policy: the new policy, or its YAML text (validated first; nothing is written
            when it is not valid). Its own ``version`` is ignored.
        source: names the text in the messages of a :class:`PolicyFileError`.

    Returns:
        The policy as saved, with its new version.

    Raises:
        PolicyFileError: ``policy`` is text that is not a valid policy.
        OSError: the file cannot be written (the old one is then still in place).
    """
    p = Path(path)
    new = parse_policy(policy, source) if isinstance(policy, str) else policy
    p.parent.mkdir(parents=True, exist_ok=True)
    with _locked(p):
        current = 0
        old: bytes | None = None
        if p.exists():
            old = p.read_bytes()
            try:
                current = load_policy(p).version
            except PolicyFileError:
                current = 0  # a hand-broken file: still kept, numbered after the backups
        backups = _backups(p)
        if old is None:
            keep = None
            version = max([current, *backups]) + 1
        elif current >= 1 and current not in backups:
            keep = current
            version = max([current, *backups]) + 1
        else:  # a file without a (fresh) version: numbered after everything kept
            keep = max([current, *backups]) + 1
            version = keep + 1
        if old is not None and keep is not None:
            _write_atomic(p.with_name(f"{p.name}.{keep}"), old)
        saved = Policy(new.rules, version)
        header = (
            "# The kit's storage placement policy (see `playground.storage.policy`).\n"
            "# Saved by the kit: `version` counts the saves; older versions are kept as\n"
            f"# {p.name}.N next to this file.\n"
        )
        body = yaml.safe_dump(saved.as_dict(), sort_keys=False, default_flow_style=False)
        _write_atomic(p, (header + body).encode())
    return saved
