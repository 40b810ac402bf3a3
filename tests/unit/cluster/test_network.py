"""The networking layer: who is cut off from whom, and the client hook that enforces it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from playground.cluster import network
from playground.cluster.network import Network, partitioned_error
from playground.cluster.statedir import StateDir

ADDRESSES = {
    "master-1": {"host": "127.77.9.10", "port": 5050},
    "agent-1": {"host": "127.77.9.20", "port": 5051, "task_ports": [31000, 32000]},
    "agent-2": {"host": "127.77.9.21", "port": 5051, "task_ports": [31000, 32000]},
    "marathon-1": {"host": "127.77.9.3", "port": 8080},
}
# macOS fallback: one address, disjoint ports.
SHARED = {
    "master-1": {"host": "127.0.0.1", "port": 15050},
    "agent-1": {"host": "127.0.0.1", "port": 15051, "task_ports": [20000, 20999]},
    "agent-2": {"host": "127.0.0.1", "port": 15052, "task_ports": [21000, 21999]},
}


@pytest.fixture(autouse=True)
def _no_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(network, "REFRESH_SECONDS", 0.0)


def net(tmp_path: Path, me: str, addresses: dict = ADDRESSES) -> Network:  # type: ignore[type-arg]
    return Network(StateDir(tmp_path), me, addresses)


async def _pong(_request: web.Request) -> web.Response:
    return web.Response(text="pong")


def test_no_table_means_no_partition(tmp_path: Path) -> None:
    n = net(tmp_path, "master-1")
    assert not n.cut_off("agent-1")
    assert not n.blocks("http://127.77.9.20:5051/state")


def test_a_partition_cuts_both_ways_and_only_across(tmp_path: Path) -> None:
    state = StateDir(tmp_path)
    network.add_partition(state, "f-1", ["agent-1"])
    master, agent1, agent2 = (net(tmp_path, n) for n in ("master-1", "agent-1", "agent-2"))
    assert master.cut_off("agent-1") and agent1.cut_off("master-1")
    assert agent1.cut_off("agent-2") and agent2.cut_off("agent-1")
    assert not master.cut_off("agent-2") and not agent2.cut_off("marathon-1")
    # A node is never cut off from itself; unknown addresses (the learner's) pass.
    assert not agent1.cut_off("agent-1")
    assert not master.blocks("http://127.0.0.1:8080/")
    # The agent's HTTP port and its tasks' ports both belong to it.
    assert master.blocks("http://127.77.9.20:5051/slave(1)/x")
    assert master.blocks("tcp://127.77.9.20:31005")


def test_nodes_of_one_partition_reach_each_other(tmp_path: Path) -> None:
    network.add_partition(StateDir(tmp_path), "f-1", ["agent-1", "agent-2"])
    assert not net(tmp_path, "agent-1").cut_off("agent-2")
    assert net(tmp_path, "agent-1").cut_off("master-1")


def test_removing_ends_only_that_partition(tmp_path: Path) -> None:
    state = StateDir(tmp_path)
    network.add_partition(state, "f-1", ["agent-1"])
    network.add_partition(state, "f-2", ["agent-2"])
    n = net(tmp_path, "master-1")
    assert n.cut_off("agent-1") and n.cut_off("agent-2")
    network.remove_partitions(state, {"f-1"})
    assert [p["id"] for p in network.read_table(state)["partitions"]] == ["f-2"]
    assert not n.cut_off("agent-1") and n.cut_off("agent-2")


def test_shared_address_mode_maps_ports(tmp_path: Path) -> None:
    network.add_partition(StateDir(tmp_path), "f-1", ["agent-2"])
    n = net(tmp_path, "master-1", SHARED)
    assert n.node_at("127.0.0.1", 21500) == "agent-2"
    assert n.node_at("127.0.0.1", 15050) == "master-1"
    assert n.node_at("127.0.0.1", 8080) is None
    assert n.blocks("http://127.0.0.1:21500/") and not n.blocks("http://127.0.0.1:20500/")


def test_an_unreadable_table_is_no_partition(tmp_path: Path) -> None:
    (tmp_path / "network.json").write_text("{torn")
    assert not net(tmp_path, "master-1").cut_off("agent-1")


def test_the_client_hook_refuses_requests_across_a_partition(tmp_path: Path) -> None:
    async def scenario() -> tuple[int, str]:
        app = web.Application()
        app.router.add_get("/ping", _pong)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        addresses = {
            "a": {"host": "127.0.0.9", "port": 1},
            "b": {"host": "127.0.0.1", "port": port},
        }
        n = net(tmp_path, "a", addresses)
        try:
            async with aiohttp.ClientSession(trace_configs=[n.trace_config()]) as s:
                async with s.get(f"http://127.0.0.1:{port}/ping") as r:
                    before = r.status
                network.add_partition(StateDir(tmp_path), "f-1", ["b"])
                with pytest.raises(partitioned_error()):
                    await s.get(f"http://127.0.0.1:{port}/ping")
                waited = asyncio.ensure_future(n.wait_cut_off(f"http://127.0.0.1:{port}/"))
                await asyncio.wait_for(waited, 1.0)
                return before, "refused"
        finally:
            await runner.cleanup()

    assert asyncio.run(scenario()) == (200, "refused")


def test_marathon_health_probes_fail_across_a_partition(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Marathon's HTTP and TCP checks of a task behind a partition fail (ENETUNREACH)."""
    from playground.marathon import health

    async def scenario() -> tuple[bool, bool]:
        app = web.Application()
        app.router.add_get("/", _pong)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        addresses = {
            "marathon-1": {"host": "127.0.0.9", "port": 8080},
            "agent-1": {"host": "127.0.0.1", "port": 5051, "task_ports": [port, port]},
        }
        monkeypatch.setattr(network, "_current", None)
        network.install(StateDir(tmp_path), "marathon-1", addresses)
        try:
            await health._tcp_connect("127.0.0.1", port, 2.0)
            status, *_ = await health._http_get(f"http://127.0.0.1:{port}/", 2.0, read_body=False)
            assert status == 200
            network.add_partition(StateDir(tmp_path), "f-1", ["agent-1"])
            with pytest.raises(OSError, match="partition"):
                await health._tcp_connect("127.0.0.1", port, 2.0)
            with pytest.raises(aiohttp.ClientError, match="partition"):
                await health._http_get(f"http://127.0.0.1:{port}/", 2.0, read_body=False)
            return True, True
        finally:
            await runner.cleanup()

    assert asyncio.run(scenario()) == (True, True)
    assert network.current() is not None
