"""Marathon's side of the Mesos v1 scheduler API: subscribe, follow the leader, send calls.

Marathon talks to Mesos exactly as any v1 framework does (``docs/scheduler-http-api.md``):
a ``SUBSCRIBE`` POST whose response is a RecordIO stream of events, and one POST per call
carrying the ``Mesos-Stream-Id``. A non-leading master answers 307 with the leader's
location; a lost stream (master crash, failover) makes the driver find the leader again
and re-subscribe with the same framework id.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp

from playground.cluster import network
from playground.mesos.recordio import Decoder, RecordIOError

log = logging.getLogger("playground.marathon.driver")

SCHEDULER_PATH = "/api/v1/scheduler"
EventHandler = Callable[[dict[str, Any]], Awaitable[None]]


def resolve_location(current_url: str, location: str) -> str:
    """A Mesos redirect ``Location`` (often scheme-relative) as an absolute URL."""
    location = location.strip()
    if location.startswith("//"):
        url = "http:" + location
    elif "://" in location:
        url = location
    elif location.startswith("/"):
        url = urljoin(current_url, location)
    else:
        url = "http://" + location
    if urlsplit(url).path in ("", "/"):
        url = url.rstrip("/") + SCHEDULER_PATH
    return url


class Driver:
    """One framework's connection to the leading Mesos master."""

    def __init__(
        self,
        masters: list[str],
        framework_info: dict[str, Any],
        on_event: EventHandler,
        stop: asyncio.Event,
    ) -> None:
        self.masters = masters
        self.framework_info = framework_info
        self.on_event = on_event
        self.stop = stop
        self.framework_id: str | None = (framework_info.get("id") or {}).get("value")
        self.stream_id: str | None = None
        self.url: str | None = None
        self.connected = asyncio.Event()
        self.heartbeat = 15.0
        self.last_event = time.monotonic()
        self._session: aiohttp.ClientSession | None = None
        self.leader_hostport: str | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=None, connect=2.0, sock_read=None),
                headers={"Playground-Node": "marathon"},
                trace_configs=network.trace_configs(),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def run(self) -> None:
        """Stay subscribed until ``stop``: find the leader, subscribe, read events."""
        delay = 0.1
        while not self.stop.is_set():
            for base in list(self.masters):
                if self.stop.is_set():
                    return
                try:
                    await self._until_stopped(self._subscribe(base.rstrip("/") + SCHEDULER_PATH))
                    delay = 0.1
                except (TimeoutError, aiohttp.ClientError, OSError, RecordIOError) as exc:
                    log.debug("subscription via %s ended: %s", base, exc)
                finally:
                    if self.connected.is_set():
                        log.warning("lost the subscription to the master at %s", self.url)
                    self.connected.clear()
                    self.stream_id = None
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.stop.wait(), delay)
            delay = min(delay * 2, 1.0)

    async def _until_stopped(self, coro: Any) -> None:
        """Run ``coro`` but give up as soon as the node is stopping."""
        task = asyncio.ensure_future(coro)
        stopper = asyncio.ensure_future(self.stop.wait())
        try:
            await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if task.done() and not task.cancelled() and task.exception() is not None:
            raise task.exception()

    async def _subscribe(self, url: str) -> None:
        info = dict(self.framework_info)
        call: dict[str, Any] = {"type": "SUBSCRIBE", "subscribe": {"framework_info": info}}
        if self.framework_id:
            info["id"] = {"value": self.framework_id}
            call["framework_id"] = {"value": self.framework_id}
        for _ in range(5):
            resp = await self.session.post(
                url,
                data=json.dumps(call),
                headers={"Content-Type": "application/json", "Accept": "application/json"},
                allow_redirects=False,
            )
            if resp.status in (301, 302, 303, 307, 308) and resp.headers.get("Location"):
                url = resolve_location(url, resp.headers["Location"])
                resp.release()
                continue
            break
        async with resp:
            if resp.status != 200:
                text = (await resp.text())[:200]
                log.debug("SUBSCRIBE to %s answered %d: %s", url, resp.status, text)
                return
            self.url = url
            self.leader_hostport = urlsplit(url).netloc
            self.stream_id = resp.headers.get("Mesos-Stream-Id")
            decoder = Decoder()
            reader = asyncio.ensure_future(self._watchdog(resp))
            try:
                async for chunk in resp.content.iter_any():
                    for record in decoder.feed(chunk):
                        self.last_event = time.monotonic()
                        event = json.loads(record)
                        if event.get("type") == "SUBSCRIBED":
                            sub = event["subscribed"]
                            self.framework_id = sub["framework_id"]["value"]
                            self.heartbeat = float(sub.get("heartbeat_interval_seconds", 15))
                            self.connected.set()
                            log.info("subscribed to %s as framework %s", url, self.framework_id)
                        elif event.get("type") == "ERROR":
                            log.error("master sent ERROR: %s", event.get("error"))
                        try:
                            await self.on_event(event)
                        except Exception:
                            log.exception("handling a %s event failed", event.get("type"))
            finally:
                reader.cancel()

    async def _watchdog(self, resp: aiohttp.ClientResponse) -> None:
        """Close a stream that stopped sending heartbeats (a silently partitioned master)."""
        net = network.current()
        while True:
            await asyncio.sleep(0.1)
            if net is not None and self.url and net.blocks(self.url):
                log.warning("a network partition cut this node off from the master")
                resp.close()
                return
            if time.monotonic() - self.last_event > max(5 * self.heartbeat, 5.0):
                log.warning("no event from the master for a while; reconnecting")
                resp.close()
                return

    # ---- calls ---------------------------------------------------------------------
    async def call(self, call: dict[str, Any]) -> bool:
        if not self.connected.is_set() or not self.url or not self.framework_id:
            return False
        call = {"framework_id": {"value": self.framework_id}, **call}
        try:
            async with self.session.post(
                self.url,
                data=json.dumps(call),
                headers={
                    "Content-Type": "application/json",
                    "Mesos-Stream-Id": self.stream_id or "",
                },
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=10.0),
            ) as resp:
                if resp.status >= 300:
                    log.warning(
                        "%s call answered %d: %s",
                        call.get("type"),
                        resp.status,
                        (await resp.text())[:200],
                    )
                    return False
                return True
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            log.warning("%s call failed: %s", call.get("type"), exc)
            return False

    async def accept(
        self, offer_ids: list[str], operations: list[dict[str, Any]], refuse: float = 0.0
    ) -> bool:
        return await self.call(
            {
                "type": "ACCEPT",
                "accept": {
                    "offer_ids": [{"value": o} for o in offer_ids],
                    "operations": operations,
                    "filters": {"refuse_seconds": refuse},
                },
            }
        )

    async def decline(self, offer_ids: list[str], refuse: float) -> bool:
        return await self.call(
            {
                "type": "DECLINE",
                "decline": {
                    "offer_ids": [{"value": o} for o in offer_ids],
                    "filters": {"refuse_seconds": refuse},
                },
            }
        )

    async def kill(self, task_id: str, agent_id: str | None) -> bool:
        body: dict[str, Any] = {"task_id": {"value": task_id}}
        if agent_id:
            body["agent_id"] = {"value": agent_id}
        return await self.call({"type": "KILL", "kill": body})

    async def acknowledge(self, status: dict[str, Any]) -> bool:
        return await self.call(
            {
                "type": "ACKNOWLEDGE",
                "acknowledge": {
                    "agent_id": status["agent_id"],
                    "task_id": status["task_id"],
                    "uuid": status["uuid"],
                },
            }
        )

    async def reconcile(self, tasks: list[tuple[str, str | None]]) -> bool:
        items = []
        for tid, aid in tasks:
            item: dict[str, Any] = {"task_id": {"value": tid}}
            if aid:
                item["agent_id"] = {"value": aid}
            items.append(item)
        return await self.call({"type": "RECONCILE", "reconcile": {"tasks": items}})

    async def revive(self) -> bool:
        return await self.call({"type": "REVIVE"})

    async def suppress(self) -> bool:
        return await self.call({"type": "SUPPRESS"})
