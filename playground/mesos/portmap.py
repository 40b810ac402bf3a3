"""Host ports of tasks on container networks: what Mesos's CNI port-mapper plugin does.

A port mapping with a ``hostPort`` on a container network (``NetworkInfo.port_mappings``)
makes ``AGENT_IP:host_port`` lead to ``TASK_IP:container_port``. Real Mesos installs DNAT
rules; here the agent process forwards TCP connections itself, so the mapping lives as
long as the agent process: a restarted agent maps its live tasks' ports again when it
recovers them. UDP mappings are not forwarded (the agent logs it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

log = logging.getLogger("playground.portmap")


class PortMapError(OSError):
    """A host port cannot be mapped (it is taken on the agent's address)."""


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(ConnectionError, OSError, RuntimeError):
            if writer.can_write_eof():
                writer.write_eof()


class PortMapper:
    """The agent's host-port forwarders, by container."""

    def __init__(self, host: str) -> None:
        self.host = host
        self.servers: dict[str, list[asyncio.Server]] = {}
        self.connections: dict[str, set[asyncio.StreamWriter]] = {}

    async def map(
        self, container_id: str, task_ip: str, port_mappings: list[dict[str, Any]]
    ) -> list[tuple[int, int]]:
        """Forward every TCP ``host_port`` of the container to ``task_ip:container_port``.

        Returns:
            The (host port, container port) pairs mapped.

        Raises:
            PortMapError: a host port is taken; nothing of this container stays mapped.
        """
        mapped: list[tuple[int, int]] = []
        for pm in port_mappings:
            host_port, container_port = int(pm["host_port"]), int(pm["container_port"])
            if str(pm.get("protocol", "tcp")).lower() != "tcp":
                log.warning(
                    "container %s: %s port %d is not forwarded (TCP only)",
                    container_id,
                    pm.get("protocol"),
                    host_port,
                )
                continue
            try:
                server = await asyncio.start_server(
                    self._handler(container_id, task_ip, container_port),
                    self.host,
                    host_port,
                    reuse_address=True,
                )
            except OSError as exc:
                self.unmap(container_id)
                raise PortMapError(
                    exc.errno, f"cannot map host port {self.host}:{host_port}: {exc.strerror}"
                ) from None
            self.servers.setdefault(container_id, []).append(server)
            mapped.append((host_port, container_port))
        return mapped

    def _handler(self, container_id: str, task_ip: str, port: int) -> Any:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            conns = self.connections.setdefault(container_id, set())
            conns.add(writer)
            try:
                up_reader, up_writer = await asyncio.open_connection(task_ip, port)
            except OSError:
                conns.discard(writer)
                writer.close()
                return
            conns.add(up_writer)
            try:
                await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
            finally:
                for w in (writer, up_writer):
                    conns.discard(w)
                    w.close()

        return handle

    def unmap(self, container_id: str) -> None:
        """Stop forwarding the container's host ports and cut its open connections."""
        for server in self.servers.pop(container_id, []):
            server.close()
        for writer in self.connections.pop(container_id, set()):
            writer.close()

    def close(self) -> None:
        for cid in list(self.servers):
            self.unmap(cid)
