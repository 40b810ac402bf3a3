"""Shared CLI plumbing: ``--state-dir`` anywhere, ``--json``, errors to stderr with exit codes."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from playground.cluster.statedir import default_state_dir
from playground.errors import PlaygroundError

F = TypeVar("F", bound=Callable[..., Any])


def _remember_state_dir(
    ctx: click.Context, _param: click.Parameter, value: str | None
) -> str | None:
    if value is not None:
        root = ctx.find_root()
        from_env = ctx.get_parameter_source(_param.name or "") in (
            click.core.ParameterSource.ENVIRONMENT,
            click.core.ParameterSource.DEFAULT,
        )
        # An explicit --state-dir wins over the environment, wherever it was given.
        if not (from_env and root.meta.get("playground.state_dir.explicit")):
            root.meta["playground.state_dir"] = value
            root.meta["playground.state_dir.explicit"] = not from_env
    return value


def state_dir_option(f: F) -> F:
    """``--state-dir DIR``, accepted before or after a command's arguments."""
    return click.option(
        "--state-dir",
        type=click.Path(file_okay=False, readable=False),
        envvar="PLAYGROUND_STATE_DIR",
        callback=_remember_state_dir,
        expose_value=False,
        is_eager=True,
        help="The cluster's state directory [env: PLAYGROUND_STATE_DIR; default: $XDG_STATE_HOME/playground/default].",
    )(f)


def state_dir() -> Path:
    ctx = click.get_current_context()
    value = ctx.find_root().meta.get("playground.state_dir")
    return Path(value).expanduser().absolute() if value else default_state_dir()


def json_option(f: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print only JSON on stdout.")(f)


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True))


def handle_errors(f: F) -> F:
    """Print a PlaygroundError as ``error: ...`` plus its hint on stderr and exit 1."""

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return f(*args, **kwargs)
        except PlaygroundError as exc:
            click.echo(f"error: {exc}", err=True)
            if exc.hint:
                click.echo(f"hint: {exc.hint}", err=True)
            sys.exit(1)

    return wrapper  # type: ignore[return-value]


def progress_printer(enabled: bool) -> Callable[[str], None]:
    def say(msg: str) -> None:
        if enabled:
            click.echo(msg, err=True)

    return say


def node_endpoint(
    status: dict, role: str, key: str, missing: str, no_node_hint: str, down_hint: str
) -> str:
    """The URL ``status["endpoints"][key]`` of the node of ``role``, or a PlaygroundError
    saying that the topology has no such node (``missing`` names it) or that it is down."""
    from playground.errors import PlaygroundError

    url = status["endpoints"].get(key)
    if not url:
        raise PlaygroundError(f"cluster '{status['topology']}' has no {missing}", hint=no_node_hint)
    node = next((n for n in status["nodes"] if n.get("role") == role), None)
    if node is not None and node.get("state") != "running":
        raise PlaygroundError(f"{node_label(role, node)} is {node.get('state')}", hint=down_hint)
    return str(url)


def node_label(role: str, node: dict) -> str:
    return {"marathon": "Marathon", "edge": "the edge"}.get(role, role) + f" ({node['name']})"
