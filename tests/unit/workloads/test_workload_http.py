"""The kv and web workloads over real HTTP on loopback."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port, playground_cmd


def start(
    args: list[str], env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen(
        [*playground_cmd(), "workload", *args, "--port", str(port)],
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            httpx.get(url + "/health", timeout=1)
            return proc, url
        except httpx.HTTPError:
            time.sleep(0.05)
    proc.kill()
    raise AssertionError(proc.stdout.read().decode() if proc.stdout else "did not start")


@pytest.fixture()
def kv(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    proc, url = start(["kv", "--data", str(tmp_path / "d"), "--durable"])
    yield url, tmp_path / "d"
    proc.terminate()
    proc.wait(5)


def test_kv_contract(kv: tuple[str, Path]) -> None:
    """PUT answers 201 then 200, GET returns bytes, list is sorted, DELETE then 404, stats count records."""
    url, _ = kv
    assert httpx.put(f"{url}/v1/kv/b", content=b"2").status_code == 201
    assert httpx.put(f"{url}/v1/kv/a", content=b"1").status_code == 201
    r = httpx.put(f"{url}/v1/kv/a", content=b"one")
    assert r.status_code == 200 and r.json() == {"key": "a", "version": 3}
    assert httpx.get(f"{url}/v1/kv/a").content == b"one"
    assert httpx.get(f"{url}/v1/kv").json() == {"keys": ["a", "b"]}
    assert httpx.get(f"{url}/v1/kv", params={"prefix": "b"}).json() == {"keys": ["b"]}
    assert httpx.delete(f"{url}/v1/kv/b").json() == {"key": "b", "deleted": True}
    r = httpx.get(f"{url}/v1/kv/b")
    assert r.status_code == 404 and r.json() == {"message": "key not found: b"}
    stats = httpx.get(f"{url}/stats").json()
    assert stats["records"] == 4 and stats["keys"] == 1 and stats["durable"] is True
    assert httpx.put(f"{url}/v1/kv/bad%20key", content=b"x").status_code == 400


def test_kv_data_survives_sigkill(tmp_path: Path) -> None:
    """Everything acknowledged by a durable kv is there after a SIGKILL and restart."""
    data = tmp_path / "d"
    proc, url = start(["kv", "--data", str(data), "--durable"])
    for i in range(50):
        assert httpx.put(f"{url}/v1/kv/k{i}", content=str(i).encode()).status_code == 201
    before = httpx.get(f"{url}/stats").json()["checksum"]
    proc.kill()
    proc.wait(5)
    proc, url = start(["kv", "--data", str(data)])
    try:
        assert httpx.get(f"{url}/stats").json()["checksum"] == before
        assert len(httpx.get(f"{url}/v1/kv").json()["keys"]) == 50
    finally:
        proc.terminate()
        proc.wait(5)


def test_web_answers_50_concurrent_clients() -> None:
    """web answers each of 50 concurrent requests with its task id, dropping none."""
    proc, url = start(["web"], env={"MESOS_TASK_ID": "web.1234"})
    try:

        def one(_: int) -> tuple[int, str]:
            with httpx.Client(timeout=10) as c:
                r = c.get(url + "/anything")
                return r.status_code, r.text

        with ThreadPoolExecutor(50) as pool:
            results = list(pool.map(one, range(50)))
        assert results == [(200, "web.1234\n")] * 50
    finally:
        proc.terminate()
        proc.wait(5)


def test_workload_without_port_is_a_usage_error() -> None:
    """Without --port or $PORT0 the workload exits 2 and says how to give a port."""
    env = {k: v for k, v in os.environ.items() if k != "PORT0"}
    cp = subprocess.run(
        [*playground_cmd(), "workload", "web"], capture_output=True, text=True, env=env, timeout=30
    )
    assert cp.returncode == 2 and "PORT0" in cp.stderr
