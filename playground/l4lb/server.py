"""The VIP balancer beside every master (plays DC/OS's dcos-l4lb, once Minuteman).

Every master process runs one :class:`L4lb`. Once a second it reads the leading master's
state (in process when it leads, over HTTP otherwise), works out the VIPs
(:func:`playground.l4lb.vips.table`) and serves each at its loopback address with the
kit's proxy (:class:`playground.edge.proxy.Proxy`, TCP mode, round robin). Every master
binds the same addresses with ``SO_REUSEPORT``, so the kernel spreads new connections
across the masters' balancers and a VIP keeps working while any master runs: losing the
leader, or quorum, stops scheduling, not the data plane, which keeps serving the last
backends it knew (and marks its view stale).

A backend that refuses a connection is taken out for a second and the connection is
retried on another, so a killed task costs no failed connection even before the next
refresh drops it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from playground.edge.model import EdgeConfig, Server, Service
from playground.edge.proxy import Proxy
from playground.l4lb import vips as vips_mod
from playground.l4lb.vips import VipTable

log = logging.getLogger("playground.l4lb")

#: Wall seconds between reads of the leading master's state.
REFRESH = 1.0
#: With no good state for this long (wall seconds), the view is reported stale.
STALE_AFTER = 5.0


def backend_name(vip: vips_mod.Vip) -> str:
    """``vip_<name or ip>_<port>``, the balancer's name for a VIP in stats and logs."""
    return f"vip_{vip.key.name.replace('.', '_')}_{vip.key.port}"


def services(table: VipTable) -> dict[str, list[Service]]:
    """The proxy services of every VIP, by the loopback address serving them."""
    out: dict[str, list[Service]] = {}
    for _, vip in sorted(table.vips.items()):
        servers = tuple(
            Server(
                name=f"{b.task_id}:{b.port}",
                task_id=b.task_id,
                host=b.host,
                port=b.port,
                agent_host=b.agent_host,
                healthy=b.healthy is not False,
                reason="" if b.healthy is not False else "Mesos health check failing",
            )
            for b in vip.backends
        )
        out.setdefault(vip.host, []).append(
            Service(
                app_id=vip.key.label,
                port_index=0,
                service_port=vip.port,
                backend=backend_name(vip),
                mode="tcp",
                servers=servers,
            )
        )
    return out


class L4lb:
    """Serves the cluster's VIPs from one master process.

    Args:
        fetch: returns the leading master's ``/master/state`` (raises when none answers).
        addressing: ``cluster.json``'s ``addressing``.
        low_ports: whether ports below 1024 may be bound.
        name: the master it runs beside (for logs).
        on_table: called with every new table (the DNS beside the master answers the
            named VIPs from it).
        fetch_tasks: returns Marathon's ``/v2/tasks`` (for health results); asked only
            while there are VIPs; when Marathon does not answer, the last results stand.
    """

    def __init__(
        self,
        fetch: Callable[[], Awaitable[dict[str, Any]]],
        addressing: dict[str, Any],
        low_ports: bool,
        name: str = "",
        on_table: Callable[[VipTable], None] | None = None,
        fetch_tasks: Callable[[], Awaitable[list[dict[str, Any]]]] | None = None,
    ) -> None:
        self.fetch = fetch
        self.fetch_tasks = fetch_tasks
        self.on_table = on_table
        self.addressing = addressing
        self.low_ports = low_ports
        self.name = name
        self.table = VipTable()
        self.proxies: dict[str, Proxy] = {}
        self.loaded = False
        self.last_ok = 0.0
        self.last_error = ""
        self.refreshes = 0
        self.health: dict[str, bool] = {}

    @property
    def stale(self) -> bool:
        return not self.loaded or time.monotonic() - self.last_ok > STALE_AFTER

    def _event(self, kind: str, details: dict[str, Any]) -> None:
        if kind == "bind-failed":
            log.warning(
                "VIP port %s could not be bound: %s", details.get("port"), details.get("error")
            )

    async def apply(self, table: VipTable) -> None:
        """Serve ``table``: listeners for new VIPs, none for VIPs that are gone."""
        self.table = table
        wanted = services(table)
        for host in [h for h in self.proxies if h not in wanted]:
            await self.proxies.pop(host).close()
        for host, svcs in wanted.items():
            proxy = self.proxies.get(host)
            if proxy is None:
                proxy = Proxy(host, None, on_event=self._event, reuse_port=True)
                self.proxies[host] = proxy
            await proxy.apply(EdgeConfig(group="l4lb", services=tuple(svcs)))

    async def refresh(self) -> bool:
        """Read the state and serve what it says; on failure keep serving the last view."""
        try:
            state = await self.fetch()
            table = vips_mod.table(state, self.addressing, self.low_ports, self.health)
            if table.vips and self.fetch_tasks is not None:
                try:
                    self.health = vips_mod.marathon_health(await self.fetch_tasks())
                except Exception as exc:  # Marathon down: keep the last results
                    log.debug("Marathon's task health not refreshed: %s", exc)
                table = vips_mod.table(state, self.addressing, self.low_ports, self.health)
            table = vips_mod.carry_over(table, self.table, vips_mod.recovering_hosts(state))
        except Exception as exc:  # no master answers, or a state we cannot read
            if not self.last_error:
                log.warning("VIP backends not refreshed (%s); keeping the last ones", exc)
            self.last_error = f"{type(exc).__name__}: {exc}"
            return False
        if self.last_error:
            log.info("VIP backends refreshed again")
        self.last_error = ""
        await self.apply(table)
        if self.on_table is not None:
            self.on_table(table)
        self.loaded = True
        self.last_ok = time.monotonic()
        self.refreshes += 1
        return True

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.refresh()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), REFRESH)

    async def close(self) -> None:
        for proxy in self.proxies.values():
            await proxy.close()
        self.proxies.clear()

    def status(self) -> dict[str, Any]:
        """``GET /net/v1/vips``: the VIPs this master serves, where, their backends, and
        this master's share of the connections (each master counts its own)."""
        vips = []
        for _, vip in sorted(self.table.vips.items()):
            row = vip.to_json()
            proxy = self.proxies.get(vip.host)
            err = proxy.bind_errors.get(vip.port) if proxy is not None else "not served"
            row["listening"] = err is None
            if err is not None:
                row["error"] = err
            name = backend_name(vip)
            c = proxy.backends.get(name) if proxy is not None else None
            row["connections"] = c.lbtot if c is not None else 0
            for b in row["backends"]:
                sc = (
                    proxy.servers.get((name, f"{b['task_id']}:{b['port']}"))
                    if proxy is not None
                    else None
                )
                b["connections"] = sc.lbtot if sc is not None else 0
            vips.append(row)
        return {
            "served_by": self.name,
            "stale": self.stale,
            "error": self.last_error or None,
            "vips": vips,
            "notices": self.table.notices,
        }
