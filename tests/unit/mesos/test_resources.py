"""Mesos resource and attribute grammar and arithmetic."""

from __future__ import annotations

import pytest

from playground.mesos.resources import (
    ResourceGrammarError,
    Resources,
    attributes_flat,
    parse_attributes,
    subtract_ranges,
)


def test_parse_default_agent_resources() -> None:
    """The topology's resource string parses into scalars and port ranges."""
    r = Resources.parse("cpus:4;mem:4096;disk:20000;ports:[31000-32000]")
    assert r.scalar("cpus") == 4 and r.scalar("mem") == 4096 and r.scalar("disk") == 20000
    assert r.port_ranges() == [(31000, 32000)]
    assert r.to_flat() == {
        "cpus": 4.0,
        "disk": 20000.0,
        "gpus": 0,
        "mem": 4096.0,
        "ports": "[31000-32000]",
    }


def test_roles_in_parentheses_are_static_reservations() -> None:
    """``cpus(slave_public):4`` is reserved to slave_public, as the v1 JSON shows."""
    r = Resources.parse("cpus(slave_public):4;mem:10")
    cpus = r.get("cpus", "slave_public")
    assert cpus is not None
    assert cpus.to_v1() == {
        "name": "cpus",
        "type": "SCALAR",
        "scalar": {"value": 4.0},
        "role": "slave_public",
        "reservations": [{"type": "STATIC", "role": "slave_public"}],
    }
    assert r.for_roles(["*"]).scalar("cpus") == 0
    assert r.for_roles(["slave_public"]).scalar("cpus") == 4


def test_subtract_and_contains_with_ranges() -> None:
    """Launching on ports removes exactly those ports from what is available."""
    total = Resources.parse("cpus:1;ports:[31000-31010]")
    used = Resources.parse("cpus:0.25;ports:[31002-31003,31010-31010]")
    left = total - used
    assert left.scalar("cpus") == pytest.approx(0.75)
    assert left.port_ranges() == [(31000, 31001), (31004, 31009)]
    assert total.contains(used)
    assert not left.contains(used)
    assert subtract_ranges([(1, 10)], [(0, 20)]) == []


def test_v1_round_trip() -> None:
    """Resources survive conversion to v1 JSON and back."""
    r = Resources.parse("cpus:2;mem:64;ports:[1-2,5-6]")
    back = Resources.from_v1(r.to_v1("*"))
    assert back.to_flat() == r.to_flat()


@pytest.mark.parametrize("bad", ["cpus", "cpus:abc", "ports:[2-1]", "ports:[1-2"])
def test_bad_grammar_is_rejected_with_a_message(bad: str) -> None:
    """Malformed resource strings raise a grammar error naming the culprit."""
    with pytest.raises(ResourceGrammarError):
        Resources.parse(bad)


def test_attributes_are_typed() -> None:
    """Attributes parse into TEXT, SCALAR, RANGES and SET, and flatten as /master/state shows them."""
    attrs = parse_attributes("zone:a;rack:r1;weight:2.5;levels:[1-3];colors:{red,blue}")
    assert [a["type"] for a in attrs] == ["TEXT", "TEXT", "SCALAR", "RANGES", "SET"]
    assert attributes_flat(attrs) == {
        "zone": "a",
        "rack": "r1",
        "weight": 2.5,
        "levels": "[1-3]",
        "colors": "{red,blue}",
    }
