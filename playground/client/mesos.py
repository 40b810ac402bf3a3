"""Typed clients for the Mesos master and agents (sync, on httpx)."""

from __future__ import annotations

from typing import Any, Self

import httpx

import playground.mesos.models as models
from playground.client.errors import ClientError, LeaderUnavailable, NotFound

DEFAULT_TIMEOUT = 5.0


class _Http:
    def __init__(self, base_url: str, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.base_url = base_url.rstrip("/")
        self._client = httpx.Client(timeout=timeout)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        url = self.base_url + path
        try:
            r = self._client.request(method, url, follow_redirects=True, **kw)
        except httpx.HTTPError as exc:
            raise ClientError(
                f"{method} {url}: {exc}", hint="is the cluster up? try `playground status`"
            ) from None
        if r.status_code == 404:
            raise NotFound(f"{method} {url}: 404 {r.text.strip()}", 404)
        if r.status_code == 503:
            raise LeaderUnavailable(
                f"{method} {url}: no leading master ({r.text.strip()})",
                503,
                hint="a quorum of masters must be running",
            )
        if r.status_code >= 400:
            raise ClientError(
                f"{method} {url}: HTTP {r.status_code}: {r.text.strip()}", r.status_code
            )
        return r

    def get_json(self, url_path: str, /, **params: Any) -> Any:
        return self._request("GET", url_path, params=params or None).json()


class MasterClient(_Http):
    """The Mesos master's HTTP API; redirects from non-leading masters are followed."""

    def state(self) -> models.MasterState:
        return models.decode(self._request("GET", "/master/state").content, models.MasterState)

    def state_raw(self) -> dict[str, Any]:
        return dict(self.get_json("/master/state"))

    def slaves(self) -> list[models.Agent]:
        data = self.get_json("/master/slaves")
        return [models.convert(s, models.Agent) for s in data["slaves"]]

    def frameworks(self) -> list[models.Framework]:
        data = self.get_json("/master/frameworks")
        return [models.convert(f, models.Framework) for f in data["frameworks"]]

    def tasks(self, limit: int = 1000) -> list[models.Task]:
        data = self.get_json("/master/tasks", limit=limit)
        return [models.convert(t, models.Task) for t in data["tasks"]]

    def version(self) -> models.Version:
        return models.decode(self._request("GET", "/version").content, models.Version)

    def metrics(self) -> dict[str, float]:
        return dict(self.get_json("/metrics/snapshot"))

    def healthy(self) -> bool:
        try:
            return self._request("GET", "/master/health").status_code == 200
        except ClientError:
            return False

    def call(self, call_type: str, **body: Any) -> dict[str, Any]:
        """A v1 operator API call, e.g. ``call("GET_AGENTS")``."""
        r = self._request(
            "POST",
            "/api/v1",
            json={"type": call_type, **body},
            headers={"Accept": "application/json"},
        )
        return dict(r.json()) if r.content else {}


class AgentClient(_Http):
    """A Mesos agent's HTTP API: state, health, metrics, sandbox files."""

    def state(self) -> dict[str, Any]:
        return dict(self.get_json("/state"))

    def metrics(self) -> dict[str, float]:
        return dict(self.get_json("/metrics/snapshot"))

    def browse(self, path: str) -> list[dict[str, Any]]:
        return list(self.get_json("/files/browse", path=path))

    def read(self, path: str, offset: int = 0, length: int | None = None) -> tuple[str, int]:
        params: dict[str, Any] = {"path": path, "offset": offset}
        if length is not None:
            params["length"] = length
        data = self.get_json("/files/read", **params)
        return str(data["data"]), int(data["offset"])
