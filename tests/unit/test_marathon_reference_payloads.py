"""Real Marathon app payloads go through the project's own app model unchanged.

Sources (``tests/reference/marathon``, see SOURCES.md): the app definitions of
Marathon's system tests (``app-examples/*.json``), one real serialized ``/v2/apps`` list
(``app-examples/real-apps-list-155_100.json``, a benchmark mock) and the RAML request
examples (``raml/v2/examples/apps_create.json``, ``group.json``, ``app.json``).

Each app must pass ``check_types_app`` and ``validate_app``; ``normalize_app`` must keep
every field the payload had and fill Marathon's defaults (``raml/v2/types/app.raml``) for
the ones it did not.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from playground.marathon import appdef, validation
from tests.support.reference import MARATHON as REFERENCE_MARATHON

REF = REFERENCE_MARATHON
EXAMPLES = REF / "app-examples"
RAML_EXAMPLES = REF / "raml/v2/examples"

# app.raml App: the properties with a `default:` (unreachableStrategy.raml UnreachableEnabled
# defaults both seconds to 0; app.raml UpgradeStrategy has no default but Marathon fills 1/1).
RAML_DEFAULTS: dict[str, Any] = {
    "backoffFactor": 1.15,
    "backoffSeconds": 1,
    "cpus": 1,
    "disk": 0,
    "executor": "",
    "instances": 1,
    "maxLaunchDelaySeconds": 300,
    "mem": 128,
    "gpus": 0,
    "requirePorts": False,
    "killSelection": "YOUNGEST_FIRST",
    "unreachableStrategy": {"inactiveAfterSeconds": 0, "expungeAfterSeconds": 0},
    "upgradeStrategy": {"maximumOverCapacity": 1, "minimumHealthCapacity": 1},
    "constraints": [],
    "labels": {},
}
# healthCheck.raml AppHealthCheck defaults
HEALTH_DEFAULTS = {
    "gracePeriodSeconds": 300,
    "intervalSeconds": 60,
    "maxConsecutiveFailures": 3,
    "timeoutSeconds": 20,
    "delaySeconds": 15,
}
# fields whose form normalize_app changes on purpose (checked separately below)
TRANSFORMED = {
    "id", "container", "healthChecks", "readinessChecks", "dependencies", "ports", "uris",
    "networks", "portDefinitions", "version", "versionInfo", "ipAddress",
}  # fmt: skip


def _load(path: Path) -> Any:
    return json.loads(path.read_text())


def _example_apps() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for path in sorted(EXAMPLES.glob("*.json")):
        data = _load(path)
        if isinstance(data, dict) and "apps" in data:
            out += [(f"{path.name}:{a['id']}", a) for a in data["apps"]]
        else:
            out.append((path.name, data))
    return out


EXAMPLE_APPS = _example_apps()


def test_the_reference_set_is_complete() -> None:
    names = {n.split(":")[0] for n, _ in EXAMPLE_APPS}
    assert len(names) == 21
    assert sum(1 for n, _ in EXAMPLE_APPS if n.startswith("real-apps-list")) == 100


def _resident(app: dict[str, Any]) -> bool:
    return any("persistent" in v for v in (app.get("container") or {}).get("volumes") or [])


def _valid(app: dict[str, Any]) -> None:
    assert validation.check_types_app(copy.deepcopy(app)) == []
    assert validation.validate_app(copy.deepcopy(app)) == []


def _equal(a: Any, b: Any) -> bool:
    """JSON equality where 1 == 1.0 (Marathon renders whole doubles without a fraction)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    return bool(a == b)


def _contains(big: dict[str, Any], small: dict[str, Any]) -> bool:
    return all(k in big and _equal(big[k], v) for k, v in small.items())


def assert_normal_form_keeps(raw: dict[str, Any], norm: dict[str, Any], base: str = "/") -> None:
    """The normal form keeps the payload's fields and fills the RAML defaults."""
    assert norm["id"] == appdef.canonical_id(raw["id"], base)
    for key, value in raw.items():
        if key in TRANSFORMED:
            continue
        if value in ([], {}) and key not in RAML_DEFAULTS:
            assert key not in norm or _equal(norm[key], value), key  # omitEmpty
            continue
        assert key in norm, f"normal form dropped {key}"
        assert _equal(norm[key], value), f"{key}: {norm[key]!r} != {value!r}"
    defaults = dict(RAML_DEFAULTS)
    if _resident(raw):
        # docs/persistent-volumes.md: a stateful app's default UpgradeStrategy is
        # minimumHealthCapacity 0.5 / maximumOverCapacity 0, and its unreachableStrategy
        # must be "disabled" (Marathon's normalization defaults it so for resident apps)
        defaults["upgradeStrategy"] = {"minimumHealthCapacity": 0.5, "maximumOverCapacity": 0}
        defaults["unreachableStrategy"] = "disabled"
    for key, default in defaults.items():
        if key not in raw:
            assert _equal(norm[key], default), f"default of {key}: {norm[key]!r}"
    assert norm["role"]  # always rendered (app.raml `role?`, filled from --mesos_role)
    assert "version" not in norm and "versionInfo" not in norm

    # networks: given ones kept; legacy docker.network translated; host by default
    docker = ((raw.get("container") or {}).get("docker")) or {}
    if "networks" in raw:
        assert _equal(norm["networks"], raw["networks"])
    elif "ipAddress" in raw:
        # the deprecated ipAddress (app.raml `ipAddress?`, "Use `networks` instead") becomes
        # a named container network in the normal form
        want: dict[str, Any] = {"mode": "container"}
        if raw["ipAddress"].get("networkName"):
            want["name"] = raw["ipAddress"]["networkName"]
        assert norm["networks"] == [want], norm["networks"]
        assert "ipAddress" not in norm
    elif docker.get("network") == "BRIDGE":
        assert norm["networks"] == [{"mode": "container/bridge"}]
    elif docker.get("network") == "USER":
        assert norm["networks"] == [{"mode": "container"}]
    else:
        assert norm["networks"] == [{"mode": "host"}]
    host = all(n.get("mode", "container") == "host" for n in norm["networks"])

    # ports: portDefinitions kept (port/name/protocol/labels), `ports` translated, default one port
    if host:
        if "portDefinitions" in raw:
            assert len(norm["portDefinitions"]) == len(raw["portDefinitions"])
            for got, want in zip(norm["portDefinitions"], raw["portDefinitions"], strict=True):
                assert _contains(got, want), (got, want)
                assert got["protocol"] == want.get("protocol", "tcp")
        elif "ports" in raw:
            assert [p["port"] for p in norm["portDefinitions"]] == raw["ports"]
        else:
            assert norm["portDefinitions"] == [{"port": 0, "name": "default", "protocol": "tcp"}]
    else:
        assert "portDefinitions" not in norm

    # container: type, image, volumes, parameters kept; legacy docker.portMappings moved up
    if "container" in raw:
        c_raw, c_norm = raw["container"], norm["container"]
        assert c_norm["type"] == c_raw.get("type", "DOCKER" if "docker" in c_raw else "MESOS")
        assert _equal(c_norm["volumes"], c_raw.get("volumes", []))
        if docker:
            assert c_norm["docker"]["image"] == docker["image"]
            for key in ("forcePullImage", "privileged", "parameters", "pullConfig", "credential"):
                if key in docker:
                    assert _equal(c_norm["docker"][key], docker[key]), key
            assert "network" not in c_norm["docker"]
        maps = c_raw.get("portMappings") or docker.get("portMappings")
        if maps:
            assert "portMappings" not in c_norm["docker"] if "docker" in c_norm else True
            assert len(c_norm["portMappings"]) == len(maps)
            for got, want in zip(c_norm["portMappings"], maps, strict=True):
                assert _contains(got, want), (got, want)
                assert got["protocol"] == want.get("protocol", "tcp")

    # health checks: every given field kept, RAML defaults filled
    for got, want in zip(norm.get("healthChecks", []), raw.get("healthChecks", []), strict=True):
        assert _contains(got, {k: v for k, v in want.items() if k != "command"}), (got, want)
        if "command" in want:
            cmd = want["command"]
            assert got["command"] == (cmd if isinstance(cmd, dict) else {"value": cmd})
        for key, default in HEALTH_DEFAULTS.items():
            if key not in want:
                assert got[key] == default, (key, got)
    assert len(norm.get("healthChecks", [])) == len(raw.get("healthChecks", []))

    for got, want in zip(
        norm.get("readinessChecks", []), raw.get("readinessChecks", []), strict=True
    ):
        assert _contains(got, want), (got, want)
    assert len(norm.get("readinessChecks", [])) == len(raw.get("readinessChecks", []))

    if raw.get("dependencies"):
        assert norm["dependencies"] == [
            appdef.canonical_id(d, appdef.parent_of(norm["id"])) for d in raw["dependencies"]
        ]
    if raw.get("uris") and not raw.get("fetch"):
        assert [f["uri"] for f in norm["fetch"]] == raw["uris"]


@pytest.mark.parametrize(("name", "app"), EXAMPLE_APPS, ids=[n for n, _ in EXAMPLE_APPS])
def test_reference_app_is_valid_and_normalizes(name: str, app: dict[str, Any]) -> None:
    _valid(app)
    norm = appdef.normalize_app(copy.deepcopy(app))
    assert_normal_form_keeps(app, norm)
    # the normal form is itself a valid definition, and normalizing is idempotent
    _valid(norm)
    assert _equal(appdef.normalize_app(copy.deepcopy(norm)), norm)


def test_specific_fields_survive() -> None:
    """Spot checks with the values of the payloads spelled out."""
    by_name = dict(EXAMPLE_APPS)
    pers = appdef.normalize_app(copy.deepcopy(by_name["persistent-volume-app.json"]))
    assert (
        pers["acceptedResourceRoles"]
        == by_name["persistent-volume-app.json"]["acceptedResourceRoles"]
    )
    assert (
        pers["container"]["volumes"]
        == by_name["persistent-volume-app.json"]["container"]["volumes"]
    )
    nginx = by_name["docker-nginx-ssl.json"]
    assert (
        appdef.normalize_app(copy.deepcopy(nginx))["container"]["docker"]["image"]
        == nginx["container"]["docker"]["image"]
    )
    ready = by_name["readiness-and-health-app.json"]
    norm = appdef.normalize_app(copy.deepcopy(ready))
    assert norm["upgradeStrategy"] == ready["upgradeStrategy"]
    assert [p["name"] for p in norm["portDefinitions"]] == [
        p["name"] for p in ready["portDefinitions"]
    ]
    secrets = by_name["private-ucr-docker-app.json"]
    assert appdef.normalize_app(copy.deepcopy(secrets))["secrets"] == secrets["secrets"]
    real = [a for n, a in EXAMPLE_APPS if n.startswith("real-apps-list")]
    with_constraints = [a for a in real if a.get("constraints")]
    assert with_constraints
    for a in with_constraints:
        assert appdef.normalize_app(copy.deepcopy(a))["constraints"] == a["constraints"]


# ---- the RAML request examples -----------------------------------------------------------------
def test_apps_create_example() -> None:
    """raml/v2/examples/apps_create.json (PUT /v2/apps body): both apps parse and normalize.

    The first app depends on ``/other/namespace/or/app``, which is not a child of its
    parent ``/test``; Marathon's PathId ``childOf`` rule reports exactly that.
    """
    first, second = _load(RAML_EXAMPLES / "apps_create.json")
    for app in (first, second):
        assert validation.check_types_app(copy.deepcopy(app)) == []
    _valid(second)
    errors = validation.validate_app(copy.deepcopy(first))
    assert [e["path"] for e in errors] == ["/dependencies(1)"]
    for app in (first, second):
        norm = appdef.normalize_app(copy.deepcopy(app))
        assert_normal_form_keeps(app, norm)
    assert appdef.normalize_app(copy.deepcopy(first))["dependencies"] == [
        "/test/sleep120",
        "/other/namespace/or/app",
    ]


def test_app_example_types_parse_but_combination_is_refused() -> None:
    """raml/v2/examples/app.json shows every App field at once.

    Each field has the right type, but together they break Marathon's own rules stated in
    app.raml ("It is invalid to supply both `cmd` and `args`") and in network.raml/ipAddress
    (deprecated ipAddress cannot be combined with port definitions), so validation refuses
    it with those reasons - as Marathon does.
    """
    app = _load(RAML_EXAMPLES / "app.json")
    assert validation.check_types_app(copy.deepcopy(app)) == []
    errors = validation.validate_app(copy.deepcopy(app))
    flat = " | ".join(f"{e['path']}: {m}" for e in errors for m in e["errors"])
    assert "cmd" in flat and "args" in flat
    assert "/ipAddress" in flat or "IP address" in flat
    # without the conflicting parts it is valid and normalizes keeping everything else
    fixed = copy.deepcopy(app)
    fixed.pop("args")
    fixed.pop("ipAddress")
    _valid(fixed)
    norm = appdef.normalize_app(copy.deepcopy(fixed))
    assert_normal_form_keeps(fixed, norm)
    assert norm["env"] == app["env"]  # including the secret reference
    assert norm["fetch"] == app["fetch"]
    assert norm["taskKillGracePeriodSeconds"] == 30
    assert norm["tty"] is True
    assert norm["container"]["portMappings"][0]["servicePort"] == 10019
    assert norm["container"]["docker"]["parameters"] == [{"key": "name", "value": "kdc"}]


def test_group_example() -> None:
    """raml/v2/examples/group.json (POST /v2/groups body) validates; its apps normalize."""
    group = _load(RAML_EXAMPLES / "group.json")
    assert validation.check_types_group(copy.deepcopy(group)) == []
    assert validation.validate_group(copy.deepcopy(group)) == []

    def walk(g: dict[str, Any], base: str) -> int:
        gid = appdef.canonical_id(g["id"], base)
        n = 0
        for app in g.get("apps") or []:
            norm = appdef.normalize_app(copy.deepcopy(app), gid)
            assert_normal_form_keeps(app, norm, gid)
            assert norm["id"].startswith(gid.rstrip("/") + "/")
            n += 1
        for sub in g.get("groups") or []:
            n += walk(sub, gid)
        return n

    assert walk(group, "/") >= 1
