"""The ``edge`` node (``edge-N``, on ``public-agent-N``'s address): marathon-lb's role.

It follows Marathon the way marathon-lb does: a subscription to ``/v2/events`` (SSE),
reconnected with backoff, every event answered by a fresh ``GET /v2/apps?embed=apps.tasks``;
while the stream is down it polls instead. A reconciliation poll runs every
:data:`RECONCILE` wall seconds even while the stream is up: when it finds a change no
event announced, or when the stream has been silent longer than Marathon's keep-alive
allows, the view is *stale* -- reported in ``/v1/status`` and ``/metrics`` and logged,
and the stream is reconnected (the silent-SSE failure marathon-lb users meet).

The configuration (:func:`playground.edge.config.build`) is served by a data plane:
the kit's proxy (:mod:`playground.edge.proxy`, default) or real HAProxy with the
rendered configuration (edge engine ``haproxy``: topology key ``edge_engine`` or
``playground up --edge-engine haproxy``), checked with ``haproxy -c`` and reloaded on
change (master-worker mode, SIGUSR2).

HTTP API on the node's address (marathon-lb's stats/admin port, 9090):
    GET /haproxy?stats[;csv]      stats (HTML summary, or HAProxy's CSV)
    GET /_haproxy_health_check    200 while the data plane serves
    GET /_haproxy_getconfig       the HAProxy configuration for the current view
    GET /_haproxy_getvhostmap     ``vhost backend`` lines
    GET /_haproxy_getappmap       ``app_id backend`` lines
    GET /_haproxy_getpids         the data plane's process ids
    POST|GET /_mlb_signal/hup     re-read everything from Marathon now
    POST|GET /_mlb_signal/usr1    re-apply the current view
    GET /metrics                  Prometheus text
    GET /health, /v1/status       the kit's status (engine, listeners, staleness, notices)
    GET /v1/routes                the routes as ``playground routes --json`` prints them
    GET /v1/toxics                route faults (Toxiproxy's toxics) and what they did
    POST /v1/toxics               add a toxic (Toxiproxy's JSON plus ``route``), in memory
    DELETE /v1/toxics/{name}      remove a toxic added on the API
    POST /v1/toxics/reload        re-read the fault registry's route faults now

Route faults (:mod:`playground.edge.toxics`) are applied by the kit's proxy only. The
fault registry's (``playground break --route``) are read from ``STATE/faults.json`` at
start, whenever the file changes (checked every :data:`TOXICS_POLL` s) and on
``/v1/toxics/reload``: an edge that restarts with its public agent applies them again, a
fault reverted meanwhile is gone, and a toxic past its ``revert_at`` stops applying even
before its fault is marked reverted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import web

from playground.cluster import network
from playground.cluster.httpserver import json_response, run_app, supervise
from playground.cluster.statedir import atomic_write
from playground.edge import config as config_mod
from playground.edge.model import EdgeConfig
from playground.edge.proxy import Proxy
from playground.edge.toxics import (
    NOT_ON_HAPROXY,
    NOT_ON_HAPROXY_HINT,
    Toxic,
    ToxicError,
    registry_toxics,
)

if TYPE_CHECKING:
    from playground.cluster.node import NodeContext

log = logging.getLogger("playground.edge")

#: Wall seconds between reconciliation polls while the event stream is up.
RECONCILE = 5.0
#: Wall seconds between polls while the event stream is down.
POLL = 1.0
#: Marathon writes a keep-alive every 10 s; a stream silent this long is dead.
SSE_SILENCE = 25.0
#: Seconds to gather a burst of events into one refresh.
DEBOUNCE = 0.02
BACKOFF_MAX = 5.0
ENGINES = ("proxy", "haproxy")
#: Wall seconds between looks at the fault registry for route faults.
TOXICS_POLL = 0.25


def engine_of(cluster: dict[str, Any]) -> str:
    """The edge engine of a cluster: ``up --edge-engine``, else the topology's, else proxy."""
    engine = cluster.get("edge_engine") or (cluster.get("topology") or {}).get("edge_engine")
    return str(engine or "proxy")


class Edge:
    def __init__(self, ctx: NodeContext) -> None:
        self.ctx = ctx
        self.group = str((ctx.cluster.get("topology") or {}).get("edge_group", "external"))
        self.engine = engine_of(ctx.cluster)
        self.host = ctx.address.host
        self.http_port = ctx.address.port_of("http")
        self.https_port = ctx.address.port_of("https")
        self.work = ctx.work_dir
        marathon = ctx.topology.by_role("marathon")
        self.marathon_url = ctx.address_of(marathon[0].name).url if marathon else None
        self.config = EdgeConfig(group=self.group)
        self.proxy = Proxy(self.host, self.http_port, on_event=self._proxy_event)
        self.session: aiohttp.ClientSession | None = None
        self.trigger = asyncio.Event()
        self.sse_connected = False
        self.sse_last_byte = 0.0
        self.events_seen = 0
        self.event_since_refresh = False
        self.last_sync: float | None = None
        self.last_sync_error: str | None = None
        self.stale_since: float | None = None
        self.stale_reason: str | None = None
        self.stale_total = 0
        self.reloads = 0
        self.reload_errors = 0
        self.last_reload_error: str | None = None
        self.started = time.time()
        self.haproxy: asyncio.subprocess.Process | None = None
        self._warned: set[tuple[str, str, str]] = set()
        self._reconnect = asyncio.Event()
        self.health_cache: dict[str, bool] = {}
        self.settings = self._render_settings()
        self.registry_path = ctx.state.root / "faults.json"
        self._registry_seen: tuple[int, int] | None = None
        self.toxics_error: str | None = None

    # ---- events ---------------------------------------------------------------------
    def event(self, kind: str, **fields: Any) -> None:
        self.ctx.state.record_event(kind, **fields)

    def _proxy_event(self, kind: str, details: dict[str, Any]) -> None:
        if kind == "bind-failed":
            log.warning("cannot listen on port %s: %s", details["port"], details["error"])
            self.event("edge.bind_failed", **details)
        elif kind == "server-refused":
            log.info(
                "%s/%s refused a connection (%s)",
                details["backend"],
                details["server"],
                details["error"],
            )

    # ---- following Marathon ---------------------------------------------------------
    async def follow_loop(self) -> None:
        """Keep an SSE subscription to Marathon; every event triggers a refresh."""
        assert self.session is not None
        backoff = 0.1
        while not self.ctx.stop.is_set():
            if self.marathon_url is None:
                await asyncio.sleep(POLL)
                continue
            try:
                async with self.session.get(
                    f"{self.marathon_url}/v2/events",
                    headers={"Accept": "text/event-stream"},
                    timeout=aiohttp.ClientTimeout(total=None, connect=2.0, sock_read=SSE_SILENCE),
                ) as resp:
                    if resp.status != 200:
                        raise aiohttp.ClientResponseError(
                            resp.request_info, (), status=resp.status, message="not a stream"
                        )
                    self.sse_connected = True
                    self.sse_last_byte = time.monotonic()
                    self._reconnect.clear()
                    backoff = 0.1
                    self.trigger.set()
                    reader = asyncio.ensure_future(self._read_stream(resp))
                    waiter = asyncio.ensure_future(self._reconnect.wait())
                    try:
                        await asyncio.wait({reader, waiter}, return_when=asyncio.FIRST_COMPLETED)
                    finally:
                        for t in (reader, waiter):
                            t.cancel()
                        with contextlib.suppress(BaseException):
                            await reader
                        with contextlib.suppress(BaseException):
                            await waiter
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                if self.sse_connected:
                    log.warning("event stream from Marathon lost (%s); polling", exc or "timeout")
            finally:
                was = self.sse_connected
                self.sse_connected = False
                if was:
                    self.trigger.set()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX)

    async def _read_stream(self, resp: aiohttp.ClientResponse) -> None:
        async for line in resp.content:
            self.sse_last_byte = time.monotonic()
            if line.startswith(b"event:"):
                kind = line[6:].strip().decode(errors="replace")
                if kind in ("event_stream_attached", "event_stream_detached"):
                    continue
                self.events_seen += 1
                self.event_since_refresh = True
                self.trigger.set()

    async def refresh_loop(self) -> None:
        """Fetch Marathon's apps when triggered, and on a timer (reconciliation/polling)."""
        last = 0.0
        while not self.ctx.stop.is_set():
            interval = RECONCILE if self.sse_connected else POLL
            timeout = max(0.0, last + interval - time.monotonic())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.trigger.wait(), timeout)
            triggered = self.trigger.is_set()
            if triggered:
                await asyncio.sleep(DEBOUNCE)
            self.trigger.clear()
            announced = self.event_since_refresh
            self.event_since_refresh = False
            last = time.monotonic()
            await self.refresh(reconcile=not triggered and self.sse_connected, announced=announced)
            if self.sse_connected and time.monotonic() - self.sse_last_byte > SSE_SILENCE:
                self.mark_stale(f"no byte from Marathon's event stream for {SSE_SILENCE:.0f}s")
                self._reconnect.set()

    async def fetch_apps(self) -> list[dict[str, Any]]:
        assert self.session is not None and self.marathon_url is not None
        async with self.session.get(
            f"{self.marathon_url}/v2/apps",
            params={"embed": "apps.tasks"},
            timeout=aiohttp.ClientTimeout(total=5.0),
        ) as r:
            if r.status != 200:
                raise RuntimeError(f"GET /v2/apps answered {r.status}")
            data = await r.json()
        return list(data.get("apps", []))

    async def refresh(self, reconcile: bool = False, announced: bool = False) -> bool:
        """Re-read Marathon and apply what changed; True when the view changed."""
        if self.marathon_url is None:
            return False
        try:
            apps = await self.fetch_apps()
        except (aiohttp.ClientError, OSError, TimeoutError, RuntimeError, ValueError) as exc:
            if self.last_sync_error is None:
                log.warning("cannot read Marathon's apps (%s); keeping the last view", exc)
            self.last_sync_error = str(exc) or type(exc).__name__
            return False
        self.last_sync_error = None
        self.last_sync = time.time()
        cfg = config_mod.build(
            apps,
            self.group,
            edge_host=self.host,
            reserved_ports=self.settings.reserved_ports(),
            health_cache=self.health_cache,
        )
        changed = cfg != self.config
        if changed and reconcile and not announced:
            self.mark_stale("a reconciliation poll found changes no event announced")
            self._reconnect.set()
        elif not changed and self.stale_since is not None and self.sse_connected and not reconcile:
            self.clear_stale()
        if changed:
            await self.apply(cfg)
        return changed

    def mark_stale(self, reason: str) -> None:
        if self.stale_since is None:
            self.stale_since = time.time()
            self.stale_total += 1
            log.warning("the view of Marathon was stale: %s; reconnecting", reason)
            self.event("edge.stale", reason=reason)
        self.stale_reason = reason

    def clear_stale(self) -> None:
        self.stale_since = None
        self.stale_reason = None

    async def apply(self, cfg: EdgeConfig) -> None:
        self.config = cfg
        for n in cfg.notices:
            key = (n.kind, n.app_id, n.message)
            if key not in self._warned:
                self._warned.add(key)
                log.warning("%s: %s: %s", n.kind, n.app_id, n.message)
                self.event(f"edge.{n.kind}", app=n.app_id, label=n.label, message=n.message)
        self._warned &= {(n.kind, n.app_id, n.message) for n in cfg.notices}
        try:
            if self.engine == "haproxy":
                await self.reload_haproxy()
            else:
                await self.proxy.apply(cfg)
            self.reloads += 1
        except Exception as exc:
            self.reload_errors += 1
            self.last_reload_error = str(exc)
            log.error("applying the configuration failed: %s", exc)

    # ---- route faults ---------------------------------------------------------------
    def load_toxics(self) -> bool:
        """Apply the fault registry's route faults; True when they changed."""
        try:
            toxics = registry_toxics(self.registry_path)
        except (OSError, ValueError) as exc:
            if self.toxics_error != str(exc):
                log.warning("cannot read route faults from %s: %s", self.registry_path, exc)
            self.toxics_error = str(exc)
            return False
        if self.engine == "haproxy":
            self.toxics_error = NOT_ON_HAPROXY if toxics else None
            return False
        self.toxics_error = None
        changed = self.proxy.toxics.set_registry(toxics)
        if changed:
            names = ", ".join(f"{t.name} ({t.route})" for t in toxics) or "none"
            log.info("route faults of the registry: %s", names)
            self.event("edge.toxics", toxics=[t.name for t in toxics])
        return changed

    async def toxics_loop(self) -> None:
        """Re-read the registry's route faults when ``faults.json`` changes."""
        while not self.ctx.stop.is_set():
            try:
                st = self.registry_path.stat()
                seen: tuple[int, int] | None = (st.st_mtime_ns, st.st_ino)
            except FileNotFoundError:
                seen = None
            if seen != self._registry_seen:
                self._registry_seen = seen
                self.load_toxics()
            await asyncio.sleep(TOXICS_POLL)

    def toxics_of(self, app_id: str, service_port: int) -> list[dict[str, Any]]:
        return [t.to_dict() for t in self.proxy.toxics.for_route(app_id, service_port)]

    def toxics_view(self) -> list[dict[str, Any]]:
        now = time.time()
        out = []
        for t in self.proxy.toxics.all():
            st = self.proxy.toxics.stats.get(t.name)
            out.append(
                {
                    **t.to_dict(),
                    "active": t.live(now),
                    "source": "registry" if t.fault else "api",
                    "stats": dict(vars(st)) if st is not None else {},
                }
            )
        return out

    # ---- HAProxy engine -------------------------------------------------------------
    def _render_settings(self) -> config_mod.RenderSettings:
        # With the haproxy engine the edge process keeps the admin port (9090) and
        # HAProxy's own stats listener sits beside it; the X-Marathon-App-Id frontend
        # (marathon-lb's 9091) is not rendered.
        haproxy = self.engine == "haproxy"
        return config_mod.RenderSettings(
            state_dir=self.work,
            bind_host=self.host,
            http_port=self.http_port or 80,
            https_port=self.https_port or 443,
            stats_port=self.ctx.address.port + 1 if haproxy else self.ctx.address.port,
            appid_port=None,
            log_target=None,
            maxconn=_maxconn(),
        )

    def cert_path(self) -> Path:
        path = Path(self.settings.cert_path or self.work / "edge-cert.pem")
        if not path.exists():
            config_mod.generate_certificate(path)
        return path

    def render(self) -> str:
        return config_mod.render_haproxy(self.config, self.settings)

    async def reload_haproxy(self) -> None:
        binary = shutil.which("haproxy") or "/usr/sbin/haproxy"
        if not os.path.exists(binary):
            raise RuntimeError(
                "edge engine 'haproxy' needs Debian's haproxy package (apt install haproxy)"
            )
        cfg_path = self.work / "haproxy.cfg"
        candidate = self.work / "haproxy.cfg.new"
        self.cert_path()
        atomic_write(candidate, self.render().encode())
        check = await asyncio.create_subprocess_exec(
            binary, "-c", "-q", "-f", str(candidate),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        out, _ = await check.communicate()
        if check.returncode != 0:
            raise RuntimeError("haproxy -c rejected the configuration: " + out.decode()[-2000:])
        os.replace(candidate, cfg_path)
        if self.haproxy is None or self.haproxy.returncode is not None:
            log_path = self.work / "haproxy.log"
            with open(log_path, "ab") as logf:
                self.haproxy = await asyncio.create_subprocess_exec(
                    binary, "-W", "-db", "-f", str(cfg_path),
                    stdout=logf, stderr=logf,
                )  # fmt: skip
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.haproxy.wait(), 0.3)
            if self.haproxy.returncode is not None:
                tail = log_path.read_text(errors="replace").splitlines()[-3:]
                raise RuntimeError(
                    f"haproxy exited at start ({self.haproxy.returncode}): " + " | ".join(tail)
                )
            log.info("started haproxy (pid %d)", self.haproxy.pid)
        else:
            self.haproxy.send_signal(signal.SIGUSR2)  # master-worker: re-read the file

    async def haproxy_csv(self) -> str:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_unix_connection(str(self.work / "haproxy.sock")), 2.0
            )
        except (OSError, TimeoutError):
            return ""
        try:
            writer.write(b"show stat\n")
            await writer.drain()
            data = await asyncio.wait_for(reader.read(), 2.0)
        finally:
            writer.close()
        return data.decode(errors="replace")

    # ---- views ----------------------------------------------------------------------
    def routes(self) -> list[dict[str, Any]]:
        out = []
        for svc in sorted(self.config.services, key=lambda s: (s.service_port, s.app_id)):
            out.append(
                {
                    "app": svc.app_id,
                    "port_index": svc.port_index,
                    "service_port": svc.service_port,
                    "backend": svc.backend,
                    "mode": svc.mode,
                    "vhost": ",".join(svc.vhosts) or None,
                    "path": svc.path,
                    "balance": svc.balance,
                    "sticky": svc.sticky,
                    "toxics": self.toxics_of(svc.app_id, svc.service_port),
                    "backends": [
                        {
                            "name": s.name,
                            "host": s.host,
                            "port": s.port,
                            "healthy": s.healthy,
                            "draining": s.draining,
                            "task_id": s.task_id,
                            "weight": s.weight,
                        }
                        for s in svc.servers
                    ],
                }
            )
        return out

    def status(self) -> dict[str, Any]:
        return {
            "node": self.ctx.name,
            "engine": self.engine,
            "group": self.group,
            "host": self.host,
            "http_port": self.http_port,
            "https_port": self.https_port,
            "listening": self.proxy.listening() if self.engine == "proxy" else None,
            "bind_errors": {str(k): v for k, v in self.proxy.bind_errors.items()},
            "marathon": self.marathon_url,
            "event_stream": "connected" if self.sse_connected else "disconnected",
            "events_seen": self.events_seen,
            "last_sync": self.last_sync,
            "last_sync_error": self.last_sync_error,
            "stale": self.stale_since is not None,
            "stale_since": self.stale_since,
            "stale_reason": self.stale_reason,
            "services": len(self.config.services),
            "reloads": self.reloads,
            "reload_errors": self.reload_errors,
            "last_reload_error": self.last_reload_error,
            "notices": [
                {"kind": n.kind, "app": n.app_id, "label": n.label, "message": n.message}
                for n in self.config.notices
            ],
            "toxics": [t.to_dict() for t in self.proxy.toxics.live()],
            "toxics_error": self.toxics_error,
            "uptime": time.time() - self.started,
        }

    # ---- HTTP -----------------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application()
        r = app.router
        r.add_get("/health", self.h_status)
        r.add_get("/v1/status", self.h_status)
        r.add_get("/v1/routes", lambda req: json_response(self.routes()))
        r.add_get("/haproxy", self.h_stats)
        r.add_get("/_haproxy_health_check", self.h_health_check)
        r.add_get("/_haproxy_getconfig", self.h_getconfig)
        r.add_get("/_haproxy_getvhostmap", self.h_vhostmap)
        r.add_get("/_haproxy_getappmap", self.h_appmap)
        r.add_get("/_haproxy_getpids", self.h_pids)
        for verb in ("hup", "usr1"):
            r.add_get(f"/_mlb_signal/{verb}", self.h_signal)
            r.add_post(f"/_mlb_signal/{verb}", self.h_signal)
        r.add_get("/metrics", self.h_metrics)
        r.add_get("/v1/toxics", self.h_toxics)
        r.add_post("/v1/toxics", self.h_add_toxic)
        r.add_post("/v1/toxics/reload", self.h_reload_toxics)
        r.add_delete("/v1/toxics/{name}", self.h_remove_toxic)
        return app

    async def h_toxics(self, request: web.Request) -> web.Response:
        return json_response(self.toxics_view())

    async def h_add_toxic(self, request: web.Request) -> web.Response:
        if self.engine == "haproxy":
            return _error(409, NOT_ON_HAPROXY, NOT_ON_HAPROXY_HINT)
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "the body is not JSON")
        try:
            toxic = Toxic.parse(body)
            if body.get("fault") is not None:
                raise ToxicError(
                    "faults are added through the fault registry, not the API",
                    hint="`playground break --route APP_ID ...`",
                )
            served = [s for s in self.config.services if toxic.matches(s.app_id, s.service_port)]
            if not served:
                return _error(
                    404,
                    f"the edge serves no route {toxic.route}",
                    "`playground routes` lists the routes (app id and service port)",
                )
            self.proxy.toxics.add(toxic)
        except ToxicError as exc:
            status = 409 if "already exists" in str(exc) else 400
            return _error(status, str(exc), exc.hint)
        log.info("toxic %s added on %s", toxic.name, toxic.route)
        self.event("edge.toxic_added", toxic=toxic.to_dict())
        return json_response(toxic.to_dict(), status=201)

    async def h_remove_toxic(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        try:
            toxic = self.proxy.toxics.remove(name)
        except ToxicError as exc:
            return _error(409, str(exc), exc.hint)
        except KeyError:
            return _error(404, f"no toxic named {name!r}", "GET /v1/toxics lists them")
        log.info("toxic %s removed", name)
        self.event("edge.toxic_removed", toxic=name)
        return json_response(toxic.to_dict())

    async def h_reload_toxics(self, request: web.Request) -> web.Response:
        self.load_toxics()
        return json_response(self.toxics_view())

    async def h_status(self, request: web.Request) -> web.Response:
        return json_response({"status": "ok", **self.status()})

    async def h_health_check(self, request: web.Request) -> web.Response:
        if self.engine == "haproxy" and (
            self.haproxy is None or self.haproxy.returncode is not None
        ):
            return web.Response(status=503, text="haproxy is not running\n")
        return web.Response(text="OK\n")

    async def h_stats(self, request: web.Request) -> web.Response:
        query = request.query_string
        if not query.startswith("stats"):
            raise web.HTTPNotFound()
        if self.engine == "haproxy":
            csv = await self.haproxy_csv()
        else:
            csv = self.proxy.stats_csv()
        if query.endswith(";csv"):
            return web.Response(text=csv, content_type="text/plain")
        return web.Response(text=stats_html(csv, self.status()), content_type="text/html")

    async def h_getconfig(self, request: web.Request) -> web.Response:
        return web.Response(text=self.render(), content_type="text/plain")

    async def h_vhostmap(self, request: web.Request) -> web.Response:
        return web.Response(text=config_mod.vhost_map(self.config), content_type="text/plain")

    async def h_appmap(self, request: web.Request) -> web.Response:
        return web.Response(text=config_mod.app_map(self.config), content_type="text/plain")

    async def h_pids(self, request: web.Request) -> web.Response:
        pid = self.haproxy.pid if self.haproxy is not None else os.getpid()
        return web.Response(text=f"{pid}\n", content_type="text/plain")

    async def h_signal(self, request: web.Request) -> web.Response:
        verb = request.path.rsplit("/", 1)[1]
        if verb == "hup":
            await self.refresh()
        else:
            await self.apply(self.config)
        return web.Response(text=f"Sent SIG{verb.upper()} signal to marathon-lb\n")

    async def h_metrics(self, request: web.Request) -> web.Response:
        lines = [
            "# HELP playground_edge_view_stale 1 while the edge's view of Marathon is stale.",
            "# TYPE playground_edge_view_stale gauge",
            f"playground_edge_view_stale {int(self.stale_since is not None)}",
            "# TYPE playground_edge_stale_total counter",
            f"playground_edge_stale_total {self.stale_total}",
            "# TYPE playground_edge_event_stream_connected gauge",
            f"playground_edge_event_stream_connected {int(self.sse_connected)}",
            "# TYPE playground_edge_events_total counter",
            f"playground_edge_events_total {self.events_seen}",
            "# TYPE playground_edge_reloads_total counter",
            f"playground_edge_reloads_total {self.reloads}",
            "# TYPE playground_edge_reload_errors_total counter",
            f"playground_edge_reload_errors_total {self.reload_errors}",
            "# TYPE playground_edge_last_sync_age_seconds gauge",
            "playground_edge_last_sync_age_seconds "
            + (f"{time.time() - self.last_sync:.3f}" if self.last_sync else "NaN"),
            "# TYPE playground_edge_notices gauge",
            f"playground_edge_notices {len(self.config.notices)}",
            "# TYPE playground_edge_backend_up gauge",
        ]
        for svc in self.config.services:
            up = sum(1 for s in self.proxy.candidates(svc))
            lines.append(
                f'playground_edge_backend_up{{backend="{svc.backend}",app="{svc.app_id}"}} {up}'
            )
        lines.append("# TYPE playground_edge_backend_sessions_total counter")
        for name, c in sorted(self.proxy.backends.items()):
            lines.append(f'playground_edge_backend_sessions_total{{backend="{name}"}} {c.stot}')
        lines.append("# TYPE playground_edge_backend_connection_errors_total counter")
        for name, c in sorted(self.proxy.backends.items()):
            lines.append(
                f'playground_edge_backend_connection_errors_total{{backend="{name}"}} {c.econ}'
            )
        lines += self.toxic_metrics()
        return web.Response(text="\n".join(lines) + "\n", content_type="text/plain")

    def toxic_metrics(self) -> list[str]:
        """Route faults: 1 per live toxic, and what each toxic did."""
        table = self.proxy.toxics
        lines = [
            "# HELP playground_edge_toxic_active 1 while a route fault's toxic applies.",
            "# TYPE playground_edge_toxic_active gauge",
        ]
        for t in table.live():
            lines.append(
                f'playground_edge_toxic_active{{toxic="{t.name}",type="{t.type}",'
                f'stream="{t.stream}",app="{t.app}",fault="{t.fault or ""}"}} 1'
            )
        counters = (
            ("connections", "connections a toxic applied to"),
            ("chunks", "chunks of data a toxic acted on"),
            ("bytes", "bytes a toxic acted on"),
            ("resets", "connections a toxic reset"),
            ("delay_seconds", "seconds a toxic held data back"),
        )
        for key, help_ in counters:
            metric = f"playground_edge_toxic_{key}_total"
            lines += [f"# HELP {metric} The {help_}.", f"# TYPE {metric} counter"]
            for name, st in sorted(table.stats.items()):
                value = getattr(st, key)
                text = f"{value:.3f}" if isinstance(value, float) else str(value)
                lines.append(f'{metric}{{toxic="{name}"}} {text}')
        return lines

    # ---- run ------------------------------------------------------------------------
    async def run(self) -> int:
        self.session = aiohttp.ClientSession(trace_configs=network.trace_configs())
        if self.engine == "proxy":
            await self.proxy.apply(self.config)
        self.load_toxics()  # before the first connection: a restarted edge keeps its faults
        loops = [
            asyncio.ensure_future(supervise(fn.__name__, fn, self.ctx.stop))
            for fn in (self.follow_loop, self.refresh_loop, self.toxics_loop)
        ]
        try:
            await run_app(self.app(), self.host, self.ctx.address.port, self.ctx.stop)
        finally:
            for t in loops:
                t.cancel()
            await self.proxy.close()
            if self.haproxy is not None and self.haproxy.returncode is None:
                self.haproxy.terminate()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self.haproxy.wait(), 2.0)
            await self.session.close()
        return 0


def _error(status: int, message: str, hint: str | None = None) -> web.Response:
    return json_response({"message": message, "hint": hint}, status=status)


def _maxconn() -> int:
    """HAProxy needs about two descriptors per connection: stay within this user's limit."""
    import resource

    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 50000
    return max(256, min(50000, (soft - 200) // 2))


def stats_html(csv: str, status: dict[str, Any]) -> str:
    """A plain HTML table of the stats CSV (HAProxy's page, without its styling)."""
    import html

    rows = [line.split(",") for line in csv.splitlines() if line and not line.startswith("#")]
    keep = (0, 1, 4, 5, 7, 8, 9, 13, 17, 18)
    head = "".join(
        f"<th>{h}</th>"
        for h in (
            "pxname",
            "svname",
            "scur",
            "smax",
            "stot",
            "bin",
            "bout",
            "econ",
            "status",
            "weight",
        )
    )
    body = "".join(
        "<tr>"
        + "".join(f"<td>{html.escape(r[i]) if i < len(r) else ''}</td>" for i in keep)
        + "</tr>"
        for r in rows
    )
    stale = " (view of Marathon is STALE)" if status.get("stale") else ""
    return (
        f"<html><head><title>Statistics Report for {status['node']}</title></head><body>"
        f"<h1>{status['node']} ({status['engine']}){stale}</h1>"
        f"<table border=1><tr>{head}</tr>{body}</table></body></html>\n"
    )


async def serve(ctx: NodeContext) -> int:
    return await Edge(ctx).run()
