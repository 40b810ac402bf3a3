"""Health and readiness checks of the Marathon node, against real local servers."""

from __future__ import annotations

import asyncio
import re
import shutil
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from playground.marathon.health import (
    HealthRunner,
    HealthTracker,
    classify_http_status,
    format_timestamp,
    normalize_health_check,
    normalize_readiness_check,
    probe,
    run_readiness,
)

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


class FastScale:
    """A time scale 1000x faster than real time, without floors (fast tests)."""

    def wall(self, seconds: float, floor: float = 0.0) -> float:
        return 0.0 if seconds <= 0 else seconds / 1000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(coro: Awaitable[Any]) -> Any:
    async def main() -> Any:
        return await asyncio.wait_for(coro, 5)

    return asyncio.run(main())


@asynccontextmanager
async def http_server(
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ssl_context: ssl.SSLContext | None = None,
) -> AsyncIterator[int]:
    app = web.Application()
    app.router.add_route("GET", "/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port, ssl_context=ssl_context)
    await site.start()
    try:
        yield port
    finally:
        await runner.cleanup()


async def basic_handler(request: web.Request) -> web.StreamResponse:
    path = request.path
    if path == "/ok":
        return web.Response(text="ok")
    if path == "/redirect":
        return web.Response(status=302, headers={"Location": "/nowhere"})
    if path == "/fail":
        return web.Response(status=500, text="boom")
    if path == "/slow":
        await asyncio.sleep(0.5)
        return web.Response(text="late")
    return web.Response(status=404)


def http_check(**fields: Any) -> dict[str, Any]:
    return normalize_health_check({"protocol": "HTTP", "portIndex": 0, **fields})


# --------------------------------------------------------------------------- definitions


def test_health_check_defaults_http_match_marathon_1_10() -> None:
    assert normalize_health_check({}) == {
        "gracePeriodSeconds": 300,
        "ignoreHttp1xx": False,
        "intervalSeconds": 60,
        "maxConsecutiveFailures": 3,
        "portIndex": 0,
        "protocol": "HTTP",
        "ipProtocol": "IPv4",
        "timeoutSeconds": 20,
        "delaySeconds": 15,
    }
    with_path = normalize_health_check({"path": "/health", "port": 8080, "protocol": "HTTPS"})
    assert with_path["path"] == "/health"
    assert with_path["port"] == 8080
    assert "portIndex" not in with_path


def test_health_check_defaults_per_protocol() -> None:
    tcp = normalize_health_check({"protocol": "TCP", "path": "/ignored"})
    assert "path" not in tcp and "ignoreHttp1xx" not in tcp
    assert tcp["portIndex"] == 0

    cmd = normalize_health_check({"protocol": "COMMAND", "command": {"value": "true"}})
    assert cmd == {
        "command": {"value": "true"},
        "gracePeriodSeconds": 300,
        "intervalSeconds": 60,
        "maxConsecutiveFailures": 3,
        "protocol": "COMMAND",
        "ipProtocol": "IPv4",
        "timeoutSeconds": 20,
        "delaySeconds": 15,
    }
    assert normalize_health_check({"command": {"value": "true"}})["protocol"] == "COMMAND"

    mesos = normalize_health_check({"protocol": "MESOS_HTTP", "path": "/", "delaySeconds": 2})
    assert mesos["delaySeconds"] == 2 and mesos["path"] == "/" and mesos["portIndex"] == 0
    assert "ignoreHttp1xx" not in mesos
    assert "portIndex" in normalize_health_check({"protocol": "MESOS_TCP"})

    with pytest.raises(ValueError):
        normalize_health_check({"protocol": "UDP"})
    with pytest.raises(ValueError):
        normalize_health_check({"protocol": "COMMAND"})


def test_readiness_check_defaults() -> None:
    assert normalize_readiness_check({}) == {
        "name": "readinessCheck",
        "protocol": "HTTP",
        "path": "/",
        "portName": "http-api",
        "intervalSeconds": 30,
        "timeoutSeconds": 10,
        "httpStatusCodesForReady": [200],
        "preserveLastResponse": False,
    }
    custom = normalize_readiness_check({"httpStatusCodesForReady": [200, 204, 200]})
    assert custom["httpStatusCodesForReady"] == [200, 204]
    with pytest.raises(ValueError):
        normalize_readiness_check({"protocol": "TCP"})


def test_timestamp_format_keeps_millis() -> None:
    assert format_timestamp(1494254551.123) == "2017-05-08T14:42:31.123Z"
    assert format_timestamp(1494254551.0) == "2017-05-08T14:42:31.000Z"


# --------------------------------------------------------------------------- probes


def test_http_probe_statuses() -> None:
    async def main() -> list[tuple[bool, str | None]]:
        async with http_server(basic_handler) as port:
            out = []
            for path in ("/ok", "/redirect", "/fail", "missing"):
                out.append(
                    await probe(
                        http_check(path=path),
                        host="127.0.0.1",
                        ports=[port],
                        env={},
                        cwd=None,
                        timeout=0.5,
                    )
                )
            return out

    ok, redirect, fail, missing = run(main())
    assert ok == (True, None)
    assert redirect == (True, None)  # 3xx is healthy, redirects are not followed
    assert fail == (False, "500 Internal Server Error")
    assert missing == (False, "404 Not Found")  # path without "/" gets one


def test_http_probe_timeout_and_refused() -> None:
    async def main() -> tuple[Any, Any]:
        async with http_server(basic_handler) as port:
            slow = await probe(
                http_check(path="/slow", timeoutSeconds=2),
                host="127.0.0.1",
                ports=[port],
                env={},
                cwd=None,
                timeout=0.1,
            )
        refused = await probe(
            http_check(), host="127.0.0.1", ports=[free_port()], env={}, cwd=None, timeout=0.5
        )
        return slow, refused

    slow, refused = run(main())
    assert slow[0] is False
    assert slow[1].startswith("TCP idle-timeout encountered on connection to [/127.0.0.1:")
    assert slow[1].endswith("no bytes passed in the last 2 seconds")
    assert refused[0] is False
    assert refused[1].startswith("Tcp command [Connect(127.0.0.1:")
    assert refused[1].endswith("java.net.ConnectException: Connection refused")


def test_http_status_classification_and_ignore_1xx() -> None:
    assert classify_http_status(http_check(), 200) == (True, None)
    assert classify_http_status(http_check(), 399) == (True, None)
    assert classify_http_status(http_check(), 102) == (False, "102 Processing")
    assert classify_http_status(http_check(ignoreHttp1xx=True), 102) == (False, None)
    https = http_check(protocol="HTTPS", ignoreHttp1xx=True)
    assert classify_http_status(https, 102) == (False, "102 Processing")  # HTTPS never ignores
    assert classify_http_status(http_check(), 599, "Weird") == (False, "599 Weird")


def self_signed(tmp_path: Path) -> ssl.SSLContext:
    if shutil.which("openssl") is None:
        pytest.skip("openssl not available")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            "/CN=elsewhere.invalid",
            "-days",
            "1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    return ctx


def test_https_probe_skips_certificate_verification(tmp_path: Path) -> None:
    ctx = self_signed(tmp_path)

    async def main() -> tuple[Any, Any]:
        async with http_server(basic_handler, ssl_context=ctx) as port:
            ok = await probe(
                http_check(protocol="HTTPS", path="/ok"),
                host="127.0.0.1",
                ports=[port],
                env={},
                cwd=None,
                timeout=0.5,
            )
            fail = await probe(
                http_check(protocol="MESOS_HTTPS", path="/fail"),
                host="127.0.0.1",
                ports=[port],
                env={},
                cwd=None,
                timeout=0.5,
            )
        return ok, fail

    ok, fail = run(main())
    assert ok == (True, None)
    assert fail == (False, "Unexpected HTTP response code: 500")


def test_tcp_probe_listener_and_closed_port() -> None:
    async def main() -> tuple[Any, Any, Any]:
        server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            up = await probe(
                normalize_health_check({"protocol": "TCP"}),
                host="127.0.0.1",
                ports=[port],
                env={},
                cwd=None,
                timeout=0.5,
            )
            fixed = await probe(
                normalize_health_check({"protocol": "MESOS_TCP", "port": port}),
                host="127.0.0.1",
                ports=[],
                env={},
                cwd=None,
                timeout=0.5,
            )
        down = await probe(
            normalize_health_check({"protocol": "TCP"}),
            host="127.0.0.1",
            ports=[free_port()],
            env={},
            cwd=None,
            timeout=0.5,
        )
        return up, fixed, down

    up, fixed, down = run(main())
    assert up == (True, None)
    assert fixed == (True, None)
    assert down == (False, "ConnectException: Connection refused (Connection refused)")


def test_probe_without_effective_port() -> None:
    result = run(
        probe(
            normalize_health_check({"protocol": "HTTP", "portIndex": 2}),
            host="127.0.0.1",
            ports=[1234],
            env={},
            cwd=None,
            timeout=0.5,
        )
    )
    assert result == (
        False,
        "UnsupportedOperationException: Health check failed: unable to get the task's "
        "effectivePort",
    )


def command(value: str, **fields: Any) -> dict[str, Any]:
    return normalize_health_check({"protocol": "COMMAND", "command": {"value": value}, **fields})


def test_command_probe_exit_codes_env_and_cwd(tmp_path: Path) -> None:
    async def main() -> list[tuple[bool, str | None]]:
        env = {"MARKER": "sandbox-env"}
        out = []
        for value in (
            "true",
            "false",
            "exit 3",
            'test "$MARKER" = sandbox-env && test -f here.txt',
        ):
            out.append(
                await probe(
                    command(value),
                    host="127.0.0.1",
                    ports=[],
                    env=env,
                    cwd=str(tmp_path),
                    timeout=0.8,
                )
            )
        return out

    (tmp_path / "here.txt").write_text("x")
    ok, false, three, env_cwd = run(main())
    assert ok == (True, None)
    assert false == (False, "Command returned: Exited with status 1")
    assert three == (False, "Command returned: Exited with status 3")
    assert env_cwd == (True, None)


def test_command_probe_timeout_kills_the_command(tmp_path: Path) -> None:
    marker = tmp_path / "survived"
    result = run(
        probe(
            command(f"sleep 0.5; touch {marker}", timeoutSeconds=7),
            host="127.0.0.1",
            ports=[],
            env={},
            cwd=None,
            timeout=0.1,
        )
    )
    assert result == (False, "Command timed out after 7secs")
    run(asyncio.sleep(0.6))
    assert not marker.exists()


# --------------------------------------------------------------------------- tracker


def tracker(check: dict[str, Any], started_at: float = 1000.0) -> HealthTracker:
    return HealthTracker(check, "app.instance-1", started_at, FastScale())


def test_tracker_json_before_any_result_has_nulls() -> None:
    t = tracker(http_check())
    assert t.alive() is None
    assert t.to_json() == {
        "alive": False,
        "consecutiveFailures": 0,
        "firstSuccess": None,
        "lastFailure": None,
        "lastSuccess": None,
        "lastFailureCause": None,
        "instanceId": "app.instance-1",
    }


def test_tracker_ignores_failures_in_grace_period_until_first_success() -> None:
    # gracePeriodSeconds 300 -> 0.3 wall seconds with the fast scale
    t = tracker(http_check(gracePeriodSeconds=300, maxConsecutiveFailures=1))
    assert t.record(False, "500 Internal Server Error", 1000.1) is None
    assert t.alive() is None and t.consecutive_failures == 0
    assert t.record(True, None, 1000.2) is None
    assert t.alive() is True
    # after a first success, failures count even inside the grace period
    assert t.record(False, "500 Internal Server Error", 1000.25) is None
    assert t.alive() is False and t.consecutive_failures == 1
    doc = t.to_json()
    assert doc["lastFailureCause"] == "500 Internal Server Error"
    assert TIMESTAMP.match(doc["firstSuccess"]) and TIMESTAMP.match(doc["lastFailure"])
    # outside the grace period the failure is counted: failure 2 with max 1 kills
    assert t.record(False, "503 Service Unavailable", 1000.5) == "kill"
    assert t.kill_reason == "500 Internal Server Error"  # cause known before this failure


def test_tracker_kills_on_failure_after_max_consecutive_failures() -> None:
    t = tracker(http_check(gracePeriodSeconds=0, maxConsecutiveFailures=3))
    decisions = [t.record(False, f"cause {i}", 1001 + i) for i in range(4)]
    assert decisions == [None, None, None, "kill"]
    assert t.consecutive_failures == 4
    assert t.kill_reason == "cause 2"
    assert t.alive() is False
    # a success resets the count
    t.record(True, None, 1010)
    assert t.consecutive_failures == 0 and t.alive() is True
    assert t.to_json()["lastFailureCause"] == "cause 3"


def test_tracker_zero_max_failures_never_kills() -> None:
    t = tracker(http_check(gracePeriodSeconds=0, maxConsecutiveFailures=0))
    assert all(t.record(False, "x", 1001 + i) is None for i in range(10))


def test_tracker_ignored_result_changes_nothing() -> None:
    t = tracker(http_check(gracePeriodSeconds=0))
    t.record(True, None, 1001)
    assert t.record(False, None, 1002) is None
    assert t.alive() is True and t.last_failure is None


def test_tracker_mesos_level_semantics() -> None:
    t = tracker(command("false", gracePeriodSeconds=0, maxConsecutiveFailures=3))
    assert [
        t.record(False, "Command returned: Exited with status 1", 1001 + i) for i in range(3)
    ] == [None, None, "kill"]
    # Marathon only saw the first failure and the killing one, with an empty cause
    assert t.consecutive_failures == 2
    assert t.to_json()["lastFailureCause"] == ""
    assert t.kill_reason == "Command returned: Exited with status 1"

    zero = tracker(command("false", gracePeriodSeconds=0, maxConsecutiveFailures=0))
    assert zero.record(False, "boom", 1001) == "kill"

    graced = tracker(command("false", gracePeriodSeconds=300, maxConsecutiveFailures=0))
    assert graced.record(False, "boom", 1000.1) is None


# --------------------------------------------------------------------------- runner


def test_runner_reports_changes_and_kills() -> None:
    state = {"healthy": True}

    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(status=200 if state["healthy"] else 503)

    async def main() -> tuple[list[Any], list[Any], list[Any], bool | None]:
        changes: list[tuple[str, int, bool | None]] = []
        kills: list[tuple[str, str]] = []
        async with http_server(handler) as port:
            runner = HealthRunner(
                [
                    {
                        "protocol": "HTTP",
                        "intervalSeconds": 20,
                        "gracePeriodSeconds": 0,
                        "maxConsecutiveFailures": 2,
                        "timeoutSeconds": 100,
                    }
                ],
                instance_id="app.instance-1",
                host="127.0.0.1",
                ports=[port],
                env={},
                cwd=None,
                ts=FastScale(),
                on_change=lambda *a: changes.append(a),
                on_kill=lambda *a: kills.append(a),
                started_at=0.0,
            )
            runner.start()
            await wait_for(lambda: bool(changes))
            healthy_then = runner.healthy()
            first = runner.results()
            state["healthy"] = False
            await wait_for(lambda: bool(kills))
            await runner.stop()
        return changes, kills, first, healthy_then

    changes, kills, first, healthy_then = run(main())
    assert healthy_then is True
    assert first[0]["alive"] is True and first[0]["lastFailure"] is None
    assert changes[:2] == [("app.instance-1", 0, True), ("app.instance-1", 0, False)]
    assert kills == [("app.instance-1", "503 Service Unavailable")]


def test_runner_command_check_and_healthy_states(tmp_path: Path) -> None:
    async def main() -> tuple[bool | None, bool | None, list[Any]]:
        runner = HealthRunner(
            [
                {
                    "protocol": "COMMAND",
                    "command": {"value": "test -f ok"},
                    "delaySeconds": 0,
                    "intervalSeconds": 20,
                    "gracePeriodSeconds": 0,
                    "maxConsecutiveFailures": 0,
                }
            ],
            instance_id="app.i",
            host="127.0.0.1",
            ports=[],
            env={},
            cwd=str(tmp_path),
            ts=FastScale(),
            on_change=lambda *a: None,
            on_kill=lambda *a: None,
            started_at=0.0,
        )
        before = runner.healthy()
        (tmp_path / "ok").write_text("")
        runner.start()
        await wait_for(lambda: runner.healthy() is not None)
        after = runner.healthy()
        results = runner.results()
        await runner.stop()
        return before, after, results

    before, after, results = run(main())
    assert before is None
    assert after is True
    assert results[0]["instanceId"] == "app.i" and results[0]["alive"] is True


async def wait_for(cond: Callable[[], bool], limit: float = 2.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while not cond():
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


# --------------------------------------------------------------------------- readiness


def test_readiness_polls_until_ready_and_preserves_response() -> None:
    calls = {"n": 0}

    async def handler(request: web.Request) -> web.StreamResponse:
        calls["n"] += 1
        if calls["n"] < 3:
            return web.json_response({"state": "warming"}, status=503)
        return web.Response(text="ready", content_type="text/plain")

    async def main() -> list[dict[str, Any]]:
        results: list[dict[str, Any]] = []
        async with http_server(handler) as port:
            await run_readiness(
                {
                    "name": "warm",
                    "path": "/v1/plan",
                    "portName": "api",
                    "intervalSeconds": 10,
                    "timeoutSeconds": 5,
                    "preserveLastResponse": True,
                },
                host="127.0.0.1",
                ports=[1, port],
                port_names=[None, "api"],
                ts=FastScale(),
                on_result=results.append,
                stop=asyncio.Event(),
                task_id="app.instance-1",
            )
        return results

    results = run(main())
    assert len(results) == 3
    assert results[0] == {
        "name": "warm",
        "taskId": "app.instance-1",
        "ready": False,
        "lastResponse": {
            "status": 503,
            "contentType": "application/json",
            "body": '{"state": "warming"}',
        },
    }
    assert results[-1]["ready"] is True
    assert results[-1]["lastResponse"] == {
        "status": 200,
        "contentType": "text/plain",
        "body": "ready",
    }


def test_readiness_without_preserve_and_custom_codes_and_stop() -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(status=204)

    async def main() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        ready: list[dict[str, Any]] = []
        never: list[dict[str, Any]] = []
        async with http_server(handler) as port:
            await run_readiness(
                {"portName": "http-api", "httpStatusCodesForReady": [204]},
                host="127.0.0.1",
                ports=[port],
                port_names=["http-api"],
                ts=FastScale(),
                on_result=ready.append,
                stop=asyncio.Event(),
            )
            stop = asyncio.Event()
            task = asyncio.create_task(
                run_readiness(
                    {"portName": "http-api", "intervalSeconds": 100},
                    host="127.0.0.1",
                    ports=[port],
                    port_names=["http-api"],
                    ts=FastScale(),
                    on_result=never.append,
                    stop=stop,
                )
            )
            await wait_for(lambda: len(never) >= 2)
            stop.set()
            await asyncio.wait_for(task, 1)
        return ready, never

    ready, never = run(main())
    assert ready == [{"name": "readinessCheck", "taskId": "", "ready": True}]
    assert all(r == {"name": "readinessCheck", "taskId": "", "ready": False} for r in never)


def test_readiness_unreachable_and_unknown_port_name() -> None:
    async def main() -> list[dict[str, Any]]:
        results: list[dict[str, Any]] = []
        stop = asyncio.Event()

        def collect(result: dict[str, Any]) -> None:
            results.append(result)
            stop.set()

        port = free_port()
        await run_readiness(
            {"portName": "api", "preserveLastResponse": True},
            host="127.0.0.1",
            ports=[port],
            port_names=["api"],
            ts=FastScale(),
            on_result=collect,
            stop=stop,
            task_id="t",
        )
        with pytest.raises(ValueError, match="no port definition for port name 'nope'"):
            await run_readiness(
                {"portName": "nope"},
                host="127.0.0.1",
                ports=[port],
                port_names=["api"],
                ts=FastScale(),
                on_result=collect,
                stop=asyncio.Event(),
            )
        return results

    (result,) = run(main())
    assert result["ready"] is False
    response = result["lastResponse"]
    assert response["status"] == 504 and response["contentType"] == "text/plain"
    assert response["body"].startswith("Marathon could not query http://127.0.0.1:")
    assert "Connection refused" in response["body"]
