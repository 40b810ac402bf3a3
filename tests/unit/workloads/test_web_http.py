"""The stateless web service over real HTTP on loopback, and its CLI."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
from aiohttp import test_utils
from click.testing import CliRunner

from playground.cli.workload import workload
from playground.workloads.web import make_app, task_id_from_env


def start_web(env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    """Start ``playground workload web --port 0`` and return it with its URL (from the banner)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "playground", "workload", "web", "--port", "0"],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    banner = proc.stdout.readline()
    if not banner.startswith("web listening on http://127.0.0.1:"):
        proc.kill()
        _, err = proc.communicate(timeout=5)
        raise AssertionError(f"web did not start: {banner!r} {err}")
    return proc, banner.split()[3]


async def one_client(url: str, path: str) -> tuple[int, str, str | None]:
    """One client with its own connection (its own connector) doing one GET."""
    connector = aiohttp.TCPConnector(force_close=True)
    timeout = aiohttp.ClientTimeout(total=10)
    async with (
        aiohttp.ClientSession(connector=connector) as s,
        s.get(url + path, timeout=timeout) as r,
    ):
        return r.status, await r.text(), r.headers.get("X-Task-Id")


def test_50_concurrent_clients_all_get_200(tmp_path: Path) -> None:
    """The web workload answers each of 50 concurrent clients (50 connections) with 200 and its task id, then exits 0 on SIGTERM."""
    proc, url = start_web({"MESOS_TASK_ID": "web.1234", "HOST": "127.0.0.1"})
    try:

        async def burst() -> list[tuple[int, str, str | None]]:
            return await asyncio.gather(*(one_client(url, f"/path/{i}") for i in range(50)))

        results = asyncio.run(burst())
        assert results == [(200, "web.1234\n", "web.1234")] * 50

        async def health() -> dict[str, str]:
            async with aiohttp.ClientSession() as s, s.get(url + "/health") as r:
                assert r.status == 200
                return dict(await r.json())

        assert asyncio.run(health()) == {"status": "ok", "task_id": "web.1234"}
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(5) == 0


def test_every_path_and_method_answers_the_task_id() -> None:
    """GET / and any other path or method answer 200 "<task id>\\n" with X-Task-Id; /health answers JSON."""

    async def main() -> None:
        async with test_utils.TestClient(test_utils.TestServer(make_app("t-1"))) as c:
            for method, path in [("GET", "/"), ("GET", "/a/b?c=d"), ("POST", "/x"), ("PUT", "/")]:
                r = await c.request(method, path)
                assert r.status == 200 and await r.text() == "t-1\n", (method, path)
                assert r.headers["X-Task-Id"] == "t-1"
            r = await c.get("/health")
            assert await r.json() == {"status": "ok", "task_id": "t-1"}

    asyncio.run(main())


def test_task_id_defaults_to_local(monkeypatch: pytest.MonkeyPatch) -> None:
    """Outside a task (no $MESOS_TASK_ID) the task id is "local"."""
    monkeypatch.delenv("MESOS_TASK_ID", raising=False)
    assert task_id_from_env() == "local"
    monkeypatch.setenv("MESOS_TASK_ID", "web.9")
    assert task_id_from_env() == "web.9"


def test_cli_web_requires_a_port(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without --port or $PORT0 `workload web` is a usage error (exit 2) that says how to give a port."""
    monkeypatch.delenv("PORT0", raising=False)
    result = CliRunner().invoke(workload, ["web"])
    assert result.exit_code == 2 and "PORT0" in result.output and "--port" in result.output


def test_cli_web_takes_port0_and_host(monkeypatch: pytest.MonkeyPatch) -> None:
    """`workload web` listens on $PORT0 and $HOST by default, else on 127.0.0.1, and --host/--port win."""
    calls: list[tuple[str, int]] = []
    monkeypatch.setattr("playground.workloads.web.run_web", lambda h, p: calls.append((h, p)))
    monkeypatch.setenv("PORT0", "31001")
    monkeypatch.setenv("HOST", "10.1.2.3")
    assert CliRunner().invoke(workload, ["web"]).exit_code == 0
    monkeypatch.delenv("HOST")
    assert CliRunner().invoke(workload, ["web"]).exit_code == 0
    assert CliRunner().invoke(workload, ["web", "--port", "8", "--host", "::1"]).exit_code == 0
    assert calls == [("10.1.2.3", 31001), ("127.0.0.1", 31001), ("::1", 8)]


def test_cli_web_port_in_use_is_a_clear_error() -> None:
    """A port already taken makes `workload web` exit 1 with a message naming the address."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        result = CliRunner().invoke(workload, ["web", "--port", str(port), "--host", "127.0.0.1"])
    assert result.exit_code == 1
    assert f"cannot listen on http://127.0.0.1:{port}" in result.output
