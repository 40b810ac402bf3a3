"""``web``: a stateless HTTP service that answers with its task id."""

from __future__ import annotations

import asyncio
import os

from aiohttp import web

from playground.workloads.kv import _serve


def make_app() -> web.Application:
    task_id = os.environ.get("MESOS_TASK_ID", "local")

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "task_id": task_id})

    async def hello(request: web.Request) -> web.Response:
        return web.Response(text=f"{task_id}\n", headers={"X-Task-Id": task_id})

    app = web.Application()
    app.router.add_get("/health", health)
    app.router.add_route("*", "/{tail:.*}", hello)
    return app


def run_web(host: str, port: int) -> None:
    """Serve until SIGTERM."""
    asyncio.run(_serve(make_app(), host, port, f"web listening on http://{host}:{port}"))
