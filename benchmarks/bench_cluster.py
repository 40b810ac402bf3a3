"""Benchmarks of the embedded cluster: up/down time, idle memory, launching 100 tasks.

Run with ``.venv/bin/python benchmarks/bench_cluster.py [--runs N]``; it prints a
Markdown table and writes ``benchmarks/results/latest.json``. Each figure is the median
of N runs on a fresh state directory under ``.cache/bench`` (inside the project).
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from playground.cluster import procs  # noqa: E402
from tests.support.v1scheduler import V1Scheduler, task_info  # noqa: E402

PLAYGROUND = [str(Path(sys.executable).parent / "playground")]


def cli(*args: str) -> str:
    cp = subprocess.run([*PLAYGROUND, *args], capture_output=True, text=True, check=True)
    return cp.stdout


def timed(*args: str) -> float:
    t0 = time.perf_counter()
    cli(*args)
    return time.perf_counter() - t0


def memory(state: Path) -> tuple[float, str]:
    total, kind = 0, "PSS"
    for p in procs.find_marked(state):
        try:
            total += p.memory_full_info().pss
        except (psutil.AccessDenied, AttributeError):
            total += p.memory_info().rss
            kind = "RSS"
    return total / 1e6, kind


def launch_100(master: str) -> float:
    s = V1Scheduler(master, failover_timeout=60)
    s.subscribe()
    try:
        offers = s.wait_offers(n_agents=3, predicate=lambda o: o["allocation_info"]["role"] == "*")
        t0 = time.perf_counter()
        ids = []
        for i, offer in enumerate(offers[:3]):
            count = 34 if i < 2 else 32
            tasks = []
            for _ in range(count):
                tid = f"bench-{len(ids)}"
                ids.append(tid)
                tasks.append(
                    task_info(tid, tid, None, "exec sleep 600", cpus=0.01, mem=8, offer=offer)
                )
            s.launch(offer, tasks)
        for tid in ids:
            s.wait_task_state(tid, "TASK_RUNNING", timeout=60)
        return time.perf_counter() - t0
    finally:
        s.teardown()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    base = ROOT / ".cache" / "bench"
    ups, downs, resumes, mems, launches = [], [], [], [], []
    kind = "PSS"
    for i in range(args.runs):
        state = base / f"run{i}"
        shutil.rmtree(state, ignore_errors=True)
        ups.append(timed("up", "--state-dir", str(state)))
        time.sleep(2.0)  # idle
        mem, kind = memory(state)
        mems.append(mem)
        downs.append(timed("down", "--state-dir", str(state)))
        resumes.append(timed("up", "--state-dir", str(state)))
        master = json.loads(cli("status", "--json", "--state-dir", str(state)))["endpoints"][
            "master"
        ]
        launches.append(launch_100(master))
        cli("destroy", "-y", "--state-dir", str(state))
    results = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {psutil.cpu_count()} cores, Python {platform.python_version()}",
        "runs": args.runs,
        "up_cold_s": statistics.median(ups),
        "up_resume_s": statistics.median(resumes),
        "down_s": statistics.median(downs),
        "idle_memory_mb": statistics.median(mems),
        "memory_kind": kind,
        "launch_100_tasks_s": statistics.median(launches),
        "samples": {
            "up": ups,
            "resume": resumes,
            "down": downs,
            "memory": mems,
            "launch100": launches,
        },
    }
    out = ROOT / "benchmarks" / "results"
    out.mkdir(exist_ok=True)
    (out / "latest.json").write_text(json.dumps(results, indent=2))
    print(f"| figure | median of {args.runs} | target |")
    print("|---|---|---|")
    print(
        f"| `playground up` (default, new state dir) to healthy | {results['up_cold_s']:.2f} s | <= 3 s |"
    )
    print(f"| `playground up` resuming a stopped cluster | {results['up_resume_s']:.2f} s | - |")
    print(f"| `playground down` | {results['down_s']:.2f} s | <= 1 s |")
    print(
        f"| idle memory of all `default` nodes ({kind}) | {results['idle_memory_mb']:.0f} MB | <= 300 MB |"
    )
    print(
        f"| 100 tasks through the scheduler API to TASK_RUNNING | {results['launch_100_tasks_s']:.2f} s | <= 5 s |"
    )


if __name__ == "__main__":
    main()
