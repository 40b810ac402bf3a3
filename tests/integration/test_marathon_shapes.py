"""The embedded Marathon's answers have the shapes of Marathon 1.10's RAML types.

Writing a RAML validator is out of scope: the key sets of each type are written out by hand
below from ``tests/reference/marathon/raml/v2/types/*.raml`` (file named per type).
For every JSON object the server sends we check that

* every key is declared in the RAML type (no invented fields),
* the RAML-required keys are there (plus the defaulted fields Marathon always renders),
* nothing is ``null`` (Marathon omits optional fields rather than sending null),
* timestamps look like ``2015-09-30T12:44:30.061Z``.

App definitions (the ones we send and the ones ``GET /v2/apps`` returns) also validate
against the JSON schema ``schema/AppDefinition.json`` (Draft 4).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import jsonschema
import pytest

from playground.backends import EmbeddedBackend
from tests.support.reference import MARATHON as REFERENCE_MARATHON

pytestmark = [pytest.mark.integration]

REF = REFERENCE_MARATHON
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


# ---- the RAML types, by hand ---------------------------------------------------------------
class T:
    """One RAML object type: required/optional keys, nested types, datetime keys."""

    def __init__(
        self,
        source: str,
        required: set[str],
        optional: set[str] = frozenset(),  # type: ignore[assignment]
        nested: dict[str, str] | None = None,
        datetimes: set[str] = frozenset(),  # type: ignore[assignment]
        nullable: set[str] = frozenset(),  # type: ignore[assignment]
    ) -> None:
        self.source = source
        self.required = set(required)
        self.optional = set(optional)
        self.nested = nested or {}  # key -> type name; "[]Name" for arrays
        self.datetimes = set(datetimes)
        self.nullable = set(nullable)


# app.raml: App. Only `id` is required by RAML; the others in APP_RENDERED have RAML
# defaults and Marathon always renders them in its normal form (AppConversion).
APP_OPTIONAL = {
    "acceptedResourceRoles", "args", "backoffFactor", "backoffSeconds", "cmd", "constraints",
    "container", "cpus", "dependencies", "disk", "env", "executor", "executorResources",
    "fetch", "healthChecks", "check", "instances", "labels", "maxLaunchDelaySeconds", "mem",
    "gpus", "ipAddress", "networks", "ports", "portDefinitions", "readinessChecks",
    "residency", "resourceLimits", "requirePorts", "secrets", "taskKillGracePeriodSeconds",
    "upgradeStrategy", "uris", "user", "version", "versionInfo", "killSelection",
    "unreachableStrategy", "tty", "role",
}  # fmt: skip
APP_RENDERED = {
    "id", "backoffFactor", "backoffSeconds", "constraints", "cpus", "disk", "executor",
    "instances", "labels", "maxLaunchDelaySeconds", "mem", "gpus", "networks", "requirePorts",
    "upgradeStrategy", "version", "versionInfo", "killSelection", "unreachableStrategy", "role",
}  # fmt: skip
APP_NESTED = {
    "upgradeStrategy": "UpgradeStrategy",
    "unreachableStrategy": "UnreachableStrategy",
    "versionInfo": "VersionInfo",
    "portDefinitions": "[]PortDefinition",
    "networks": "[]Network",
    "healthChecks": "[]AppHealthCheck",
    "readinessChecks": "[]ReadinessCheck",
    "fetch": "[]Artifact",
    "container": "Container",
}
# app.raml: AppInfo (App + runtime fields). "taskStats" is not in AppInfo: see
# test_task_stats_embed_uses_one_documented_name.
APP_INFO_EXTRA = {
    "tasksStaged", "tasksRunning", "tasksHealthy", "tasksUnhealthy", "deployments",
    "readinessCheckResults", "tasks", "lastTaskFailure", "tasksStats",
}  # fmt: skip

TYPES: dict[str, T] = {
    "App": T("app.raml App", APP_RENDERED, APP_OPTIONAL, APP_NESTED, {"version"}),
    "AppInfo": T(
        "app.raml AppInfo",
        APP_RENDERED,
        APP_OPTIONAL | APP_INFO_EXTRA | {"taskStats"},
        {
            **APP_NESTED,
            "deployments": "[]Identifiable",
            "tasks": "[]Task",
            "lastTaskFailure": "TaskFailure",
            "tasksStats": "TaskStatsByVersion",
            "taskStats": "TaskStatsByVersion",
            "readinessCheckResults": "[]TaskReadinessCheckResult",
        },
        {"version"},
    ),
    "UpgradeStrategy": T(
        "app.raml UpgradeStrategy", set(), {"maximumOverCapacity", "minimumHealthCapacity"}
    ),
    "UnreachableStrategy": T(
        "unreachableStrategy.raml UnreachableEnabled",
        set(),
        {"inactiveAfterSeconds", "expungeAfterSeconds"},
    ),
    "VersionInfo": T(
        "versionInfo.raml VersionInfo",
        {"lastScalingAt", "lastConfigChangeAt"},
        datetimes={"lastScalingAt", "lastConfigChangeAt"},
    ),
    "PortDefinition": T(
        "network.raml PortDefinition", set(), {"port", "labels", "name", "protocol"}
    ),
    "Network": T("network.raml Network", set(), {"name", "mode", "labels"}),
    "AppHealthCheck": T(
        "healthCheck.raml AppHealthCheck",
        set(),
        {
            "command",
            "gracePeriodSeconds",
            "ignoreHttp1xx",
            "intervalSeconds",
            "maxConsecutiveFailures",
            "path",
            "port",
            "portIndex",
            "protocol",
            "ipProtocol",
            "timeoutSeconds",
            "delaySeconds",
        },
    ),
    "ReadinessCheck": T(
        "readinessCheck.raml ReadinessCheck",
        set(),
        {
            "name",
            "protocol",
            "path",
            "portName",
            "intervalSeconds",
            "timeoutSeconds",
            "httpStatusCodesForReady",
            "preserveLastResponse",
        },
    ),
    "Artifact": T(
        "artifact.raml Artifact", {"uri"}, {"extract", "executable", "cache", "destPath"}
    ),
    "Container": T(
        "appContainer.raml Container",
        {"type"},
        {"docker", "linuxInfo", "volumes", "portMappings"},
        {"docker": "DockerContainer", "portMappings": "[]ContainerPortMapping"},
    ),
    "DockerContainer": T(
        "appContainer.raml DockerContainer",
        {"image"},
        {
            "credential",
            "pullConfig",
            "forcePullImage",
            "network",
            "parameters",
            "portMappings",
            "privileged",
        },
    ),
    "ContainerPortMapping": T(
        "appContainer.raml ContainerPortMapping",
        {"containerPort"},
        {"hostPort", "labels", "name", "protocol", "servicePort", "networkNames"},
    ),
    "Identifiable": T("stringTypes.raml Identifiable", {"id"}),
    # task.raml
    "Task": T(
        "task.raml Task",
        {"appId", "host", "id", "state", "role"},
        {
            "healthCheckResults",
            "checkResult",
            "ipAddresses",
            "ports",
            "servicePorts",
            "slaveId",
            "stagedAt",
            "startedAt",
            "version",
            "localVolumes",
            "region",
            "zone",
        },
        {"healthCheckResults": "[]Health", "ipAddresses": "[]IpAddr"},
        {"stagedAt", "startedAt", "version"},
    ),
    "IpAddr": T("task.raml IpAddr", {"ipAddress", "protocol"}),
    # Marathon's HealthWrites renders every key, null when unset: the one documented
    # exception to "no nulls" (legacy-rest-api-v1.4/AppsResource_show.md shows
    # "lastFailure": null in healthCheckResults).
    "Health": T(
        "healthCheck.raml Health",
        {"alive", "consecutiveFailures", "instanceId"},
        {"firstSuccess", "lastSuccess", "lastFailure", "lastFailureCause"},
        datetimes={"firstSuccess", "lastSuccess", "lastFailure"},
        nullable={"firstSuccess", "lastSuccess", "lastFailure", "lastFailureCause"},
    ),
    "TaskFailure": T(
        "task.raml TaskFailure",
        {"appId", "host", "message", "state", "taskId", "timestamp", "version"},
        {"slaveId"},
        datetimes={"timestamp", "version"},
    ),
    "TaskStatsByVersion": T(
        "task.raml TaskStatsByVersion",
        set(),
        {"startedAfterLastScaling", "withLatestConfig", "withOutdatedConfig", "totalSummary"},
        {
            k: "Stats"
            for k in (
                "startedAfterLastScaling",
                "withLatestConfig",
                "withOutdatedConfig",
                "totalSummary",
            )
        },
    ),
    "Stats": T("task.raml Stats", {"stats"}, nested={"stats": "TaskStats"}),
    "TaskStats": T(
        "task.raml TaskStats",
        {"counts"},
        {"lifeTime"},
        {"counts": "TaskCounts", "lifeTime": "TaskLifeTime"},
    ),
    "TaskCounts": T("task.raml TaskCounts", {"staged", "running", "healthy", "unhealthy"}),
    "TaskLifeTime": T("task.raml TaskLifeTime", {"averageSeconds", "medianSeconds"}),
    "TaskReadinessCheckResult": T(
        "readinessCheck.raml TaskReadinessCheckResult",
        {"name", "taskId", "ready"},
        {"lastResponse"},
    ),
    # deploymentEventsInfo.raml DeploymentStepInfo (what GET /v2/deployments lists)
    "DeploymentStepInfo": T(
        "deploymentEventsInfo.raml DeploymentStepInfo (+ deploymentPlan.raml DeploymentPlan)",
        {
            "id",
            "steps",
            "version",
            "affectedApps",
            "affectedPods",
            "currentActions",
            "currentStep",
            "totalSteps",
        },
        nested={"steps": "[]DeploymentStep", "currentActions": "[]DeploymentActionInfo"},
        datetimes={"version"},
    ),
    "DeploymentStep": T(
        "deploymentSteps.raml DeploymentStep", {"actions"}, nested={"actions": "[]DeploymentAction"}
    ),
    "DeploymentAction": T("deploymentAction.raml DeploymentAction", {"action"}, {"app", "pod"}),
    "DeploymentActionInfo": T(
        "deploymentEventsInfo.raml DeploymentActionInfo",
        {"action", "readinessCheckResults"},
        {"app", "pod"},
        {"readinessCheckResults": "[]TaskReadinessCheckResult"},
    ),
    "DeploymentResult": T(
        "deploymentResult.raml DeploymentResult", {"deploymentId", "version"}, datetimes={"version"}
    ),
    # queue.raml
    "Queue": T("queue.raml Queue", set(), {"queue"}, {"queue": "[]QueueApp"}),
    # `role` is required by the 1.10 RAML, but the marathon client library (0.13.0)
    # raises TypeError on it; the issue lets real clients decide, so the kit omits it.
    "QueueApp": T(
        "queue.raml QueueApp (QueueObject + app)",
        {"count", "delay", "since", "processedOffersSummary", "app"},
        {"lastUnusedOffers", "role"},
        {
            "delay": "QueueDelay",
            "processedOffersSummary": "ProcessedOffersSummary",
            "app": "App",
            "lastUnusedOffers": "[]UnusedOffer",
        },
        {"since"},
    ),
    "QueueDelay": T("queue.raml QueueDelay", {"timeLeftSeconds", "overdue"}),
    "ProcessedOffersSummary": T(
        "queue.raml ProcessedOffersSummary",
        {"processedOffersCount", "unusedOffersCount"},
        {
            "lastUnusedOfferAt",
            "lastUsedOfferAt",
            "rejectSummaryLastOffers",
            "rejectSummaryLaunchAttempt",
        },
        {
            "rejectSummaryLastOffers": "[]DeclinedOfferStep",
            "rejectSummaryLaunchAttempt": "[]DeclinedOfferStep",
        },
        {"lastUnusedOfferAt", "lastUsedOfferAt"},
    ),
    "DeclinedOfferStep": T("queue.raml DeclinedOfferStep", {"reason", "declined", "processed"}),
    "UnusedOffer": T(
        "queue.raml UnusedOffer",
        {"offer", "reason", "timestamp"},
        nested={"offer": "Offer"},
        datetimes={"timestamp"},
    ),
    "Offer": T(
        "offer.raml Offer",
        {"id", "hostname", "agentId", "resources", "attributes"},
        nested={"resources": "[]OfferResource", "attributes": "[]AgentAttribute"},
    ),
    "OfferResource": T("offer.raml OfferResource", {"name", "role"}, {"scalar", "ranges", "set"}),
    "AgentAttribute": T("offer.raml AgentAttribute", {"name"}, {"text", "scalar", "ranges", "set"}),
    # info.raml
    "MarathonInfo": T(
        "info.raml MarathonInfo",
        {
            "name",
            "version",
            "buildref",
            "elected",
            "marathon_config",
            "zookeeper_config",
            "http_config",
        },
        {"leader", "frameworkId"},
        {
            "marathon_config": "MarathonConfig",
            "zookeeper_config": "ZooKeeperConfig",
            "http_config": "HttpConfig",
        },
    ),
    "MarathonConfig": T(
        "info.raml MarathonConfig",
        {"features", "task_lost_expunge_initial_delay", "task_lost_expunge_interval"},
        {
            "access_control_allow_origin",
            "checkpoint",
            "decline_offer_duration",
            "default_network_name",
            "env_vars_prefix",
            "executor",
            "failover_timeout",
            "framework_name",
            "ha",
            "hostname",
            "launch_token",
            "launch_token_refresh_interval",
            "leader_proxy_connection_timeout_ms",
            "leader_proxy_read_timeout_ms",
            "local_port_max",
            "local_port_min",
            "master",
            "max_instances_per_offer",
            "mesos_bridge_name",
            "mesos_heartbeat_failure_threshold",
            "mesos_heartbeat_interval",
            "mesos_leader_ui_url",
            "mesos_role",
            "mesos_user",
            "min_revive_offers_interval",
            "offer_matching_timeout",
            "on_elected_prepare_timeout",
            "reconciliation_initial_delay",
            "reconciliation_interval",
            "scale_apps_initial_delay",
            "scale_apps_interval",
            "store_cache",
            "task_launch_confirm_timeout",
            "task_launch_timeout",
            "task_reservation_timeout",
            "webui_url",
        },
    ),
    "ZooKeeperConfig": T(
        "info.raml ZooKeeperConfig",
        {"zk", "zk_connection_timeout", "zk_max_versions", "zk_session_timeout", "zk_timeout"},
        {"zk_compression", "zk_compression_threshold", "zk_max_node_size"},
    ),
    "HttpConfig": T("info.raml HttpConfig", {"http_port", "https_port"}),
    "LeaderInfo": T("info.raml LeaderInfo", {"leader"}),
    # group.raml
    "GroupInfo": T(
        "group.raml GroupInfo",
        {"id"},
        {"apps", "pods", "groups", "dependencies", "version", "enforceRole"},
        {"apps": "[]AppInfo", "groups": "[]GroupInfo"},
        {"version"},
    ),
    "VersionList": T("app.raml VersionList", {"versions"}),
    "TaskList": T("task.raml TaskList", {"tasks"}, nested={"tasks": "[]Task"}),
    "TaskSingle": T("task.raml TaskSingle", {"task"}, nested={"task": "Task"}),
}


def shape_errors(value: Any, type_name: str, path: str = "$") -> list[str]:
    """Everything about ``value`` that does not match the hand-written RAML type."""
    t = TYPES[type_name]
    if type_name == "UnreachableStrategy" and value == "disabled":
        return []
    if not isinstance(value, dict):
        return [f"{path}: expected an object ({t.source}), got {value!r}"]
    errs: list[str] = []
    declared = t.required | t.optional | set(t.nested)
    for key in sorted(set(value) - declared):
        errs.append(f"{path}.{key}: not declared in {t.source}")
    for key in sorted(t.required - set(value)):
        errs.append(f"{path}.{key}: required by {t.source} but missing")
    for key, v in value.items():
        if v is None:
            if key not in t.nullable:
                errs.append(f"{path}.{key}: null (Marathon omits optional fields)")
            continue
        if key in t.datetimes and not (isinstance(v, str) and TIMESTAMP.match(v)):
            errs.append(f"{path}.{key}: {v!r} is not a Marathon timestamp")
        sub = t.nested.get(key)
        if sub is None:
            continue
        if sub.startswith("[]"):
            if not isinstance(v, list):
                errs.append(f"{path}.{key}: expected an array of {sub[2:]}, got {v!r}")
                continue
            for i, item in enumerate(v):
                errs += shape_errors(item, sub[2:], f"{path}.{key}[{i}]")
        else:
            errs += shape_errors(v, sub, f"{path}.{key}")
    return errs


def nulls(value: Any, path: str = "$") -> list[str]:
    if value is None:
        return [path]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in nulls(v, f"{path}.{k}")]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in nulls(v, f"{path}[{i}]")]
    return []


HEALTH_NULLABLE = re.compile(
    r"(^\$|\.healthCheckResults\[\d+\])\.(firstSuccess|lastSuccess|lastFailure|lastFailureCause)$"
)


def assert_shape(value: Any, type_name: str) -> None:
    """No undeclared keys, no missing required keys, no nulls anywhere, timestamps right."""
    errs = shape_errors(value, type_name)
    errs += [
        f"{p}: null (Marathon omits optional fields)"
        for p in nulls(value)
        if p not in {e.split(":")[0] for e in errs} and not HEALTH_NULLABLE.search(p)
    ]
    assert not errs, f"{type_name} ({TYPES[type_name].source}):\n  " + "\n  ".join(errs)


def assert_no_nulls(value: Any) -> None:
    found = nulls(value)
    assert not found, f"null values (Marathon omits optional fields): {found}"


# ---- AppDefinition.json ------------------------------------------------------------------------
SCHEMA = json.loads((REF / "schema/AppDefinition.json").read_text())
APP_VALIDATOR = jsonschema.Draft4Validator(SCHEMA)
# AppInfo's runtime fields are not part of an app definition; `role` was added to the
# App type in 1.9 (app.raml `role?`), after AppDefinition.json was frozen (1.7).
NOT_IN_SCHEMA = APP_INFO_EXTRA | {"taskStats", "role"}


def schema_errors(app: dict[str, Any]) -> list[str]:
    definition = {k: v for k, v in app.items() if k not in NOT_IN_SCHEMA}
    return [
        f"{'/'.join(map(str, e.absolute_path)) or '/'}: {e.message}"
        for e in APP_VALIDATOR.iter_errors(definition)
    ]


# ---- the apps the tests send ---------------------------------------------------------------------
SLEEP_APP: dict[str, Any] = {
    "id": "/shapes/sleep",
    "cmd": "sleep 1000",
    "cpus": 0.1,
    "mem": 32,
    "instances": 2,
    "labels": {"team": "shapes"},
    "constraints": [["hostname", "UNIQUE"]],
    "env": {"MODE": "test"},
    "upgradeStrategy": {"minimumHealthCapacity": 0.5, "maximumOverCapacity": 0.5},
}
HTTP_APP: dict[str, Any] = {
    "id": "/shapes/web",
    "cmd": "python3 -m http.server $PORT0 --bind $HOST",
    "cpus": 0.1,
    "mem": 32,
    "instances": 1,
    "portDefinitions": [{"port": 0, "name": "http", "protocol": "tcp"}],
    "healthChecks": [
        {
            "protocol": "HTTP",
            "path": "/",
            "portIndex": 0,
            "intervalSeconds": 1,
            "gracePeriodSeconds": 30,
        }
    ],
    "readinessChecks": [
        {
            "name": "ready",
            "protocol": "HTTP",
            "path": "/",
            "portName": "http",
            "intervalSeconds": 2,
            "timeoutSeconds": 1,
        }
    ],
}
STUCK_APP: dict[str, Any] = {
    "id": "/shapes/stuck",
    "cmd": "sleep 1000",
    "cpus": 0.1,
    "mem": 32,
    "instances": 1,
    "constraints": [["hostname", "LIKE", "no-such-host"]],
}
GROUP: dict[str, Any] = {
    "id": "/shapes-group",
    "apps": [{"id": "a", "cmd": "sleep 1000", "cpus": 0.1, "mem": 32, "instances": 1}],
    "groups": [
        {
            "id": "/shapes-group/sub",
            "apps": [{"id": "b", "cmd": "sleep 1000", "cpus": 0.1, "mem": 32, "instances": 0}],
        }
    ],
}
FAIL_APP: dict[str, Any] = {
    "id": "/shapes/fail",
    "cmd": "exit 3",
    "cpus": 0.1,
    "mem": 32,
    "instances": 1,
    "backoffSeconds": 1,
}
REQUEST_APPS = [SLEEP_APP, HTTP_APP, STUCK_APP, FAIL_APP]
NEVER_DONE = ("/shapes/stuck", "/shapes/fail")


def wait_for(fn: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


class Env:
    def __init__(self, url: str) -> None:
        self.url = url
        self.http = httpx.Client(base_url=url, timeout=10)
        self.results: list[tuple[str, dict[str, Any]]] = []  # deployment results seen
        self.stuck_deployments: list[Any] = []
        self.stuck_queue: dict[str, Any] = {}

    def get(self, path: str, **params: Any) -> Any:
        r = self.http.get(path, params=params)
        assert r.status_code == 200, (path, r.status_code, r.text)
        return r.json()

    def idle(self) -> bool:
        return [
            d for d in self.get("/v2/deployments") if not set(NEVER_DONE) & set(d["affectedApps"])
        ] == []


@pytest.fixture(scope="module")
def env(cluster: EmbeddedBackend) -> Iterator[Env]:
    e = Env(cluster.endpoints()["marathon"])
    for app in (SLEEP_APP, HTTP_APP):
        r = e.http.post("/v2/apps", json=app)
        assert r.status_code == 201, r.text
    wait_for(e.idle, "the apps to deploy")
    wait_for(
        lambda: e.get("/v2/apps/shapes/web")["app"]["tasksHealthy"] == 1, "the web app healthy"
    )
    r = e.http.put("/v2/apps/shapes/sleep", json={"cmd": "sleep 1001"})
    e.results.append(("PUT /v2/apps/{id}", r.json()))
    wait_for(e.idle, "the update")
    r = e.http.post("/v2/groups", json=GROUP)
    assert r.status_code == 201, r.text
    e.results.append(("POST /v2/groups", r.json()))
    wait_for(e.idle, "the group")
    # kill a task so that lastTaskFailure exists
    task = e.get("/v2/apps/shapes/sleep/tasks")["tasks"][0]
    r = e.http.delete(f"/v2/apps/shapes/sleep/tasks/{task['id']}")
    assert r.status_code == 200, r.text
    wait_for(
        lambda: (
            len(
                [
                    t
                    for t in e.get("/v2/apps/shapes/sleep/tasks")["tasks"]
                    if t["state"] == "TASK_RUNNING"
                ]
            )
            == 2
            and task["id"] not in [t["id"] for t in e.get("/v2/apps/shapes/sleep/tasks")["tasks"]]
        ),
        "the killed task to be replaced",
    )
    # a deployment that cannot finish: it stays listed and its app stays queued
    r = e.http.post("/v2/apps", json=STUCK_APP)
    assert r.status_code == 201, r.text
    e.stuck_deployments = wait_for(
        lambda: [d for d in e.get("/v2/deployments") if "/shapes/stuck" in d["affectedApps"]],
        "the stuck deployment",
    )
    e.stuck_queue = wait_for(
        lambda: (
            e.http.get("/v2/queue", params={"embed": "lastUnusedOffers"}).json()["queue"]
            and e.http.get("/v2/queue", params={"embed": "lastUnusedOffers"}).json()
        ),
        "the queue",
    )
    # an app whose task fails: lastTaskFailure
    r = e.http.post("/v2/apps", json=FAIL_APP)
    assert r.status_code == 201, r.text
    wait_for(lambda: "lastTaskFailure" in e.get("/v2/apps/shapes/fail")["app"], "a task failure")
    yield e
    e.http.close()


# ---- apps ----------------------------------------------------------------------------------------
ALL_EMBEDS = [
    "apps.tasks",
    "apps.counts",
    "apps.deployments",
    "apps.readiness",
    "apps.lastTaskFailure",
    "apps.failures",
    "apps.taskStats",
]


def test_apps_list_is_app_info(env: Env) -> None:
    """GET /v2/apps with and without every embed: AppInfo objects without nulls."""
    for params in ({}, {"embed": ALL_EMBEDS}):
        apps = env.get("/v2/apps", **params)["apps"]
        assert {"/shapes/sleep", "/shapes/web"} <= {a["id"] for a in apps}
        for app in apps:
            assert_shape(app, "AppInfo")
    by_id = {a["id"]: a for a in apps}
    failure = by_id["/shapes/fail"]["lastTaskFailure"]
    assert failure["appId"] == "/shapes/fail"
    assert failure["state"] == "TASK_FAILED"
    assert failure["version"] == by_id["/shapes/fail"]["version"]
    assert len(by_id["/shapes/sleep"]["tasks"]) == 2
    assert by_id["/shapes/sleep"]["tasksRunning"] == 2
    assert by_id["/shapes/stuck"]["deployments"] != []


def test_app_single_and_version_shapes(env: Env) -> None:
    """GET /v2/apps/{id} (AppInfo), /versions (VersionList), /versions/{v} (App)."""
    body = env.get("/v2/apps/shapes/web", embed=["app.taskStats", "app.readiness"])
    assert set(body) == {"app"}
    assert_shape(body["app"], "AppInfo")
    versions = env.get("/v2/apps/shapes/sleep/versions")
    assert_shape(versions, "VersionList")
    assert all(TIMESTAMP.match(v) for v in versions["versions"])
    assert len(versions["versions"]) == 2
    for v in versions["versions"]:
        old = env.get(f"/v2/apps/shapes/sleep/versions/{v}")
        assert_shape(old, "App")
        assert old["version"] == v


def test_task_stats_embed_uses_one_documented_name(env: Env) -> None:
    """``embed=apps.taskStats`` adds exactly one statistics object.

    AppInfo (app.raml) names it ``tasksStats`` - what Marathon 1.9+ really sends (MARATHON-8761)
    - while apps.raml's embed docs, the 1.4 API docs and marathon-python 0.13 use
    ``taskStats``. Either name is accepted; the content must be a TaskStatsByVersion.
    """
    app = env.get("/v2/apps/shapes/sleep", embed="app.taskStats")["app"]
    names = {"taskStats", "tasksStats"} & set(app)
    assert len(names) == 1, f"expected exactly one of taskStats/tasksStats, got {sorted(app)}"
    stats = app[names.pop()]
    assert_shape(stats, "TaskStatsByVersion")
    assert stats["totalSummary"]["stats"]["counts"]["running"] == 2
    assert "taskStats" not in env.get("/v2/apps/shapes/sleep")["app"]


def test_health_check_results_are_health(env: Env) -> None:
    """healthCheckResults are healthCheck.raml Health entries of the task's instance."""
    tasks = env.get("/v2/apps/shapes/web/tasks")["tasks"]
    results = [h for t in tasks for h in t.get("healthCheckResults", [])]
    assert results and all(h["alive"] is True for h in results)
    for t in tasks:
        for h in t["healthCheckResults"]:
            assert_shape(h, "Health")
            assert t["id"].startswith(h["instanceId"] + ".")
            assert h["consecutiveFailures"] == 0
            assert TIMESTAMP.match(h["lastSuccess"]) and TIMESTAMP.match(h["firstSuccess"])


def test_requests_and_listed_apps_match_app_definition_schema(env: Env) -> None:
    """What we POST and what GET /v2/apps returns both validate against AppDefinition.json."""
    for app in REQUEST_APPS:
        assert schema_errors(app) == [], app["id"]
    for group_app in GROUP["apps"] + GROUP["groups"][0]["apps"]:
        assert schema_errors(group_app) == []
    apps = env.get("/v2/apps", embed=ALL_EMBEDS)["apps"]
    assert len(apps) >= 5
    for app in apps:
        assert schema_errors(app) == [], app["id"]
        # and it round-trips: the listed definition is accepted as a new app
    listed = next(a for a in apps if a["id"] == "/shapes/sleep")
    clone = {k: v for k, v in listed.items() if k not in NOT_IN_SCHEMA - {"role"}}
    clone["id"] = "/shapes/clone"
    clone["instances"] = 0
    clone.pop("version", None)
    clone.pop("versionInfo", None)
    r = env.http.post("/v2/apps", json=clone)
    assert r.status_code == 201, r.text
    got = r.json()
    for key in ("cmd", "constraints", "labels", "env", "upgradeStrategy", "cpus", "mem"):
        assert got[key] == listed[key], key
    wait_for(env.idle, "the clone")
    env.http.delete("/v2/apps/shapes/clone")
    wait_for(env.idle, "the clone removal")


# ---- tasks ---------------------------------------------------------------------------------------
def test_tasks_are_task(env: Env) -> None:
    """/v2/tasks and /v2/apps/{id}/tasks: TaskList of Task; /v2/apps/{id}/tasks/{taskId}: TaskSingle."""
    all_tasks = env.get("/v2/tasks")
    assert_shape(all_tasks, "TaskList")
    assert len(all_tasks["tasks"]) >= 3
    for app_id in ("shapes/sleep", "shapes/web"):
        tasks = env.get(f"/v2/apps/{app_id}/tasks")
        assert_shape(tasks, "TaskList")
        for t in tasks["tasks"]:
            assert t["appId"] == "/" + app_id
            assert t["state"] == "TASK_RUNNING"
            assert TIMESTAMP.match(t["startedAt"])
    tid = env.get("/v2/apps/shapes/sleep/tasks")["tasks"][0]["id"]
    single = env.get(f"/v2/apps/shapes/sleep/tasks/{tid}")
    assert_shape(single, "TaskSingle")


# ---- deployments -----------------------------------------------------------------------------
def test_deployments_are_deployment_step_info(env: Env) -> None:
    (dep,) = env.stuck_deployments
    assert_shape(dep, "DeploymentStepInfo")
    assert dep["affectedApps"] == ["/shapes/stuck"]
    live = env.get("/v2/deployments")
    for d in live:
        assert_shape(d, "DeploymentStepInfo")


def test_deployment_results(env: Env) -> None:
    """Every write answers a deploymentResult.raml DeploymentResult (deploymentId a string)."""
    for _what, result in env.results:
        assert_shape(result, "DeploymentResult")
    r = env.http.put("/v2/apps/shapes/sleep", json={"instances": 2})  # no change at all
    assert r.status_code == 200, r.text
    wait_for(env.idle, "the no-op update")
    result = r.json()
    assert isinstance(result.get("deploymentId"), str), f"no-op PUT answered {result!r}"
    assert_shape(result, "DeploymentResult")


# ---- queue, info, leader, groups -----------------------------------------------------------------
def test_queue_is_queue(env: Env) -> None:
    queue = env.stuck_queue
    assert_no_nulls(queue)
    (item,) = [q for q in queue["queue"] if q["app"]["id"] == "/shapes/stuck"]
    assert item["count"] == 1
    assert TIMESTAMP.match(item["since"])
    assert_shape(queue, "Queue")


def test_info_and_leader(env: Env) -> None:
    info = env.get("/v2/info")
    assert_shape(info, "MarathonInfo")
    leader = env.get("/v2/leader")
    assert_shape(leader, "LeaderInfo")
    assert leader["leader"] == info["leader"]


def test_groups_are_group_info(env: Env) -> None:
    root = env.get("/v2/groups")
    assert_shape(root, "GroupInfo")
    assert root["id"] == "/"
    group = env.get("/v2/groups/shapes-group")
    assert_shape(group, "GroupInfo")
    assert [a["id"] for a in group["apps"]] == ["/shapes-group/a"]
    assert [g["id"] for g in group["groups"]] == ["/shapes-group/sub"]
    assert [a["id"] for a in group["groups"][0]["apps"]] == ["/shapes-group/sub/b"]


# ---- the event stream ----------------------------------------------------------------------------
def _doc_event_keys() -> dict[str, set[str]]:
    """The key sets of the JSON examples in docs/event-bus.md, by eventType."""
    text = (REF / "docs/event-bus.md").read_text()
    out: dict[str, set[str]] = {}
    for block in re.findall(r"```json\n(.*?)```", text, re.S):
        try:
            data = json.loads(block)
        except ValueError:
            continue
        if isinstance(data, dict) and "eventType" in data:
            out[data["eventType"]] = set(data)
    # event-bus.md shows callbackUrl/clientIp for the stream events; the RAML example
    # (raml/v2/examples/events.txt) shows what /v2/events really sends
    out["event_stream_attached"] = {"remoteAddress", "eventType", "timestamp"}
    out["event_stream_detached"] = {"remoteAddress", "eventType", "timestamp"}
    return out


def _read_sse(url: str, params: Any, stop: threading.Event, sink: list[tuple[str, str]],
              meta: dict[str, Any]) -> None:  # fmt: skip
    with httpx.stream(
        "GET", url + "/v2/events", params=params, headers={"Accept": "text/event-stream"},
        timeout=httpx.Timeout(5, read=30),
    ) as r:  # fmt: skip
        meta["status"] = r.status_code
        meta["content_type"] = r.headers.get("content-type", "")
        lines: list[str] = []
        for line in r.iter_lines():
            if line == "":
                if lines:
                    sink.append(("\n".join(lines), ""))
                    lines = []
                if stop.is_set():
                    return
                continue
            lines.append(line)
            if stop.is_set() and not lines:
                return


def test_event_stream_format_and_filter(env: Env) -> None:
    """/v2/events is text/event-stream with `event:` + `data:` lines; event_type filters."""
    all_events: list[tuple[str, str]] = []
    filtered: list[tuple[str, str]] = []
    stop = threading.Event()
    meta_all: dict[str, Any] = {}
    meta_f: dict[str, Any] = {}
    wanted = ["deployment_success", "status_update_event"]
    threads = [
        threading.Thread(
            target=_read_sse, args=(env.url, {}, stop, all_events, meta_all), daemon=True
        ),
        threading.Thread(
            target=_read_sse,
            args=(env.url, {"event_type": wanted}, stop, filtered, meta_f),
            daemon=True,
        ),
    ]
    for t in threads:
        t.start()
    wait_for(lambda: meta_all and meta_f and all_events, "the streams to attach", 10)
    time.sleep(0.3)
    r = env.http.post(
        "/v2/apps", json={"id": "/shapes/events", "cmd": "sleep 1000", "cpus": 0.1, "mem": 32}
    )
    assert r.status_code == 201, r.text
    dep_id = r.headers["Marathon-Deployment-Id"]

    def seen(events: list[tuple[str, str]]) -> bool:
        return any(dep_id in block and "deployment_success" in block for block, _ in events)

    wait_for(lambda: seen(all_events) and seen(filtered), "deployment_success on both streams")
    stop.set()
    env.http.delete("/v2/apps/shapes/events")
    wait_for(env.idle, "the removal")

    for meta in (meta_all, meta_f):
        assert meta["status"] == 200
        assert meta["content_type"].startswith("text/event-stream")

    doc = _doc_event_keys()

    def parse(blocks: list[tuple[str, str]]) -> list[dict[str, Any]]:
        out = []
        for block, _ in blocks:
            lines = block.split("\n")
            assert len(lines) == 2, block
            assert lines[0].startswith("event: ") and lines[1].startswith("data: "), block
            event_type = lines[0][len("event: ") :]
            data = json.loads(lines[1][len("data: ") :])
            assert data["eventType"] == event_type
            assert TIMESTAMP.match(data["timestamp"]), data
            out.append(data)
        return out

    events = parse(all_events)
    types = [e["eventType"] for e in events]
    assert types[0] == "event_stream_attached"
    for needed in (
        "status_update_event",
        "deployment_info",
        "deployment_success",
        "api_post_event",
    ):
        assert needed in types, types
    problems = []
    for e in events:
        want = doc.get(e["eventType"])
        if want is None:
            problems.append(f"{e['eventType']}: not a documented event type")
            continue
        missing = want - set(e)
        if missing:
            problems.append(f"{e['eventType']}: missing {sorted(missing)} (docs/event-bus.md)")
        if e["eventType"] != "api_post_event" and nulls(e):
            problems.append(f"{e['eventType']}: nulls at {nulls(e)}")
    assert not problems, "\n".join(problems)
    running = [
        e for e in events
        if e["eventType"] == "status_update_event" and e["appId"] == "/shapes/events"
        and e["taskStatus"] == "TASK_RUNNING"
    ]  # fmt: skip
    assert running and running[0]["ports"] and TIMESTAMP.match(running[0]["version"])

    only = {e["eventType"] for e in parse(filtered)}
    assert only <= set(wanted), f"event_type filter let through {sorted(only - set(wanted))}"
    assert only == set(wanted)
