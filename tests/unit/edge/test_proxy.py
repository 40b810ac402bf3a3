"""The kit's data plane on real sockets: balancing, vhosts, stickiness, failover, stats."""

from __future__ import annotations

import asyncio
import socket
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from playground.edge.model import EdgeConfig, Server, Service
from playground.edge.proxy import Proxy, cookie_value, parse_head

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


async def http_backend(name: str) -> tuple[asyncio.base_events.Server, int]:
    """A tiny HTTP/1.1 server answering its own name and the headers it saw."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                seen = head.decode()
                body = f"{name}\n{seen}".encode()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
                await writer.drain()
                if b"connection: close" in head.lower():
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, HOST, 0)
    return server, server.sockets[0].getsockname()[1]


async def get(port: int, host: str = "x", headers: str = "", path: str = "/") -> tuple[int, str]:
    """One HTTP request on a new connection: (status, body)."""
    reader, writer = await asyncio.open_connection(HOST, port)
    writer.write(
        f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{headers}Connection: close\r\n\r\n".encode()
    )
    data = await reader.read()
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1]) if head else 0
    return status, head.decode() + "\n\n" + body.decode()


def service(port: int, servers: list[Server], **kw: Any) -> Service:
    return Service(
        app_id=kw.pop("app_id", "/web"),
        port_index=0,
        service_port=port,
        backend=kw.pop("backend", f"web_{port}"),
        servers=tuple(servers),
        **kw,
    )


def run(coro: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(coro(), 30))


def test_roundrobin_spreads_over_live_servers_and_skips_unhealthy_ones() -> None:
    async def main() -> None:
        backends = [await http_backend(f"b{i}") for i in range(3)]
        servers = [Server(f"s{i}", f"t{i}", HOST, p) for i, (_, p) in enumerate(backends)]
        servers[2] = Server("s2", "t2", HOST, backends[2][1], healthy=False)
        port = free_port()
        proxy = Proxy(HOST, None)
        await proxy.apply(EdgeConfig("external", (service(port, servers, mode="http"),)))
        names = Counter()
        for _ in range(10):
            status, body = await get(port)
            assert status == 200
            names[body.split("\n\n", 1)[1].split("\n", 1)[0]] += 1
        assert names == Counter({"b0": 5, "b1": 5})
        await proxy.close()

    run(main)


def test_weights_leastconn_and_source() -> None:
    async def main() -> None:
        backends = [await http_backend(f"b{i}") for i in range(2)]
        servers = [
            Server("s0", "t0", HOST, backends[0][1], weight=3),
            Server("s1", "t1", HOST, backends[1][1], weight=1),
        ]
        port = free_port()
        proxy = Proxy(HOST, None)
        svc = service(port, servers, mode="http")
        await proxy.apply(EdgeConfig("external", (svc,)))
        names = Counter()
        for _ in range(8):
            _, body = await get(port)
            names[body.split("\n\n", 1)[1].split("\n", 1)[0]] += 1
        assert names == Counter({"b0": 6, "b1": 2})
        # source: the same client address always lands on the same server
        src = service(port, servers, mode="http", balance="source")
        await proxy.apply(EdgeConfig("external", (src,)))
        seen = {(await get(port))[1].split("\n\n", 1)[1].split("\n", 1)[0] for _ in range(6)}
        assert len(seen) == 1
        # leastconn: a busy server is avoided
        proxy.servers[(src.backend, "s0")].scur = 5
        lc = service(port, servers, mode="http", balance="leastconn")
        await proxy.apply(EdgeConfig("external", (lc,)))
        assert proxy.pick(lc, "1.2.3.4", None, set()).name == "s1"
        await proxy.close()

    run(main)


def test_vhost_routing_paths_unknown_hosts_and_forwarded_headers() -> None:
    async def main() -> None:
        (_, pa), (_, pb), (_, pc) = [await http_backend(n) for n in ("shop", "blog", "api")]
        http_port = free_port()
        shop = service(free_port(), [Server("a", "ta", HOST, pa)], mode="http",
                       vhosts=("shop.example.com",), backend="shop_1")  # fmt: skip
        blog = service(free_port(), [Server("b", "tb", HOST, pb)], mode="http",
                       vhosts=("blog.example.com", "www.example.com"), backend="blog_2")  # fmt: skip
        api = service(free_port(), [Server("c", "tc", HOST, pc)], mode="http",
                      vhosts=("shop.example.com",), path="/api", backend="api_3")  # fmt: skip
        proxy = Proxy(HOST, http_port)
        await proxy.apply(EdgeConfig("external", (shop, blog, api)))
        status, body = await get(http_port, "shop.example.com")
        assert status == 200 and body.split("\n\n", 1)[1].startswith("shop\n")
        assert "X-Forwarded-For: 127.0.0.1" in body and f"X-Forwarded-Port: {http_port}" in body
        _, body = await get(http_port, "SHOP.example.com:80", path="/api/v1")
        assert body.split("\n\n", 1)[1].startswith("api\n")
        _, body = await get(http_port, "www.example.com")
        assert body.split("\n\n", 1)[1].startswith("blog\n")
        status, body = await get(http_port, "nobody.example.com")
        assert status == 503 and "No server is available" in body
        # the service port answers too, without a Host match
        status, body = await get(blog.service_port, "whatever")
        assert status == 200 and body.split("\n\n", 1)[1].startswith("blog\n")
        await proxy.close()

    run(main)


def test_sticky_cookie_pins_a_client_to_its_server() -> None:
    async def main() -> None:
        backends = [await http_backend(f"b{i}") for i in range(3)]
        servers = [Server(f"s{i}", f"t{i}", HOST, p) for i, (_, p) in enumerate(backends)]
        port = free_port()
        proxy = Proxy(HOST, None)
        await proxy.apply(
            EdgeConfig("external", (service(port, servers, mode="http", sticky=True),))
        )
        _, body = await get(port)
        head = body.split("\n\n", 1)[0]
        cookie = next(line for line in head.split("\r\n") if line.startswith("Set-Cookie"))
        name = cookie_value(cookie.split(":", 1)[1].split(";")[0], "mesosphere_server_id")
        assert name in ("s0", "s1", "s2")
        first = body.split("\n\n", 1)[1].split("\n", 1)[0]
        for _ in range(5):
            _, body = await get(port, headers=f"Cookie: mesosphere_server_id={name}\r\n")
            assert body.split("\n\n", 1)[1].split("\n", 1)[0] == first
            assert "Set-Cookie" not in body.split("\n\n", 1)[0]
        await proxy.close()

    run(main)


def test_a_refusing_server_is_skipped_retried_elsewhere_and_counted() -> None:
    async def main() -> None:
        backend, live = await http_backend("alive")
        dead = free_port()  # nothing listens: connections are refused
        servers = [Server("dead", "t0", HOST, dead), Server("alive", "t1", HOST, live)]
        port = free_port()
        proxy = Proxy(HOST, None)
        svc = service(port, servers)  # tcp mode
        await proxy.apply(EdgeConfig("external", (svc,)))
        for _ in range(6):
            status, body = await get(port)
            assert status == 200 and body.split("\n\n", 1)[1].startswith("alive")
        c = proxy.servers[(svc.backend, "dead")]
        assert c.econ == 1  # taken out after the first refusal, not tried again at once
        rows = {r["svname"]: r for r in proxy.stats_rows() if r["pxname"] == svc.backend}
        assert rows["dead"]["status"] == "DOWN" and rows["alive"]["status"] == "UP"
        assert rows["alive"]["stot"] == 6 and rows["BACKEND"]["act"] == 1
        csv = proxy.stats_csv().splitlines()
        assert csv[0].startswith("# pxname,svname,qcur,qmax,scur,smax")
        assert any(line.startswith(f"{svc.backend},alive,") for line in csv)
        # no live server at all: HTTP gets 503, TCP a closed connection
        await proxy.apply(EdgeConfig("external", (service(port, servers[:1], mode="http"),)))
        proxy.servers[(svc.backend, "dead")].down_until = 0
        status, _ = await get(port)
        assert status == 503
        backend.close()
        await proxy.close()

    run(main)


def test_listeners_follow_the_configuration() -> None:
    async def main() -> None:
        _, p = await http_backend("b")
        a, b = free_port(), free_port()
        proxy = Proxy(HOST, None)
        s = [Server("s", "t", HOST, p)]
        await proxy.apply(
            EdgeConfig("external", (service(a, s, backend="a"), service(b, s, backend="b")))
        )
        assert proxy.listening() == sorted([a, b])
        await proxy.apply(EdgeConfig("external", (service(b, s, backend="b"),)))
        assert proxy.listening() == [b]
        try:
            await asyncio.open_connection(HOST, a)
            refused = False
        except OSError:
            refused = True
        assert refused
        # a port another program holds is reported, not fatal
        with socket.socket() as taken:
            taken.bind((HOST, 0))
            taken.listen()
            held = taken.getsockname()[1]
            await proxy.apply(EdgeConfig("external", (service(held, s, backend="c"),)))
            assert held in proxy.bind_errors
        await proxy.close()

    run(main)


def test_parse_head() -> None:
    assert parse_head(b"GET /a HTTP/1.1\r\nHost: x\r\nCookie: a=b\r\n\r\n") == (
        "GET",
        "/a",
        {"host": "x", "cookie": "a=b"},
    )
    assert parse_head(b"garbage\r\n\r\n") is None
    assert cookie_value("a=1; mesosphere_server_id=s2", "mesosphere_server_id") == "s2"
