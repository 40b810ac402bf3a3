"""The ``marathon`` node: Marathon's REST API plus its scheduler, on the embedded Mesos."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from playground.cluster.httpserver import run_app, supervise
from playground.marathon.api import Api
from playground.marathon.core import Marathon
from playground.marathon.store import Store

if TYPE_CHECKING:
    from playground.cluster.node import NodeContext

log = logging.getLogger("playground.marathon")


async def serve(ctx: NodeContext) -> int:
    masters = [a.url for a in ctx.master_addresses().values()]
    store = Store(ctx.work_dir / "marathon")
    m = Marathon(
        store=store,
        ts=ctx.time,
        masters=masters,
        hostname=ctx.address.host,
        webui_url=ctx.address.url,
        default_region=ctx.topology.region,
        stop=ctx.stop,
        record_event=ctx.state.record_event,
        storage_url=_storage_url(ctx),
        token=ctx.token,
        mesos_user=ctx.task_user,
        node_of={
            (ctx.address_of(n.name).host, ctx.address_of(n.name).port): n.name
            for n in ctx.topology.nodes
            if n.is_agent
        },
    )
    api = Api(m, host=ctx.address.host, port=ctx.address.port, masters=masters)
    await asyncio.gather(
        run_app(api.application(), ctx.address.host, ctx.address.port, ctx.stop),
        supervise("marathon", m.run, ctx.stop),
    )
    return 0


def _storage_url(ctx: NodeContext) -> str | None:
    nodes = ctx.topology.by_role("storage")
    return ctx.address_of(nodes[0].name).url if nodes else None
