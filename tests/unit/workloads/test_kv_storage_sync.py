"""``kv --durable`` on an external volume: a write is on disk, then synced to the replicas
through the storage node, and only then acknowledged; a failed sync is not acknowledged."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from aiohttp import test_utils, web

from playground.workloads.kv import StorageLink, make_app
from playground.workloads.kvlog import LOG_NAME, KVLog


def run(tmp_path: Path, sync_status: int) -> dict[str, Any]:
    """PUT one key through kv with a fake storage node answering ``sync_status``."""
    seen: dict[str, Any] = {"syncs": [], "auth": None}
    data = tmp_path / "data"

    async def sync(request: web.Request) -> web.Response:
        # What the storage node would copy: the record must already be in the log file.
        seen["syncs"].append((data / LOG_NAME).read_bytes())
        seen["auth"] = request.headers.get("Authorization")
        if sync_status != 200:
            return web.json_response({"message": "replica agent-2: error: disk"}, status=503)
        return web.json_response({"id": "vol-1", "replicas": {"agent-2": "synced"}})

    async def main() -> None:
        storage = web.Application()
        storage.router.add_post("/v1/volumes/{ref}/sync", sync)
        async with test_utils.TestServer(storage) as node:
            link = StorageLink(str(node.make_url("/")), "vol-1", "orders", None, token="t0k")
            log = KVLog(data, durable=True)
            try:
                app = make_app(log, "task-1", storage=link)
                async with test_utils.TestClient(test_utils.TestServer(app)) as client:
                    r = await client.put("/v1/kv/order-1", data=b"paid")
                    seen["status"] = r.status
                    seen["body"] = await r.json()
                    seen["syncs_when_answered"] = len(seen["syncs"])
                    seen["get"] = (await client.get("/v1/kv/order-1")).status
            finally:
                log.close()

    asyncio.run(main())
    return seen


def test_a_durable_write_is_synced_before_it_is_acknowledged(tmp_path: Path) -> None:
    seen = run(tmp_path, 200)
    assert seen["status"] == 201, seen["body"]
    assert seen["syncs_when_answered"] == 1, "acknowledged without a sync"
    assert b"order-1" in seen["syncs"][0] and b"paid" in seen["syncs"][0]
    assert seen["auth"] == "token=t0k", "the volume's own token is presented"


def test_a_failed_sync_is_not_acknowledged(tmp_path: Path) -> None:
    seen = run(tmp_path, 503)
    assert seen["status"] == 503
    assert "not acknowledged" in seen["body"]["message"]
    assert "answered 503" in seen["body"]["message"]
    assert seen["get"] == 200, "the write stays on the working copy (it is durable locally)"
