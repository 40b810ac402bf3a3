"""Actions on an app's route through the edge: Toxiproxy's toxics as route faults.

``app_id`` is the app as ``playground routes`` shows it; ``port`` (0: every service port
of the app) picks one of its routes; ``direction`` is ``downstream`` (server to client) or
``upstream``. Every fault goes through ``playground.chaos.Faults.break_route``: it is
listed by ``playground faults``, recorded on the timeline, reverted after ``for_seconds``
when given, and remembered for this run, so ``remove_route_faults()`` (no app) removes
exactly what the experiment added (``node.actions.heal_node()`` heals them too).
"""

from typing import Any

from playground.chaos import extension as ext
from playground.chaos.faults import ROUTE

__all__ = [
    "add_latency",
    "add_loss",
    "limit_bandwidth",
    "remove_route_faults",
    "reset_connections",
]


def _break(
    app_id: str,
    toxic: dict[str, Any],
    port: int,
    direction: str,
    for_seconds: float,
    configuration: dict[str, Any] | None,
) -> dict:
    reg = ext.faults(configuration)
    fault = reg.break_route(
        app_id, [{**toxic, "stream": direction}], port or None, for_seconds or None
    )
    ext.remember(fault)
    return fault.to_dict()


def add_latency(
    app_id: str,
    latency_ms: float = 200,
    jitter_ms: float = 0,
    port: int = 0,
    direction: str = "downstream",
    for_seconds: float = 0,
    configuration: dict[str, Any] | None = None,
) -> dict:
    """Delay the data on the app's edge route by latency_ms +/- jitter_ms; returns the fault."""
    toxic = {"type": "latency", "attributes": {"latency": latency_ms, "jitter": jitter_ms}}
    return _break(app_id, toxic, port, direction, for_seconds, configuration)


def add_loss(
    app_id: str,
    probability: float = 0.1,
    port: int = 0,
    direction: str = "downstream",
    for_seconds: float = 0,
    configuration: dict[str, Any] | None = None,
) -> dict:
    """Reset this fraction of the route's connections when their first data flows."""
    toxic = {"type": "loss", "attributes": {"probability": probability}}
    return _break(app_id, toxic, port, direction, for_seconds, configuration)


def limit_bandwidth(
    app_id: str,
    rate_kbps: float = 64,
    port: int = 0,
    direction: str = "downstream",
    for_seconds: float = 0,
    configuration: dict[str, Any] | None = None,
) -> dict:
    """Pass the route's data at most at rate_kbps kilobytes (1000 bytes) per second."""
    toxic = {"type": "bandwidth", "attributes": {"rate": rate_kbps}}
    return _break(app_id, toxic, port, direction, for_seconds, configuration)


def reset_connections(
    app_id: str,
    timeout_ms: float = 0,
    port: int = 0,
    direction: str = "downstream",
    for_seconds: float = 0,
    configuration: dict[str, Any] | None = None,
) -> dict:
    """Reset (TCP RST) the route's connections timeout_ms after their data flows."""
    toxic = {"type": "reset_peer", "attributes": {"timeout": timeout_ms}}
    return _break(app_id, toxic, port, direction, for_seconds, configuration)


def remove_route_faults(app_id: str = "", configuration: dict[str, Any] | None = None) -> list:
    """Revert the route faults of ``app_id``, or (without one) those this run added."""
    reg = ext.faults(configuration)
    if app_id:
        reverted = reg.heal("/" + app_id.strip("/"))
    else:
        reverted = reg.revert({f.id for f in ext.remembered() if f.kind == ROUTE})
    ext.forget({f.id for f in reverted})
    return [f.to_dict() for f in reverted]
