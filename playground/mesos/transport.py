"""Messages between the kit's nodes: HTTP POSTs of JSON, as libprocess sends its messages.

Mesos processes talk by POSTing messages to ``/<process>/<message name>`` on each other;
the embedded master and agents do the same with JSON bodies, e.g.
``POST /master/mesos.internal.RegisterSlaveMessage``.
"""

from __future__ import annotations

import logging
from typing import Any

import aiohttp

from playground.client import auth as client_auth
from playground.cluster import network
from playground.cluster.httpserver import require_token

log = logging.getLogger("playground.transport")

#: I/O timeouts are not scaled: they protect against a hung peer, not model a cluster timer.
IO_TIMEOUT = 5.0
NODE_HEADER = "Playground-Node"


def internal_messages_guard(token: str, service: str) -> Any:
    """A middleware refusing internal messages (``.../mesos.internal.*``) without the token.

    Internal messages launch, kill and shut down tasks and agents; they are the nodes'
    own protocol, not a public API, so only holders of the platform token may send them.
    Mesos's public endpoints (state, operator and scheduler APIs) stay open, as on an
    open DC/OS cluster.
    """
    return require_token(token, service, lambda r: "/mesos.internal." not in r.path, text=True)


class MessageError(Exception):
    """A message could not be delivered or was refused."""

    def __init__(self, message: str, status: int | None = None, body: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = body


class Transport:
    """One HTTP client session per node for its outgoing messages."""

    def __init__(self, node: str, token: str | None = None) -> None:
        self.node = node
        #: The platform token the peers' internal endpoints require.
        self._headers = {NODE_HEADER: node, **client_auth.headers(token)}
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=IO_TIMEOUT),
                headers=self._headers,
                connector=aiohttp.TCPConnector(limit=0, force_close=False, ssl=False),
                trace_configs=network.trace_configs(),
            )
        return self._session

    async def post(self, url: str, body: Any, timeout: float | None = None) -> Any:
        """POST ``body`` as JSON; return the decoded JSON answer (or None)."""
        try:
            async with self.session.post(
                url,
                json=body,
                timeout=aiohttp.ClientTimeout(total=timeout or IO_TIMEOUT),
                allow_redirects=False,
            ) as resp:
                data: Any = None
                if resp.content_type == "application/json":
                    data = await resp.json()
                else:
                    text = await resp.text()
                    data = text or None
                if resp.status >= 300:
                    raise MessageError(f"{url}: HTTP {resp.status}: {data}", resp.status, data)
                return data
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise MessageError(f"{url}: {type(exc).__name__}: {exc}") from None

    async def get(self, url: str, timeout: float | None = None) -> Any:
        try:
            async with self.session.get(
                url,
                timeout=aiohttp.ClientTimeout(total=timeout or IO_TIMEOUT),
                allow_redirects=False,
            ) as resp:
                data = await resp.json(content_type=None)
                if resp.status >= 300:
                    raise MessageError(f"{url}: HTTP {resp.status}: {data}", resp.status, data)
                return data
        except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as exc:
            raise MessageError(f"{url}: {type(exc).__name__}: {exc}") from None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
