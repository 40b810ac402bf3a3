"""Probes of Marathon: does it answer, is it subscribed to the leading master."""

from typing import Any

from playground.chaos import extension as ext
from playground.client import ClientError

__all__ = ["marathon_connected", "marathon_ping", "wait_marathon_ready"]


def marathon_ping(configuration: dict[str, Any] | None = None) -> bool:
    """True when Marathon answers ``/ping``."""
    try:
        with ext.marathon(configuration) as client:
            return client.ping()
    except ClientError:
        return False


def marathon_connected(configuration: dict[str, Any] | None = None) -> bool:
    """True when Marathon answers and the leading master lists its framework as active."""
    if not marathon_ping(configuration):
        return False
    status = ext.backend(configuration).cluster.status()
    return any(
        fw.get("name") == "marathon" and fw.get("active") for fw in status.get("frameworks", [])
    )


def wait_marathon_ready(within: float = 60, configuration: dict[str, Any] | None = None) -> bool:
    """Wait up to ``within`` cluster seconds until Marathon answers and is subscribed."""
    ok, waited = ext.poll(
        lambda: marathon_connected(configuration), ext.wall_seconds(configuration, within)
    )
    if not ok:
        raise ext.fail(f"Marathon is not answering and subscribed after {waited:.1f}s")
    return True
