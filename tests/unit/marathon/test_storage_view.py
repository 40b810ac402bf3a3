"""Marathon's view of the storage node: task volumes, where tasks may go and why they wait."""

from __future__ import annotations

from typing import Any

from playground.marathon import external
from playground.storage.driver import external_volumes


def app(name: str = "dbvol", driver: str = "pxd", **opts: str) -> dict[str, Any]:
    return {
        "id": "/db",
        "container": {
            "type": "MESOS",
            "volumes": [
                {
                    "containerPath": "data",
                    "mode": "RW",
                    "external": {
                        "name": name,
                        "provider": "dvdi",
                        "size": 2,
                        "options": {"dvdi/driver": driver, **opts},
                    },
                }
            ],
        },
    }


def view(pools: dict[str, bool], volumes: dict[str, list[tuple[str, str]]]) -> external.StorageView:
    v = external.StorageView("http://storage")
    v.reachable = True
    v.pools = pools
    v.volumes = {
        n: {"name": n, "replicas": [{"node": node, "state": st} for node, st in reps]}
        for n, reps in volumes.items()
    }
    return v


def test_task_volumes_carry_the_driver_options_the_agent_reads() -> None:
    """The task's DOCKER_VOLUME has the driver, the name and dvdi/* options (size included)."""
    [vol] = external.mesos_volumes(app(**{"dvdi/repl": "2", "dvdi/secure": "true"}))
    assert vol["container_path"] == "data" and vol["source"]["type"] == "DOCKER_VOLUME"
    dv = vol["source"]["docker_volume"]
    assert dv["driver"] == "pxd" and dv["name"] == "dbvol"
    [parsed] = external_volumes({"container": {"volumes": [vol]}})
    assert parsed.create_options() == {"repl": "2", "secure": "true", "size": "2"}


def test_only_the_kits_drivers_are_served_by_the_storage_node() -> None:
    """rexray volumes are passed through but never block placement; pxd/playground are served."""
    assert external.storage_volumes(app(driver="rexray")) == []
    assert external.storage_volumes(app(driver="playground")) == ["dbvol"]
    assert external.storage_volumes(app(name="name=vol,size=10,repl=2")) == ["vol"]
    assert view({}, {}).blocker(app(driver="rexray"), "agent-1") is None


def test_blockers_say_why_a_task_waits() -> None:
    """Offline pool, no pool, no online replica, unreachable storage node: each in words."""
    v = view(
        {"agent-1": True, "agent-2": False},
        {"dbvol": [("agent-2", "offline"), ("agent-3", "resync")]},
    )
    assert v.blocker(app(), "agent-2") == "the storage pool on agent-2 is offline"
    assert v.blocker(app(), "public-agent-1") == "public-agent-1 has no storage pool"
    reason = v.blocker(app(), "agent-1")
    assert reason is not None and "no online replica" in reason and "agent-2" in reason
    assert v.blocker(app(name="fresh"), "agent-1") is None  # provisioned on first use
    v.reachable = False
    assert v.blocker(app(), "agent-1") == "the storage node does not answer"


def test_replica_nodes_prefer_agents_holding_every_volume() -> None:
    """Hyperconvergence: the agents with an online replica of the app's volume."""
    v = view(
        {"agent-1": True, "agent-2": True, "agent-3": True},
        {"dbvol": [("agent-1", "working-copy"), ("agent-2", "in-sync"), ("agent-3", "offline")]},
    )
    assert v.replica_nodes(app()) == {"agent-1", "agent-2"}
    assert v.replica_nodes(app(name="unknown")) == set()
