"""``playground break|faults|heal|rebuild``: faults from the CLI (see ``playground.chaos.faults``)."""

from __future__ import annotations

import click

from playground.backends import EmbeddedBackend
from playground.chaos.faults import AGENT_ROLES, KINDS, Fault, Faults
from playground.cli.common import emit_json, handle_errors, json_option, state_dir, state_dir_option
from playground.cluster.statedir import StateDir


def _faults() -> Faults:
    root = state_dir()
    StateDir(root).read()  # no cluster -> error with the `playground up` hint
    return Faults(EmbeddedBackend(root))


def _when(iso: str | None) -> str:
    return iso.replace("T", " ")[:19] if iso else "-"


def _say_reverted(reverted: list[Fault]) -> None:
    for f in reverted:
        click.echo(f"reverted {f.id} ({f.kind} {f.target})", err=True)


@click.command("break")
@click.argument("node", required=False)
@click.option(
    "--how",
    type=click.Choice(KINDS),
    default="crash",
    show_default=True,
    help="crash: SIGKILL the node's process tree; stop: a clean shutdown; "
    "partition: cut the node off from every other node while it keeps running; "
    "agent-restart: restart only an agent's process (its tasks keep running).",
)
@click.option(
    "--for",
    "for_seconds",
    type=click.FloatRange(min=0, min_open=True),
    metavar="SECONDS",
    help="Revert after this many wall-clock seconds (a small reverter process does it).",
)
@click.option("--zone", metavar="ZONE", help="Break every agent of ZONE (a zone outage).")
@click.option("--leader", is_flag=True, help="Crash the leading master.")
@click.option("--quorum", is_flag=True, help="Crash masters until fewer than a quorum run.")
@json_option
@state_dir_option
@handle_errors
def break_(
    node: str | None,
    how: str,
    for_seconds: float | None,
    zone: str | None,
    leader: bool,
    quorum: bool,
    as_json: bool,
) -> None:
    """Break NODE (as `playground status` names it; `marathon` and `leader` are shorthands).

    Or break a whole zone (--zone), the leading master (--leader) or the masters' quorum
    (--quorum). `playground faults` lists what is broken; `playground heal` reverts it.
    """
    chosen = [
        x
        for x, on in (("NODE", node), ("--zone", zone), ("--leader", leader), ("--quorum", quorum))
        if on
    ]
    if len(chosen) != 1:
        raise click.UsageError(
            "give exactly one of NODE, --zone ZONE, --leader, --quorum"
            + (f" (got {', '.join(chosen)})" if chosen else "")
        )
    if how != "crash" and (leader or quorum):
        raise click.UsageError(f"--how {how} does not apply to {chosen[0]} (it crashes masters)")
    faults = _faults()
    before = {f.id for f in faults.active()}
    _say_reverted(faults.revert_due())
    result: Fault | list[Fault]
    if node is not None:
        result = faults.break_node(node, how, for_seconds)
    elif zone is not None:
        result = faults.break_zone(zone, how, for_seconds)
    elif leader:
        result = faults.break_leader(for_seconds)
    else:
        result = faults.break_quorum(for_seconds)
    items = result if isinstance(result, list) else [result]
    if as_json:
        emit_json([f.to_dict() for f in items] if isinstance(result, list) else result.to_dict())
        return
    if not items:
        click.echo("nothing to break (fewer masters than a quorum run already)")
    for f in items:
        if f.id in before:
            click.echo(
                f"{f.target} is already broken ({f.id}, {f.kind} since {_when(f.started_at)})"
            )
            continue
        msg = f"{f.id}: {f.kind} {f.target}"
        if f.kind == "agent-restart":
            msg += " (agent process restarted; its tasks keep running)"
        elif f.revert_at:
            msg += f", reverts at {_when(f.revert_at)}"
        click.echo(msg)
    if any(f.kind != "agent-restart" for f in items):
        click.echo("`playground faults` lists active faults; `playground heal` reverts them")


@click.command()
@click.option("--all", "everything", is_flag=True, help="Also faults already reverted.")
@json_option
@state_dir_option
@handle_errors
def faults(everything: bool, as_json: bool) -> None:
    """Active faults: id, kind, target, when started and when they revert."""
    reg = _faults()
    reverted = reg.revert_due()
    items = reg.all() if everything else reg.active()
    if as_json:
        emit_json([f.to_dict() for f in items])
        return
    _say_reverted(reverted)
    if not items:
        click.echo("no active faults" if not everything else "no faults")
        return
    header = f"{'ID':<7}{'KIND':<15}{'TARGET':<17}{'STARTED':<21}REVERTS AT"
    click.echo(header + ("           REVERTED" if everything else ""))
    for f in items:
        line = (
            f"{f.id:<7}{f.kind:<15}{f.target:<17}{_when(f.started_at):<21}{_when(f.revert_at):<21}"
        )
        click.echo((line + (_when(f.reverted_at) if everything else "")).rstrip())


@click.command()
@click.argument("node", required=False)
@click.option("--all", "everything", is_flag=True, help="Revert every active fault.")
@json_option
@state_dir_option
@handle_errors
def heal(node: str | None, everything: bool, as_json: bool) -> None:
    """Revert faults: start NODE (or, with --all or no NODE, every broken node) again with
    its disk, end partitions and drains, restore the quorum."""
    if node is not None and everything:
        raise click.UsageError("give a NODE or --all (not both)")
    everything = node is None
    reg = _faults()
    reverted = reg.revert_due()
    reverted += reg.heal(None if everything else node)
    if as_json:
        emit_json([f.to_dict() for f in reverted])
        return
    if not reverted:
        click.echo("nothing to heal" if everything else f"no active fault on {node}; it runs")
    for f in reverted:
        click.echo(f"reverted {f.id} ({f.kind} {f.target})")


@click.command()
@click.argument("node")
@click.option(
    "--keep-disk",
    is_flag=True,
    help="Start the node again with its disk: the same machine returning (agent recovery, "
    "same agent id). Without it an agent comes back as a replaced machine with a clean disk.",
)
@json_option
@state_dir_option
@handle_errors
def rebuild(node: str, keep_disk: bool, as_json: bool) -> None:
    """Bring NODE back under the same name and address (crashing it first if it runs).

    By default (agents only) as a replaced machine: its work directory is deleted, its old
    agent id is marked gone on the leading master (MARK_AGENT_GONE; it can never
    re-register) and it registers with a new agent id. With --keep-disk any node restarts
    with its disk. Active faults of NODE are healed.
    """
    reg = _faults()
    _say_reverted(reg.revert_due())
    result = reg.rebuild(node, keep_disk=keep_disk)
    if as_json:
        emit_json(result.to_dict())
        return
    how = "with its disk" if keep_disk else "with a clean disk"
    click.echo(f"rebuilt {result.node} {how}")
    if result.old_agent_id and not keep_disk:
        click.echo(f"old agent id {result.old_agent_id} is marked gone")
    if result.agent_id:
        click.echo(f"agent id {result.agent_id}")
    elif reg.resolve(result.node).role in AGENT_ROLES:
        click.echo("the agent has not registered yet; see `playground status`")
    for fid in result.reverted:
        click.echo(f"reverted {fid}")
