"""Probes of an app's route through the edge: its faults, its latency, its answers."""

import statistics
import time
from typing import Any

import httpx

from playground.chaos import extension as ext
from playground.client.edge import EdgeClient

__all__ = ["route_answering", "route_faults", "route_latency"]


def _url(app_id: str, port: int, path: str, configuration: dict[str, Any] | None) -> str:
    endpoints = ext.backend(configuration).endpoints()
    if not endpoints.get("edge_stats"):
        raise ext.fail("the cluster has no edge")
    app_id = "/" + app_id.strip("/")
    with EdgeClient(str(endpoints["edge_stats"]), timeout=5) as edge:
        routes = [r for r in edge.routes() if r["app"] == app_id]
    routes = [r for r in routes if not port or r["service_port"] == port]
    if not routes:
        raise ext.fail(f"the edge serves no route for {app_id}" + (f":{port}" if port else ""))
    return f"http://{endpoints['edge']}:{routes[0]['service_port']}{path}"


def route_faults(app_id: str = "", configuration: dict[str, Any] | None = None) -> list:
    """The active route faults (of ``app_id``'s routes), as ``playground faults --json``."""
    reg = ext.faults(configuration)
    return [f.to_dict() for f in reg.route_faults(app_id or None)]


def route_latency(
    app_id: str,
    requests: int = 5,
    path: str = "/",
    port: int = 0,
    configuration: dict[str, Any] | None = None,
) -> float:
    """Median milliseconds of ``requests`` GETs through the edge (each a new connection)."""
    url = _url(app_id, port, path, configuration)
    times = []
    for _ in range(max(int(requests), 1)):
        start = time.monotonic()
        try:
            httpx.get(url, timeout=10, headers={"Connection": "close"}).raise_for_status()
        except httpx.HTTPError as exc:
            raise ext.fail(f"GET {url} through the edge failed: {exc}") from None
        times.append(time.monotonic() - start)
    return round(statistics.median(times) * 1000, 1)


def route_answering(
    app_id: str,
    requests: int = 10,
    path: str = "/",
    port: int = 0,
    configuration: dict[str, Any] | None = None,
) -> int:
    """How many of ``requests`` GETs through the edge got a 200 answer."""
    url = _url(app_id, port, path, configuration)
    ok = 0
    for _ in range(max(int(requests), 1)):
        try:
            ok += httpx.get(url, timeout=10, headers={"Connection": "close"}).status_code == 200
        except httpx.HTTPError:
            pass
    return ok
