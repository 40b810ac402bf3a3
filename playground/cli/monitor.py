"""``playground tickets`` and ``playground monitoring export|remediation`` (see ``playground.monitor``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import httpx

from playground.cli.common import emit_json, handle_errors, json_option, state_dir, state_dir_option
from playground.cluster.statedir import StateDir
from playground.errors import PlaygroundError
from playground.monitor import rules as rules_mod
from playground.monitor.tickets import FIELDS, tickets_path


class MonitorCliError(PlaygroundError):
    """A monitoring command failed."""


def monitor_url(rec: dict[str, Any]) -> str | None:
    """The monitor node's URL from a cluster record (None: the topology has no monitor)."""
    for name, node in rec.get("nodes", {}).items():
        if node.get("role") == "monitor":
            a = rec["addresses"][name]
            return f"http://{a['host']}:{a['port']}"
    return None


def read_tickets(root: Path, open_only: bool) -> tuple[list[dict[str, Any]], str | None]:
    """Tickets from the monitor's API, else from its file; the second item says why the file."""
    state = StateDir(root)
    rec = state.read()  # no cluster -> error with the `playground up` hint
    url = monitor_url(rec)
    why = "the cluster has no monitor node" if url is None else None
    if url is not None:
        try:
            r = httpx.get(
                f"{url}/v1/tickets", params={"open": "true"} if open_only else None, timeout=3.0
            )
            r.raise_for_status()
            return list(r.json()), None
        except (httpx.HTTPError, ValueError) as exc:
            why = f"the monitor ({url}) is not answering ({type(exc).__name__})"
    path = tickets_path(state.root)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return [], f"{why}; no tickets have been written yet"
    except (OSError, ValueError) as exc:
        raise MonitorCliError(
            f"{why}, and {path} cannot be read: {exc}",
            hint="`playground up` starts the monitor again",
        ) from None
    out = [{k: t.get(k) for k in FIELDS} for t in data.get("tickets", [])]
    if open_only:
        out = [t for t in out if t.get("resolved_at") is None]
    return out, f"{why}; showing the tickets as last written to {path}"


def _when(iso: str | None) -> str:
    return iso.replace("T", " ")[:19] if iso else "-"


@click.command()
@click.option("--open", "open_only", is_flag=True, help="Only tickets not resolved yet.")
@json_option
@state_dir_option
@handle_errors
def tickets(open_only: bool, as_json: bool) -> None:
    """The cluster's incident log: a ticket for every alert that fired.

    Read from the monitor node (`GET /v1/tickets` at `endpoints.monitor`); when it does
    not answer, from the file it keeps in the state directory (and a note on stderr).
    """
    items, note = read_tickets(state_dir(), open_only)
    if note:
        click.echo(f"note: {note}", err=True)
    if as_json:
        emit_json(items)
        return
    if not items:
        click.echo("no open tickets" if open_only else "no tickets")
        return
    click.echo(
        f"{'ID':<6}{'RULE':<19}{'SEVERITY':<10}{'SUBJECT':<17}{'OPENED':<21}{'DETECTED':<10}"
        f"{'RESOLVED':<21}ACTIONS"
    )
    for t in items:
        after = t.get("detected_after_s")
        acts = ", ".join(f"{a.get('action')} {a.get('result')}" for a in t.get("actions") or [])
        click.echo(
            (
                f"{t['id']:<6}{t['rule']:<19}{t['severity']:<10}{t['subject']:<17}"
                f"{_when(t['opened_at']):<21}{(f'{after:.1f}s' if after is not None else '-'):<10}"
                f"{_when(t.get('resolved_at')):<21}{acts or '-'}"
            ).rstrip()
        )


@click.group()
def monitoring() -> None:
    """The monitor's rules: export them for a real Prometheus, switch remediations."""


@monitoring.command("export")
@click.option(
    "--out",
    "out",
    type=click.Path(file_okay=False),
    default="prometheus-export",
    show_default=True,
    help="Directory to write prometheus.yml and rules.yml into.",
)
@json_option
@state_dir_option
@handle_errors
def export_cmd(out: str, as_json: bool) -> None:
    """Write prometheus.yml (scrape targets) and rules.yml (the alert rules) for Prometheus.

    Both are checked with `promtool` when it is installed; a check that fails exits 1.
    """
    from playground.monitor.export import export

    result = export(state_dir(), Path(out))
    if as_json:
        emit_json(result.to_dict())
    else:
        for f in result.files:
            click.echo(f"wrote {f}")
        if result.promtool is None:
            click.echo("promtool not found: files not checked (Debian: apt install prometheus)")
        for c in result.checks:
            click.echo(f"{' '.join(c.command[1:3])}: {'ok' if c.ok else 'FAILED'}")
    if not result.ok:
        failed = [c for c in result.checks if not c.ok]
        raise MonitorCliError(
            "promtool rejected the export: " + failed[0].output.splitlines()[-1],
            hint="fix the rules file in the state directory (monitor/rules.yml)",
        )


@monitoring.command("remediation")
@click.argument("rule")
@click.argument("switch", type=click.Choice(["on", "off"]))
@json_option
@state_dir_option
@handle_errors
def remediation_cmd(rule: str, switch: str, as_json: bool) -> None:
    """Turn the remediation of alert RULE on or off (in the cluster's rules file).

    The monitor picks the change up at its next round.
    """
    state = StateDir(state_dir())
    state.read()
    path = rules_mod.ensure_rules_file(state.root)
    groups = rules_mod.set_remediation(path, rule, switch == "on")
    policy = next(
        r.remediation for r in rules_mod.load(path) if r.kind == "alert" and r.name == rule
    )
    assert policy is not None
    if as_json:
        emit_json({"rule": rule, "groups": groups, "file": str(path), **policy.to_dict()})
        return
    click.echo(
        f"remediation of {rule} is {switch}: {policy.action} after "
        f"{policy.to_dict()['after']} of firing ({path})"
    )
