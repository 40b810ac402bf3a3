"""Deployment plans as Marathon 1.10 builds them (playground.marathon.plan)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from playground.marathon.plan import (
    affected_apps,
    build_plan,
    canonical_path,
    dependency_levels,
    is_config_change,
    is_scale_change,
    needs_restart,
)
from tests.support.reference import MARATHON as REFERENCE_MARATHON

REFERENCE = REFERENCE_MARATHON / "raml/v2/examples/deployment_steps.json"


def app(app_id: str, version: str = "v1", **kw: Any) -> dict[str, Any]:
    d: dict[str, Any] = {
        "id": app_id,
        "cmd": "sleep 100",
        "cpus": 0.1,
        "mem": 32.0,
        "disk": 0.0,
        "gpus": 0,
        "instances": 1,
        "constraints": [],
        "dependencies": [],
        "portDefinitions": [{"port": 10000, "protocol": "tcp"}],
        "requirePorts": False,
        "labels": {},
        "env": {},
        "version": version,
        "versionInfo": {"lastScalingAt": version, "lastConfigChangeAt": version},
    }
    d.update(kw)
    return d


def scaled(a: dict[str, Any], instances: int, version: str = "v2") -> dict[str, Any]:
    return {
        **a,
        "instances": instances,
        "version": version,
        "versionInfo": {**a["versionInfo"], "lastScalingAt": version},
    }


def changed(a: dict[str, Any], version: str = "v2", **kw: Any) -> dict[str, Any]:
    return {
        **a,
        **kw,
        "version": version,
        "versionInfo": {"lastScalingAt": version, "lastConfigChangeAt": version},
    }


def act(action: str, app_id: str) -> dict[str, str]:
    return {"action": action, "app": app_id}


def apps(*items: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {a["id"]: a for a in items}


# -- golden ---------------------------------------------------------------------------------------


@pytest.mark.skipif(not REFERENCE.exists(), reason="reference docs not available")
def test_golden_deployment_steps_example():
    expected = [step["actions"] for step in json.loads(REFERENCE.read_text())["steps"]]
    steps = build_plan({}, apps(app("/tools/oauth-server")))
    assert steps == expected


def test_golden_inline():
    assert build_plan({}, apps(app("/tools/oauth-server"))) == [
        [act("StartApplication", "/tools/oauth-server")],
        [act("ScaleApplication", "/tools/oauth-server")],
    ]


# -- basic changes --------------------------------------------------------------------------------


def test_nothing_changed_no_steps():
    a = app("/a")
    assert build_plan(apps(a), apps(dict(a))) == []


def test_scale_only():
    a = app("/a")
    assert build_plan(apps(a), apps(scaled(a, 3))) == [[act("ScaleApplication", "/a")]]


def test_config_change_restarts():
    a = app("/a")
    assert build_plan(apps(a), apps(changed(a, cmd="sleep 200"))) == [
        [act("RestartApplication", "/a")]
    ]


def test_config_and_scale_change_is_restart():
    a = app("/a")
    b = changed(a, cmd="sleep 200", instances=5)
    assert build_plan(apps(a), apps(b)) == [[act("RestartApplication", "/a")]]


def test_restart_request_is_new_version_info():
    a = app("/a")
    b = {**a, "version": "v2", "versionInfo": {**a["versionInfo"], "lastConfigChangeAt": "v2"}}
    assert build_plan(apps(a), apps(b)) == [[act("RestartApplication", "/a")]]


def test_remove():
    a, b = app("/a"), app("/b")
    assert build_plan(apps(a, b), apps(b)) == [[act("StopApplication", "/a")]]


def test_remove_everything_is_one_stop_step():
    # Marathon 1.10 stops all removed apps in one step, dependencies or not.
    db = app("/db")
    web = app("/web", dependencies=["/db"])
    assert build_plan(apps(db, web), {}) == [
        [act("StopApplication", "/db"), act("StopApplication", "/web")]
    ]


def test_mixed_create_scale_restart_remove():
    a, b, c = app("/a"), app("/b"), app("/c")
    target = apps(scaled(a, 2), changed(b, mem=64.0), app("/d"))
    assert build_plan(apps(a, b, c), target) == [
        [act("StopApplication", "/c")],
        [act("StartApplication", "/d")],
        [
            act("ScaleApplication", "/a"),
            act("RestartApplication", "/b"),
            act("ScaleApplication", "/d"),
        ],
    ]


def test_new_app_with_zero_instances_still_scales():
    assert build_plan({}, apps(app("/z", instances=0))) == [
        [act("StartApplication", "/z")],
        [act("ScaleApplication", "/z")],
    ]


def test_runtime_fields_do_not_count():
    a = app("/a")
    b = {**a, "tasksRunning": 3, "deployments": [{"id": "x"}]}
    assert build_plan(apps(a), apps(b)) == []


# -- dependencies ---------------------------------------------------------------------------------


def test_dependencies_order_start_and_scale():
    db = app("/prod/db")
    web = app("/prod/web", dependencies=["/prod/db"])
    lb = app("/prod/lb", dependencies=["/prod/web"])
    assert build_plan({}, apps(lb, web, db)) == [
        [
            act("StartApplication", "/prod/db"),
            act("StartApplication", "/prod/lb"),
            act("StartApplication", "/prod/web"),
        ],
        [act("ScaleApplication", "/prod/db")],
        [act("ScaleApplication", "/prod/web")],
        [act("ScaleApplication", "/prod/lb")],
    ]


def test_relative_dependencies():
    db = app("/prod/db")
    cache = app("/shared/cache")
    web = app("/prod/web", dependencies=["db", "../shared/cache"])
    assert dependency_levels(apps(db, cache, web)) == {
        "/prod/db": 1,
        "/shared/cache": 1,
        "/prod/web": 2,
    }
    assert build_plan({}, apps(db, cache, web))[1:] == [
        [act("ScaleApplication", "/prod/db"), act("ScaleApplication", "/shared/cache")],
        [act("ScaleApplication", "/prod/web")],
    ]


def test_dependency_on_group_means_all_its_apps():
    db1 = app("/data/db1")
    db2 = app("/data/sub/db2", dependencies=["/data/db1"])
    web = app("/web", dependencies=["/data"])
    levels = dependency_levels(apps(db1, db2, web))
    assert levels == {"/data/db1": 1, "/data/sub/db2": 2, "/web": 3}


def test_longest_path_decides_level():
    a = app("/a")
    b = app("/b", dependencies=["/a"])
    c = app("/c", dependencies=["/a", "/b"])
    d = app("/d", dependencies=["/a"])
    assert dependency_levels(apps(a, b, c, d)) == {"/a": 1, "/b": 2, "/d": 2, "/c": 3}


def test_unchanged_dependencies_still_count_for_levels():
    db = app("/db")
    web = app("/web", dependencies=["/db"])
    lb = app("/lb", dependencies=["/web"])
    # only db and lb change; lb stays behind the (unchanged) web in the ordering
    target = apps(changed(db, cmd="x"), web, changed(lb, cmd="y"))
    assert build_plan(apps(db, web, lb), target) == [
        [act("RestartApplication", "/db")],
        [act("RestartApplication", "/lb")],
    ]


def test_upgrade_in_dependency_order():
    db = app("/db")
    web = app("/web", dependencies=["/db"])
    target = apps(changed(db, cmd="x"), changed(web, cmd="y"))
    assert build_plan(apps(db, web), target) == [
        [act("RestartApplication", "/db")],
        [act("RestartApplication", "/web")],
    ]


def test_missing_dependency_is_ignored():
    web = app("/web", dependencies=["/nope"])
    assert dependency_levels(apps(web)) == {"/web": 1}


def test_cycle_rejected():
    a = app("/a", dependencies=["/b"])
    b = app("/b", dependencies=["/a"])
    with pytest.raises(ValueError, match="cyclic"):
        build_plan({}, apps(a, b))


def test_dependency_on_own_group_is_a_cycle():
    with pytest.raises(ValueError):
        dependency_levels(apps(app("/g/a", dependencies=["/g"])))


# -- predicates -----------------------------------------------------------------------------------


class TestPredicates:
    def test_instances_alone_is_scale(self):
        a = app("/a")
        b = scaled(a, 4)
        assert not is_config_change(a, b)
        assert is_scale_change(a, b)

    def test_version_alone_is_neither_but_needs_restart(self):
        a = app("/a")
        b = {
            **a,
            "version": "v9",
            "versionInfo": {"lastScalingAt": "v1", "lastConfigChangeAt": "v9"},
        }
        assert not is_config_change(a, b)
        assert not is_scale_change(a, b)
        assert needs_restart(a, b)

    def test_identical_needs_nothing(self):
        a = app("/a")
        assert not is_config_change(a, dict(a))
        assert not is_scale_change(a, dict(a))
        assert not needs_restart(a, dict(a))

    @pytest.mark.parametrize(
        "change",
        [
            {"cmd": "other"},
            {"cpus": 0.2},
            {"mem": 64.0},
            {"disk": 1.0},
            {"gpus": 1},
            {"env": {"A": "1"}},
            {"labels": {"x": "y"}},
            {"constraints": [["hostname", "UNIQUE"]]},
            {"portDefinitions": [{"port": 10001, "protocol": "tcp"}]},
            {"requirePorts": True},
            {"container": {"type": "DOCKER", "docker": {"image": "x"}}},
            {"healthChecks": [{"protocol": "COMMAND", "command": {"value": "true"}}]},
            {"upgradeStrategy": {"minimumHealthCapacity": 0.5, "maximumOverCapacity": 0.5}},
            {"acceptedResourceRoles": ["slave_public"]},
            {"dependencies": ["/other"]},
            {"killSelection": "OLDEST_FIRST"},
            {"backoffSeconds": 5},
            {"user": "nobody"},
        ],
    )
    def test_config_fields(self, change: dict[str, Any]):
        a = app("/a", killSelection="YOUNGEST_FIRST", backoffSeconds=1)
        b = {**a, **change}
        assert is_config_change(a, b)
        assert not is_scale_change(a, {**b, "instances": 7})

    def test_sets_ignore_order(self):
        a = app(
            "/a", constraints=[["a", "UNIQUE"], ["b", "UNIQUE"]], acceptedResourceRoles=["x", "*"]
        )
        b = {
            **a,
            "constraints": [["b", "UNIQUE"], ["a", "UNIQUE"]],
            "acceptedResourceRoles": ["*", "x"],
        }
        assert not is_config_change(a, b)

    def test_sequences_keep_order(self):
        a = app("/a", portDefinitions=[{"port": 1}, {"port": 2}])
        b = {**a, "portDefinitions": [{"port": 2}, {"port": 1}]}
        assert is_config_change(a, b)

    def test_absent_accepted_roles_equal_unreserved(self):
        a = app("/a")
        assert not is_config_change(a, {**a, "acceptedResourceRoles": ["*"]})

    def test_relative_and_absolute_dependencies_equal(self):
        a = app("/prod/web", dependencies=["db"])
        assert not is_config_change(a, {**a, "dependencies": ["/prod/db"]})

    def test_different_ids_never_an_upgrade(self):
        assert not is_config_change(app("/a"), app("/b", cmd="x"))


def test_canonical_path():
    assert canonical_path("db", "/prod") == "/prod/db"
    assert canonical_path("./db", "/prod") == "/prod/db"
    assert canonical_path("../db", "/prod/web") == "/prod/db"
    assert canonical_path("../../../db", "/prod") == "/db"
    assert canonical_path("/abs/./x/../y", "/prod") == "/abs/y"
    assert canonical_path("db", "/") == "/db"


def test_affected_apps():
    steps = [
        [act("StopApplication", "/c")],
        [act("StartApplication", "/d")],
        [act("ScaleApplication", "/d"), act("RestartApplication", "/b")],
    ]
    assert affected_apps(steps) == ["/b", "/c", "/d"]
    assert affected_apps([]) == []
