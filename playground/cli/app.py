"""``playground app|deployment|queue``: Marathon apps, their deployments and the launch queue.

A thin layer over :class:`playground.client.MarathonClient`: every command takes ``--json``
(Marathon's own JSON, unchanged where there is one), prints compact tables otherwise, and
turns Marathon's errors into ``error:``/``hint:`` lines with exit code 1.
"""

from __future__ import annotations

import difflib
import json
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import IO, Any

import click
import yaml

from playground.cli.common import (
    emit_json,
    handle_errors,
    json_option,
    node_endpoint,
    progress_printer,
    state_dir,
    state_dir_option,
)
from playground.client import AppLocked, MarathonClient, MarathonNotFound
from playground.client.marathon import describe_actions, normalize_id
from playground.cluster.lifecycle import Cluster
from playground.errors import PlaygroundError

Json = dict[str, Any]

#: What each of Marathon's offer rejection reasons means, for the person at the keyboard.
REJECT_REASONS = {
    "UnfulfilledRole": "the offered resources are reserved for another role (see acceptedResourceRoles)",
    "UnfulfilledConstraint": "no offered agent satisfies the app's constraints",
    "NoCorrespondingReservationFound": "no reservation for the app's persistent volumes on the agent",
    "AgentMaintenance": "the agent is in maintenance",
    "AgentUnknown": "the agent is not known (yet)",
    "InsufficientCpus": "not enough free cpus on the agent",
    "InsufficientMemory": "not enough free mem on the agent",
    "InsufficientDisk": "not enough free disk on the agent",
    "InsufficientGpus": "not enough free gpus on the agent",
    "InsufficientPorts": "the requested ports are not free on the agent",
    "DeclinedScarceResources": "the agent has scarce resources (gpus) the app does not need",
    "UnfulfilledRegion": "the agent is not in the app's region",
    "UnfulfilledZone": "the agent is not in the app's zone",
}

#: The fields of Marathon 1.10's App (raml/v2/types/app.raml) and the status fields
#: `app show --json` adds. Marathon ignores any other field without a word: we warn.
APP_FIELDS = frozenset(
    [
        "id",
        "acceptedResourceRoles",
        "args",
        "backoffFactor",
        "backoffSeconds",
        "cmd",
        "constraints",
        "container",
        "cpus",
        "dependencies",
        "disk",
        "env",
        "executor",
        "executorResources",
        "fetch",
        "healthChecks",
        "check",
        "instances",
        "labels",
        "maxLaunchDelaySeconds",
        "mem",
        "gpus",
        "ipAddress",
        "networks",
        "ports",
        "portDefinitions",
        "readinessChecks",
        "residency",
        "resourceLimits",
        "requirePorts",
        "secrets",
        "taskKillGracePeriodSeconds",
        "upgradeStrategy",
        "uris",
        "user",
        "version",
        "versionInfo",
        "killSelection",
        "unreachableStrategy",
        "tty",
        "role",
        "tasksStaged",
        "tasksRunning",
        "tasksHealthy",
        "tasksUnhealthy",
        "deployments",
        "tasks",
        "lastTaskFailure",
        "readinessCheckResults",
        "taskStats",
    ]
)


# ---- plumbing ---------------------------------------------------------------------------
def marathon_client() -> MarathonClient:
    """A client for the cluster's Marathon, or a PlaygroundError saying why there is none."""
    st = Cluster(state_dir()).status()
    url = node_endpoint(
        st,
        "marathon",
        "marathon",
        "Marathon node",
        "its topology has no `marathon` node; a cluster started with the default "
        "topology (`playground up`) has one",
        "`playground up` starts it",
    )
    return MarathonClient(url)


@contextmanager
def hints(not_found: str | None = None) -> Iterator[None]:
    """Add the CLI's hints to Marathon's errors (what to run next)."""
    try:
        yield
    except AppLocked as exc:
        ids = ", ".join(exc.deployments)
        exc.hint = (
            f"deployment {ids} is still running: wait for it (`playground deployment list`), "
            "roll it back (`playground deployment rollback ID`) or retry with --force"
        )
        raise
    except MarathonNotFound as exc:
        if not_found:
            exc.hint = not_found
        raise


def load_definition(stream: IO[str]) -> Json:
    """An app definition from a JSON or YAML file (``-``: stdin)."""
    name = getattr(stream, "name", "<stdin>")
    text = stream.read()
    try:
        data = json.loads(text)
    except ValueError as json_exc:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            first = text.lstrip()[:1]
            why = json_exc if first in ("{", "[") else exc
            raise PlaygroundError(
                f"{name} is neither JSON nor YAML: {why}",
                hint="an app definition is a JSON (or YAML) object, e.g. "
                '{"id": "/web", "cmd": "sleep 1000", "cpus": 0.1, "mem": 32}',
            ) from None
    if isinstance(data, list):
        raise PlaygroundError(
            f"{name} holds a list of {len(data)} definitions, not one app",
            hint="put one app per file (or a group: POST /v2/groups)",
        )
    if not isinstance(data, dict):
        raise PlaygroundError(
            f"{name} is not an app definition (a JSON or YAML object)",
            hint='e.g. {"id": "/web", "cmd": "sleep 1000", "cpus": 0.1, "mem": 32}',
        )
    return data


def warn_unknown_fields(defn: Json) -> None:
    """Warn (stderr) about fields Marathon would silently ignore, e.g. a misspelt one."""
    for key in defn:
        if key in APP_FIELDS:
            continue
        close = difflib.get_close_matches(key, APP_FIELDS, n=1)
        guess = f" (did you mean '{close[0]}'?)" if close else ""
        click.echo(f"warning: unknown field '{key}' is ignored by Marathon{guess}", err=True)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A compact table: columns as wide as their widest cell, two spaces apart."""
    cells = [[("-" if v is None or v == "" else str(v)) for v in r] for r in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    for r in [list(headers), *cells]:
        click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


def short(text: Any, width: int = 40) -> str:
    s = " ".join(str(text or "").split())
    return s if len(s) <= width else s[: width - 1] + "…"


def app_status(app: Json) -> str:
    """A one-word status like the DC/OS UI's: deploying, suspended, running, waiting."""
    instances = int(app.get("instances") or 0)
    running = int(app.get("tasksRunning") or 0)
    if app.get("deployments"):
        return "deploying"
    if instances == 0:
        return "suspended"
    if running >= instances:
        return "running"
    return "waiting"


def constraints_text(constraints: Any) -> str:
    return "; ".join(" ".join(str(p) for p in c) for c in constraints or []) or "-"


def wait_option(f: Callable[..., Any]) -> Callable[..., Any]:
    f = click.option(
        "--timeout",
        type=float,
        default=60.0,
        show_default=True,
        help="Seconds --wait waits for the deployment.",
    )(f)
    return click.option(
        "--wait", is_flag=True, help="Wait until the deployment has finished (progress on stderr)."
    )(f)


def wait_for(
    m: MarathonClient, deployment_id: str, timeout: float, say: Callable[[str], None]
) -> float:
    """Wait for a deployment, saying each new step; the seconds it took."""
    t0 = time.monotonic()

    def progress(dep: Json) -> None:
        actions = describe_actions(dep.get("currentActions") or [])
        say(f"  step {dep.get('currentStep')}/{dep.get('totalSteps')}: {actions}")

    say(f"waiting for deployment {deployment_id} ...")
    m.wait_for_deployment(deployment_id, timeout, progress=progress)
    elapsed = time.monotonic() - t0
    say(f"deployment {deployment_id} finished in {elapsed:.1f}s")
    return elapsed


def report_deployment(
    m: MarathonClient,
    what: str,
    result: Json,
    *,
    wait: bool,
    timeout: float,
    as_json: bool,
    extra: Json | None = None,
) -> None:
    """Print (or emit) a started deployment; with ``wait``, wait for it first."""
    out: Json = {**(extra or {}), **result}
    dep = str(result.get("deploymentId") or "")
    if not as_json:
        click.echo(f"{what}: deployment {dep or '-'}")
    if wait and dep:
        out["elapsed"] = round(wait_for(m, dep, timeout, progress_printer(not as_json)), 3)
    if as_json:
        emit_json(out)


# ---- playground app ----------------------------------------------------------------------
@click.group()
def app() -> None:
    """Marathon apps: add, list, show, scale, restart, update, remove.

    An app id is a Marathon path (`/prod/web`); `web` means `/web`.
    """


@app.command()
@click.argument("file", type=click.File("r"), metavar="FILE")
@wait_option
@json_option
@state_dir_option
@handle_errors
def add(file: IO[str], wait: bool, timeout: float, as_json: bool) -> None:
    """Create an app from a JSON or YAML definition (FILE, or - for stdin).

    Prints the app id and the id of the deployment that starts it.
    """
    defn = load_definition(file)
    warn_unknown_fields(defn)
    with marathon_client() as m, hints():
        created, dep = m.create_app(defn)
        app_id = str(created.get("id") or normalize_id(str(defn.get("id", ""))))
        report_deployment(
            m,
            f"app {app_id} added",
            {"deploymentId": dep, "version": created.get("version")},
            wait=wait,
            timeout=timeout,
            as_json=as_json,
            extra={"id": app_id, "app": created},
        )


@app.command("list")
@json_option
@state_dir_option
@handle_errors
def list_(as_json: bool) -> None:
    """List the apps: status, tasks running of instances, resources, command."""
    with marathon_client() as m:
        apps = m.list_apps(embed=("apps.counts", "apps.deployments"))
    if as_json:
        emit_json(apps)
        return
    if not apps:
        click.echo("no apps; add one with `playground app add FILE`")
        return
    rows = [
        [
            a["id"],
            app_status(a),
            f"{a.get('tasksRunning', 0)}/{a.get('instances', 0)}",
            f"{a.get('cpus', 0):g}",
            f"{a.get('mem', 0):g}",
            short(a.get("cmd") or (a.get("container") or {}).get("type"), 40),
        ]
        for a in sorted(apps, key=lambda a: str(a["id"]))
    ]
    table(["ID", "STATUS", "RUNNING", "CPUS", "MEM", "CMD"], rows)


@app.command()
@click.argument("app_id", metavar="ID")
@json_option
@state_dir_option
@handle_errors
def show(app_id: str, as_json: bool) -> None:
    """An app's definition, status, deployments, last failure and tasks."""
    with marathon_client() as m, hints("see the apps with `playground app list`"):
        a = m.get_app(
            app_id, embed=("app.tasks", "app.counts", "app.deployments", "app.lastTaskFailure")
        )
    if as_json:
        emit_json(a)
        return
    ports = [p.get("port") for p in a.get("portDefinitions") or []] or a.get("ports") or []
    fields = [
        (
            "status",
            f"{app_status(a)}: {a.get('tasksRunning', 0)}/{a.get('instances', 0)} running"
            f", {a.get('tasksStaged', 0)} staged",
        ),
        ("cmd", a.get("cmd") or "-"),
        (
            "resources",
            f"cpus {a.get('cpus', 0):g}  mem {a.get('mem', 0):g}  disk {a.get('disk', 0):g}",
        ),
        ("constraints", constraints_text(a.get("constraints"))),
        ("ports", ", ".join(str(p) for p in ports) or "-"),
        ("role", a.get("role") or "-"),
        ("version", a.get("version") or "-"),
        ("deployments", ", ".join(str(d.get("id")) for d in a.get("deployments") or []) or "-"),
    ]
    failure = a.get("lastTaskFailure")
    if failure:
        fields.append(
            (
                "last failure",
                f"{failure.get('state')} of {failure.get('taskId')} on {failure.get('host')} "
                f"at {failure.get('timestamp')}: {short(failure.get('message'), 80)}",
            )
        )
    click.echo(f"app {a['id']}")
    for k, v in fields:
        click.echo(f"  {k:<13}{v}")
    tasks = a.get("tasks") or []
    click.echo("")
    if not tasks:
        click.echo("no tasks" + ("; see `playground queue`" if a.get("instances") else ""))
        return
    table(
        ["TASK", "STATE", "HOST", "PORTS", "STARTED"],
        [
            [
                t.get("id"),
                t.get("state"),
                t.get("host"),
                ",".join(str(p) for p in t.get("ports") or []),
                t.get("startedAt"),
            ]
            for t in tasks
        ],
    )


@app.command()
@click.argument("app_id", metavar="ID")
@click.argument("instances", metavar="N", type=click.IntRange(min=0))
@click.option("--force", is_flag=True, help="Override a deployment holding the app.")
@wait_option
@json_option
@state_dir_option
@handle_errors
def scale(
    app_id: str, instances: int, force: bool, wait: bool, timeout: float, as_json: bool
) -> None:
    """Set the number of instances of app ID to N (0 suspends it)."""
    with marathon_client() as m, hints("see the apps with `playground app list`"):
        m.get_app(app_id)  # PUT would create a missing app: a misspelt id must not
        result = m.scale_app(app_id, instances, force=force)
        report_deployment(
            m,
            f"app {normalize_id(app_id)} scaling to {instances}",
            dict(result),
            wait=wait,
            timeout=timeout,
            as_json=as_json,
            extra={"id": normalize_id(app_id), "instances": instances},
        )


@app.command()
@click.argument("app_id", metavar="ID")
@click.option("--force", is_flag=True, help="Override a deployment holding the app.")
@wait_option
@json_option
@state_dir_option
@handle_errors
def restart(app_id: str, force: bool, wait: bool, timeout: float, as_json: bool) -> None:
    """Replace every task of app ID with a new one (a rolling restart)."""
    with marathon_client() as m, hints("see the apps with `playground app list`"):
        result = m.restart_app(app_id, force=force)
        report_deployment(
            m,
            f"app {normalize_id(app_id)} restarting",
            dict(result),
            wait=wait,
            timeout=timeout,
            as_json=as_json,
            extra={"id": normalize_id(app_id)},
        )


@app.command()
@click.argument("app_id", metavar="ID")
@click.argument("file", type=click.File("r"), metavar="FILE")
@click.option("--force", is_flag=True, help="Override a deployment holding the app.")
@wait_option
@json_option
@state_dir_option
@handle_errors
def update(
    app_id: str, file: IO[str], force: bool, wait: bool, timeout: float, as_json: bool
) -> None:
    """Change app ID with the fields in FILE (JSON or YAML; - for stdin).

    Fields FILE leaves out keep their values; a changed definition restarts the tasks.
    """
    defn = load_definition(file)
    warn_unknown_fields(defn)
    target = normalize_id(app_id)
    if isinstance(defn.get("id"), str) and normalize_id(defn["id"]) != target:
        raise PlaygroundError(
            f"{getattr(file, 'name', 'the file')} defines app {normalize_id(defn['id'])}, not {target}",
            hint="drop `id` from the file or update the app it names",
        )
    with marathon_client() as m, hints("see the apps with `playground app list`"):
        m.get_app(target)  # PUT would create a missing app: `app add` does that
        result = m.update_app(target, defn, force=force)
        report_deployment(
            m,
            f"app {target} updating",
            dict(result),
            wait=wait,
            timeout=timeout,
            as_json=as_json,
            extra={"id": target},
        )


@app.command()
@click.argument("app_id", metavar="ID")
@click.option("--force", is_flag=True, help="Override a deployment holding the app.")
@wait_option
@json_option
@state_dir_option
@handle_errors
def remove(app_id: str, force: bool, wait: bool, timeout: float, as_json: bool) -> None:
    """Stop every task of app ID and remove the app."""
    with marathon_client() as m, hints("see the apps with `playground app list`"):
        result = m.delete_app(app_id, force=force)
        report_deployment(
            m,
            f"app {normalize_id(app_id)} removing",
            dict(result),
            wait=wait,
            timeout=timeout,
            as_json=as_json,
            extra={"id": normalize_id(app_id)},
        )


# ---- playground deployment ---------------------------------------------------------------
@click.group()
def deployment() -> None:
    """Marathon deployments: the changes in progress."""


@deployment.command("list")
@json_option
@state_dir_option
@handle_errors
def deployment_list(as_json: bool) -> None:
    """List the running deployments: apps, step, current actions."""
    with marathon_client() as m:
        deps = m.list_deployments()
    if as_json:
        emit_json(deps)
        return
    if not deps:
        click.echo("no deployments running")
        return
    table(
        ["ID", "APPS", "STEP", "CURRENT ACTIONS", "VERSION"],
        [
            [
                d.get("id"),
                ",".join([*d.get("affectedApps", []), *d.get("affectedPods", [])]),
                f"{d.get('currentStep')}/{d.get('totalSteps')}",
                describe_actions(d.get("currentActions") or []),
                d.get("version"),
            ]
            for d in deps
        ],
    )


@deployment.command()
@click.argument("deployment_id", metavar="ID")
@click.option(
    "--force",
    is_flag=True,
    help="Only cancel the deployment, without a rollback (may leave the app half changed).",
)
@wait_option
@json_option
@state_dir_option
@handle_errors
def rollback(deployment_id: str, force: bool, wait: bool, timeout: float, as_json: bool) -> None:
    """Revert deployment ID with a new deployment that undoes it (--force: only cancel it)."""
    with (
        marathon_client() as m,
        hints("see the running deployments with `playground deployment list`"),
    ):
        result = m.delete_deployment(deployment_id, force=force)
        if result is None:
            if as_json:
                emit_json({"cancelled": deployment_id, "deploymentId": None})
            else:
                click.echo(f"deployment {deployment_id} cancelled (no rollback)")
            return
        report_deployment(
            m,
            f"deployment {deployment_id} rolling back",
            dict(result),
            wait=wait,
            timeout=timeout,
            as_json=as_json,
            extra={"cancelled": deployment_id},
        )


# ---- playground queue --------------------------------------------------------------------
def rejections(entry: Json) -> list[Json]:
    """Why offers were not used for a queued app: ``[{reason, declined, processed}]``.

    From ``processedOffersSummary.rejectSummaryLastOffers`` (the last offer of each agent);
    without one, counted from ``lastUnusedOffers``.
    """
    summary = entry.get("processedOffersSummary") or {}
    steps = summary.get("rejectSummaryLastOffers") or summary.get("rejectSummaryLaunchAttempt")
    out = [
        {
            "reason": s.get("reason"),
            "declined": int(s.get("declined") or 0),
            "processed": int(s.get("processed") or 0),
        }
        for s in steps or []
        if int(s.get("declined") or 0) > 0
    ]
    if out:
        return out
    unused = entry.get("lastUnusedOffers") or []
    counts: dict[str, int] = {}
    for u in unused:
        for reason in u.get("reason") or []:
            counts[reason] = counts.get(reason, 0) + 1
    return [{"reason": r, "declined": n, "processed": len(unused)} for r, n in counts.items()]


@click.command()
@json_option
@state_dir_option
@handle_errors
def queue(as_json: bool) -> None:
    """Apps waiting for resources, and why the offers did not fit them.

    The answer to "why isn't my app running?": for each waiting app, how many offers each
    check (constraints, roles, cpus, mem, disk, ports) turned down.
    """
    with marathon_client() as m:
        entries = m.get_queue(embed_last_unused_offers=True)
    if as_json:
        emit_json(entries)
        return
    if not entries:
        click.echo("the launch queue is empty: no app is waiting for resources")
        return
    for i, e in enumerate(entries):
        spec = e.get("app") or e.get("pod") or {}
        if i:
            click.echo("")
        delay = e.get("delay") or {}
        click.echo(
            f"{spec.get('id', '?')}: {e.get('count', 0)} instance(s) waiting since "
            f"{e.get('since', '?')} (role {e.get('role', '*')})"
        )
        click.echo(
            f"  asks for cpus {spec.get('cpus', 0):g}  mem {spec.get('mem', 0):g}  "
            f"disk {spec.get('disk', 0):g}; constraints {constraints_text(spec.get('constraints'))}"
        )
        left = delay.get("timeLeftSeconds") or 0
        if left and not delay.get("overdue", True):
            click.echo(
                f"  launch delayed {left}s more (backoff after failed tasks; see `playground app show`)"
            )
        if e.get("waitingReason"):
            # The kit's addition: storage that is not there, or why the last launch failed.
            click.echo(f"  waiting: {e['waitingReason']}")
        summary = e.get("processedOffersSummary") or {}
        if summary:
            click.echo(
                f"  offers: {summary.get('processedOffersCount', 0)} processed, "
                f"{summary.get('unusedOffersCount', 0)} unused"
            )
        rej = rejections(e)
        if rej:
            click.echo("  why offers were declined:")
            width = max(len(str(r["reason"])) for r in rej)
            for r in rej:
                meaning = REJECT_REASONS.get(str(r["reason"]), "")
                line = f"{r['reason']}: {r['declined']} of {r['processed']} offers"
                click.echo(
                    f"    {line:<{width + 20}}{meaning}".rstrip() if meaning else f"    {line}"
                )
        elif not summary.get("processedOffersCount"):
            click.echo("  no offers processed yet (is every agent busy or unregistered?)")
        last = e.get("lastUnusedOffers") or []
        if last:
            click.echo("  last unused offers:")
            table_rows = [
                [
                    (u.get("offer") or {}).get("hostname"),
                    ", ".join(u.get("reason") or []),
                    u.get("timestamp"),
                ]
                for u in last[-10:]
            ]
            for row in table_rows:
                click.echo(f"    {row[0] or '-':<20} {row[1] or '-':<40} {row[2] or ''}".rstrip())
