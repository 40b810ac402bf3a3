"""Route faults in the kit's proxy: each toxic's timing, rate, odds and reset, on a fake clock
for the arithmetic and on real sockets for what a client sees."""

from __future__ import annotations

import asyncio
import json
import random
import socket
import statistics
import time
from pathlib import Path
from typing import Any

import pytest

from playground.edge.model import EdgeConfig, Server, Service
from playground.edge.proxy import Proxy
from playground.edge.toxics import (
    Link,
    ResetConnection,
    Toxic,
    ToxicError,
    ToxicTable,
    registry_toxics,
)

HOST = "127.0.0.1"


class FakeTime:
    """A monotonic clock that only moves when someone sleeps."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def toxic(kind: str, stream: str = "downstream", toxicity: float = 1.0, **attrs: Any) -> Toxic:
    return Toxic.parse(
        {"type": kind, "stream": stream, "toxicity": toxicity, "attributes": attrs},
        app="/web",
        name=f"t-{kind}-{stream}-{len(attrs)}-{toxicity}",
    )


def link(
    table: ToxicTable, ft: FakeTime, stream: str = "downstream", seed: int = 1, port: int = 10000
) -> Link:
    return Link(table, "/web", port, stream, random.Random(seed), ft.monotonic, ft.sleep)


def deliver(lk: Link, ft: FakeTime, chunks: list[tuple[float, bytes]]) -> list[tuple[float, int]]:
    """Deliver (arrival, data) chunks; returns (time written, bytes) of each write."""
    writes: list[tuple[float, int]] = []

    async def write(data: bytes) -> None:
        writes.append((ft.now, len(data)))

    async def main() -> None:
        for arrived, data in chunks:
            ft.now = max(ft.now, arrived)
            await lk.deliver(data, arrived, write)

    asyncio.run(main())
    return writes


# ---- parsing ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"type": "slow"}, "unknown toxic type 'slow'"),
        ({"type": "latency", "stream": "sideways", "attributes": {"latency": 5}}, "stream must be"),
        ({"type": "latency", "toxicity": 1.5, "attributes": {"latency": 5}}, "toxicity must be"),
        ({"type": "latency", "attributes": {"delay": 5}}, "latency has no attribute 'delay'"),
        ({"type": "latency", "attributes": {}}, "needs latency (or jitter) above 0"),
        ({"type": "latency", "attributes": {"latency": "5"}}, "latency must be a number"),
        ({"type": "bandwidth", "attributes": {"rate": 0}}, "rate above 0 KB/s"),
        ({"type": "loss", "attributes": {"probability": 1.5}}, "loss probability must be"),
        ({"type": "reset_peer", "attributes": {"timeout": -1}}, "timeout must be 0 or more"),
        ({"type": "reset_peer", "route": {"app": "web"}}, "app id of its route"),
        ({"type": "reset_peer", "route": {"app": "/web", "port": 70000}}, "port number"),
        ({"type": "reset_peer", "name": "a/b", "route": {"app": "/web"}}, "invalid toxic name"),
    ],
)
def test_malformed_toxics_are_refused_saying_what_is_wrong(
    body: dict[str, Any], message: str
) -> None:
    body.setdefault("route", {"app": "/web"})
    with pytest.raises(ToxicError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Toxic.parse(body)


def test_a_toxic_takes_toxiproxys_defaults_and_names() -> None:
    t = Toxic.parse({"type": "latency", "attributes": {"latency": 200}, "route": {"app": "/a/b"}})
    assert (t.name, t.stream, t.toxicity) == ("a_b_latency_downstream", "downstream", 1.0)
    assert t.attributes == {"latency": 200.0, "jitter": 0.0}
    assert t.matches("/a/b", 10001) and not t.matches("/a", 10001)
    on_port = Toxic.parse({"type": "reset_peer", "route": {"app": "/a/b", "port": 10002}})
    assert on_port.matches("/a/b", 10002) and not on_port.matches("/a/b", 10001)


# ---- latency ----------------------------------------------------------------------------
def test_latency_holds_each_chunk_back_from_when_it_arrived() -> None:
    """Chunks that arrived together leave together: a delay is not paid once per chunk."""
    table, ft = ToxicTable(), FakeTime()
    table.add(toxic("latency", latency=200))
    writes = deliver(link(table, ft), ft, [(100.0, b"a" * 10), (100.05, b"b" * 10), (100.5, b"c")])
    assert [round(t - 100.0, 3) for t, _ in writes] == [0.2, 0.25, 0.7]
    assert table.stats["t-latency-downstream-1-1.0"].chunks == 3


def test_jitter_spreads_delays_over_latency_plus_or_minus_jitter() -> None:
    table, ft = ToxicTable(), FakeTime()
    table.add(toxic("latency", latency=200, jitter=50))
    lk = link(table, ft, seed=7)
    delays = []
    for i in range(200):
        arrived = 100.0 + i  # far apart: order never holds a chunk back
        ((written, _),) = deliver(lk, ft, [(arrived, b"x")])
        delays.append((written - arrived) * 1000)
    assert all(150 - 1e-6 <= d <= 250 + 1e-6 for d in delays)
    assert 190 < statistics.mean(delays) < 210
    assert statistics.pstdev(delays) > 20  # uniform over 100 ms: ~29 ms


def test_an_upstream_toxic_leaves_the_downstream_alone() -> None:
    table, ft = ToxicTable(), FakeTime()
    table.add(toxic("latency", stream="upstream", latency=500))
    assert deliver(link(table, ft, "downstream"), ft, [(100.0, b"x")]) == [(100.0, 1)]
    assert deliver(link(table, ft, "upstream"), ft, [(100.0, b"x")]) == [(100.5, 1)]


def test_a_toxic_past_its_revert_time_no_longer_applies() -> None:
    now = [1000.0]
    table, ft = ToxicTable(clock=lambda: now[0]), FakeTime()
    t = toxic("latency", latency=300)
    table.set_registry([Toxic(**{**t.__dict__, "fault": "f-1", "revert_at": 1010.0})])
    lk = link(table, ft)
    assert deliver(lk, ft, [(100.0, b"x")]) == [(100.3, 1)]
    now[0] = 1010.0
    assert deliver(lk, ft, [(200.0, b"x")]) == [(200.0, 1)]


# ---- bandwidth --------------------------------------------------------------------------
def test_bandwidth_passes_data_at_the_rate_in_100ms_slices() -> None:
    table, ft = ToxicTable(), FakeTime()
    table.add(toxic("bandwidth", rate=100))  # 100 KB/s
    writes = deliver(link(table, ft), ft, [(100.0, b"x" * 250_000), (100.0, b"y" * 50_000)])
    assert sum(n for _, n in writes) == 300_000
    assert max(n for _, n in writes) == 10_000  # 100 ms worth
    assert writes[-1][0] - 100.0 == pytest.approx(3.0, abs=1e-6)  # 300 KB at 100 KB/s
    rate = [n / 1000 / (t - 100.0) for t, n in writes[9:10]]
    assert rate == [pytest.approx(10.0)]  # 10 slices in: 100 KB after 1 s


# ---- reset and loss ---------------------------------------------------------------------
def test_reset_peer_resets_after_its_timeout_without_passing_the_data() -> None:
    table, ft = ToxicTable(), FakeTime()
    table.add(toxic("reset_peer", timeout=300))
    with pytest.raises(ResetConnection) as info:
        deliver(link(table, ft), ft, [(100.0, b"data")])
    assert info.value.stream == "downstream"
    assert ft.now == pytest.approx(100.3)
    stats = table.stats["t-reset_peer-downstream-1-1.0"]
    assert (stats.resets, stats.connections) == (1, 1)


def test_loss_resets_about_that_fraction_of_connections_each_decided_once() -> None:
    table, ft = ToxicTable(), FakeTime()
    table.add(toxic("loss", probability=0.25))
    rng = random.Random(42)
    lost = 0
    for _ in range(2000):
        lk = Link(table, "/web", 10000, "downstream", rng, ft.monotonic, ft.sleep)
        try:
            deliver(lk, ft, [(ft.now, b"first")])
        except ResetConnection:
            lost += 1
            continue
        for _ in range(5):  # a connection that survived its first chunk is never lost later
            deliver(lk, ft, [(ft.now, b"more")])
    assert 0.22 < lost / 2000 < 0.28
    assert table.stats["t-loss-downstream-1-1.0"].resets == lost


def test_toxicity_is_drawn_once_per_connection() -> None:
    table, ft = ToxicTable(), FakeTime()
    table.add(toxic("latency", toxicity=0.5, latency=100))
    rng = random.Random(3)
    delayed = 0
    for _ in range(400):
        lk = Link(table, "/web", 10000, "downstream", rng, ft.monotonic, ft.sleep)
        outcomes = set()
        for _ in range(3):
            start = ft.now
            ((t, _n),) = deliver(lk, ft, [(start, b"x")])
            outcomes.add(round(t - start, 3))
        assert len(outcomes) == 1
        delayed += outcomes == {0.1}
    assert 160 < delayed < 240


# ---- the table and the registry ------------------------------------------------------------
def test_registry_toxics_are_read_from_active_route_faults(tmp_path: Path) -> None:
    path = tmp_path / "faults.json"
    assert registry_toxics(path) == []
    spec = {"app": "/web", "port": None, "toxics": [
        {"type": "latency", "attributes": {"latency": 200, "jitter": 10}},
        {"type": "loss", "stream": "upstream", "attributes": {"probability": 0.1}},
        {"type": "latency", "attributes": {"latency": 5}}]}  # fmt: skip
    faults = [
        {"id": "f-1", "kind": "crash", "target": "agent-1", "reverted_at": None},
        {"id": "f-2", "kind": "route", "target": "/web", "route": spec,
         "revert_at": "2030-01-01T00:00:00.000Z", "reverted_at": None},
        {"id": "f-3", "kind": "route", "target": "/web", "route": spec,
         "reverted_at": "2026-01-01T00:00:00.000Z"},
        {"id": "f-4", "kind": "route", "target": "/x", "route": {"app": "/x", "toxics": [
            {"type": "nope"}]}, "reverted_at": None},
    ]  # fmt: skip
    path.write_text(json.dumps({"schema_version": 1, "next_id": 5, "faults": faults}))
    toxics = registry_toxics(path)
    assert [t.name for t in toxics] == ["f-2-latency", "f-2-loss", "f-2-latency-2"]
    assert {t.fault for t in toxics} == {"f-2"}
    assert toxics[0].revert_at == pytest.approx(1893456000.0)
    assert toxics[1].stream == "upstream" and toxics[1].attr("probability") == 0.1


def test_the_api_cannot_remove_a_faults_toxic_nor_reuse_a_name() -> None:
    table = ToxicTable()
    t = toxic("latency", latency=1)
    table.set_registry([Toxic(**{**t.__dict__, "name": "f-1-latency", "fault": "f-1"})])
    with pytest.raises(ToxicError, match="belongs to fault f-1") as info:
        table.remove("f-1-latency")
    assert "playground heal /web" in str(info.value.hint)
    table.add(t)
    with pytest.raises(ToxicError, match="already exists"):
        table.add(t)
    assert table.remove(t.name) == t
    with pytest.raises(KeyError):
        table.remove(t.name)


# ---- on real sockets ----------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


async def sized_backend(size: int) -> tuple[asyncio.base_events.Server, int]:
    """An HTTP/1.1 keep-alive server answering every request with ``size`` bytes."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                await reader.readuntil(b"\r\n\r\n")
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
                writer.write(b"z" * size)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, HOST, 0)
    return server, server.sockets[0].getsockname()[1]


async def request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> float:
    """One keep-alive request on an open connection; returns seconds to the whole answer."""
    start = time.monotonic()
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    await reader.readexactly(length)
    return time.monotonic() - start


async def proxied(size: int) -> tuple[Proxy, int, Any]:
    server, bport = await sized_backend(size)
    port = free_port()
    proxy = Proxy(HOST, None, rng=random.Random(1))
    svc = Service("/web", 0, port, f"web_{port}", mode="http",
                  servers=(Server("s0", "t0", HOST, bport),))  # fmt: skip
    await proxy.apply(EdgeConfig("external", (svc,)))
    return proxy, port, server


def test_latency_added_to_an_open_connection_slows_its_next_request() -> None:
    """A toxic applies to data flowing on connections already open; removing it is immediate."""

    async def main() -> None:
        proxy, port, server = await proxied(100)
        reader, writer = await asyncio.open_connection(HOST, port)
        before = await request(reader, writer)
        proxy.toxics.add(Toxic.parse({"type": "latency", "attributes": {"latency": 300},
                                      "route": {"app": "/web"}}))  # fmt: skip
        slowed = await request(reader, writer)
        proxy.toxics.remove("web_latency_downstream")
        after = await request(reader, writer)
        writer.close()
        await proxy.close()
        server.close()
        assert before < 0.15, before
        assert 0.28 <= slowed - before < 0.6, (before, slowed)
        assert after < 0.15, after

    asyncio.run(asyncio.wait_for(main(), 30))


def test_bandwidth_slows_a_large_answer_to_about_the_rate() -> None:
    async def main() -> None:
        proxy, port, server = await proxied(200_000)
        proxy.toxics.add(Toxic.parse({"type": "bandwidth", "attributes": {"rate": 250},
                                      "route": {"app": "/web", "port": port}}))  # fmt: skip
        reader, writer = await asyncio.open_connection(HOST, port)
        took = await request(reader, writer)
        writer.close()
        await proxy.close()
        server.close()
        assert 0.7 <= took < 1.4, took  # 200 KB at 250 KB/s: 0.8 s

    asyncio.run(asyncio.wait_for(main(), 30))


@pytest.mark.parametrize("stream", ["downstream", "upstream"])
def test_reset_peer_resets_the_clients_connection(stream: str) -> None:
    async def main() -> None:
        proxy, port, server = await proxied(100)
        proxy.toxics.add(Toxic.parse({"type": "reset_peer", "stream": stream,
                                      "route": {"app": "/web"}}))  # fmt: skip
        reader, writer = await asyncio.open_connection(HOST, port)
        try:
            with pytest.raises((ConnectionResetError, asyncio.IncompleteReadError)) as info:
                await request(reader, writer)
        finally:
            writer.close()
            await proxy.close()
            server.close()
        if stream == "downstream":  # the RST lands on the client's side
            assert isinstance(info.value, ConnectionResetError)
        assert proxy.toxics.stats[f"web_reset_peer_{stream}"].resets == 1

    asyncio.run(asyncio.wait_for(main(), 30))
