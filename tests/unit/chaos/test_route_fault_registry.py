"""Route faults in the fault registry: recorded with their toxics, read back by the edge,
reverted by heal and on time, refused with a reason; the CLI's units.

The edge is a fake client here (its routes and engine); tests/integration/test_route_faults.py
breaks the routes of a real cluster.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import pytest

from playground.chaos.faults import FaultError, Faults
from playground.cli.faults import FRACTION, MILLIS, RATE, route_toxics, toxics_summary
from playground.edge.toxics import registry_toxics
from tests.unit.chaos.test_faults import Clock, FakeBackend

LATENCY = {"type": "latency", "attributes": {"latency": 200, "jitter": 50}}


class FakeEdge:
    """The edge's status and routes; counts the reloads it is asked for."""

    def __init__(self, engine: str = "proxy") -> None:
        self.engine = engine
        self.reloads = 0

    def __enter__(self) -> FakeEdge:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def status(self) -> dict[str, Any]:
        return {"engine": self.engine}

    def routes(self) -> list[dict[str, Any]]:
        return [
            {"app": "/shop/web", "service_port": 10001},
            {"app": "/shop/web", "service_port": 10002},
            {"app": "/db", "service_port": 10003},
        ]

    def reload_toxics(self) -> list[dict[str, Any]]:
        self.reloads += 1
        return []


@pytest.fixture
def edge() -> FakeEdge:
    return FakeEdge()


@pytest.fixture
def faults(tmp_path: Path, edge: FakeEdge, monkeypatch: pytest.MonkeyPatch) -> Faults:
    reg = Faults(FakeBackend(tmp_path / "state"), clock=Clock())
    monkeypatch.setattr(reg, "_edge", lambda: edge)
    return reg


def test_a_route_fault_is_recorded_with_its_toxics_and_the_edge_reads_them(
    faults: Faults, edge: FakeEdge
) -> None:
    f = faults.break_route("shop/web", [LATENCY], port=10002, for_seconds=30)
    assert (f.id, f.kind, f.target) == ("f-1", "route", "/shop/web:10002")
    assert f.revert_at is not None and f.revert_at.startswith("2023-11-14T22:13:50")
    assert f.route == {"app": "/shop/web", "port": 10002, "toxics": [LATENCY]}
    assert f.to_dict()["route"] == f.route
    assert edge.reloads == 1
    (toxic,) = registry_toxics(faults.path)
    assert (toxic.name, toxic.app, toxic.port, toxic.fault) == (
        "f-1-latency",
        "/shop/web",
        10002,
        "f-1",
    )
    assert toxic.attributes == {"latency": 200.0, "jitter": 50.0}
    started = json.loads(faults.state.events_file.read_text().splitlines()[0])
    assert (started["kind"], started["how"], started["target"]) == (
        "fault.started",
        "route",
        "/shop/web:10002",
    )


def test_node_faults_keep_their_json_shape(faults: Faults) -> None:
    assert "route" not in faults.break_node("agent-1").to_dict()


def test_heal_by_app_id_reverts_its_route_faults_only(faults: Faults, edge: FakeEdge) -> None:
    a = faults.break_route("/shop/web", [LATENCY])
    b = faults.break_route("/shop/web", [{"type": "reset_peer"}], port=10001)
    c = faults.break_route("/db", [{"type": "bandwidth", "attributes": {"rate": 64}}])
    node = faults.break_node("agent-1")
    assert [f.id for f in faults.route_faults("/shop/web:10001")] == [b.id]
    healed = faults.heal("/shop/web")
    assert sorted(f.id for f in healed) == [a.id, b.id]
    assert {f.id for f in faults.active()} == {c.id, node.id}
    assert [t.fault for t in registry_toxics(faults.path)] == [c.id]
    assert edge.reloads == 4  # three breaks, one heal


def test_a_due_route_fault_is_reverted_and_leaves_the_edge(faults: Faults, edge: FakeEdge) -> None:
    f = faults.break_route("/db", [{"type": "loss", "attributes": {"probability": 0.5}}], None, 5)
    faults.clock.now += 6  # type: ignore[attr-defined]
    assert [x.id for x in faults.revert_due()] == [f.id]
    assert registry_toxics(faults.path) == []
    assert edge.reloads == 2


@pytest.mark.parametrize(
    ("app", "port", "toxics", "message", "hint"),
    [
        ("/nope", None, [LATENCY], "the edge serves no route for /nope", "routes: /db, /shop/web"),
        ("/db", 10001, [LATENCY], "/db has no route on service port 10001", "ports: 10003"),
        ("/db", None, [], "needs at least one toxic", "--latency"),
        ("/db", None, [{"type": "loss", "attributes": {"probability": 2}}],
         "loss probability must be above 0 and at most 1", None),
        ("/db", None, [{"type": "bandwidth", "attributes": {"rate": 0}}], "rate above 0", None),
    ],
)  # fmt: skip
def test_bad_route_faults_are_refused_saying_why(
    faults: Faults,
    app: str,
    port: int | None,
    toxics: list[dict[str, Any]],
    message: str,
    hint: str | None,
) -> None:
    with pytest.raises(FaultError, match=message) as info:
        faults.break_route(app, toxics, port)
    if hint:
        assert hint in str(info.value.hint)
    assert faults.active() == []


def test_the_haproxy_engine_refuses_route_faults(faults: Faults, edge: FakeEdge) -> None:
    edge.engine = "haproxy"
    with pytest.raises(FaultError, match="need the kit's proxy engine") as info:
        faults.break_route("/db", [LATENCY])
    assert "proxy" in str(info.value.hint)


# ---- the CLI's units ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kind", "text", "value"),
    [
        (MILLIS, "200ms", 200.0),
        (MILLIS, "0.2s", 200.0),
        (MILLIS, "150", 150.0),
        (RATE, "64KB", 64.0),
        (RATE, "64kb/s", 64.0),
        (RATE, "1MB", 1000.0),
        (RATE, "512B", 0.512),
        (FRACTION, "0.1", 0.1),
        (FRACTION, "25%", 0.25),
    ],
)
def test_cli_units(kind: click.ParamType, text: str, value: float) -> None:
    assert kind.convert(text, None, None) == pytest.approx(value)


@pytest.mark.parametrize(("kind", "text"), [(MILLIS, "fast"), (MILLIS, "2h"), (RATE, "10Gb")])
def test_cli_units_refuse_what_they_cannot_read(kind: click.ParamType, text: str) -> None:
    with pytest.raises(click.BadParameter, match="is not a"):
        kind.convert(text, None, None)


def test_cli_options_become_toxiproxy_toxics_and_read_back_in_words() -> None:
    toxics = route_toxics(200, 50, 0.1, 64, True, None, "upstream", 1.0)
    assert [t["type"] for t in toxics] == ["latency", "bandwidth", "loss", "reset_peer"]
    assert {t["stream"] for t in toxics} == {"upstream"}
    assert toxics[0]["attributes"] == {"latency": 200, "jitter": 50}
    assert toxics_summary({"toxics": toxics}) == (
        "latency 200ms+-50ms, bandwidth 64KB/s, loss 10%, reset (upstream)"
    )
