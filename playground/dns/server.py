"""The DNS beside each master (plays mesos-dns): DNS over UDP and TCP, its HTTP API.

:class:`Resolver` answers DNS messages from the current :class:`RecordSet` as mesos-dns's
resolver does: authoritative answers for the domain (A, AAAA, SRV with the targets' A
records as additional records, SOA and NS in the authority section, ANY), answers
shuffled, ``NXDOMAIN`` with the SOA for a name it does not know, ``NOERROR`` without
answers for a known name of another type and for an unknown SRV name, and ``REFUSED``
outside the domain (``externalon`` is false: nothing is forwarded off the machine).

:class:`DnsService` runs it on asyncio (a datagram endpoint, a TCP server and the aiohttp
HTTP API, no threads) and refreshes the records from the leading master's
``/master/state`` every ``refreshSeconds`` of cluster time, keeping the last good
records while no master answers, as mesos-dns does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import struct
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin

from aiohttp import web
from dnslib import AAAA as AAAA_RDATA
from dnslib import NS, QTYPE, RCODE, RR, SOA, SRV, BimapError, DNSError, DNSLabelError, DNSRecord
from dnslib import A as A_RDATA

from playground.cluster import addresses as addr_mod
from playground.cluster import network
from playground.cluster.httpserver import json_response
from playground.dns import records
from playground.dns.config import URL, VERSION, DnsConfig
from playground.dns.records import RecordSet
from playground.l4lb.vips import L4LB_DOMAIN

#: The zone named VIPs are answered in (``<name>.marathon.l4lb.thisdcos.directory``).
VIP_ZONE = L4LB_DOMAIN

if TYPE_CHECKING:
    import aiohttp

    from playground.cluster.node import NodeContext

log = logging.getLogger("playground.dns")

#: I/O timeouts are not scaled: they protect against a hung peer, not model a timer.
IO_TIMEOUT = 5.0
#: Before the first good state, the records are fetched again this often (wall seconds).
FIRST_LOAD_RETRY = 0.5
#: A TCP client silent this long is disconnected (wall seconds).
TCP_IDLE = 10.0
UDP_MAX = 512
TCP_MAX = 65535


# --------------------------------------------------------------------------------------
# Answering
# --------------------------------------------------------------------------------------


def _clean_wild(name: str) -> str:
    return name.replace(".*", "")


class Resolver:
    """Answers DNS questions for the domain from the current record set."""

    def __init__(self, config: DnsConfig, rng: random.Random | None = None) -> None:
        self.config = config
        self.records = RecordSet()
        self.rng = rng or random.Random()
        self.loaded = False
        #: Named VIPs (``<name>.marathon.l4lb.thisdcos.directory`` -> IP), set by the VIP
        #: balancer beside the same master (DC/OS's dcos-dns answers this zone).
        self.vips: dict[str, str] = {}

    def set_vips(self, names: dict[str, str]) -> None:
        self.vips = {k.lower().rstrip("."): v for k, v in names.items()}

    def set_records(self, rs: RecordSet) -> None:
        """Serve ``rs`` from now on; the SOA serial becomes the time of this reload."""
        self.records = rs
        self.config.soa_serial = int(time.time())
        self.loaded = True

    def in_domain(self, name: str) -> bool:
        zones = (self.config.zone, VIP_ZONE + ".")
        return any(name == z or name.endswith("." + z) for z in zones)

    def _vip_answer(self, request: DNSRecord, qname: str, name: str) -> DNSRecord:
        """A named VIP's address (A), NODATA for other types, NXDOMAIN for no such VIP."""
        reply = request.reply(ra=0, aa=1)
        ip = self.vips.get(name.rstrip("."))
        if ip is None:
            reply.header.rcode = RCODE.NXDOMAIN
        elif request.q.qtype in (QTYPE.A, QTYPE.ANY):
            reply.add_answer(self._a(qname, ip))
        if not reply.rr:
            reply.add_auth(self._soa(qname))
        return reply

    # ---- resource records ---------------------------------------------------------------
    def _a(self, name: str, ip: str) -> RR:
        rdata = AAAA_RDATA(ip) if records.kind_of(ip) == records.AAAA else A_RDATA(ip)
        rtype = QTYPE.AAAA if records.kind_of(ip) == records.AAAA else QTYPE.A
        return RR(name, rtype, ttl=self.config.ttl, rdata=rdata)

    def _soa(self, name: str) -> RR:
        c = self.config
        # mesos-dns puts its TTL in the SOA's minimum field (not SOAMinttl).
        times = (c.soa_serial, c.soa_refresh, c.soa_retry, c.soa_expire, c.ttl)
        return RR(name, QTYPE.SOA, ttl=c.ttl, rdata=SOA(c.soa_mname, c.soa_rname, times))

    def _ns(self, name: str) -> RR:
        return RR(name, QTYPE.NS, ttl=self.config.ttl, rdata=NS(self.config.soa_mname))

    def _srv(self, qname: str, name: str, reply: DNSRecord) -> None:
        added: set[str] = set()
        rs = self.records
        for value in rs.get(records.SRV, name):
            hp = records.split_hostport(value)
            if hp is None or not hp[1].isdigit():
                continue
            host, port = hp
            reply.add_answer(
                RR(
                    qname,
                    QTYPE.SRV,
                    ttl=self.config.ttl,
                    rdata=SRV(0, self.config.srv_record_default_weight, int(port), host),
                )
            )
            if host in added:
                continue
            for kind in (records.A, records.AAAA):
                ip = rs.first(kind, host)
                if ip is not None:
                    reply.add_ar(self._a(host, ip))
                    added.add(host)

    def _addresses(self, name: str, kind: str, reply: DNSRecord) -> None:
        for ip in self.records.get(kind, name):
            reply.add_answer(self._a(name, ip))

    # ---- messages ---------------------------------------------------------------------
    def answer(self, request: DNSRecord) -> DNSRecord:
        """The reply to ``request`` (a parsed DNS message)."""
        if not request.questions:
            reply = request.reply(ra=0, aa=0)
            reply.header.rcode = RCODE.FORMERR
            return reply
        q = request.q
        qname = str(q.qname)
        name = _clean_wild(qname.lower())
        if not self.in_domain(name):
            # externalon is false: no resolver to forward to, so mesos-dns refuses.
            reply = request.reply(ra=0, aa=0)
            reply.header.rcode = RCODE.REFUSED
            return reply
        if name.rstrip(".") == VIP_ZONE or name.rstrip(".").endswith("." + VIP_ZONE):
            return self._vip_answer(request, qname, name)
        reply = request.reply(ra=int(self.config.recurse_on), aa=1)
        qtype = q.qtype
        if qtype == QTYPE.SRV:
            self._srv(qname, name, reply)
        elif qtype == QTYPE.A:
            self._addresses(name, records.A, reply)
        elif qtype == QTYPE.AAAA:
            self._addresses(name, records.AAAA, reply)
        elif qtype == QTYPE.SOA:
            reply.add_auth(self._soa(qname))
        elif qtype == QTYPE.NS:
            reply.add_auth(self._ns(qname))
        elif qtype == QTYPE.ANY:
            self._srv(qname, name, reply)
            self._addresses(name, records.A, reply)
            self._addresses(name, records.AAAA, reply)
            reply.add_auth(self._soa(qname))
            reply.add_auth(self._ns(qname))
        if reply.rr:
            self.rng.shuffle(reply.rr)
        elif qtype not in (QTYPE.SOA, QTYPE.NS, QTYPE.SRV):
            # NXDOMAIN, unless the name has records of another type (NODATA).
            if not self.records.has_name(name):
                reply.header.rcode = RCODE.NXDOMAIN
            reply.add_auth(self._soa(qname))
        return reply

    def handle(self, data: bytes, udp: bool = True) -> bytes | None:
        """The packed reply to a packed DNS message (None for one that cannot be parsed)."""
        try:
            request = DNSRecord.parse(data)
        except (DNSError, DNSLabelError, BimapError, struct.error, ValueError, IndexError) as exc:
            log.debug("dropping a malformed DNS message: %s", exc)
            return None
        if request.header.qr:
            return None  # a response, not a question
        reply = self.answer(request)
        return self._pack(reply, self._max_size(request, udp))

    @staticmethod
    def _max_size(request: DNSRecord, udp: bool) -> int:
        if not udp:
            return TCP_MAX
        for rr in request.ar:
            if rr.rtype == QTYPE.OPT:
                return max(UDP_MAX, int(rr.rclass))
        return UDP_MAX

    @staticmethod
    def _pack(reply: DNSRecord, max_size: int) -> bytes:
        """Pack, dropping additional records and then answers until it fits (TC not set,
        as mesos-dns's default ``SetTruncateBit`` false)."""
        data: bytes = reply.pack()
        if len(data) <= max_size:
            return data
        reply.ar = []
        data = reply.pack()
        while len(data) > max_size and reply.rr:
            reply.rr.pop()
            data = reply.pack()
        return data


# --------------------------------------------------------------------------------------
# Transports
# --------------------------------------------------------------------------------------


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, resolver: Resolver) -> None:
        self.resolver = resolver
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            out = self.resolver.handle(data, udp=True)
        except Exception:
            log.exception("answering a DNS question failed")
            return
        if out is not None and self.transport is not None:
            self.transport.sendto(out, addr)


async def _tcp_client(
    resolver: Resolver, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    try:
        while True:
            head = await asyncio.wait_for(reader.readexactly(2), TCP_IDLE)
            (size,) = struct.unpack("!H", head)
            data = await asyncio.wait_for(reader.readexactly(size), TCP_IDLE)
            out = resolver.handle(data, udp=False)
            if out is None:
                break
            writer.write(struct.pack("!H", len(out)) + out)
            await writer.drain()
    except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
        pass
    except Exception:
        log.exception("answering a DNS question over TCP failed")
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


# --------------------------------------------------------------------------------------
# HTTP API
# --------------------------------------------------------------------------------------


def _fqdn_param(value: str) -> str:
    dom = _clean_wild(value.lower())
    return dom if dom.endswith(".") else dom + "."


def http_app(resolver: Resolver) -> web.Application:
    """mesos-dns's HTTP interface (``http.md``) over ``resolver``'s records."""

    async def version(_: web.Request) -> web.Response:
        return json_response({"Service": "Mesos-DNS", "URL": URL, "Version": VERSION})

    async def config(_: web.Request) -> web.Response:
        return json_response(resolver.config.to_json())

    async def hosts(request: web.Request) -> web.Response:
        dom = _fqdn_param(request.match_info["host"])
        rs = resolver.records
        out = [{"host": dom, "ip": ip} for ip in rs.get(records.A, dom) + rs.get(records.AAAA, dom)]
        return json_response(out or [{"host": "", "ip": ""}])

    async def ports(_: web.Request) -> web.Response:
        return web.Response(status=501, text="To be implemented...")

    async def services(request: web.Request) -> web.Response:
        service = request.match_info["service"]
        dom = _fqdn_param(service)
        rs = resolver.records
        out: list[dict[str, str]] = []
        for value in rs.get(records.SRV, dom):
            hp = records.split_hostport(value)
            if hp is None:
                continue
            host, port = hp
            for kind in (records.A, records.AAAA):
                ip = rs.first(kind, host)
                if ip is not None:
                    out.append({"service": service, "host": host, "ip": ip, "port": port})
        return json_response(out or [{"service": "", "host": "", "ip": "", "port": ""}])

    async def enumerate_(_: web.Request) -> web.Response:
        return json_response(resolver.records.enumerate())

    app = web.Application()
    r = app.router
    r.add_get("/v1/version", version)
    r.add_get("/v1/config", config)
    r.add_get("/v1/hosts/{host}", hosts)
    r.add_get("/v1/hosts/{host}/ports", ports)
    r.add_get("/v1/services/{service}", services)
    if resolver.config.enumeration_on:
        r.add_get("/v1/enumerate", enumerate_)
    return app


# --------------------------------------------------------------------------------------
# The service
# --------------------------------------------------------------------------------------


class DnsService:
    """One mesos-dns: DNS on UDP and TCP, the HTTP API and the refresh loop.

    Args:
        config: the configuration (listener, ports, masters, domain, ...).
        state_urls: ``/master/state`` URLs to try in order; a master that does not lead
            answers 307 to the leader, which is followed once.
        refresh_wall: wall seconds between two refreshes (``refreshSeconds`` scaled).
        name: the node it runs on, for logs and the ``Playground-Node`` header.
    """

    def __init__(
        self,
        config: DnsConfig,
        state_urls: list[str],
        refresh_wall: float,
        name: str = "dns",
    ) -> None:
        self.config = config
        self.resolver = Resolver(config)
        self.state_urls = state_urls
        self.refresh_wall = refresh_wall
        self.name = name
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._http: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._failing = False

    @classmethod
    def beside_master(cls, ctx: NodeContext) -> DnsService:
        """The DNS of master node ``ctx`` (its address, the cluster's masters, scaled time)."""
        masters = ctx.master_addresses()
        index = list(masters).index(ctx.name)
        dns_port, http_port = addr_mod.dns_ports(ctx.cluster.get("addressing") or {}, index)
        host = ctx.address.host
        config = DnsConfig(
            masters=[a.hostport for a in masters.values()],
            listener=host,
            port=dns_port,
            http_listener=host,
            http_port=http_port,
        )
        own = ctx.address.url
        urls = [own] + [a.url for n, a in masters.items() if n != ctx.name]
        return cls(
            config,
            [f"{u}/master/state" for u in urls],
            ctx.time.wall(config.refresh_seconds),
            name=ctx.name,
        )

    # ---- lifecycle ----------------------------------------------------------------------
    async def start(self) -> None:
        """Bind DNS (UDP and TCP) and the HTTP API; raises OSError when a port is taken."""
        loop = asyncio.get_running_loop()
        c = self.config
        try:
            if c.dns_on:
                self._udp, _ = await loop.create_datagram_endpoint(
                    lambda: _UdpProtocol(self.resolver), local_addr=(c.listener, c.port)
                )
                self._tcp = await asyncio.start_server(
                    lambda r, w: _tcp_client(self.resolver, r, w),
                    c.listener,
                    c.port,
                    reuse_address=True,
                )
            if c.http_on:
                runner = web.AppRunner(
                    http_app(self.resolver), access_log=None, handle_signals=False
                )
                await runner.setup()
                self._http = runner
                await web.TCPSite(runner, c.http_listener, c.http_port, reuse_address=True).start()
        except OSError:
            await self.close()
            raise
        log.info(
            "mesos-dns listening on %s:%d (udp, tcp), HTTP API on http://%s:%d",
            c.listener,
            c.port,
            c.http_listener,
            c.http_port,
        )

    async def close(self) -> None:
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        if self._tcp is not None:
            self._tcp.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._tcp.wait_closed(), 1.0)
            self._tcp = None
        if self._http is not None:
            await self._http.cleanup()
            self._http = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    # ---- refreshing ---------------------------------------------------------------------
    @property
    def session(self) -> aiohttp.ClientSession:
        import aiohttp

        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=IO_TIMEOUT),
                # Partition-aware: a master cut off from the leader serves stale records.
                trace_configs=network.trace_configs(),
                headers={"User-Agent": "Mesos-DNS", "Playground-Node": self.name},
            )
        return self._session

    async def _get_state(self, url: str) -> dict[str, Any]:
        import aiohttp

        for _ in range(2):  # the URL, then the leader it redirects to
            async with self.session.get(url, allow_redirects=False) as resp:
                if resp.status in (301, 302, 303, 307, 308) and "Location" in resp.headers:
                    url = urljoin(url, resp.headers["Location"])
                    continue
                if resp.status != 200:
                    raise aiohttp.ClientResponseError(
                        resp.request_info, (), status=resp.status, message=resp.reason or ""
                    )
                data = await resp.json(content_type=None)
                if not isinstance(data, dict):
                    raise ValueError("state is not a JSON object")
                return data
        raise ValueError("redirected more than once")

    async def fetch_state(self) -> dict[str, Any]:
        """The leading master's state, from the first master that gets it."""
        import aiohttp

        errors = []
        for url in self.state_urls:
            try:
                state = await self._get_state(url)
            except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
                errors.append(f"{url}: {type(exc).__name__}: {exc}")
                continue
            if state.get("leader"):
                return state
            errors.append(f"{url}: the state names no leader")
        raise records.StateError("; ".join(errors) or "no master to ask")

    async def reload(self) -> bool:
        """Fetch the state and swap the records in; on failure keep the old ones."""
        try:
            state = await self.fetch_state()
            rs = records.generate(state, self.config)
        except records.StateError as exc:
            if not self._failing and self.resolver.loaded:
                log.warning("error generating records: %s; keeping old DNS state", exc)
            self._failing = True
            return False
        if self._failing or not self.resolver.loaded:
            log.info("records loaded from the leading master (%d records)", len(rs))
        self._failing = False
        self.resolver.set_records(rs)
        return True

    async def refresh_loop(self, stop: asyncio.Event | None = None) -> None:
        """Reload every ``refresh_wall`` seconds (sooner until the first load succeeds)."""
        stop = stop or asyncio.Event()
        while not stop.is_set():
            ok = await self.reload()
            wait = self.refresh_wall if ok or self.resolver.loaded else FIRST_LOAD_RETRY
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), min(wait, self.refresh_wall))
