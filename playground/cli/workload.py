"""``playground workload kv|web``: the services that run as tasks in the cluster."""

from __future__ import annotations

import os
from pathlib import Path

import click


def _port(port: int | None) -> int:
    if port is not None:
        return port
    env = os.environ.get("PORT0")
    if env and env.isdigit():
        return int(env)
    raise click.UsageError(
        "no port: pass --port N, or run as a task with a port (PORT0 is set then)"
    )


def _host(host: str | None) -> str:
    return host or os.environ.get("HOST") or "127.0.0.1"


@click.group()
def workload() -> None:
    """Run a workload shipped with the kit (as a Marathon app's cmd, for example)."""


@workload.command()
@click.option("--port", type=int, help="Port to listen on [default: $PORT0].")
@click.option("--host", help="Address to listen on [default: $HOST, else 127.0.0.1].")
@click.option(
    "--data",
    default="data",
    show_default=True,
    help="Data directory; relative paths are inside $MESOS_SANDBOX.",
)
@click.option("--durable", is_flag=True, help="fsync every write before acknowledging it.")
@click.option("--size-limit", type=int, metavar="BYTES", help="Refuse writes beyond this log size.")
def kv(
    port: int | None, host: str | None, data: str, durable: bool, size_limit: int | None
) -> None:
    """The key-value service: crash-consistent log, checksummed records, HTTP API."""
    from playground.workloads.kv import run_kv

    path = Path(data)
    if not path.is_absolute():
        path = Path(os.environ.get("MESOS_SANDBOX", os.getcwd())) / path
    run_kv(_host(host), _port(port), path, durable, size_limit)


@workload.command()
@click.option("--port", type=int, help="Port to listen on [default: $PORT0].")
@click.option("--host", help="Address to listen on [default: $HOST, else 127.0.0.1].")
def web(port: int | None, host: str | None) -> None:
    """The stateless web service: answers every request with its task id."""
    from playground.workloads.web import run_web

    run_web(_host(host), _port(port))
