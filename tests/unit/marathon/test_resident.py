"""Resident instances: reserving on an offer, launching on the reservation, cleaning up."""

from __future__ import annotations

from typing import Any

from playground.marathon import matching, resident
from playground.marathon.validation import validate_app, validate_resident_update
from playground.mesos import persistence as P
from playground.mesos.resources import Resources

APP: dict[str, Any] = {
    "id": "/db/kv",
    "cmd": "kv",
    "cpus": 0.5,
    "mem": 64.0,
    "disk": 10.0,
    "instances": 1,
    "portDefinitions": [{"port": 0}],
    "container": {
        "type": "MESOS",
        "volumes": [{"containerPath": "data", "mode": "RW", "persistent": {"size": 100}}],
    },
    "upgradeStrategy": {"minimumHealthCapacity": 0.5, "maximumOverCapacity": 0},
    "unreachableStrategy": "disabled",
}


def offer(resources: list[dict[str, Any]], agent: str = "S1") -> dict[str, Any]:
    for r in resources:
        r["allocation_info"] = {"role": "slave_public"}
    return {
        "id": {"value": "O1"},
        "agent_id": {"value": agent},
        "hostname": "127.0.0.2",
        "resources": resources,
        "allocation_info": {"role": "slave_public"},
    }


def test_reserve_then_launch_on_the_reservation_then_clean_up() -> None:
    total = Resources.parse("cpus:2;mem:512;disk:1000;ports:[31000-31005]")
    first = offer(total.to_v1())
    m = matching.match_offer(resident.reservation_app(APP), first, [], default_region=None)
    assert isinstance(m, matching.Match)
    ops, record = resident.reserve_operations(APP, first, m, framework_id="F", reservation_id="I1")
    assert [op["type"] for op in ops] == ["RESERVE", "CREATE"]
    assert record["agentId"] == "S1" and record["ports"] == m.host_ports
    (vol,) = record["volumes"]
    assert vol["persistenceId"].startswith("db_kv#data#") and vol["size"] == 100
    assert resident.local_volumes(record) == [
        {"containerPath": "data", "persistenceId": vol["persistenceId"]}
    ]
    # The master accepts them as they are (validation and arithmetic of the Mesos side).
    pool = total
    for op in ops:
        kind = op["type"]
        items = P.operation_items(op)
        res = P.validate_operation(
            kind,
            items,
            checkpointed=P.checkpointed_of(pool),
            used=Resources(),
            principal=resident.PRINCIPAL,
            roles=["slave_public"],
        )
        pool = P.apply(kind, pool, res)
    assert pool.scalar("disk") == 1000 and len(P.volumes_of(pool)) == 1
    # The next offer holds the labelled resources: the task is launched on exactly those.
    second = offer(pool.to_v1())
    assert isinstance(
        resident.reserved_match(APP, offer(pool.to_v1(), "S2"), record, "F"), matching.NoMatch
    )
    launch = resident.reserved_match(APP, second, record, "F")
    assert isinstance(launch, matching.Match)
    used = Resources.from_v1(launch.resources)
    assert used.scalar("cpus") == 0.5 and used.scalar("mem") == 64 and used.scalar("disk") == 110
    assert launch.host_ports == record["ports"]
    assert all(r["role"] == "*" for r in launch.remaining["resources"])
    # Forgotten (wiped): DESTROY then UNRESERVE give the agent its resources back.
    ops, ids = resident.orphaned_operations(second, "F", known=set())
    assert ids == {"I1"} and [op["type"] for op in ops] == ["DESTROY", "UNRESERVE"]
    assert resident.orphaned_operations(second, "F", known={"I1"}) == ([], set())
    assert resident.orphaned_operations(second, "other-framework", known=set()) == ([], set())
    for op in ops:
        kind = op["type"]
        res = P.validate_operation(
            kind,
            P.operation_items(op),
            checkpointed=P.checkpointed_of(pool),
            used=Resources(),
            principal=resident.PRINCIPAL,
            roles=["slave_public"],
        )
        pool = P.apply(kind, pool, res)
    assert P.checkpointed_of(pool).to_v1() == [] and pool.contains(total) and total.contains(pool)


def test_resident_validation_messages() -> None:
    bad = {**APP, "unreachableStrategy": {"inactiveAfterSeconds": 0, "expungeAfterSeconds": 0}}
    assert {
        "path": "/",
        "errors": ["unreachableStrategy must be disabled for resident tasks"],
    } in validate_app(bad)
    greedy = {**APP, "upgradeStrategy": {"minimumHealthCapacity": 1, "maximumOverCapacity": 0}}
    assert validate_app(greedy) == [
        {
            "path": "/upgradeStrategy/minimumHealthCapacity",
            "errors": ["got 1, expected 0.5 or less"],
        }
    ]
    assert validate_app(APP) == []
    bigger = {**APP, "cpus": 1.0}
    assert validate_resident_update(APP, bigger) == [
        {"path": "/", "errors": ["Resident Tasks may not change resource requirements!"]}
    ]
    other = {
        **APP,
        "container": {
            "type": "MESOS",
            "volumes": [{"containerPath": "data", "mode": "RW", "persistent": {"size": 200}}],
        },
    }
    assert validate_resident_update(APP, other) == [
        {"path": "/", "errors": ["Persistent volumes can not be changed!"]}
    ]
    assert validate_resident_update(APP, dict(APP)) == []
