"""Marathon's REST API (v2) over :class:`~playground.marathon.core.Marathon`.

Paths, parameters, status codes, bodies and messages follow Marathon 1.10
(``reference/marathon/raml`` and ``legacy-rest-api-v1.4``).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import logging
import math
import statistics
import time
from typing import Any

import msgspec
from aiohttp import web

from playground.marathon import appdef, resident, validation
from playground.marathon.appdef import timestamp
from playground.marathon.core import (
    SCHEDULED,
    ApiError,
    Instance,
    Marathon,
    app_locked,
    app_not_found,
)

log = logging.getLogger("playground.marathon.api")

MARATHON_VERSION = "1.10.17"
TRUE = ("true", "True", "1", "yes")

APP_EMBEDS = {
    "tasks": "tasks",
    "counts": "counts",
    "deprecated.counts": "counts",
    "deployments": "deployments",
    "readiness": "readiness",
    "lastTaskFailure": "lastTaskFailure",
    "failures": "lastTaskFailure",
    "taskStats": "taskStats",
}


def _flag(request: web.Request, name: str, default: bool = False) -> bool:
    value = request.query.get(name)
    if value is None:
        return default
    return value in TRUE


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=msgspec.json.encode(data),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def _error(status: int, message: str, **extra: Any) -> web.Response:
    return _json({"message": message, **extra}, status)


def parse_embeds(values: list[str], prefixes: tuple[str, ...]) -> set[str]:
    out: set[str] = set()
    for raw in values:
        for item in raw.split(","):
            item = item.strip()
            for prefix in prefixes:
                if item.startswith(prefix):
                    key = APP_EMBEDS.get(item[len(prefix) :])
                    if key:
                        out.add(key)
    return out


class Api:
    def __init__(self, m: Marathon, *, host: str, port: int, masters: list[str]) -> None:
        self.m = m
        self.host = host
        self.port = port
        self.masters = masters
        self.requests = 0
        self._index: dict[str, list[Instance]] | None = None

    # ---- plumbing ---------------------------------------------------------------------
    def application(self) -> web.Application:
        app = web.Application(middlewares=[self.errors], client_max_size=16 * 1024 * 1024)
        r = app.router
        r.add_get("/ping", self.ping)
        r.add_get("/health", self.ping)
        r.add_get("/metrics", self.metrics)
        r.add_get("/metrics/prometheus", self.prometheus)
        r.add_get("/v2/info", self.info)
        r.add_get("/v2/leader", self.leader)
        r.add_delete("/v2/leader", self.abdicate)
        r.add_get("/v2/apps", self.list_apps)
        r.add_post("/v2/apps", self.create_app)
        r.add_put("/v2/apps", self.update_apps)
        r.add_patch("/v2/apps", self.patch_apps)
        r.add_route("*", "/v2/apps/{tail:.*}", self.app_route)
        r.add_get("/v2/tasks", self.list_tasks)
        r.add_post("/v2/tasks/delete", self.delete_tasks)
        r.add_get("/v2/deployments", self.list_deployments)
        r.add_delete("/v2/deployments/{id}", self.delete_deployment)
        r.add_get("/v2/queue", self.queue)
        r.add_delete("/v2/queue/{tail:.*}", self.reset_delay)
        r.add_route("*", "/v2/groups", self.group_route)
        r.add_route("*", "/v2/groups/{tail:.*}", self.group_route)
        r.add_get("/v2/events", self.events)
        return app

    @web.middleware
    async def errors(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests += 1
        try:
            return await handler(request)
        except ApiError as exc:
            return _json(exc.body, exc.status)
        except validation.ValidationError as exc:
            return _json(exc.body, exc.status)
        except json.JSONDecodeError as exc:
            return _json(
                {"message": "Invalid JSON", "details": [{"path": "/", "errors": [str(exc)]}]}, 400
            )
        except web.HTTPException as exc:
            if exc.status == 404 and not (exc.text or "").startswith("{"):
                return _error(404, f"The requested resource could not be found: {request.path}")
            if exc.status == 405:
                return _error(405, "HTTP 405 Method Not Allowed")
            raise

    async def body(self, request: web.Request) -> Any:
        raw = await request.read()
        try:
            return json.loads(raw or b"null")
        except UnicodeDecodeError as exc:
            raise json.JSONDecodeError(str(exc), "", 0) from None

    def client_ip(self, request: web.Request) -> str:
        return request.remote or ""

    # ---- small endpoints ----------------------------------------------------------------
    async def ping(self, request: web.Request) -> web.Response:
        return web.Response(text="pong", content_type="text/plain")

    def leader_hostport(self) -> str:
        return f"{self.host}:{self.port}"

    async def info(self, request: web.Request) -> web.Response:
        m = self.m
        master = self.m.driver.leader_hostport or (self.masters[0].split("//", 1)[-1])
        return _json(
            {
                "name": "marathon",
                "version": MARATHON_VERSION,
                "buildref": "playground",
                "elected": True,
                "leader": self.leader_hostport(),
                "frameworkId": m.driver.framework_id,
                "marathon_config": {
                    "access_control_allow_origin": ["*"],
                    "checkpoint": True,
                    "decline_offer_duration": 120000,
                    "default_network_name": "dcos",
                    "env_vars_prefix": "",
                    "executor": "//cmd",
                    "failover_timeout": 604800,
                    "features": ["task_killing"],
                    "framework_name": "marathon",
                    "ha": True,
                    "hostname": self.host,
                    "launch_token": 100,
                    "launch_token_refresh_interval": 30000,
                    "leader_proxy_connection_timeout_ms": 5000,
                    "leader_proxy_read_timeout_ms": 10000,
                    "local_port_max": appdef.SERVICE_PORT_RANGE[1],
                    "local_port_min": appdef.SERVICE_PORT_RANGE[0],
                    "master": f"http://{master}",
                    "max_instances_per_offer": 100,
                    "mesos_bridge_name": "mesos-bridge",
                    "mesos_heartbeat_failure_threshold": 5,
                    "mesos_heartbeat_interval": 15000,
                    "mesos_leader_ui_url": f"http://{master}/",
                    "mesos_role": appdef.MARATHON_ROLE,
                    "mesos_user": m.mesos_user,
                    "min_revive_offers_interval": 5000,
                    "offer_matching_timeout": 3000,
                    "on_elected_prepare_timeout": 180000,
                    "reconciliation_initial_delay": 15000,
                    "reconciliation_interval": 600000,
                    "scale_apps_initial_delay": 15000,
                    "scale_apps_interval": 300000,
                    "store_cache": True,
                    "task_launch_confirm_timeout": 300000,
                    "task_launch_timeout": 300000,
                    "task_lost_expunge_initial_delay": 300000,
                    "task_lost_expunge_interval": 30000,
                    "task_reservation_timeout": 20000,
                    "webui_url": f"http://{self.leader_hostport()}",
                },
                "zookeeper_config": {
                    "zk": "zk://coordinator-1:2181/marathon",
                    "zk_compression": True,
                    "zk_compression_threshold": 65536,
                    "zk_connection_timeout": 10000,
                    "zk_max_node_size": 1024000,
                    "zk_max_versions": 50,
                    "zk_session_timeout": 10000,
                    "zk_timeout": 10000,
                },
                "http_config": {"http_port": self.port, "https_port": 8443},
            }
        )

    async def leader(self, request: web.Request) -> web.Response:
        return _json({"leader": self.leader_hostport()})

    async def abdicate(self, request: web.Request) -> web.Response:
        # A single Marathon is re-elected at once; its state is untouched.
        return _json({"message": "Leadership abdicated"})

    def _metric_values(self) -> dict[str, float]:
        insts = list(self.m.instances.values())
        running = sum(1 for i in insts if i.state == "TASK_RUNNING")
        staged = sum(1 for i in insts if i.state in ("TASK_STAGING", "TASK_STARTING"))
        return {
            "marathon.apps.active.gauge": float(len(self.m.apps)),
            "marathon.groups.active.gauge": float(len(self.m.group_ids()) + 1),
            "marathon.deployments.active.gauge": float(len(self.m.deployments)),
            "marathon.instances.running.gauge": float(running),
            "marathon.instances.staged.gauge": float(staged),
            "marathon.instances.launch-overdue.gauge": float(
                sum(1 for i in insts if i.state == SCHEDULED)
            ),
            "marathon.uptime.gauge.seconds": time.time() - self.m.started_at,
            "marathon.leadership.duration.gauge.seconds": time.time() - self.m.started_at,
            "marathon.http.requests.active.gauge": 1.0,
            "marathon.mesos.offers.incoming.counter": float(
                sum(s.processed for s in self.m.offer_stats.values())
            ),
            "marathon.http.requests.counter": float(self.requests),
            # The kit's own gauge (not in Marathon 1.10): 1 while subscribed to a leading
            # master, 0 while disconnected (quorum lost, partition, no master running).
            "marathon.mesos.connected.gauge": 1.0 if self.m.driver.connected.is_set() else 0.0,
        }

    async def metrics(self, request: web.Request) -> web.Response:
        values = self._metric_values()
        gauges = {
            k: {"value": v} for k, v in values.items() if k.endswith("gauge") or ".gauge." in k
        }
        counters = {k: {"count": int(v)} for k, v in values.items() if k.endswith("counter")}
        return _json(
            {
                "start": timestamp(self.m.started_at),
                "end": timestamp(),
                "counters": counters,
                "gauges": gauges,
                "histograms": {},
                "meters": {},
                "timers": {},
            }
        )

    async def prometheus(self, request: web.Request) -> web.Response:
        lines = []
        for name, value in sorted(self._metric_values().items()):
            prom = "marathon_" + name.removeprefix("marathon.").replace(".", "_").replace("-", "_")
            kind = "counter" if name.endswith("counter") else "gauge"
            lines.append(f"# TYPE {prom} {kind}")
            lines.append(f"{prom} {value:g}")
        return web.Response(text="\n".join(lines) + "\n", content_type="text/plain")

    # ---- rendering --------------------------------------------------------------------
    def task_json(
        self,
        inst: Instance,
        app: dict[str, Any] | None,
        service_ports: list[int] | None = None,
    ) -> dict[str, Any]:
        if service_ports is None:
            service_ports = appdef.service_ports(app) if app else []
        out: dict[str, Any] = {
            "appId": inst.app_id,
            "host": inst.hostname or "",
            "id": inst.task_id,
            "ipAddresses": [{"ipAddress": ip, "protocol": "IPv4"} for ip in inst.addresses()],
            "ports": list(inst.ports),
            "servicePorts": service_ports,
            "slaveId": inst.agent_id or "",
            "state": inst.state,
            "stagedAt": timestamp(inst.staged_at or inst.since),
            "version": inst.version,
            "localVolumes": resident.local_volumes(inst.reservation),
            "role": inst.role,
        }
        if not inst.launched:
            # A resident instance on its reservation, no task running (condition Reserved).
            out["state"] = "TASK_RESERVED"
            del out["stagedAt"]
        if inst.started_at:
            out["startedAt"] = timestamp(inst.started_at)
        if app and app.get("healthChecks"):
            out["healthCheckResults"] = self.m.health_results(inst)
        if inst.region:
            out["region"] = inst.region
        if inst.zone:
            out["zone"] = inst.zone
        return out

    def tasks_of(self, app_id: str) -> list[Instance]:
        index = self._index
        if index is not None:
            return index.get(app_id, [])
        return [i for i in self.m.app_instances(app_id) if _listed(i)]

    def build_index(self) -> dict[str, list[Instance]]:
        """Tasks by app, built once per request that renders many apps."""
        out: dict[str, list[Instance]] = {}
        for i in self.m.instances.values():
            if _listed(i):
                out.setdefault(i.app_id, []).append(i)
        return out

    def counts(self, app: dict[str, Any]) -> dict[str, int]:
        tasks = self.tasks_of(app["id"])
        healthy = unhealthy = 0
        if app.get("healthChecks"):
            for i in tasks:
                runner = self.m.health.get(i.instance_id)
                state = runner.healthy() if runner is not None else None
                if state is True:
                    healthy += 1
                elif state is False:
                    unhealthy += 1
        return {
            "tasksStaged": sum(1 for i in tasks if i.state in ("TASK_STAGING", "TASK_STARTING")),
            "tasksRunning": sum(1 for i in tasks if i.state == "TASK_RUNNING"),
            "tasksHealthy": healthy,
            "tasksUnhealthy": unhealthy,
        }

    def task_stats(self, app: dict[str, Any]) -> dict[str, Any]:
        tasks = [i for i in self.tasks_of(app["id"]) if not i.terminal]
        vi = app.get("versionInfo") or {}
        now = time.time()

        def stats(group: list[Instance]) -> dict[str, Any] | None:
            if not group:
                return None
            counts = {"staged": 0, "running": 0, "healthy": 0, "unhealthy": 0}
            for i in group:
                if i.state == "TASK_RUNNING":
                    counts["running"] += 1
                else:
                    counts["staged"] += 1
                runner = self.m.health.get(i.instance_id)
                h = runner.healthy() if runner is not None else None
                if h is True:
                    counts["healthy"] += 1
                elif h is False:
                    counts["unhealthy"] += 1
            out: dict[str, Any] = {"counts": counts}
            lifetimes = [now - i.started_at for i in group if i.started_at]
            if lifetimes:
                out["lifeTime"] = {
                    "averageSeconds": sum(lifetimes) / len(lifetimes),
                    "medianSeconds": statistics.median(lifetimes),
                }
            return {"stats": out}

        scaling = appdef.parse_timestamp(vi["lastScalingAt"]) if vi.get("lastScalingAt") else 0
        cfg = vi.get("lastConfigChangeAt")
        result: dict[str, Any] = {}
        for key, group in (
            ("startedAfterLastScaling", [i for i in tasks if (i.staged_at or 0) >= scaling]),
            ("withLatestConfig", [i for i in tasks if i.config_version == cfg]),
            ("withOutdatedConfig", [i for i in tasks if i.config_version != cfg]),
            ("totalSummary", tasks),
        ):
            s = stats(group)
            if s is not None:
                result[key] = s
        return result

    def app_json(self, app: dict[str, Any], embeds: set[str]) -> dict[str, Any]:
        out = dict(app)  # rendering only adds keys; the stored definition is not touched
        if "counts" in embeds:
            out.update(self.counts(app))
        if "deployments" in embeds:
            out["deployments"] = [{"id": d.id} for d in self.m.locking_deployments({app["id"]})]
        if "readiness" in embeds and app.get("readinessChecks"):
            out["readinessCheckResults"] = [
                r for d in self.m.locking_deployments({app["id"]}) for r in d.readiness.values()
            ]
        if "tasks" in embeds:
            ports = appdef.service_ports(app)  # once per app, not per task
            out["tasks"] = [self.task_json(i, app, ports) for i in self.tasks_of(app["id"])]
        if "lastTaskFailure" in embeds and app["id"] in self.m.failures:
            out["lastTaskFailure"] = self.m.failures[app["id"]]
        if "taskStats" in embeds:
            out["taskStats"] = self.task_stats(app)
        return out

    def app_id_from(self, raw: str) -> str:
        return appdef.canonical_id("/" + raw.strip("/"))

    # ---- /v2/apps ---------------------------------------------------------------------
    async def list_apps(self, request: web.Request) -> web.Response:
        embeds = parse_embeds(request.query.getall("embed", []), ("apps.", "app."))
        embeds |= {"counts", "deployments"}
        wanted_id = request.query.get("id")
        wanted_cmd = request.query.get("cmd")
        label = request.query.get("label")
        apps: list[dict[str, Any]] = []
        self._index = self.build_index()
        try:
            self._collect_apps(apps, embeds, wanted_id, wanted_cmd, label)
        finally:
            self._index = None
        return _json({"apps": apps})

    def _collect_apps(
        self,
        apps: list[dict[str, Any]],
        embeds: set[str],
        wanted_id: str | None,
        wanted_cmd: str | None,
        label: str | None,
    ) -> None:
        for aid in sorted(self.m.apps):
            app = self.m.apps[aid]
            if wanted_id and wanted_id.lower() not in aid.lower():
                continue
            if wanted_cmd and wanted_cmd not in (app.get("cmd") or ""):
                continue
            if label and not _label_matches(app.get("labels") or {}, label):
                continue
            apps.append(self.app_json(app, embeds))

    def _checked_full(
        self, raw: Any, path_id: str | None = None, prefix: str = ""
    ) -> dict[str, Any]:
        if not isinstance(raw, dict):
            validation.raise_if_invalid(
                [{"path": prefix or "/", "errors": ["error.expected.jsobject"]}], "Invalid JSON"
            )
        if path_id is not None:
            raw = {**raw, "id": path_id}
        validation.raise_if_invalid(validation.check_types_app(raw, prefix=prefix), "Invalid JSON")
        validation.raise_if_invalid(validation.validate_app(raw, prefix=prefix))
        return appdef.normalize_app(raw)

    async def create_app(self, request: web.Request) -> web.Response:
        raw = await self.body(request)
        app = self._checked_full(raw)
        if app["id"] in self.m.apps:
            raise ApiError(409, {"message": f"An app with id [{app['id']}] already exists."})
        if app["id"] in self.m.group_ids():
            raise ApiError(409, {"message": f"A group with id [{app['id']}] already exists."})
        target = dict(self.m.apps)
        target[app["id"]] = app
        dep = self.m.deploy(target, force=_flag(request, "force"))
        created = self.m.apps[app["id"]]
        self.m.emit(
            "api_post_event",
            clientIp=self.client_ip(request),
            uri=f"/v2/apps{app['id']}",
            appDefinition=created,
        )
        body = self.app_json(created, {"counts", "deployments", "tasks"})
        headers = {"Location": f"{request.scheme}://{request.host}/v2/apps{app['id']}"}
        if dep is not None:
            headers["Marathon-Deployment-Id"] = dep.id
        return _json(body, 201, headers)

    def _updated(
        self, app_id: str, body: dict[str, Any], partial: bool, prefix: str = ""
    ) -> dict[str, Any]:
        """The new normal form of ``app_id`` after applying ``body`` (PUT/PATCH)."""
        if not isinstance(body, dict):
            validation.raise_if_invalid(
                [{"path": prefix or "/", "errors": ["error.expected.jsobject"]}], "Invalid JSON"
            )
        keys = set(body) - {"id"}
        current = self.m.apps.get(app_id)
        if keys == {"version"}:
            version = str(body["version"])
            old = self.m.store.version(app_id, version)
            if old is None:
                raise ApiError(
                    404, {"message": f"Version '{version}' of app '{app_id}' does not exist"}
                )
            old.pop("version", None)
            old.pop("versionInfo", None)
            return old
        validation.raise_if_invalid(
            validation.check_types_app(body, partial=True, prefix=prefix), "Invalid JSON"
        )
        if current is not None and partial:
            merged = appdef.merge_update(current, body)
        else:
            merged = {k: v for k, v in body.items() if k not in appdef.RUNTIME_FIELDS}
        merged["id"] = app_id
        validation.raise_if_invalid(validation.validate_app(merged, prefix=prefix))
        new = appdef.normalize_app(merged)
        if current is not None:
            validation.raise_if_invalid(
                validation.validate_resident_update(current, new, prefix=prefix)
            )
            _keep_service_ports(current, new)
        return new

    async def _put_app(self, request: web.Request, app_id: str, partial: bool) -> web.Response:
        body = await self.body(request)
        existed = app_id in self.m.apps
        new = self._updated(app_id, body, partial)
        target = dict(self.m.apps)
        target[app_id] = new
        dep = self.m.deploy(target, force=_flag(request, "force"))
        self.m.emit(
            "api_post_event",
            clientIp=self.client_ip(request),
            uri=f"/v2/apps{app_id}",
            appDefinition=self.m.apps[app_id],
        )
        result = self._deployment_result(dep)
        if not existed:
            return _json(
                result, 201, {"Location": f"{request.scheme}://{request.host}/v2/apps{app_id}"}
            )
        return _json(result)

    def _deployment_result(self, dep: Any) -> dict[str, Any]:
        if dep is None:
            return {"deploymentId": None, "version": self.m.root_version}
        return {"deploymentId": dep.id, "version": dep.version}

    async def update_apps(self, request: web.Request, partial_default: bool = True) -> web.Response:
        body = await self.body(request)
        if not isinstance(body, list):
            validation.raise_if_invalid(
                [{"path": "/", "errors": ["error.expected.jsarray"]}], "Invalid JSON"
            )
        partial = _flag(request, "partialUpdate", partial_default)
        target = dict(self.m.apps)
        for idx, item in enumerate(body):
            if not isinstance(item, dict) or not isinstance(item.get("id"), str):
                validation.raise_if_invalid(
                    [{"path": f"/({idx})/id", "errors": ["error.path.missing"]}], "Invalid JSON"
                )
            aid = appdef.canonical_id(item["id"])
            target[aid] = self._updated(aid, item, partial, prefix=f"/({idx})")
        dep = self.m.deploy(target, force=_flag(request, "force"))
        return _json(self._deployment_result(dep))

    async def patch_apps(self, request: web.Request) -> web.Response:
        return await self.update_apps(request, partial_default=True)

    async def app_route(self, request: web.Request) -> web.Response:
        tail = request.match_info["tail"].strip("/")
        parts = tail.split("/")
        method = request.method
        # /{id}/tasks/{taskId}
        if len(parts) >= 3 and parts[-2] == "tasks":
            return await self.app_task(request, self.app_id_from("/".join(parts[:-2])), parts[-1])
        if len(parts) >= 3 and parts[-2] == "versions":
            if method != "GET":
                raise web.HTTPMethodNotAllowed(method, ["GET"])
            return await self.app_version(self.app_id_from("/".join(parts[:-2])), parts[-1])
        if len(parts) >= 2 and parts[-1] in ("tasks", "versions", "restart"):
            aid = self.app_id_from("/".join(parts[:-1]))
            if parts[-1] == "tasks":
                if method == "GET":
                    return await self.app_tasks(request, aid)
                if method == "DELETE":
                    return await self.kill_app_tasks(request, aid)
            elif parts[-1] == "versions" and method == "GET":
                self.m.app(aid)
                return _json({"versions": self.m.store.versions(aid)})
            elif parts[-1] == "restart" and method == "POST":
                return await self.restart_app(request, aid)
            if aid in self.m.apps:
                raise web.HTTPMethodNotAllowed(method, ["GET", "POST", "DELETE"])
        aid = self.app_id_from(tail)
        if method == "GET":
            embeds = parse_embeds(request.query.getall("embed", []), ("app.", "apps."))
            embeds |= {"counts", "deployments", "tasks", "lastTaskFailure", "readiness"}
            if aid.endswith("/*"):
                # GET /v2/apps/prod/* lists every app below /prod, keyed "*"
                prefix = aid[:-1]
                nested = [a for a in sorted(self.m.apps) if a.startswith(prefix)]
                return _json({"*": [self.app_json(self.m.apps[a], embeds) for a in nested]})
            if aid not in self.m.apps:
                raise app_not_found(aid)
            return _json({"app": self.app_json(self.m.apps[aid], embeds)})
        if method == "PUT":
            return await self._put_app(request, aid, _flag(request, "partialUpdate", True))
        if method == "PATCH":
            return await self._put_app(request, aid, True)
        if method == "DELETE":
            self.m.app(aid)
            target = {k: v for k, v in self.m.apps.items() if k != aid}
            dep = self.m.deploy(target, force=_flag(request, "force", True))
            self.m.emit(
                "api_post_event",
                clientIp=self.client_ip(request),
                uri=f"/v2/apps{aid}",
                appDefinition={"id": aid},
            )
            return _json(self._deployment_result(dep))
        raise web.HTTPMethodNotAllowed(method, ["GET", "PUT", "PATCH", "DELETE"])

    async def app_version(self, aid: str, version: str) -> web.Response:
        self.m.app(aid)
        app = self.m.store.version(aid, version)
        if app is None:
            raise ApiError(404, {"message": f"App '{aid}' does not exist in version '{version}'"})
        return _json(app)

    async def restart_app(self, request: web.Request, aid: str) -> web.Response:
        self.m.app(aid)
        dep = self.m.deploy(dict(self.m.apps), force=_flag(request, "force"), restart={aid})
        return _json(self._deployment_result(dep))

    async def app_tasks(self, request: web.Request, aid: str) -> web.Response:
        app = self.m.app(aid)
        return _json({"tasks": [self.task_json(i, app) for i in self.tasks_of(aid)]})

    def _kill(self, request: web.Request, insts: list[Instance]) -> web.Response:
        scale = _flag(request, "scale")
        wipe = _flag(request, "wipe")
        force = _flag(request, "force")
        if scale and wipe:
            raise ApiError(400, {"message": "You cannot use scale and wipe at the same time."})
        affected = {i.app_id for i in insts}
        if scale:
            locked = self.m.locking_deployments(affected)
            if locked and not force:
                raise app_locked(locked)
            target = dict(self.m.apps)
            for aid in affected:
                n = sum(1 for i in insts if i.app_id == aid)
                app = copy.deepcopy(target[aid])
                app.pop("version", None)
                app["instances"] = max(0, int(app["instances"]) - n)
                target[aid] = app
            for inst in insts:
                if inst.reservation is not None:
                    self.m.stop_instance(inst)  # scaling down keeps the reservation
                else:
                    self.m.kill_instance(inst, decommission=True)
            dep = self.m.deploy(target, force=True)
            return _json(self._deployment_result(dep))
        rendered = [self.task_json(i, self.m.apps.get(i.app_id)) for i in insts]
        for inst in insts:
            self.m.kill_instance(inst, decommission=wipe)
        return _json({"tasks": rendered})

    async def kill_app_tasks(self, request: web.Request, aid: str) -> web.Response:
        self.m.app(aid)
        host = request.query.get("host")
        insts = [
            i
            for i in self.tasks_of(aid)
            if not i.terminal and (host is None or host in (i.hostname, i.host_ip))
        ]
        return self._kill(request, insts)

    def _find_task(self, task_id: str) -> Instance | None:
        split = appdef.split_task_id(task_id)
        if split is None:
            return None
        inst = self.m.instances.get(split[0])
        if inst is None or not (inst.launched or inst.reservation is not None):
            return None
        return inst

    async def app_task(self, request: web.Request, aid: str, task_id: str) -> web.Response:
        app = self.m.app(aid)
        inst = self._find_task(task_id)
        if inst is None or inst.app_id != aid:
            raise ApiError(404, {"message": f"Task '{task_id}' does not exist"})
        if request.method == "GET":
            return _json({"task": self.task_json(inst, app)})
        if request.method != "DELETE":
            raise web.HTTPMethodNotAllowed(request.method, ["GET", "DELETE"])
        resp = self._kill(request, [inst])
        if _flag(request, "scale"):
            return resp
        return _json({"task": self.task_json(inst, app)})

    # ---- /v2/tasks -------------------------------------------------------------------
    async def list_tasks(self, request: web.Request) -> web.Response:
        statuses = {s.lower() for s in request.query.getall("status", [])}
        want = set()
        for s in statuses:
            want.add("TASK_" + s.upper())
        insts = [
            i for i in self.m.instances.values() if _listed(i) and (not want or i.state in want)
        ]
        if "text/plain" in request.headers.get("Accept", "") and "json" not in request.headers.get(
            "Accept", ""
        ):
            return web.Response(text=self._tasks_text(insts), content_type="text/plain")
        return _json({"tasks": [self.task_json(i, self.m.apps.get(i.app_id)) for i in insts]})

    def _tasks_text(self, insts: list[Instance]) -> str:
        lines = []
        for aid in sorted(self.m.apps):
            app = self.m.apps[aid]
            running = [i for i in insts if i.app_id == aid and i.state == "TASK_RUNNING"]
            for idx, sp in enumerate(appdef.service_ports(app)):
                hosts = "\t".join(
                    f"{i.host_ip or i.hostname}:{i.ports[idx]}"
                    for i in running
                    if idx < len(i.ports)
                )
                lines.append(
                    f"{appdef.app_id_for_task_prefix(aid)}\t{sp}\t{hosts}\t".rstrip("\t") + "\t"
                )
        return "\n".join(lines) + ("\n" if lines else "")

    async def delete_tasks(self, request: web.Request) -> web.Response:
        body = await self.body(request)
        ids = body.get("ids") if isinstance(body, dict) else None
        if not isinstance(ids, list):
            validation.raise_if_invalid(
                [{"path": "/ids", "errors": ["error.path.missing"]}], "Invalid JSON"
            )
        assert isinstance(ids, list)
        insts = [i for i in (self._find_task(str(t)) for t in ids) if i is not None]
        return self._kill(request, insts)

    # ---- deployments --------------------------------------------------------------------
    def deployment_json(self, dep: Any) -> dict[str, Any]:
        step = dep.steps[dep.current_step] if dep.current_step < len(dep.steps) else []
        actions = []
        for a in step:
            item = dict(a)
            item["readinessCheckResults"] = [
                r for tid, r in dep.readiness.items() if appdef.app_id_of_task(tid) == a["app"]
            ]
            actions.append(item)
        return {
            "id": dep.id,
            "version": dep.version,
            "affectedApps": dep.affected_apps,
            "affectedPods": [],
            "steps": [{"actions": list(s)} for s in dep.steps],
            "currentActions": actions,
            "currentStep": min(dep.current_step + 1, len(dep.steps)),
            "totalSteps": len(dep.steps),
        }

    async def list_deployments(self, request: web.Request) -> web.Response:
        return _json([self.deployment_json(d) for d in self.m.deployments.values()])

    async def delete_deployment(self, request: web.Request) -> web.Response:
        force = _flag(request, "force")
        dep = self.m.rollback_deployment(request.match_info["id"], force)
        if force:
            return web.Response(status=202)
        return _json(self._deployment_result(dep))

    # ---- queue ------------------------------------------------------------------------
    async def queue(self, request: web.Request) -> web.Response:
        embed_offers = "lastUnusedOffers" in ",".join(request.query.getall("embed", []))
        entries = []
        by_app: dict[str, list[Instance]] = {}
        for inst in self.m.instances.values():
            if inst.state == SCHEDULED and inst.goal == "Running":
                by_app.setdefault(inst.app_id, []).append(inst)
        for inst in self.m.waiting_residents():
            # Pinned to an agent that is away: it waits for that agent's reservation.
            by_app.setdefault(inst.app_id, []).append(inst)
        for aid, insts in sorted(by_app.items()):
            app = self.m.apps.get(aid)
            if app is None:
                continue
            left = self.m.delayed(aid)
            entry: dict[str, Any] = {
                "app": self.app_json(app, set()),
                "count": len(insts),
                "delay": {"timeLeftSeconds": round(left), "overdue": left <= 0},
                "since": timestamp(min(i.since for i in insts)),
            }
            stats = self.m.offer_stats.get(aid)
            summary: dict[str, Any] = {"processedOffersCount": 0, "unusedOffersCount": 0}
            if stats is not None:
                summary = {
                    "processedOffersCount": stats.processed,
                    "unusedOffersCount": stats.unused,
                }
                if stats.last_unused_at:
                    summary["lastUnusedOfferAt"] = timestamp(stats.last_unused_at)
                if stats.last_used_at:
                    summary["lastUsedOfferAt"] = timestamp(stats.last_used_at)
                summary["rejectSummaryLastOffers"] = _summary(stats.last_offers)
                summary["rejectSummaryLaunchAttempt"] = _summary(stats.launch_attempt)
                if embed_offers:
                    entry["lastUnusedOffers"] = [
                        {
                            "offer": _offer_json(u["offer"]),
                            "reason": u["reason"],
                            "timestamp": u["timestamp"],
                        }
                        for u in stats.last_unused_offers
                    ]
            entry["processedOffersSummary"] = summary
            failed = [i.launch_error for i in insts if i.launch_error]
            if stats is not None and stats.waiting:
                # The kit's addition: why the instances wait for storage, in words.
                entry["waitingReason"] = stats.waiting
            elif failed:
                # ... or why their last launch failed before the task ran (no address left
                # on a container network, ...); Marathon's backoff applies meanwhile.
                entry["waitingReason"] = failed[0]
            entries.append(entry)
        return _json({"queue": entries})

    async def reset_delay(self, request: web.Request) -> web.Response:
        tail = request.match_info["tail"].strip("/")
        if not tail.endswith("/delay") and tail != "delay":
            raise web.HTTPNotFound()
        aid = self.app_id_from(tail[: -len("delay")])
        if not any(i.app_id == aid and i.state == SCHEDULED for i in self.m.instances.values()):
            raise ApiError(404, {"message": f"Application {aid} not found in tasks queue."})
        self.m.reset_delay(aid)
        return web.Response(status=204)

    # ---- groups -----------------------------------------------------------------------
    def group_json(self, gid: str, embeds: set[str], app_embeds: set[str]) -> dict[str, Any]:
        prefix = gid.rstrip("/") + "/"
        all_groups = self.m.group_ids()
        child_groups = sorted(
            g for g in all_groups if g.startswith(prefix) and appdef.parent_of(g) == gid
        )
        apps = sorted(a for a in self.m.apps if appdef.parent_of(a) == gid)
        meta = self.m.groups.get(gid, {})
        out: dict[str, Any] = {"id": gid}
        if "apps" in embeds:
            out["apps"] = [self.app_json(self.m.apps[a], app_embeds) for a in apps]
        if "groups" in embeds:
            out["groups"] = [self.group_json(g, embeds, app_embeds) for g in child_groups]
        out["pods"] = []
        out["dependencies"] = list(meta.get("dependencies", []))
        out["version"] = meta.get("version", self.m.root_version)
        return out

    async def group_route(self, request: web.Request) -> web.Response:
        tail = request.match_info.get("tail", "").strip("/")
        gid = appdef.canonical_id("/" + tail)
        method = request.method
        if method == "GET":
            raw_embeds = ",".join(request.query.getall("embed", []))
            embeds = {"apps", "groups"}
            if raw_embeds:
                embeds = {
                    e
                    for e in ("apps", "groups")
                    if f"group.{e}" in raw_embeds.split(",")
                    or any(x.startswith(f"group.{e}.") for x in raw_embeds.split(","))
                }
                if any(x.startswith("group.apps.") for x in raw_embeds.split(",")):
                    embeds.add("apps")
            app_embeds = parse_embeds(request.query.getall("embed", []), ("group.apps.",))
            if gid != "/" and gid not in self.m.group_ids():
                raise ApiError(404, {"message": f"Group '{gid}' does not exist"})
            return _json(self.group_json(gid, embeds, app_embeds))
        if method == "DELETE":
            if gid != "/" and gid not in self.m.group_ids():
                raise ApiError(404, {"message": f"Group '{gid}' does not exist"})
            prefix = gid.rstrip("/") + "/"
            target = {k: v for k, v in self.m.apps.items() if not k.startswith(prefix)}
            groups = {
                k: v for k, v in self.m.groups.items() if not k.startswith(prefix) and k != gid
            }
            dep = self.m.deploy(target, force=_flag(request, "force"), groups=groups)
            return _json(self._deployment_result(dep))
        if method in ("POST", "PUT", "PATCH"):
            body = await self.body(request)
            if not isinstance(body, dict):
                validation.raise_if_invalid(
                    [{"path": "/", "errors": ["error.expected.jsobject"]}], "Invalid JSON"
                )
            if method == "POST" and tail == "":
                gid = appdef.canonical_id(str(body.get("id", "")) or "/")
            elif method == "POST":
                gid = appdef.canonical_id(str(body.get("id", "")), gid) if body.get("id") else gid
            if method == "POST" and (gid in self.m.group_ids() or gid == "/") and tail == "":
                if gid != "/":
                    raise ApiError(
                        409,
                        {
                            "message": f"Group {gid} is already created. Use PUT to change this group."
                        },
                    )
            return await self._put_group(request, gid, {**body, "id": gid}, create=method == "POST")
        raise web.HTTPMethodNotAllowed(method, ["GET", "POST", "PUT", "DELETE"])

    async def _put_group(
        self, request: web.Request, gid: str, body: dict[str, Any], create: bool
    ) -> web.Response:
        force = _flag(request, "force")
        dry_run = _flag(request, "dryRun")
        prefix = gid.rstrip("/") + "/"
        target = dict(self.m.apps)
        groups = dict(self.m.groups)
        if "scaleBy" in body:
            factor = float(body["scaleBy"])
            for aid, app in self.m.apps.items():
                if aid.startswith(prefix):
                    app = copy.deepcopy(app)
                    app.pop("version", None)
                    app["instances"] = math.ceil(int(app["instances"]) * factor)
                    target[aid] = app
        elif set(body) - {"id"} == {"version"}:
            raise ApiError(
                422,
                {
                    "message": "Object is not valid",
                    "details": [
                        {
                            "path": "/version",
                            "errors": [
                                "rolling back a whole group is not supported by this kit; roll back its apps"
                            ],
                        }
                    ],
                },
            )
        else:
            validation.raise_if_invalid(validation.validate_group(body))
            new_apps: dict[str, dict[str, Any]] = {}
            new_groups: dict[str, dict[str, Any]] = {}

            def walk(g: dict[str, Any], base: str, path: str) -> None:
                g_id = appdef.canonical_id(
                    str(g.get("id", base)), appdef.parent_of(base) if path else base
                )
                if path == "":
                    g_id = base
                version = self.m.clock.next()
                new_groups[g_id] = {
                    "dependencies": [
                        appdef.canonical_id(d, appdef.parent_of(g_id))
                        for d in g.get("dependencies", [])
                    ],
                    "version": version,
                }
                for i, raw_app in enumerate(g.get("apps") or []):
                    aid = appdef.canonical_id(str(raw_app.get("id", "")), g_id)
                    full = {**raw_app, "id": aid}
                    p = f"{path}/apps({i})"
                    validation.raise_if_invalid(
                        validation.check_types_app(full, prefix=p), "Invalid JSON"
                    )
                    validation.raise_if_invalid(validation.validate_app(full, prefix=p))
                    app = appdef.normalize_app(full)
                    if aid in self.m.apps:
                        _keep_service_ports(self.m.apps[aid], app)
                    new_apps[aid] = app
                for i, sub in enumerate(g.get("groups") or []):
                    sid = appdef.canonical_id(str(sub.get("id", "")), g_id)
                    walk({**sub, "id": sid}, sid, f"{path}/groups({i})")

            walk(body, gid, "")
            if create:
                for aid in new_apps:
                    if aid in self.m.apps:
                        raise ApiError(409, {"message": f"An app with id [{aid}] already exists."})
            else:
                # PUT replaces the group: apps below it that are not named are removed
                if body.get("apps") is not None or body.get("groups") is not None:
                    for aid in list(target):
                        if aid.startswith(prefix) and aid not in new_apps:
                            target.pop(aid)
            target.update(new_apps)
            for k in list(groups):
                if k.startswith(prefix) and k not in new_groups and not create:
                    groups.pop(k)
            groups.update(new_groups)
        if dry_run:
            from playground.marathon import plan as plan_mod

            steps = plan_mod.build_plan(self.m.apps, target)
            return _json({"steps": [{"actions": s} for s in steps]})
        dep = self.m.deploy(target, force=force, groups=groups)
        result = self._deployment_result(dep)
        if create:
            return _json(
                result, 201, {"Location": f"{request.scheme}://{request.host}/v2/groups{gid}"}
            )
        return _json(result)

    # ---- events -------------------------------------------------------------------------
    async def events(self, request: web.Request) -> web.StreamResponse:
        types: set[str] = set()
        for value in request.query.getall("event_type", []):
            types.update(v for v in value.split(",") if v)
        resp = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await resp.prepare(request)
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=10000)
        self.m.subscribers.add(queue)
        remote = self.client_ip(request)
        attached = {
            "remoteAddress": remote,
            "eventType": "event_stream_attached",
            "timestamp": timestamp(),
        }
        with contextlib.suppress(asyncio.QueueFull):
            queue.put_nowait(attached)
        try:
            while not self.m.stop.is_set():
                try:
                    event = await asyncio.wait_for(queue.get(), 10.0)
                except TimeoutError:
                    await resp.write(b"\r\n")
                    continue
                if types and event["eventType"] not in types:
                    continue
                data = json.dumps(event, separators=(",", ":"))
                await resp.write(f"event: {event['eventType']}\r\ndata: {data}\r\n\r\n".encode())
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self.m.subscribers.discard(queue)
            self.m.emit("event_stream_detached", remoteAddress=remote)
        return resp


def _label_matches(labels: dict[str, Any], selector: str) -> bool:
    for clause in selector.split(","):
        clause = clause.strip()
        if "==" in clause:
            k, v = clause.split("==", 1)
            if labels.get(k.strip()) != v.strip():
                return False
        elif "!=" in clause:
            k, v = clause.split("!=", 1)
            if labels.get(k.strip()) == v.strip():
                return False
        elif clause and clause not in labels:
            return False
    return True


def _summary(rows: dict[str, list[int]]) -> list[dict[str, Any]]:
    from playground.marathon.core import REJECT_ORDER

    return [
        {"reason": r, "declined": rows.get(r, [0, 0])[0], "processed": rows.get(r, [0, 0])[1]}
        for r in REJECT_ORDER
    ]


def _offer_json(offer: dict[str, Any]) -> dict[str, Any]:
    resources = []
    for r in offer.get("resources", []):
        item: dict[str, Any] = {"name": r["name"], "role": r.get("role", "*")}
        if r.get("type") == "SCALAR":
            item["scalar"] = r["scalar"]["value"]
        elif r.get("type") == "RANGES":
            item["ranges"] = [
                {"begin": x["begin"], "end": x["end"]} for x in r["ranges"].get("range", [])
            ]
        elif r.get("type") == "SET":
            item["set"] = list(r.get("set", {}).get("item", []))
        resources.append(item)
    attributes = []
    for a in offer.get("attributes", []):
        item = {"name": a["name"]}
        if a.get("type") == "TEXT":
            item["text"] = a["text"]["value"]
        elif a.get("type") == "SCALAR":
            item["scalar"] = a["scalar"]["value"]
        attributes.append(item)
    return {
        "id": offer["id"]["value"],
        "agentId": offer["agent_id"]["value"],
        "hostname": offer["hostname"],
        "resources": resources,
        "attributes": attributes,
    }


def _keep_service_ports(old: dict[str, Any], new: dict[str, Any]) -> None:
    """Keep the service ports Marathon assigned when an update asks for 'any' (0)."""
    old_defs = old.get("portDefinitions") or []
    for i, pd in enumerate(new.get("portDefinitions") or []):
        if int(pd.get("port", 0)) == 0 and i < len(old_defs):
            pd["port"] = old_defs[i]["port"]
    old_maps = (old.get("container") or {}).get("portMappings") or []
    for i, pm in enumerate((new.get("container") or {}).get("portMappings") or []):
        if int(pm.get("servicePort", 0)) == 0 and i < len(old_maps):
            pm["servicePort"] = old_maps[i].get("servicePort", 0)


def _listed(inst: Instance) -> bool:
    """Instances the task lists show: launched ones, and resident ones on their reservation."""
    if inst.inactive:
        return False
    return inst.launched or inst.reservation is not None
