"""The coordination node: leader election with quorum, and a small durable key store.

It plays ZooKeeper's role without being ZooKeeper. Members of an election group
(the masters) send heartbeats; a member whose heartbeats stop for its TTL is gone,
as a ZooKeeper session expires. The leader is the longest-standing live member and
stays leader while alive; when fewer than the group's quorum are alive there is no
leader at all (scheduling stops, running tasks do not).

HTTP API:
    GET  /health
    GET  /v1/election/{group}                    current leader, members, quorum
    POST /v1/election/{group}/heartbeat          {"member", "data", "ttl"} -> as GET
    DELETE /v1/election/{group}/{member}         resign (clean shutdown)
    GET|PUT|DELETE /v1/kv/{key}                  durable values with versions;
                                                 PUT honours ``If-Match: <version>``

Everything but ``/health`` requires the platform token (``Authorization: token=<t>``);
without it the answer is 401 ``{"message": ...}``.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from playground.cluster.httpserver import json_response, read_json, require_token, run_app
from playground.cluster.node import NodeContext
from playground.cluster.statedir import atomic_write

log = logging.getLogger("playground.coordinator")


@dataclass
class Member:
    name: str
    data: dict[str, Any]
    joined: float
    last_seen: float
    ttl: float


@dataclass
class Group:
    quorum: int
    members: dict[str, Member] = field(default_factory=dict)
    leader: str | None = None
    epoch: int = 0
    elected_at: float | None = None

    def expire(self, now: float) -> None:
        for name in [n for n, m in self.members.items() if now - m.last_seen > m.ttl]:
            log.info("member %s expired", name)
            del self.members[name]

    def elect(self, now: float) -> None:
        self.expire(now)
        if len(self.members) < self.quorum:
            if self.leader is not None:
                log.warning(
                    "quorum lost (%d of %d alive): no leader", len(self.members), self.quorum
                )
            self.leader = None
            return
        if self.leader in self.members:
            return
        new = min(self.members.values(), key=lambda m: (m.joined, m.name)).name
        self.leader = new
        self.epoch += 1
        self.elected_at = time.time()
        log.info("elected %s (epoch %d)", new, self.epoch)

    def view(self) -> dict[str, Any]:
        leader = self.members.get(self.leader) if self.leader else None
        return {
            "leader": self.leader,
            "leader_data": leader.data if leader else None,
            "epoch": self.epoch,
            "elected_at": self.elected_at,
            "quorum": self.quorum,
            "has_quorum": len(self.members) >= self.quorum,
            "members": sorted(self.members),
        }


class Coordinator:
    def __init__(self, ctx: NodeContext) -> None:
        self.ctx = ctx
        self.groups: dict[str, Group] = {"mesos": Group(quorum=ctx.topology.quorum)}
        self.kv_file = ctx.work_dir / "kv.json"
        self.kv: dict[str, dict[str, Any]] = {}
        if self.kv_file.exists():
            self.kv = json.loads(self.kv_file.read_text())

    def group(self, name: str) -> Group:
        return self.groups.setdefault(name, Group(quorum=1))

    def _persist(self) -> None:
        atomic_write(self.kv_file, json.dumps(self.kv).encode())

    async def health(self, request: web.Request) -> web.Response:
        return json_response({"status": "ok"})

    async def election(self, request: web.Request) -> web.Response:
        g = self.group(request.match_info["group"])
        g.elect(time.monotonic())
        return json_response(g.view())

    async def heartbeat(self, request: web.Request) -> web.Response:
        g = self.group(request.match_info["group"])
        body = await read_json(request)
        if not isinstance(body, dict) or not isinstance(body.get("member"), str):
            return json_response(
                {"message": "expected {'member': str, 'data': {...}, 'ttl': seconds}"}, 400
            )
        now = time.monotonic()
        name = body["member"]
        ttl = float(body.get("ttl", 1.0))
        m = g.members.get(name)
        if m is None:
            g.members[name] = Member(name, dict(body.get("data") or {}), now, now, ttl)
        else:
            m.last_seen, m.ttl = now, ttl
            m.data = dict(body.get("data") or m.data)
        g.elect(now)
        return json_response(g.view())

    async def resign(self, request: web.Request) -> web.Response:
        g = self.group(request.match_info["group"])
        g.members.pop(request.match_info["member"], None)
        g.elect(time.monotonic())
        return json_response(g.view())

    async def kv_get(self, request: web.Request) -> web.Response:
        key = request.match_info["key"]
        if key not in self.kv:
            return json_response({"message": f"no such key: {key}"}, 404)
        return json_response(self.kv[key])

    async def kv_put(self, request: web.Request) -> web.Response:
        key = request.match_info["key"]
        body = await read_json(request)
        cur = self.kv.get(key)
        version = cur["version"] if cur else 0
        expected = request.headers.get("If-Match")
        if expected is not None and int(expected) != version:
            return json_response(
                {"message": f"version mismatch: have {version}", "version": version}, 409
            )
        self.kv[key] = {"key": key, "version": version + 1, "value": body}
        self._persist()
        return json_response(self.kv[key])

    async def kv_delete(self, request: web.Request) -> web.Response:
        key = request.match_info["key"]
        if self.kv.pop(key, None) is None:
            return json_response({"message": f"no such key: {key}"}, 404)
        self._persist()
        return json_response({"key": key, "deleted": True})

    def app(self) -> web.Application:
        app = web.Application(
            middlewares=[
                require_token(
                    self.ctx.token, "the coordination node", lambda r: r.path == "/health"
                )
            ]
        )
        app.router.add_get("/health", self.health)
        app.router.add_get("/v1/election/{group}", self.election)
        app.router.add_post("/v1/election/{group}/heartbeat", self.heartbeat)
        app.router.add_delete("/v1/election/{group}/{member}", self.resign)
        app.router.add_get("/v1/kv/{key:.+}", self.kv_get)
        app.router.add_put("/v1/kv/{key:.+}", self.kv_put)
        app.router.add_delete("/v1/kv/{key:.+}", self.kv_delete)
        return app


async def serve(ctx: NodeContext) -> int:
    coord = Coordinator(ctx)
    await run_app(coord.app(), ctx.address.host, ctx.address.port, ctx.stop)
    return 0
