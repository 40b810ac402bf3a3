"""``playground volume|snapshot|schedule``: the storage node from the command line.

Every listing takes ``--json`` (a JSON list) and every create prints the new object (with
its ``id``) under ``--json``. Errors come from the storage node with what to do next.
"""

from __future__ import annotations

import re
import sys
from typing import Any

import click

from playground.cli.common import (
    emit_json,
    handle_errors,
    json_option,
    state_dir,
    state_dir_option,
)
from playground.client.storage import StorageClient
from playground.cluster import auth
from playground.cluster.lifecycle import Cluster
from playground.errors import PlaygroundError


def storage_client() -> StorageClient:
    """A client of the cluster's storage node, or a PlaygroundError saying why there is none."""
    cluster = Cluster(state_dir())
    rec = cluster.record()
    topo = cluster.topology()
    nodes = topo.by_role("storage")
    if not nodes:
        raise PlaygroundError(
            f"cluster '{rec['name']}' has no storage node",
            hint="its topology has no `storage` node; the shipped topologies have storage-1",
        )
    name = nodes[0].name
    if not cluster.node_alive(rec, name):
        raise PlaygroundError(
            f"the storage node {name} is not running",
            hint="`playground up` starts it (or `playground heal` if it was broken)",
        )
    return StorageClient(
        cluster.address(rec, name).url,
        who=f"{_login()}@cli",
        token=auth.load_token(cluster.state.root),
    )


def _q(segment: str) -> str:
    """A user's string as one URL path segment (never `..` or `/` into the API's paths)."""
    from playground.client.storage import _seg

    return _seg(segment)


def _login() -> str:
    from playground.storage.audit import current_user

    return current_user().rsplit("@", 1)[0]


def _gb(value: float) -> str:
    return f"{value:g} GB"


def _bytes(n: int | None) -> str:
    if n is None:
        return "-"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def _labels(values: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for v in values:
        if "=" not in v:
            raise click.BadParameter(f"{v!r} is not KEY=VALUE", param_hint="--label")
        k, val = v.split("=", 1)
        out[k] = val
    return out


def _volume_line(v: dict[str, Any]) -> str:
    reps = ", ".join(
        f"{r['node']}{'*' if r['primary'] else ''}:{r['state']}"
        + (f" lag {r['lag_seconds']:.2f}s" if r.get("lag_seconds") else "")
        for r in v["replicas"]
    )
    att = v.get("attachment")
    used = f"{_bytes(v['used_bytes'])}/{_gb(v['size_gb'])}"
    where = f"attached to {att['task_id']} on {att['node']}" if att else "detached"
    return f"{v['name']:<20} {v['status']:<9} repl {v['repl']}  {used:<18} {where}\n    {reps}"


# ---- volume ---------------------------------------------------------------------------
@click.group()
def volume() -> None:
    """Volumes of the storage node: replicated across zones, snapshotted, resized online."""


@volume.command("create")
@click.argument("name")
@click.option("--size", required=True, type=float, metavar="GB", help="Size in GB (a quota).")
@click.option("--repl", default=1, show_default=True, type=int, help="Replicas (1-3).")
@click.option(
    "--secure",
    is_flag=True,
    help="Encrypt secondary replicas, snapshots, backups (working copy stays plaintext).",
)
@click.option("--label", "labels", multiple=True, metavar="KEY=VALUE", help="Repeatable.")
@click.option("--rack-aware", is_flag=True, help="Replicas in distinct racks, not only zones.")
@json_option
@state_dir_option
@handle_errors
def volume_create(
    name: str,
    size: float,
    repl: int,
    secure: bool,
    labels: tuple[str, ...],
    rack_aware: bool,
    as_json: bool,
) -> None:
    """Create volume NAME with --size GB and --repl N replicas in distinct zones."""
    with storage_client() as c:
        v = c.create_volume(
            name=name,
            size=size,
            repl=repl,
            secure=secure,
            labels=_labels(labels),
            rack_aware=rack_aware,
        )
    if as_json:
        emit_json(v)
    else:
        click.echo(
            f"created volume {v['name']} ({v['id']}): {_gb(v['size_gb'])}, "
            f"replicas on {', '.join(r['node'] for r in v['replicas'])}"
        )


@volume.command("list")
@json_option
@state_dir_option
@handle_errors
def volume_list(as_json: bool) -> None:
    """Every volume with its replicas, their state and lag."""
    with storage_client() as c:
        vols = c.volumes()
    if as_json:
        emit_json(vols)
        return
    if not vols:
        click.echo("no volumes (`playground volume create NAME --size GB` makes one)")
    for v in vols:
        click.echo(_volume_line(v))


@volume.command("inspect")
@click.argument("name")
@json_option
@state_dir_option
@handle_errors
def volume_inspect(name: str, as_json: bool) -> None:
    """One volume in full."""
    with storage_client() as c:
        v = c.volume(name)
    if as_json:
        emit_json(v)
        return
    click.echo(_volume_line(v))
    click.echo(
        f"    id {v['id']}, created {v['created_at']}, secure {v['secure']}, "
        f"labels {v['labels'] or '{}'}, snapshots {v['snapshots']}"
    )


@volume.command("resize")
@click.argument("name")
@click.option("--size", required=True, type=float, metavar="GB")
@json_option
@state_dir_option
@handle_errors
def volume_resize(name: str, size: float, as_json: bool) -> None:
    """Change a volume's size online (tasks keep running)."""
    with storage_client() as c:
        v = c.resize(name, size)
    emit_json(v) if as_json else click.echo(f"volume {v['name']} is now {_gb(v['size_gb'])}")


@volume.command("ha-update")
@click.argument("name")
@click.option("--repl", required=True, type=int, help="The new replication factor (one step).")
@json_option
@state_dir_option
@handle_errors
def volume_ha_update(name: str, repl: int, as_json: bool) -> None:
    """Change the replication factor by one; a new replica syncs in the background."""
    with storage_client() as c:
        v = c.ha_update(name, repl)
    if as_json:
        emit_json(v)
    else:
        click.echo(
            f"volume {v['name']}: repl {v['repl']}, replicas on "
            f"{', '.join(r['node'] for r in v['replicas'])}"
        )


@volume.command("delete")
@click.argument("name")
@json_option
@state_dir_option
@handle_errors
def volume_delete(name: str, as_json: bool) -> None:
    """Delete a volume that no task uses (its snapshots stay)."""
    with storage_client() as c:
        out = c.delete_volume(name)
    emit_json(out) if as_json else click.echo(f"deleted volume {out['name']}")


@volume.command("verify")
@click.argument("name")
@json_option
@state_dir_option
@handle_errors
def volume_verify(name: str, as_json: bool) -> None:
    """Prove a volume, its replicas and its snapshots are intact (exit 1 if not)."""
    with storage_client() as c:
        out = c.verify(name)
    if as_json:
        emit_json(out)
    else:
        for r in out["replicas"]:
            state = "offline" if r["ok"] is None else "ok" if r["ok"] else "DIFFERS"
            extra = f" ({', '.join(r['differing'])})" if r.get("differing") else ""
            click.echo(f"replica {r['node']}: {state}{extra}")
        for s in out["snapshots"]:
            extra = f" ({', '.join(s['damaged_files'])})" if s["damaged_files"] else ""
            click.echo(f"snapshot {s['id']}: {'ok' if s['ok'] else 'DAMAGED'}{extra}")
        click.echo(f"volume {out['name']}: {'intact' if out['ok'] else 'NOT intact'}")
    if not out["ok"]:
        sys.exit(1)


@volume.command("clone")
@click.argument("name")
@click.argument("new_name")
@json_option
@state_dir_option
@handle_errors
def volume_clone(name: str, new_name: str, as_json: bool) -> None:
    """Copy volume NAME, as it is now, into a new volume NEW_NAME."""
    with storage_client() as c:
        v = c.clone(name, new_name)
    emit_json(v) if as_json else click.echo(f"cloned {name} into {v['name']} ({v['id']})")


@volume.command("pools")
@json_option
@state_dir_option
@handle_errors
def volume_pools(as_json: bool) -> None:
    """The storage pools on the agents: online or not, what they hold."""
    with storage_client() as c:
        pools = c.pools()
    if as_json:
        emit_json(pools)
        return
    for p in pools:
        click.echo(
            f"{p['node']:<10} zone {p['zone']}  {p['status']:<8} {p['volumes']} volumes, "
            f"{_bytes(p['used_bytes'])} used, {p['provisioned_gb']:g} GB provisioned"
        )


# ---- snapshot -------------------------------------------------------------------------
@click.group()
def snapshot() -> None:
    """Crash-consistent, incremental snapshots of volumes."""


@snapshot.command("create")
@click.argument("volume_name", metavar="VOLUME")
@click.option("--name", default=None, help="A name for the snapshot.")
@json_option
@state_dir_option
@handle_errors
def snapshot_create(volume_name: str, name: str | None, as_json: bool) -> None:
    """Snapshot VOLUME now (its task is frozen while changed files are captured)."""
    with storage_client() as c:
        s = c.create_snapshot(volume_name, name)
    if as_json:
        emit_json(s)
        return
    freeze = f", task frozen {s['freeze_ms']:.1f} ms" if s.get("freeze_ms") is not None else ""
    click.echo(
        f"snapshot {s['id']} of {s['volume']}: {_bytes(s['size_bytes'])}, "
        f"{_bytes(s['bytes_new'])} new, took {s['duration_ms']:.0f} ms{freeze}"
    )


@snapshot.command("list")
@click.option("--volume", "volume_name", default=None, help="Only this volume's.")
@json_option
@state_dir_option
@handle_errors
def snapshot_list(volume_name: str | None, as_json: bool) -> None:
    """Snapshots, oldest first."""
    with storage_client() as c:
        snaps = c.snapshots(volume_name)
    if as_json:
        emit_json(snaps)
        return
    if not snaps:
        click.echo("no snapshots")
    for s in snaps:
        click.echo(
            f"{s['id']}  {s['volume']:<16} {s['created_at']}  {_bytes(s['size_bytes']):>10}"
            f"  {s.get('name') or ''}"
        )


@snapshot.command("restore")
@click.argument("snap")
@click.option("--to", "to", default=None, metavar="VOLUME", help="Into a new volume instead.")
@json_option
@state_dir_option
@handle_errors
def snapshot_restore(snap: str, to: str | None, as_json: bool) -> None:
    """Restore SNAPSHOT in place (its volume must be detached) or --to a new volume."""
    with storage_client() as c:
        out = c.restore(snap, to)
    if as_json:
        emit_json(out)
    else:
        click.echo(
            f"restored {out['snapshot']} into volume {out['volume']['name']} "
            f"in {out['duration_ms']:.0f} ms"
        )


@snapshot.command("delete")
@click.argument("snap")
@json_option
@state_dir_option
@handle_errors
def snapshot_delete(snap: str, as_json: bool) -> None:
    """Delete a snapshot (chunks no other snapshot uses are freed)."""
    with storage_client() as c:
        out = c.delete_snapshot(snap)
    emit_json(out) if as_json else click.echo(f"deleted snapshot {out['id']}")


# ---- schedule -------------------------------------------------------------------------
_DAILY = re.compile(r"^([01]?[0-9]|2[0-3]):([0-5][0-9])$")


@click.group()
def schedule() -> None:
    """Snapshot schedules with retention (on the cluster clock)."""


@schedule.command("create")
@click.argument("volume_name", metavar="VOLUME")
@click.option("--every", type=click.FloatRange(min=1), metavar="MINUTES", help="Period.")
@click.option("--daily", metavar="HH:MM", help="Once a day at this cluster-clock time.")
@click.option(
    "--keep",
    default=5,
    show_default=True,
    type=click.IntRange(min=1),
    help="Snapshots of this schedule to keep.",
)
@json_option
@state_dir_option
@handle_errors
def schedule_create(
    volume_name: str, every: float | None, daily: str | None, keep: int, as_json: bool
) -> None:
    """Snapshot VOLUME --every N minutes or --daily HH:MM, keeping the last --keep."""
    if (every is None) == (daily is None):
        raise click.UsageError("give exactly one of --every MINUTES or --daily HH:MM")
    if daily is not None and not _DAILY.match(daily):
        raise click.BadParameter(f"{daily!r} is not HH:MM (00:00 to 23:59)", param_hint="--daily")
    with storage_client() as c:
        s = c.create_schedule(volume=volume_name, every_minutes=every, daily=daily, keep=keep)
    if as_json:
        emit_json(s)
    else:
        click.echo(
            f"schedule {s['id']}: {s['volume']} {s['describe']}, keeping {s['keep']}; "
            f"next at {s['next_at']}"
        )


@schedule.command("list")
@json_option
@state_dir_option
@handle_errors
def schedule_list(as_json: bool) -> None:
    """Schedules and when they run next."""
    with storage_client() as c:
        scheds = c.schedules()
    if as_json:
        emit_json(scheds)
        return
    if not scheds:
        click.echo("no schedules")
    for s in scheds:
        click.echo(
            f"{s['id']}  {s['volume']:<16} {s['describe']:<22} keep {s['keep']}  "
            f"next {s['next_at']}  last {s.get('last_at') or '-'}"
        )


@schedule.command("delete")
@click.argument("sched", metavar="SCHEDULE")
@json_option
@state_dir_option
@handle_errors
def schedule_delete(sched: str, as_json: bool) -> None:
    """Delete a schedule (its snapshots stay)."""
    with storage_client() as c:
        out = c.delete_schedule(sched)
    emit_json(out) if as_json else click.echo(f"deleted schedule {out['id']}")


# ---- cloudsnap (verbs on the group of playground.cli.cloud) ----------------------------
def _cloud_dir(value: str | None) -> str:
    """The cloud directory the storage node should use (absolute; it runs elsewhere)."""
    from playground.cloud.server import Cloud

    return str(Cloud(value).root)


_cloud_dir_option = click.option(
    "--cloud-dir",
    envvar="PLAYGROUND_CLOUD_DIR",
    type=click.Path(file_okay=False),
    help="The cloud's directory [env: PLAYGROUND_CLOUD_DIR; default: "
    "$XDG_DATA_HOME/playground/cloud].",
)


def _backup_line(b: dict[str, Any]) -> str:
    pct = f"{b.get('progress', 0) * 100:.0f}%"
    return (
        f"{b['id']}  {b['volume']:<16} {b['created']}  {b['status']:<8} {pct:>4}  "
        f"{_bytes(b.get('size'))}, sent {_bytes(b.get('uploaded_bytes'))}"
    )


@click.command("backup")
@click.argument("volume_name", metavar="VOLUME")
@_cloud_dir_option
@click.option("--wait/--no-wait", default=True, show_default=True, help="Wait until done.")
@click.option(
    "--region",
    envvar="PLAYGROUND_CLOUD_REGION",
    default=None,
    help="The cloud's region, for the placement policy [env: PLAYGROUND_CLOUD_REGION;"
    " default: the S3 region, us-east-1].",
)
@json_option
@state_dir_option
@handle_errors
def cloudsnap_backup(
    volume_name: str, cloud_dir: str | None, wait: bool, region: str | None, as_json: bool
) -> None:
    """Back VOLUME up to the cloud: incremental, deduplicated, compressed, encrypted."""
    import time

    cdir = _cloud_dir(cloud_dir)
    body: dict[str, Any] = {"cloud_dir": cdir}
    if region:
        body["region"] = region
    with storage_client() as c:
        started = c.call("POST", f"/v1/volumes/{_q(volume_name)}/cloudsnaps", body)
        rec: dict[str, Any] = started
        last = ""
        while wait and rec.get("status") == "running":
            time.sleep(0.3)
            rec = c.call("GET", f"/v1/cloudsnaps/{_q(started['id'])}", params={"cloud_dir": cdir})
            line = f"backup {started['id']}: {rec.get('progress', 0) * 100:.0f}%"
            if line != last and not as_json:
                click.echo(line, err=True)
                last = line
    if as_json:
        emit_json(rec)
    elif rec.get("status") == "done":
        click.echo(
            f"backup {rec['id']} of {rec['volume']}: done, {_bytes(rec['size'])}, "
            f"sent {_bytes(rec['uploaded_bytes'])} ({rec['chunks_reused']} chunks reused)"
        )
    else:
        click.echo(f"backup {rec['id']} of {volume_name}: {rec.get('status')}")
    if rec.get("status") == "failed":
        click.echo(f"error: {rec.get('error')}", err=True)
        sys.exit(1)


@click.command("list")
@click.option("--volume", "volume_name", default=None, help="Only this volume's.")
@_cloud_dir_option
@json_option
@state_dir_option
@handle_errors
def cloudsnap_list(volume_name: str | None, cloud_dir: str | None, as_json: bool) -> None:
    """Backups in the cloud (from this cluster or any earlier one), oldest first."""
    params = {"cloud_dir": _cloud_dir(cloud_dir)}
    if volume_name:
        params["volume"] = volume_name
    with storage_client() as c:
        recs = c.call("GET", "/v1/cloudsnaps", params=params)
    if as_json:
        emit_json(recs)
        return
    if not recs:
        click.echo("no backups in the cloud")
    for b in recs:
        click.echo(_backup_line(b))


@click.command("status")
@click.argument("backup_id", metavar="ID")
@_cloud_dir_option
@json_option
@state_dir_option
@handle_errors
def cloudsnap_status(backup_id: str, cloud_dir: str | None, as_json: bool) -> None:
    """One backup: status, progress, sizes."""
    with storage_client() as c:
        rec = c.call(
            "GET", f"/v1/cloudsnaps/{_q(backup_id)}", params={"cloud_dir": _cloud_dir(cloud_dir)}
        )
    emit_json(rec) if as_json else click.echo(_backup_line(rec))


@click.command("restore")
@click.argument("backup_id", metavar="ID")
@click.option("--to", "to", required=True, metavar="VOLUME", help="The new volume.")
@_cloud_dir_option
@json_option
@state_dir_option
@handle_errors
def cloudsnap_restore(backup_id: str, to: str, cloud_dir: str | None, as_json: bool) -> None:
    """Restore a backup into a new volume; returns when it is complete and attachable."""
    with storage_client() as c:
        out = c.call(
            "POST",
            f"/v1/cloudsnaps/{_q(backup_id)}/restore",
            {"to": to, "cloud_dir": _cloud_dir(cloud_dir)},
        )
    if as_json:
        emit_json(out)
    else:
        v = out["volume"]
        click.echo(
            f"restored backup {out['backup']} into volume {v['name']} ({v['id']}) "
            f"in {out['duration_ms'] / 1000:.1f} s"
        )


CLOUDSNAP_COMMANDS = (cloudsnap_backup, cloudsnap_list, cloudsnap_status, cloudsnap_restore)


# ---- policy ---------------------------------------------------------------------------
@click.group()
def policy() -> None:
    """The placement policy: where volumes' data may live (STATE/storage/policy.yaml)."""


@policy.command("check")
@json_option
@state_dir_option
@handle_errors
def policy_check(as_json: bool) -> None:
    """List existing violations of the policy (exit 1 if there is any)."""
    with storage_client() as c:
        out = c.policy()
    found = out["violations"]
    if as_json:
        emit_json(found)
    elif not found:
        click.echo(
            f"no violations (policy version {out['version']}, "
            f"{len(out['policy'].get('rules', []))} rules, {out['path']})"
        )
    else:
        for v in found:
            click.echo(v["message"])
    if found:
        sys.exit(1)


@policy.command("show")
@json_option
@state_dir_option
@handle_errors
def policy_show(as_json: bool) -> None:
    """The policy in force and where its file is."""
    with storage_client() as c:
        out = c.policy()
    if as_json:
        emit_json(out["policy"] | {"path": out["path"]})
        return
    click.echo(f"{out['path']} (version {out['version']})")
    for r in out["policy"].get("rules", []):
        click.echo(f"  {r}")


@policy.command("set")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@json_option
@state_dir_option
@handle_errors
def policy_set(file: str, as_json: bool) -> None:
    """Put the policy in FILE in force (`-`: stdin); the old one is kept as policy.yaml.N.

    The file is validated first: a bad one is refused (exit 1) and nothing is changed.
    The storage node reads the new policy at its next operation; `policy check` then
    lists what already breaks it.
    """
    from playground.storage.policy import policy_path, save_policy

    cluster = Cluster(state_dir())
    cluster.record()  # a cluster must be there: its state directory holds the policy
    source = "stdin" if file == "-" else file
    try:
        if file == "-":
            text = sys.stdin.read()
        else:
            with open(file, encoding="utf-8") as fh:
                text = fh.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise PlaygroundError(f"cannot read the policy file {source}: {exc}") from None
    path = policy_path(cluster.state.root)
    try:
        saved = save_policy(path, text, source=source)
    except OSError as exc:
        raise PlaygroundError(f"cannot write the policy file {path}: {exc}") from None
    if as_json:
        emit_json(saved.as_dict() | {"path": str(path)})
        return
    click.echo(f"policy version {saved.version} in force: {len(saved.rules)} rules, {path}")
