"""Typed client for Marathon's v2 REST API (Marathon 1.10), sync, on httpx.

App and group ids are Marathon paths (``/prod/web``); a relative id is taken from the root
(``web`` -> ``/web``). Errors carry Marathon's JSON error body: ``message`` and, for an
invalid definition, ``details`` (``[{"path": "/cpus", "errors": ["..."]}]``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypedDict
from urllib.parse import quote

import httpx

from playground.client.errors import ClientError, NotFound
from playground.client.mesos import DEFAULT_TIMEOUT, _Http

Json = dict[str, Any]
Params = list[tuple[str, str | int | float | bool | None]]

UNAVAILABLE_HINT = "is Marathon running? see `playground status`; `playground up` starts it"


class DeploymentResult(TypedDict):
    """What a change (update, scale, restart, delete) answers: the deployment it started."""

    deploymentId: str
    version: str


class MarathonError(ClientError):
    """Marathon answered with an error (or could not be reached: ``status`` is None).

    Attributes:
        status: the HTTP status, None when Marathon could not be reached.
        message: Marathon's own message (its JSON error body's ``message``).
        details: Marathon's validation details, each ``{"path": ..., "errors": [...]}``.
        body: the whole decoded error body (a dict, or the raw text).
    """

    def __init__(
        self,
        message: str,
        status: int | None = None,
        hint: str | None = None,
        *,
        marathon_message: str | None = None,
        details: list[Json] | None = None,
        body: Any = None,
        request: str | None = None,
    ) -> None:
        super().__init__(message, status, hint)
        self.message = marathon_message if marathon_message is not None else message
        self.details: list[Json] = list(details or [])
        self.body = body
        self.request = request

    def detail_lines(self) -> list[str]:
        """The validation details as ``path: message`` lines (one per error)."""
        return format_details(self.details)

    def __str__(self) -> str:
        head = super().__str__()
        lines = self.detail_lines()
        return "\n".join([head, *("  " + line for line in lines)]) if lines else head


class MarathonUnavailable(MarathonError):
    """Marathon cannot be reached, or it answered 503 (no leader, not ready yet)."""


class MarathonNotFound(MarathonError, NotFound):
    """404: no such app, group, task, deployment or version."""


class InvalidDefinition(MarathonError):
    """400 or 422: the definition sent is not valid JSON or fails Marathon's validation."""


class Conflict(MarathonError):
    """409: e.g. an app with that id already exists."""


class AppLocked(Conflict):
    """409: the app (or group) is locked by running deployments; ``force`` overrides.

    Attributes:
        deployments: the ids of the deployments holding the lock.
    """

    def __init__(self, *args: Any, deployments: list[str] | None = None, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.deployments: list[str] = list(deployments or [])


class DeploymentTimeout(MarathonError):
    """A wait for a deployment (or for an app's tasks) ran out of time."""


def format_details(details: Iterable[Any]) -> list[str]:
    """Marathon's validation ``details`` as ``path: message`` lines."""
    lines: list[str] = []
    for d in details:
        if not isinstance(d, dict):
            lines.append(str(d))
            continue
        path = str(d.get("path") or "/")
        errors = d.get("errors")
        if errors is None and "message" in d:
            errors = [d["message"]]
        if isinstance(errors, str):
            errors = [errors]
        for err in errors or ["invalid"]:
            lines.append(f"{path}: {err}")
    return lines


def normalize_id(run_id: str) -> str:
    """A Marathon path from a user's id: ``web`` -> ``/web``, ``/prod/web/`` -> ``/prod/web``."""
    parts = [p for p in run_id.strip().split("/") if p and p != "."]
    return "/" + "/".join(parts)


def _quote_path(path_id: str) -> str:
    return quote(normalize_id(path_id), safe="/")


def _flag(value: bool) -> str:
    return "true" if value else "false"


def _deployment_id_of(app: Json, headers: httpx.Headers) -> str | None:
    dep = headers.get("Marathon-Deployment-Id")
    if dep:
        return dep
    for d in app.get("deployments") or []:
        if isinstance(d, dict) and d.get("id"):
            return str(d["id"])
    return None


class MarathonClient(_Http):
    """Marathon's v2 REST API: apps, tasks, deployments, the launch queue, groups, events.

    Every method raises a :class:`MarathonError` subclass on failure:
    :class:`MarathonUnavailable` (unreachable, 503), :class:`MarathonNotFound` (404),
    :class:`InvalidDefinition` (400, 422), :class:`AppLocked` / :class:`Conflict` (409).
    """

    def __init__(self, base_url: str, timeout: float = DEFAULT_TIMEOUT) -> None:
        super().__init__(base_url, timeout)
        self.timeout = timeout

    # ---- plumbing ---------------------------------------------------------------------
    def _request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        url = self.base_url + path
        what = f"{method} {path}"
        try:
            r = self._client.request(method, url, follow_redirects=True, **kw)
        except httpx.HTTPError as exc:
            raise MarathonUnavailable(
                f"cannot reach Marathon at {self.base_url} ({what}: {exc or type(exc).__name__})",
                None,
                UNAVAILABLE_HINT,
                request=what,
            ) from None
        if r.status_code >= 400:
            raise self._error(r, what)
        return r

    @staticmethod
    def _error(r: httpx.Response, what: str) -> MarathonError:
        status = r.status_code
        body: Any
        try:
            body = r.json()
        except ValueError:
            body = r.text.strip()
        if isinstance(body, dict):
            msg = str(body.get("message") or f"HTTP {status}")
            details = body.get("details") or []
            if not isinstance(details, list):
                details = [details]
        else:
            msg = str(body) or f"HTTP {status}"
            details = []
        text = f"{msg} ({what}: HTTP {status})"
        kw: dict[str, Any] = {
            "marathon_message": msg,
            "details": details,
            "body": body,
            "request": what,
        }
        if status == 404:
            return MarathonNotFound(text, status, **kw)
        if status in (400, 422):
            return InvalidDefinition(
                text, status, "fix the definition (the lines above name each field)", **kw
            )
        if status == 409:
            deps = body.get("deployments") if isinstance(body, dict) else None
            if deps:
                ids = [str(d.get("id")) if isinstance(d, dict) else str(d) for d in deps]
                return AppLocked(
                    text,
                    status,
                    f"deployment(s) {', '.join(ids)} still running: wait for them, roll them "
                    "back, or override with force",
                    deployments=ids,
                    **kw,
                )
            return Conflict(text, status, **kw)
        if status == 503:
            return MarathonUnavailable(text, status, UNAVAILABLE_HINT, **kw)
        return MarathonError(text, status, **kw)

    def _json(self, method: str, path: str, **kw: Any) -> Any:
        r = self._request(method, path, **kw)
        if not r.content.strip():
            return None
        try:
            return r.json()
        except ValueError:
            raise MarathonError(
                f"{method} {path}: Marathon answered with invalid JSON: {r.text[:200]!r}",
                r.status_code,
            ) from None

    @staticmethod
    def _params(**kw: Any) -> Params:
        """Query parameters: None is left out, bools are ``true``, sequences repeat the key."""
        out: Params = []
        for key, value in kw.items():
            if value is None or value is False:
                continue
            if isinstance(value, bool):
                out.append((key, "true"))
            elif isinstance(value, list | tuple | set | frozenset):
                out.extend((key, str(v)) for v in value)
            else:
                out.append((key, str(value)))
        return out

    @staticmethod
    def _embed(embed: str | Iterable[str]) -> list[str]:
        return [embed] if isinstance(embed, str) else list(embed)

    # ---- apps -------------------------------------------------------------------------
    def list_apps(
        self,
        embed: str | Iterable[str] = (),
        app_id: str | None = None,
        cmd: str | None = None,
        label: str | None = None,
    ) -> list[Json]:
        """``GET /v2/apps``; ``embed`` e.g. ``("apps.tasks", "apps.counts")``."""
        params = self._params(id=app_id, cmd=cmd, label=label, embed=self._embed(embed))
        data = self._json("GET", "/v2/apps", params=params)
        return list(data["apps"])

    def get_app(self, app_id: str, embed: str | Iterable[str] = ()) -> Json:
        """``GET /v2/apps/{id}``; ``embed`` e.g. ``("app.tasks", "app.lastTaskFailure")``."""
        params = self._params(embed=self._embed(embed))
        data = self._json("GET", f"/v2/apps{_quote_path(app_id)}", params=params)
        return dict(data["app"])

    def create_app(self, defn: Json) -> tuple[Json, str | None]:
        """``POST /v2/apps``: the created app and the id of the deployment starting it."""
        body = dict(defn)
        if "id" in body and isinstance(body["id"], str):
            body["id"] = normalize_id(body["id"])
        r = self._request("POST", "/v2/apps", json=body)
        app = dict(r.json())
        return app, _deployment_id_of(app, r.headers)

    def update_app(
        self, app_id: str, defn: Json, force: bool = False, partial: bool = True
    ) -> DeploymentResult:
        """``PUT /v2/apps/{id}``: change (or create) an app; ``partial=False`` replaces it."""
        body = dict(defn)
        if isinstance(body.get("id"), str):
            body["id"] = normalize_id(body["id"])
        params = self._params(force=force, partialUpdate=None if partial else "false")
        return self._deployment("PUT", f"/v2/apps{_quote_path(app_id)}", params=params, json=body)

    def patch_app(self, app_id: str, defn: Json, force: bool = False) -> DeploymentResult:
        """``PATCH /v2/apps/{id}``: change only the fields given."""
        return self._deployment(
            "PATCH",
            f"/v2/apps{_quote_path(app_id)}",
            params=self._params(force=force),
            json=dict(defn),
        )

    def scale_app(self, app_id: str, instances: int, force: bool = False) -> DeploymentResult:
        """Set an app's number of instances (``PUT /v2/apps/{id}`` with ``instances``)."""
        if instances < 0:
            raise ValueError("instances must be >= 0")
        return self.update_app(app_id, {"instances": instances}, force=force)

    def restart_app(self, app_id: str, force: bool = False) -> DeploymentResult:
        """``POST /v2/apps/{id}/restart``: a rolling restart of every task."""
        return self._deployment(
            "POST", f"/v2/apps{_quote_path(app_id)}/restart", params=self._params(force=force)
        )

    def delete_app(self, app_id: str, force: bool = False) -> DeploymentResult:
        """``DELETE /v2/apps/{id}``: stop the app's tasks and forget it."""
        return self._deployment(
            "DELETE", f"/v2/apps{_quote_path(app_id)}", params=self._params(force=force)
        )

    def app_versions(self, app_id: str) -> list[str]:
        """``GET /v2/apps/{id}/versions``: the app's version timestamps, newest first."""
        data = self._json("GET", f"/v2/apps{_quote_path(app_id)}/versions")
        return [str(v) for v in data["versions"]]

    def get_app_version(self, app_id: str, version: str) -> Json:
        """``GET /v2/apps/{id}/versions/{version}``: the definition at that version."""
        path = f"/v2/apps{_quote_path(app_id)}/versions/{quote(version, safe=':')}"
        return dict(self._json("GET", path))

    # ---- tasks ------------------------------------------------------------------------
    def list_tasks(self, app_id: str | None = None, status: str | None = None) -> list[Json]:
        """Tasks of one app (``GET /v2/apps/{id}/tasks``) or of every app (``GET /v2/tasks``).

        ``status`` is Marathon's filter (``running``, ``staging``); for one app it is
        applied here, on the task's ``state``.
        """
        headers = {"Accept": "application/json"}
        if app_id is None:
            data = self._json(
                "GET", "/v2/tasks", params=self._params(status=status), headers=headers
            )
            return list(data["tasks"])
        data = self._json("GET", f"/v2/apps{_quote_path(app_id)}/tasks", headers=headers)
        tasks = list(data["tasks"])
        if status:
            want = "TASK_" + status.upper()
            tasks = [t for t in tasks if t.get("state") == want]
        return tasks

    def kill_tasks(
        self, app_id: str, scale: bool = False, wipe: bool = False, host: str | None = None
    ) -> list[Json] | DeploymentResult:
        """``DELETE /v2/apps/{id}/tasks``: the killed tasks, or with ``scale`` the deployment."""
        params = self._params(host=host, scale=scale, wipe=wipe)
        data = self._json("DELETE", f"/v2/apps{_quote_path(app_id)}/tasks", params=params)
        return self._tasks_or_deployment(data)

    def kill_task(
        self, app_id: str, task_id: str, scale: bool = False, wipe: bool = False
    ) -> Json | DeploymentResult:
        """``DELETE /v2/apps/{id}/tasks/{task}``: the killed task, or with ``scale`` the deployment."""
        path = f"/v2/apps{_quote_path(app_id)}/tasks/{quote(task_id, safe='')}"
        data = self._json("DELETE", path, params=self._params(scale=scale, wipe=wipe))
        if isinstance(data, dict) and "task" in data:
            return dict(data["task"])
        return self._as_deployment(data)

    def kill_given_tasks(
        self, task_ids: Iterable[str], scale: bool = False, force: bool = False
    ) -> list[Json] | DeploymentResult:
        """``POST /v2/tasks/delete``: kill tasks of any apps by id."""
        params = self._params(scale=scale, force=force)
        data = self._json("POST", "/v2/tasks/delete", params=params, json={"ids": list(task_ids)})
        return self._tasks_or_deployment(data)

    # ---- deployments, queue -----------------------------------------------------------
    def list_deployments(self) -> list[Json]:
        """``GET /v2/deployments``: the running deployments."""
        return list(self._json("GET", "/v2/deployments") or [])

    def delete_deployment(self, deployment_id: str, force: bool = False) -> DeploymentResult | None:
        """``DELETE /v2/deployments/{id}``: roll it back (a new deployment, returned);
        with ``force`` only cancel it (None)."""
        data = self._json(
            "DELETE",
            f"/v2/deployments/{quote(deployment_id, safe='')}",
            params=self._params(force=force),
        )
        return self._as_deployment(data) if data else None

    def get_queue(self, embed_last_unused_offers: bool = False) -> list[Json]:
        """``GET /v2/queue``: apps waiting for offers, with the offer rejection summary."""
        params = self._params(embed="lastUnusedOffers" if embed_last_unused_offers else None)
        data = self._json("GET", "/v2/queue", params=params)
        return list(data["queue"])

    def reset_delay(self, app_id: str) -> None:
        """``DELETE /v2/queue/{id}/delay``: launch a backed-off app now."""
        self._request("DELETE", f"/v2/queue{_quote_path(app_id)}/delay")

    # ---- groups -----------------------------------------------------------------------
    def get_groups(self, embed: str | Iterable[str] = ()) -> Json:
        """``GET /v2/groups``: the root group with its apps and groups."""
        return dict(self._json("GET", "/v2/groups", params=self._params(embed=self._embed(embed))))

    def get_group(self, group_id: str, embed: str | Iterable[str] = ()) -> Json:
        """``GET /v2/groups/{id}``."""
        path = "/v2/groups" + _quote_path(group_id).rstrip("/")
        return dict(self._json("GET", path, params=self._params(embed=self._embed(embed))))

    def create_group(self, defn: Json) -> DeploymentResult:
        """``POST /v2/groups``: create a group (with its apps)."""
        body = dict(defn)
        if isinstance(body.get("id"), str):
            body["id"] = normalize_id(body["id"])
        return self._deployment("POST", "/v2/groups", json=body)

    def update_group(
        self, group_id: str, defn: Json, dry_run: bool = False, force: bool = False
    ) -> Json:
        """``PUT /v2/groups/{id}``: the deployment started, or with ``dry_run`` its steps."""
        path = "/v2/groups" + _quote_path(group_id).rstrip("/")
        data = self._json(
            "PUT", path, params=self._params(dryRun=dry_run, force=force), json=dict(defn)
        )
        return dict(data or {})

    def delete_group(self, group_id: str, force: bool = False) -> DeploymentResult:
        """``DELETE /v2/groups/{id}``: remove a group with every app in it."""
        path = "/v2/groups" + _quote_path(group_id).rstrip("/")
        return self._deployment("DELETE", path, params=self._params(force=force))

    # ---- the instance -----------------------------------------------------------------
    def info(self) -> Json:
        """``GET /v2/info``: name, version, leader, framework id, configuration."""
        return dict(self._json("GET", "/v2/info"))

    def leader(self) -> str | None:
        """``GET /v2/leader``: the leading instance's ``host:port``, None without a leader."""
        try:
            data = self._json("GET", "/v2/leader")
        except MarathonNotFound:
            return None
        return str(data["leader"]) if data and data.get("leader") else None

    def ping(self) -> bool:
        """``GET /ping``: True when Marathon answers ``pong``."""
        try:
            return self._request("GET", "/ping").text.strip() == "pong"
        except ClientError:
            return False

    def metrics(self) -> Json:
        """``GET /metrics``: Marathon's metrics (Dropwizard JSON)."""
        return dict(self._json("GET", "/metrics"))

    def events(
        self, event_types: str | Iterable[str] = (), read_timeout: float | None = None
    ) -> Iterator[Json]:
        """``GET /v2/events``: the event stream (server-sent events), one dict per event.

        Each event is its decoded ``data:`` JSON; ``eventType`` is set from the ``event:``
        line when the data lacks it. The iterator ends when the server closes the stream;
        ``read_timeout`` (seconds of silence) ends it with a :class:`MarathonUnavailable`.
        """
        params = self._params(event_type=self._embed(event_types))
        url = self.base_url + "/v2/events"
        timeout = httpx.Timeout(self.timeout, read=read_timeout)
        try:
            with self._client.stream(
                "GET",
                url,
                params=params,
                headers={"Accept": "text/event-stream"},
                timeout=timeout,
                follow_redirects=True,
            ) as r:
                if r.status_code >= 400:
                    r.read()
                    raise self._error(r, "GET /v2/events")
                yield from parse_sse(r.iter_lines())
        except httpx.HTTPError as exc:
            raise MarathonUnavailable(
                f"Marathon's event stream at {self.base_url} failed: {exc or type(exc).__name__}",
                None,
                UNAVAILABLE_HINT,
                request="GET /v2/events",
            ) from None

    # ---- waiting ----------------------------------------------------------------------
    def wait_for_deployment(
        self,
        deployment_id: str,
        timeout: float = 60.0,
        poll: float = 0.2,
        progress: Callable[[Json], None] | None = None,
    ) -> None:
        """Return once ``deployment_id`` is no longer among the running deployments.

        ``progress`` is called with the deployment each time it changes.
        Raises :class:`DeploymentTimeout` when ``timeout`` seconds pass first.
        """
        deadline = time.monotonic() + timeout
        last: Any = None
        while True:
            current = next(
                (d for d in self.list_deployments() if d.get("id") == deployment_id), None
            )
            if current is None:
                return
            if progress is not None and current != last:
                progress(current)
            last = current
            if time.monotonic() >= deadline:
                raise DeploymentTimeout(
                    f"deployment {deployment_id} did not finish within {timeout:g}s "
                    f"(step {current.get('currentStep')}/{current.get('totalSteps')}: "
                    f"{describe_actions(current.get('currentActions') or [])})",
                    hint="see `playground queue` for why tasks do not start, "
                    "`playground deployment rollback ID` to undo it",
                    request="GET /v2/deployments",
                )
            time.sleep(poll)

    def wait_app_running(self, app_id: str, timeout: float = 60.0, poll: float = 0.2) -> Json:
        """Wait until every instance of the app runs and no deployment touches it.

        Returns the app (with its tasks); raises :class:`DeploymentTimeout` on time out.
        """
        deadline = time.monotonic() + timeout
        while True:
            app = self.get_app(app_id, embed=("app.tasks", "app.counts", "app.deployments"))
            running = sum(1 for t in app.get("tasks") or [] if t.get("state") == "TASK_RUNNING")
            running = max(running, int(app.get("tasksRunning") or 0))
            if running >= int(app.get("instances", 0)) and not app.get("deployments"):
                return app
            if time.monotonic() >= deadline:
                raise DeploymentTimeout(
                    f"app {normalize_id(app_id)} has {running} of {app.get('instances')} "
                    f"instance(s) running after {timeout:g}s",
                    hint="see `playground queue` for why tasks do not start",
                    request=f"GET /v2/apps{normalize_id(app_id)}",
                )
            time.sleep(poll)

    # ---- helpers ----------------------------------------------------------------------
    def _deployment(self, method: str, path: str, **kw: Any) -> DeploymentResult:
        return self._as_deployment(self._json(method, path, **kw))

    @staticmethod
    def _as_deployment(data: Any) -> DeploymentResult:
        if not isinstance(data, dict) or "deploymentId" not in data:
            raise MarathonError(f"expected a deployment result, Marathon answered {data!r}")
        return DeploymentResult(
            deploymentId=str(data["deploymentId"]), version=str(data.get("version", ""))
        )

    def _tasks_or_deployment(self, data: Any) -> list[Json] | DeploymentResult:
        if isinstance(data, dict) and "tasks" in data:
            return list(data["tasks"])
        return self._as_deployment(data)


def parse_sse(lines: Iterable[str]) -> Iterator[Json]:
    """Server-sent events (``event:``/``data:`` lines, blank line ends one) as dicts."""
    event: str | None = None
    data: list[str] = []
    for raw in lines:
        line = raw.rstrip("\r\n")
        if not line:
            if data:
                yield _sse_event(event, "\n".join(data))
            event, data = None, []
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if field == "event":
            event = value
        elif field == "data":
            data.append(value)
    if data:
        yield _sse_event(event, "\n".join(data))


def _sse_event(event: str | None, data: str) -> Json:
    try:
        decoded = json.loads(data)
    except ValueError:
        decoded = {"data": data}
    if not isinstance(decoded, dict):
        decoded = {"data": decoded}
    if event and "eventType" not in decoded:
        decoded["eventType"] = event
    return decoded


def describe_actions(actions: Iterable[Json]) -> str:
    """A deployment's actions as text: ``ScaleApplication /web, StartApplication /db``."""
    out = []
    for a in actions:
        target = a.get("app") or a.get("pod") or ""
        out.append(f"{a.get('action', '?')} {target}".strip())
    return ", ".join(out) or "-"
