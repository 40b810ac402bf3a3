"""Shared HTTP plumbing of node processes: one aiohttp server per node, JSON helpers."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from playground.cluster import auth

log = logging.getLogger("playground.http")


def json_response(
    data: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    """A JSON response the way the real systems send it (compact, UTF-8)."""
    return web.Response(
        body=json.dumps(data, separators=(",", ":")).encode(),
        status=status,
        content_type="application/json",
        headers=headers,
    )


async def read_json(request: web.Request) -> Any:
    """The request's JSON body, or a 400 with the parse error."""
    body = await request.read()
    try:
        return json.loads(body or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise web.HTTPBadRequest(text=f"Failed to parse the request body as JSON: {exc}") from None


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def require_token(
    token: str,
    service: str,
    is_open: Callable[[web.Request], bool] = lambda request: False,
    text: bool = False,
) -> Any:
    """A middleware answering 401 to requests without the platform token.

    Args:
        token: the cluster's platform token.
        service: how the refusal names the service (``the coordination node``).
        is_open: requests that need no token (``/health``, what tasks may call).
        text: answer in plain text (Mesos's endpoints do) instead of ``{"message"}``.
    """

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if is_open(request) or auth.matches(auth.presented(request.headers), token):
            return await handler(request)
        message = (
            f"{service} requires the platform token: send 'Authorization: token=<token>' "
            "(the kit's CLI and clients read it from the cluster's secret store)"
        )
        headers = {"WWW-Authenticate": "token"}
        if text:
            return web.Response(status=401, text=message, headers=headers)
        return json_response({"message": message}, 401, headers)

    return middleware


async def run_app(app: web.Application, host: str, port: int, stop: asyncio.Event) -> None:
    """Serve ``app`` on ``host:port`` until ``stop`` is set."""
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True, backlog=1024)
    try:
        await site.start()
    except OSError:
        await runner.cleanup()
        raise
    log.info("listening on http://%s:%d", host, port)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


async def supervise(name: str, loop_fn: Any, stop: asyncio.Event) -> None:
    """Run a node's background loop; if it fails, log why and start it again.

    A loop that died silently would leave a node up but deaf (an agent that never
    registers), so every failure is logged with its traceback and the loop restarts.
    """
    while not stop.is_set():
        try:
            await loop_fn()
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("background loop %s failed; restarting it", name)
            await asyncio.sleep(0.5)
