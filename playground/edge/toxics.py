"""Route faults in the kit's proxy: Toxiproxy's toxics, applied to one route's data.

A *toxic* (Toxiproxy's word) changes the data flowing through the edge on a *route*: the
services of one Marathon app (``app``, as ``playground routes`` prints it), or only the one
on service port ``port``, whether a connection came in on the service port or through
the app's vhost. It applies to one direction, ``stream``: ``downstream`` (server to
client, Toxiproxy's default) or ``upstream`` (client to server). ``toxicity`` is the
probability that it applies to a connection, drawn once per connection (Toxiproxy's).

Types and attributes, in Toxiproxy's names and units:

* ``latency`` ``{latency: ms, jitter: ms}``: each chunk of data is passed on ``latency``
  +/- ``jitter`` ms (uniform, never below 0) after it reached the edge; chunks keep their
  order, and chunks that arrive together are delayed together (a large response is
  delayed once, not once per chunk);
* ``bandwidth`` ``{rate: KB/s}``: data is passed on at ``rate`` kilobytes (1000 bytes) per
  second at most, in slices of at most 100 ms worth;
* ``reset_peer`` ``{timeout: ms}``: when data arrives, wait ``timeout`` ms, then reset the
  connection (a TCP RST: ``SO_LINGER`` 0 on the side the stream flows to); the data is
  not passed on;
* ``loss`` ``{probability}``: **not a Toxiproxy toxic**. A loopback TCP stream cannot lose a
  packet without breaking it, so the kit loses *connections*: when a connection's first
  data flows in the toxic's direction, the connection is reset (as by ``reset_peer`` with
  ``timeout`` 0) with this probability, else it is left alone for good. It is Toxiproxy's
  ``reset_peer`` with ``timeout: 0`` and ``toxicity: probability``; ``downstream`` loses
  the answer (the server did the work), ``upstream`` the request (no server sees it).

Toxics apply to data as it flows: adding one affects the connections already open from
their next chunk on, removing one lets data pass freely at once. Nothing here restarts a
listener. Toxics of the fault registry (``playground break --route``) live in
``STATE/faults.json`` (:func:`registry_toxics` reads them; the edge re-reads the file when
it changes and when it starts, so a fault outlives an edge restart); the edge's API adds
others in memory only, as Toxiproxy does.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from playground.errors import PlaygroundError

TYPES = ("latency", "bandwidth", "reset_peer", "loss")
STREAMS = ("downstream", "upstream")
#: Every type's attributes and their defaults (Toxiproxy's units: ms, KB/s).
ATTRIBUTES: dict[str, dict[str, float]] = {
    "latency": {"latency": 0, "jitter": 0},
    "bandwidth": {"rate": 0},
    "reset_peer": {"timeout": 0},
    "loss": {"probability": 0.0},
}
#: Bandwidth slices: at most this many seconds' worth of data per write (Toxiproxy's 100 ms).
SLICE = 0.1
NOT_ON_HAPROXY = (
    "route faults need the kit's proxy engine; this edge runs real HAProxy "
    "(`--edge-engine haproxy`), which has no toxics"
)
NOT_ON_HAPROXY_HINT = "use the default `proxy` engine: `playground up` without --edge-engine"
_NAME = re.compile(r"^[A-Za-z0-9_.@:-]{1,100}$")


class ToxicError(PlaygroundError):
    """A toxic is malformed, unknown, or cannot be added or removed."""


class ResetConnection(Exception):
    """A toxic resets the connection (raised out of :meth:`Link.deliver`)."""

    def __init__(self, stream: str, toxic: str) -> None:
        super().__init__(f"{toxic} reset the connection ({stream})")
        self.stream = stream
        self.toxic = toxic


def slug(app_id: str) -> str:
    """An app id as a name part (marathon-lb's backend naming: ``/shop/web`` -> ``shop_web``)."""
    return app_id.strip("/").replace("/", "_") or "root"


@dataclass(frozen=True)
class Toxic:
    """One toxic on one route."""

    name: str
    type: str
    app: str  #: the Marathon app id of the route
    port: int | None = None  #: only this service port of the app (None: all of them)
    stream: str = "downstream"
    toxicity: float = 1.0
    attributes: Mapping[str, float] = field(default_factory=dict)
    fault: str | None = None  #: the registry fault it belongs to (None: added on the API)
    revert_at: float | None = None  #: wall-clock epoch after which it no longer applies

    def matches(self, app_id: str, service_port: int) -> bool:
        return self.app == app_id and (self.port is None or self.port == service_port)

    def live(self, now: float) -> bool:
        return self.revert_at is None or now < self.revert_at

    def attr(self, key: str) -> float:
        return float(self.attributes.get(key, ATTRIBUTES[self.type][key]))

    @property
    def route(self) -> str:
        return self.app if self.port is None else f"{self.app}:{self.port}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "stream": self.stream,
            "toxicity": self.toxicity,
            "attributes": dict(self.attributes),
            "route": {"app": self.app, "port": self.port},
            "fault": self.fault,
            "revert_at": self.revert_at,
        }

    @classmethod
    def parse(
        cls,
        d: Mapping[str, Any],
        *,
        app: str | None = None,
        port: int | None = None,
        name: str | None = None,
        fault: str | None = None,
        revert_at: float | None = None,
    ) -> Toxic:
        """A toxic from its JSON (Toxiproxy's shape plus ``route``), checked.

        ``app``/``port``/``name`` given here win over the JSON's. Raises ToxicError
        saying what is wrong.
        """
        if not isinstance(d, Mapping):
            raise ToxicError("a toxic is a JSON object")
        kind = d.get("type")
        if kind not in TYPES:
            raise ToxicError(
                f"unknown toxic type {kind!r}", hint="toxic types: " + ", ".join(TYPES)
            )
        stream = d.get("stream") or "downstream"
        if stream not in STREAMS:
            raise ToxicError(f"stream must be downstream or upstream, not {stream!r}")
        toxicity = _number(d.get("toxicity", 1.0), "toxicity")
        if not 0.0 <= toxicity <= 1.0:
            raise ToxicError(f"toxicity must be between 0 and 1, not {toxicity:g}")
        raw = d.get("attributes") or {}
        if not isinstance(raw, Mapping):
            raise ToxicError("attributes must be a JSON object")
        unknown = sorted(set(raw) - set(ATTRIBUTES[kind]))
        if unknown:
            raise ToxicError(
                f"{kind} has no attribute {unknown[0]!r}",
                hint=f"{kind} takes: " + ", ".join(ATTRIBUTES[kind]),
            )
        attributes = {k: _number(raw.get(k, v), k) for k, v in ATTRIBUTES[kind].items()}
        _check_attributes(kind, attributes)
        route = d.get("route") or {}
        if not isinstance(route, Mapping):
            raise ToxicError('route must be {"app": APP_ID, "port": N}')
        app = app if app is not None else route.get("app")
        if not isinstance(app, str) or not app.startswith("/"):
            raise ToxicError(f"a toxic needs the app id of its route (like /web), not {app!r}")
        port = port if port is not None else route.get("port")
        if port is not None and (
            isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536
        ):
            raise ToxicError(f"route port must be a port number, not {port!r}")
        name = name if name is not None else d.get("name") or f"{slug(app)}_{kind}_{stream}"
        if not isinstance(name, str) or not _NAME.match(name):
            raise ToxicError(
                f"invalid toxic name {name!r}",
                hint="letters, digits and _ . @ : - (at most 100)",
            )
        return cls(
            name=name,
            type=kind,
            app=app,
            port=port,
            stream=stream,
            toxicity=toxicity,
            attributes=attributes,
            fault=fault,
            revert_at=revert_at,
        )


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ToxicError(f"{what} must be a number, not {value!r}")
    return float(value)


def _check_attributes(kind: str, a: dict[str, float]) -> None:
    if kind == "latency":
        if a["latency"] < 0 or a["jitter"] < 0:
            raise ToxicError("latency and jitter must be 0 or more (milliseconds)")
        if a["latency"] == 0 and a["jitter"] == 0:
            raise ToxicError("a latency toxic needs latency (or jitter) above 0 ms")
    elif kind == "bandwidth":
        if a["rate"] <= 0:
            raise ToxicError("a bandwidth toxic needs a rate above 0 KB/s")
    elif kind == "reset_peer":
        if a["timeout"] < 0:
            raise ToxicError("reset_peer's timeout must be 0 or more (milliseconds)")
    elif kind == "loss" and not 0.0 < a["probability"] <= 1.0:
        raise ToxicError(
            f"loss probability must be above 0 and at most 1, not {a['probability']:g}"
        )


# ---- the fault registry's toxics -------------------------------------------------------
def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def fault_toxics(fault: Mapping[str, Any]) -> list[Toxic]:
    """The toxics of one ``route`` fault of ``faults.json`` (``fault["route"]``).

    Each is named ``<fault id>-<type>`` (``-<n>`` appended to a repeated type).
    """
    spec = fault.get("route") or {}
    revert_at = fault.get("revert_at")
    out: list[Toxic] = []
    seen: dict[str, int] = {}
    for d in spec.get("toxics") or []:
        kind = str(d.get("type"))
        seen[kind] = seen.get(kind, 0) + 1
        name = f"{fault['id']}-{kind}" + (f"-{seen[kind]}" if seen[kind] > 1 else "")
        out.append(
            Toxic.parse(
                d,
                app=str(spec.get("app")),
                port=spec.get("port"),
                name=name,
                fault=str(fault["id"]),
                revert_at=_epoch(revert_at) if revert_at else None,
            )
        )
    return out


def registry_toxics(path: Path) -> list[Toxic]:
    """The toxics of the active ``route`` faults in a fault registry file (``faults.json``,
    schema version 1); none when the file is missing. A fault the kit cannot read is
    skipped (its toxics do not apply) rather than taking the others down with it."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return []
    out: list[Toxic] = []
    for f in data.get("faults", []):
        if f.get("kind") != "route" or f.get("reverted_at") is not None:
            continue
        try:
            out.extend(fault_toxics(f))
        except (ToxicError, KeyError, TypeError, ValueError):
            continue
    return out


# ---- the table the proxy consults --------------------------------------------------------
@dataclass
class ToxicStats:
    """What one toxic did (``/metrics``)."""

    connections: int = 0  #: connections it applied to (after toxicity)
    chunks: int = 0  #: chunks of data it acted on
    bytes: int = 0
    resets: int = 0  #: connections it reset
    delay_seconds: float = 0.0  #: latency and bandwidth: seconds data was held back


class ToxicTable:
    """Every toxic of one edge: the registry's (replaced as a whole) and the API's.

    Args:
        clock: wall-clock seconds, for ``revert_at`` (a due toxic stops applying even
            before the registry marks its fault reverted).
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._registry: dict[str, Toxic] = {}
        self._api: dict[str, Toxic] = {}
        self.stats: dict[str, ToxicStats] = {}
        #: Bumped on every change, so a connection re-reads its toxics only then.
        self.version = 0

    def all(self) -> list[Toxic]:
        """Every toxic, live or due, registry's first."""
        return [*self._registry.values(), *self._api.values()]

    def live(self) -> list[Toxic]:
        now = self.clock()
        return [t for t in self.all() if t.live(now)]

    def for_route(self, app_id: str, service_port: int) -> list[Toxic]:
        return [t for t in self.live() if t.matches(app_id, service_port)]

    def set_registry(self, toxics: list[Toxic]) -> bool:
        """Replace the registry's toxics; True when something changed."""
        new = {t.name: t for t in toxics}
        if new == self._registry:
            return False
        self._registry = new
        for name in new:
            self.stats.setdefault(name, ToxicStats())
        self.version += 1
        return True

    def add(self, toxic: Toxic) -> Toxic:
        """Add a toxic of the API (a name in use is refused, as Toxiproxy refuses it)."""
        if toxic.name in self._registry or toxic.name in self._api:
            raise ToxicError(f"toxic {toxic.name!r} already exists", hint="remove it first")
        self._api[toxic.name] = toxic
        self.stats[toxic.name] = ToxicStats()
        self.version += 1
        return toxic

    def remove(self, name: str) -> Toxic:
        """Remove a toxic of the API; a registry fault's toxic is refused, naming the fault."""
        if name in self._registry:
            fault = self._registry[name].fault
            raise ToxicError(
                f"toxic {name!r} belongs to fault {fault}",
                hint=f"`playground heal {self._registry[name].app}` reverts the fault",
            )
        if name not in self._api:
            raise KeyError(name)
        self.version += 1
        return self._api.pop(name)


# ---- one direction of one connection -------------------------------------------------------
class Link:
    """One direction (``stream``) of one connection through one route: applies its toxics.

    Args:
        table: the edge's toxics.
        app_id, service_port: the route the connection took.
        stream: ``downstream`` (server to client) or ``upstream``.
        rng: draws toxicity, loss and jitter (tests seed it).
        monotonic, sleep: the clock and the sleep to use (tests pass their own).
    """

    def __init__(
        self,
        table: ToxicTable,
        app_id: str,
        service_port: int,
        stream: str,
        rng: random.Random,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        self.table = table
        self.app_id = app_id
        self.service_port = service_port
        self.stream = stream
        self.rng = rng
        self.monotonic = monotonic
        self.sleep = sleep
        self._applies: dict[str, bool] = {}  # name -> drawn once per connection
        self._released = 0.0  # when the last chunk was passed on (chunks keep their order)
        self._bw_free = 0.0  # when the bandwidth toxic lets the next byte through
        self._version = -1
        self._toxics: list[Toxic] = []

    def _route_toxics(self) -> list[Toxic]:
        if self._version != self.table.version:
            self._version = self.table.version
            self._toxics = [
                t
                for t in self.table.all()
                if t.stream == self.stream and t.matches(self.app_id, self.service_port)
            ]
        return self._toxics

    def watched(self) -> bool:
        """Whether the route has toxics in this direction (applying or not, due or not)."""
        return bool(self._route_toxics())

    def toxics(self) -> list[Toxic]:
        """The route's toxics in this direction that apply to this connection now."""
        now = self.table.clock()
        return [t for t in self._route_toxics() if t.live(now) and self._draw(t)]

    def _draw(self, t: Toxic) -> bool:
        if t.name not in self._applies:
            p = t.toxicity * (t.attr("probability") if t.type == "loss" else 1.0)
            self._applies[t.name] = p >= 1.0 or self.rng.random() < p
            if self._applies[t.name]:
                self.table.stats.setdefault(t.name, ToxicStats()).connections += 1
        return self._applies[t.name]

    def _stat(self, t: Toxic) -> ToxicStats:
        return self.table.stats.setdefault(t.name, ToxicStats())

    async def deliver(
        self, data: bytes, arrived: float, write: Callable[[bytes], Awaitable[None]]
    ) -> None:
        """Pass ``data`` (read at ``arrived``, monotonic) on through ``write``, as the
        toxics say. Raises :class:`ResetConnection` when one resets the connection."""
        toxics = self.toxics()
        if not toxics:
            self._released = self.monotonic()
            await write(data)
            return
        for t in toxics:
            st = self._stat(t)
            st.chunks += 1
            st.bytes += len(data)
        for t in toxics:
            if t.type == "loss":
                self._stat(t).resets += 1
                raise ResetConnection(self.stream, t.name)
        for t in toxics:
            if t.type == "reset_peer":
                wait = arrived + t.attr("timeout") / 1000.0 - self.monotonic()
                if wait > 0:
                    await self.sleep(wait)
                self._stat(t).resets += 1
                raise ResetConnection(self.stream, t.name)
        delay = 0.0
        for t in toxics:
            if t.type == "latency":
                jitter = t.attr("jitter")
                d = t.attr("latency") + (self.rng.uniform(-jitter, jitter) if jitter else 0.0)
                d = max(d, 0.0) / 1000.0
                self._stat(t).delay_seconds += d
                delay += d
        due = max(arrived + delay, self._released)
        wait = due - self.monotonic()
        if wait > 0:
            await self.sleep(wait)
        rates = [t for t in toxics if t.type == "bandwidth"]
        if not rates:
            self._released = max(due, self.monotonic())
            await write(data)
            return
        slow = min(rates, key=lambda t: t.attr("rate"))
        rate = slow.attr("rate") * 1000.0  # bytes per second
        step = max(1, int(rate * SLICE))
        free = max(self._bw_free, self.monotonic())
        for i in range(0, len(data), step):
            piece = data[i : i + step]
            free += len(piece) / rate  # a slice leaves when the link would have carried it
            wait = free - self.monotonic()
            if wait > 0:
                self._stat(slow).delay_seconds += wait
                await self.sleep(wait)
            await write(piece)
        self._bw_free = free
        self._released = self.monotonic()
