"""Benchmarks of storage: snapshots, restores, cloud increments, durable kv puts, memory.

Run with ``.venv/bin/python benchmarks/bench_storage.py [--runs N] [--restore-runs N]
[--cloud-runs N] [--puts N]``; it prints Markdown tables and writes
``benchmarks/results/storage.json``. One ``default`` cluster is started with the
``playground`` command in a fresh state directory under ``.cache/bench/``, and a cloud
(SeaweedFS, :class:`playground.cloud.server.Cloud`) in ``.cache/bench/storage-cloud``.

1. **Idle memory**, right after ``up`` and 2 s idle, before any task or the cloud: the
   summed PSS of every process carrying the kit's marker (as ``bench_cluster.py``), and
   the storage node's own.
2. **Snapshots**: a Marathon app runs ``playground workload kv --data pgdata --durable``
   with an external volume (``dvdi``/``pxd``, ``repl`` 2, size 2 GB), so its task is
   attached and every snapshot freezes it. 16 files of 64 MiB (incompressible, distinct)
   are written into the volume's working copy (its pool path from ``GET /v1/pools`` plus
   the volume id), the replicas are synced and a base snapshot is taken. Then, per run,
   1 % of the volume's bytes change and ``POST /v1/volumes/{ref}/snapshots`` is timed:
   *new files* (the 1 % as 4 new files) and *appended* (the 1 % appended to 4 of the 64 MiB
   files, 1/4 each). Reported: the node's ``duration_ms`` and ``freeze_ms``, the client's
   wall time (the HTTP round trip and the wait for the volume's lock included) and
   ``bytes_new`` against the bytes changed.
3. **Restore** of the last snapshot into a new volume (``POST /v1/snapshots/{id}/restore``
   with ``to``; it returns once the new volume's working copy holds it durably, every
   chunk checked), then the wait until its other replica is level too (polling ``GET
   /v1/volumes/{name}`` until no replica is ``resync``), against ``cp -r`` of the working
   copy (the same files) into the state directory (same disk), alone and followed by
   ``sync``; one after the other, per run. Throughput is the snapshot's bytes over the
   time.
4. **Cloud increments**: one full ``playground cloudsnap backup VOLUME --cloud-dir DIR
   --json``, then per run a 1 % change (new files) and another backup: its
   ``uploaded_bytes`` over the volume's bytes.
5. **kv durable put latency**: one app per replication factor 1, 2, 3 (an external
   volume each) and one without a volume (``--data data`` in the sandbox), each
   ``--durable``; N sequential ``PUT /v1/kv/KEY`` of 1 KiB on one keep-alive connection,
   timed by the client: median and p99.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.bench_cluster import cli  # noqa: E402
from playground.client import auth as client_auth  # noqa: E402
from playground.cloud.server import Cloud  # noqa: E402
from playground.cluster import auth, procs  # noqa: E402

T = TypeVar("T")

MiB = 1 << 20
FILES, FILE_MIB = 16, 64
KIT_CMD = "playground workload kv --data pgdata --durable"


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def wait(fn: Callable[[], T | None], timeout: float, what: str, poll: float = 0.1) -> T:
    deadline = time.monotonic() + timeout
    while True:
        try:
            got = fn()
        except (httpx.HTTPError, ValueError, KeyError, IndexError):
            got = None
        if got:
            return got
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(poll)


def pss_mb(ps: list[psutil.Process]) -> tuple[float, str]:
    total, kind = 0, "PSS"
    for p in ps:
        try:
            total += p.memory_full_info().pss
        except (psutil.AccessDenied, AttributeError):
            total += p.memory_info().rss
            kind = "RSS"
        except psutil.NoSuchProcess:
            continue
    return total / 1e6, kind


def q(values: list[float], frac: float) -> float:
    """The ``frac`` quantile (nearest rank) of ``values``."""
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(frac * len(s) + 0.5) - 1))]


def write_random(path: Path, size: int, rng: random.Random, mode: str = "wb") -> None:
    with open(path, mode) as fh:
        left = size
        while left > 0:
            n = min(left, 4 * MiB)
            fh.write(rng.randbytes(n))
            left -= n


class Bench:
    def __init__(self, state: Path, cloud_dir: Path) -> None:
        self.state = state
        self.cloud_dir = cloud_dir
        status = json.loads(cli("status", "--json", "--state-dir", str(state)))
        self.marathon = status["endpoints"]["marathon"]
        self.storage = status["endpoints"]["storage"]
        # The storage control API wants the cluster's platform token (the CLI's header).
        token = auth.load_token(state)
        self.http = httpx.Client(timeout=600, headers=client_auth.headers(token))
        self.rng = random.Random(20261125)
        self.seq = 0
        #: errors of the storage node met (and worked around) during the run
        self.failures: list[str] = []

    # ---- helpers ----------------------------------------------------------------------
    def st(self, method: str, path: str, **kw: Any) -> Any:
        r = self.http.request(method, f"{self.storage}{path}", **kw)
        if r.status_code >= 400:
            raise SystemExit(f"{method} {path}: {r.status_code} {r.text}")
        return r.json()

    def deploy_kv(self, app_id: str, volume: str | None, repl: int, size_gb: int) -> str:
        app: dict[str, Any] = {"id": f"/{app_id}", "cpus": 0.1, "mem": 64, "instances": 1}
        if volume is None:
            app["cmd"] = "playground workload kv --data data --durable"
        else:
            app["cmd"] = KIT_CMD
            app["container"] = {
                "type": "MESOS",
                "volumes": [
                    {
                        "containerPath": "pgdata",
                        "mode": "RW",
                        "external": {
                            "name": volume,
                            "provider": "dvdi",
                            "size": size_gb,
                            "options": {"dvdi/driver": "pxd", "dvdi/repl": str(repl)},
                        },
                    }
                ],
            }
        self.http.post(f"{self.marathon}/v2/apps", json=app).raise_for_status()

        def url() -> str | None:
            a = self.http.get(
                f"{self.marathon}/v2/apps/{app_id}", params={"embed": "app.tasks"}
            ).json()["app"]
            run = [t for t in a["tasks"] if t["state"] == "TASK_RUNNING"]
            if not run:
                return None
            u = f"http://{run[0]['host']}:{run[0]['ports'][0]}"
            return u if self.http.get(f"{u}/health", timeout=2).status_code == 200 else None

        return wait(url, 60, f"app {app_id} to run and answer")

    def working_copy(self, volume: str) -> Path:
        v = self.st("GET", f"/v1/volumes/{volume}")
        pools = {p["node"]: p["path"] for p in self.st("GET", "/v1/pools")}
        return Path(pools[v["primary"]]) / v["id"]

    def change_new_files(self, root: Path, total: int, parts: int = 4) -> int:
        for _ in range(parts):
            self.seq += 1
            write_random(root / f"new-{self.seq:04d}.bin", total // parts, self.rng)
        return (total // parts) * parts

    def change_appended(self, root: Path, total: int, parts: int = 4) -> int:
        for i in range(parts):
            write_random(root / f"fill-{i:02d}.bin", total // parts, self.rng, mode="ab")
        return (total // parts) * parts

    def snapshot(self, volume: str) -> dict[str, Any]:
        t0 = time.perf_counter()
        snap = self.st("POST", f"/v1/volumes/{volume}/snapshots", json={})
        snap["client_s"] = time.perf_counter() - t0
        return dict(snap)

    # ---- 2. snapshots -----------------------------------------------------------------
    def snapshots(self, volume: str, runs: int) -> dict[str, Any]:
        root = self.working_copy(volume)
        say(f"filling {volume} ({root}) with {FILES} x {FILE_MIB} MiB")
        for i in range(FILES):
            write_random(root / f"fill-{i:02d}.bin", FILE_MIB * MiB, self.rng)
        self.st("POST", f"/v1/volumes/{volume}/sync")
        base = self.snapshot(volume)
        say(f"base snapshot: {base['duration_ms']:.0f} ms, {base['bytes_new'] / MiB:.0f} MiB new")
        out: dict[str, Any] = {
            "volume_bytes": base["size_bytes"],
            "base": {k: base[k] for k in ("duration_ms", "freeze_ms", "bytes_new", "size_bytes")},
        }
        for kind, change in (
            ("new_files", self.change_new_files),
            ("appended", self.change_appended),
        ):
            samples = []
            for i in range(runs):
                vol_bytes = (
                    self.st("GET", f"/v1/volumes/{volume}")["used_bytes"] or base["size_bytes"]
                )
                changed = change(root, vol_bytes // 100)
                snap = self.snapshot(volume)
                samples.append(
                    {
                        "volume_bytes": snap["size_bytes"],
                        "changed_bytes": changed,
                        "duration_ms": snap["duration_ms"],
                        "freeze_ms": snap["freeze_ms"],
                        "client_ms": round(snap["client_s"] * 1000, 3),
                        "bytes_new": snap["bytes_new"],
                        "files_read": snap["files_read"],
                    }
                )
                say(
                    f"  {kind} {i + 1}/{runs}: {snap['duration_ms']:.0f} ms "
                    f"(freeze {snap['freeze_ms']} ms, client {snap['client_s'] * 1000:.0f} ms), "
                    f"{snap['bytes_new'] / MiB:.2f} MiB new of {changed / MiB:.2f} MiB changed"
                )
            out[kind] = {
                "runs": samples,
                "median": {
                    k: statistics.median(float(s[k] or 0) for s in samples)
                    for k in ("duration_ms", "freeze_ms", "client_ms", "bytes_new", "changed_bytes")
                },
                "freeze_reported": all(s["freeze_ms"] is not None for s in samples),
            }
        return out

    # ---- 3. restore -------------------------------------------------------------------
    def restore(self, snap_id: str, name: str) -> tuple[dict[str, Any], float]:
        """Restore into a new volume; a failed attempt is counted, undone and retried."""
        for _attempt in range(3):
            os.sync()
            t0 = time.perf_counter()
            r = self.http.post(f"{self.storage}/v1/snapshots/{snap_id}/restore", json={"to": name})
            took = time.perf_counter() - t0
            if r.status_code < 400:
                return dict(r.json()), took
            self.failures.append(f"restore into {name}: {r.status_code} {r.text[:300]}")
            say(f"  restore failed ({r.status_code}), retrying: {r.text[:300]}")
            self.http.delete(f"{self.storage}/v1/volumes/{name}")
        raise SystemExit(f"restore of {snap_id} failed 3 times: {self.failures[-1]}")

    def restores(self, volume: str, runs: int) -> dict[str, Any]:
        root = self.working_copy(volume)
        snap = self.snapshot(volume)
        size = int(snap["size_bytes"])
        samples = []
        for i in range(runs):
            name = f"bench-restore-{i}"
            t_start = time.perf_counter()
            res, restore_s = self.restore(snap["id"], name)
            while any(
                rep["state"] not in ("working-copy", "in-sync")
                for rep in self.st("GET", f"/v1/volumes/{name}")["replicas"]
            ):
                time.sleep(0.02)
            level_s = time.perf_counter() - t_start
            dst = self.state / "bench-cp"
            shutil.rmtree(dst, ignore_errors=True)
            os.sync()
            t0 = time.perf_counter()
            subprocess.run(["cp", "-r", str(root), str(dst)], check=True)
            cp_s = time.perf_counter() - t0
            os.sync()
            cp_sync_s = time.perf_counter() - t0
            shutil.rmtree(dst, ignore_errors=True)
            self.st("DELETE", f"/v1/volumes/{name}")
            sample = {
                "bytes": size,
                "restore_s": round(restore_s, 3),
                "restore_node_ms": res["duration_ms"],
                "replicas_level_s": round(level_s, 3),
                "replicas": len(res["volume"]["replicas"]),
                "cp_s": round(cp_s, 3),
                "cp_sync_s": round(cp_sync_s, 3),
                "restore_mb_s": round(size / restore_s / 1e6, 1),
                "cp_mb_s": round(size / cp_s / 1e6, 1),
                "cp_sync_mb_s": round(size / cp_sync_s / 1e6, 1),
                "ratio": round(cp_s / restore_s, 3),
                "ratio_vs_cp_sync": round(cp_sync_s / restore_s, 3),
            }
            samples.append(sample)
            say(
                f"  restore {i + 1}/{runs}: {restore_s:.2f} s ({sample['restore_mb_s']} MB/s) vs "
                f"cp -r {cp_s:.2f} s ({sample['cp_mb_s']} MB/s), + sync {cp_sync_s:.2f} s; "
                f"every replica level after {level_s:.2f} s"
            )
        keys = [k for k in samples[0] if k not in ("bytes", "replicas")]
        return {
            "snapshot_bytes": size,
            "replicas": samples[0]["replicas"],
            "runs": samples,
            "median": {k: statistics.median(float(s[k]) for s in samples) for k in keys},
        }

    # ---- 4. cloud ---------------------------------------------------------------------
    def backup(self, volume: str) -> dict[str, Any]:
        t0 = time.perf_counter()
        # (``cloudsnap backup`` takes ``--state-dir`` only before the command's name)
        out = cli(
            "--state-dir",
            str(self.state),
            "cloudsnap",
            "backup",
            volume,
            "--cloud-dir",
            str(self.cloud_dir),
            "--json",
        )
        rec = dict(json.loads(out))
        rec["client_s"] = time.perf_counter() - t0
        if rec.get("status") != "done":
            raise SystemExit(f"backup of {volume}: {rec}")
        return rec

    def cloud(self, volume: str, runs: int) -> dict[str, Any]:
        root = self.working_copy(volume)
        full = self.backup(volume)
        say(
            f"full backup: {full['size'] / MiB:.0f} MiB, sent {full['uploaded_bytes'] / MiB:.0f} MiB "
            f"in {full['client_s']:.1f} s"
        )
        samples = []
        for i in range(runs):
            changed = self.change_new_files(root, int(full["size"]) // 100)
            rec = self.backup(volume)
            samples.append(
                {
                    "volume_bytes": rec["size"],
                    "changed_bytes": changed,
                    "uploaded_bytes": rec["uploaded_bytes"],
                    "ratio": round(rec["uploaded_bytes"] / rec["size"], 5),
                    "chunks_uploaded": rec["chunks_uploaded"],
                    "chunks_reused": rec["chunks_reused"],
                    "client_s": round(rec["client_s"], 3),
                }
            )
            say(
                f"  increment {i + 1}/{runs}: sent {rec['uploaded_bytes'] / MiB:.2f} MiB of "
                f"{rec['size'] / MiB:.0f} MiB ({samples[-1]['ratio'] * 100:.2f} %) in {rec['client_s']:.1f} s"
            )
        return {
            "full": {k: full[k] for k in ("size", "uploaded_bytes", "chunks_uploaded", "client_s")},
            "runs": samples,
            "median": {
                k: statistics.median(float(s[k]) for s in samples)
                for k in ("ratio", "uploaded_bytes", "changed_bytes", "client_s")
            },
        }

    # ---- 5. kv latency ----------------------------------------------------------------
    def kv_latency(self, puts: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        value = bytes(self.rng.randbytes(1024))
        for label, repl in (("sandbox", 0), ("repl1", 1), ("repl2", 2), ("repl3", 3)):
            url = self.deploy_kv(
                f"bench-kv-{label}", None if repl == 0 else f"bench-kv-{label}", repl, 1
            )
            lat = []
            with httpx.Client(timeout=30) as c:
                for i in range(10):  # warm-up: connection, first sync
                    c.put(f"{url}/v1/kv/warm-{i}", content=value).raise_for_status()
                for i in range(puts):
                    t0 = time.perf_counter()
                    r = c.put(f"{url}/v1/kv/key-{i:05d}", content=value)
                    lat.append((time.perf_counter() - t0) * 1000)
                    r.raise_for_status()
            out[label] = {
                "replication": repl or None,
                "puts": puts,
                "median_ms": round(statistics.median(lat), 3),
                "p99_ms": round(q(lat, 0.99), 3),
                "max_ms": round(max(lat), 3),
            }
            say(
                f"  kv {label}: median {out[label]['median_ms']:.2f} ms, p99 {out[label]['p99_ms']:.2f} ms"
            )
            self.http.delete(f"{self.marathon}/v2/apps/bench-kv-{label}")
        return out


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--runs", type=int, default=5, help="snapshot runs per kind of change")
    ap.add_argument("--restore-runs", type=int, default=3)
    ap.add_argument("--cloud-runs", type=int, default=3)
    ap.add_argument("--puts", type=int, default=300, help="durable PUTs per kv app")
    args = ap.parse_args()
    state = ROOT / ".cache" / "bench" / "storage"
    cloud_dir = ROOT / ".cache" / "bench" / "storage-cloud"
    if state.exists():
        subprocess.run(
            [
                str(Path(sys.executable).parent / "playground"),
                "destroy",
                "-y",
                "--state-dir",
                str(state),
            ],
            capture_output=True,
        )
    shutil.rmtree(state, ignore_errors=True)
    cloud = Cloud(cloud_dir)
    cloud.down()
    shutil.rmtree(cloud_dir, ignore_errors=True)
    started = time.monotonic()
    results: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {psutil.cpu_count()} cores, Python {platform.python_version()}",
    }
    try:
        cli("up", "--state-dir", str(state))
        time.sleep(2.0)  # idle
        total, kind = pss_mb(procs.find_marked(state))
        node, _ = pss_mb(procs.find_marked(state, node="storage-1"))
        results["memory"] = {
            "idle_total_mb": round(total, 1),
            "storage_node_mb": round(node, 1),
            "kind": kind,
        }
        say(f"idle memory: {total:.0f} MB {kind}, storage-1 {node:.0f} MB")
        b = Bench(state, cloud_dir)
        b.deploy_kv("bench-snap", "bench-snap", 2, 2)
        results["snapshot"] = b.snapshots("bench-snap", args.runs)
        results["restore"] = b.restores("bench-snap", args.restore_runs)
        say("cloud up")
        cloud.up()
        results["cloud"] = b.cloud("bench-snap", args.cloud_runs)
        results["kv_put"] = b.kv_latency(args.puts)
        results["failures"] = b.failures
    finally:
        cloud.down()
        cli("destroy", "-y", "--state-dir", str(state))
    results["elapsed_s"] = round(time.monotonic() - started, 1)
    out = ROOT / "benchmarks" / "results"
    out.mkdir(exist_ok=True)
    (out / "storage.json").write_text(json.dumps(results, indent=2))
    print_tables(results)


def print_tables(r: dict[str, Any]) -> None:
    s, rs, c, m = r["snapshot"], r["restore"]["median"], r["cloud"]["median"], r["memory"]
    print("| figure | median | target |")
    print("|---|---|---|")
    for kind, label in (("new_files", "new files"), ("appended", "appended")):
        x = s[kind]["median"]
        n = len(s[kind]["runs"])
        print(
            f"| snapshot of {s['volume_bytes'] / 2**30:.2f} GiB after 1 % {label} ({n} runs): "
            f"duration / client / freeze | {x['duration_ms'] / 1000:.3f} s / {x['client_ms'] / 1000:.3f} s / "
            f"{x['freeze_ms'] / 1000:.3f} s | <= 0.5 s |"
        )
        print(
            f"| stored bytes new / bytes changed ({label}) | {x['bytes_new'] / MiB:.2f} MiB / "
            f"{x['changed_bytes'] / MiB:.2f} MiB | ~1 % |"
        )
    print(
        f"| restore of {r['restore']['snapshot_bytes'] / 2**30:.2f} GiB into a new volume "
        f"(repl {r['restore']['replicas']}) vs `cp -r` ({len(r['restore']['runs'])} runs) | "
        f"{rs['restore_s']:.2f} s ({rs['restore_mb_s']:.0f} MB/s) vs {rs['cp_s']:.2f} s "
        f"({rs['cp_mb_s']:.0f} MB/s): ratio {rs['ratio']:.2f} | >= 0.5 |"
    )
    print(
        f"| the same until its second replica is level too | {rs['replicas_level_s']:.2f} s | - |"
    )
    print(
        f"| the same vs `cp -r` + `sync` | {rs['cp_sync_s']:.2f} s ({rs['cp_sync_mb_s']:.0f} MB/s): "
        f"ratio {rs['ratio_vs_cp_sync']:.2f} | - |"
    )
    print(
        f"| cloud backup after a 1 % change ({len(r['cloud']['runs'])} runs): uploaded / volume | "
        f"{c['uploaded_bytes'] / MiB:.2f} MiB: {c['ratio'] * 100:.2f} % | ~1 % |"
    )
    for label, x in r["kv_put"].items():
        print(
            f"| kv durable PUT 1 KiB, {label} ({x['puts']} sequential) median / p99 | "
            f"{x['median_ms']:.2f} ms / {x['p99_ms']:.2f} ms | - |"
        )
    print(
        f"| idle memory of `default` with storage-1 ({m['kind']}), total / storage-1 | "
        f"{m['idle_total_mb']:.0f} MB / {m['storage_node_mb']:.0f} MB | <= 350 MB |"
    )


if __name__ == "__main__":
    main()
