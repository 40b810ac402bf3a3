"""Unit tests for playground.marathon.validation (Marathon 1.10 request validation).

No ``__init__.py`` in this folder on purpose: with pytest's default "prepend" import mode
it would make this folder importable as the top-level package ``marathon`` and shadow the
``marathon`` PyPI client that is a dev dependency.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from playground.marathon.validation import (
    MSG_CMD_ARGS_CONTAINER,
    MSG_ID_PATTERN,
    ValidationError,
    check_types_app,
    check_types_group,
    raise_if_invalid,
    validate_app,
    validate_app_update,
    validate_group,
)
from tests.support.reference import MARATHON as REFERENCE_MARATHON

REF = REFERENCE_MARATHON
EXAMPLES = REF / "app-examples"
REAL_LIST = EXAMPLES / "real-apps-list-155_100.json"

pytestmark = pytest.mark.skipif(not REF.exists(), reason="Marathon reference material missing")

BASE: dict[str, Any] = {"id": "/web", "cmd": "sleep 100", "cpus": 0.1, "mem": 32}


def app(**overrides: Any) -> dict[str, Any]:
    out = copy.deepcopy(BASE)
    for key, value in overrides.items():
        if value is _DROP:
            out.pop(key, None)
        else:
            out[key] = value
    return out


_DROP = object()


def body(details: list[dict[str, Any]], message: str = "Object is not valid") -> dict[str, Any]:
    with pytest.raises(ValidationError) as exc:
        raise_if_invalid(details, message)
    assert exc.value.status == 422
    return exc.value.body


def one(path: str, *errors: str) -> list[dict[str, Any]]:
    return [{"path": path, "errors": list(errors)}]


# --------------------------------------------------------------------------- error object


def test_validation_error_body_shape() -> None:
    err = ValidationError(one("/cmd", "x"))
    assert err.status == 422
    assert err.body == {
        "message": "Object is not valid",
        "details": [{"path": "/cmd", "errors": ["x"]}],
    }
    assert ValidationError([], "Invalid JSON").body == {"message": "Invalid JSON", "details": []}


def test_raise_if_invalid_is_silent_when_valid() -> None:
    raise_if_invalid([])


# --------------------------------------------------------------------------- stage 1: JSON reading


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"cpus": "1"}, one("/cpus", "error.expected.jsnumber")),
        ({"cpus": True}, one("/cpus", "error.expected.jsnumber")),
        ({"cpus": 0}, one("/cpus", "error.min")),
        ({"cpus": -1}, one("/cpus", "error.min")),
        ({"mem": -1}, one("/mem", "error.min")),
        ({"disk": -0.5}, one("/disk", "error.min")),
        ({"instances": -1}, one("/instances", "error.min")),
        ({"instances": 1.5}, one("/instances", "error.expected.int")),
        ({"instances": "2"}, one("/instances", "error.expected.jsnumber")),
        ({"gpus": -1}, one("/gpus", "error.min")),
        ({"backoffFactor": 0.5}, one("/backoffFactor", "error.min")),
        ({"backoffSeconds": -1}, one("/backoffSeconds", "error.min")),
        ({"maxLaunchDelaySeconds": -1}, one("/maxLaunchDelaySeconds", "error.min")),
        ({"id": 5}, one("/id", "error.expected.jsstring")),
        ({"id": _DROP}, one("/id", "error.path.missing")),
        ({"id": ""}, one("/id", "error.minLength")),
        ({"id": "/My_App"}, one("/id", "error.pattern")),
        ({"cmd": ""}, one("/cmd", "error.minLength")),
        ({"cmd": ["sleep", "1"]}, one("/cmd", "error.expected.jsstring")),
        ({"args": "sleep 1"}, one("/args", "error.expected.jsarray")),
        ({"args": ["a", 1]}, one("/args(1)", "error.expected.jsstring")),
        ({"requirePorts": "true"}, one("/requirePorts", "error.expected.jsboolean")),
        ({"labels": {"a": 1}}, one("/labels/a", "error.expected.jsstring")),
        ({"labels": ["a"]}, one("/labels", "error.expected.jsobject")),
        ({"env": {"A": 1}}, one("/env/A/secret", "error.path.missing")),
        ({"env": {"A": {"secret": 1}}}, one("/env/A/secret", "error.expected.jsstring")),
        ({"killSelection": "NEWEST_FIRST"}, one("/killSelection", "error.unknown.enum.literal")),
        ({"container": {"type": "RKT"}}, one("/container/type", "error.unknown.enum.literal")),
        ({"container": {"docker": {}}}, one("/container/docker/image", "error.path.missing")),
        (
            {"container": {"docker": {"image": ""}}},
            one("/container/docker/image", "error.minLength"),
        ),
        (
            {"upgradeStrategy": {"minimumHealthCapacity": 1.2, "maximumOverCapacity": 0}},
            one("/upgradeStrategy/minimumHealthCapacity", "error.max"),
        ),
        (
            {"upgradeStrategy": {"minimumHealthCapacity": 0.5, "maximumOverCapacity": -1}},
            one("/upgradeStrategy/maximumOverCapacity", "error.min"),
        ),
        (
            {"upgradeStrategy": {"minimumHealthCapacity": 0.5}},
            one("/upgradeStrategy/maximumOverCapacity", "error.path.missing"),
        ),
        (
            {"healthChecks": [{"protocol": "UDP"}]},
            one("/healthChecks(0)/protocol", "error.unknown.enum.literal"),
        ),
        ({"healthChecks": [{"portIndex": -1}]}, one("/healthChecks(0)/portIndex", "error.min")),
        (
            {"healthChecks": [{"gracePeriodSeconds": -5}]},
            one("/healthChecks(0)/gracePeriodSeconds", "error.min"),
        ),
        (
            {"healthChecks": [{"command": {}}]},
            one("/healthChecks(0)/command/value", "error.path.missing"),
        ),
        ({"portDefinitions": [{"port": 70000}]}, one("/portDefinitions(0)/port", "error.max")),
        ({"portDefinitions": [{"port": -1}]}, one("/portDefinitions(0)/port", "error.min")),
        (
            {"portDefinitions": [{"protocol": "sctp"}]},
            one("/portDefinitions(0)/protocol", "error.unknown.enum.literal"),
        ),
        (
            {"portDefinitions": [{"name": "Web_Port"}]},
            one("/portDefinitions(0)/name", "error.pattern"),
        ),
        (
            {"readinessChecks": [{"timeoutSeconds": 0}]},
            one("/readinessChecks(0)/timeoutSeconds", "error.min"),
        ),
        (
            {"readinessChecks": [{"httpStatusCodesForReady": []}]},
            one("/readinessChecks(0)/httpStatusCodesForReady", "error.minLength"),
        ),
        (
            {"readinessChecks": [{"httpStatusCodesForReady": [42]}]},
            one("/readinessChecks(0)/httpStatusCodesForReady(0)", "error.min"),
        ),
        (
            {"networks": [{"mode": "bridge"}]},
            one("/networks(0)/mode", "error.unknown.enum.literal"),
        ),
        (
            {"unreachableStrategy": {"inactiveAfterSeconds": -1}},
            one("/unreachableStrategy/inactiveAfterSeconds", "error.min"),
        ),
        ({"constraints": [["hostname", 1]]}, one("/constraints(0)(1)", "error.expected.jsstring")),
    ],
)
def test_json_reader_errors(overrides: dict[str, Any], expected: list[dict[str, Any]]) -> None:
    details = check_types_app(app(**overrides))
    assert details == expected
    assert body(details, "Invalid JSON") == {"message": "Invalid JSON", "details": expected}


def test_json_reader_collects_errors_of_all_fields_in_declaration_order() -> None:
    details = check_types_app({"cpus": "x", "mem": -1, "instances": 0.5})
    assert details == [
        {"path": "/id", "errors": ["error.path.missing"]},
        {"path": "/cpus", "errors": ["error.expected.jsnumber"]},
        {"path": "/instances", "errors": ["error.expected.int"]},
        {"path": "/mem", "errors": ["error.min"]},
    ]


def test_json_reader_body_not_an_object() -> None:
    assert check_types_app([]) == one("/", "error.expected.jsobject")


@pytest.mark.parametrize("value", ["tcp", "TCP", "udp,tcp"])
def test_enum_literals_are_case_insensitive(value: str) -> None:
    assert check_types_app(app(portDefinitions=[{"port": 0, "protocol": value}])) == []


def test_null_means_absent_for_optional_fields() -> None:
    assert check_types_app(app(cpus=None, labels=None, container=None)) == []


def test_unknown_fields_are_ignored_like_marathon() -> None:
    # Marathon 1.10's generated readers only look up known fields; extra ones are dropped.
    raw = app(instance=3, foo={"bar": 1})
    assert check_types_app(raw) == []
    assert validate_app(raw) == []


def test_partial_update_needs_no_id() -> None:
    assert check_types_app({"instances": 3}, partial=True) == []
    assert check_types_app({"instances": -3}, partial=True) == one("/instances", "error.min")
    assert check_types_app({"instances": 3}) == one("/id", "error.path.missing")


def test_prefix_is_prepended() -> None:
    assert check_types_app(app(cpus="x"), prefix="/apps(0)") == one(
        "/apps(0)/cpus", "error.expected.jsnumber"
    )


def test_group_json_reader_nested_paths() -> None:
    raw = {"id": "/g", "apps": [app(cpus="x")], "groups": [{"id": 1}]}
    assert check_types_group(raw) == [
        {"path": "/apps(0)/cpus", "errors": ["error.expected.jsnumber"]},
        {"path": "/groups(0)/id", "errors": ["error.expected.jsstring"]},
    ]


# --------------------------------------------------------------------------- stage 2: semantics

ROOT = "/"


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"cmd": _DROP}, one(ROOT, MSG_CMD_ARGS_CONTAINER)),
        ({"args": ["sleep", "1"]}, one(ROOT, MSG_CMD_ARGS_CONTAINER)),
        ({"cmd": _DROP, "container": {"type": "MESOS"}}, one(ROOT, MSG_CMD_ARGS_CONTAINER)),
        ({"cmd": "x"}, one(ROOT, "must not be an empty string")),
        ({"id": "/"}, one(ROOT, "must not be root")),
        (
            {"id": "/foo/tasks"},
            one(
                "/id",
                "must not end with any of the following reserved keywords: restart, tasks, versions",
            ),
        ),
        (
            {"constraints": [["hostname", "UNIQUE", "x"]]},
            one("/constraints(0)", "Value specified but not used"),
        ),
        ({"constraints": [["rack", "CLUSTER"]]}, one("/constraints(0)", "Missing value")),
        (
            {"constraints": [["rack", "GROUP_BY", "two"]]},
            one("/constraints(0)", "Value was specified but is not a number"),
        ),
        (
            {"constraints": [["rack", "MAX_PER"]]},
            one("/constraints(0)", "Value was not specified or is not a number"),
        ),
        (
            {"constraints": [["rack", "MAX_PER", "2.5"]]},
            one("/constraints(0)", "Value was not specified or is not a number"),
        ),
        (
            {"constraints": [["host", "LIKE"]]},
            one("/constraints(0)", "A regular expression value must be provided"),
        ),
        (
            {"constraints": [["host", "UNLIKE", "a("]]},
            one("/constraints(0)", "'a(' is not a valid regular expression"),
        ),
        (
            {"constraints": [["hostname"]]},
            one("/constraints(0)", "Each constraint must have either 2 or 3 fields"),
        ),
        (
            {"constraints": [["a", "UNIQUE", "b", "c"]]},
            one("/constraints(0)", "Each constraint must have either 2 or 3 fields"),
        ),
        ({"constraints": [["", "UNIQUE"]]}, one("/constraints(0)", "Missing field and operator")),
        (
            {"constraints": [["hostname", "UNIQUE"], ["hostname", "unique"]]},
            one(
                "/constraints(1)",
                "Constraint operator must be one of the following UNIQUE, CLUSTER, GROUP_BY, LIKE,"
                " MAX_PER, UNLIKE or IS",
            ),
        ),
        (
            {"portDefinitions": [{"port": 80, "name": "a"}, {"port": 80, "name": "b"}]},
            one("/portDefinitions", "Ports must be unique."),
        ),
        (
            {"portDefinitions": [{"port": 0, "name": "a"}, {"port": 0, "name": "a"}]},
            one("/portDefinitions", "Port names must be unique."),
        ),
        (
            {
                "container": {
                    "type": "DOCKER",
                    "docker": {"image": "nginx"},
                    "portMappings": [{"name": "a"}, {"name": "a"}],
                },
                "networks": [{"mode": "container/bridge"}],
            },
            one("/container/portMappings", "Port names must be unique."),
        ),
        ({"container": {"type": "DOCKER"}}, one("/container/docker", "not defined")),
        (
            {"healthChecks": [{"protocol": "HTTP", "portIndex": 3}]},
            one(
                "/healthChecks(0)",
                "Health check port indices must address an element of the ports array or container port mappings.",
            ),
        ),
        (
            {"healthChecks": [{"protocol": "MESOS_HTTP"}, {"protocol": "MESOS_TCP"}]},
            one(ROOT, "AppDefinition can contain at most one Mesos health check"),
        ),
        (
            {"healthChecks": [{"protocol": "COMMAND"}]},
            one("/healthChecks(0)/command", "not defined"),
        ),
        (
            {
                "readinessChecks": [{"portName": "http"}],
                "portDefinitions": [{"port": 0, "name": "api"}],
            },
            one("/readinessChecks(0)/portName", "No port definition reference for portName http"),
        ),
        (
            {
                "readinessChecks": [{"portName": "api", "intervalSeconds": 5, "timeoutSeconds": 5}],
                "portDefinitions": [{"port": 0, "name": "api"}],
            },
            one("/readinessChecks(0)/timeoutSeconds", "got 5, expected less than 5"),
        ),
        (
            {"instances": 2, "labels": {"MARATHON_SINGLE_INSTANCE_APP": "true"}},
            one(ROOT, "Single instance app may only have one instance"),
        ),
        (
            {"labels": {"DCOS_MIGRATION_API_VERSION": "v1"}},
            one(
                ROOT,
                "DCOS_PACKAGE_FRAMEWORK_NAME and DCOS_MIGRATION_API_PATH must be defined when using DCOS_MIGRATION_API_VERSION",
            ),
        ),
        ({"acceptedResourceRoles": []}, one("/acceptedResourceRoles", "must not be empty")),
        (
            {"uris": ["http://a/b"], "fetch": [{"uri": "http://a/b"}]},
            one("/uris", "may not be set in conjunction with fetch"),
        ),
        ({"ports": [80, 80]}, one(ROOT, "ports must be unique")),
        (
            {"ports": [80], "portDefinitions": [{"port": 81}]},
            one(ROOT, "cannot specify both ports and port definitions"),
        ),
        (
            {
                "ipAddress": {"networkName": "dcos"},
                "networks": [{"mode": "container", "name": "dcos"}],
            },
            one(ROOT, "must not specify both networks and ipAddress"),
        ),
        (
            {"networks": [{"mode": "host", "name": "x"}]},
            one("/networks", "Host networks may not have names or labels"),
        ),
        (
            {"networks": [{"mode": "container/bridge", "name": "x"}]},
            one("/networks", "Bridge networks may not have names"),
        ),
        (
            {"networks": [{"mode": "container", "name": "a"}, {"mode": "container", "name": "a"}]},
            one("/networks", "Duplicate networks are not allowed"),
        ),
        (
            {"networks": [{"mode": "host"}, {"mode": "container", "name": "a"}]},
            one(
                "/networks",
                "May specify a single host network, single bridge network, or else 1-to-n container networks",
            ),
        ),
        (
            {"networks": [{"mode": "container"}]},
            one("/networks", "Network name must be specified when container network is selected."),
        ),
        (
            {"networks": [{"mode": "container", "name": "a"}], "portDefinitions": [{"port": 0}]},
            one(ROOT, "portDefinitions are only allowed with host-networking"),
        ),
        (
            {
                "networks": [{"mode": "host"}],
                "container": {"type": "MESOS", "portMappings": [{"containerPort": 80}]},
            },
            one(ROOT, "portMappings are not allowed with host-networking"),
        ),
        (
            {"residency": {"taskLostBehavior": "WAIT_FOREVER"}},
            one(ROOT, "App must contain persistent volumes and define residency"),
        ),
        (
            {
                "container": {
                    "type": "MESOS",
                    "volumes": [{"containerPath": "data", "mode": "RW", "persistent": {"size": 0}}],
                }
            },
            one("/container/volumes(0)/persistent/size", "got 0, expected more than 0"),
        ),
        (
            {
                "container": {
                    "type": "MESOS",
                    "volumes": [{"containerPath": "a/b", "mode": "RW", "persistent": {"size": 10}}],
                }
            },
            one("/container/volumes(0)/containerPath", 'value must not contain "/"'),
        ),
        (
            {
                "container": {
                    "type": "MESOS",
                    "volumes": [
                        {"containerPath": "data", "mode": "RW", "persistent": {"size": 10}}
                    ],
                },
                "upgradeStrategy": {"minimumHealthCapacity": 0.5, "maximumOverCapacity": 0.5},
            },
            one("/upgradeStrategy/maximumOverCapacity", "got 0.5, expected 0.0"),
        ),
        (
            {"container": {"type": "MESOS", "volumes": [{"containerPath": "/etc", "mode": "RO"}]}},
            one("/container/volumes(0)/hostPath", "not defined"),
        ),
        (
            {"gpus": 1, "container": {"type": "DOCKER", "docker": {"image": "x"}}},
            one(ROOT, "GPU resources only work with the Mesos containerizer"),
        ),
        (
            {
                "networks": [
                    {"mode": "container", "name": "a"},
                    {"mode": "container", "name": "b"},
                ],
                "container": {
                    "type": "MESOS",
                    "portMappings": [
                        {"containerPort": 80, "networkNames": ["a"]},
                        {"containerPort": 81, "hostPort": 0},
                        {"containerPort": 82, "hostPort": 0, "networkNames": ["b"]},
                    ],
                },
            },
            one(
                "/container/portMappings(1)",
                "networkNames must be a single item list when hostPort is specified and more"
                " than 1 container network is defined",
            ),
        ),
        (
            {
                "cmd": _DROP,
                "networks": [
                    {"mode": "container", "name": "a"},
                    {"mode": "container", "name": "b"},
                ],
                "container": {"type": "DOCKER", "docker": {"image": "nginx"}},
            },
            one(
                ROOT,
                "may only specify a single container network when using the Docker container engine",
            ),
        ),
    ],
)
def test_semantic_errors(overrides: dict[str, Any], expected: list[dict[str, Any]]) -> None:
    raw = app(**overrides)
    assert check_types_app(raw) == [], "case must pass the JSON reader to reach validation"
    details = validate_app(raw)
    assert details == expected
    assert body(details) == {"message": "Object is not valid", "details": expected}


@pytest.mark.parametrize(
    "overrides",
    [
        {"cmd": _DROP, "args": ["sleep", "1"]},
        {"cmd": _DROP, "container": {"type": "DOCKER", "docker": {"image": "nginx"}}},
        {"cmd": _DROP, "container": {"type": "MESOS", "docker": {"image": "nginx"}}},
        {"id": "relative/app"},
        {"id": "/a.b/c-d/e1"},
        {
            "constraints": [
                ["hostname", "UNIQUE"],
                ["rack", "GROUP_BY"],
                ["rack", "GROUP_BY", "3"],
                ["rack", "MAX_PER", "2"],
                ["h", "LIKE", "a.*"],
                ["h", "IS", "x"],
            ]
        },
        {"healthChecks": [{"protocol": "HTTP"}]},
        {"healthChecks": [{"protocol": "TCP", "port": 8080}], "portDefinitions": []},
        {
            "healthChecks": [
                {"protocol": "COMMAND", "command": {"value": "true"}},
                {"protocol": "MESOS_HTTP"},
            ]
        },
        {"portDefinitions": [{"port": 0}, {"port": 0}, {"port": 80, "name": "http"}]},
        {"upgradeStrategy": {"minimumHealthCapacity": 0, "maximumOverCapacity": 1}},
        {"unreachableStrategy": "disabled"},
        {"env": {"A": "1", "B": {"secret": "s"}}, "secrets": {"s": {"source": "/x"}}},
        {
            # IP-per-task: any network name (Marathon does not know CNI networks), a container
            # port without a host port, a host port on the only container network.
            "networks": [{"mode": "container", "name": "not-declared-anywhere"}],
            "container": {
                "type": "MESOS",
                "portMappings": [{"containerPort": 8080}, {"containerPort": 0, "hostPort": 0}],
            },
        },
    ],
)
def test_valid_variants(overrides: dict[str, Any]) -> None:
    raw = app(**overrides)
    assert check_types_app(raw) == []
    assert validate_app(raw) == []


def test_several_semantic_errors_grouped_by_path() -> None:
    raw = app(cmd="x", args=["y"], constraints=[["a", "CLUSTER"]])
    assert validate_app(raw) == [
        {"path": "/", "errors": ["must not be an empty string", MSG_CMD_ARGS_CONTAINER]},
        {"path": "/constraints(0)", "errors": ["Missing value"]},
    ]


def test_prefix_applies_to_semantic_paths() -> None:
    assert validate_app(app(cmd=_DROP), prefix="/apps(0)") == one(
        "/apps(0)", MSG_CMD_ARGS_CONTAINER
    )


# --------------------------------------------------------------------------- updates


def test_update_accepts_subset() -> None:
    assert validate_app_update({"instances": 5}) == []
    assert validate_app_update({"cmd": "sleep 1"}) == []


def test_update_rules() -> None:
    assert validate_app_update({"cmd": "x"}) == one("/", "must not be an empty string")
    assert validate_app_update({"constraints": [["a", "CLUSTER"]]}) == one(
        "/constraints(0)", "Missing value"
    )
    assert validate_app_update({"version": "2020-01-01T00:00:00.000Z", "cmd": "sleep 1"}) == one(
        "/", "The 'version' field may only be combined with the 'id' field."
    )
    assert validate_app_update({"version": "2020-01-01T00:00:00.000Z", "id": "/a"}) == []
    assert validate_app_update({"id": "/"}) == one("/", "must not be root")


# --------------------------------------------------------------------------- groups


def test_group_nested_paths() -> None:
    raw = {
        "id": "/prod",
        "apps": [{"id": "/app", "cmd": "sleep 1"}, {"id": "ok", "cmd": "sleep 1"}],
        "groups": [{"id": "/prod/db", "apps": [{"id": "pg"}]}],
    }
    assert validate_group(raw) == [
        {
            "path": "/apps(0)/id",
            "errors": ["Identifier is not child of /prod. Hint: use relative paths."],
        },
        {"path": "/groups(0)/apps(0)", "errors": [MSG_CMD_ARGS_CONTAINER]},
    ]


def test_app_id_segment_rule_when_called_directly() -> None:
    # For POST /v2/apps the reader's RAML pattern ("error.pattern") fires first; the
    # PathIdValidation message is what group ids and direct callers get.
    assert validate_app(app(id="/a/-b")) == one("/id", MSG_ID_PATTERN)


def test_group_id_rules() -> None:
    assert validate_group({"id": "/My_Group"}) == one("/id", MSG_ID_PATTERN)
    assert validate_group({"id": "/ok", "groups": [{"id": "/other/x"}]}) == one(
        "/groups(0)/id", "Identifier is not child of /ok. Hint: use relative paths."
    )
    assert validate_group({"id": "/", "apps": [{"id": "/a", "cmd": "sleep 1"}]}) == []


# --------------------------------------------------------------------------- reference examples

EXAMPLE_FILES = sorted(p for p in EXAMPLES.glob("*.json") if p != REAL_LIST)


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.name)
def test_reference_examples_validate_cleanly(path: Path) -> None:
    raw = json.loads(path.read_text())
    assert check_types_app(raw) == []
    assert validate_app(raw) == []


def _real_apps() -> list[dict[str, Any]]:
    return json.loads(REAL_LIST.read_text())["apps"] if REAL_LIST.exists() else []


@pytest.mark.parametrize("raw", _real_apps(), ids=lambda a: a["id"])
def test_real_apps_list_validates_cleanly(raw: dict[str, Any]) -> None:
    # These are serialized /v2/apps responses; status fields (tasksRunning, deployments, ...)
    # are unknown to the App reader and ignored, as Marathon does.  All of them are accepted.
    assert check_types_app(raw) == []
    assert validate_app(raw) == []


# --------------------------------------------------------------------------- JSON schema agreement

SCHEMA_AGREEMENT = [
    app(),
    app(cmd=_DROP, args=["sleep", "1"]),
    app(
        instances=3,
        constraints=[["hostname", "UNIQUE"], ["rack", "GROUP_BY", "2"]],
        healthChecks=[{"protocol": "HTTP", "path": "/", "portIndex": 0}],
        portDefinitions=[{"port": 0, "protocol": "tcp", "name": "http"}],
        upgradeStrategy={"minimumHealthCapacity": 0.5, "maximumOverCapacity": 0.2},
        labels={"team": "a"},
        env={"A": "b"},
        killSelection="OLDEST_FIRST",
        backoffSeconds=2,
        backoffFactor=1.5,
        maxLaunchDelaySeconds=600,
    ),
    app(
        cmd=_DROP,
        container={
            "type": "DOCKER",
            "docker": {
                "image": "nginx",
                "network": "BRIDGE",
                "portMappings": [{"containerPort": 80, "hostPort": 0}],
            },
        },
    ),
    *(
        json.loads(p.read_text())
        for p in EXAMPLE_FILES
        if p.name
        in {
            "http-server.json",
            "sleep-app.json",
            "mesos-app.json",
            "docker-http-server.json",
            "fake-framework.json",
            "readiness-and-health-app.json",
        }
    ),
]


@pytest.mark.parametrize("raw", SCHEMA_AGREEMENT, ids=lambda a: a.get("id", "?"))
def test_valid_definitions_agree_with_json_schema(raw: dict[str, Any]) -> None:
    # The schema is draft-04 (tuple-form "items" for constraints).
    schema = json.loads((REF / "schema" / "AppDefinition.json").read_text())
    jsonschema.Draft4Validator(schema).validate(raw)
    assert check_types_app(raw) == []
    assert validate_app(raw) == []
