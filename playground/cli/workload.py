"""``playground workload kv|web``: the services that run as tasks in the cluster.

Both take ``--port`` (default ``$PORT0``, as Marathon sets it) and ``--host`` (default
``$HOST``, else 127.0.0.1; never a wildcard address unless asked for).
"""

from __future__ import annotations

import os
from pathlib import Path

import click

DEFAULT_HOST = "127.0.0.1"

_port_option = click.option(
    "--port",
    type=click.IntRange(0, 65535),
    metavar="N",
    help="Port to listen on [default: $PORT0].",
)
_host_option = click.option(
    "--host",
    metavar="H",
    help=f"Address to listen on [default: $HOST, else {DEFAULT_HOST}].",
)


def resolve_port(port: int | None) -> int:
    """Return the port to listen on: ``--port``, else ``$PORT0``.

    Args:
        port: the ``--port`` value, if given.

    Returns:
        The port.

    Raises:
        click.UsageError: neither is given, or ``$PORT0`` is not a port number.
    """
    if port is not None:
        return port
    env = os.environ.get("PORT0", "").strip()
    if not env:
        raise click.UsageError(
            "no port to listen on: pass --port N, or set PORT0 (Marathon sets it for a task "
            "that asks for a port)"
        )
    if not env.isdigit() or not 0 <= int(env) <= 65535:
        raise click.UsageError(f"PORT0 is {env!r}, not a port number (0-65535); pass --port N")
    return int(env)


def resolve_host(host: str | None) -> str:
    """Return the address to listen on: ``--host``, else ``$HOST``, else 127.0.0.1.

    Args:
        host: the ``--host`` value, if given.

    Returns:
        The address.
    """
    return host or os.environ.get("HOST", "").strip() or DEFAULT_HOST


def resolve_data_dir(data: str) -> Path:
    """Return the data directory: relative paths are inside ``$MESOS_SANDBOX`` (else cwd).

    The directory is created if missing.

    Args:
        data: the ``--data`` value.

    Returns:
        The absolute data directory.

    Raises:
        click.ClickException: the directory cannot be created.
    """
    path = Path(data).expanduser()
    if not path.is_absolute():
        base = os.environ.get("MESOS_SANDBOX") or os.getcwd()
        path = Path(base) / path
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise click.ClickException(
            f"cannot create the data directory {path}: {exc.strerror or exc}"
        ) from exc
    return path


@click.group()
def workload() -> None:
    """Run a workload shipped with the kit (as a Marathon app's cmd, for example)."""


@workload.command()
@_port_option
@_host_option
@click.option(
    "--data",
    default="data",
    show_default=True,
    metavar="DIR",
    help="Data directory (created); a relative path is inside $MESOS_SANDBOX, else the cwd.",
)
@click.option("--durable", is_flag=True, help="fsync every write before acknowledging it.")
@click.option(
    "--size-limit",
    type=click.IntRange(min=0),
    metavar="BYTES",
    help="Refuse writes that would grow the log beyond this size (answered 507).",
)
def kv(
    port: int | None, host: str | None, data: str, durable: bool, size_limit: int | None
) -> None:
    """The key-value service: crash-consistent checksummed log, HTTP API on /v1/kv."""
    from playground.workloads.kv import run_kv
    from playground.workloads.web import ListenError

    the_port, the_host = resolve_port(port), resolve_host(host)
    path = resolve_data_dir(data)
    try:
        run_kv(the_host, the_port, path, durable, size_limit)
    except ListenError as exc:
        raise click.ClickException(f"kv {exc.strerror}") from exc
    except OSError as exc:
        raise click.ClickException(f"kv cannot use the data directory {path}: {exc}") from exc


@workload.command()
@_port_option
@_host_option
def web(port: int | None, host: str | None) -> None:
    """The stateless web service: answers every request with its task id."""
    from playground.workloads.web import ListenError, run_web

    the_port, the_host = resolve_port(port), resolve_host(host)
    try:
        run_web(the_host, the_port)
    except ListenError as exc:
        raise click.ClickException(f"web {exc.strerror}") from exc
