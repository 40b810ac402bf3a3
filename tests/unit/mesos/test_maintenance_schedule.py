"""The maintenance schedule's rules (docs/maintenance.md): validation and machine modes."""

from __future__ import annotations

import pytest

from playground.mesos.maintenance import DOWN, DRAINING, MaintenanceError, Schedule

A = {"hostname": "Agent-A", "ip": "10.0.0.1"}
B = {"hostname": "agent-b", "ip": "10.0.0.2"}
START = {"start": {"nanoseconds": 1_443_830_400_000_000_000}}


def window(*machines: dict[str, str], unavailability: dict | None = None) -> dict:  # type: ignore[type-arg]
    return {"machine_ids": list(machines), "unavailability": unavailability or START}


def test_scheduled_machines_drain_and_offers_carry_their_unavailability() -> None:
    s = Schedule()
    changed = s.update(
        {
            "windows": [
                window(A),
                window(
                    B, unavailability={"start": {"nanoseconds": 5}, "duration": {"nanoseconds": 10}}
                ),
            ]
        }
    )
    assert changed == {("agent-a", "10.0.0.1"), ("agent-b", "10.0.0.2")}
    # The hostname is not case-sensitive; both fields must match.
    assert s.mode(("agent-a", "10.0.0.1")) == DRAINING
    assert s.mode(("agent-a", "10.0.0.9")) is None
    assert s.unavailability(("agent-b", "10.0.0.2")) == {
        "start": {"nanoseconds": 5},
        "duration": {"nanoseconds": 10},
    }
    assert s.status() == {
        "draining_machines": [
            {"id": {"hostname": "agent-a", "ip": "10.0.0.1"}},
            {"id": {"hostname": "agent-b", "ip": "10.0.0.2"}},
        ]
    }
    # Posting a new schedule replaces the old one: B is up again.
    assert s.update({"windows": [window(A)]}) == {("agent-b", "10.0.0.2")}
    assert s.mode(("agent-b", "10.0.0.2")) is None


@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        ({"windows": [{"machine_ids": [], "unavailability": START}]}, "is empty"),
        ({"windows": [{"machine_ids": [A]}]}, "unavailability start"),
        ({"windows": [window(A), window(A)]}, "more than once"),
        ({"windows": [window({"hostname": "", "ip": ""})]}, "are empty"),
        ({"windows": [window({"hostname": "x", "ip": "not-an-ip"})]}, "parse IP"),
    ],
)
def test_invalid_schedules_are_rejected_and_change_nothing(schedule: dict, message: str) -> None:  # type: ignore[type-arg]
    s = Schedule()
    s.update({"windows": [window(B)]})
    with pytest.raises(MaintenanceError, match=message):
        s.update(schedule)
    assert s.modes == {("agent-b", "10.0.0.2"): DRAINING}


def test_down_needs_a_schedule_and_up_ends_maintenance() -> None:
    s = Schedule()
    with pytest.raises(MaintenanceError, match="not part of a maintenance schedule"):
        s.down([A])
    s.update({"windows": [window(A, B)]})
    with pytest.raises(MaintenanceError, match="empty"):
        s.down([])
    assert s.down([A]) == [("agent-a", "10.0.0.1")]
    assert s.mode(("agent-a", "10.0.0.1")) == DOWN
    assert s.status()["down_machines"] == [{"hostname": "agent-a", "ip": "10.0.0.1"}]
    # A DOWN machine must stay in any new schedule.
    with pytest.raises(MaintenanceError, match="must remain"):
        s.update({"windows": [window(B)]})
    with pytest.raises(MaintenanceError, match="not in DOWN mode"):
        s.up([B])
    s.up([A])
    assert s.mode(("agent-a", "10.0.0.1")) is None
    assert s.windows == [window(B)]  # A left the schedule, B still drains
    assert s.mode(("agent-b", "10.0.0.2")) == DRAINING


def test_registry_round_trip_keeps_modes() -> None:
    s = Schedule()
    s.update({"windows": [window(A, B)]})
    s.down([B])
    again = Schedule.from_registry(s.to_registry())
    assert again.modes == s.modes and again.windows == s.windows
    assert Schedule.from_registry(None).modes == {}
