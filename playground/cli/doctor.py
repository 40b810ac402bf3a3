"""``playground doctor``: pre-flight checks with what to do about each failure."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import sys
from pathlib import Path
from typing import Any

import click

from playground.cli.common import emit_json, handle_errors, json_option, state_dir, state_dir_option
from playground.cluster import addresses as addr_mod
from playground.cluster import isolation
from playground.cluster import topology as topo_mod
from playground.cluster.statedir import StateDir


def checks(root: Path) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []

    def add(name: str, ok: bool, detail: str, fix: str | None = None) -> None:
        out.append(
            {"check": name, "ok": ok, "detail": detail, **({"fix": fix} if fix and not ok else {})}
        )

    v = sys.version_info
    add(
        "python",
        v >= (3, 11),
        f"Python {v.major}.{v.minor}.{v.micro}",
        "install Python 3.11 or newer",
    )
    per_ip = addr_mod.per_ip_supported()
    topo = topo_mod.load("ha")
    if per_ip:
        add("loopback addressing", True, "each node gets its own 127.77.K.N address")
    else:
        hosts = sorted({a.host for a in addr_mod.plan(topo, "per-ip", 1).values()})
        cmds = "; ".join(f"sudo ifconfig lo0 alias {h} up" for h in hosts)
        add(
            "loopback addressing",
            False,
            "only 127.0.0.1 is usable: nodes share it with disjoint port ranges (degraded: agents offer 100 ports each)",
            f"once per boot, to give each node of block 1 its own address: {cmds}",
        )
    try:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
        add("loopback", True, "127.0.0.1 accepts listeners")
    except OSError as exc:
        add("loopback", False, f"cannot listen on 127.0.0.1: {exc}", "check the loopback interface")
    probe = root if root.exists() else next((p for p in root.parents if p.exists()), Path("/"))
    usage = shutil.disk_usage(probe)
    free_gb = usage.free / 1e9
    add(
        "disk",
        free_gb >= 1.0,
        f"{free_gb:.1f} GB free at {probe}",
        "free some disk space (1 GB or more)",
    )
    try:
        if per_ip:
            _mode, block, _ = addr_mod.choose(topo_mod.load("default"), str(root))
            add(
                "ports",
                True,
                f"a free address block is available (127.77.{block}.0/24, ports 2181, 5050, 5051, 31000-32000)",
            )
        else:
            add("ports", True, "shared-address mode")
    except Exception as exc:  # report, do not crash the doctor
        add("ports", False, str(exc), "stop clusters you no longer need")
    add("state dir", True, str(root))
    if os.geteuid() == 0:
        task_user = topo_mod.DEFAULT_TASK_USER
        with contextlib.suppress(Exception):
            task_user = str(StateDir(root).read().get("task_user") or task_user)
        problems = isolation.task_user_problems(task_user, root)
        for problem, fix in problems:
            add("task user", False, problem, fix)
        if not problems:
            add("task user", True, f"tasks run as '{task_user}' and can run the kit")
    return out


@click.command()
@json_option
@state_dir_option
@handle_errors
def doctor(as_json: bool) -> None:
    """Check Python, loopback addressing, ports and disk; say how to fix what fails."""
    results = checks(state_dir())
    if as_json:
        emit_json(results)
    else:
        for r in results:
            mark = click.style("ok  ", fg="green") if r["ok"] else click.style("FAIL", fg="red")
            click.echo(f"{mark} {r['check']:<20} {r['detail']}")
            if "fix" in r:
                click.echo(f"     fix: {r['fix']}")
    if not all(r["ok"] for r in results if r["check"] != "loopback addressing"):
        sys.exit(1)
