"""``web``: a stateless HTTP service that answers every request with its task id.

``GET /health`` answers ``{"status": "ok", "task_id": ...}``; ``GET /bytes/N`` answers N
bytes (at most :data:`MAX_BYTES`; httpbin's name), for measuring transfers; every other
path and method answers ``200 "<task id>\\n"`` with an ``X-Task-Id`` header. The task id
is ``$MESOS_TASK_ID``, or ``local`` outside a cluster.

This module also holds ``serve_app``, the serving loop shared with the ``kv`` workload.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from collections.abc import Callable

from aiohttp import web

#: A listen backlog large enough that bursts of concurrent clients are never refused.
BACKLOG = 1024
#: Seconds in-flight requests get to finish after SIGTERM.
SHUTDOWN_TIMEOUT = 5.0
#: The largest body ``GET /bytes/N`` sends.
MAX_BYTES = 10 * 1024 * 1024


class ListenError(OSError):
    """The server could not listen on its address (in use, not local, no permission)."""


def task_id_from_env() -> str:
    """Return the task id of this process.

    Returns:
        ``$MESOS_TASK_ID``, or ``local`` if it is unset or empty.
    """
    return os.environ.get("MESOS_TASK_ID") or "local"


def url_of(host: str, port: int) -> str:
    """Return the base URL of a server on ``host:port`` (IPv6 hosts in brackets).

    Args:
        host: the bound address.
        port: the bound port.

    Returns:
        ``http://host:port``.
    """
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def make_app(task_id: str | None = None) -> web.Application:
    """Build the web service.

    Args:
        task_id: the id to answer with; defaults to ``task_id_from_env()``.

    Returns:
        The aiohttp application.
    """
    tid = task_id or task_id_from_env()
    headers = {"X-Task-Id": tid}

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "task_id": tid}, headers=headers)

    async def hello(request: web.Request) -> web.Response:
        return web.Response(text=f"{tid}\n", headers=headers)

    async def sized(request: web.Request) -> web.Response:
        n = int(request.match_info["n"])
        if n > MAX_BYTES:
            raise web.HTTPBadRequest(text=f"at most {MAX_BYTES} bytes\n")
        return web.Response(body=b"x" * n, headers=headers, content_type="application/octet-stream")

    app = web.Application()
    app.router.add_get("/health", health)
    app.router.add_get(r"/bytes/{n:\d+}", sized)
    app.router.add_route("*", "/{tail:.*}", hello)
    return app


async def serve_app(
    app: web.Application,
    host: str,
    port: int,
    banner: Callable[[int], str],
    stop: asyncio.Event | None = None,
) -> None:
    """Serve ``app`` on ``host:port`` until SIGTERM or SIGINT (or ``stop`` is set).

    Prints ``banner(bound_port)`` on one line to stdout once listening, then waits; on
    a stop signal it stops accepting, lets in-flight requests finish and returns.

    Args:
        app: the application.
        host: the address to bind.
        port: the port to bind (0: an ephemeral port, shown in the banner).
        banner: makes the "listening" line from the bound port.
        stop: set it to stop serving (signal handlers are only installed when running
            in the main thread).

    Raises:
        ListenError: the address cannot be bound.
    """
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGTERM, signal.SIGINT)
    in_main = threading.current_thread() is threading.main_thread()
    if in_main:
        for sig in signals:
            loop.add_signal_handler(sig, stop.set)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, backlog=BACKLOG, reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            raise ListenError(
                exc.errno, f"cannot listen on {url_of(host, port)}: {exc.strerror or exc}"
            ) from exc
        bound = runner.addresses[0][1] if runner.addresses else port
        print(banner(int(bound)), flush=True)
        await stop.wait()
    finally:
        await runner.cleanup()
        if in_main:
            for sig in signals:
                loop.remove_signal_handler(sig)


def run_web(host: str, port: int) -> None:
    """Serve the web service on ``host:port``, blocking until SIGTERM (then return normally).

    Args:
        host: the address to bind.
        port: the port to bind (0: ephemeral, shown in the banner).

    Raises:
        ListenError: the address cannot be bound.
    """
    asyncio.run(serve_app(make_app(), host, port, lambda p: f"web listening on {url_of(host, p)}"))
