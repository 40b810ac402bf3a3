"""``playground vips``: the cluster's VIPs (``VIP_{n}`` port labels), where they are served
and their backends, as the balancers beside the masters see them."""

from __future__ import annotations

from typing import Any

import click
import httpx

from playground.cli.common import emit_json, handle_errors, json_option, state_dir, state_dir_option
from playground.cluster.lifecycle import Cluster
from playground.errors import PlaygroundError

#: I/O timeout per master (not scaled).
TIMEOUT = 5.0


def collect(status: dict[str, Any]) -> dict[str, Any]:
    """Every running master's view (``GET /net/v1/vips``), merged: the VIPs of the first
    master with a fresh view, with each backend's connections summed over the masters
    (the kernel spreads a VIP's connections across them)."""
    masters = [n for n in status["nodes"] if n["role"] == "master" and n["state"] == "running"]
    if not masters:
        raise PlaygroundError(
            "no master runs, and the VIP balancers run beside the masters",
            hint="is the cluster up? see `playground status`",
        )
    views: list[dict[str, Any]] = []
    errors: list[str] = []
    for m in masters:
        try:
            r = httpx.get(f"http://{m['address']}/net/v1/vips", timeout=TIMEOUT)
            r.raise_for_status()
            views.append(r.json())
        except (httpx.HTTPError, ValueError) as exc:
            errors.append(f"{m['name']}: {exc}")
    if not views:
        raise PlaygroundError(
            "no master's VIP balancer answered: " + "; ".join(errors),
            hint="see `playground status` and `playground logs master-1`",
        )
    views.sort(key=lambda v: bool(v.get("stale")))
    best = views[0]
    counts: dict[tuple[str, str, int], int] = {}
    totals: dict[str, int] = {}
    for v in views:
        for vip in v.get("vips", []):
            totals[vip["vip"]] = totals.get(vip["vip"], 0) + int(vip.get("connections") or 0)
            for b in vip.get("backends", []):
                k = (vip["vip"], b["task_id"], b["port"])
                counts[k] = counts.get(k, 0) + int(b.get("connections") or 0)
    for vip in best.get("vips", []):
        vip["connections"] = totals.get(vip["vip"], 0)
        for b in vip.get("backends", []):
            b["connections"] = counts.get((vip["vip"], b["task_id"], b["port"]), 0)
    return {
        "vips": best.get("vips", []),
        "notices": best.get("notices", []),
        "stale": bool(best.get("stale")),
        "masters": [v.get("served_by") for v in views],
        "errors": errors,
    }


@click.command("vips")
@json_option
@state_dir_option
@handle_errors
def vips(as_json: bool) -> None:
    """The VIPs: name, the address serving it, backends and connections.

    A port label "VIP_0": "/prod/web:80" (in portDefinitions or portMappings) makes the
    app's tasks the backends of prodweb.marathon.l4lb.thisdcos.directory:80; the kit serves
    each VIP at a loopback address of the cluster (shown here and answered by
    `playground dns`), balanced by every master across the running, healthy tasks.
    """
    data = collect(Cluster(state_dir()).status())
    if as_json:
        emit_json(data)
        return
    if data["stale"]:
        click.echo(
            "warning: no master has a fresh view of the tasks; showing the last one", err=True
        )
    if not data["vips"]:
        click.echo(
            'no VIPs: give a port the label "VIP_0": "/NAME:PORT" (see `playground vips -h`)'
        )
    for vip in data["vips"]:
        name = f"  {vip['fqdn']}:{vip['port']}" if vip.get("fqdn") else ""
        state = "" if vip.get("listening", True) else f"  NOT SERVED: {vip.get('error')}"
        click.echo(f"{vip.get('label') or vip['vip']}{name}  at {vip['address']}{state}")
        click.echo(f"    apps {', '.join(vip['apps']) or '-'}; {vip['connections']} connections")
        if not vip["backends"]:
            click.echo("    -> no running task")
        for b in vip["backends"]:
            health = {True: "", False: " (unhealthy)", None: ""}[b.get("healthy")]
            click.echo(
                f"    -> {b['host']}:{b['port']}{health}  {b['connections']} connections"
                f"  {b['task_id']}"
            )
    for n in data["notices"]:
        click.echo(f"warning: task {n['task_id']} {n['label']}: {n['message']}", err=True)
