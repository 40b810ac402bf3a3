"""Topologies: shipped ones are valid; bad files fail with the field named."""

from __future__ import annotations

from pathlib import Path

import pytest

from playground.cluster import topology as t


def test_default_topology() -> None:
    """default: coordinator, 1 master, agents in zones a/b/c, a public agent reserved to slave_public, storage, marathon, monitor."""
    topo = t.load("default")
    assert [n.name for n in topo.nodes] == [
        "coordinator-1",
        "master-1",
        "agent-1",
        "agent-2",
        "agent-3",
        "public-agent-1",
        "storage-1",
        "marathon-1",
        "edge-1",
        "monitor-1",
    ]
    assert [n.zone for n in topo.by_role("agent")] == ["a", "b", "c"]
    assert topo.quorum == 1
    public = topo.node("public-agent-1")
    assert {r.role for r in public.agent_resources()} == {"slave_public"}
    assert topo.node("agent-1").fault_domain() == {
        "fault_domain": {"region": {"name": "eu"}, "zone": {"name": "a"}}
    }
    assert topo.node("agent-2").attributes == "zone:b;rack:r1"


def test_ha_topology() -> None:
    """ha: 3 masters with quorum 2, 6 agents in eu (zones x racks), 2 agents in us, 1 public agent."""
    topo = t.load("ha")
    assert len(topo.masters) == 3 and topo.quorum == 2
    eu = [n for n in topo.by_role("agent") if n.region == "eu"]
    us = [n for n in topo.by_role("agent") if n.region == "us"]
    assert sorted((n.zone, n.rack) for n in eu) == [(z, r) for z in "abc" for r in ("r1", "r2")]
    assert len(us) == 2 and len(topo.by_role("public-agent")) == 1


def test_topology_by_path(tmp_path: Path) -> None:
    """A topology file passed by path is loaded like a shipped one."""
    f = tmp_path / "tiny.yaml"
    f.write_text(
        "name: tiny\nnodes:\n - {name: coordinator-1, role: coordinator}\n - {name: master-1, role: master}\n - {name: agent-1, role: agent, zone: x}\n"
    )
    topo = t.load(str(f))
    assert topo.name == "tiny" and topo.node("agent-1").zone == "x"


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ("name: x\nnodes: []\n", "'nodes' must be a non-empty list"),
        ("name: x\nnodes:\n - {name: master-1, role: boss}\n", "nodes[0].role must be one of"),
        ("name: x\nnodes:\n - {name: agent-1, role: master}\n", "nodes[0].name must be 'master-N'"),
        (
            "name: x\nnodes:\n - {name: master-1, role: master}\n - {name: agent-1, role: agent}\n",
            "exactly one coordinator",
        ),
        (
            "name: x\nquorum: 3\nnodes:\n - {name: coordinator-1, role: coordinator}\n - {name: master-1, role: master}\n - {name: agent-1, role: agent}\n",
            "quorum must be between 1",
        ),
        (
            "name: x\nnodes:\n - {name: coordinator-1, role: coordinator}\n - {name: master-1, role: master}\n - {name: agent-1, role: agent, resources: 'cpus:x'}\n",
            "bad scalar",
        ),
        (
            "name: x\nnodes:\n - {name: coordinator-1, role: coordinator}\n - {name: master-1, role: master}\n - {name: agent-1, role: agent}\n - {name: monitor-1, role: monitor}\n - {name: monitor-2, role: monitor}\n",
            "at most one monitor node",
        ),
    ],
)
def test_invalid_topologies_name_the_problem(tmp_path: Path, doc: str, message: str) -> None:
    """Each invalid topology fails with a message naming the file and the field."""
    f = tmp_path / "bad.yaml"
    f.write_text(doc)
    with pytest.raises(t.TopologyError) as err:
        t.load(str(f))
    assert message in str(err.value)
    assert str(f) in str(err.value)


def test_unknown_topology_lists_the_shipped_ones() -> None:
    """An unknown name says which topologies exist."""
    with pytest.raises(t.TopologyError) as err:
        t.load("nope")
    assert err.value.hint is not None and "default" in err.value.hint and "ha" in err.value.hint


_NODES = (
    "nodes:\n - {name: coordinator-1, role: coordinator}\n - {name: master-1, role: master}\n"
    " - {name: agent-1, role: agent}\n"
)


def test_shipped_topologies_declare_the_dcos_network() -> None:
    """default and ha declare DC/OS's overlay `dcos` with 254 addresses per agent."""
    for name in ("default", "ha"):
        assert t.load(name).networks == (t.NetworkSpec("dcos", 254),)
    assert t.describe(t.load("default"))["networks"] == [{"name": "dcos", "size": 254}]


def test_networks_are_parsed_with_a_default_size() -> None:
    """`size` defaults to 254; a topology without `networks` has none."""
    topo = t.parse(
        {"name": "x", "networks": [{"name": "dcos", "size": 2}, {"name": "blue_1"}]} | _yaml(_NODES)
    )
    assert topo.networks == (t.NetworkSpec("dcos", 2), t.NetworkSpec("blue_1", 254))
    assert t.parse({"name": "x"} | _yaml(_NODES)).networks == ()


def _yaml(text: str) -> dict:
    import yaml

    return dict(yaml.safe_load(text))


@pytest.mark.parametrize(
    ("networks", "message"),
    [
        ("networks: dcos\n", "'networks' must be a list"),
        ("networks: [dcos]\n", "networks[0] must be a mapping"),
        ("networks: [{size: 2}]\n", "networks[0].name must be lower-case"),
        ("networks: [{name: Dcos}]\n", "networks[0].name must be lower-case"),
        ("networks: [{name: dcos}, {name: dcos}]\n", "networks[1].name 'dcos' is declared twice"),
        (
            "networks: [{name: dcos, size: 0}]\n",
            "networks[0].size must be a whole number from 1 to 254",
        ),
        ("networks: [{name: dcos, size: 255}]\n", "got 255"),
        ("networks: [{name: dcos, size: 'x'}]\n", "got 'x'"),
        ("networks: [{name: dcos, sise: 2}]\n", "networks[0] has unknown field(s) sise"),
        (
            "networks: [" + ", ".join(f"{{name: n{i}}}" for i in range(176)) + "]\n",
            "176 network(s) x 1 agents need 176 address slices; a cluster has 175",
        ),
    ],
)
def test_invalid_networks_name_the_field(tmp_path: Path, networks: str, message: str) -> None:
    """A bad `networks` entry fails with the file and the field named."""
    f = tmp_path / "bad.yaml"
    f.write_text("name: x\n" + networks + _NODES)
    with pytest.raises(t.TopologyError) as err:
        t.load(str(f))
    assert message in str(err.value)
    assert str(f) in str(err.value)


def test_task_user_defaults_to_nobody_and_is_validated() -> None:
    """`task_user` (who tasks run as under root agents) defaults to nobody; junk is refused."""
    import yaml

    assert t.load("default").task_user == "nobody"
    assert t.parse(yaml.safe_load("name: x\ntask_user: daemon\n" + _NODES)).task_user == "daemon"
    with pytest.raises(t.TopologyError, match="task_user must be a user name"):
        t.parse(yaml.safe_load("name: x\ntask_user: 'a b'\n" + _NODES))
