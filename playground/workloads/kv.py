"""``kv``: the stateful key-value HTTP service that runs as a task, over a ``KVLog``.

HTTP contract:

- ``PUT /v1/kv/{key}`` (body: the raw value) -> 201 created / 200 replaced,
  ``{"key": ..., "version": <record count after the write>}``; 507 when the volume is full.
- ``GET /v1/kv/{key}`` -> 200 raw bytes (``application/octet-stream``) or 404.
- ``DELETE /v1/kv/{key}`` -> 200 ``{"key": ..., "deleted": true}`` or 404.
- ``GET /v1/kv?prefix=&limit=`` -> ``{"keys": [...]}`` sorted.
- ``GET /health`` -> ``{"status": "ok"}``; ``GET /stats`` -> counters and the checksum.

Keys match ``^[A-Za-z0-9._~-]{1,250}$``; any other key is a 400. Every error is JSON
``{"message": ...}``. Writes are serialized, and a durable write is fsynced before its
response is sent.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.typedefs import Handler

from playground.client import auth as client_auth
from playground.workloads.kvlog import KVLog, VolumeFullError
from playground.workloads.web import serve_app, url_of

KEY_PATTERN = re.compile(r"^[A-Za-z0-9._~-]{1,250}$")
KEY_RULE = (
    "a key is 1 to 250 characters from the URL-safe alphabet "
    "A-Z a-z 0-9 '.' '_' '~' '-' (pattern ^[A-Za-z0-9._~-]{1,250}$)"
)
#: The largest accepted request body (one value).
MAX_VALUE_BYTES = 64 * 1024 * 1024

LOG_KEY: web.AppKey[KVLog] = web.AppKey("kvlog", KVLog)
LOCK_KEY: web.AppKey[asyncio.Lock] = web.AppKey("write_lock", asyncio.Lock)
TASK_ID_KEY: web.AppKey[str | None] = web.AppKey("task_id")


class StorageLink:
    """The external volume the data directory lives on (``PLAYGROUND_VOLUMES``).

    In durable mode a write is fsynced and then synced to every online replica through
    the storage node before it is acknowledged; a full volume asks the storage node for
    the volume's size again, so an online resize lets writes resume.
    """

    def __init__(
        self,
        url: str,
        volume_id: str,
        name: str,
        size_bytes: int | None,
        token: str | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        #: The volume's own token (the agent puts it in PLAYGROUND_VOLUMES).
        self.headers = client_auth.headers(token)
        self.volume_id = volume_id
        self.name = name
        self.size_bytes = size_bytes
        self.session: aiohttp.ClientSession | None = None

    @classmethod
    def from_env(cls, data_dir: Path) -> StorageLink | None:
        url = os.environ.get("PLAYGROUND_STORAGE_URL")
        try:
            vols = json.loads(os.environ.get("PLAYGROUND_VOLUMES") or "{}")
        except ValueError:
            return None
        if not url or not isinstance(vols, dict):
            return None
        real = data_dir.resolve()
        for v in vols.values():
            path = Path(v["path"]).resolve()
            if real == path or path in real.parents:
                size = v.get("size_bytes")
                return cls(
                    url,
                    str(v["id"]),
                    str(v["name"]),
                    int(size) if size else None,
                    v.get("token"),
                )
        return None

    def _session(self) -> aiohttp.ClientSession:
        if self.session is None:
            self.session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=30), headers=self.headers
            )
        return self.session

    async def sync(self) -> None:
        """Return once every online replica holds every change made so far."""
        url = f"{self.url}/v1/volumes/{self.volume_id}/sync"
        async with self._session().post(url) as r:
            if r.status != 200:
                raise OSError(f"sync of volume {self.name} answered {r.status}: {await r.text()}")

    async def refresh_size(self) -> int | None:
        async with self._session().get(f"{self.url}/v1/volumes/{self.volume_id}") as r:
            if r.status == 200:
                self.size_bytes = int((await r.json())["size_bytes"])
        return self.size_bytes

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()


STORAGE_KEY: web.AppKey[Any] = web.AppKey("storage")

log = logging.getLogger(__name__)


def error(status: int, message: str) -> web.Response:
    """Return a JSON error response.

    Args:
        status: the HTTP status.
        message: what went wrong, for a human.

    Returns:
        ``{"message": message}`` with ``status``.
    """
    return web.json_response({"message": message}, status=status)


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn aiohttp's plain-text HTTP errors (404, 405, 413...) and crashes into JSON."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        text = exc.text or ""
        message = text if text and not text.startswith(str(exc.status)) else exc.reason
        resp = error(exc.status, f"{message}: {request.method} {request.path}")
        if "Allow" in exc.headers:
            resp.headers["Allow"] = exc.headers["Allow"]
        return resp
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        log.exception("%s %s failed", request.method, request.path)
        return error(500, f"internal error: {type(exc).__name__}: {exc}")


def _key(request: web.Request) -> str | web.Response:
    key = request.match_info["key"]
    if not KEY_PATTERN.match(key):
        return error(400, f"invalid key {key!r}: {KEY_RULE}")
    return key


async def put_key(request: web.Request) -> web.Response:
    """``PUT /v1/kv/{key}``: store the body; 201 if the key is new, else 200."""
    key = _key(request)
    if isinstance(key, web.Response):
        return key
    value = await request.read()
    kv = request.app[LOG_KEY]
    async with request.app[LOCK_KEY]:
        try:
            created = await _write(request.app, lambda: kv.put(key, value))
        except VolumeFullError as exc:
            return error(507, str(exc.strerror or exc))
        except OSError as exc:
            return _unsynced(exc)
        version = kv.record_count
    return web.json_response({"key": key, "version": version}, status=201 if created else 200)


async def _write(app: web.Application, op: Any) -> Any:
    """Run a log write; with a storage volume, resize-aware and synced when durable."""
    kv = app[LOG_KEY]
    link: StorageLink | None = app.get(STORAGE_KEY)
    try:
        result = op()
    except VolumeFullError:
        if link is None:
            raise
        # The volume may have been resized online: ask, and try once more.
        size = await link.refresh_size()
        if size is None or size == kv.size_limit_bytes:
            raise
        kv.set_size_limit(size)
        result = op()
    if link is not None and kv.durable:
        await link.sync()
    return result


def _unsynced(exc: OSError) -> web.Response:
    return error(
        503,
        f"the write is on this task's working copy, but its replication could not be "
        f"confirmed ({exc}); it is not acknowledged: retry it",
    )


async def get_key(request: web.Request) -> web.Response:
    """``GET /v1/kv/{key}``: the raw value, or 404."""
    key = _key(request)
    if isinstance(key, web.Response):
        return key
    value = request.app[LOG_KEY].get(key)
    if value is None:
        return error(404, f"key not found: {key}")
    return web.Response(body=value, content_type="application/octet-stream")


async def delete_key(request: web.Request) -> web.Response:
    """``DELETE /v1/kv/{key}``: 200 if it existed, else 404."""
    key = _key(request)
    if isinstance(key, web.Response):
        return key
    kv = request.app[LOG_KEY]
    async with request.app[LOCK_KEY]:
        try:
            deleted = await _write(request.app, lambda: kv.delete(key))
        except VolumeFullError as exc:
            return error(507, str(exc.strerror or exc))
        except OSError as exc:
            return _unsynced(exc)
    if not deleted:
        return error(404, f"key not found: {key}")
    return web.json_response({"key": key, "deleted": True})


async def list_keys(request: web.Request) -> web.Response:
    """``GET /v1/kv?prefix=&limit=``: sorted keys."""
    prefix = request.query.get("prefix", "")
    raw_limit = request.query.get("limit", "")
    limit: int | None = None
    if raw_limit != "":
        try:
            limit = int(raw_limit)
        except ValueError:
            limit = -1
        if limit < 0:
            return error(400, f"limit must be a non-negative integer, not {raw_limit!r}")
    return web.json_response({"keys": request.app[LOG_KEY].keys(prefix, limit)})


async def health(request: web.Request) -> web.Response:
    """``GET /health``."""
    return web.json_response({"status": "ok"})


async def stats(request: web.Request) -> web.Response:
    """``GET /stats``: record and key counts, checksum, log size, mode and limit."""
    kv = request.app[LOG_KEY]
    return web.json_response(
        {
            "records": kv.record_count,
            "keys": len(kv),
            "checksum": kv.checksum(),
            "bytes": kv.size,
            "durable": kv.durable,
            "truncated_bytes": kv.truncated_bytes,
            "size_limit_bytes": kv.size_limit_bytes,
            "task_id": request.app[TASK_ID_KEY],
            "volume": link.name if (link := request.app.get(STORAGE_KEY)) else None,
        }
    )


def make_app(
    kv: KVLog, task_id: str | None = None, storage: StorageLink | None = None
) -> web.Application:
    """Build the key-value service over an open log.

    Args:
        kv: the log; the caller closes it.
        task_id: reported by ``/stats``; defaults to ``$MESOS_TASK_ID`` (None if unset).

    Returns:
        The aiohttp application.
    """
    app = web.Application(client_max_size=MAX_VALUE_BYTES, middlewares=[json_errors])
    app[LOG_KEY] = kv
    app[LOCK_KEY] = asyncio.Lock()
    app[TASK_ID_KEY] = task_id if task_id is not None else os.environ.get("MESOS_TASK_ID")
    if storage is not None:
        app[STORAGE_KEY] = storage

        async def close_storage(_: web.Application) -> None:
            await storage.close()

        app.on_cleanup.append(close_storage)
    app.router.add_get("/health", health)
    app.router.add_get("/stats", stats)
    app.router.add_get("/v1/kv", list_keys)
    # ``.*`` so that empty keys and keys with '/' reach the handler and get a 400.
    app.router.add_put("/v1/kv/{key:.*}", put_key)
    app.router.add_get("/v1/kv/{key:.*}", get_key)
    app.router.add_delete("/v1/kv/{key:.*}", delete_key)
    return app


def run_kv(
    host: str,
    port: int,
    data_dir: Path,
    durable: bool,
    size_limit_bytes: int | None = None,
) -> None:
    """Serve the key-value store on ``host:port``, blocking until SIGTERM.

    On SIGTERM (or SIGINT) in-flight requests finish, the log is closed and the
    function returns normally (so the process exits 0).

    Args:
        host: the address to bind.
        port: the port to bind (0: ephemeral, shown in the banner).
        data_dir: the data directory (created if missing).
        durable: fsync every write before acknowledging it.
        size_limit_bytes: refuse writes beyond this log size (None: unlimited).

    Raises:
        ListenError: the address cannot be bound.
        OSError: the log cannot be opened.
    """
    link = StorageLink.from_env(data_dir)
    if link is not None and size_limit_bytes is None:
        size_limit_bytes = link.size_bytes  # the volume's size is the log's limit
    kv = KVLog(data_dir, durable=durable, size_limit_bytes=size_limit_bytes)
    mode = "durable" if durable else "buffered"
    if link is not None:
        mode += f", volume {link.name}" + (", synced to its replicas" if durable else "")
    try:
        asyncio.run(
            serve_app(
                make_app(kv, storage=link),
                host,
                port,
                lambda p: f"kv listening on {url_of(host, p)} (data: {data_dir}, {mode})",
            )
        )
    finally:
        kv.close()
