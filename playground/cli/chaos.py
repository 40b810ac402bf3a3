"""``playground chaos list|run|monkey``: experiments in the Chaos Toolkit format, and the monkey."""

from __future__ import annotations

import signal
import sys
import textwrap
from types import FrameType

import click

from playground.cli.common import emit_json, handle_errors, json_option, state_dir, state_dir_option
from playground.cluster.statedir import StateDir


@click.group()
def chaos() -> None:
    """Chaos experiments (Chaos Toolkit format) and the chaos monkey.

    `playground chaos list` shows the shipped catalogue; `playground chaos run NAME|FILE`
    runs one through chaostoolkit-lib and keeps its journal in the state directory.
    """


@chaos.command("list")
@json_option
@state_dir_option
@handle_errors
def list_(as_json: bool) -> None:
    """The shipped experiments: name, the topology they need, title and description."""
    from playground.chaos import catalogue

    entries = catalogue.entries()
    if as_json:
        emit_json([e.to_dict() for e in entries])
        return
    width = max(len(e.name) for e in entries) + 2
    click.echo(f"{'NAME':<{width}}{'NEEDS':<10}TITLE")
    for e in entries:
        click.echo(f"{e.name:<{width}}{e.needs.get('topology', 'default'):<10}{e.title}")
        for line in textwrap.wrap(e.description, 88):
            click.echo(" " * (width + 10) + line)
    click.echo("\n`playground chaos run NAME` runs one; `--dry` walks through it without acting.")


@chaos.command("run")
@click.argument("experiment", metavar="NAME|FILE")
@click.option(
    "--dry", is_flag=True, help="Walk through the experiment without running any activity."
)
@json_option
@state_dir_option
@handle_errors
def run(experiment: str, dry: bool, as_json: bool) -> None:
    """Run a shipped experiment (by NAME) or an experiment FILE (JSON or YAML).

    The steady state is checked before and after the method; rollbacks always run (also
    after a failure, Ctrl-C or SIGTERM). The journal goes to
    STATE/chaos/journals/<utc-stamp>-<name>.json. Exit 0 only when the run completed, the
    steady state was met before and after the method and no activity failed.
    """
    from playground.chaos import runner

    root = state_dir()
    exp, name = runner.load(experiment)
    runner.validate(exp)
    if not dry:
        StateDir(root).read()  # no cluster -> error with the `playground up` hint
    say = None if as_json else (lambda msg: click.echo(msg, err=True))
    result = runner.run(exp, name, root, dry=dry, say=say)
    if as_json:
        emit_json(result.to_dict())
    else:
        for line in runner.summary(result):
            click.echo(line)
    sys.exit(0 if result.ok else 1)


def _raise_interrupt(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@chaos.command()
@click.option(
    "--interval",
    type=click.FloatRange(min=0, min_open=True),
    default=10.0,
    show_default=True,
    metavar="S",
    help="Seconds between faults (each fault lasts 0.5 to 1.5 intervals).",
)
@click.option(
    "--targets",
    multiple=True,
    metavar="SPEC",
    help="Nodes to break: names, roles or zone:Z, comma-separated or repeated [default: the agents].",
)
@click.option("--exclude", multiple=True, metavar="SPEC", help="Nodes never to break (same forms).")
@click.option(
    "--for",
    "duration",
    type=click.FloatRange(min=0, min_open=True),
    metavar="S",
    help="Stop after S seconds [default: run until Ctrl-C].",
)
@click.option(
    "--max-nodes",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Never more than N nodes broken at once.",
)
@click.option("--seed", type=int, help="Random seed (the same seed picks the same faults).")
@state_dir_option
@handle_errors
def monkey(
    interval: float,
    targets: tuple[str, ...],
    exclude: tuple[str, ...],
    duration: float | None,
    max_nodes: int,
    seed: int | None,
) -> None:
    """Break random nodes within a blast radius; revert everything at the end and on Ctrl-C.

    Never more than --max-nodes nodes are broken at once (counting faults others made),
    never nodes of more than one zone. Faults: crash, stop, agent-restart (agents) and
    partition where the kit has it. Each is recorded on the timeline and in `playground faults`.
    """
    from playground.backends import EmbeddedBackend
    from playground.chaos.faults import Faults
    from playground.chaos.monkey import Monkey

    root = state_dir()
    StateDir(root).read()
    say = lambda msg: click.echo(msg, err=True)  # noqa: E731
    m = Monkey(
        Faults(EmbeddedBackend(root)),
        interval=interval,
        duration=duration,
        targets=targets,
        exclude=exclude,
        max_nodes=max_nodes,
        seed=seed,
        say=say,
    )
    say(
        f"monkey: breaking {', '.join(n.name for n in m.candidates)} every {interval:g}s"
        + (f" for {duration:g}s" if duration else " until Ctrl-C")
        + f" (at most {max_nodes} node(s), one zone at a time; faults: {', '.join(m.kinds)})"
    )
    old = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        done = m.run()
    finally:
        signal.signal(signal.SIGTERM, old)
    left = sorted(f.target for f, _ in m.mine.values())
    click.echo(
        f"monkey: {len(done)} fault(s); "
        + ("all reverted" if not left else "NOT healed: " + ", ".join(left))
    )
    if left:
        click.echo("hint: `playground heal --all`", err=True)
        sys.exit(1)
