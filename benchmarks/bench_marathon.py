"""Benchmarks of the Marathon node: 100 instances to running, GET /v2/apps at 500 tasks.

Run with ``.venv/bin/python benchmarks/bench_marathon.py [--runs N]``; it prints a
Markdown table and writes ``benchmarks/results/marathon.json``. Each run starts the
``default`` topology in a fresh state directory under ``.cache/bench`` (inside the
project) with the ``playground`` command, as a user does.

* ``launch_100``: ``POST /v2/apps`` of a trivial app (``sleep 1000``, 0.01 cpus, 8 MB,
  100 instances) until ``GET /v2/apps/{id}`` reports 100 ``tasksRunning``;
* ``get_apps_500``: with 50 apps of 10 instances each running (500 tasks), the median of
  100 ``GET /v2/apps?embed=apps.tasks`` over one keep-alive connection;
* ``idle_pss``: summed PSS of every node process (Marathon included, tasks excluded) of
  an idle ``default`` cluster.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.bench_cluster import cli, memory  # noqa: E402


def wait(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise SystemExit(f"timed out waiting for {what}")


def one_run(state: Path) -> dict[str, float]:
    shutil.rmtree(state, ignore_errors=True)
    cli("up", "--state-dir", str(state))
    status = json.loads(cli("status", "--json", "--state-dir", str(state)))
    url = status["endpoints"]["marathon"]
    out: dict[str, float] = {}
    try:
        with httpx.Client(base_url=url, timeout=30) as c:
            wait(lambda: c.get("/v2/info").json().get("frameworkId"), 30, "Marathon to register")
            time.sleep(2.0)
            out["idle_pss"], _ = memory(state)
            t0 = time.perf_counter()
            r = c.post(
                "/v2/apps",
                json={"id": "/many", "cmd": "sleep 1000", "cpus": 0.01, "mem": 8, "instances": 100},
            )
            r.raise_for_status()
            wait(
                lambda: c.get("/v2/apps/many").json()["app"]["tasksRunning"] == 100,
                120,
                "100 instances running",
            )
            out["launch_100"] = time.perf_counter() - t0
            c.delete("/v2/apps/many")
            wait(lambda: not c.get("/v2/deployments").json(), 120, "the app to be removed")
            for a in range(50):
                c.post(
                    "/v2/apps",
                    json={
                        "id": f"/bench/app-{a:02d}",
                        "cmd": "sleep 1000",
                        "cpus": 0.01,
                        "mem": 8,
                        "instances": 10,
                    },
                ).raise_for_status()

            def all_running() -> bool:
                apps = c.get("/v2/apps").json()["apps"]
                running = sum(a["tasksRunning"] for a in apps)
                print(f"  {running}/500 running", file=sys.stderr, end="\r")
                return running == 500

            wait(all_running, 300, "500 tasks running")
            samples = []
            for _ in range(100):
                t = time.perf_counter()
                body = c.get("/v2/apps", params={"embed": "apps.tasks"}).json()
                samples.append(time.perf_counter() - t)
            assert sum(len(a["tasks"]) for a in body["apps"]) == 500
            out["get_apps_500_ms"] = statistics.median(samples) * 1000
    finally:
        cli("destroy", "--state-dir", str(state))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    state = ROOT / ".cache" / "bench" / "marathon"
    runs = [one_run(state) for _ in range(args.runs)]
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    results = ROOT / "benchmarks" / "results"
    results.mkdir(parents=True, exist_ok=True)
    (results / "marathon.json").write_text(
        json.dumps(
            {
                "date": time.strftime("%Y-%m-%d"),
                "machine": f"{platform.machine()}, Python {platform.python_version()}",
                "runs": runs,
                "median": med,
            },
            indent=2,
        )
    )
    print(f"| figure | median of {args.runs} | target |")
    print("|---|---|---|")
    print(f"| 100 instances, POST to all TASK_RUNNING | {med['launch_100']:.2f} s | <= 10 s |")
    print(
        f"| GET /v2/apps?embed=apps.tasks, 50 apps / 500 tasks | {med['get_apps_500_ms']:.1f} ms | <= 25 ms |"
    )
    print(
        f"| idle memory of `default` with Marathon (PSS) | {med['idle_pss']:.0f} MB | <= 300 MB |"
    )


if __name__ == "__main__":
    main()
