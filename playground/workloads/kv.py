"""``kv``: the stateful key-value HTTP service that runs as a task.

HTTP: ``PUT|GET|DELETE /v1/kv/{key}``, ``GET /v1/kv?prefix=&limit=``, ``/health``, ``/stats``.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
from pathlib import Path

from aiohttp import web

from playground.workloads.kvlog import KVLog, VolumeFullError

KEY = re.compile(r"^[A-Za-z0-9._~-]{1,250}$")
KEY_RULE = "keys are 1 to 250 characters of A-Z a-z 0-9 . _ ~ -"


def make_app(log: KVLog) -> web.Application:
    lock = asyncio.Lock()

    def check(key: str) -> None:
        if not KEY.match(key):
            raise web.HTTPBadRequest(
                text=f'{{"message": "invalid key: {KEY_RULE}"}}', content_type="application/json"
            )

    async def put(request: web.Request) -> web.Response:
        key = request.match_info["key"]
        check(key)
        value = await request.read()
        async with lock:
            try:
                created = log.put(key, value)
            except VolumeFullError as exc:
                return web.json_response({"message": str(exc)}, status=507)
        return web.json_response(
            {"key": key, "version": log.record_count}, status=201 if created else 200
        )

    async def get(request: web.Request) -> web.Response:
        key = request.match_info["key"]
        check(key)
        value = log.get(key)
        if value is None:
            return web.json_response({"message": f"key not found: {key}"}, status=404)
        return web.Response(body=value, content_type="application/octet-stream")

    async def delete(request: web.Request) -> web.Response:
        key = request.match_info["key"]
        check(key)
        async with lock:
            deleted = log.delete(key)
        if not deleted:
            return web.json_response({"message": f"key not found: {key}"}, status=404)
        return web.json_response({"key": key, "deleted": True})

    async def listing(request: web.Request) -> web.Response:
        try:
            limit = int(request.query["limit"]) if "limit" in request.query else None
        except ValueError:
            return web.json_response({"message": "limit must be an integer"}, status=400)
        return web.json_response({"keys": log.keys(request.query.get("prefix", ""), limit)})

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def stats(request: web.Request) -> web.Response:
        return web.json_response(
            {
                "records": log.record_count,
                "keys": len(log.index),
                "checksum": log.checksum(),
                "bytes": log.size,
                "durable": log.durable,
                "truncated_bytes": log.truncated_bytes,
                "size_limit_bytes": log.size_limit_bytes,
                "task_id": os.environ.get("MESOS_TASK_ID"),
            }
        )

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_put("/v1/kv/{key}", put)
    app.router.add_get("/v1/kv/{key}", get)
    app.router.add_delete("/v1/kv/{key}", delete)
    app.router.add_get("/v1/kv", listing)
    app.router.add_get("/health", health)
    app.router.add_get("/stats", stats)
    return app


async def _serve(app: web.Application, host: str, port: int, banner: str) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port, backlog=1024, reuse_address=True).start()
    print(banner, flush=True)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def run_kv(
    host: str, port: int, data_dir: Path, durable: bool, size_limit: int | None = None
) -> None:
    """Serve the key-value store on ``host:port`` until SIGTERM."""
    log = KVLog(data_dir, durable=durable, size_limit_bytes=size_limit)
    mode = "durable" if durable else "buffered"
    try:
        asyncio.run(
            _serve(
                make_app(log),
                host,
                port,
                f"kv listening on http://{host}:{port} (data: {data_dir}, {mode})",
            )
        )
    finally:
        log.close()
