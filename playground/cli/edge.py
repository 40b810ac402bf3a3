"""``playground expose|unexpose|routes``: put an app on the edge (marathon-lb's labels).

``expose`` sets marathon-lb's labels on the app through Marathon's API (a labels change is
a configuration change: Marathon restarts the app's tasks, as on a real cluster);
``unexpose`` removes every ``HAPROXY_*`` label; ``routes`` shows what the edge serves.
"""

from __future__ import annotations

import time
from typing import Any

import click

from playground.cli.app import hints, marathon_client
from playground.cli.common import (
    emit_json,
    handle_errors,
    json_option,
    progress_printer,
    state_dir,
    state_dir_option,
)
from playground.client.edge import EdgeClient
from playground.client.marathon import normalize_id
from playground.cluster.lifecycle import Cluster
from playground.errors import PlaygroundError

#: Marathon's service port range (``--local_port_min``/``--local_port_max``).
SERVICE_PORTS = (10000, 20000)


def edge_client() -> tuple[EdgeClient, dict[str, Any]]:
    """A client of the cluster's edge, and the cluster's status."""
    st = Cluster(state_dir()).status()
    url = st["endpoints"].get("edge_stats")
    if not url:
        raise PlaygroundError(
            f"cluster '{st['topology']}' has no edge node",
            hint="its topology has no `edge` node; the shipped topologies run edge-1 "
            "on the public agent",
        )
    node = next((n for n in st["nodes"] if n.get("role") == "edge"), None)
    if node is not None and node.get("state") != "running":
        raise PlaygroundError(
            f"the edge ({node['name']}) is {node.get('state')}",
            hint="it runs on public-agent-1: `playground heal public-agent-1` (or "
            "`playground up`) starts it",
        )
    return EdgeClient(url), st


def _labels_for(
    labels: dict[str, str], group: str, vhost: str | None, port: int | None
) -> dict[str, str]:
    out = dict(labels)
    out["HAPROXY_GROUP"] = group
    if vhost:
        out["HAPROXY_0_VHOST"] = vhost
    if port is not None:
        out["HAPROXY_0_PORT"] = str(port)
    return out


def _wait_route(edge: EdgeClient, app_id: str, instances: int, timeout: float) -> dict[str, Any]:
    """Wait until the edge serves the app with ``instances`` live backends."""
    deadline = time.monotonic() + timeout
    last: list[dict[str, Any]] = []
    while True:
        last = [r for r in edge.routes() if r["app"] == app_id]
        live = [
            b for r in last[:1] for b in r["backends"] if b["healthy"] and not b.get("draining")
        ]
        if last and len(live) >= instances:
            return last[0]
        if time.monotonic() > deadline:
            status = edge.status()
            why = [n["message"] for n in status.get("notices", []) if n.get("app") == app_id]
            raise PlaygroundError(
                f"the edge does not serve {app_id} with {instances} live backend(s) after "
                f"{timeout:g}s" + (f": {'; '.join(why)}" if why else ""),
                hint="`playground routes` shows what it serves; `playground app show "
                f"{app_id}` shows the tasks and their health",
            )
        time.sleep(0.1)


@click.command()
@click.argument("app_id")
@click.option("--vhost", metavar="HOST", help="Serve HTTP for this Host name (HAPROXY_0_VHOST).")
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    metavar="N",
    help="Serve on this port of the edge instead of the app's service port (HAPROXY_0_PORT).",
)
@click.option(
    "--group",
    default="external",
    show_default=True,
    metavar="G",
    help="The marathon-lb group (HAPROXY_GROUP); the edge serves 'external'.",
)
@click.option("--wait/--no-wait", default=True, show_default=True, help="Wait until served.")
@click.option("--timeout", type=float, default=120.0, show_default=True, metavar="S")
@json_option
@state_dir_option
@handle_errors
def expose(
    app_id: str,
    vhost: str | None,
    port: int | None,
    group: str,
    wait: bool,
    timeout: float,
    as_json: bool,
) -> None:
    """Put APP_ID on the edge: set marathon-lb's labels through Marathon's API.

    A labels change is a configuration change: Marathon replaces the app's tasks (a
    rolling restart), as on a real cluster.
    """
    app_id = normalize_id(app_id)
    client = marathon_client()
    say = progress_printer(not as_json)
    with hints(not_found=app_id):
        app = client.get_app(app_id)
    labels = _labels_for(dict(app.get("labels") or {}), group, vhost, port)
    if labels == (app.get("labels") or {}):
        say(f"{app_id} is already exposed that way")
        deployment = None
    else:
        with hints(not_found=app_id):
            result = client.patch_app(app_id, {"labels": labels})
        deployment = result["deploymentId"]
        say(f"labels set on {app_id} (deployment {deployment})")
    route: dict[str, Any] | None = None
    edge, st = edge_client()
    with edge:
        if wait:
            if deployment:
                client.wait_for_deployment(deployment, timeout=timeout)
            if group == "external":
                instances = int(app.get("instances") or 0)
                route = _wait_route(edge, app_id, min(instances, 1), timeout)
        else:
            route = next((r for r in edge.routes() if r["app"] == app_id), None)
    edge_host = st["endpoints"].get("edge")
    urls = []
    if route is not None:
        urls.append(f"tcp://{edge_host}:{route['service_port']}")
        if route.get("vhost"):
            for v in str(route["vhost"]).split(","):
                urls.append(f"{st['endpoints'].get('edge_http')} (Host: {v})")
    if as_json:
        emit_json({"app": app_id, "labels": labels, "deployment": deployment, "route": route})
        return
    if group != "external":
        click.echo(f"{app_id} is in group {group!r}: the edge serves 'external', not this group")
    for u in urls:
        click.echo(f"  {u}")


@click.command()
@click.argument("app_id")
@click.option("--wait/--no-wait", default=True, show_default=True, help="Wait until removed.")
@click.option("--timeout", type=float, default=120.0, show_default=True, metavar="S")
@json_option
@state_dir_option
@handle_errors
def unexpose(app_id: str, wait: bool, timeout: float, as_json: bool) -> None:
    """Take APP_ID off the edge: remove every HAPROXY_* label."""
    app_id = normalize_id(app_id)
    client = marathon_client()
    with hints(not_found=app_id):
        app = client.get_app(app_id)
    old = dict(app.get("labels") or {})
    labels = {k: v for k, v in old.items() if not k.startswith("HAPROXY_")}
    removed = sorted(set(old) - set(labels))
    deployment = None
    if removed:
        with hints(not_found=app_id):
            deployment = client.patch_app(app_id, {"labels": labels})["deploymentId"]
        if wait:
            client.wait_for_deployment(deployment, timeout=timeout)
            edge, _st = edge_client()
            with edge:
                deadline = time.monotonic() + timeout
                while any(r["app"] == app_id for r in edge.routes()):
                    if time.monotonic() > deadline:
                        raise PlaygroundError(f"the edge still serves {app_id} after {timeout:g}s")
                    time.sleep(0.1)
    if as_json:
        emit_json({"app": app_id, "removed": removed, "deployment": deployment})
    elif removed:
        click.echo(f"{app_id} is off the edge (removed {', '.join(removed)})")
    else:
        click.echo(f"{app_id} had no HAPROXY_* labels; nothing to do")


@click.command()
@json_option
@state_dir_option
@handle_errors
def routes(as_json: bool) -> None:
    """What the edge serves: per route the app, service port, vhost and backends."""
    edge, st = edge_client()
    with edge:
        rows = edge.routes()
        status = edge.status()
    if as_json:
        emit_json(rows)
        return
    host = st["endpoints"].get("edge")
    click.echo(
        f"edge {status['node']} ({status['engine']}) on {host}, vhosts on "
        f"{st['endpoints'].get('edge_http')}"
        + ("  [view of Marathon is STALE]" if status.get("stale") else "")
    )
    if not rows:
        click.echo("no routes: `playground expose APP_ID` puts an app on the edge")
    for r in rows:
        backends = ", ".join(
            f"{b['host']}:{b['port']}"
            + (
                ""
                if b["healthy"] and not b.get("draining")
                else " (draining)"
                if b.get("draining")
                else " (unhealthy)"
            )
            for b in r["backends"]
        )
        vhost = f"  vhost {r['vhost']}" + (r["path"] or "") if r.get("vhost") else ""
        click.echo(f"  {r['app']:<24} :{r['service_port']:<6} {r['mode']:<4}{vhost}")
        click.echo(f"      -> {backends or 'no backends'}")
    for n in status.get("notices", []):
        click.echo(f"warning: {n['app']}: {n['message']}", err=True)


COMMANDS = (expose, unexpose, routes)
