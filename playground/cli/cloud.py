"""``playground cloud up|down|status`` and ``playground cloudsnap key export|import``."""

from __future__ import annotations

import datetime as _dt
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from playground.cli.common import (
    emit_json,
    handle_errors,
    json_option,
    progress_printer,
    state_dir,
    state_dir_option,
)
from playground.cloud.server import ENV_CLOUD_DIR, Cloud, CloudStatus

F = TypeVar("F", bound=Callable[..., Any])


def cloud_dir_option(f: F) -> F:
    return click.option(
        "--cloud-dir",
        type=click.Path(file_okay=False),
        envvar=ENV_CLOUD_DIR,
        default=None,
        help="The cloud's directory [env: PLAYGROUND_CLOUD_DIR; default: "
        "$XDG_DATA_HOME/playground/cloud].",
    )(f)


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def _print_status(st: CloudStatus) -> None:
    if not st.running:
        click.echo(f"cloud stopped  (dir {st.cloud_dir}, {_size(st.disk_bytes)} on disk)")
        return
    started = (
        _dt.datetime.fromtimestamp(st.started_at).isoformat(timespec="seconds")
        if st.started_at
        else "?"
    )
    click.echo(f"cloud running  {st.endpoint}  bucket {st.bucket}")
    click.echo(f"  pid {st.pid}, started {started}, dir {st.cloud_dir}")
    click.echo(
        f"  {st.backups} backup(s), {_size(st.bytes_stored)} stored, {_size(st.disk_bytes)} on disk"
    )


@click.group()
def cloud() -> None:
    """The cloud: a real S3 server (SeaweedFS) outside the cluster, for cloud snapshots.

    It keeps its data in its own directory, so it outlives `playground destroy`.
    """


@cloud.command()
@cloud_dir_option
@json_option
@state_dir_option
@handle_errors
def up(cloud_dir: str | None, as_json: bool) -> None:
    """Start the S3 server on loopback (or say it is running) and wait until it answers."""
    c = Cloud(cloud_dir)
    st = c.up(progress=progress_printer(not as_json))
    if as_json:
        emit_json(st.to_json())
        return
    if st.already_running:
        click.echo(f"the cloud is already running at {st.endpoint}")
    access, _ = c.credentials()
    click.echo(f"endpoint   {st.endpoint}")
    click.echo(f"bucket     {st.bucket}")
    click.echo(f"access key {access} (secret in {c.root / 'credentials.json'})")


@cloud.command()
@cloud_dir_option
@json_option
@state_dir_option
@handle_errors
def down(cloud_dir: str | None, as_json: bool) -> None:
    """Stop the S3 server (its data stays in the cloud directory)."""
    c = Cloud(cloud_dir)
    stopped = c.down()
    if as_json:
        emit_json({"stopped": stopped, "cloud_dir": str(c.root)})
    else:
        click.echo("cloud stopped" if stopped else "the cloud was not running")


@cloud.command()
@cloud_dir_option
@json_option
@state_dir_option
@handle_errors
def status(cloud_dir: str | None, as_json: bool) -> None:
    """Running or stopped, endpoint, bytes used and number of backups."""
    st = Cloud(cloud_dir).status()
    if as_json:
        emit_json(st.to_json())
    else:
        _print_status(st)


@click.group()
def cloudsnap() -> None:
    """Cloud snapshots: encrypted, deduplicated backups of volumes to the cloud."""


@cloudsnap.group()
def key() -> None:
    """Move the cloud snapshot encryption key between clusters."""


@key.command("export")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, writable=True),
    help="Write the key to FILE (mode 0600) instead of stdout.",
)
@click.option("--force", is_flag=True, help="Replace FILE if it exists.")
@state_dir_option
@handle_errors
def key_export(out: str | None, force: bool) -> None:
    """Export the cluster's key (keep it safe: it decrypts every backup made with it).

    A cluster without a key yet gets one, so it can be saved before the first backup.
    """
    from playground.cluster.secrets import SecretStore, write_private
    from playground.cluster.statedir import StateDir
    from playground.errors import PlaygroundError
    from playground.storage import cloudsnap as cs

    root = state_dir()
    secrets = SecretStore(root)
    if not secrets.has(cs.KEY_SECRET) and not StateDir(root).exists():
        raise PlaygroundError(
            f"no cluster at {root}",
            hint="check --state-dir, or start the cluster with `playground up`",
        )
    data = cs.export_key(secrets, create=True)
    if out is None:
        sys.stdout.write(data.decode())
        return
    path = Path(out).expanduser().absolute()
    if path.exists() and not force:
        raise PlaygroundError(f"{path} exists", hint="pass --force to replace it")
    write_private(path, data)
    click.echo(f"key {cs.fingerprint(cs.keyring(secrets)[0])} written to {path} (mode 0600)")


@key.command("import")
@click.argument("file", type=click.Path(dir_okay=False))
@json_option
@state_dir_option
@handle_errors
def key_import(file: str, as_json: bool) -> None:
    """Make the key in FILE this cluster's key (the one it replaces is kept for restores)."""
    from playground.cluster.secrets import SecretStore
    from playground.errors import PlaygroundError
    from playground.storage import cloudsnap as cs

    path = Path(file).expanduser()
    try:
        data = path.read_bytes() if file != "-" else sys.stdin.buffer.read()
    except OSError as exc:
        raise PlaygroundError(f"cannot read {path}: {exc.strerror}") from None
    if file != "-" and os.stat(path).st_mode & 0o077:
        click.echo(f"warning: {path} is readable by others; keep key files mode 0600", err=True)
    result = cs.import_key(SecretStore(state_dir()), data)
    if as_json:
        emit_json(
            {
                "fingerprint": result.fingerprint,
                "previous": result.previous,
                "changed": result.changed,
            }
        )
        return
    if not result.changed:
        click.echo(f"key {result.fingerprint} is already this cluster's key")
        return
    click.echo(f"key {result.fingerprint} imported: new cloud backups use it")
    if result.previous:
        click.echo(f"the previous key {result.previous} is kept to restore older backups")
