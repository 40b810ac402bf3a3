"""Mesos resources and attributes: the text grammar, the v1 JSON shape, arithmetic.

Grammar (as in ``--resources`` / ``--attributes`` of the Mesos agent)::

    cpus:4;mem:4096;disk:20000;ports:[31000-32000]
    cpus(slave_public):4;mem(slave_public):4096
    zone:a;rack:r1;weight:2.5;levels:[1-3];colors:{red,blue}
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

_RESOURCE = re.compile(r"^\s*([A-Za-z_][\w.-]*)\s*(?:\(([^)]*)\))?\s*:\s*(.+?)\s*$")
_EPS = 1e-9


class ResourceGrammarError(ValueError):
    """A resource or attribute string does not follow Mesos's grammar."""


def _parse_ranges(text: str) -> list[tuple[int, int]]:
    inner = text.strip()[1:-1]
    out: list[tuple[int, int]] = []
    for part in filter(None, (p.strip() for p in inner.split(","))):
        if "-" not in part:
            raise ResourceGrammarError(f"bad range {part!r}: expected BEGIN-END")
        b, e = (int(x) for x in part.split("-", 1))
        if e < b:
            raise ResourceGrammarError(f"bad range {part!r}: end is before begin")
        out.append((b, e))
    return normalize_ranges(out)


def normalize_ranges(ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sort and merge overlapping or adjacent ranges."""
    out: list[tuple[int, int]] = []
    for b, e in sorted(ranges):
        if out and b <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((b, e))
    return out


def subtract_ranges(a: list[tuple[int, int]], b: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Ranges in ``a`` but not in ``b``."""
    out: list[tuple[int, int]] = []
    for lo, hi in a:
        pieces = [(lo, hi)]
        for blo, bhi in b:
            nxt = []
            for plo, phi in pieces:
                if bhi < plo or blo > phi:
                    nxt.append((plo, phi))
                    continue
                if plo < blo:
                    nxt.append((plo, blo - 1))
                if bhi < phi:
                    nxt.append((bhi + 1, phi))
            pieces = nxt
        out.extend(pieces)
    return normalize_ranges(out)


def ranges_contain(outer: list[tuple[int, int]], inner: list[tuple[int, int]]) -> bool:
    """True when every value of ``inner`` lies in ``outer``."""
    return not subtract_ranges(inner, outer)


def ranges_text(ranges: list[tuple[int, int]]) -> str:
    """``[31000-31005, 31010-31010]`` as Mesos prints ranges in v0 JSON."""
    return "[" + ", ".join(f"{b}-{e}" for b, e in ranges) + "]"


@dataclass
class Resource:
    """One resource of one role: a scalar, ranges or a set."""

    name: str
    role: str = "*"
    scalar: float | None = None
    ranges: list[tuple[int, int]] | None = None
    items: list[str] | None = None
    reservation: str | None = None  # "STATIC" or "DYNAMIC" for reserved resources
    extra: dict[str, Any] = field(default_factory=dict)  # disk info, allocation info, ...
    principal: str | None = None  # the reserver principal of a dynamic reservation
    labels: list[dict[str, Any]] | None = None  # the labels of a dynamic reservation

    @property
    def kind(self) -> str:
        if self.scalar is not None:
            return "SCALAR"
        if self.ranges is not None:
            return "RANGES"
        return "SET"

    def key(self) -> tuple[str, ...]:
        """What makes two resources interchangeable: name, role, reservation, disk info.

        Resources with the same key add up; a dynamic reservation with other labels, or a
        persistent volume, stays a resource of its own (as Mesos keeps them apart).
        """
        if self.role == "*":
            reservation = ""
        else:
            reservation = self.reservation or "STATIC"
        labels = json.dumps(self.labels, sort_keys=True) if self.labels else ""
        return (self.name, self.role, reservation, self.principal or "", labels, self.disk_key())

    @property
    def disk(self) -> dict[str, Any]:
        return dict(self.extra.get("disk") or {})

    def disk_key(self) -> str:
        """The identity of the disk info: persistence id, volume path and mode, source."""
        disk = self.disk
        if not disk:
            return ""
        ident = {
            "id": (disk.get("persistence") or {}).get("id"),
            "path": (disk.get("volume") or {}).get("container_path"),
            "mode": (disk.get("volume") or {}).get("mode"),
            "source": disk.get("source"),
        }
        return json.dumps(ident, sort_keys=True)

    @property
    def persistence_id(self) -> str | None:
        pid = (self.disk.get("persistence") or {}).get("id")
        return None if pid is None else str(pid)

    @property
    def is_persistent_volume(self) -> bool:
        return "persistence" in self.disk

    @property
    def is_dynamically_reserved(self) -> bool:
        return self.role != "*" and self.reservation == "DYNAMIC"

    def is_empty(self) -> bool:
        if self.scalar is not None:
            return self.scalar <= _EPS
        if self.ranges is not None:
            return not self.ranges
        return not self.items

    def copy(self) -> Resource:
        return Resource(
            self.name,
            self.role,
            self.scalar,
            list(self.ranges) if self.ranges is not None else None,
            list(self.items) if self.items is not None else None,
            self.reservation,
            json.loads(json.dumps(self.extra)),
            self.principal,
            [dict(label) for label in self.labels] if self.labels is not None else None,
        )

    def to_v1(self, allocation_role: str | None = None) -> dict[str, Any]:
        """The v1 API JSON of this resource (``Resource`` in mesos.proto)."""
        out: dict[str, Any] = {"name": self.name, "type": self.kind}
        if self.scalar is not None:
            out["scalar"] = {"value": _round(self.scalar)}
        elif self.ranges is not None:
            out["ranges"] = {"range": [{"begin": b, "end": e} for b, e in self.ranges]}
        else:
            out["set"] = {"item": list(self.items or [])}
        out["role"] = self.role
        if self.role != "*":
            entry: dict[str, Any] = {"type": self.reservation or "STATIC", "role": self.role}
            info: dict[str, Any] = {}
            if self.principal is not None:
                info["principal"] = self.principal
            if self.labels:
                info["labels"] = {"labels": [dict(label) for label in self.labels]}
            entry.update(info)
            out["reservations"] = [entry]
            if self.reservation == "DYNAMIC":
                # The pre-refinement shape (``role`` + ``reservation``) next to ``reservations``.
                out["reservation"] = info
        if allocation_role is not None:
            out["allocation_info"] = {"role": allocation_role}
        out.update(self.extra)
        return out

    @classmethod
    def from_v1(cls, data: dict[str, Any]) -> Resource:
        """Parse a v1 ``Resource`` JSON object (as sent by frameworks)."""
        name = str(data.get("name", ""))
        if not name:
            raise ResourceGrammarError("resource without a name")
        reservations = data.get("reservations") or []
        legacy = data.get("reservation")
        role = str(reservations[-1].get("role", "*") if reservations else data.get("role", "*"))
        kind = data.get("type", "SCALAR")
        extra = {k: v for k, v in data.items() if k in ("disk", "provider_id") and v}
        if reservations:
            last = reservations[-1]
            rtype = last.get("type") or ("DYNAMIC" if "principal" in last else "STATIC")
            info = last
        elif legacy is not None and role != "*":
            rtype, info = "DYNAMIC", legacy
        else:
            rtype, info = None, {}
        labels = ((info or {}).get("labels") or {}).get("labels")
        res = cls(
            name=name,
            role=role,
            reservation=rtype if role != "*" else None,
            extra=extra,
            principal=(info or {}).get("principal"),
            labels=[dict(label) for label in labels] if labels else None,
        )
        if kind == "SCALAR":
            value = float((data.get("scalar") or {}).get("value", 0.0))
            if math.isnan(value) or value < 0:
                raise ResourceGrammarError(f"invalid scalar value for {name}: {value}")
            res.scalar = value
        elif kind == "RANGES":
            rs = (data.get("ranges") or {}).get("range") or []
            res.ranges = normalize_ranges((int(r["begin"]), int(r["end"])) for r in rs)
        elif kind == "SET":
            res.items = list((data.get("set") or {}).get("item") or [])
        else:
            raise ResourceGrammarError(f"unknown resource type {kind!r}")
        return res


def _round(v: float) -> float:
    # Mesos keeps three decimal digits of precision for scalars.
    return round(v, 3)


class Resources:
    """A bag of resources keyed by (name, role), with Mesos-like arithmetic."""

    def __init__(self, items: Iterable[Resource] = ()) -> None:
        self._items: dict[tuple[str, ...], Resource] = {}
        for r in items:
            self.add(r)

    # -- grammar -----------------------------------------------------------------------
    @classmethod
    def parse(cls, text: str, default_role: str = "*") -> Resources:
        """Parse ``cpus:4;mem:4096;ports:[31000-32000]`` (roles in parentheses)."""
        out = cls()
        for part in filter(None, (p.strip() for p in text.split(";"))):
            m = _RESOURCE.match(part)
            if not m:
                raise ResourceGrammarError(f"bad resource {part!r}: expected NAME[(ROLE)]:VALUE")
            name, role, value = m.group(1), (m.group(2) or default_role), m.group(3)
            res = Resource(name=name, role=role, reservation="STATIC" if role != "*" else None)
            if value.startswith("["):
                if not value.endswith("]"):
                    raise ResourceGrammarError(f"bad ranges {value!r}")
                res.ranges = _parse_ranges(value)
            elif value.startswith("{"):
                if not value.endswith("}"):
                    raise ResourceGrammarError(f"bad set {value!r}")
                res.items = [x.strip() for x in value[1:-1].split(",") if x.strip()]
            else:
                try:
                    res.scalar = float(value)
                except ValueError:
                    raise ResourceGrammarError(f"bad scalar {value!r} for {name}") from None
            out.add(res)
        return out

    @classmethod
    def from_v1(cls, items: Iterable[dict[str, Any]]) -> Resources:
        return cls(Resource.from_v1(d) for d in items)

    # -- arithmetic --------------------------------------------------------------------
    def __iter__(self):
        return iter(self._items.values())

    def __bool__(self) -> bool:
        return any(not r.is_empty() for r in self._items.values())

    def copy(self) -> Resources:
        return Resources(r.copy() for r in self._items.values())

    def get(self, name: str, role: str | None = None) -> Resource | None:
        for r in self._items.values():
            if r.name == name and (role is None or r.role == role):
                return r
        return None

    def add(self, r: Resource) -> None:
        cur = self._items.get(r.key())
        if cur is None:
            self._items[r.key()] = r.copy()
            return
        if r.scalar is not None:
            cur.scalar = (cur.scalar or 0.0) + r.scalar
        elif r.ranges is not None:
            cur.ranges = normalize_ranges((cur.ranges or []) + r.ranges)
        else:
            cur.items = sorted(set(cur.items or []) | set(r.items or []))

    def __add__(self, other: Resources) -> Resources:
        out = self.copy()
        for r in other:
            out.add(r)
        return out

    def __sub__(self, other: Resources) -> Resources:
        out = self.copy()
        for r in other:
            cur = out._items.get(r.key())
            if cur is None:
                continue
            if r.scalar is not None and cur.scalar is not None:
                cur.scalar = max(0.0, cur.scalar - r.scalar)
            elif r.ranges is not None and cur.ranges is not None:
                cur.ranges = subtract_ranges(cur.ranges, r.ranges)
            elif r.items is not None and cur.items is not None:
                cur.items = [i for i in cur.items if i not in set(r.items)]
        out._items = {k: v for k, v in out._items.items() if not v.is_empty()}
        return out

    def contains(self, other: Resources) -> bool:
        """True when ``other`` fits entirely into these resources (role by role)."""
        for r in other:
            if r.is_empty():
                continue
            cur = self._items.get(r.key())
            if cur is None:
                return False
            if r.scalar is not None:
                if (cur.scalar or 0.0) + _EPS < r.scalar:
                    return False
            elif r.ranges is not None:
                if not ranges_contain(cur.ranges or [], r.ranges):
                    return False
            elif not set(r.items or []) <= set(cur.items or []):
                return False
        return True

    def for_roles(self, roles: Iterable[str]) -> Resources:
        """Unreserved resources plus those reserved to one of ``roles``."""
        allowed = set(roles) | {"*"}
        return Resources(r for r in self if r.role in allowed)

    def scalar(self, name: str) -> float:
        return sum(r.scalar or 0.0 for r in self if r.name == name)

    def port_ranges(self) -> list[tuple[int, int]]:
        return normalize_ranges(rg for r in self if r.name == "ports" for rg in (r.ranges or []))

    # -- renderings --------------------------------------------------------------------
    def to_v1(self, allocation_role: str | None = None) -> list[dict[str, Any]]:
        return [r.to_v1(allocation_role) for r in self if not r.is_empty()]

    def to_flat(self) -> dict[str, Any]:
        """The v0 ``/master/state`` shape: ``{"cpus": 4.0, "ports": "[31000-32000]"}``."""
        out: dict[str, Any] = {}
        for name in ("cpus", "disk", "gpus", "mem"):
            out[name] = _round(self.scalar(name))
        for r in self:
            if r.scalar is not None and r.name not in out:
                out[r.name] = _round(self.scalar(r.name))
        ranges: dict[str, list[tuple[int, int]]] = {}
        for r in self:
            if r.ranges is not None:
                ranges.setdefault(r.name, []).extend(r.ranges)
        for name, rs in ranges.items():
            if normalize_ranges(rs):
                out[name] = ranges_text(normalize_ranges(rs))
        return out

    def to_text(self) -> str:
        parts = []
        for r in self:
            role = f"({r.role})" if r.role != "*" else ""
            if r.reservation == "DYNAMIC" or r.persistence_id is not None:
                extra = []
                if r.principal:
                    extra.append(r.principal)
                if r.persistence_id is not None:
                    extra.append(f"persistence {r.persistence_id}")
                role = f"({r.role}, {', '.join(extra)})" if extra else f"({r.role}, dynamic)"
            if r.scalar is not None:
                parts.append(f"{r.name}{role}:{r.scalar:g}")
            elif r.ranges is not None:
                parts.append(f"{r.name}{role}:[" + ",".join(f"{b}-{e}" for b, e in r.ranges) + "]")
            else:
                parts.append(f"{r.name}{role}:{{" + ",".join(r.items or []) + "}")
        return ";".join(parts)


# -- attributes ------------------------------------------------------------------------


def parse_attributes(text: str) -> list[dict[str, Any]]:
    """Parse ``zone:a;rack:r1`` into v1 ``Attribute`` JSON objects (TEXT/SCALAR/RANGES/SET)."""
    out: list[dict[str, Any]] = []
    for part in filter(None, (p.strip() for p in text.split(";"))):
        if ":" not in part:
            raise ResourceGrammarError(f"bad attribute {part!r}: expected NAME:VALUE")
        name, value = (s.strip() for s in part.split(":", 1))
        if value.startswith("["):
            out.append(
                {
                    "name": name,
                    "type": "RANGES",
                    "ranges": {"range": [{"begin": b, "end": e} for b, e in _parse_ranges(value)]},
                }
            )
        elif value.startswith("{"):
            items = [x.strip() for x in value[1:-1].split(",") if x.strip()]
            out.append({"name": name, "type": "SET", "set": {"item": items}})
        else:
            try:
                num = float(value)
            except ValueError:
                out.append({"name": name, "type": "TEXT", "text": {"value": value}})
            else:
                out.append({"name": name, "type": "SCALAR", "scalar": {"value": num}})
    return out


def attributes_flat(attrs: list[dict[str, Any]]) -> dict[str, Any]:
    """The v0 JSON shape of attributes: ``{"zone": "a", "weight": 2.5}``."""
    out: dict[str, Any] = {}
    for a in attrs:
        t = a.get("type")
        if t == "TEXT":
            out[a["name"]] = a["text"]["value"]
        elif t == "SCALAR":
            out[a["name"]] = a["scalar"]["value"]
        elif t == "RANGES":
            out[a["name"]] = ranges_text([(r["begin"], r["end"]) for r in a["ranges"]["range"]])
        elif t == "SET":
            out[a["name"]] = "{" + ",".join(a["set"]["item"]) + "}"
    return out
