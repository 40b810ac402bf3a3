"""A small Marathon REST client for integration tests: requests, polling with deadlines, SSE."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import httpx

T = TypeVar("T")

#: Cheap app commands (tasks run on the agent's own loopback address, ``$HOST``).
HTTP_CMD = "python3 -m http.server $PORT0 --bind $HOST"
SLEEP_CMD = "sleep 1000"


def wait_until(
    fn: Callable[[], T],
    timeout: float = 20.0,
    interval: float = 0.1,
    desc: str = "condition",
    ignore: tuple[type[BaseException], ...] = (httpx.HTTPError,),
) -> T:
    """Call ``fn`` until it returns something truthy (returned), or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    error: BaseException | None = None
    while True:
        try:
            last = fn()
            error = None
            if last:
                return last
        except ignore as exc:
            error = exc
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"timed out after {timeout:.0f}s waiting for {desc}; last={last!r}"
                + (f" (error: {error!r})" if error else "")
            )
        time.sleep(interval)


def http_answers(host: str, port: int, path: str = "/", timeout: float = 2.0) -> httpx.Response:
    return httpx.get(f"http://{host}:{port}{path}", timeout=timeout)


def app_def(app_id: str, cmd: str = SLEEP_CMD, instances: int = 1, **extra: Any) -> dict[str, Any]:
    """A cheap app definition (0.1 cpus, 32 MB)."""
    return {"id": app_id, "cmd": cmd, "cpus": 0.1, "mem": 32, "instances": instances, **extra}


def is_healthy(task: dict[str, Any]) -> bool:
    results = task.get("healthCheckResults") or []
    return (
        task.get("state") == "TASK_RUNNING" and bool(results) and all(r["alive"] for r in results)
    )


class Marathon:
    """Thin wrapper over httpx for Marathon's ``/v2`` API."""

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.http = httpx.Client(base_url=self.url, timeout=timeout)

    def close(self) -> None:
        self.http.close()

    # ---- raw requests -------------------------------------------------------------------
    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.http.get(path, **kw)

    def post(self, path: str, body: Any = None, **kw: Any) -> httpx.Response:
        if body is not None:
            kw["json"] = body
        return self.http.post(path, **kw)

    def put(self, path: str, body: Any = None, **kw: Any) -> httpx.Response:
        if body is not None:
            kw["json"] = body
        return self.http.put(path, **kw)

    def delete(self, path: str, **kw: Any) -> httpx.Response:
        return self.http.delete(path, **kw)

    # ---- reads --------------------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        r = self.get("/v2/info")
        r.raise_for_status()
        return dict(r.json())

    def apps(self) -> list[dict[str, Any]]:
        r = self.get("/v2/apps")
        r.raise_for_status()
        return list(r.json()["apps"])

    def app(self, app_id: str, embed: Iterable[str] = ()) -> dict[str, Any]:
        params = [("embed", e) for e in embed]
        r = self.get(f"/v2/apps{app_id}", params=params)
        assert r.status_code == 200, (r.status_code, r.text)
        return dict(r.json()["app"])

    def tasks(self, app_id: str) -> list[dict[str, Any]]:
        r = self.get(f"/v2/apps{app_id}/tasks")
        assert r.status_code == 200, (r.status_code, r.text)
        return list(r.json()["tasks"])

    def deployments(self) -> list[dict[str, Any]]:
        r = self.get("/v2/deployments")
        r.raise_for_status()
        return list(r.json())

    def deployment(self, dep_id: str) -> dict[str, Any] | None:
        return next((d for d in self.deployments() if d["id"] == dep_id), None)

    def queue(self, embed: Iterable[str] = ()) -> list[dict[str, Any]]:
        r = self.get("/v2/queue", params=[("embed", e) for e in embed])
        r.raise_for_status()
        return list(r.json()["queue"])

    def queue_entry(self, app_id: str, embed: Iterable[str] = ()) -> dict[str, Any] | None:
        return next((q for q in self.queue(embed) if q["app"]["id"] == app_id), None)

    # ---- writes and waits ---------------------------------------------------------------
    def create(self, app: dict[str, Any]) -> httpx.Response:
        r = self.post("/v2/apps", app)
        assert r.status_code == 201, (r.status_code, r.text)
        return r

    def deploy(
        self, app: dict[str, Any], *, healthy: bool = False, timeout: float = 30.0
    ) -> list[dict[str, Any]]:
        """Create an app and wait until its deployment is over and all instances run."""
        r = self.create(app)
        dep = r.headers.get("Marathon-Deployment-Id")
        if dep:
            self.wait_deployment_gone(dep, timeout)
        return self.wait_running(
            app["id"], int(app.get("instances", 1)), healthy=healthy, timeout=timeout
        )

    def wait_deployment_gone(self, dep_id: str, timeout: float = 30.0) -> None:
        wait_until(
            lambda: self.deployment(dep_id) is None, timeout, desc=f"deployment {dep_id} to finish"
        )

    def wait_no_deployments(self, timeout: float = 30.0) -> None:
        wait_until(lambda: self.deployments() == [], timeout, desc="no deployments")

    def wait_running(
        self,
        app_id: str,
        n: int,
        *,
        healthy: bool = False,
        timeout: float = 30.0,
        version: str | None = None,
    ) -> list[dict[str, Any]]:
        """Wait until exactly ``n`` tasks of the app are listed and all are TASK_RUNNING."""

        def ok() -> list[dict[str, Any]] | None:
            tasks = self.tasks(app_id)
            if len(tasks) != n or any(t["state"] != "TASK_RUNNING" for t in tasks):
                return None
            if healthy and not all(is_healthy(t) for t in tasks):
                return None
            if version is not None and any(t["version"] != version for t in tasks):
                return None
            return tasks or [{}]  # truthy even for n == 0

        tasks = wait_until(ok, timeout, desc=f"{n} running tasks of {app_id}")
        return [t for t in tasks if t]

    def cleanup(self, timeout: float = 30.0) -> None:
        """Remove every app and group (forcing past deployments) and wait for a quiet Marathon."""
        for dep in self.deployments():
            self.delete(f"/v2/deployments/{dep['id']}", params={"force": "true"})
        root = self.get("/v2/groups").json()
        for g in root.get("groups", []):
            self.delete(f"/v2/groups{g['id']}", params={"force": "true"})
        for app in self.apps():
            self.delete(f"/v2/apps{app['id']}", params={"force": "true"})
        wait_until(lambda: self.apps() == [], timeout, desc="no apps")
        self.wait_no_deployments(timeout)
        wait_until(lambda: self.get("/v2/tasks").json()["tasks"] == [], timeout, desc="no tasks")

    def events(self, *event_types: str) -> EventStream:
        return EventStream(self.url, event_types)


class EventStream:
    """Reads ``/v2/events`` (SSE) in a background thread; use as a context manager."""

    def __init__(self, url: str, event_types: Iterable[str] = ()) -> None:
        self.url = url
        self.params = [("event_type", t) for t in event_types]
        self.events: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._client = httpx.Client(timeout=httpx.Timeout(5.0, read=None))
        self._attached = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> EventStream:
        self._thread.start()
        if not self._attached.wait(10):
            raise AssertionError("the event stream did not attach")
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._client.close()
        self._thread.join(5)

    def _run(self) -> None:
        try:
            with self._client.stream(
                "GET",
                self.url + "/v2/events",
                params=self.params,
                headers={"Accept": "text/event-stream"},
            ) as resp:
                self.status = resp.status_code
                self.content_type = resp.headers.get("content-type", "")
                self._attached.set()
                name = None
                for line in resp.iter_lines():
                    if self._stop.is_set():
                        return
                    if line.startswith("event:"):
                        name = line.split(":", 1)[1].strip()
                    elif line.startswith("data:"):
                        data = json.loads(line.split(":", 1)[1].strip())
                        with self._lock:
                            self.events.append({"event": name, "data": data})
        except Exception:  # closed from the test thread, or the server went away
            self._attached.set()

    def of_type(self, event_type: str) -> list[dict[str, Any]]:
        with self._lock:
            return [e["data"] for e in self.events if e["event"] == event_type]

    def wait_for(
        self,
        event_type: str,
        predicate: Callable[[dict[str, Any]], bool] = lambda e: True,
        timeout: float = 20.0,
    ) -> dict[str, Any]:
        def found() -> dict[str, Any] | None:
            return next((e for e in self.of_type(event_type) if predicate(e)), None)

        return wait_until(found, timeout, interval=0.05, desc=f"a {event_type} event")


def answering(tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Wait until every task's web server answers on its first port (a running task may
    still be starting)."""
    for t in tasks:
        wait_until(lambda t=t: httpx.get(f"http://{t['host']}:{t['ports'][0]}/", timeout=2).status_code == 200,
                   10, desc=f"{t['id']} answering")  # fmt: skip
    return tasks
