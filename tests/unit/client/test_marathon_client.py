"""MarathonClient against a real HTTP server on loopback serving canned Marathon answers.

The answers are copied from Marathon's RAML examples (raml/v2/examples/*.json); these tests
check the client's request building (methods, paths, query, bodies, headers) and its parsing
(results, errors, server-sent events), not Marathon. The last tests render the CLI's tables
from the same canned answers.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from click.testing import CliRunner

from playground.client import (
    AppLocked,
    ClientError,
    Conflict,
    DeploymentTimeout,
    InvalidDefinition,
    MarathonClient,
    MarathonError,
    MarathonNotFound,
    MarathonUnavailable,
    NotFound,
)
from playground.client.marathon import describe_actions, format_details, normalize_id, parse_sse

# ---- canned answers (from raml/v2/examples) -------------------------------------------------
APP_LIST = {
    "apps": [
        {
            "id": "/myapp",
            "cmd": "env && sleep 60",
            "instances": 3,
            "cpus": 0.1,
            "mem": 5,
            "disk": 0,
            "constraints": [["hostname", "UNIQUE", ""]],
            "ports": [10013, 10015],
            "version": "2015-09-25T15:13:48.343Z",
            "tasksStaged": 0,
            "tasksRunning": 0,
            "tasksHealthy": 0,
            "tasksUnhealthy": 0,
            "deployments": [{"id": "9538079c-3898-4e32-aa31-799bf9097f74"}],
        }
    ]
}
APP = {
    "id": "/foo",
    "instances": 2,
    "cmd": "sleep 1000",
    "cpus": 0.1,
    "disk": 0,
    "mem": 16,
    "constraints": [["hostname", "LIKE", "srv2.*"]],
    "labels": {"owner": "zeus", "note": "Away from olympus"},
    "portDefinitions": [{"port": 0, "protocol": "tcp", "name": "http"}],
    "version": "2015-09-25T15:13:48.343Z",
    "deployments": [{"id": "5ed4c0c5-9ff8-4a6f-a0cd-f57f59a34b43"}],
}
APP_TASKS = {
    "tasks": [
        {
            "appId": "/minecraft/survival-world",
            "host": "srv7.hw.ca1.mesosphere.com",
            "id": "minecraft_survival-world.instance-564bd685-4c30-11e5-98c1-be5b2935a987",
            "ports": [31756],
            "slaveId": "agent0",
            "stagedAt": "2015-08-26T20:23:39.463Z",
            "startedAt": "2015-08-26T20:23:44.678Z",
            "version": "2015-04-17T04:00:14.171Z",
            "state": "TASK_STAGING",
        }
    ]
}
APP_TASK: dict[str, Any] = {"task": APP_TASKS["tasks"][0]}
TASKS = {
    "tasks": [
        {
            "id": "frontend-foosball.083be411-5d1f-11e5-88f7-56b91e7a505b",
            "host": "srv4.example.com",
            "ports": [31292],
            "appId": "/frontend-foosball",
            "state": "TASK_RUNNING",
        },
        {
            "id": "tools_docker_registry.002b4d28-46b9-11e5-b731-525400cce7ed",
            "host": "srv2.example.com",
            "ports": [31721],
            "state": "TASK_RUNNING",
            "appId": "/tools/docker/registry",
        },
    ]
}
DEPLOYMENT_RESULT = {
    "deploymentId": "5ed4c0c5-9ff8-4a6f-a0cd-f57f59a34b43",
    "version": "2015-09-29T15:59:51.164Z",
}
DEPLOYMENTS = [
    {
        "id": "97c136bf-5a28-4821-9d94-480d9fbb01c8",
        "version": "2015-09-30T09:09:17.614Z",
        "affectedApps": ["/foo"],
        "affectedPods": ["/bla"],
        "steps": [
            {"actions": [{"action": "ScaleApplication", "app": "/foo"}]},
            {"actions": [{"action": "ScalePod", "pod": "/bla"}]},
        ],
        "currentActions": [{"action": "ScaleApplication", "app": "/foo"}],
        "currentStep": 1,
        "totalSteps": 1,
    }
]
QUEUE = {
    "queue": [
        {
            "app": {
                "id": "/foo",
                "instances": 1,
                "cpus": 0.5,
                "mem": 128.0,
                "disk": 0.0,
                "constraints": [["hostname", "UNIQUE"]],
                "version": "2015-09-30T09:09:17.614Z",
            },
            "count": 2,
            "role": "*",
            "delay": {"timeLeftSeconds": 0, "overdue": True},
            "since": "2016-02-28T16:41:41.090Z",
            "processedOffersSummary": {
                "processedOffersCount": 123,
                "unusedOffersCount": 123,
                "lastUnusedOfferAt": "2016-02-28T16:41:41.090Z",
                "rejectSummaryLastOffers": [
                    {"reason": "UnfulfilledRole", "declined": 0, "processed": 123},
                    {"reason": "UnfulfilledConstraint", "declined": 0, "processed": 123},
                    {"reason": "InsufficientCpus", "declined": 75, "processed": 123},
                    {"reason": "InsufficientMemory", "declined": 15, "processed": 48},
                    {"reason": "InsufficientDisk", "declined": 10, "processed": 33},
                ],
            },
            "lastUnusedOffers": [
                {
                    "offer": {"id": "offer_123", "agentId": "slave_123", "hostname": "1.2.3.4"},
                    "timestamp": "2016-02-28T16:41:41.090Z",
                    "reason": ["InsufficientMemory"],
                }
            ],
        }
    ]
}
GROUP = {"id": "/product", "apps": [], "groups": [{"id": "/product/database", "apps": []}]}
INFO = {
    "name": "marathon",
    "version": "1.5.0-SNAPSHOT",
    "elected": True,
    "leader": "localhost:8080",
    "frameworkId": "96d7da70-b731-4cfb-96a7-0ee877af615d-0000",
    "http_config": {"http_port": 8080, "https_port": 8443},
}
EVENTS = (
    "event: event_stream_attached\n"
    'data: {"remoteAddress":"0:0:0:0:0:0:0:1","eventType":"event_stream_attached",'
    '"timestamp":"2015-09-30T12:44:30.061Z"}\n'
    "\n"
    "event: status_update_event\n"
    'data: {"slaveId":"20150707-153709-218108076-5050-25588-S6","taskId":"foo.0664256e",'
    '"taskStatus":"TASK_FAILED","appId":"/foo","host":"srv5.hw.ca1.mesosphere.com",'
    '"ports":[31776],"eventType":"status_update_event","timestamp":"2015-09-30T12:44:45.681Z"}\n'
    "\n"
    "event: status_update_event\n"
    'data: {"taskId":"test-app.5dd78972","taskStatus":"TASK_RUNNING","appId":"/test-app",'
    '"eventType":"status_update_event","timestamp":"2015-09-30T12:47:11.286Z"}\n'
    "\n"
)
INVALID = {
    "message": "Object is not valid",
    "details": [
        {"path": "/upgradeStrategy/minimumHealthCapacity", "errors": ["is greater than 1"]},
        {"path": "/cpus", "errors": ["got -1.0, expected 0.0 or more", "error.min"]},
    ],
}
LOCKED = {
    "deployments": [{"id": "5cd987cd-85ae-4e70-8df7-f1438367d9cb"}],
    "message": "App is locked by one or more deployments. Override with the option "
    "'?force=true'. View details at '/v2/deployments/<DEPLOYMENT_ID>'.",
}


# ---- the canned server -------------------------------------------------------------------
@dataclass
class Reply:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None
    content_type: str = "application/json"


@dataclass
class Seen:
    method: str
    path: str
    query: list[tuple[str, str]]
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


class FakeMarathon:
    """Canned replies by (method, path); a list of replies is served in turn (the last repeats)."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], list[Reply]] = {}
        self.seen: list[Seen] = []
        self.url = ""

    def on(self, method: str, path: str, *replies: Reply | Any, status: int = 200) -> None:
        self.routes[(method, path)] = [
            r if isinstance(r, Reply) else Reply(status, r) for r in replies
        ] or [Reply(status)]

    def reply_for(self, method: str, path: str) -> Reply:
        queue = self.routes.get((method, path))
        if not queue:
            return Reply(404, {"message": f"no canned reply for {method} {path}"})
        return queue.pop(0) if len(queue) > 1 else queue[0]

    @property
    def last(self) -> Seen:
        return self.seen[-1]


def _handler(fake: FakeMarathon) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _any(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            fake.seen.append(
                Seen(
                    self.command,
                    parts.path,
                    parse_qsl(parts.query, keep_blank_values=True),
                    {k.lower(): v for k, v in self.headers.items()},
                    body,
                )
            )
            reply = fake.reply_for(self.command, parts.path)
            if reply.raw is not None:
                payload = reply.raw
            elif reply.body is None:
                payload = b""
            else:
                payload = json.dumps(reply.body).encode()
            self.send_response(reply.status)
            if payload:
                self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(payload)))
            for k, v in reply.headers.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _any

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def fake() -> Iterator[FakeMarathon]:
    fm = FakeMarathon()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fm))
    fm.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield fm
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def client(fake: FakeMarathon) -> Iterator[MarathonClient]:
    with MarathonClient(fake.url, timeout=5.0) as c:
        yield c


# ---- ids and small parsers ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("given", "path"),
    [
        ("web", "/web"),
        ("/web", "/web"),
        ("prod/web/", "/prod/web"),
        (" /a//b ", "/a/b"),
        ("/", "/"),
    ],
)
def test_normalize_id(given: str, path: str) -> None:
    """App ids are absolute Marathon paths: a relative id starts at the root."""
    assert normalize_id(given) == path


def test_format_details_gives_path_message_lines() -> None:
    """Validation details become one ``path: message`` line per error."""
    assert format_details(INVALID["details"]) == [
        "/upgradeStrategy/minimumHealthCapacity: is greater than 1",
        "/cpus: got -1.0, expected 0.0 or more",
        "/cpus: error.min",
    ]


def test_parse_sse_handles_comments_multiline_data_and_missing_event_type() -> None:
    """SSE: comments skipped, data lines joined, eventType taken from the event: line."""
    lines = [": keep-alive", "event: deployment_success", 'data: {"id":', 'data: "d1"}', "", ""]
    assert list(parse_sse(lines)) == [{"id": "d1", "eventType": "deployment_success"}]
    assert list(parse_sse(["data: not json"])) == [{"data": "not json"}]


# ---- apps ------------------------------------------------------------------------------
def test_list_apps_sends_filters_and_repeated_embeds(
    fake: FakeMarathon, client: MarathonClient
) -> None:
    """GET /v2/apps with id, cmd, label and one embed parameter per embed; returns the apps."""
    fake.on("GET", "/v2/apps", APP_LIST)
    apps = client.list_apps(
        embed=("apps.tasks", "apps.counts"), app_id="/my", cmd="sleep", label="env==prod"
    )
    assert [a["id"] for a in apps] == ["/myapp"]
    assert apps[0]["deployments"] == [{"id": "9538079c-3898-4e32-aa31-799bf9097f74"}]
    assert sorted(fake.last.query) == [
        ("cmd", "sleep"),
        ("embed", "apps.counts"),
        ("embed", "apps.tasks"),
        ("id", "/my"),
        ("label", "env==prod"),
    ]


def test_get_app_normalises_the_id(fake: FakeMarathon, client: MarathonClient) -> None:
    """`prod/web` is fetched at /v2/apps/prod/web with the embeds asked for."""
    fake.on("GET", "/v2/apps/prod/web", {"app": {**APP, "id": "/prod/web"}})
    app = client.get_app("prod/web", embed="app.tasks")
    assert app["id"] == "/prod/web"
    assert fake.last.query == [("embed", "app.tasks")]


def test_create_app_posts_the_definition_and_returns_the_deployment(
    fake: FakeMarathon, client: MarathonClient
) -> None:
    """POST /v2/apps: the id is made absolute; the deployment id comes from the header."""
    fake.on("POST", "/v2/apps", Reply(201, APP, {"Marathon-Deployment-Id": "dep-from-header"}))
    defn = {"id": "foo", "cmd": "sleep 1000", "instances": 2}
    app, dep = client.create_app(defn)
    assert app["id"] == "/foo" and dep == "dep-from-header"
    assert fake.last.json == {"id": "/foo", "cmd": "sleep 1000", "instances": 2}
    assert fake.last.headers["content-type"] == "application/json"
    assert defn["id"] == "foo", "the caller's definition is not changed"


def test_create_app_falls_back_to_the_embedded_deployment(
    fake: FakeMarathon, client: MarathonClient
) -> None:
    """Without the Marathon-Deployment-Id header the app's deployments name it."""
    fake.on("POST", "/v2/apps", Reply(201, APP))
    assert client.create_app({"id": "/foo"})[1] == "5ed4c0c5-9ff8-4a6f-a0cd-f57f59a34b43"


def test_update_app_with_force_and_full_replace(fake: FakeMarathon, client: MarathonClient) -> None:
    """PUT /v2/apps/{id}?force=true&partialUpdate=false returns {deploymentId, version}."""
    fake.on("PUT", "/v2/apps/foo", DEPLOYMENT_RESULT)
    result = client.update_app("foo", {"cmd": "sleep 5"}, force=True, partial=False)
    assert result == DEPLOYMENT_RESULT
    assert dict(fake.last.query) == {"force": "true", "partialUpdate": "false"}
    assert fake.last.json == {"cmd": "sleep 5"}


def test_update_app_defaults_send_no_flags(fake: FakeMarathon, client: MarathonClient) -> None:
    """A plain update is Marathon's default partial update, without query parameters."""
    fake.on("PUT", "/v2/apps/foo", DEPLOYMENT_RESULT)
    client.update_app("/foo", {"mem": 64})
    assert fake.last.query == []


def test_patch_scale_restart_delete(fake: FakeMarathon, client: MarathonClient) -> None:
    """PATCH, scale (PUT instances), POST restart and DELETE each return the deployment."""
    fake.on("PATCH", "/v2/apps/foo", DEPLOYMENT_RESULT)
    fake.on("PUT", "/v2/apps/foo", DEPLOYMENT_RESULT)
    fake.on("POST", "/v2/apps/foo/restart", DEPLOYMENT_RESULT)
    fake.on("DELETE", "/v2/apps/foo", DEPLOYMENT_RESULT)
    assert client.patch_app("foo", {"env": {"A": "1"}}) == DEPLOYMENT_RESULT
    assert fake.last.method == "PATCH" and fake.last.json == {"env": {"A": "1"}}
    assert client.scale_app("foo", 3) == DEPLOYMENT_RESULT
    assert fake.last.json == {"instances": 3} and fake.last.query == []
    assert client.restart_app("foo", force=True) == DEPLOYMENT_RESULT
    assert fake.last.query == [("force", "true")]
    assert client.delete_app("/foo") == DEPLOYMENT_RESULT
    assert fake.last.method == "DELETE" and fake.last.query == []
    with pytest.raises(ValueError):
        client.scale_app("foo", -1)


def test_versions(fake: FakeMarathon, client: MarathonClient) -> None:
    """GET /v2/apps/{id}/versions and one version's definition."""
    fake.on("GET", "/v2/apps/foo/versions", {"versions": ["2014-03-01T23:42:20.938Z"]})
    fake.on("GET", "/v2/apps/foo/versions/2014-03-01T23:42:20.938Z", APP)
    assert client.app_versions("foo") == ["2014-03-01T23:42:20.938Z"]
    assert client.get_app_version("foo", "2014-03-01T23:42:20.938Z")["cmd"] == "sleep 1000"


# ---- tasks ------------------------------------------------------------------------------
def test_list_tasks_all_and_of_one_app(fake: FakeMarathon, client: MarathonClient) -> None:
    """/v2/tasks takes status; an app's tasks are filtered by state here; JSON is asked for."""
    fake.on("GET", "/v2/tasks", TASKS)
    fake.on("GET", "/v2/apps/minecraft/survival-world/tasks", APP_TASKS)
    assert len(client.list_tasks(status="running")) == 2
    assert fake.last.query == [("status", "running")]
    assert fake.last.headers["accept"] == "application/json"
    assert len(client.list_tasks("minecraft/survival-world")) == 1
    assert client.list_tasks("minecraft/survival-world", status="running") == []
    assert len(client.list_tasks("minecraft/survival-world", status="staging")) == 1


def test_kill_tasks_returns_tasks_or_the_deployment(
    fake: FakeMarathon, client: MarathonClient
) -> None:
    """DELETE /v2/apps/{id}/tasks: killed tasks, or with scale=true a deployment."""
    fake.on("DELETE", "/v2/apps/foo/tasks", APP_TASKS, DEPLOYMENT_RESULT)
    killed = client.kill_tasks("foo", host="srv7.hw.ca1.mesosphere.com")
    assert isinstance(killed, list) and killed[0]["state"] == "TASK_STAGING"
    assert fake.last.query == [("host", "srv7.hw.ca1.mesosphere.com")]
    assert client.kill_tasks("foo", scale=True) == DEPLOYMENT_RESULT
    assert fake.last.query == [("scale", "true")]


def test_kill_one_task_and_given_tasks(fake: FakeMarathon, client: MarathonClient) -> None:
    """DELETE one task by id; POST /v2/tasks/delete with the ids in the body."""
    tid = str(APP_TASK["task"]["id"])
    fake.on("DELETE", f"/v2/apps/foo/tasks/{tid}", APP_TASK, DEPLOYMENT_RESULT)
    fake.on("POST", "/v2/tasks/delete", TASKS)
    killed = client.kill_task("foo", tid)
    assert isinstance(killed, dict) and dict(killed).get("id") == tid
    assert client.kill_task("foo", tid, scale=True) == DEPLOYMENT_RESULT
    got = client.kill_given_tasks(["task1", "task2"], force=True)
    assert isinstance(got, list) and len(got) == 2
    assert fake.last.json == {"ids": ["task1", "task2"]}
    assert fake.last.query == [("force", "true")]


# ---- deployments, queue, groups, instance -----------------------------------------------------
def test_deployments(fake: FakeMarathon, client: MarathonClient) -> None:
    """List; rollback returns the new deployment; force (202, no body) returns None."""
    fake.on("GET", "/v2/deployments", DEPLOYMENTS)
    fake.on("DELETE", "/v2/deployments/97c1", DEPLOYMENT_RESULT, Reply(202))
    deps = client.list_deployments()
    assert deps[0]["currentActions"][0]["action"] == "ScaleApplication"
    assert describe_actions(deps[0]["steps"][1]["actions"]) == "ScalePod /bla"
    assert client.delete_deployment("97c1") == DEPLOYMENT_RESULT
    assert client.delete_deployment("97c1", force=True) is None
    assert fake.last.query == [("force", "true")]


def test_queue_and_reset_delay(fake: FakeMarathon, client: MarathonClient) -> None:
    """GET /v2/queue?embed=lastUnusedOffers; DELETE /v2/queue/{id}/delay."""
    fake.on("GET", "/v2/queue", QUEUE)
    fake.on("DELETE", "/v2/queue/foo/delay", status=204)
    q = client.get_queue(embed_last_unused_offers=True)
    assert fake.last.query == [("embed", "lastUnusedOffers")]
    assert q[0]["processedOffersSummary"]["unusedOffersCount"] == 123
    client.get_queue()
    assert fake.last.query == []
    client.reset_delay("foo")
    assert fake.last.method == "DELETE" and fake.last.path == "/v2/queue/foo/delay"


def test_groups(fake: FakeMarathon, client: MarathonClient) -> None:
    """Groups: root, one group with embeds, create, dry-run update, delete."""
    fake.on("GET", "/v2/groups", {"id": "/", "apps": [], "groups": [GROUP]})
    fake.on("GET", "/v2/groups/product", GROUP)
    fake.on("POST", "/v2/groups", Reply(201, DEPLOYMENT_RESULT))
    fake.on("PUT", "/v2/groups/product", {"steps": []})
    fake.on("DELETE", "/v2/groups/product", DEPLOYMENT_RESULT)
    assert client.get_groups()["groups"][0]["id"] == "/product"
    assert client.get_group("product", embed=("group.apps",))["id"] == "/product"
    assert fake.last.query == [("embed", "group.apps")]
    assert client.create_group({"id": "product", "apps": []}) == DEPLOYMENT_RESULT
    assert fake.last.json["id"] == "/product"
    assert client.update_group("/product", {"apps": []}, dry_run=True) == {"steps": []}
    assert fake.last.query == [("dryRun", "true")]
    assert client.delete_group("product", force=True) == DEPLOYMENT_RESULT


def test_info_leader_ping_metrics(fake: FakeMarathon, client: MarathonClient) -> None:
    """info, leader (None on 404), ping (pong), metrics."""
    fake.on("GET", "/v2/info", INFO)
    fake.on(
        "GET",
        "/v2/leader",
        {"leader": "marathon.globalcorp.com:8080"},
        Reply(404, {"message": "There is no leader"}),
    )
    fake.on("GET", "/ping", Reply(200, raw=b"pong\n", content_type="text/plain"))
    fake.on("GET", "/metrics", {"version": "4.0.0", "gauges": {}, "counters": {}})
    assert client.info()["frameworkId"].endswith("-0000")
    assert client.leader() == "marathon.globalcorp.com:8080"
    assert client.leader() is None
    assert client.ping() is True
    assert "gauges" in client.metrics()


def test_events_stream(fake: FakeMarathon, client: MarathonClient) -> None:
    """GET /v2/events: SSE accepted, event_type repeated, one dict per event."""
    fake.on(
        "GET",
        "/v2/events",
        Reply(200, raw=EVENTS.encode(), content_type="text/event-stream"),
    )
    events = list(client.events(event_types=("status_update_event", "deployment_success")))
    assert [e["eventType"] for e in events] == [
        "event_stream_attached",
        "status_update_event",
        "status_update_event",
    ]
    assert events[1]["taskStatus"] == "TASK_FAILED"
    assert fake.last.headers["accept"] == "text/event-stream"
    assert fake.last.query == [
        ("event_type", "status_update_event"),
        ("event_type", "deployment_success"),
    ]


# ---- errors ------------------------------------------------------------------------------
def test_422_is_invalid_definition_with_details(fake: FakeMarathon, client: MarathonClient) -> None:
    """422: InvalidDefinition with Marathon's message and path: message lines."""
    fake.on("POST", "/v2/apps", Reply(422, INVALID))
    with pytest.raises(InvalidDefinition) as exc:
        client.create_app({"id": "/foo", "cpus": -1})
    e = exc.value
    assert e.status == 422 and e.message == "Object is not valid"
    assert e.detail_lines()[1] == "/cpus: got -1.0, expected 0.0 or more"
    text = str(e)
    assert text.startswith("Object is not valid (POST /v2/apps: HTTP 422)")
    assert "\n  /upgradeStrategy/minimumHealthCapacity: is greater than 1" in text
    assert e.hint


def test_400_invalid_json_is_invalid_definition(fake: FakeMarathon, client: MarathonClient) -> None:
    """400 with details (Invalid JSON) is an InvalidDefinition too."""
    body = {
        "message": "Invalid JSON",
        "details": [{"path": "/id", "errors": ["error.expected.jsstring"]}],
    }
    fake.on("POST", "/v2/apps", Reply(400, body))
    with pytest.raises(InvalidDefinition, match=r"/id: error\.expected\.jsstring"):
        client.create_app({"id": 5})


def test_409_locked_and_409_exists(fake: FakeMarathon, client: MarathonClient) -> None:
    """409 naming deployments is AppLocked (with their ids); otherwise a plain Conflict."""
    fake.on("PUT", "/v2/apps/test", Reply(409, LOCKED))
    fake.on(
        "POST",
        "/v2/apps",
        Reply(409, {"message": "An app with id [/existing_app] already exists."}),
    )
    with pytest.raises(AppLocked) as locked:
        client.scale_app("test", 2)
    assert locked.value.deployments == ["5cd987cd-85ae-4e70-8df7-f1438367d9cb"]
    assert "force" in (locked.value.hint or "")
    with pytest.raises(Conflict) as exists:
        client.create_app({"id": "/existing_app"})
    assert not isinstance(exists.value, AppLocked)
    assert "already exists" in str(exists.value)


def test_404_is_not_found_of_both_hierarchies(fake: FakeMarathon, client: MarathonClient) -> None:
    """404 raises MarathonNotFound, which is also the clients' NotFound."""
    fake.on(
        "GET",
        "/v2/apps/not_existent",
        Reply(404, {"message": "App '/not_existent' does not exist"}),
    )
    with pytest.raises(MarathonNotFound) as exc:
        client.get_app("not_existent")
    assert isinstance(exc.value, NotFound) and isinstance(exc.value, MarathonError)
    assert exc.value.message == "App '/not_existent' does not exist"


def test_503_and_non_json_errors(fake: FakeMarathon, client: MarathonClient) -> None:
    """503 is MarathonUnavailable; a text error body is kept as the message."""
    fake.on("GET", "/v2/apps", Reply(503, raw=b"not the leader", content_type="text/plain"))
    fake.on("GET", "/v2/info", Reply(500, raw=b"boom", content_type="text/plain"))
    with pytest.raises(MarathonUnavailable, match="not the leader"):
        client.list_apps()
    with pytest.raises(MarathonError) as exc:
        client.info()
    assert exc.value.status == 500 and exc.value.message == "boom"


def test_unreachable_marathon_says_playground_up() -> None:
    """Nothing listening: MarathonUnavailable (a ClientError) with a hint naming `playground up`."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with MarathonClient(f"http://127.0.0.1:{port}", timeout=2.0) as c:
        with pytest.raises(MarathonUnavailable) as exc:
            c.list_apps()
        assert isinstance(exc.value, ClientError) and exc.value.status is None
        assert "playground up" in (exc.value.hint or "")
        assert c.ping() is False


# ---- waiting -----------------------------------------------------------------------------
def test_wait_for_deployment_reports_progress_until_gone(
    fake: FakeMarathon, client: MarathonClient
) -> None:
    """Polls /v2/deployments until the id is gone, calling progress on each change."""
    step2 = {**DEPLOYMENTS[0], "currentStep": 2, "totalSteps": 2}
    fake.on("GET", "/v2/deployments", DEPLOYMENTS, DEPLOYMENTS, [step2], [])
    seen: list[int] = []
    client.wait_for_deployment(
        "97c136bf-5a28-4821-9d94-480d9fbb01c8",
        timeout=10,
        poll=0.01,
        progress=lambda d: seen.append(d["currentStep"]),
    )
    assert seen == [1, 2]


def test_wait_for_deployment_times_out(fake: FakeMarathon, client: MarathonClient) -> None:
    """A deployment still running after the timeout raises DeploymentTimeout naming the queue."""
    fake.on("GET", "/v2/deployments", DEPLOYMENTS)
    with pytest.raises(DeploymentTimeout) as exc:
        client.wait_for_deployment("97c136bf-5a28-4821-9d94-480d9fbb01c8", timeout=0.2, poll=0.05)
    assert "ScaleApplication /foo" in str(exc.value)
    assert "playground queue" in (exc.value.hint or "")


def test_wait_app_running(fake: FakeMarathon, client: MarathonClient) -> None:
    """Waits until every instance runs and no deployment is left; returns the app."""
    starting = {**APP, "tasksRunning": 1, "tasks": []}
    ready = {**APP, "tasksRunning": 2, "deployments": [], "tasks": []}
    fake.on("GET", "/v2/apps/foo", {"app": starting}, {"app": ready})
    assert client.wait_app_running("foo", timeout=10, poll=0.01)["tasksRunning"] == 2
    assert ("embed", "app.tasks") in fake.last.query


# ---- the CLI's rendering of the same answers ---------------------------------------------------
@pytest.fixture
def cli(fake: FakeMarathon, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    """The `playground` command with its Marathon client pointed at the canned server."""
    import playground.cli.app as app_cli

    monkeypatch.setattr(app_cli, "marathon_client", lambda: MarathonClient(fake.url))
    return CliRunner()


def test_cli_queue_explains_rejections(fake: FakeMarathon, cli: CliRunner) -> None:
    """`playground queue` prints each declining check as `Reason: N of M offers`."""
    from playground.cli.main import main

    fake.on("GET", "/v2/queue", QUEUE)
    r = cli.invoke(main, ["queue"])
    assert r.exit_code == 0, r.output
    assert "/foo: 2 instance(s) waiting" in r.output
    assert "InsufficientCpus: 75 of 123 offers" in r.output
    assert "InsufficientMemory: 15 of 48 offers" in r.output
    assert "UnfulfilledConstraint" not in r.output, "checks that declined nothing are left out"
    r = cli.invoke(main, ["queue", "--json"])
    assert json.loads(r.output)[0]["count"] == 2


def test_cli_queue_counts_last_unused_offers_without_a_summary(
    fake: FakeMarathon, cli: CliRunner
) -> None:
    """Without rejectSummaryLastOffers the reasons of lastUnusedOffers are counted."""
    from playground.cli.main import main

    entry = dict(QUEUE["queue"][0])
    entry["processedOffersSummary"] = {"processedOffersCount": 3, "unusedOffersCount": 3}
    entry["lastUnusedOffers"] = [
        {"offer": {"hostname": f"h{i}"}, "reason": ["UnfulfilledConstraint"]} for i in range(3)
    ]
    fake.on("GET", "/v2/queue", {"queue": [entry]})
    r = cli.invoke(main, ["queue"])
    assert "UnfulfilledConstraint: 3 of 3 offers" in r.output, r.output


def test_cli_app_add_prints_422_details(fake: FakeMarathon, cli: CliRunner, tmp_path: Any) -> None:
    """An invalid app: exit 1, Marathon's message and one `path: message` line per error."""
    from playground.cli.main import main

    fake.on("POST", "/v2/apps", Reply(422, INVALID))
    f = tmp_path / "app.yaml"
    f.write_text("id: web\ncmd: sleep 100\ncpus: -1\n")
    r = cli.invoke(main, ["app", "add", str(f)])
    assert r.exit_code == 1
    assert "error: Object is not valid" in r.output
    assert "  /cpus: got -1.0, expected 0.0 or more" in r.output
    assert "hint:" in r.output
    assert fake.last.json == {"id": "/web", "cmd": "sleep 100", "cpus": -1}


def test_cli_app_list_and_add_from_stdin(fake: FakeMarathon, cli: CliRunner) -> None:
    """app add - reads stdin and prints the app and deployment ids; app list is a table."""
    from playground.cli.main import main

    fake.on("POST", "/v2/apps", Reply(201, APP, {"Marathon-Deployment-Id": "d-1"}))
    r = cli.invoke(main, ["app", "add", "-"], input='{"id": "/foo", "cmd": "sleep 1000"}')
    assert r.exit_code == 0, r.output
    assert "app /foo added: deployment d-1" in r.output
    fake.on("GET", "/v2/apps", APP_LIST)
    r = cli.invoke(main, ["app", "list"])
    assert r.output.splitlines()[0].split() == ["ID", "STATUS", "RUNNING", "CPUS", "MEM", "CMD"]
    assert r.output.splitlines()[1].split()[:3] == ["/myapp", "deploying", "0/3"]


def test_cli_locked_app_hints_force(fake: FakeMarathon, cli: CliRunner) -> None:
    """A locked app: exit 1 and a hint naming the deployment, rollback and --force."""
    from playground.cli.main import main

    fake.on("GET", "/v2/apps/test", {"app": {**APP, "id": "/test"}})
    fake.on("PUT", "/v2/apps/test", Reply(409, LOCKED))
    r = cli.invoke(main, ["app", "scale", "test", "2"])
    assert r.exit_code == 1
    assert "5cd987cd-85ae-4e70-8df7-f1438367d9cb" in r.output and "--force" in r.output


def test_cli_scale_and_update_never_create_a_missing_app(
    fake: FakeMarathon, cli: CliRunner, tmp_path: Any
) -> None:
    """PUT /v2/apps/{id} creates a missing app: scale and update check it exists first."""
    from playground.cli.main import main

    fake.on("GET", "/v2/apps/nope", Reply(404, {"message": "App '/nope' does not exist"}))
    for args in (["app", "scale", "nope", "3"], ["app", "update", "nope", "-"]):
        r = cli.invoke(main, args, input="mem: 64\n")
        assert r.exit_code == 1
        assert "App '/nope' does not exist" in r.stderr and "playground app list" in r.stderr
    assert [s.method for s in fake.seen] == ["GET", "GET"]


def test_cli_warns_about_fields_marathon_ignores(fake: FakeMarathon, cli: CliRunner) -> None:
    """A misspelt field is sent anyway (Marathon ignores it) but named on stderr with a guess."""
    from playground.cli.main import main

    fake.on("POST", "/v2/apps", Reply(201, APP, {"Marathon-Deployment-Id": "d-1"}))
    r = cli.invoke(main, ["app", "add", "-"], input='{"id": "/foo", "instanses": 3}')
    assert r.exit_code == 0, r.output
    assert "warning: unknown field 'instanses'" in r.stderr
    assert "did you mean 'instances'?" in r.stderr


def test_cli_rejects_a_file_that_is_not_a_definition(cli: CliRunner, tmp_path: Any) -> None:
    """Not JSON/YAML, a list, or an id not matching `update`'s: exit 1 before any request."""
    from playground.cli.main import main

    bad = tmp_path / "bad.json"
    bad.write_text('{"id": "/foo", "cmd": ')
    r = cli.invoke(main, ["app", "add", str(bad)])
    assert r.exit_code == 1 and "is neither JSON nor YAML" in r.stderr
    listed = tmp_path / "list.json"
    listed.write_text('[{"id": "/a"}, {"id": "/b"}]')
    r = cli.invoke(main, ["app", "add", str(listed)])
    assert r.exit_code == 1 and "list of 2 definitions" in r.stderr
    other = tmp_path / "other.yaml"
    other.write_text("id: /bar\nmem: 64\n")
    r = cli.invoke(main, ["app", "update", "foo", str(other)])
    assert r.exit_code == 1 and "defines app /bar, not /foo" in r.stderr
