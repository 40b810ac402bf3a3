"""``playground up|down|status|destroy|clean|logs``: the cluster's lifecycle."""

from __future__ import annotations

import os
import sys
import time

import click

from playground.cli.common import (
    emit_json,
    handle_errors,
    json_option,
    progress_printer,
    state_dir,
    state_dir_option,
)
from playground.cluster.lifecycle import Cluster


def _endpoints_text(status: dict) -> str:
    lines = []
    for name, url in sorted(status["endpoints"].items()):
        lines.append(f"  {name:<12} {url or '-'}")
    return "\n".join(lines)


@click.command()
@click.option(
    "--topology",
    "-t",
    metavar="NAME|FILE",
    help="A shipped topology (see `playground topology list`) or a YAML file. Default: default.",
)
@click.option(
    "--time-scale",
    type=float,
    metavar="N",
    help="Real-cluster seconds per wall second (>= 1; 1 = real timings). Default: 10.",
)
@click.option(
    "--timeout",
    type=float,
    default=60.0,
    show_default=True,
    help="Seconds to wait for the cluster to become healthy.",
)
@click.option(
    "--edge-engine",
    type=click.Choice(["proxy", "haproxy"]),
    help="The edge's data plane: the kit's proxy, or real HAProxy (Debian's haproxy "
    "package). Default: the topology's edge_engine, else proxy. Kept for later `up`s.",
)
@json_option
@state_dir_option
@handle_errors
def up(
    topology: str | None,
    time_scale: float | None,
    timeout: float,
    edge_engine: str | None,
    as_json: bool,
) -> None:
    """Start the embedded cluster (or resume or repair it) and wait until it is healthy."""
    cluster = Cluster(state_dir())
    result = cluster.up(
        topology,
        time_scale,
        progress=progress_printer(not as_json),
        timeout=timeout,
        edge_engine=edge_engine,
    )
    status = cluster.status()
    if as_json:
        emit_json(
            {
                "created": result.created,
                "already_running": result.already_running,
                "started": result.started,
                "elapsed": round(result.elapsed, 3),
                "status": status,
            }
        )
        return
    if result.already_running:
        click.echo(f"cluster '{status['topology']}' is already running ({status['state_dir']})")
    else:
        click.echo(
            f"cluster '{status['topology']}' is up in {result.elapsed:.1f}s "
            f"(time scale {status['time_scale']:g}, state dir {status['state_dir']})"
        )
    click.echo("endpoints:")
    click.echo(_endpoints_text(status))


@click.command()
@json_option
@state_dir_option
@handle_errors
def down(as_json: bool) -> None:
    """Stop every process of the cluster (nodes, executors, tasks); keep its state."""
    t0 = time.monotonic()
    stopped = Cluster(state_dir()).down(progress=progress_printer(not as_json))
    if as_json:
        emit_json({"stopped": stopped, "elapsed": round(time.monotonic() - t0, 3)})
    else:
        click.echo(f"cluster stopped ({len(stopped)} node(s)); `playground up` resumes it")


@click.command()
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@state_dir_option
@handle_errors
def destroy(yes: bool) -> None:
    """Stop the cluster and remove its state directory (volumes, logs, everything)."""
    root = state_dir()
    if (root / "secrets" / "cloudsnap.key").exists():
        click.echo(
            "note: this cluster's cloud backup key goes with it; backups in the cloud stay, "
            "but only its key restores them (`playground cloudsnap key export` saves it)",
            err=True,
        )
    if not yes and sys.stdin.isatty():
        click.confirm(f"Remove the cluster and everything in {root}?", abort=True)
    Cluster(root).destroy(progress=progress_printer(True))
    click.echo("cluster destroyed")


@click.command()
@click.option(
    "--all",
    "everything",
    is_flag=True,
    help="Leftovers of every cluster of this user, not only this state dir.",
)
@json_option
@state_dir_option
@handle_errors
def clean(everything: bool, as_json: bool) -> None:
    """End processes left behind by a crashed or interrupted run."""
    pids = Cluster(state_dir()).clean(everything)
    if as_json:
        emit_json({"ended": pids})
    elif pids:
        click.echo(f"ended {len(pids)} leftover process(es): {', '.join(map(str, pids))}")
    else:
        click.echo("no leftover processes")


STATE_COLORS = {"running": "green", "stopped": "yellow", "crashed": "red", "partitioned": "magenta"}


@click.command()
@json_option
@state_dir_option
@handle_errors
def status(as_json: bool) -> None:
    """Nodes, the leading master, frameworks, task counts and the time scale."""
    st = Cluster(state_dir()).status()
    if as_json:
        emit_json(st)
        return
    ts = st["time_scale"]
    click.echo(f"cluster '{st['topology']}'  state dir {st['state_dir']}")
    click.echo(f"time scale {ts:g}: 75s of cluster time pass in {75 / ts:.3g}s")
    click.echo(f"leading master: {st['leader'] or 'none (no leader elected)'}")
    click.echo("endpoints:")
    click.echo(_endpoints_text(st))
    click.echo("")
    click.echo(f"{'NODE':<16}{'ROLE':<14}{'ZONE':<6}{'RACK':<6}{'ADDRESS':<22}{'PID':<9}STATE")
    for n in st["nodes"]:
        extra = ""
        if n["role"] in ("agent", "public-agent"):
            extra = f"  {'registered' if n.get('registered') else 'not registered'}, {n.get('tasks', 0)} task(s)"
        if n.get("leading"):
            extra = "  leader"
        if n["role"] == "marathon" and n["state"] == "running":
            extra = "  " + (
                "connected to the leading master"
                if n.get("connected")
                else "disconnected from Mesos: deployments wait for a leader"
            )
        if n.get("partitioned"):
            extra += "  PARTITIONED (cut off from the other nodes)"
        state = click.style(n["state"], fg=STATE_COLORS.get(n["state"]))
        click.echo(
            f"{n['name']:<16}{n['role']:<14}{n['zone'] or '-':<6}{n['rack'] or '-':<6}"
            f"{n['address']:<22}{n['pid'] or '-'!s:<9}{state}{extra}"
        )
    if st["frameworks"]:
        click.echo("")
        click.echo("frameworks:")
        for fw in st["frameworks"]:
            click.echo(
                f"  {fw['name']} ({fw['id']}) {'active' if fw['active'] else 'inactive'}, {fw['tasks']} task(s)"
            )
    if st["tasks"]:
        click.echo("tasks: " + ", ".join(f"{k} {v}" for k, v in sorted(st["tasks"].items())))


def follow_file(path: os.PathLike[str] | str, follow: bool) -> None:
    """Print a file; with ``follow``, keep printing what is appended until Ctrl-C."""
    try:
        fh = open(path, "rb")
    except FileNotFoundError:
        raise click.ClickException(f"{path} does not exist (yet)") from None
    with fh:
        while True:
            chunk = fh.read(65536)
            if chunk:
                sys.stdout.buffer.write(chunk)
                sys.stdout.buffer.flush()
                continue
            if not follow:
                return
            try:
                time.sleep(0.2)
            except KeyboardInterrupt:
                return


@click.command()
@click.argument("node")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines.")
@state_dir_option
@handle_errors
def logs(node: str, follow: bool) -> None:
    """Print the log of NODE (as `playground status` names it)."""
    follow_file(Cluster(state_dir()).logs_path(node), follow)
