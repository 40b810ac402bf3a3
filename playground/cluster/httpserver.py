"""Shared HTTP plumbing of node processes: one aiohttp server per node, JSON helpers."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from aiohttp import web

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
