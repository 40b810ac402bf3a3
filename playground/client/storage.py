"""A small client of the storage node's HTTP API (volumes, snapshots, schedules, backups)."""

from __future__ import annotations

import getpass
import os
from typing import Any
from urllib.parse import quote

import httpx

from playground.client import auth
from playground.errors import PlaygroundError


class StorageClientError(PlaygroundError):
    """The storage node refused a request, or could not be reached."""

    def __init__(self, message: str, hint: str | None = None, status: int | None = None) -> None:
        super().__init__(message, hint)
        self.status = status


def _seg(value: str) -> str:
    """A caller's string as exactly one URL path segment (no `/`, and `.`/`..` escaped)."""
    out = quote(value, safe="")
    return out.replace(".", "%2E") if out in (".", "..") else out


def _user() -> str:
    try:
        return f"{getpass.getuser()}@cli"
    except (KeyError, OSError):
        return f"uid{os.getuid()}@cli"


class StorageClient:
    def __init__(
        self,
        url: str,
        timeout: float = 120.0,
        who: str | None = None,
        token: str | None = None,
    ) -> None:
        """A client of the storage node at ``url``.

        Args:
            url: the storage node's base URL (``endpoints.storage``).
            timeout: seconds per request.
            who: who asks, for the storage node's audit log.
            token: the cluster's platform token (the control API refuses callers without).
        """
        self.url = url.rstrip("/")
        headers = {"X-Playground-User": who or _user(), **auth.headers(token)}
        self.http = httpx.Client(timeout=timeout, headers=headers)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> StorageClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
    ) -> Any:
        try:
            r = self.http.request(method, f"{self.url}{path}", json=body, params=params)
        except httpx.HTTPError as exc:
            raise StorageClientError(
                f"the storage node at {self.url} does not answer ({type(exc).__name__})",
                hint="`playground status` shows whether storage-1 runs; `playground up` starts it",
            ) from None
        try:
            data = r.json()
        except ValueError:
            data = {"message": r.text}
        if r.status_code >= 400:
            msg = data.get("message") if isinstance(data, dict) else str(data)
            hint = data.get("hint") if isinstance(data, dict) else None
            raise StorageClientError(msg or f"HTTP {r.status_code}", hint, r.status_code)
        return data

    # volumes
    def volumes(self) -> list[dict[str, Any]]:
        return list(self.call("GET", "/v1/volumes"))

    def volume(self, ref: str) -> dict[str, Any]:
        return dict(self.call("GET", f"/v1/volumes/{_seg(ref)}"))

    def create_volume(self, **spec: Any) -> dict[str, Any]:
        return dict(self.call("POST", "/v1/volumes", spec))

    def delete_volume(self, ref: str) -> dict[str, Any]:
        return dict(self.call("DELETE", f"/v1/volumes/{_seg(ref)}"))

    def resize(self, ref: str, size: float) -> dict[str, Any]:
        return dict(self.call("POST", f"/v1/volumes/{_seg(ref)}/resize", {"size": size}))

    def ha_update(self, ref: str, repl: int) -> dict[str, Any]:
        return dict(self.call("POST", f"/v1/volumes/{_seg(ref)}/ha-update", {"repl": repl}))

    def sync(self, ref: str) -> dict[str, Any]:
        return dict(self.call("POST", f"/v1/volumes/{_seg(ref)}/sync"))

    def verify(self, ref: str) -> dict[str, Any]:
        return dict(self.call("POST", f"/v1/volumes/{_seg(ref)}/verify"))

    def clone(self, ref: str, name: str) -> dict[str, Any]:
        return dict(self.call("POST", f"/v1/volumes/{_seg(ref)}/clone", {"name": name}))

    def pools(self) -> list[dict[str, Any]]:
        return list(self.call("GET", "/v1/pools"))

    # snapshots
    def snapshots(self, volume: str | None = None) -> list[dict[str, Any]]:
        return list(
            self.call("GET", "/v1/snapshots", params={"volume": volume} if volume else None)
        )

    def create_snapshot(self, volume: str, name: str | None = None) -> dict[str, Any]:
        return dict(
            self.call(
                "POST", f"/v1/volumes/{_seg(volume)}/snapshots", {"name": name} if name else {}
            )
        )

    def restore(self, snapshot: str, to: str | None = None) -> dict[str, Any]:
        return dict(
            self.call("POST", f"/v1/snapshots/{_seg(snapshot)}/restore", {"to": to} if to else {})
        )

    def delete_snapshot(self, snapshot: str) -> dict[str, Any]:
        return dict(self.call("DELETE", f"/v1/snapshots/{_seg(snapshot)}"))

    # schedules
    def schedules(self) -> list[dict[str, Any]]:
        return list(self.call("GET", "/v1/schedules"))

    def create_schedule(self, **spec: Any) -> dict[str, Any]:
        return dict(self.call("POST", "/v1/schedules", spec))

    def delete_schedule(self, sched: str) -> dict[str, Any]:
        return dict(self.call("DELETE", f"/v1/schedules/{_seg(sched)}"))

    # cloud backups
    def backups(self, volume: str | None = None) -> list[dict[str, Any]]:
        return list(
            self.call("GET", "/v1/cloudsnaps", params={"volume": volume} if volume else None)
        )

    def backup(self, volume: str) -> dict[str, Any]:
        return dict(self.call("POST", f"/v1/volumes/{_seg(volume)}/cloudsnaps"))

    def backup_status(self, backup_id: str) -> dict[str, Any]:
        return dict(self.call("GET", f"/v1/cloudsnaps/{_seg(backup_id)}"))

    def backup_restore(self, backup_id: str, to: str) -> dict[str, Any]:
        return dict(self.call("POST", f"/v1/cloudsnaps/{_seg(backup_id)}/restore", {"to": to}))

    # policy
    def policy(self) -> dict[str, Any]:
        return dict(self.call("GET", "/v1/policy"))
