"""``playground drain`` and ``playground maintenance schedule|status|down|up``."""

from __future__ import annotations

from datetime import UTC, datetime

import click

from playground.backends import EmbeddedBackend
from playground.chaos.maintenance import MachineStatus, Maintenance
from playground.cli.common import emit_json, handle_errors, json_option, state_dir, state_dir_option
from playground.cli.faults import _faults, _say_reverted, _when
from playground.cluster.statedir import StateDir


def _maintenance() -> Maintenance:
    root = state_dir()
    StateDir(root).read()  # no cluster -> error with the `playground up` hint
    return Maintenance(EmbeddedBackend(root))


@click.command()
@click.argument("node")
@click.option(
    "--for",
    "for_seconds",
    type=click.FloatRange(min=0, min_open=True),
    metavar="SECONDS",
    help="Reactivate the agent after this many wall-clock seconds.",
)
@click.option(
    "--max-grace",
    type=click.FloatRange(min=0),
    metavar="SECONDS",
    help="Upper bound of the tasks' kill grace period (real-cluster seconds).",
)
@json_option
@state_dir_option
@handle_errors
def drain(node: str, for_seconds: float | None, max_grace: float | None, as_json: bool) -> None:
    """Drain agent NODE for maintenance (the master's DRAIN_AGENT call).

    The agent gets no more offers and its tasks are killed; Marathon replaces them on
    other agents. `playground heal NODE` reactivates it (REACTIVATE_AGENT).
    """
    reg = _faults()
    _say_reverted(reg.revert_due())
    f = reg.drain(node, for_seconds, max_grace)
    if as_json:
        emit_json(f.to_dict())
        return
    msg = f"{f.id}: drain {f.target}"
    if f.revert_at:
        msg += f", reactivated at {_when(f.revert_at)}"
    click.echo(msg)
    click.echo(
        "its tasks are being killed and Marathon replaces them elsewhere; "
        f"`playground heal {f.target}` reactivates it"
    )


def _iso(epoch: float | None) -> str:
    if epoch is None:
        return "-"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _print_status(items: list[MachineStatus]) -> None:
    if not items:
        click.echo("no machine is in maintenance")
        return
    click.echo(f"{'NODE':<17}{'MACHINE':<18}{'MODE':<10}{'UNAVAILABLE FROM':<21}FOR")
    for s in items:
        dur = f"{s.duration:g}s" if s.duration is not None else "open-ended"
        click.echo(f"{s.node or '?':<17}{s.ip:<18}{s.mode:<10}{_iso(s.start):<21}{dur}")


@click.group()
def maintenance() -> None:
    """Mesos maintenance primitives: schedule, status, down, up (by node name)."""


@maintenance.command()
@click.argument("nodes", nargs=-1, required=True)
@click.option(
    "--start-in",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    metavar="SECONDS",
    help="When the unavailability starts, from now.",
)
@click.option(
    "--duration",
    type=click.FloatRange(min=0, min_open=True),
    default=3600.0,
    show_default=True,
    metavar="SECONDS",
    help="How long the machines are expected to be unavailable.",
)
@json_option
@state_dir_option
@handle_errors
def schedule(nodes: tuple[str, ...], start_in: float, duration: float, as_json: bool) -> None:
    """Schedule maintenance of agent NODES: their machines drain.

    Offers from draining machines carry the unavailability; Marathon declines them once
    the window has started. Nothing is killed until `maintenance down`.
    """
    items = _maintenance().schedule(list(nodes), start_in, duration)
    if as_json:
        emit_json([s.to_dict() for s in items])
        return
    _print_status(items)
    click.echo("`playground maintenance down NODE` takes them down; `... up NODE` ends it")


@maintenance.command()
@json_option
@state_dir_option
@handle_errors
def status(as_json: bool) -> None:
    """Machines in maintenance: DRAINING (scheduled) or DOWN."""
    items = _maintenance().status()
    if as_json:
        emit_json([s.to_dict() for s in items])
        return
    _print_status(items)


@maintenance.command()
@click.argument("nodes", nargs=-1, required=True)
@json_option
@state_dir_option
@handle_errors
def down(nodes: tuple[str, ...], as_json: bool) -> None:
    """Start maintenance of scheduled NODES: their agents are removed and shut down."""
    items = _maintenance().down(list(nodes))
    if as_json:
        emit_json([s.to_dict() for s in items])
        return
    _print_status(items)
    click.echo("their tasks are lost and Marathon replaces them; `maintenance up` ends it")


@maintenance.command()
@click.argument("nodes", nargs=-1, required=True)
@json_option
@state_dir_option
@handle_errors
def up(nodes: tuple[str, ...], as_json: bool) -> None:
    """End maintenance of NODES and start them again."""
    names = _maintenance().up(list(nodes))
    if as_json:
        emit_json(names)
        return
    for n in names:
        click.echo(f"{n} is up again")
