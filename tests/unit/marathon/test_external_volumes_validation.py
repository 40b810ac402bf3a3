"""External volumes on Marathon's side: validation messages, the task's volumes, why a task waits.

No ``__init__.py`` in this folder (see test_validation.py).
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from playground.marathon import external
from playground.marathon.validation import (
    ValidationError,
    check_types_app,
    raise_if_invalid,
    validate_app,
)

EXT: dict[str, Any] = {
    "name": "dbvol",
    "provider": "dvdi",
    "size": 1,
    "options": {"dvdi/driver": "pxd", "dvdi/repl": "2"},
}


def app(volume: dict[str, Any] | None = None, **overrides: Any) -> dict[str, Any]:
    vol = {"containerPath": "pgdata", "mode": "RW", "external": copy.deepcopy(EXT)}
    out: dict[str, Any] = {
        "id": "/db",
        "cmd": "playground workload kv --data pgdata --durable",
        "cpus": 0.1,
        "mem": 64,
        "instances": 1,
        "container": {"type": "MESOS", "volumes": [volume if volume is not None else vol]},
    }
    out.update(overrides)
    return out


def ext_volume(**changes: Any) -> dict[str, Any]:
    e = copy.deepcopy(EXT)
    for k, v in changes.items():
        if v is None:
            e.pop(k, None)
        else:
            e[k] = v
    return {"containerPath": "pgdata", "mode": "RW", "external": e}


def errors(details: list[dict[str, Any]]) -> dict[str, list[str]]:
    return {d["path"]: d["errors"] for d in details}


def test_the_lessons_app_is_valid() -> None:
    assert check_types_app(app()) == []
    assert validate_app(app()) == []
    # Portworx's inline form and the kit's own driver name are valid too.
    inline = ext_volume(name="name=dbvol,size=1,repl=2", options={"dvdi/driver": "playground"})
    assert validate_app(app(inline)) == []


def test_more_than_one_instance_is_refused_with_marathons_message() -> None:
    """A volume attaches to one task at a time: instances > 1 is a 422 naming the app."""
    details = validate_app(app(instances=2))
    assert errors(details) == {
        "/": ["Number of instances is limited to 1 when declaring DVDI volumes in app [/db]"]
    }
    with pytest.raises(ValidationError) as exc:
        raise_if_invalid(details)
    assert exc.value.status == 422
    assert exc.value.body == {"message": "Object is not valid", "details": details}
    # 0 and 1 are fine (scaled down, the volume is detached and kept).
    assert validate_app(app(instances=0)) == []


def test_shared_volumes_may_have_more_instances() -> None:
    assert validate_app(app(ext_volume(shared=True), instances=3)) == []


def test_provider_driver_and_size_rules() -> None:
    assert errors(validate_app(app(ext_volume(provider="ebs")))) == {
        "/container/volumes(0)/external/provider": ["is unknown provider"]
    }
    assert errors(validate_app(app(ext_volume(options={"dvdi/repl": "2"})))) == {
        '/container/volumes(0)/external/options("dvdi/driver")': ["not defined"]
    }
    assert errors(validate_app(app(ext_volume(size=0)))) == {
        "/container/volumes(0)/external/size": ["got 0, expected more than 0"]
    }
    assert errors(validate_app(app(ext_volume(size=-2.5)))) == {
        "/container/volumes(0)/external/size": ["got -2.5, expected more than 0"]
    }
    # No size: provisioned with the default (16 GB), as Marathon's implicit volumes are.
    assert validate_app(app(ext_volume(size=None))) == []


def test_name_provider_and_container_path_must_be_given() -> None:
    vol = {"containerPath": "", "mode": "RW", "external": {"size": 1}}
    assert errors(validate_app(app(vol))) == {
        "/container/volumes(0)/containerPath": ["must not be empty"],
        "/container/volumes(0)/external/name": ["not defined"],
        "/container/volumes(0)/external/provider": ["not defined"],
    }


def test_a_volume_is_persistent_or_external_not_both() -> None:
    vol = ext_volume()
    vol["persistent"] = {"size": 10}
    assert errors(validate_app(app(vol))) == {
        "/container/volumes(0)": ["illegal combination of persistent and external volume fields"]
    }


def test_volume_names_are_unique_within_an_app() -> None:
    a = app()
    a["container"]["volumes"].append(
        {"containerPath": "other", "mode": "RW", "external": copy.deepcopy(EXT)}
    )
    assert errors(validate_app(a)) == {
        "/container/volumes": ["Volume names must be unique"],
        "/": ["Requested DVDI volume 'dbvol' is declared more than once within app /db"],
    }


def test_upgrade_strategy_must_not_run_two_tasks_on_one_volume() -> None:
    """maximumOverCapacity 0 and minimumHealthCapacity <= 0.5, as for resident tasks."""
    bad = app(upgradeStrategy={"minimumHealthCapacity": 1, "maximumOverCapacity": 0.5})
    assert errors(validate_app(bad)) == {
        "/upgradeStrategy/maximumOverCapacity": ["got 0.5, expected 0.0"],
        "/upgradeStrategy/minimumHealthCapacity": ["got 1, expected 0.5 or less"],
    }
    ok = app(upgradeStrategy={"minimumHealthCapacity": 0.5, "maximumOverCapacity": 0})
    assert validate_app(ok) == []


def test_a_size_that_is_not_a_number_is_a_type_error() -> None:
    details = check_types_app(app(ext_volume(size="big")))
    assert errors(details) == {"/container/volumes(0)/external/size": ["error.expected.jsnumber"]}


def test_task_volumes_carry_the_dvdi_options_without_the_driver() -> None:
    (vol,) = external.mesos_volumes(app())
    assert vol["container_path"] == "pgdata" and vol["mode"] == "RW"
    dv = vol["source"]["docker_volume"]
    assert vol["source"]["type"] == "DOCKER_VOLUME"
    assert (dv["driver"], dv["name"]) == ("pxd", "dbvol")
    assert dv["driver_options"]["parameter"] == [
        {"key": "dvdi/repl", "value": "2"},
        {"key": "size", "value": "1"},
    ]


def test_only_the_kits_drivers_are_the_storage_nodes() -> None:
    assert external.storage_volumes(app()) == ["dbvol"]
    rexray = ext_volume(options={"dvdi/driver": "rexray"})
    assert external.storage_volumes(app(rexray)) == []
    inline = ext_volume(name="name=orders,repl=3")
    assert external.storage_volumes(app(inline)) == ["orders"]
    assert external.storage_volumes({"id": "/plain", "cmd": "sleep 10"}) == []


def view(pools: dict[str, bool], volumes: list[dict[str, Any]]) -> external.StorageView:
    v = external.StorageView("http://127.0.0.9:9700")
    v.reachable = True
    v.pools = pools
    v.volumes = {x["name"]: x for x in volumes}
    return v


def volume(name: str, *replicas: tuple[str, str]) -> dict[str, Any]:
    return {"name": name, "replicas": [{"node": n, "state": s} for n, s in replicas]}


def test_storage_view_says_why_a_task_cannot_be_placed() -> None:
    """The waitingReason of /v2/queue: an offline pool, a volume without an online replica."""
    pools = {"agent-1": True, "agent-2": False, "agent-3": True}
    two = volume("dbvol", ("agent-1", "working-copy"), ("agent-2", "offline"))
    v = view(pools, [two])
    assert v.blocker(app(), "agent-1") is None
    assert v.blocker(app(), "agent-3") is None, "a surviving replica is promoted there"
    assert v.blocker(app(), "agent-2") == "the storage pool on agent-2 is offline"
    assert v.blocker(app(), "public-agent-1") == "public-agent-1 has no storage pool"
    one = volume("dbvol", ("agent-2", "offline"))
    v = view(pools, [one])
    assert v.blocker(app(), "agent-1") == "volume dbvol has no online replica (on agent-2)"
    resync = volume("dbvol", ("agent-3", "resync"))
    assert view(pools, [resync]).blocker(app(), "agent-1") == (
        "volume dbvol has no online replica (on agent-3)"
    )
    # Not provisioned yet: provisioned on first use wherever the pool is online.
    assert view(pools, []).blocker(app(), "agent-1") is None
    # Apps without the kit's volumes are never held back.
    assert v.blocker({"id": "/web", "cmd": "sleep 10"}, "agent-2") is None


def test_storage_view_without_the_storage_node() -> None:
    v = external.StorageView("http://127.0.0.9:9700")
    assert v.blocker(app(), "agent-1") == "the storage node does not answer"
    assert external.StorageView(None).blocker(app(), "agent-1") is None
