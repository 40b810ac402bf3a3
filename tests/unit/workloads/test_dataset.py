"""Lab data: Faker records, load and verify against a real `playground workload kv` process."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from playground.workloads import dataset
from playground.workloads.dataset import DatasetError, Record
from tests.conftest import free_port


def start_kv(data: Path, *args: str) -> tuple[subprocess.Popen[str], str]:
    """A `playground workload kv` on an ephemeral loopback port, and its URL."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "playground",
            "workload",
            "kv",
            "--port",
            "0",
            "--data",
            str(data),
            *args,
        ],
        env=dict(os.environ),
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


@pytest.fixture
def kv(tmp_path: Path) -> Iterator[str]:
    proc, url = start_kv(tmp_path / "kv", "--durable")
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def test_generate_is_deterministic_for_a_seed_and_has_customer_fields() -> None:
    a = dataset.generate(50, seed=7)
    assert a == dataset.generate(50, seed=7)
    b = dataset.generate(50, seed=8)
    assert [r.value for r in a] != [r.value for r in b]
    assert [r.key for r in a] == [f"customers-{i:06d}" for i in range(1, 51)]
    doc = json.loads(a[0].value)
    assert {"id", "name", "email", "phone", "company", "address", "created_at"} <= set(doc)
    assert doc["id"] == "customers-000001" and "@" in doc["email"]
    assert {"street", "city", "postcode"} <= set(doc["address"])
    assert "2019-01-01" <= doc["created_at"] < "2025-01-02"
    assert len({json.loads(r.value)["email"] for r in a}) > 40  # not one value repeated
    assert a[0].value == dataset.encode(doc)  # canonical JSON
    assert a[0].sha256 == hashlib.sha256(a[0].value).hexdigest()
    assert dataset.generate(0, seed=1) == []
    assert dataset.generate(3, seed=1, prefix="orders")[2].key == "orders-000003"


@pytest.mark.parametrize("prefix", ["", "../etc", "a/b", "-x", "x" * 65, "customers-eu"])
def test_an_invalid_prefix_is_refused(prefix: str) -> None:
    with pytest.raises(DatasetError, match="invalid prefix"):
        dataset.generate(1, prefix=prefix)


def test_a_negative_count_is_refused() -> None:
    with pytest.raises(DatasetError, match="cannot generate -1 records"):
        dataset.generate(-1)


def test_overall_checksum_depends_on_content_not_order() -> None:
    d = {"b": "2" * 64, "a": "1" * 64}
    assert dataset.overall_checksum(d) == dataset.overall_checksum(dict(sorted(d.items())))
    assert dataset.overall_checksum(d) != dataset.overall_checksum({**d, "a": "3" * 64})
    assert dataset.overall_checksum(d) != dataset.overall_checksum({"a": "1" * 64})


def test_load_then_verify_round_trip(kv: str) -> None:
    """300 records and a manifest land in the kv; verify finds every one, same checksum."""
    records = dataset.generate(300, seed=7)
    seen: list[tuple[int, int]] = []
    result = dataset.load(kv, records, seed=7, progress=lambda d, t: seen.append((d, t)))
    assert result.count == 300 and result.durable is True
    assert result.manifest_key == "_manifest.customers"
    assert [d for d, _ in seen] == list(range(1, 301)) and {t for _, t in seen} == {300}
    stats = httpx.get(f"{kv}/stats").json()
    assert stats["keys"] == 301  # the records and the manifest
    r = httpx.get(f"{kv}/v1/kv/customers-000123")
    assert r.content == records[122].value

    manifest = json.loads(httpx.get(f"{kv}/v1/kv/_manifest.customers").content)
    assert manifest["count"] == 300 and manifest["seed"] == 7
    assert manifest["checksum"] == result.checksum
    assert manifest["records"]["customers-000001"] == records[0].sha256

    v = dataset.verify(kv)
    assert v.ok and v.count == 300 and v.missing == [] and v.changed == []
    assert v.checksum == v.expected_checksum == result.checksum
    assert v.as_json()["present"] == 300


def test_verify_names_missing_and_changed_records(kv: str) -> None:
    dataset.load(kv, dataset.generate(40, seed=3), seed=3)
    assert httpx.delete(f"{kv}/v1/kv/customers-000005").status_code == 200
    assert httpx.put(f"{kv}/v1/kv/customers-000017", content=b'{"name":"x"}').status_code == 200
    assert httpx.put(f"{kv}/v1/kv/customers-000040", content=b"").status_code == 200
    v = dataset.verify(kv)
    assert not v.ok
    assert v.missing == ["customers-000005"]
    assert v.changed == ["customers-000017", "customers-000040"]
    assert v.count == 40 and v.checksum != v.expected_checksum
    # Records the manifest does not list do not matter.
    httpx.put(f"{kv}/v1/kv/customers-000005", content=dataset.generate(5, seed=3)[4].value)
    httpx.put(f"{kv}/v1/kv/customers-000017", content=dataset.generate(17, seed=3)[16].value)
    httpx.put(f"{kv}/v1/kv/customers-000040", content=dataset.generate(40, seed=3)[39].value)
    httpx.put(f"{kv}/v1/kv/customers-999999", content=b"extra")
    assert dataset.verify(kv).ok


def test_two_prefixes_are_two_data_sets(kv: str) -> None:
    dataset.load(kv, dataset.generate(10, seed=1, prefix="eu"), prefix="eu")
    dataset.load(kv, dataset.generate(20, seed=2, prefix="us"), prefix="us")
    assert dataset.verify(kv, "eu").count == 10 and dataset.verify(kv, "us").count == 20
    httpx.delete(f"{kv}/v1/kv/us-000001")
    assert dataset.verify(kv, "eu").ok and not dataset.verify(kv, "us").ok


def test_verify_without_a_manifest_is_an_error(kv: str) -> None:
    with pytest.raises(DatasetError, match=r"no manifest _manifest\.customers") as err:
        dataset.verify(kv)
    assert err.value.hint and "playground data load" in err.value.hint


def test_an_altered_or_foreign_manifest_is_an_error(kv: str) -> None:
    records = dataset.generate(5, seed=1)
    dataset.load(kv, records)
    doc = json.loads(httpx.get(f"{kv}/v1/kv/_manifest.customers").content)
    doc["records"]["customers-000002"] = "0" * 64  # hides a change to the record
    httpx.put(f"{kv}/v1/kv/_manifest.customers", content=json.dumps(doc).encode())
    with pytest.raises(DatasetError, match="was altered"):
        dataset.verify(kv)
    httpx.put(f"{kv}/v1/kv/_manifest.customers", content=b"not json")
    with pytest.raises(DatasetError, match="not valid JSON"):
        dataset.verify(kv)
    httpx.put(f"{kv}/v1/kv/_manifest.customers", content=b'{"kind": "other"}')
    with pytest.raises(DatasetError, match="not a data set manifest"):
        dataset.verify(kv)


def test_a_new_load_replaces_the_manifest(kv: str) -> None:
    dataset.load(kv, dataset.generate(30, seed=1), seed=1)
    second = dataset.load(kv, dataset.generate(10, seed=2), seed=2)
    v = dataset.verify(kv)
    assert v.ok and v.count == 10 and v.checksum == second.checksum


def test_a_full_volume_stops_the_load_with_the_hint_to_resize(tmp_path: Path) -> None:
    """A kv with a size limit answers 507: load fails naming it, and writes no manifest."""
    proc, url = start_kv(tmp_path / "small", "--durable", "--size-limit", "20000")
    try:
        dataset.load(url, dataset.generate(3, seed=5), seed=5)  # an older, complete set
        with pytest.raises(DatasetError) as err:
            dataset.load(url, dataset.generate(200, seed=9), seed=9, concurrency=4)
        msg = str(err.value)
        assert "volume is full" in msg and "HTTP 507" in msg, msg
        assert "no manifest written" in msg
        assert err.value.hint and "playground volume resize" in err.value.hint
        # The old manifest is gone (it no longer describes the data): verify says so.
        assert httpx.get(f"{url}/v1/kv/_manifest.customers").status_code == 404
        with pytest.raises(DatasetError, match="no manifest"):
            dataset.verify(url)
    finally:
        proc.terminate()
        proc.wait(10)


def test_load_keeps_at_most_concurrency_writes_in_flight() -> None:
    in_flight = 0
    peak = 0
    lock = threading.Lock()

    def work(i: int) -> int:
        nonlocal in_flight, peak
        with lock:
            in_flight += 1
            peak = max(peak, in_flight)
        time.sleep(0.005)
        with lock:
            in_flight -= 1
        return i * 2

    assert dataset._run_bounded(range(100), work, 4, 100, None) == [i * 2 for i in range(100)]
    assert 2 <= peak <= 4


def test_the_first_failure_stops_new_work() -> None:
    started: list[int] = []

    def work(i: int) -> None:
        started.append(i)
        if i == 10:
            raise DatasetError("refused")
        time.sleep(0.002)

    with pytest.raises(DatasetError, match="refused"):
        dataset._run_bounded(range(1000), work, 3, 1000, None)
    assert len(started) < 20


class _NotKv(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(404)
        self.end_headers()
        self.wfile.write(b"nope")

    def log_message(self, *args: object) -> None:
        pass


def test_a_service_that_is_not_kv_is_named() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _NotKv)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        with pytest.raises(DatasetError, match="is not a kv workload") as err:
            dataset.load(url, [Record("customers-000001", b"{}")])
        assert "playground workload kv" in (err.value.hint or "")
        with pytest.raises(DatasetError, match="is not a kv workload"):
            dataset.verify(url)
    finally:
        server.shutdown()
        server.server_close()


def test_an_unreachable_kv_is_named_after_the_ready_timeout() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    start = time.monotonic()
    with pytest.raises(DatasetError, match=f"cannot reach the kv service at {url}"):
        dataset.verify(url, ready_timeout=0.5)
    assert 0.4 <= time.monotonic() - start < 5
