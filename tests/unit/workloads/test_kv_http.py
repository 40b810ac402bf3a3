"""The kv service over real HTTP on loopback: the contract, errors, durability, the CLI."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import test_utils
from click.testing import CliRunner

from playground.cli.workload import workload
from playground.workloads.kv import make_app
from playground.workloads.kvlog import KVLog, Record

Client = test_utils.TestClient[Any, Any]
Scenario = Callable[[Client], Awaitable[None]]


def serve(log: KVLog, scenario: Scenario, task_id: str | None = None) -> None:
    """Run ``scenario`` against the kv app served on 127.0.0.1 with an ephemeral port."""

    async def main() -> None:
        async with test_utils.TestClient(test_utils.TestServer(make_app(log, task_id))) as client:
            await scenario(client)

    asyncio.run(main())


def test_put_get_delete_list_contract(tmp_path: Path) -> None:
    """PUT answers 201 then 200 with the version, GET the raw bytes, DELETE 200 then 404, the list is sorted and filtered."""
    log = KVLog(tmp_path)

    async def scenario(c: Client) -> None:
        r = await c.put("/v1/kv/b", data=b"2")
        assert r.status == 201 and await r.json() == {"key": "b", "version": 1}
        assert (await c.put("/v1/kv/a", data=b"1")).status == 201
        r = await c.put("/v1/kv/a", data=b"\x00one\xff")
        assert r.status == 200 and await r.json() == {"key": "a", "version": 3}
        r = await c.get("/v1/kv/a")
        assert r.status == 200 and await r.read() == b"\x00one\xff"
        assert r.content_type == "application/octet-stream"
        r = await c.get("/v1/kv/nope")
        assert r.status == 404 and await r.json() == {"message": "key not found: nope"}
        for k in ("c.1", "c.2", "c_3"):
            await c.put(f"/v1/kv/{k}", data=b"")
        assert await (await c.get("/v1/kv")).json() == {"keys": ["a", "b", "c.1", "c.2", "c_3"]}
        r = await c.get("/v1/kv", params={"prefix": "c.", "limit": "1"})
        assert await r.json() == {"keys": ["c.1"]}
        r = await c.get("/v1/kv", params={"prefix": "", "limit": ""})
        assert len((await r.json())["keys"]) == 5
        r = await c.delete("/v1/kv/b")
        assert r.status == 200 and await r.json() == {"key": "b", "deleted": True}
        r = await c.delete("/v1/kv/b")
        assert r.status == 404 and await r.json() == {"message": "key not found: b"}
        assert (await c.get("/v1/kv/b")).status == 404

    serve(log, scenario)
    assert log.record_count == 7


@pytest.mark.parametrize(
    "path",
    [
        "/v1/kv/bad%20key",
        "/v1/kv/a/b",
        "/v1/kv/a%2Fb",
        "/v1/kv/",
        "/v1/kv/caf%C3%A9",
        "/v1/kv/" + "k" * 251,
    ],
)
def test_keys_outside_the_url_safe_alphabet_are_400(tmp_path: Path, path: str) -> None:
    """PUT, GET and DELETE of a key outside ^[A-Za-z0-9._~-]{1,250}$ answer 400 with a JSON message naming the alphabet."""
    log = KVLog(tmp_path)

    async def scenario(c: Client) -> None:
        for method in ("PUT", "GET", "DELETE"):
            r = await c.request(method, path, data=b"x" if method == "PUT" else None)
            assert r.status == 400, (method, path)
            message = (await r.json())["message"]
            assert "A-Z a-z 0-9" in message and "250" in message

    serve(log, scenario)
    assert log.record_count == 0


def test_longest_key_and_every_allowed_character_are_accepted(tmp_path: Path) -> None:
    """A 250-character key and a key using every allowed character are stored and read back."""
    log = KVLog(tmp_path)
    keys = ["k" * 250, "AZaz09._~-"]

    async def scenario(c: Client) -> None:
        for k in keys:
            assert (await c.put(f"/v1/kv/{k}", data=k.encode())).status == 201
            assert await (await c.get(f"/v1/kv/{k}")).read() == k.encode()

    serve(log, scenario)


def test_bad_limit_and_unknown_routes_answer_json_errors(tmp_path: Path) -> None:
    """A non-integer or negative limit is a 400, and unknown paths or methods get JSON 404/405 messages."""
    log = KVLog(tmp_path)

    async def scenario(c: Client) -> None:
        for bad in ("x", "-1", "1.5"):
            r = await c.get("/v1/kv", params={"limit": bad})
            assert r.status == 400 and "limit" in (await r.json())["message"]
        r = await c.get("/nowhere")
        assert r.status == 404 and "message" in await r.json()
        r = await c.post("/v1/kv/a", data=b"x")
        assert r.status == 405 and "message" in await r.json()

    serve(log, scenario)


def test_health_and_stats(tmp_path: Path) -> None:
    """/health is ok and /stats reports records, keys, checksum, log bytes, mode, truncated tail, limit, task id and volume."""
    with KVLog(tmp_path) as seed:
        seed.put("a", b"1")
    with (tmp_path / "data.log").open("ab") as fh:
        fh.write(b"\x4b\x56")  # a torn header
    log = KVLog(tmp_path, durable=True, size_limit_bytes=4096)

    async def scenario(c: Client) -> None:
        r = await c.get("/health")
        assert r.status == 200 and await r.json() == {"status": "ok"}
        await c.put("/v1/kv/b", data=b"2")
        await c.put("/v1/kv/b", data=b"22")
        stats = await (await c.get("/stats")).json()
        assert stats == {
            "records": 3,
            "keys": 2,
            "checksum": log.checksum(),
            "bytes": (tmp_path / "data.log").stat().st_size,
            "durable": True,
            "truncated_bytes": 2,
            "size_limit_bytes": 4096,
            "task_id": "kv.42",
            "volume": None,
        }

    serve(log, scenario, task_id="kv.42")


def test_stats_task_id_is_null_outside_a_task(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without $MESOS_TASK_ID, /stats reports task_id null and an unlimited volume as null."""
    monkeypatch.delenv("MESOS_TASK_ID", raising=False)

    async def scenario(c: Client) -> None:
        stats = await (await c.get("/stats")).json()
        assert stats["task_id"] is None and stats["size_limit_bytes"] is None
        assert stats["durable"] is False

    serve(KVLog(tmp_path), scenario)


def test_full_volume_is_507_and_resizing_cures_it(tmp_path: Path) -> None:
    """A write beyond the size limit answers 507 saying the volume is full and can be resized; after a resize it succeeds and nothing was lost."""
    log = KVLog(tmp_path, size_limit_bytes=100)

    async def scenario(c: Client) -> None:
        assert (await c.put("/v1/kv/a", data=b"1")).status == 201
        r = await c.put("/v1/kv/b", data=b"x" * 200)
        assert r.status == 507
        message = (await r.json())["message"]
        assert "volume is full" in message and "resized" in message
        assert (await c.get("/v1/kv/b")).status == 404
        log.set_size_limit(10_000)
        assert (await c.put("/v1/kv/b", data=b"x" * 200)).status == 201
        assert await (await c.get("/v1/kv/a")).read() == b"1"

    serve(log, scenario)


def test_durable_write_is_fsynced_before_the_response(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With durable=True every acknowledged PUT and DELETE was fsynced (then passed to after_sync) before the response."""
    events: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        events.append("fsync")
        real_fsync(fd)

    def hook(rec: Record) -> None:
        events.append(f"hook:{rec.version}")

    log = KVLog(tmp_path, durable=True, after_sync=hook)
    monkeypatch.setattr(os, "fsync", fsync)

    async def scenario(c: Client) -> None:
        await c.put("/v1/kv/a", data=b"1")
        assert events == ["fsync", "hook:1"]
        await c.delete("/v1/kv/a")
        assert events == ["fsync", "hook:1", "fsync", "hook:2"]

    serve(log, scenario)


def test_concurrent_writes_are_serialized(tmp_path: Path) -> None:
    """Thirty concurrent PUTs each get a distinct version and all land in the log."""
    log = KVLog(tmp_path, durable=True)

    async def scenario(c: Client) -> None:
        async def put(i: int) -> int:
            r = await c.put(f"/v1/kv/k{i:02d}", data=str(i).encode())
            assert r.status == 201
            return int((await r.json())["version"])

        versions = await asyncio.gather(*(put(i) for i in range(30)))
        assert sorted(versions) == list(range(1, 31))

    serve(log, scenario)
    log.close()
    assert len(KVLog(tmp_path).keys()) == 30


def start_kv(*args: str, env: dict[str, str] | None = None) -> tuple[subprocess.Popen[str], str]:
    """Start ``playground workload kv --port 0 ARGS`` and return it with its URL (from the banner)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "playground", "workload", "kv", "--port", "0", *args],
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    banner = proc.stdout.readline()
    if not banner.startswith("kv listening on http://127.0.0.1:"):
        proc.kill()
        _, err = proc.communicate(timeout=5)
        raise AssertionError(f"kv did not start: {banner!r} {err}")
    return proc, banner.split()[3]


def test_cli_kv_survives_sigkill_and_exits_0_on_sigterm(tmp_path: Path) -> None:
    """A durable kv keeps every acknowledged write across SIGKILL, keeps relative data in $MESOS_SANDBOX, and exits 0 on SIGTERM."""
    env = {"MESOS_SANDBOX": str(tmp_path), "MESOS_TASK_ID": "kv.7"}
    proc, url = start_kv("--data", "d", "--durable", env=env)
    try:
        with httpx.Client(base_url=url, timeout=5) as c:
            for i in range(40):
                assert c.put(f"/v1/kv/k{i}", content=str(i).encode()).status_code == 201
            before = c.get("/stats").json()
            assert before["task_id"] == "kv.7" and before["durable"] is True
    finally:
        proc.kill()
        proc.wait(5)
    assert (tmp_path / "d" / "data.log").stat().st_size == before["bytes"]

    proc, url = start_kv("--data", "d", env=env)
    try:
        with httpx.Client(base_url=url, timeout=5) as c:
            after = c.get("/stats").json()
            assert after["checksum"] == before["checksum"]
            assert after["records"] == 40 and after["truncated_bytes"] == 0
            assert c.get("/v1/kv/k39").content == b"39"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(5) == 0


def test_cli_kv_requires_a_port(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without --port or $PORT0 (or with a bad $PORT0) `workload kv` is a usage error (exit 2) explaining how to give a port."""
    monkeypatch.delenv("PORT0", raising=False)
    result = CliRunner().invoke(workload, ["kv"])
    assert result.exit_code == 2 and "PORT0" in result.output and "--port" in result.output
    monkeypatch.setenv("PORT0", "http")
    result = CliRunner().invoke(workload, ["kv"])
    assert result.exit_code == 2 and "PORT0" in result.output


def test_cli_kv_resolves_port_host_and_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`workload kv` takes $PORT0 and $HOST by default, resolves a relative --data in $MESOS_SANDBOX (else the cwd) and creates it."""
    calls: list[tuple[Any, ...]] = []
    monkeypatch.setattr("playground.workloads.kv.run_kv", lambda *a: calls.append(a))
    monkeypatch.setenv("PORT0", "31005")
    monkeypatch.setenv("HOST", "127.0.0.2")
    monkeypatch.setenv("MESOS_SANDBOX", str(tmp_path / "sandbox"))
    result = CliRunner().invoke(workload, ["kv", "--durable", "--size-limit", "1000"])
    assert result.exit_code == 0, result.output
    assert calls[-1] == ("127.0.0.2", 31005, tmp_path / "sandbox" / "data", True, 1000)
    assert (tmp_path / "sandbox" / "data").is_dir()

    monkeypatch.delenv("MESOS_SANDBOX")
    monkeypatch.delenv("HOST")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(workload, ["kv", "--port", "9", "--data", "rel/d"])
    assert result.exit_code == 0, result.output
    assert calls[-1] == ("127.0.0.1", 9, tmp_path / "rel" / "d", False, None)
    assert (tmp_path / "rel" / "d").is_dir()

    absolute = tmp_path / "abs"
    result = CliRunner().invoke(workload, ["kv", "--port", "9", "--data", str(absolute)])
    assert calls[-1][2] == absolute and absolute.is_dir()
