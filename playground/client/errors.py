"""Errors of the typed clients."""

from __future__ import annotations

from playground.errors import PlaygroundError


class ClientError(PlaygroundError):
    """A request to a cluster API failed (connection, HTTP status or payload)."""

    def __init__(self, message: str, status: int | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint)
        self.status = status


class NotFound(ClientError):
    """The cluster answered 404."""


class LeaderUnavailable(ClientError):
    """No leading master (no quorum, or every master is down)."""
