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
    node_endpoint,
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
    url = node_endpoint(
        st,
        "edge",
        "edge_stats",
        "edge node",
        "its topology has no `edge` node; the shipped topologies run edge-1 on the public agent",
        "it runs on public-agent-1: `playground heal public-agent-1` (or `playground up`) "
        "starts it",
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
        for t in r.get("toxics") or []:
            owner = f"fault {t['fault']}" if t.get("fault") else "API"
            attrs = ", ".join(f"{k} {v:g}" for k, v in t["attributes"].items())
            click.echo(f"      toxic {t['name']}: {t['type']} {t['stream']} ({attrs}; {owner})")
    for n in status.get("notices", []):
        click.echo(f"warning: {n['app']}: {n['message']}", err=True)


COMMANDS = (expose, unexpose, routes)


# ---- zdd: blue/green as marathon-lb's zdd.py does it --------------------------------------
ZDD_LABELS = ("HAPROXY_DEPLOYMENT_GROUP", "HAPROXY_DEPLOYMENT_ALT_PORT")


def _load_app_file(path: str) -> dict[str, Any]:
    import json
    from pathlib import Path

    import yaml

    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise PlaygroundError(f"cannot read {path}: {exc.strerror}") from None
    try:
        data = json.loads(text) if path.endswith(".json") else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise PlaygroundError(f"{path} is not valid JSON or YAML: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("id"), str):
        raise PlaygroundError(f"{path} is not a Marathon app definition (an object with an id)")
    return data


def _zdd_plan(app: dict[str, Any]) -> tuple[str, int, int]:
    """(group, main service port, alt port) of a zdd app definition, or a clear error."""
    labels = app.get("labels") or {}
    missing = [k for k in ZDD_LABELS if not str(labels.get(k, "")).strip()]
    if missing:
        raise PlaygroundError(
            f"{app['id']} has no {' and no '.join(missing)} label",
            hint="a blue/green app needs HAPROXY_DEPLOYMENT_GROUP (its name on the edge) and "
            "HAPROXY_DEPLOYMENT_ALT_PORT (the second service port), as marathon-lb's zdd",
        )
    try:
        alt = int(labels["HAPROXY_DEPLOYMENT_ALT_PORT"])
    except ValueError:
        raise PlaygroundError("HAPROXY_DEPLOYMENT_ALT_PORT must be a port number") from None
    ports = [int(p.get("port", 0)) for p in app.get("portDefinitions") or []]
    main = int(labels.get("HAPROXY_0_PORT") or (ports[0] if ports else 0))
    if not main:
        raise PlaygroundError(
            f"{app['id']} needs a fixed service port (portDefinitions[0].port) for zdd",
            hint="the edge serves the group on that port; the colours alternate between it "
            "and HAPROXY_DEPLOYMENT_ALT_PORT",
        )
    if main == alt:
        raise PlaygroundError("HAPROXY_DEPLOYMENT_ALT_PORT must differ from the service port")
    return str(labels["HAPROXY_DEPLOYMENT_GROUP"]), main, alt


def _group_apps(client: Any, group: str) -> list[dict[str, Any]]:
    apps = client.list_apps(embed=("apps.tasks",), label=f"HAPROXY_DEPLOYMENT_GROUP=={group}")
    return sorted(
        apps, key=lambda a: str((a.get("labels") or {}).get("HAPROXY_DEPLOYMENT_STARTED_AT", ""))
    )


def _wait_drained(
    edge: EdgeClient, group: str, old_tasks: set[str], timeout: float, say: Any
) -> None:
    """Wait until the edge sends no new connection to ``old_tasks`` and none is open."""
    route_app = "/" + group.strip("/")
    deadline = time.monotonic() + timeout
    said = False
    while time.monotonic() < deadline:
        route = next((r for r in edge.routes() if r["app"] == route_app), None)
        olds = [b for b in (route or {}).get("backends", []) if b["task_id"] in old_tasks]
        if route is not None and all(b["draining"] or not b["healthy"] for b in olds):
            names = {b["name"] for b in olds}
            busy = [
                r
                for r in edge.stats()
                if r.get("pxname") == route["backend"]
                and r.get("svname") in names
                and r.get("scur") not in ("", "0")
            ]
            if not busy:
                return
            if not said:
                say(f"waiting for {len(busy)} old server(s) to finish their connections")
                said = True
        time.sleep(0.1)
    raise PlaygroundError(
        f"the old tasks of {group} were still getting traffic after {timeout:g}s",
        hint="`playground routes` shows the group's backends; nothing was deleted",
    )


@click.command()
@click.argument("app_file", metavar="APP_FILE")
@click.option(
    "--new-instances",
    type=click.IntRange(min=0),
    metavar="N",
    help="Start only N instances of the new colour and stop there: traffic is split by "
    "instance counts (finish with --complete).",
)
@click.option(
    "--complete", is_flag=True, help="Finish a split deployment: all traffic to the new colour."
)
@click.option("--timeout", type=float, default=300.0, show_default=True, metavar="S")
@json_option
@state_dir_option
@handle_errors
def zdd(
    app_file: str, new_instances: int | None, complete: bool, timeout: float, as_json: bool
) -> None:
    """Blue/green deploy APP_FILE through the edge without dropping requests (marathon-lb's zdd).

    The app needs HAPROXY_DEPLOYMENT_GROUP and HAPROXY_DEPLOYMENT_ALT_PORT labels and a
    fixed service port. The first deploy is blue; the next deploys the other colour on
    the alternate service port, waits until its tasks are healthy, lets the edge drain the
    old colour's connections, then removes the old app. The edge serves the group on the
    main service port throughout.
    """
    app = _load_app_file(app_file)
    group, main, alt = _zdd_plan(app)
    client = marathon_client()
    say = progress_printer(not as_json)
    base = normalize_id(str((app.get("labels") or {}).get("HAPROXY_APP_ID") or app["id"]))
    for suffix in ("-blue", "-green"):
        if base.endswith(suffix):
            base = base[: -len(suffix)]
    existing = _group_apps(client, group)
    edge, _st = edge_client()
    result: dict[str, Any] = {"group": group}
    with edge:
        if complete:
            if len(existing) < 2:
                raise PlaygroundError(
                    f"no split deployment of {group} to complete",
                    hint="`playground zdd APP_FILE` deploys the next colour in one go",
                )
            old, new = existing[0], existing[-1]
            target = int(
                new["labels"].get("HAPROXY_DEPLOYMENT_TARGET_INSTANCES") or app.get("instances", 1)
            )
            say(f"scaling {new['id']} to {target}")
            with hints(not_found=new["id"]):
                dep = client.scale_app(new["id"], target)["deploymentId"]
            client.wait_for_deployment(dep, timeout=timeout)
            client.wait_app_running(new["id"], timeout=timeout)
        else:
            if len(existing) > 1:
                raise PlaygroundError(
                    f"a split deployment of {group} is in progress "
                    f"({', '.join(a['id'] for a in existing)})",
                    hint="`playground zdd APP_FILE --complete` finishes it",
                )
            old = existing[0] if existing else None
            colour = "blue"
            port = main
            if old is not None:
                colour = (
                    "green" if old["labels"].get("HAPROXY_DEPLOYMENT_COLOUR") == "blue" else "blue"
                )
                old_port = int((old.get("portDefinitions") or [{}])[0].get("port", 0))
                port = alt if old_port == main else main
            target = int(app.get("instances", 1))
            new = dict(app)
            new["id"] = f"{base}-{colour}"
            labels = dict(app.get("labels") or {})
            labels.update(
                HAPROXY_APP_ID=base,
                HAPROXY_DEPLOYMENT_COLOUR=colour,
                HAPROXY_DEPLOYMENT_STARTED_AT=time.strftime(
                    "%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()
                ),
                HAPROXY_DEPLOYMENT_TARGET_INSTANCES=str(target),
                HAPROXY_0_PORT=str(main),
            )
            instances = target
            if old is not None and new_instances is not None:
                instances = min(new_instances, target)
                labels["HAPROXY_DEPLOYMENT_NEW_INSTANCES"] = str(instances)
            new["labels"] = labels
            new["instances"] = instances
            defs = [dict(p) for p in app.get("portDefinitions") or [{"port": port}]]
            defs[0]["port"] = port
            new["portDefinitions"] = defs
            say(f"deploying {new['id']} ({instances} of {target}) on service port {port}")
            with hints():
                _created, dep = client.create_app(new)
            if dep:
                client.wait_for_deployment(dep, timeout=timeout)
            client.wait_app_running(new["id"], timeout=timeout)
            new = client.get_app(new["id"])
            if old is None or new_instances is not None:
                if old is None:
                    _wait_route(edge, "/" + group.strip("/"), min(instances, 1), timeout)
                result.update(
                    new_app=new["id"], old_app=old["id"] if old else None, split=old is not None
                )
                if as_json:
                    emit_json(result)
                else:
                    click.echo(
                        f"{group} on port {main}: {new['id']} ({instances} instance(s))"
                        + (f" beside {old['id']}" if old else "")
                    )
                return
        old_tasks = {t["id"] for t in client.list_tasks(old["id"])}
        say(f"draining {old['id']} on the edge")
        _wait_drained(edge, group, old_tasks, timeout, say)
        say(f"removing {old['id']}")
        with hints(not_found=old["id"]):
            dep = client.delete_app(old["id"])["deploymentId"]
        client.wait_for_deployment(dep, timeout=timeout)
    result.update(new_app=new["id"], old_app=old["id"], split=False)
    if as_json:
        emit_json(result)
    else:
        click.echo(f"{group} on port {main}: {new['id']} serves all traffic; {old['id']} removed")


COMMANDS = (*COMMANDS, zdd)
