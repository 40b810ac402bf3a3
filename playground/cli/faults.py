"""``playground break|faults|heal|rebuild``: faults from the CLI (see ``playground.chaos.faults``)."""

from __future__ import annotations

import re
from typing import Any

import click

from playground.backends import EmbeddedBackend
from playground.chaos.faults import AGENT_ROLES, KINDS, ROUTE, Fault, Faults
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


class _Quantity(click.ParamType):
    """A number with an optional unit, converted to ``base`` units (``200ms``, ``64KB``)."""

    def __init__(self, name: str, units: dict[str, float], base: str) -> None:
        self.name = name
        self.units = units
        self.base = base

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        if isinstance(value, int | float):
            return float(value)
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z/%]*)\s*", str(value))
        unit = m.group(2) if m else ""
        if m is None or unit.lower() not in self.units:
            self.fail(
                f"{value!r} is not a {self.name} (like "
                + ", ".join(f"10{u}" for u in self.units if u)
                + f"; a bare number is {self.base})",
                param,
                ctx,
            )
        return float(m.group(1)) * self.units[unit.lower()]


#: Milliseconds, Toxiproxy's unit for latency, jitter and timeouts.
MILLIS = _Quantity("duration", {"": 1, "ms": 1, "s": 1000}, "milliseconds")
#: KB/s (1000 bytes), Toxiproxy's unit for bandwidth.
RATE = _Quantity(
    "rate",
    {"": 1, "kb": 1, "kb/s": 1, "b": 0.001, "b/s": 0.001, "mb": 1000, "mb/s": 1000},
    "KB/s",
)
#: A probability: 0.1 or 10%.
FRACTION = _Quantity("fraction", {"": 1, "%": 0.01}, "a fraction of 1")


def route_toxics(
    latency: float | None,
    jitter: float | None,
    loss: float | None,
    bandwidth: float | None,
    reset: bool,
    reset_after: float | None,
    direction: str,
    toxicity: float,
) -> list[dict[str, Any]]:
    """The toxics (Toxiproxy's JSON) that ``break --route`` options ask for."""
    base = {"stream": direction, "toxicity": toxicity}
    out: list[dict[str, Any]] = []
    if latency is not None or jitter is not None:
        attrs = {"latency": latency or 0, "jitter": jitter or 0}
        out.append({**base, "type": "latency", "attributes": attrs})
    if bandwidth is not None:
        out.append({**base, "type": "bandwidth", "attributes": {"rate": bandwidth}})
    if loss is not None:
        out.append({**base, "type": "loss", "attributes": {"probability": loss}})
    if reset or reset_after is not None:
        out.append({**base, "type": "reset_peer", "attributes": {"timeout": reset_after or 0}})
    return out


def toxics_summary(route: dict[str, Any] | None) -> str:
    """``latency 200ms+-50ms, loss 10% (downstream)``: a route fault's toxics in words."""
    parts = []
    streams = set()
    for t in (route or {}).get("toxics", []):
        a = t.get("attributes") or {}
        streams.add(t.get("stream") or "downstream")
        if t["type"] == "latency":
            text = f"latency {a.get('latency', 0):g}ms"
            if a.get("jitter"):
                text += f"+-{a['jitter']:g}ms"
        elif t["type"] == "bandwidth":
            text = f"bandwidth {a.get('rate', 0):g}KB/s"
        elif t["type"] == "loss":
            text = f"loss {a.get('probability', 0) * 100:g}%"
        else:
            text = "reset" + (f" after {a['timeout']:g}ms" if a.get("timeout") else "")
        if float(t.get("toxicity", 1.0)) < 1.0:
            text += f" (toxicity {t['toxicity']:g})"
        parts.append(text)
    return ", ".join(parts) + (f" ({'/'.join(sorted(streams))})" if streams else "")


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
@click.option(
    "--route",
    "route",
    metavar="APP_ID",
    help="Break the edge route of APP_ID (as `playground routes` shows it) with the "
    "toxics below, in the edge's data plane.",
)
@click.option("--port", type=click.IntRange(1, 65535), metavar="N",
              help="--route: only the app's route on service port N.")  # fmt: skip
@click.option("--latency", type=MILLIS, metavar="MS",
              help="--route: delay data by this much (200ms, 0.2s; a bare number is ms).")  # fmt: skip
@click.option("--jitter", type=MILLIS, metavar="MS",
              help="--route: vary the delay by up to +/- this much.")  # fmt: skip
@click.option("--loss", type=FRACTION, metavar="P",
              help="--route: reset this fraction of connections (0.1 or 10%) when their "
              "first data flows.")  # fmt: skip
@click.option("--bandwidth", type=RATE, metavar="RATE",
              help="--route: pass data at most at this rate (64KB = 64 KB/s, 1MB, 512B).")  # fmt: skip
@click.option("--reset", is_flag=True,
              help="--route: reset (TCP RST) every connection when data flows.")  # fmt: skip
@click.option("--reset-after", type=MILLIS, metavar="MS",
              help="--route: reset a connection this long after data flows.")  # fmt: skip
@click.option("--direction", type=click.Choice(["downstream", "upstream"]),
              default="downstream", show_default=True,
              help="--route: downstream: server to client; upstream: client to server.")  # fmt: skip
@click.option("--toxicity", type=click.FloatRange(0, 1), default=1.0, show_default=True,
              metavar="P", help="--route: the probability each toxic applies to a connection.")  # fmt: skip
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
    route: str | None,
    port: int | None,
    latency: float | None,
    jitter: float | None,
    loss: float | None,
    bandwidth: float | None,
    reset: bool,
    reset_after: float | None,
    direction: str,
    toxicity: float,
    as_json: bool,
) -> None:
    """Break NODE (as `playground status` names it; `marathon` and `leader` are shorthands).

    Or break a whole zone (--zone), the leading master (--leader), the masters' quorum
    (--quorum), or an app's route on the edge (--route APP_ID with --latency, --jitter,
    --loss, --bandwidth, --reset: Toxiproxy's toxics). `playground faults` lists what is
    broken; `playground heal` reverts it (`playground heal APP_ID` a route's faults).
    """
    chosen = [
        x
        for x, on in (
            ("NODE", node),
            ("--zone", zone),
            ("--leader", leader),
            ("--quorum", quorum),
            ("--route", route),
        )
        if on
    ]
    if len(chosen) != 1:
        raise click.UsageError(
            "give exactly one of NODE, --zone ZONE, --leader, --quorum, --route APP_ID"
            + (f" (got {', '.join(chosen)})" if chosen else "")
        )
    if how != "crash" and (leader or quorum or route):
        raise click.UsageError(f"--how {how} does not apply to {chosen[0]}")
    toxics = route_toxics(latency, jitter, loss, bandwidth, reset, reset_after, direction, toxicity)
    route_only = [
        name
        for name, on in (
            ("--port", port is not None),
            ("--latency/--jitter/--loss/--bandwidth/--reset", bool(toxics)),
            ("--direction", direction != "downstream"),
            ("--toxicity", toxicity != 1.0),
        )
        if on
    ]
    if route is None and route_only:
        raise click.UsageError(f"{route_only[0]} applies to --route APP_ID only")
    if route is not None and not toxics:
        raise click.UsageError(
            "--route needs a toxic: --latency, --jitter, --loss, --bandwidth or --reset"
        )
    faults = _faults()
    before = {f.id for f in faults.active()}
    _say_reverted(faults.revert_due())
    result: Fault | list[Fault]
    if route is not None:
        result = faults.break_route(route, toxics, port, for_seconds)
    elif node is not None:
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
        if f.kind == ROUTE:
            msg += f": {toxics_summary(f.route)}"
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
        if everything:
            line += f"{_when(f.reverted_at):<21}"
        if f.kind == ROUTE:
            line += toxics_summary(f.route)
        click.echo(line.rstrip())


@click.command()
@click.argument("node", required=False)
@click.option("--all", "everything", is_flag=True, help="Revert every active fault.")
@json_option
@state_dir_option
@handle_errors
def heal(node: str | None, everything: bool, as_json: bool) -> None:
    """Revert faults: start NODE (or, with --all or no NODE, every broken node) again with
    its disk, end partitions and drains, restore the quorum. An app id (/web, or
    /web:PORT) instead of NODE removes the route faults of its edge route."""
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
        if everything:
            click.echo("nothing to heal")
        elif str(node).startswith("/"):
            click.echo(f"no active route fault on {node}")
        else:
            click.echo(f"no active fault on {node}; it runs")
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
