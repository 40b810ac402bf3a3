"""Benchmarks of the edge: throughput through it vs directly to one task, and how fast it
follows Marathon.

Run with ``.venv/bin/python benchmarks/bench_edge.py [--runs N] [--engine proxy|haproxy|both]``
(needs ``wrk``, Debian's package). Each run starts the ``default`` topology (time scale 10)
in a fresh state directory under ``.cache/bench``, deploys ``/bench/web`` (one instance of
``playground workload web``, 256 MB) exposed on the edge, then, side by side in one run:

* ``direct``: ``wrk -c50 -t2 -d{D}s --latency`` against the task's own address;
* ``edge``: the same against the edge's service port (the same single task behind it);
* ``vip``: the same against the app's VIP (``VIP_0`` label), served beside the master.

Ratio = edge requests/s / direct requests/s (target >= 0.5), with both p99s. With
``both`` the cluster is restarted on the other engine (``up --edge-engine haproxy`` and a
restart of ``edge-1``).

``follow``: kill the task through Marathon (``DELETE .../tasks/ID``) and measure, polling
``/v1/routes`` every 5 ms, until the killed task is gone from the edge's backends
(target <= 1 s); repeated K times. Figures are medians over runs; the machine is shared.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
PG = [str(ROOT / ".venv" / "bin" / "playground")]


def pg(state: Path, *args: str) -> str:
    cp = subprocess.run([*PG, *args, "--state-dir", str(state)], capture_output=True, text=True)
    if cp.returncode != 0:
        raise SystemExit(f"playground {' '.join(args)} failed: {cp.stdout}{cp.stderr}")
    return cp.stdout


def wrk(url: str, seconds: int) -> dict[str, float]:
    out = subprocess.run(
        ["wrk", "-c50", "-t2", f"-d{seconds}s", "--latency", url],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    m = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    p99 = float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": rps, "p99_ms": p99, "non_2xx": int(errors.group(1)) if errors else 0}


def one_run(state: Path, engine: str, seconds: int, kills: int) -> dict[str, object]:
    shutil.rmtree(state, ignore_errors=True)
    args = ["--edge-engine", engine] if engine != "proxy" else []
    st = json.loads(pg(state, "up", "--json", *args))["status"]
    ep = st["endpoints"]
    app = {
        "id": "/bench/web", "cmd": f"{sys.executable} -m playground workload web",
        "instances": 1, "cpus": 1, "mem": 256,
        "portDefinitions": [{"port": 0, "labels": {"VIP_0": "/bench/web:8000"}}],
        "labels": {"HAPROXY_GROUP": "external"},
    }  # fmt: skip
    m = httpx.Client(base_url=ep["marathon"], timeout=10)
    m.post("/v2/apps", json=app).raise_for_status()
    routes = ep["edge_stats"] + "/v1/routes"

    def live() -> list[dict[str, object]]:
        r = [x for x in httpx.get(routes).json() if x["app"] == "/bench/web"]
        return [b for b in (r[0]["backends"] if r else []) if b["healthy"]]

    deadline = time.monotonic() + 60
    while True:
        backends = live()
        if backends:
            try:
                b = backends[0]
                if httpx.get(f"http://{b['host']}:{b['port']}/", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
        if time.monotonic() > deadline:
            raise SystemExit("the benchmark app never got served")
        time.sleep(0.1)
    port = next(x for x in httpx.get(routes).json() if x["app"] == "/bench/web")["service_port"]
    direct = wrk(f"http://{b['host']}:{b['port']}/", seconds)
    edge = wrk(f"http://{ep['edge']}:{port}/", seconds)
    vips = httpx.get(f"{ep['master']}/net/v1/vips").json()["vips"]
    vip = wrk(f"http://{vips[0]['address']}/", seconds)
    follow = []
    for _ in range(kills):
        task = live()[0]
        t0 = time.monotonic()
        m.delete(f"/v2/apps/bench/web/tasks/{task['task_id']}").raise_for_status()
        while any(x["task_id"] == task["task_id"] for x in live()):
            time.sleep(0.005)
        follow.append(time.monotonic() - t0)
        while not live():
            time.sleep(0.05)
    pg(state, "destroy")
    return {
        "engine": engine,
        "direct": direct,
        "edge": edge,
        "ratio": edge["rps"] / direct["rps"],
        "vip": vip,
        "vip_ratio": vip["rps"] / direct["rps"],
        "follow_s": follow,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--kills", type=int, default=5)
    ap.add_argument("--engine", choices=["proxy", "haproxy", "both"], default="both")
    a = ap.parse_args()
    engines = ["proxy", "haproxy"] if a.engine == "both" else [a.engine]
    state = ROOT / ".cache" / "bench" / "edge"
    results = {}
    for engine in engines:
        runs = [one_run(state, engine, a.seconds, a.kills) for _ in range(a.runs)]
        med = statistics.median
        results[engine] = {
            "runs": runs,
            "direct_rps": med(r["direct"]["rps"] for r in runs),
            "direct_p99_ms": med(r["direct"]["p99_ms"] for r in runs),
            "edge_rps": med(r["edge"]["rps"] for r in runs),
            "edge_p99_ms": med(r["edge"]["p99_ms"] for r in runs),
            "ratio": med(r["ratio"] for r in runs),
            "vip_rps": med(r["vip"]["rps"] for r in runs),
            "vip_p99_ms": med(r["vip"]["p99_ms"] for r in runs),
            "vip_ratio": med(r["vip_ratio"] for r in runs),
            "follow_median_s": med(x for r in runs for x in r["follow_s"]),
            "follow_max_s": max(x for r in runs for x in r["follow_s"]),
        }
    print(
        "| engine | direct req/s | direct p99 | edge req/s | edge p99 | ratio | follow median / max |"
    )
    print("|---|---|---|---|---|---|---|")
    for engine, r in results.items():
        print(
            f"| {engine} | {r['direct_rps']:.0f} | {r['direct_p99_ms']:.1f} ms | {r['edge_rps']:.0f} "
            f"| {r['edge_p99_ms']:.1f} ms | {r['ratio']:.2f} | {r['follow_median_s'] * 1000:.0f} / "
            f"{r['follow_max_s'] * 1000:.0f} ms |"
        )
    print("\n| VIP (during the run of) | VIP req/s | VIP p99 | VIP / direct |")
    print("|---|---|---|---|")
    for engine, r in results.items():
        print(
            f"| {engine} | {r['vip_rps']:.0f} | {r['vip_p99_ms']:.1f} ms | {r['vip_ratio']:.2f} |"
        )
    out = ROOT / "benchmarks" / "results" / "edge.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
