"""The kit's own data plane: an asyncio TCP/HTTP proxy with marathon-lb's semantics.

It serves an :class:`~playground.edge.model.EdgeConfig`:

* every service gets a listener on its service port: ``tcp`` services relay bytes,
  ``http`` services read the request head first (for ``X-Forwarded-*`` and stickiness);
* the vhost listener (marathon-lb's ``marathon_http_in``, port 80 or a high port) routes
  HTTP by ``Host`` (and ``HAPROXY_{n}_PATH``) to the services that declare those vhosts;
  an unknown host gets HAProxy's own 503 page;
* balancing: ``roundrobin`` (smooth, weighted), ``leastconn``, ``source`` (client address
  hash), and for sticky services the ``mesosphere_server_id`` cookie marathon-lb inserts;
* only live servers get new connections (healthy by Marathon's health checks, not
  draining); a server that refuses a connection is taken out for :data:`PASSIVE_DOWN`
  seconds and the connection is retried on another (HAProxy's ``retries`` with
  ``option redispatch``), so a killed task costs at most the requests in flight on it;
* counters per frontend, backend and server in HAProxy's CSV columns (``/haproxy?stats;csv``);
* route faults: Toxiproxy's toxics (:mod:`playground.edge.toxics`) on the data relayed for
  a route, in either direction, applied to open connections too (no listener restarts).

What it does differently from HAProxy, on purpose: an HTTP connection is routed by its
first request and then relayed as a tunnel (keep-alive requests on one client connection
go to the same server; HAProxy re-routes each request). Applying a new configuration
opens and closes listeners; connections in progress are never cut.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import random
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from playground.edge.model import STICKY_COOKIE, EdgeConfig, Server, Service
from playground.edge.toxics import Link, ResetConnection, ToxicTable

log = logging.getLogger("playground.edge.proxy")

#: Seconds a server that refused a connection gets no new ones (passive health).
PASSIVE_DOWN = 1.0
#: Wall seconds to connect to a server before trying another (I/O: not scaled).
CONNECT_TIMEOUT = 1.0
#: Attempts per connection (HAProxy's ``retries 3`` plus the first try).
ATTEMPTS = 4
#: Largest request or response head read before routing (bytes).
MAX_HEAD = 64 * 1024
#: Wall seconds a client has to send its request head (HAProxy's ``timeout http-request``).
HEAD_TIMEOUT = 15.0
BUFFER = 256 * 1024
#: Chunks read ahead of a toxic holding data back (so each is stamped when it arrived).
READ_AHEAD = 16

NO_SERVER = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 107\r\ncache-control: no-cache\r\n"
    b"content-type: text/html\r\nconnection: close\r\n\r\n"
    b"<html><body><h1>503 Service Unavailable</h1>\n"
    b"No server is available to handle this request.\n</body></html>\n"
)
BAD_REQUEST = (
    b"HTTP/1.1 400 Bad request\r\ncontent-length: 90\r\ncache-control: no-cache\r\n"
    b"content-type: text/html\r\nconnection: close\r\n\r\n"
    b"<html><body><h1>400 Bad request</h1>\nYour browser sent an invalid request.\n</body></html>\n"
)

#: HAProxy's CSV columns, in order (as ``show stat`` prints them).
CSV_FIELDS = [
    "pxname",
    "svname",
    "qcur",
    "qmax",
    "scur",
    "smax",
    "slim",
    "stot",
    "bin",
    "bout",
    "dreq",
    "dresp",
    "ereq",
    "econ",
    "eresp",
    "wretr",
    "wredis",
    "status",
    "weight",
    "act",
    "bck",
    "chkfail",
    "chkdown",
    "lastchg",
    "downtime",
    "qlimit",
    "pid",
    "iid",
    "sid",
    "throttle",
    "lbtot",
    "tracked",
    "type",
    "rate",
    "rate_lim",
    "rate_max",
    "check_status",
    "check_code",
    "check_duration",
    "hrsp_1xx",
    "hrsp_2xx",
    "hrsp_3xx",
    "hrsp_4xx",
    "hrsp_5xx",
    "hrsp_other",
    "hanafail",
    "req_rate",
    "req_rate_max",
    "req_tot",
    "cli_abrt",
    "srv_abrt",
    "comp_in",
    "comp_out",
    "comp_byp",
    "comp_rsp",
    "lastsess",
    "last_chk",
    "last_agt",
    "qtime",
    "ctime",
    "rtime",
    "ttime",
]


@dataclass
class Counters:
    """One row of HAProxy's stats: a frontend, a server or a backend."""

    scur: int = 0
    smax: int = 0
    stot: int = 0
    bin: int = 0
    bout: int = 0
    econ: int = 0
    eresp: int = 0
    ereq: int = 0
    wretr: int = 0
    wredis: int = 0
    lbtot: int = 0
    hrsp_5xx: int = 0
    cli_abrt: int = 0
    srv_abrt: int = 0
    down_until: float = 0.0
    lastchg: float = field(default_factory=time.monotonic)
    lastsess: float | None = None

    def open(self) -> None:
        self.scur += 1
        self.stot += 1
        self.smax = max(self.smax, self.scur)
        self.lastsess = time.monotonic()

    def close(self) -> None:
        self.scur = max(0, self.scur - 1)


@dataclass
class _Pool:
    """Balancing state of one backend (lives across configuration updates)."""

    current: dict[str, float] = field(default_factory=dict)  # smooth-WRR weights


def _client_ip(writer: asyncio.StreamWriter) -> str:
    peer = writer.get_extra_info("peername")
    return str(peer[0]) if peer else ""


def _tune(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST (``SO_LINGER`` 0), discarding what is unsent."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def _feed(src: asyncio.StreamReader, queue: asyncio.Queue[tuple[float, bytes]]) -> None:
    """Read ``src`` ahead into ``queue``, each chunk stamped when it arrived; b"" ends it."""
    try:
        while True:
            data = await src.read(BUFFER)
            await queue.put((time.monotonic(), data))
            if not data:
                return
    except (ConnectionError, OSError):
        await queue.put((time.monotonic(), b""))


class Proxy:
    """Listeners, balancing, relaying and counters for one :class:`EdgeConfig`.

    Args:
        host: the address the edge listens on (the public agent's address).
        http_port: the vhost listener's port.
        on_event: called with ``(kind, details)`` for notable things (a port that could
            not be bound, a server taken out after a refused connection).
        reuse_port: bind with ``SO_REUSEPORT``, so several processes serve one address and
            the kernel spreads connections across them (the VIP balancer on every master).
        rng: draws the toxics' toxicity, loss and jitter (tests seed it).
    """

    def __init__(
        self,
        host: str,
        http_port: int | None,
        on_event: Callable[[str, dict[str, Any]], None] | None = None,
        reuse_port: bool = False,
        rng: random.Random | None = None,
    ) -> None:
        self.host = host
        self.reuse_port = reuse_port
        self.http_port = http_port
        self.config = EdgeConfig(group="external")
        self.on_event = on_event or (lambda kind, details: None)
        self._listeners: dict[int, asyncio.base_events.Server] = {}
        self._listener_kind: dict[int, str] = {}
        self.bind_errors: dict[int, str] = {}
        self.frontends: dict[str, Counters] = {}
        self.backends: dict[str, Counters] = {}
        self.servers: dict[tuple[str, str], Counters] = {}
        self._pools: dict[str, _Pool] = {}
        self._by_port: dict[int, Service] = {}
        self._by_backend: dict[str, Service] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.started = time.time()
        self.toxics = ToxicTable()
        self.rng = rng or random.Random()

    # ---- configuration --------------------------------------------------------------
    async def apply(self, config: EdgeConfig) -> None:
        """Serve ``config``: open listeners of new ports, close those of removed ones."""
        self.config = config
        self._by_port = {s.service_port: s for s in config.services}
        self._by_backend = {s.backend: s for s in config.services}
        wanted: dict[int, str] = {port: "service" for port in self._by_port}
        if self.http_port is not None:
            wanted[self.http_port] = "vhost"
        for port in [p for p in self._listeners if p not in wanted]:
            server = self._listeners.pop(port)
            self._listener_kind.pop(port, None)
            server.close()
        for port, kind in wanted.items():
            if port in self._listeners:
                continue
            try:
                server = await asyncio.start_server(
                    self._make_handler(port, kind),
                    self.host,
                    port,
                    reuse_address=True,
                    reuse_port=self.reuse_port or None,
                    backlog=1024,
                    limit=MAX_HEAD,
                )
            except OSError as exc:
                if self.bind_errors.get(port) != str(exc):
                    self.on_event("bind-failed", {"port": port, "error": str(exc)})
                self.bind_errors[port] = str(exc)
                continue
            self.bind_errors.pop(port, None)
            self._listeners[port] = server
            self._listener_kind[port] = kind
        for svc in config.services:
            self.backends.setdefault(svc.backend, Counters())
            self.frontends.setdefault(svc.backend, Counters())
            for s in svc.servers:
                self.servers.setdefault((svc.backend, s.name), Counters())
        if self.http_port is not None:
            self.frontends.setdefault("marathon_http_in", Counters())

    def listening(self) -> list[int]:
        return sorted(self._listeners)

    async def close(self) -> None:
        for server in self._listeners.values():
            server.close()
        self._listeners.clear()
        for t in list(self._tasks):
            t.cancel()

    # ---- balancing ------------------------------------------------------------------
    def candidates(self, svc: Service) -> list[Server]:
        """Servers that may take a new connection now (not passively down)."""
        now = time.monotonic()
        out = []
        for s in svc.live_servers:
            c = self.servers.get((svc.backend, s.name))
            if c is not None and c.down_until > now:
                continue
            out.append(s)
        return out

    def pick(
        self, svc: Service, client_ip: str, cookie: str | None, tried: set[str]
    ) -> Server | None:
        servers = [s for s in self.candidates(svc) if s.name not in tried and s.weight > 0]
        if not servers:
            # Every live server refused lately: try them anyway rather than answer 503
            # (a task that was still starting may listen by now).
            servers = [s for s in svc.live_servers if s.name not in tried and s.weight > 0]
        if not servers:
            return None
        if svc.sticky and cookie:
            for s in servers:
                if s.name == cookie:
                    return s
        if svc.balance == "source":
            total = sum(s.weight for s in servers)
            h = int.from_bytes(hashlib.blake2s(client_ip.encode(), digest_size=8).digest(), "big")
            k = h % total
            for s in sorted(servers, key=lambda s: s.name):
                if k < s.weight:
                    return s
                k -= s.weight
            return servers[-1]
        if svc.balance == "leastconn":
            best = min(
                (self.servers.setdefault((svc.backend, s.name), Counters()).scur / s.weight)
                for s in servers
            )
            servers = [
                s for s in servers if self.servers[(svc.backend, s.name)].scur / s.weight == best
            ]
            if len(servers) == 1:
                return servers[0]
        # smooth weighted round robin (nginx's): fair and deterministic
        pool = self._pools.setdefault(svc.backend, _Pool())
        total = 0
        best_s: Server | None = None
        for s in servers:
            cur = pool.current.get(s.name, 0.0) + s.weight
            pool.current[s.name] = cur
            total += s.weight
            if best_s is None or cur > pool.current[best_s.name]:
                best_s = s
        assert best_s is not None
        pool.current[best_s.name] -= total
        return best_s

    async def connect(
        self, svc: Service, client_ip: str, cookie: str | None = None
    ) -> tuple[Server, asyncio.StreamReader, asyncio.StreamWriter] | None:
        """Connect to a server of ``svc``, retrying others when one refuses."""
        tried: set[str] = set()
        backend = self.backends.setdefault(svc.backend, Counters())
        for attempt in range(ATTEMPTS):
            server = self.pick(svc, client_ip, cookie, tried)
            if server is None:
                return None
            tried.add(server.name)
            counters = self.servers.setdefault((svc.backend, server.name), Counters())
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(server.host, server.port, limit=MAX_HEAD),
                    CONNECT_TIMEOUT,
                )
            except (OSError, TimeoutError) as exc:
                counters.econ += 1
                backend.econ += 1
                if attempt:
                    backend.wredis += 1
                counters.down_until = time.monotonic() + PASSIVE_DOWN
                counters.lastchg = time.monotonic()
                self.on_event(
                    "server-refused",
                    {"backend": svc.backend, "server": server.name, "error": str(exc) or "timeout"},
                )
                backend.wretr += 1
                continue
            _tune(writer)
            counters.lbtot += 1
            backend.lbtot += 1
            return server, reader, writer
        return None

    # ---- connections ----------------------------------------------------------------
    def _make_handler(
        self, port: int, kind: str
    ) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Any]:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            if task is not None:
                self._tasks.add(task)  # type: ignore[arg-type]
            _tune(writer)
            try:
                if kind == "vhost":
                    await self._serve_http(reader, writer, port, None)
                else:
                    svc = self._by_port.get(port)
                    if svc is None:
                        return
                    if svc.mode == "http":
                        await self._serve_http(reader, writer, port, svc)
                    else:
                        await self._serve_tcp(reader, writer, svc)
            except (ConnectionError, asyncio.IncompleteReadError, TimeoutError):
                pass
            except asyncio.CancelledError:
                pass
            except Exception:  # never let one connection take a listener down
                log.exception("connection on port %d failed", port)
            finally:
                with contextlib.suppress(Exception):
                    writer.close()
                if task is not None:
                    self._tasks.discard(task)  # type: ignore[arg-type]

        return handle

    async def _serve_tcp(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, svc: Service
    ) -> None:
        front = self.frontends.setdefault(svc.backend, Counters())
        front.open()
        try:
            conn = await self.connect(svc, _client_ip(writer))
            if conn is None:
                self.backends.setdefault(svc.backend, Counters()).econ += 1
                return
            server, up_reader, up_writer = conn
            await self._relay(svc, server, reader, writer, up_reader, up_writer, front)
        finally:
            front.close()

    def route(self, host: str, path: str) -> Service | None:
        """The service for a request on the vhost listener (marathon-lb's ACL order:
        vhost and path first, then vhost alone)."""
        host = host.split(":", 1)[0].rstrip(".").lower()
        best: Service | None = None
        best_len = -1
        for svc in self.config.http_services():
            if host not in (v.lower() for v in svc.vhosts):
                continue
            if svc.path:
                if path.startswith(svc.path) and len(svc.path) > best_len:
                    best, best_len = svc, len(svc.path)
            elif best_len < 0:
                best, best_len = svc, 0
        return best

    async def _serve_http(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        port: int,
        fixed: Service | None,
    ) -> None:
        front_name = "marathon_http_in" if fixed is None else fixed.backend
        front = self.frontends.setdefault(front_name, Counters())
        front.open()
        try:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT)
            except (asyncio.LimitOverrunError, asyncio.IncompleteReadError, TimeoutError):
                front.ereq += 1
                return
            head_at = time.monotonic()
            parsed = parse_head(head)
            if parsed is None:
                front.ereq += 1
                writer.write(BAD_REQUEST)
                return
            _method, path, headers = parsed
            svc = fixed or self.route(headers.get("host", ""), path)
            if svc is None:
                front.hrsp_5xx += 1
                writer.write(NO_SERVER)
                return
            cookie = cookie_value(headers.get("cookie", ""), STICKY_COOKIE) if svc.sticky else None
            conn = await self.connect(svc, _client_ip(writer), cookie)
            if conn is None:
                front.hrsp_5xx += 1
                self.backends.setdefault(svc.backend, Counters()).hrsp_5xx += 1
                writer.write(NO_SERVER)
                return
            server, up_reader, up_writer = conn
            set_cookie = svc.sticky and cookie != server.name
            await self._relay(
                svc,
                server,
                reader,
                writer,
                up_reader,
                up_writer,
                front,
                sticky_name=server.name if set_cookie else None,
                sent=len(head),
                first=(head_at, forwarded_head(head, _client_ip(writer), port)),
            )
        finally:
            front.close()

    async def _relay(
        self,
        svc: Service,
        server: Server,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        up_reader: asyncio.StreamReader,
        up_writer: asyncio.StreamWriter,
        front: Counters,
        sticky_name: str | None = None,
        sent: int = 0,
        first: tuple[float, bytes] | None = None,
    ) -> None:
        """Relay both directions until the server's side ends, through the route's toxics.

        ``first``: data for the server before the client's (the forwarded request head)
        and when it arrived.
        """
        counters = self.servers.setdefault((svc.backend, server.name), Counters())
        backend = self.backends.setdefault(svc.backend, Counters())
        counters.open()
        backend.open()
        counters.bin += sent
        backend.bin += sent
        front.bin += sent

        rows = (counters, backend, front)
        up_link = Link(self.toxics, svc.app_id, svc.service_port, "upstream", self.rng)
        down_link = Link(self.toxics, svc.app_id, svc.service_port, "downstream", self.rng)

        def writer_of(dst: asyncio.StreamWriter) -> Callable[[bytes], Any]:
            async def write(data: bytes) -> None:
                dst.write(data)
                if dst.transport.get_write_buffer_size() > BUFFER:
                    await dst.drain()

            return write

        async def pump(
            src: asyncio.StreamReader, dst: asyncio.StreamWriter, field: str, link: Link
        ) -> None:
            """Copy ``src`` to ``dst`` through ``link`` until EOF, counting bytes in
            ``field`` of each row. While the route has toxics in this direction, chunks
            are read ahead and stamped on arrival, so a delay holds each chunk back
            from when it came, not from when the previous one left."""
            write = writer_of(dst)
            queue: asyncio.Queue[tuple[float, bytes]] | None = None
            feeder: asyncio.Future[None] | None = None
            try:
                while True:
                    if queue is None and link.watched():
                        queue = asyncio.Queue(READ_AHEAD)
                        feeder = asyncio.ensure_future(_feed(src, queue))
                    if queue is not None:
                        arrived, data = await queue.get()
                    else:
                        data = await src.read(BUFFER)
                        arrived = time.monotonic()
                    if not data:
                        break
                    for row in rows:
                        setattr(row, field, getattr(row, field) + len(data))
                    await link.deliver(data, arrived, write)
            finally:
                if feeder is not None:
                    feeder.cancel()
                    with contextlib.suppress(BaseException):
                        await feeder

        def reset(exc: ResetConnection) -> None:
            """RST the side the stream flows to; close the other."""
            self.on_event("toxic-reset", {"backend": svc.backend, "toxic": exc.toxic})
            to, other = (writer, up_writer) if exc.stream == "downstream" else (up_writer, writer)
            _reset(to)
            other.transport.abort()

        async def upstream() -> None:
            try:
                if first is not None:
                    await up_link.deliver(first[1], first[0], writer_of(up_writer))
                await pump(reader, up_writer, "bin", up_link)
            except ResetConnection as exc:
                reset(exc)
            finally:
                with contextlib.suppress(Exception):
                    if up_writer.can_write_eof():
                        up_writer.write_eof()

        async def downstream() -> None:
            try:
                if sticky_name is not None:
                    try:
                        head = await up_reader.readuntil(b"\r\n\r\n")
                    except (asyncio.LimitOverrunError, asyncio.IncompleteReadError):
                        head = b""
                    if head:
                        await down_link.deliver(
                            add_cookie(head, sticky_name), time.monotonic(), writer_of(writer)
                        )
                await pump(up_reader, writer, "bout", down_link)
            except ResetConnection as exc:
                reset(exc)
                return
            with contextlib.suppress(Exception):
                await writer.drain()

        up = asyncio.ensure_future(upstream())
        try:
            await downstream()
        except (ConnectionError, asyncio.IncompleteReadError):
            counters.srv_abrt += 1
        finally:
            up.cancel()
            with contextlib.suppress(BaseException):
                await up
            counters.close()
            backend.close()
            with contextlib.suppress(Exception):
                up_writer.close()

    # ---- stats ----------------------------------------------------------------------
    def server_status(self, svc: Service, s: Server) -> str:
        c = self.servers.get((svc.backend, s.name))
        if s.draining:
            return "DRAIN" if s.healthy else "MAINT"
        if not s.healthy:
            return "MAINT"
        if c is not None and c.down_until > time.monotonic():
            return "DOWN"
        return "UP"

    def stats_rows(self) -> list[dict[str, Any]]:
        """HAProxy-style stats rows: frontends, then each backend's servers and totals."""
        now = time.monotonic()
        rows: list[dict[str, Any]] = []

        def row(px: str, sv: str, c: Counters, **kw: Any) -> dict[str, Any]:
            r: dict[str, Any] = dict.fromkeys(CSV_FIELDS, "")
            r.update(
                pxname=px,
                svname=sv,
                scur=c.scur,
                smax=c.smax,
                stot=c.stot,
                bin=c.bin,
                bout=c.bout,
                econ=c.econ if sv != "FRONTEND" else "",
                ereq=c.ereq if sv == "FRONTEND" else "",
                lbtot=c.lbtot if sv != "FRONTEND" else "",
                hrsp_5xx=c.hrsp_5xx,
                pid=1,
                lastchg=int(now - c.lastchg),
                lastsess=int(now - c.lastsess) if c.lastsess is not None else -1,
            )
            r.update(kw)
            return r

        if self.http_port is not None:
            rows.append(
                row(
                    "marathon_http_in",
                    "FRONTEND",
                    self.frontends.get("marathon_http_in", Counters()),
                    status="OPEN",
                    type=0,
                )
            )
        for svc in sorted(self.config.services, key=lambda s: s.service_port):
            rows.append(
                row(
                    svc.backend,
                    "FRONTEND",
                    self.frontends.get(svc.backend, Counters()),
                    status="OPEN" if svc.service_port in self._listeners else "STOP",
                    type=0,
                )
            )
        for svc in sorted(self.config.services, key=lambda s: s.service_port):
            act = 0
            for s in svc.servers:
                st = self.server_status(svc, s)
                act += st == "UP"
                rows.append(
                    row(
                        svc.backend,
                        s.name,
                        self.servers.get((svc.backend, s.name), Counters()),
                        status=st,
                        weight=s.weight,
                        act=1,
                        bck=0,
                        type=2,
                        check_status="L4OK" if st == "UP" else "",
                    )
                )
            rows.append(
                row(
                    svc.backend,
                    "BACKEND",
                    self.backends.get(svc.backend, Counters()),
                    status="UP" if act else "DOWN",
                    weight=sum(s.weight for s in svc.servers if self.server_status(svc, s) == "UP"),
                    act=act,
                    bck=0,
                    type=1,
                )
            )
        return rows

    def stats_csv(self) -> str:
        lines = ["# " + ",".join(CSV_FIELDS) + ","]
        for r in self.stats_rows():
            lines.append(",".join(str(r[f]) for f in CSV_FIELDS) + ",")
        return "\n".join(lines) + "\n"


# ---- HTTP helpers -----------------------------------------------------------------------
def parse_head(head: bytes) -> tuple[str, str, dict[str, str]] | None:
    """``(method, path, headers)`` of a request head (header names lower-cased)."""
    try:
        text = head.decode("latin-1")
    except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes every byte
        return None
    lines = text.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        return None
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            return None
        headers[name.strip().lower()] = value.strip()
    return parts[0], parts[1], headers


def forwarded_head(head: bytes, client_ip: str, port: int) -> bytes:
    """The request head with marathon-lb's ``X-Forwarded-*`` headers added."""
    extra = (
        f"X-Forwarded-For: {client_ip}\r\nX-Forwarded-Port: {port}\r\nX-Forwarded-Proto: http\r\n"
    ).encode()
    return head[:-2] + extra + b"\r\n"


def add_cookie(head: bytes, server_name: str) -> bytes:
    """A response head with marathon-lb's sticky cookie set to ``server_name``."""
    return head[:-2] + f"Set-Cookie: {STICKY_COOKIE}={server_name}; path=/\r\n".encode() + b"\r\n"


def cookie_value(header: str, name: str) -> str | None:
    for part in header.split(";"):
        k, sep, v = part.strip().partition("=")
        if sep and k == name:
            return v
    return None
