"""The DNS server (UDP and TCP), its HTTP API and its refresh from the masters.

The server runs on a free loopback port in an event loop of its own (a thread of the
test process); questions are sent with dnslib's client as ``dig`` would send them.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from aiohttp import web
from dnslib import QTYPE, RCODE, DNSRecord

from playground.dns import labels, records
from playground.dns.config import DnsConfig
from playground.dns.server import DnsService, Resolver
from tests.support.dns_state import AGENT_IPS, MASTERS, WEB_TASKS, master_state

HOST = "127.0.0.1"


def free_udp_tcp_port() -> int:
    """A port free for both UDP and TCP on the loopback address."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.bind((HOST, 0))
            port = int(u.getsockname()[1])
            with socket.socket() as t:
                try:
                    t.bind((HOST, port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free port")


@dataclass
class Running:
    service: DnsService
    loop: asyncio.AbstractEventLoop
    dns_port: int
    http_port: int

    def ask(self, name: str, qtype: str = "A", tcp: bool = False) -> DNSRecord:
        q = DNSRecord.question(name, qtype)
        return DNSRecord.parse(q.send(HOST, self.dns_port, tcp=tcp, timeout=3))

    def http(self, path: str) -> Any:
        r = httpx.get(f"http://{HOST}:{self.http_port}{path}", timeout=3)
        r.raise_for_status()
        return r.json()


@pytest.fixture
def server() -> Iterator[Running]:
    dns_port, http_port = free_udp_tcp_port(), free_udp_tcp_port()
    cfg = DnsConfig(
        masters=list(MASTERS),
        listener=HOST,
        port=dns_port,
        http_listener=HOST,
        http_port=http_port,
    )
    service = DnsService(cfg, [], refresh_wall=60.0)
    service.resolver.set_records(records.generate(master_state(), cfg))
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(service.start(), loop).result(5)
    try:
        yield Running(service, loop, dns_port, http_port)
    finally:
        asyncio.run_coroutine_threadsafe(service.close(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


def web_target(i: int, slave: bool = False) -> str:
    tid, agent, _, _ = WEB_TASKS[i]
    sub = ".slave" if slave else ""
    return f"web-prod-{labels.hash_string(tid)}-s{agent}.marathon{sub}.mesos."


# ---- DNS ----------------------------------------------------------------------------------
@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_a_query_answers_every_task_ip(server: Running, tcp: bool) -> None:
    """An A question for a task name answers each task's IP, authoritative, TTL 60."""
    reply = server.ask("web-prod.marathon.mesos", "A", tcp=tcp)
    assert reply.header.rcode == RCODE.NOERROR
    assert reply.header.aa == 1 and reply.header.ra == 1 and reply.header.rd == 1
    assert sorted(str(rr.rdata) for rr in reply.rr) == AGENT_IPS[:2]
    assert {rr.ttl for rr in reply.rr} == {60}
    assert {str(rr.rname) for rr in reply.rr} == {"web-prod.marathon.mesos."}


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_srv_query_answers_ports_and_targets_with_their_addresses(
    server: Running, tcp: bool
) -> None:
    """SRV: priority 0, weight 1, the task's port and its canonical name; the target's A is added."""
    reply = server.ask("_web-prod._tcp.marathon.mesos", "SRV", tcp=tcp)
    assert reply.header.rcode == RCODE.NOERROR
    got = sorted(
        (rr.rdata.priority, rr.rdata.weight, rr.rdata.port, str(rr.rdata.target)) for rr in reply.rr
    )
    assert got == sorted((0, 1, p0, web_target(i)) for i, (_, _, p0, _) in enumerate(WEB_TASKS))
    extra = {str(rr.rname): str(rr.rdata) for rr in reply.ar}
    assert extra == {web_target(0): AGENT_IPS[0], web_target(1): AGENT_IPS[1]}


def test_named_port_and_slave_srv_names(server: Running) -> None:
    """_http._web-prod._tcp answers the named port; .slave SRVs answer every host port."""
    named = server.ask("_http._web-prod._tcp.marathon.mesos", "SRV")
    assert sorted(rr.rdata.port for rr in named.rr) == [p0 for _, _, p0, _ in WEB_TASKS]
    slave = server.ask("_web-prod._tcp.marathon.slave.mesos", "SRV")
    assert sorted(rr.rdata.port for rr in slave.rr) == sorted(
        p for _, _, p0, p1 in WEB_TASKS for p in (p0, p1)
    )
    assert {str(rr.rdata.target) for rr in slave.rr} == {web_target(0, True), web_target(1, True)}


def test_leader_and_case_insensitive_names(server: Running) -> None:
    """leader.mesos is the leading master; names match whatever their case."""
    assert [str(rr.rdata) for rr in server.ask("leader.mesos").rr] == ["127.77.1.11"]
    assert sorted(str(rr.rdata) for rr in server.ask("WEB-PROD.Marathon.MESOS").rr) == AGENT_IPS[:2]
    srv = server.ask("_leader._tcp.mesos", "SRV")
    assert [(rr.rdata.port, str(rr.rdata.target)) for rr in srv.rr] == [(5050, "leader.mesos.")]


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_soa_and_ns_answers_in_the_authority_section(server: Running, tcp: bool) -> None:
    """SOA and NS of the domain come in the authority section with mesos-dns's defaults."""
    soa = server.ask("mesos", "SOA", tcp=tcp)
    assert soa.header.rcode == RCODE.NOERROR and not soa.rr
    (rr,) = soa.auth
    assert rr.rtype == QTYPE.SOA
    assert str(rr.rdata.mname) == "ns1.mesos."
    assert str(rr.rdata.rname) == "root.ns1.mesos."
    assert tuple(rr.rdata.times[1:]) == (60, 600, 86400, 60)
    assert rr.rdata.times[0] == server.service.config.soa_serial
    ns = server.ask("mesos", "NS", tcp=tcp)
    assert [(r.rtype, str(r.rdata)) for r in ns.auth] == [(QTYPE.NS, "ns1.mesos.")]


def test_unknown_name_in_the_domain_is_nxdomain_with_soa(server: Running) -> None:
    """An unknown name in the domain: NXDOMAIN and the SOA, no answer."""
    reply = server.ask("nope.marathon.mesos", "A")
    assert reply.header.rcode == RCODE.NXDOMAIN
    assert not reply.rr
    assert [rr.rtype for rr in reply.auth] == [QTYPE.SOA]


def test_known_name_other_type_and_unknown_srv_are_noerror_without_answers(server: Running) -> None:
    """As mesos-dns: AAAA of an A-only name is NODATA; an unknown SRV name is NOERROR, empty."""
    aaaa = server.ask("web-prod.marathon.mesos", "AAAA")
    assert aaaa.header.rcode == RCODE.NOERROR and not aaaa.rr
    srv = server.ask("_nope._tcp.marathon.mesos", "SRV")
    assert srv.header.rcode == RCODE.NOERROR and not srv.rr


def test_names_outside_the_domain_are_refused_not_forwarded(server: Running) -> None:
    """externalon is false: a name outside .mesos is REFUSED (nothing leaves the machine)."""
    reply = server.ask("example.com", "A")
    assert reply.header.rcode == RCODE.REFUSED
    assert not reply.rr and reply.header.aa == 0


def test_any_answers_addresses_and_authority(server: Running) -> None:
    """ANY: the name's A records plus the SOA and NS in the authority section."""
    reply = server.ask("leader.mesos", "ANY")
    assert [(rr.rtype, str(rr.rdata)) for rr in reply.rr] == [(QTYPE.A, "127.77.1.11")]
    assert sorted(rr.rtype for rr in reply.auth) == sorted([QTYPE.SOA, QTYPE.NS])


def test_udp_answers_are_cut_to_512_bytes_tcp_answers_are_whole(server: Running) -> None:
    """Over UDP a large answer is cut to fit 512 bytes; over TCP every record comes."""
    rs = records.RecordSet()
    for i in range(100):
        rs.add("A", "big.marathon.mesos.", f"10.1.0.{i + 1}")
    server.service.resolver.records = rs
    udp = server.ask("big.marathon.mesos", "A")
    assert 0 < len(udp.rr) < 100 and len(udp.pack()) <= 512
    assert len(server.ask("big.marathon.mesos", "A", tcp=True).rr) == 100


def test_malformed_messages_get_no_answer() -> None:
    """Garbage and responses are dropped, not answered."""
    res = Resolver(DnsConfig())
    assert res.handle(b"\x00\x01garbage") is None
    response = DNSRecord.question("leader.mesos").reply()
    assert res.handle(response.pack()) is None


# ---- HTTP API --------------------------------------------------------------------------------
def test_http_version_and_config(server: Running) -> None:
    """/v1/version and /v1/config in mesos-dns's shapes, with the real-cluster refresh period."""
    assert server.http("/v1/version") == {
        "Service": "Mesos-DNS",
        "URL": "https://github.com/mesosphere/mesos-dns",
        "Version": "v0.6.0",
    }
    cfg = server.http("/v1/config")
    documented = {"Masters", "Zk", "RefreshSeconds", "TTL", "Port", "Domain", "Resolvers"}
    documented |= {"Timeout", "Email", "Mname", "Listener", "HttpPort", "DnsOn", "HttpOn"}
    assert documented <= set(cfg)
    assert cfg["RefreshSeconds"] == 60 and cfg["TTL"] == 60 and cfg["Domain"] == "mesos"
    assert cfg["Port"] == server.dns_port and cfg["HttpPort"] == server.http_port
    assert cfg["Masters"] == MASTERS and cfg["ExternalOn"] is False
    assert cfg["SOAMname"] == cfg["Mname"] == "ns1.mesos."
    assert cfg["IPSources"] == ["netinfo", "mesos", "host"]


def test_http_hosts(server: Running) -> None:
    """/v1/hosts/{host}: one {host, ip} per address; an unknown host gives one empty entry."""
    got = server.http("/v1/hosts/web-prod.marathon.mesos")
    assert sorted(got, key=lambda x: x["ip"]) == [
        {"host": "web-prod.marathon.mesos.", "ip": ip} for ip in AGENT_IPS[:2]
    ]
    assert server.http("/v1/hosts/nope.mesos") == [{"host": "", "ip": ""}]


def test_http_services(server: Running) -> None:
    """/v1/services/{service}: service, host, ip and port (a string) per SRV record."""
    name = "_web-prod._tcp.marathon.mesos."
    got = sorted(server.http(f"/v1/services/{name}"), key=lambda x: x["port"])
    assert got == [
        {"service": name, "host": web_target(i), "ip": AGENT_IPS[i], "port": str(p0)}
        for i, (_, _, p0, _) in enumerate(WEB_TASKS)
    ]
    assert server.http("/v1/services/_nope._tcp.marathon.mesos.") == [
        {"service": "", "host": "", "ip": "", "port": ""}
    ]


def test_http_enumerate(server: Running) -> None:
    """/v1/enumerate: frameworks with their running tasks and records."""
    data = server.http("/v1/enumerate")
    assert [f["name"] for f in data["frameworks"]] == [
        "marathon",
        "Chronos With A Space AND MIXED.case",
    ]
    task = data["frameworks"][0]["tasks"][0]
    assert set(task) == {"name", "id", "records"}
    assert {"name": "web-prod.marathon.mesos.", "host": AGENT_IPS[0], "rtype": "A"} in task[
        "records"
    ]


# ---- refreshing ------------------------------------------------------------------------------
class FakeMasters:
    """A leading master serving a state, and a follower answering 307 to it."""

    def __init__(self) -> None:
        self.state = master_state()
        self.leader_up = True
        self.follower_port = free_udp_tcp_port()
        self.leader_port = free_udp_tcp_port()
        self.runners: list[web.AppRunner] = []
        self.hits = 0

    async def start(self) -> None:
        async def leader(_: web.Request) -> web.Response:
            self.hits += 1
            return web.json_response(self.state)

        async def follower(request: web.Request) -> web.Response:
            loc = f"//{HOST}:{self.leader_port}{request.path_qs}"
            return web.Response(status=307, headers={"Location": loc})

        for handler, port in ((follower, self.follower_port), (leader, self.leader_port)):
            app = web.Application()
            app.router.add_get("/master/state", handler)
            runner = web.AppRunner(app)
            await runner.setup()
            await web.TCPSite(runner, HOST, port).start()
            self.runners.append(runner)

    async def stop_leader(self) -> None:
        await self.runners[1].cleanup()

    async def close(self) -> None:
        for r in self.runners:
            await r.cleanup()


def test_refresh_follows_the_redirect_and_keeps_the_last_good_records() -> None:
    """Records come from the leader through a follower's 307; with no master they stay."""

    async def scenario() -> None:
        masters = FakeMasters()
        await masters.start()
        svc = DnsService(
            DnsConfig(masters=list(MASTERS)),
            [f"http://{HOST}:{masters.follower_port}/master/state"],
            refresh_wall=60.0,
        )
        try:
            assert await svc.reload() is True
            assert masters.hits == 1
            assert (
                sorted(svc.resolver.records.get("A", "web-prod.marathon.mesos.")) == (AGENT_IPS[:2])
            )
            serial = svc.config.soa_serial
            await masters.stop_leader()
            assert await svc.reload() is False
            assert (
                sorted(svc.resolver.records.get("A", "web-prod.marathon.mesos.")) == (AGENT_IPS[:2])
            )
            assert svc.config.soa_serial == serial
        finally:
            await svc.close()
            await masters.close()

    asyncio.run(scenario())


def test_refresh_loop_follows_a_scale_down() -> None:
    """The refresh loop picks up a task that stopped running within one refresh period."""

    async def scenario() -> None:
        masters = FakeMasters()
        await masters.start()
        svc = DnsService(
            DnsConfig(masters=list(MASTERS)),
            [f"http://{HOST}:{masters.leader_port}/master/state"],
            refresh_wall=0.2,
        )
        stop = asyncio.Event()
        loop_task = asyncio.ensure_future(svc.refresh_loop(stop))
        try:
            await asyncio.sleep(0.1)
            assert len(svc.resolver.records.get("A", "web-prod.marathon.mesos.")) == 2
            tasks = masters.state["frameworks"][0]["tasks"]
            tasks[1] = {**tasks[1], "state": "TASK_KILLED"}
            await asyncio.sleep(0.5)
            assert svc.resolver.records.get("A", "web-prod.marathon.mesos.") == [AGENT_IPS[0]]
        finally:
            stop.set()
            await asyncio.wait_for(loop_task, 2)
            await svc.close()
            await masters.close()

    asyncio.run(scenario())


def test_a_state_without_leader_keeps_the_old_records() -> None:
    """A master answering a state without a leader does not wipe the records."""

    async def scenario() -> None:
        masters = FakeMasters()
        await masters.start()
        url = f"http://{HOST}:{masters.leader_port}/master/state"
        svc = DnsService(DnsConfig(masters=list(MASTERS)), [url], refresh_wall=60.0)
        try:
            assert await svc.reload() is True
            masters.state = master_state(leader=None)
            assert await svc.reload() is False
            assert svc.resolver.records.get("A", "leader.mesos.") == ["127.77.1.11"]
        finally:
            await svc.close()
            await masters.close()

    asyncio.run(scenario())
