"""Time scale conversions and address plans."""

from __future__ import annotations

import itertools

import pytest

from playground.cluster import addresses
from playground.cluster.timescale import TimeScale
from playground.cluster.topology import load


def test_scaled_durations_respect_floors() -> None:
    """75 s of cluster time is 7.5 s at scale 10; checks never go below 1 s and pings below 0.5 s."""
    ts = TimeScale(10)
    assert ts.wall(75) == 7.5
    assert ts.check(5) == 1.0
    assert ts.ping(1) == 0.5
    assert TimeScale(1).wall(75) == 75
    assert ts.describe(75) == "75s (7.5s wall)"


def test_time_scale_below_one_is_refused() -> None:
    """A time scale below 1 (slower than real time) is an error."""
    with pytest.raises(ValueError):
        TimeScale(0.5)


def test_cluster_clock_runs_scaled() -> None:
    """The cluster clock advances scale times faster than the wall clock."""
    ts = TimeScale(10, epoch_wall=1000.0, epoch_cluster=1000.0)
    assert ts.cluster_now(1001.0) == 1010.0


def test_per_ip_plan_gives_every_node_its_own_address() -> None:
    """In per-IP mode each node has its own 127.77.K.N, with the real systems' ports; the
    edge runs on its public agent's address (marathon-lb on the public agent)."""
    plan = addresses.plan(load("ha"), "per-ip", 7)
    hosts = [a.host for n, a in plan.items() if not n.startswith("edge-")]
    assert len(set(hosts)) == len(hosts)
    assert plan["edge-1"].host == plan["public-agent-1"].host
    assert plan["edge-1"].port == 9090 and plan["edge-1"].port_of("http") in (80, 8080)
    assert all(h.startswith("127.77.7.") for h in hosts)
    assert (
        plan["master-2"].port == 5050
        and plan["agent-8"].port == 5051
        and plan["coordinator-1"].port == 2181
    )
    assert plan["agent-1"].task_ports == (31000, 32000)


def test_shared_ip_plan_uses_disjoint_ports() -> None:
    """On one shared address, API ports and task port ranges never overlap."""
    plan = addresses.plan(load("ha"), "shared-ip", 3)
    ports = [a.port for a in plan.values()]
    assert len(set(ports)) == len(ports)
    ranges = sorted(a.task_ports for a in plan.values() if a.task_ports)
    for (_, hi), (lo, _) in itertools.pairwise(ranges):
        assert hi < lo
