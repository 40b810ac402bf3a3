"""Replica placement across failure domains, and ha-update one step at a time."""

from __future__ import annotations

import pytest

from playground.storage.placement import PlacementError, Pool, ha_update, place_volume

DEFAULT = [
    Pool("agent-1", "a", "r1", free_gb=100),
    Pool("agent-2", "b", "r1", free_gb=300),
    Pool("agent-3", "c", "r1", free_gb=200),
]
HA = [
    Pool("agent-1", "a", "r1", free_gb=100),
    Pool("agent-2", "a", "r2", free_gb=500),
    Pool("agent-3", "b", "r1", free_gb=100),
    Pool("agent-4", "b", "r2", free_gb=100),
]


def test_replicas_go_to_distinct_zones_most_free_space_first() -> None:
    assert place_volume(1, DEFAULT, 10) == ["agent-2"]
    assert place_volume(3, DEFAULT, 10) == ["agent-2", "agent-3", "agent-1"]
    # Two pools in zone a: the roomier one, then zone b (never both of zone a).
    assert place_volume(2, HA, 10) == ["agent-2", "agent-3"]


def test_more_replicas_than_failure_domains_is_a_clear_error() -> None:
    with pytest.raises(PlacementError, match="needs 3 zones") as err:
        place_volume(3, HA, 10)
    assert "available: a, b" in str(err.value) and err.value.hint
    down = [DEFAULT[0], DEFAULT[1], Pool("agent-3", "c", "r1", online=False, free_gb=200)]
    with pytest.raises(PlacementError, match="needs 3 zones"):
        place_volume(3, down, 10)
    with pytest.raises(PlacementError, match="not supported"):
        place_volume(4, DEFAULT, 10)


def test_rack_aware_placement_uses_racks_as_domains() -> None:
    nodes = place_volume(3, HA, 10, rack_aware=True)
    racks = {(p.zone, p.rack) for p in HA if p.node in nodes}
    assert len(racks) == 3


def test_not_enough_space_says_so() -> None:
    with pytest.raises(PlacementError, match="free space"):
        place_volume(2, DEFAULT, 250)


def test_ha_update_steps_by_one_and_keeps_the_working_copy() -> None:
    one = place_volume(1, DEFAULT, 10)
    two = ha_update(one, 2, DEFAULT, 10)
    assert two[0] == one[0] and len(set(two)) == 2
    with pytest.raises(PlacementError, match="one step at a time") as err:
        ha_update(one, 3, DEFAULT, 10)
    assert "ha-update to 2" in (err.value.hint or "")
    three = ha_update(two, 3, DEFAULT, 10)
    assert sorted(three) == ["agent-1", "agent-2", "agent-3"]
    assert ha_update(three, 3, DEFAULT, 10) == three
    # Shrinking drops an offline replica first, never the working copy.
    pools = [DEFAULT[0], Pool("agent-2", "b", online=False, free_gb=300), DEFAULT[2]]
    assert ha_update(three, 2, pools, 10, working="agent-2") == [r for r in three if r != "agent-1"]
    assert "agent-2" not in ha_update(three, 2, pools, 10, working="agent-3")
