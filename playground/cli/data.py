"""``playground data load|verify``: lab data in a running ``kv`` app, with a manifest.

The app's task is found through Marathon (its host and first port). ``load`` writes
Faker customer records and then a manifest (``_manifest.<prefix>``) listing every key
with its SHA-256; ``verify`` reads the manifest from the same ``kv`` and checks every
record it lists (exit 0 only if all are present and unchanged). The logic lives in
:mod:`playground.workloads.dataset`.
"""

from __future__ import annotations

import sys
import time

import click

from playground.cli.common import emit_json, handle_errors, json_option, state_dir_option
from playground.errors import PlaygroundError

#: Show a progress line when loading or verifying at least this many records.
PROGRESS_FROM = 1000
#: How many missing or changed keys the human output lists.
SHOW_KEYS = 10

_app_option = click.option(
    "--app", "app_id", required=True, metavar="APP_ID", help="The Marathon app running `kv`."
)
_prefix_option = click.option(
    "--prefix",
    default="customers",
    show_default=True,
    metavar="NAME",
    help="The data set's name: records are NAME-000001..., the manifest _manifest.NAME.",
)
_task_option = click.option(
    "--task",
    "task_id",
    metavar="TASK_ID",
    help="Use this running task of the app [default: the oldest running task].",
)


def kv_url(app_id: str, task_id: str | None = None) -> tuple[str, str]:
    """The base URL of the app's running ``kv`` task (host and first port), and its id.

    Raises:
        PlaygroundError: no Marathon, no such app, no running task, or no port.
    """
    from playground.cli.app import hints, marathon_client
    from playground.client.marathon import normalize_id

    with marathon_client() as m, hints("see the apps with `playground app list`"):
        app = m.get_app(app_id, embed=("app.tasks",))
    name = normalize_id(app_id)
    running = [t for t in app.get("tasks") or [] if t.get("state") == "TASK_RUNNING"]
    if task_id is not None:
        running = [t for t in running if t.get("id") == task_id]
        if not running:
            raise PlaygroundError(
                f"app {name} has no running task {task_id}",
                hint=f"see its tasks with `playground app show {name}`",
            )
    if not running:
        raise PlaygroundError(
            f"app {name} has no running task ({app.get('tasksStaged', 0)} staged, "
            f"{app.get('instances', 0)} instance(s) wanted)",
            hint=f"wait for it (`playground app show {name}`), or see why it does not start "
            "with `playground queue`",
        )
    task = min(running, key=lambda t: (str(t.get("startedAt") or ""), str(t.get("id"))))
    ports = task.get("ports") or []
    if not ports or not task.get("host"):
        raise PlaygroundError(
            f"task {task.get('id')} of app {name} has no host and port to reach it on",
            hint="a kv app asks Marathon for a port (portDefinitions) and serves on $PORT0",
        )
    return f"http://{task['host']}:{ports[0]}", str(task.get("id"))


class _Progress:
    """A progress line on stderr for large data sets: redrawn in place on a terminal,
    else one line per 10 %."""

    def __init__(self, verb: str, enabled: bool) -> None:
        self.verb = verb
        self.enabled = enabled
        self.tty = sys.stderr.isatty()
        self.start = time.monotonic()
        self.last = 0.0
        self.last_decile = 0

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled or total < PROGRESS_FROM:
            return
        now = time.monotonic()
        decile = done * 10 // total
        if done != total:
            if self.tty and now - self.last < 0.2:
                return
            if not self.tty and decile == self.last_decile:
                return
        self.last, self.last_decile = now, decile
        rate = done / max(now - self.start, 1e-6)
        line = f"{self.verb} {done}/{total} records ({done * 100 // total}%, {rate:.0f}/s)"
        if self.tty:
            click.echo("\r" + line + ("\n" if done == total else ""), err=True, nl=False)
        else:
            click.echo(line, err=True)


@click.group()
def data() -> None:
    """Lab data: load Faker customer records into a kv app and verify them later."""


@data.command()
@_app_option
@click.option(
    "--records",
    "count",
    required=True,
    type=click.IntRange(min=1),
    metavar="N",
    help="How many customer records to write.",
)
@click.option(
    "--seed",
    default=0,
    show_default=True,
    type=int,
    metavar="S",
    help="Random seed: the same seed writes the same records.",
)
@_prefix_option
@_task_option
@click.option(
    "--concurrency",
    default=8,
    show_default=True,
    type=click.IntRange(1, 64),
    metavar="N",
    help="Writes in flight at a time.",
)
@json_option
@state_dir_option
@handle_errors
def load(
    app_id: str,
    count: int,
    seed: int,
    prefix: str,
    task_id: str | None,
    concurrency: int,
    as_json: bool,
) -> None:
    """Write N Faker customer records and their manifest into a running kv app.

    Every write must be acknowledged; the first refused write stops the load (a full
    volume says so). The manifest is written last, so a data set with a manifest is
    complete.
    """
    from playground.workloads import dataset

    dataset.check_prefix(prefix)
    url, task = kv_url(app_id, task_id)
    records = dataset.generate(count, seed, prefix)
    progress = _Progress("loaded", not as_json)
    result = dataset.load(
        url, records, prefix=prefix, seed=seed, concurrency=concurrency, progress=progress
    )
    if not result.durable:
        click.echo(
            f"warning: the kv of task {task} does not fsync before acknowledging "
            "(run it with --durable): a crash may lose acknowledged records",
            err=True,
        )
    if as_json:
        emit_json({**result.as_json(), "app": app_id, "task": task, "url": url, "seed": seed})
        return
    click.echo(
        f"loaded {result.count} records '{prefix}' (seed {seed}) into task {task} at {url} "
        f"in {result.seconds:.2f}s"
    )
    click.echo(f"manifest {result.manifest_key}: checksum {result.checksum}")


def _listing(keys: list[str]) -> str:
    shown = ", ".join(keys[:SHOW_KEYS])
    more = len(keys) - SHOW_KEYS
    return shown + (f" (and {more} more)" if more > 0 else "")


@data.command()
@_app_option
@_prefix_option
@_task_option
@json_option
@state_dir_option
@handle_errors
def verify(app_id: str, prefix: str, task_id: str | None, as_json: bool) -> None:
    """Check every record the manifest lists is present and unchanged (exit 0), else exit 1."""
    from playground.workloads import dataset

    dataset.check_prefix(prefix)
    url, task = kv_url(app_id, task_id)
    result = dataset.verify(url, prefix, progress=_Progress("verified", not as_json))
    if as_json:
        emit_json({**result.as_json(), "app": app_id, "task": task, "url": url})
    elif result.ok:
        click.echo(
            f"ok: {result.count} records '{prefix}' present and unchanged in task {task}; "
            f"checksum {result.checksum}"
        )
    else:
        click.echo(
            f"FAILED: {len(result.missing)} missing and {len(result.changed)} changed of "
            f"{result.count} records '{prefix}' in task {task}",
        )
        if result.missing:
            click.echo(f"missing: {_listing(result.missing)}")
        if result.changed:
            click.echo(f"changed: {_listing(result.changed)}")
        click.echo(f"checksum {result.checksum}, manifest says {result.expected_checksum}")
    if not result.ok:
        sys.exit(1)
