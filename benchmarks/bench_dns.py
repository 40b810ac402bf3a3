"""Benchmarks of the DNS beside the master (mesos-dns): query latency and refresh cost.

Run with ``.venv/bin/python benchmarks/bench_dns.py [--runs N] [--queries Q]``; it prints
a Markdown table and writes ``benchmarks/results/dns.json``. Each run starts the
``default`` topology (time scale 10) in a fresh state directory under ``.cache/bench``
with the ``playground`` command, deploys ``/prod/web`` (3 instances, one named port),
waits until the DNS answers its 3 tasks, then, from one UDP socket, one question at a
time (the next one sent when the answer is in):

* ``a``: Q ``A`` questions for ``web-prod.marathon.mesos`` (3 answers each);
* ``srv``: Q ``SRV`` questions for ``_web-prod._tcp.marathon.mesos`` (3 answers and 3
  additional A records each);
* ``srv_tcp``: Q/4 ``SRV`` questions over one TCP connection;
* ``generate``: the time to build the record set from the live ``/master/state``
  (what every refresh costs the master process, besides one HTTP GET), and from a
  synthetic state of 500 running tasks (50 apps of 10, each with a named port).

Latencies are round trips measured in this process (``time.perf_counter`` around send
and receive of pre-packed questions), so they include the client's own system calls.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import socket
import statistics
import struct
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from dnslib import DNSRecord

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.bench_cluster import cli  # noqa: E402
from playground.dns import records  # noqa: E402
from playground.dns.config import DnsConfig  # noqa: E402
from tests.support.dns_state import MASTERS, master_state, task  # noqa: E402

A_NAME = "web-prod.marathon.mesos"
SRV_NAME = "_web-prod._tcp.marathon.mesos"


def wait(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise SystemExit(f"timed out waiting for {what}")


def answers(data: bytes) -> int:
    return len(DNSRecord.parse(data).rr)


def udp_latencies(host: str, port: int, name: str, qtype: str, n: int) -> list[float]:
    query = DNSRecord.question(name, qtype).pack()
    out = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(2.0)
        s.connect((host, port))
        for _ in range(20):  # warm-up
            s.send(query)
            s.recv(4096)
        for _ in range(n):
            t0 = time.perf_counter()
            s.send(query)
            data = s.recv(4096)
            out.append(time.perf_counter() - t0)
    if answers(data) != 3:
        raise SystemExit(f"{qtype} {name}: expected 3 answers, got {answers(data)}")
    return out


def tcp_latencies(host: str, port: int, name: str, qtype: str, n: int) -> list[float]:
    query = DNSRecord.question(name, qtype).pack()
    framed = struct.pack("!H", len(query)) + query
    out = []
    with socket.create_connection((host, port), timeout=2.0) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        rfile = s.makefile("rb")
        data = b""
        for i in range(n + 20):
            t0 = time.perf_counter()
            s.sendall(framed)
            (size,) = struct.unpack("!H", rfile.read(2))
            data = rfile.read(size)
            if i >= 20:
                out.append(time.perf_counter() - t0)
    if answers(data) != 3:
        raise SystemExit(f"{qtype} {name} over TCP: expected 3 answers, got {answers(data)}")
    return out


def summary(samples: list[float]) -> dict[str, float]:
    ms = sorted(x * 1000 for x in samples)
    return {
        "median_ms": statistics.median(ms),
        "p99_ms": ms[min(len(ms) - 1, round(0.99 * len(ms)) - 1)],
        "max_ms": ms[-1],
    }


def generate_500() -> tuple[float, int]:
    """Median time (ms) to build the records of 500 running tasks, and their number."""
    state = master_state()
    state["frameworks"][0]["tasks"] = [
        task(
            f"app{i % 50}.instance-{i}",
            f"app{i % 50}.grp",
            i % 3,
            ports=f"[{31000 + i}-{31000 + i}]",
            discovery={
                "visibility": "FRAMEWORK",
                "name": f"app{i % 50}.grp",
                "ports": {"ports": [{"number": 31000 + i, "protocol": "tcp", "name": "http"}]},
            },
        )
        for i in range(500)
    ]
    config = DnsConfig(masters=list(MASTERS))
    samples = []
    for _ in range(20):
        t0 = time.perf_counter()
        rs = records.generate(state, config)
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples) * 1000, len(rs)


def one_run(state: Path, queries: int) -> dict[str, Any]:
    shutil.rmtree(state, ignore_errors=True)
    cli("up", "--state-dir", str(state))
    out: dict[str, Any] = {}
    try:
        st = json.loads(cli("status", "--json", "--state-dir", str(state)))
        eps = st["endpoints"]
        host, port = eps["dns"].rsplit(":", 1)
        with httpx.Client(base_url=eps["marathon"], timeout=30) as c:
            wait(lambda: c.get("/v2/info").json().get("frameworkId"), 30, "Marathon")
            c.post(
                "/v2/apps",
                json={
                    "id": "/prod/web",
                    "cmd": "sleep 1000",
                    "cpus": 0.01,
                    "mem": 8,
                    "instances": 3,
                    "portDefinitions": [{"port": 0, "name": "http"}],
                },
            ).raise_for_status()
        with httpx.Client(timeout=5) as h:
            wait(
                lambda: (
                    len(h.get(f"{eps['dns_http']}/v1/hosts/{A_NAME}").json()) == 3
                    and h.get(f"{eps['dns_http']}/v1/hosts/{A_NAME}").json()[0]["ip"] != ""
                ),
                60,
                "the DNS to list 3 tasks",
            )
            state_json = h.get(f"{eps['master']}/master/state", follow_redirects=True).json()
            config = DnsConfig(masters=h.get(f"{eps['dns_http']}/v1/config").json()["Masters"])
        out["a"] = summary(udp_latencies(host, int(port), A_NAME, "A", queries))
        out["srv"] = summary(udp_latencies(host, int(port), SRV_NAME, "SRV", queries))
        out["srv_tcp"] = summary(tcp_latencies(host, int(port), SRV_NAME, "SRV", queries // 4))
        gen = []
        for _ in range(50):
            t0 = time.perf_counter()
            rs = records.generate(state_json, config)
            gen.append(time.perf_counter() - t0)
        out["generate_ms"] = statistics.median(gen) * 1000
        out["records"] = len(rs)
    finally:
        cli("destroy", "--state-dir", str(state))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--queries", type=int, default=2000)
    args = ap.parse_args()
    state = ROOT / ".cache" / "bench" / "dns"
    runs = [one_run(state, args.queries) for _ in range(args.runs)]
    gen_500, records_500 = generate_500()

    def med(kind: str, key: str) -> float:
        return statistics.median(r[kind][key] for r in runs)

    results = ROOT / "benchmarks" / "results"
    results.mkdir(parents=True, exist_ok=True)
    (results / "dns.json").write_text(
        json.dumps(
            {
                "date": time.strftime("%Y-%m-%d"),
                "machine": f"{platform.machine()}, Python {platform.python_version()}",
                "queries": args.queries,
                "runs": runs,
                "generate_500_tasks_ms": gen_500,
                "records_500_tasks": records_500,
            },
            indent=2,
        )
    )
    print(
        f"| figure ({args.queries} queries a run, median of {args.runs} runs) | median | p99 | target |"
    )
    print("|---|---|---|---|")
    print(
        f"| UDP A `{A_NAME}` (3 answers) | {med('a', 'median_ms'):.3f} ms | {med('a', 'p99_ms'):.3f} ms | median <= 2 ms |"
    )
    print(
        f"| UDP SRV `{SRV_NAME}` (3 answers + 3 additional) | {med('srv', 'median_ms'):.3f} ms | {med('srv', 'p99_ms'):.3f} ms | median <= 2 ms |"
    )
    print(
        f"| TCP SRV, one connection ({args.queries // 4} queries) | {med('srv_tcp', 'median_ms'):.3f} ms | {med('srv_tcp', 'p99_ms'):.3f} ms | - |"
    )
    gen = statistics.median(r["generate_ms"] for r in runs)
    print(f"| records from `/master/state` ({runs[0]['records']} records) | {gen:.2f} ms | | - |")
    print(f"| records of 500 running tasks ({records_500} records) | {gen_500:.1f} ms | | - |")


if __name__ == "__main__":
    main()
