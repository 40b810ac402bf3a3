"""Offer matching as Marathon 1.10 does it: roles, constraints, fault domains, ports.

Pure logic, no I/O.  The semantics mirror these Marathon 1.10 sources:

* ``mesosphere.mesos.ResourceMatcher.matchResources`` -- which checks run and in which order
  the ``NoOfferMatchReason`` values are collected;
* ``mesosphere.mesos.Constraints`` -- the operators (``UNIQUE``, ``CLUSTER``, ``GROUP_BY``,
  ``LIKE``, ``UNLIKE``, ``MAX_PER``, ``IS``), the field readers (``hostname``/``@hostname``,
  ``@region``, ``@zone``, agent attributes) and ``selectInstancesToKill``;
* ``mesosphere.marathon.tasks.PortsMatcher`` -- static and dynamic (random) host ports;
* ``mesosphere.mesos.Availability`` -- maintenance windows (``AgentMaintenance``);
* ``ScalingProposition`` -- which instances to kill when scaling down.

Offers are Mesos v1 scheduler API JSON objects; apps are normalised Marathon app JSON.
"""

from __future__ import annotations

import copy
import random
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any

from playground.mesos.resources import Resource, ResourceGrammarError, subtract_ranges

__all__ = [
    "REASON_FUNNEL",
    "Match",
    "NoMatch",
    "Placement",
    "attribute_value_string",
    "constraints_met",
    "format_scalar",
    "match_offer",
    "primary_reason",
    "select_kills",
    "unmet_constraints",
]

# NoOfferMatchReason.reasonFunnel: when an offer is declined for several reasons, Marathon counts
# it (``rejectSummary*`` of ``processedOffersSummary``) under the first of these that applies.
REASON_FUNNEL: tuple[str, ...] = (
    "UnfulfilledRole",
    "UnfulfilledConstraint",
    "NoCorrespondingReservationFound",
    "AgentMaintenance",
    "InsufficientCpus",
    "InsufficientMemory",
    "InsufficientDisk",
    "InsufficientGpus",
    "InsufficientPorts",
    "DeclinedScarceResources",
)

_SCALAR_REASONS = {
    "cpus": "InsufficientCpus",
    "mem": "InsufficientMemory",
    "disk": "InsufficientDisk",
    "gpus": "InsufficientGpus",
}
# TaskLabels.labelKeysForReservations: resources reserved for resident tasks are never matched
# for ordinary launches.
_RESIDENT_RESERVATION_LABELS = frozenset({"marathon_framework_id", "marathon_task_id"})
_HOSTNAME_FIELDS = frozenset({"hostname", "@hostname"})
_REGION_FIELD = "@region"
_ZONE_FIELD = "@zone"
_EPS = 1e-6
_INT = re.compile(r"^[+-]?\d+$")


# -- attribute values -------------------------------------------------------------------------


def format_scalar(value: float) -> str:
    """A scalar attribute as Marathon compares it: nearest thousandth (half-even), no trailing zeros.

    ``0.8`` -> ``"0.8"``, ``0.8001`` -> ``"0.8"``, ``2.0`` -> ``"2"``, ``0.0005`` -> ``"0"``.
    """
    q = Decimal(repr(float(value))).quantize(Decimal("0.001"), rounding=ROUND_HALF_EVEN)
    text = format(q, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def attribute_value_string(attr: dict[str, Any]) -> str | None:
    """The string Marathon matches constraints against (``Constraints.getValueString``).

    TEXT as is, SCALAR via :func:`format_scalar`, RANGES as ``[b-e,b-e]`` (sorted by begin),
    SET as ``{a,b}`` (sorted).
    """
    kind = attr.get("type")
    if kind == "TEXT":
        return str((attr.get("text") or {}).get("value", ""))
    if kind == "SCALAR":
        return format_scalar(float((attr.get("scalar") or {}).get("value", 0.0)))
    if kind == "RANGES":
        rs = sorted(
            ((int(r["begin"]), int(r["end"])) for r in (attr.get("ranges") or {}).get("range", [])),
            key=lambda r: r[0],
        )
        return "[" + ",".join(f"{b}-{e}" for b, e in rs) + "]"
    if kind == "SET":
        return "{" + ",".join(sorted(str(i) for i in (attr.get("set") or {}).get("item", []))) + "}"
    return None


# -- results ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Placement:
    """Where an instance runs (or an offer comes from), as far as constraints care."""

    agent_id: str
    hostname: str
    region: str | None = None
    zone: str | None = None
    attributes: dict[str, str] = field(default_factory=dict, hash=False)

    @classmethod
    def from_offer(cls, offer: dict[str, Any]) -> Placement:
        fault = (offer.get("domain") or {}).get("fault_domain") or {}
        region = (fault.get("region") or {}).get("name") if fault else None
        zone = (fault.get("zone") or {}).get("name") if fault else None
        attrs: dict[str, str] = {}
        for a in offer.get("attributes") or []:
            name = a.get("name")
            value = attribute_value_string(a)
            # Marathon looks attributes up with ``find``: the first one of a name wins.
            if name and value is not None and name not in attrs:
                attrs[name] = value
        return cls(
            agent_id=str((offer.get("agent_id") or {}).get("value", "")),
            hostname=str(offer.get("hostname", "")),
            region=region,
            zone=zone,
            attributes=attrs,
        )


@dataclass
class Match:
    """The offer fits: what to put into ``TaskInfo.resources`` and what is left of the offer."""

    resources: list[dict[str, Any]]
    # One host port per port definition / port mapping, in order; ``[]`` when the app asks for
    # none.  A port mapping without ``hostPort`` (container networking) consumes no host port
    # and is left out (Marathon's ``Seq[Option[Int]]`` has a ``None`` there).
    host_ports: list[int]
    placement: Placement
    remaining: dict[str, Any]


@dataclass
class NoMatch:
    """The offer does not fit; ``reasons`` are NoOfferMatchReason names in Marathon's order."""

    reasons: list[str]

    @property
    def primary_reason(self) -> str | None:
        return primary_reason(self.reasons)


def primary_reason(reasons: Sequence[str]) -> str | None:
    """The reason Marathon counts a declined offer under (lowest index in the funnel)."""
    ranked = [r for r in reasons if r in REASON_FUNNEL]
    return min(ranked, key=REASON_FUNNEL.index) if ranked else None


# -- constraints ------------------------------------------------------------------------------


def _field_value(field_name: str, p: Placement) -> str | None:
    if field_name in _HOSTNAME_FIELDS:
        return p.hostname
    if field_name == _REGION_FIELD:
        return p.region
    if field_name == _ZONE_FIELD:
        return p.zone
    return p.attributes.get(field_name)


def _int_value(s: str, default: int) -> int:
    if s == "inf":
        return 2**31 - 1
    return int(s) if _INT.match(s) else default


def _full_match(pattern: str, value: str) -> bool:
    """Java's ``String.matches``: the whole value must match."""
    try:
        return re.fullmatch(pattern, value) is not None
    except re.error:
        return False


def _is_equal(field_name: str, offer_value: str, wanted: str) -> bool:
    if offer_value == wanted:
        return True
    if field_name in _HOSTNAME_FIELDS or field_name in (_REGION_FIELD, _ZONE_FIELD):
        return False
    # Scalar attributes compare to the nearest thousandth ("0.8" IS "0.80" / "0.8001").
    try:
        return format_scalar(float(Decimal(offer_value))) == format_scalar(float(Decimal(wanted)))
    except (InvalidOperation, ValueError):
        return False


def _constraint_parts(constraint: Sequence[Any]) -> tuple[str, str, str]:
    field_name = str(constraint[0]) if len(constraint) > 0 else ""
    operator = str(constraint[1]).upper() if len(constraint) > 1 else ""
    value = constraint[2] if len(constraint) > 2 and constraint[2] is not None else ""
    return field_name, operator, str(value)


def _meets_constraint(
    constraint: Sequence[Any], offer: Placement, all_placed: Sequence[Placement]
) -> bool:
    field_name, operator, value = _constraint_parts(constraint)
    offer_value = _field_value(field_name, offer)
    if offer_value is None:
        # Only UNLIKE matches an offer that lacks the field.
        return operator == "UNLIKE"
    placed_values = [_field_value(field_name, p) for p in all_placed]

    if operator == "LIKE":
        return bool(value) and _full_match(value, offer_value)
    if operator == "UNLIKE":
        return bool(value) and not _full_match(value, offer_value)
    if operator == "UNIQUE":
        return all(v != offer_value for v in placed_values)
    if operator == "CLUSTER":
        if not value:
            # The first placement decides; everything else must follow it.
            return not placed_values or placed_values[0] == offer_value
        return offer_value == value
    if operator == "IS":
        return _is_equal(field_name, offer_value, value)
    if operator in ("GROUP_BY", "MAX_PER"):
        counts: dict[str | None, int] = {}
        for v in placed_values:
            counts[v] = counts.get(v, 0) + 1
        if operator == "MAX_PER":
            if not _INT.match(value):
                return False
            return counts.get(offer_value, 0) < int(value)
        minimum = max(0, _int_value(value, 0))
        if offer_value not in counts:
            return True  # a value not used yet is always welcome
        return len(counts) >= minimum and counts[offer_value] == min(counts.values())
    return False


def _has_region_constraint(app: dict[str, Any]) -> bool:
    return any(c and str(c[0]) == _REGION_FIELD for c in app.get("constraints") or [])


def _region_ok(app: dict[str, Any], offer: Placement, default_region: str | None) -> bool:
    """Without an ``@region`` constraint only the local (masters') region is eligible."""
    if not default_region or _has_region_constraint(app):
        return True
    return offer.region is None or offer.region == default_region


def unmet_constraints(
    app: dict[str, Any],
    offer_placement: Placement,
    placed: Sequence[Placement],
    *,
    default_region: str | None,
) -> list[list[Any]]:
    """The constraints of ``app`` that the offer violates (the region rule as ``["@region", ...]``)."""
    bad: list[list[Any]] = []
    if not _region_ok(app, offer_placement, default_region):
        bad.append([_REGION_FIELD, "IS", default_region])
    for c in app.get("constraints") or []:
        if not _meets_constraint(c, offer_placement, placed):
            bad.append(list(c))
    return bad


def constraints_met(
    app: dict[str, Any],
    offer_placement: Placement,
    placed: Sequence[Placement],
    *,
    default_region: str | None,
) -> bool:
    """Whether an instance of ``app`` may go to ``offer_placement`` given the ``placed`` ones."""
    return not unmet_constraints(app, offer_placement, placed, default_region=default_region)


# -- resources --------------------------------------------------------------------------------


def _reservation_labels(d: dict[str, Any]) -> set[str]:
    keys: set[str] = set()
    reservations = list(d.get("reservations") or [])
    if d.get("reservation"):
        reservations.append(d["reservation"])
    for r in reservations:
        for label in ((r or {}).get("labels") or {}).get("labels") or []:
            if "key" in label:
                keys.add(str(label["key"]))
    return keys


@dataclass
class _OfferResource:
    index: int
    data: dict[str, Any]
    parsed: Resource
    selected: bool


def _parse_offer_resources(offer: dict[str, Any], roles: set[str]) -> list[_OfferResource]:
    out: list[_OfferResource] = []
    for i, d in enumerate(offer.get("resources") or []):
        try:
            parsed = Resource.from_v1(d)
        except (ResourceGrammarError, KeyError, TypeError, ValueError):
            continue
        disk = d.get("disk") or {}
        has_volume = bool(disk.get("volume") or disk.get("persistence"))
        selected = (
            not has_volume
            and parsed.role in roles
            and not (_reservation_labels(d) & _RESIDENT_RESERVATION_LABELS)
        )
        out.append(_OfferResource(i, d, parsed, selected))
    return out


def _accepted_roles(app: dict[str, Any]) -> set[str]:
    roles = app.get("acceptedResourceRoles")
    return {str(r) for r in roles} if roles else {"*"}


def _consume_scalar(
    name: str, required: float, resources: list[_OfferResource], left: dict[int, float]
) -> tuple[bool, list[tuple[int, float]]]:
    """Take ``required`` of ``name`` from the selected resources in offer order (roles may mix)."""
    value_left = required
    taken: list[tuple[int, float]] = []
    for r in resources:
        if value_left <= _EPS:
            break
        if not r.selected or r.parsed.name != name or r.parsed.scalar is None:
            continue
        if name == "disk" and (r.data.get("disk") or {}).get("source"):
            continue  # scratch disk comes from the root disk only (PATH/MOUNT are for volumes)
        available = left.get(r.index, r.parsed.scalar)
        use = min(value_left, available)
        if use <= 0:
            continue
        taken.append((r.index, use))
        value_left -= use
    return value_left <= _EPS, taken


def _port_asks(app: dict[str, Any]) -> list[int | None]:
    """Host ports the app asks for: ``0`` = any, ``None`` = none (container port mapping)."""
    container = app.get("container") or {}
    mappings = container.get("portMappings") or (container.get("docker") or {}).get("portMappings")
    if mappings:
        asks: list[int | None] = []
        for m in mappings:
            hp = m.get("hostPort")
            asks.append(None if hp is None else int(hp))
        return asks
    defs = app.get("portDefinitions")
    ports = (
        [int(d.get("port", 0)) for d in defs] if defs is not None else list(app.get("ports") or [])
    )
    if app.get("requirePorts"):
        return [int(p) for p in ports]
    return [0 for _ in ports]


def _random_ports(
    ranges: list[tuple[int, int, int]], rng: random.Random
) -> Iterator[tuple[int, int]]:
    """``PortWithRole.lazyRandomPortsFromRanges``: shuffle the ranges, start at a random port,
    walk on with wrap-around.  Yields ``(resource index, port)``; consecutive ports stay together.
    """
    total = sum(e - b + 1 for _, b, e in ranges)
    if total <= 0:
        return
    shuffled = list(ranges)
    rng.shuffle(shuffled)
    start = rng.randrange(total)
    seen = 0
    for pos, (_, b, e) in enumerate(shuffled):
        size = e - b + 1
        if seen + size > start:
            range_idx, offset = pos, start - seen
            break
        seen += size
    idx, b, e = shuffled[range_idx]
    for port in range(b + offset, e + 1):
        yield idx, port
    for idx2, b2, e2 in shuffled[range_idx + 1 :] + shuffled[:range_idx]:
        for port in range(b2, e2 + 1):
            yield idx2, port
    for port in range(b, b + offset):
        yield idx, port


def _match_ports(
    asks: list[int | None], resources: list[_OfferResource], rng: random.Random
) -> list[tuple[int, int] | None] | None:
    """``PortsMatcher``: static ports must be offered, dynamic ones are drawn at random."""
    if not asks:
        return []
    offered: list[tuple[int, int, int]] = [
        (r.index, b, e)
        for r in resources
        if r.selected and r.parsed.name == "ports" and r.parsed.ranges is not None
        for b, e in r.parsed.ranges
    ]
    static = {p for p in asks if p}
    dynamic = (p for p in _random_ports(offered, rng) if p[1] not in static)
    out: list[tuple[int, int] | None] = []
    for ask in asks:
        if ask is None:
            out.append(None)
        elif ask == 0:
            nxt = next(dynamic, None)
            if nxt is None:
                return None
            out.append(nxt)
        else:
            found = next((idx for idx, b, e in offered if b <= ask <= e), None)
            if found is None:
                return None
            out.append((found, ask))
    return out


def _scalar_resource(src: dict[str, Any], amount: float) -> dict[str, Any]:
    d = copy.deepcopy(src)
    d["scalar"] = {"value": round(amount, 3)}
    return d


def _ports_resources(
    chosen: list[tuple[int, int] | None], by_index: dict[int, _OfferResource]
) -> list[dict[str, Any]]:
    """``PortWithRole.createPortsResources``: as few range resources as possible, order kept."""
    out: list[dict[str, Any]] = []
    runs: list[tuple[int, list[list[int]]]] = []
    for item in chosen:
        if item is None:
            continue
        idx, port = item
        if runs and runs[-1][0] == idx:
            ranges = runs[-1][1]
            if ranges[-1][1] == port - 1:
                ranges[-1][1] = port
            else:
                ranges.append([port, port])
        else:
            runs.append((idx, [[port, port]]))
    for idx, ranges in runs:
        d = copy.deepcopy(by_index[idx].data)
        d["ranges"] = {"range": [{"begin": b, "end": e} for b, e in ranges]}
        out.append(d)
    return out


def _remaining_offer(
    offer: dict[str, Any],
    resources: list[_OfferResource],
    scalar_left: dict[int, float],
    ports_used: dict[int, list[tuple[int, int]]],
) -> dict[str, Any]:
    by_index = {r.index: r for r in resources}
    kept: list[dict[str, Any]] = []
    for i, d in enumerate(offer.get("resources") or []):
        r = by_index.get(i)
        if r is None:
            kept.append(copy.deepcopy(d))
            continue
        if i in scalar_left:
            left = scalar_left[i]
            if left > _EPS:
                kept.append(_scalar_resource(d, left))
        elif i in ports_used and r.parsed.ranges is not None:
            rest = subtract_ranges(r.parsed.ranges, ports_used[i])
            if rest:
                nd = copy.deepcopy(d)
                nd["ranges"] = {"range": [{"begin": b, "end": e} for b, e in rest]}
                kept.append(nd)
        else:
            kept.append(copy.deepcopy(d))
    out = {k: copy.deepcopy(v) for k, v in offer.items() if k != "resources"}
    out["resources"] = kept
    return out


def _nanos(value: Any) -> float | None:
    if not isinstance(value, dict) or "nanoseconds" not in value:
        return None
    return int(value["nanoseconds"]) / 1e9


def _agent_available(offer: dict[str, Any], now: float, draining_seconds: float) -> bool:
    """``Availability.offerAvailable``: decline from ``start - draining`` until the window ends."""
    unavailability = offer.get("unavailability")
    if not unavailability:
        return True
    start = _nanos(unavailability.get("start"))
    if start is None:
        return True
    if not now > start - draining_seconds:
        return True  # not draining yet
    duration = _nanos(unavailability.get("duration"))
    # Without a duration the window never ends.
    return duration is not None and now > start + duration


def match_offer(
    app: dict[str, Any],
    offer: dict[str, Any],
    placed: Sequence[Placement],
    *,
    default_region: str | None,
    scheduled_this_round: Sequence[Placement] = (),
    rng: random.Random | None = None,
    maintenance_mode: bool = True,
    draining_seconds: float = 0.0,
    now: float | None = None,
    gpu_scheduling_behavior: str = "restricted",
) -> Match | NoMatch:
    """Match one instance of ``app`` against ``offer`` (``ResourceMatcher.matchResources``).

    ``placed`` are the app's active instances of the current config version (they feed the
    constraints), ``scheduled_this_round`` the ones already placed from earlier offers or from
    this offer in the same round.  All checks run (reasons collect in Marathon's order: scalar
    shortages cpus/mem/gpus/disk, ``UnfulfilledRole``, ``UnfulfilledConstraint``,
    ``AgentMaintenance``, ``DeclinedScarceResources``); ports are only looked at when everything
    else fits, so ``InsufficientPorts`` always comes alone.  Place further instances from
    ``Match.remaining``.
    """
    rng = rng if rng is not None else random.Random()
    roles = _accepted_roles(app)
    resources = _parse_offer_resources(offer, roles)
    by_index = {r.index: r for r in resources}
    placement = Placement.from_offer(offer)
    reasons: list[str] = []

    scalar_left: dict[int, float] = {}
    taken_scalars: list[tuple[int, float]] = []
    scalars_ok = True
    for name in ("cpus", "mem", "gpus", "disk"):
        required = float(app.get(name) or 0.0)
        if required == 0:
            continue
        ok, taken = _consume_scalar(name, required, resources, scalar_left)
        if not ok:
            scalars_ok = False
            reasons.append(_SCALAR_REASONS[name])
            continue
        for idx, amount in taken:
            base = scalar_left.get(idx, by_index[idx].parsed.scalar or 0.0)
            scalar_left[idx] = base - amount
        taken_scalars.extend(taken)

    if not any(r.selected for r in resources):
        reasons.append("UnfulfilledRole")

    all_placed = [*placed, *scheduled_this_round]
    constraints_ok = constraints_met(app, placement, all_placed, default_region=default_region)
    if not constraints_ok:
        reasons.append("UnfulfilledConstraint")

    available = True
    if maintenance_mode:
        available = _agent_available(
            offer, time.time() if now is None else now, float(draining_seconds)
        )
        if not available:
            reasons.append("AgentMaintenance")

    gpus_ok = True
    if gpu_scheduling_behavior == "restricted" and float(app.get("gpus") or 0) == 0:
        offered_gpus = sum(
            r.parsed.scalar or 0.0 for r in resources if r.selected and r.parsed.name == "gpus"
        )
        override = (app.get("labels") or {}).get("GPU_SCHEDULING_BEHAVIOR") == "unrestricted"
        if offered_gpus > 0 and not override:
            gpus_ok = False
            reasons.append("DeclinedScarceResources")

    if not (scalars_ok and constraints_ok and available and gpus_ok):
        return NoMatch(reasons)

    chosen = _match_ports(_port_asks(app), resources, rng)
    if chosen is None:
        return NoMatch([*reasons, "InsufficientPorts"])

    task_resources = [_scalar_resource(by_index[i].data, amount) for i, amount in taken_scalars]
    task_resources.extend(_ports_resources(chosen, by_index))
    ports_used: dict[int, list[tuple[int, int]]] = {}
    for item in chosen:
        if item is not None:
            ports_used.setdefault(item[0], []).append((item[1], item[1]))
    return Match(
        resources=task_resources,
        host_ports=[item[1] for item in chosen if item is not None],
        placement=placement,
        remaining=_remaining_offer(offer, resources, scalar_left, ports_used),
    )


# -- scale down -------------------------------------------------------------------------------


def _distribution_difference(groups: list[list[str]], without: set[str]) -> int:
    sizes = {sum(1 for i in g if i not in without) for g in groups}
    return max(sizes) - min(sizes)


def _group_by_candidates(groups: list[list[str]], without: set[str]) -> list[str]:
    updated = [[i for i in g if i not in without] for g in groups]
    sizes = {len(g) for g in updated}
    if len(sizes) == 1:
        return []  # evenly distributed
    biggest = max(sizes)
    return [i for g in updated if len(g) == biggest for i in g]


def _select_instances_to_kill(
    app: dict[str, Any], running: list[tuple[str, Placement]], count: int
) -> list[str]:
    """``Constraints.selectInstancesToKill``: keep GROUP_BY distributions as even as possible."""
    if count >= len(running):
        return [i for i, _ in running]
    distributions: list[list[list[str]]] = []
    for c in app.get("constraints") or []:
        field_name, operator, _ = _constraint_parts(c)
        if operator != "GROUP_BY":
            continue
        groups: dict[str | None, list[str]] = {}
        for iid, p in running:
            groups.setdefault(_field_value(field_name, p), []).append(iid)
        distributions.append(list(groups.values()))
    if not distributions:
        return []

    def more_even_without(groups: list[list[str]], selected: set[str]) -> bool:
        after = _distribution_difference(groups, selected)
        return after <= 1 or _distribution_difference(groups, set()) > after

    to_kill: list[str] = []
    while len(to_kill) != count:
        chosen = set(to_kill)
        ordered = sorted(
            distributions, key=lambda d: _distribution_difference(d, chosen), reverse=True
        )
        tried = [i for d in ordered for i in _group_by_candidates(d, chosen)]
        tried += [i for i, _ in running if i not in chosen]
        pick = next(
            (i for i in tried if all(more_even_without(d, chosen | {i}) for d in distributions)),
            None,
        )
        if pick is None:
            break
        to_kill.append(pick)
    return to_kill


def select_kills(
    app: dict[str, Any],
    instances: Sequence[tuple[str, Placement, float]],
    count: int,
    kill_selection: str = "YOUNGEST_FIRST",
) -> list[str]:
    """Which instance ids to kill when scaling down by ``count`` (``ScalingProposition.propose``).

    ``instances`` are ``(instance id, placement, startedAt epoch seconds)``.  Instances chosen to
    keep the ``GROUP_BY`` constraints balanced come first, the rest by ``kill_selection``
    (``YOUNGEST_FIRST``, the default, or ``OLDEST_FIRST``).
    """
    if count <= 0 or not instances:
        return []
    count = min(count, len(instances))
    youngest_first = str(kill_selection).upper() != "OLDEST_FIRST"
    ordered = sorted(instances, key=lambda t: t[2], reverse=youngest_first)
    by_constraints = _select_instances_to_kill(app, [(i, p) for i, p, _ in ordered], count)
    out: list[str] = []
    for iid in [*by_constraints, *(i for i, _, _ in ordered)]:
        if iid not in out:
            out.append(iid)
        if len(out) == count:
            break
    return out
