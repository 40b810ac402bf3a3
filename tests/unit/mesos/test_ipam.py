"""The agent's IPAM: address layout, allocation, release, exhaustion, persistence, recovery."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from playground.cluster import topology as topo_mod
from playground.mesos import ipam


def _ipam(tmp_path: Path, size: int = 3, **kw: bool) -> ipam.Ipam:
    pools = {"dcos": ipam.Pool("dcos", "agent-2", "127.81.5", size)}
    return ipam.Ipam(tmp_path / "meta" / "ipam.json", "agent-2", pools, **kw)


def test_layout_gives_every_agent_its_own_slice_per_network_and_cluster() -> None:
    """127.(80 + network_index * agents + agent_index).K.0/24: disjoint per agent, network and block."""
    topo = topo_mod.load("default")
    assert {a.name: ipam.pools_for(topo, a.name, 5)["dcos"].subnet for a in topo.agents} == {
        "agent-1": "127.80.5.0/24",
        "agent-2": "127.81.5.0/24",
        "agent-3": "127.82.5.0/24",
        "public-agent-1": "127.83.5.0/24",
    }
    assert ipam.pools_for(topo, "master-1", 5) == {}
    two = topo_mod.parse(
        {
            "name": "two",
            "networks": [{"name": "a"}, {"name": "b", "size": 2}],
            "nodes": [
                {"name": "coordinator-1", "role": "coordinator"},
                {"name": "master-1", "role": "master"},
                {"name": "agent-1", "role": "agent"},
                {"name": "agent-2", "role": "agent"},
            ],
        }
    )
    prefixes = {
        (a.name, n): p.prefix for a in two.agents for n, p in ipam.pools_for(two, a.name, 7).items()
    }
    assert prefixes == {
        ("agent-1", "a"): "127.80.7",
        ("agent-2", "a"): "127.81.7",
        ("agent-1", "b"): "127.82.7",
        ("agent-2", "b"): "127.83.7",
    }
    assert ipam.pools_for(two, "agent-2", 7)["b"].addresses() == ["127.83.7.1", "127.83.7.2"]
    # The largest topology the parser accepts still stays below 127.255.
    assert ipam.slice_octet(0, ipam.MAX_SLICES - 1, ipam.MAX_SLICES) == 254


def test_allocate_hands_out_distinct_addresses_then_exhausts(tmp_path: Path) -> None:
    """Each container gets its own address; a fourth one on a pool of 3 fails naming the pool."""
    a = _ipam(tmp_path)
    got = [a.allocate("dcos", f"c{i}", f"t{i}") for i in range(3)]
    assert got == ["127.81.5.1", "127.81.5.2", "127.81.5.3"]
    assert a.allocate("dcos", "c1", "t1") == "127.81.5.2"  # idempotent per container
    with pytest.raises(ipam.PoolExhausted) as err:
        a.allocate("dcos", "c3", "t3")
    assert str(err.value) == "the pool of agent-2 (127.81.5.0/24, size 3) is exhausted"
    assert set(a.held("dcos")) == set(got)


def test_release_frees_and_the_next_allocation_does_not_reuse_at_once(tmp_path: Path) -> None:
    """A freed address comes back only after the others (host-local's round robin)."""
    a = _ipam(tmp_path, size=4)
    for i in range(3):
        a.allocate("dcos", f"c{i}")
    assert a.release("c0") == ["127.81.5.1"]
    assert a.release("c0") == []
    assert a.allocate("dcos", "c3") == "127.81.5.4"
    assert a.allocate("dcos", "c4") == "127.81.5.1"  # wraps round to the freed one
    with pytest.raises(ipam.PoolExhausted):
        a.allocate("dcos", "c5")


def test_no_address_is_handed_out_while_held(tmp_path: Path) -> None:
    """Over many allocate/release rounds, no address ever has two holders."""
    a = _ipam(tmp_path, size=5)
    holders: dict[str, str] = {}
    for i in range(60):
        cid = f"c{i}"
        if len(holders) == 5:
            victim = sorted(holders.values())[i % 5]
            (ip,) = a.release(victim)
            assert holders.pop(ip) == victim
        ip = a.allocate("dcos", cid)
        assert ip not in holders
        holders[ip] = cid
    assert {ip: h["container_id"] for ip, h in a.held("dcos").items()} == holders


def test_allocations_survive_a_restart(tmp_path: Path) -> None:
    """A new Ipam on the same file (a restarted agent) knows what is held and where it was."""
    a = _ipam(tmp_path)
    a.allocate("dcos", "c0", "t0")
    a.allocate("dcos", "c1", "t1")
    a.release("c0")
    data = json.loads((tmp_path / "meta" / "ipam.json").read_text())
    assert data == {
        "schema_version": 1,
        "networks": {
            "dcos": {
                "subnet": "127.81.5.0/24",
                "size": 3,
                "last": "127.81.5.2",
                "allocations": {"127.81.5.2": {"container_id": "c1", "task_id": "t1"}},
            }
        },
    }
    b = _ipam(tmp_path)
    assert b.held("dcos") == {"127.81.5.2": {"container_id": "c1", "task_id": "t1"}}
    assert b.allocate("dcos", "c2") == "127.81.5.3"
    assert b.allocate("dcos", "c3") == "127.81.5.1"
    with pytest.raises(ipam.PoolExhausted):
        b.allocate("dcos", "c4")


def test_reconcile_frees_the_dead_and_keeps_the_live(tmp_path: Path) -> None:
    """Recovery: addresses of gone containers are freed; live ones keep (or get back) theirs."""
    a = _ipam(tmp_path)
    a.allocate("dcos", "live", "t-live")
    a.allocate("dcos", "gone", "t-gone")
    # "lost" holds .3 by its checkpoint, but the IPAM file never recorded it (a crash between
    # the two writes); "thief" claims an address another live container holds.
    freed, conflicts = _ipam(tmp_path).reconcile(
        {
            "live": ("t-live", {"dcos": "127.81.5.1"}),
            "lost": ("t-lost", {"dcos": "127.81.5.3"}),
            "thief": ("t-thief", {"dcos": "127.81.5.1"}),
        }
    )
    assert freed == ["127.81.5.2"] and conflicts == ["127.81.5.1"]
    b = _ipam(tmp_path)
    assert {ip: h["container_id"] for ip, h in b.held("dcos").items()} == {
        "127.81.5.1": "live",
        "127.81.5.3": "lost",
    }
    assert b.allocate("dcos", "new") == "127.81.5.2"


def test_unknown_network_and_shared_ip_fail_with_the_reason(tmp_path: Path) -> None:
    """An undeclared network names the declared ones; shared-ip addressing refuses every allocation."""
    with pytest.raises(ipam.UnknownNetwork) as err:
        _ipam(tmp_path).allocate("blue", "c0")
    assert "the networks of this cluster: dcos" in str(err.value)
    with pytest.raises(ipam.NotSupported) as err2:
        _ipam(tmp_path, shared_ip=True).allocate("dcos", "c0")
    assert "shared-ip mode" in str(err2.value) and "per-ip addressing" in str(err2.value)
    assert not (tmp_path / "meta" / "ipam.json").exists()


def test_a_file_of_another_subnet_or_version_is_not_trusted(tmp_path: Path) -> None:
    """Allocations recorded for another subnet, or in an unknown schema, are dropped."""
    path = tmp_path / "meta" / "ipam.json"
    path.parent.mkdir(parents=True)
    other = {
        "subnet": "127.99.5.0/24",
        "size": 3,
        "last": None,
        "allocations": {"127.99.5.1": {"container_id": "c", "task_id": "t"}},
    }
    path.write_text(json.dumps({"schema_version": 1, "networks": {"dcos": other}}))
    assert _ipam(tmp_path).held("dcos") == {}
    path.write_text(json.dumps({"schema_version": 2, "networks": {}}))
    assert _ipam(tmp_path).held("dcos") == {}
