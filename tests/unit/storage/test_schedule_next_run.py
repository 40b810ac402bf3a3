"""When a storage schedule is next due (``playground.storage.server.next_run``), on the
cluster clock: ``daily`` schedules before, at and after their time of day, across days,
months and years; ``every_minutes`` schedules; the node's method gives the same."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from playground.storage.server import StorageNode, next_run


def ts(text: str) -> float:
    """A cluster-clock time (UTC) as seconds."""
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC).timestamp()


def daily(at: str) -> dict[str, Any]:
    return {"every_minutes": None, "daily": at}


@pytest.mark.parametrize(
    ("at", "after", "due"),
    [
        # before HH:MM: the same day
        ("12:30", "2026-12-05T10:00:00", "2026-12-05T12:30:00"),
        ("12:30", "2026-12-05T12:29:59.5", "2026-12-05T12:30:00"),
        ("00:01", "2026-12-05T00:00:00", "2026-12-05T00:01:00"),
        # at or after HH:MM: the next day (never twice in one day)
        ("12:30", "2026-12-05T12:30:00", "2026-12-06T12:30:00"),
        ("12:30", "2026-12-05T12:30:00.001", "2026-12-06T12:30:00"),
        ("12:30", "2026-12-05T23:59:59", "2026-12-06T12:30:00"),
        ("00:00", "2026-12-05T00:00:00", "2026-12-06T00:00:00"),
        ("00:00", "2026-12-05T18:00:00", "2026-12-06T00:00:00"),
        # rollover across a month, a year and a leap day
        ("23:59", "2026-12-31T23:59:00", "2027-01-01T23:59:00"),
        ("06:00", "2026-11-30T07:00:00", "2026-12-01T06:00:00"),
        ("06:00", "2028-02-28T07:00:00", "2028-02-29T06:00:00"),
        ("23:59", "2026-12-05T23:58:30", "2026-12-05T23:59:00"),
    ],
)
def test_daily_is_the_next_hh_mm_of_the_cluster_clock(at: str, after: str, due: str) -> None:
    assert next_run(daily(at), ts(after)) == ts(due)


def test_daily_runs_once_a_day_when_chained() -> None:
    """Each run computed from the previous one's time: one day apart, always at HH:MM."""
    t = ts("2026-12-05T08:00:00")
    runs = []
    for _ in range(4):
        t = next_run(daily("07:15"), t)
        runs.append(dt.datetime.fromtimestamp(t, dt.UTC).isoformat())
    assert runs == [
        "2026-12-06T07:15:00+00:00",
        "2026-12-07T07:15:00+00:00",
        "2026-12-08T07:15:00+00:00",
        "2026-12-09T07:15:00+00:00",
    ]


def test_the_cluster_clock_not_the_wall_clock_decides() -> None:
    """A cluster clock ahead of the wall clock (time scale): only ``after`` counts."""
    ahead = ts("2031-06-01T22:00:00")
    assert next_run(daily("21:00"), ahead) == ts("2031-06-02T21:00:00")
    assert next_run(daily("23:00"), ahead) == ts("2031-06-01T23:00:00")


def test_every_minutes_is_that_long_after() -> None:
    after = ts("2026-12-05T23:59:30")
    assert next_run({"every_minutes": 1.0, "daily": None}, after) == after + 60
    assert next_run({"every_minutes": 90, "daily": None}, after) == after + 5400


def test_the_node_method_is_the_same_computation() -> None:
    after = ts("2026-12-05T10:00:00")
    node = object.__new__(StorageNode)  # next_run needs nothing of a running node
    assert node.next_run(daily("12:30"), after) == next_run(daily("12:30"), after)
