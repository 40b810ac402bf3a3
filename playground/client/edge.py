"""A small client of the edge's admin API (marathon-lb's stats port)."""

from __future__ import annotations

import csv
import io
from typing import Any

import httpx

from playground.errors import PlaygroundError


class EdgeClientError(PlaygroundError):
    """The edge could not be reached or refused a request."""


class EdgeClient:
    """``EdgeClient(status["endpoints"]["edge_stats"])``."""

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.http = httpx.Client(timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> EdgeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _get(self, path: str) -> httpx.Response:
        try:
            r = self.http.get(self.url + path)
        except httpx.HTTPError as exc:
            raise EdgeClientError(
                f"the edge at {self.url} did not answer: {exc}",
                hint="is the public agent up? `playground status` shows edge-1",
            ) from None
        if r.status_code >= 400:
            raise EdgeClientError(f"GET {path} on the edge answered {r.status_code}: {r.text}")
        return r

    def status(self) -> dict[str, Any]:
        return dict(self._get("/v1/status").json())

    def routes(self) -> list[dict[str, Any]]:
        return list(self._get("/v1/routes").json())

    def config(self) -> str:
        return self._get("/_haproxy_getconfig").text

    def vhost_map(self) -> str:
        return self._get("/_haproxy_getvhostmap").text

    def app_map(self) -> str:
        return self._get("/_haproxy_getappmap").text

    def stats(self) -> list[dict[str, str]]:
        """``/haproxy?stats;csv`` as rows keyed by HAProxy's column names."""
        text = self._get("/haproxy?stats;csv").text
        lines = text.splitlines()
        if not lines:
            return []
        header = lines[0].lstrip("# ").rstrip(",").split(",")
        out = []
        for row in csv.reader(io.StringIO("\n".join(lines[1:]))):
            if row:
                out.append(dict(zip(header, row, strict=False)))
        return out

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        """A JSON call; an error answer raises with the edge's own message and hint."""
        try:
            r = self.http.request(method, self.url + path, json=body)
        except httpx.HTTPError as exc:
            raise EdgeClientError(
                f"the edge at {self.url} did not answer: {exc}",
                hint="is the public agent up? `playground status` shows edge-1",
            ) from None
        if r.status_code >= 400:
            try:
                err = r.json()
                message, hint = str(err["message"]), err.get("hint")
            except (ValueError, KeyError, TypeError):
                message, hint = f"{method} {path} on the edge answered {r.status_code}", r.text
            raise EdgeClientError(message, hint=hint)
        return r.json()

    def toxics(self) -> list[dict[str, Any]]:
        """Route faults: every toxic, ``active`` or past its revert time, with its stats."""
        return list(self._call("GET", "/v1/toxics"))

    def add_toxic(self, toxic: dict[str, Any]) -> dict[str, Any]:
        """Add a toxic in the edge's memory (Toxiproxy's JSON plus ``route``)."""
        return dict(self._call("POST", "/v1/toxics", toxic))

    def remove_toxic(self, name: str) -> dict[str, Any]:
        return dict(self._call("DELETE", f"/v1/toxics/{name}"))

    def reload_toxics(self) -> list[dict[str, Any]]:
        """Have the edge re-read the fault registry's route faults now."""
        return list(self._call("POST", "/v1/toxics/reload"))

    def reload(self) -> None:
        """``/_mlb_signal/hup``: re-read everything from Marathon now."""
        try:
            self.http.post(self.url + "/_mlb_signal/hup")
        except httpx.HTTPError as exc:
            raise EdgeClientError(f"the edge at {self.url} did not answer: {exc}") from None
