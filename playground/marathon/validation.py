"""Request validation for the Marathon 1.10-compatible ``/v2`` API.

Marathon validates a request body in two stages and we mirror both:

1. **JSON reading** (:func:`check_types_app`).  Marathon's RAML-generated play-json readers
   turn type mismatches and RAML facet violations into a ``JsResultException`` which
   ``MarathonExceptionMapper`` renders as ``{"message": "Invalid JSON", "details": [...]}``
   (status 422 in 1.10 because every entry carries validation errors).  Messages are
   play-json's: ``error.expected.jsstring|jsnumber|jsboolean|jsarray|jsobject``,
   ``error.expected.int`` (a non-integral number for an int32 field), ``error.path.missing``,
   ``error.min``/``error.max`` (RAML ``minimum``/``maximum``), ``error.minLength``/
   ``error.maxLength`` (``minLength``/``maxLength``/``minItems``), ``error.pattern`` and,
   for RAML enums, ``error.unknown.enum.literal`` (enum literals match case-insensitively).
   ``null`` for an optional field is treated as absent (``validateOpt``).
2. **Semantic validation** (:func:`validate_app`, :func:`validate_app_update`,
   :func:`validate_group`).  These are the accord validators of ``AppValidation``,
   ``SchedulingValidation``, ``NetworkValidation`` and ``PathIdValidation``, rendered as
   ``{"message": "Object is not valid", "details": [{"path", "errors"}]}``.

Unknown fields: Marathon 1.10's generated readers only look up the fields they know, so
unknown top-level (and nested) fields are silently ignored - no error - and dropped.  The
old JSON schema (``schema/AppDefinition.json``, ``additionalProperties: false``) is no longer
enforced since 1.5.  We do the same: unknown keys are never reported.

Deprecated fields (``ipAddress``, ``ports``, ``uris``, ``residency``, ``container.docker.network``,
``container.docker.portMappings``) are still accepted by 1.10 and normalised, so they pass here
too, subject to the "old API" rules of ``AppValidation.validateOldAppAPI``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeGuard

from playground.marathon import external as external_mod

__all__ = [
    "ValidationError",
    "check_types_app",
    "check_types_group",
    "raise_if_invalid",
    "validate_app",
    "validate_app_update",
    "validate_group",
]

Details = list[dict[str, Any]]


class ValidationError(Exception):
    """A 422 response; ``body`` is exactly the JSON body Marathon sends."""

    status: int = 422

    def __init__(self, details: Details, message: str = "Object is not valid") -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        self.body: dict[str, Any] = {"message": message, "details": details}


def raise_if_invalid(details: Details, message: str = "Object is not valid") -> None:
    if details:
        raise ValidationError(details, message)


class _Errors:
    """Collects (path, message) pairs, grouped per path like Marathon (first-seen order)."""

    def __init__(self) -> None:
        self._by_path: dict[str, list[str]] = {}

    def add(self, path: str, message: str) -> None:
        msgs = self._by_path.setdefault(path or "/", [])
        if message not in msgs:
            msgs.append(message)

    def details(self) -> Details:
        return [{"path": p, "errors": list(m)} for p, m in self._by_path.items()]


# ---------------------------------------------------------------------------------------------
# Stage 1: JSON reading (RAML types, see raml/v2/types/*.raml)
# ---------------------------------------------------------------------------------------------

Spec = dict[str, Any]


def _str(**facets: Any) -> Spec:
    return {"t": "str", **facets}


def _num(**facets: Any) -> Spec:
    return {"t": "num", **facets}


def _int(**facets: Any) -> Spec:
    return {"t": "int", **facets}


_BOOL: Spec = {"t": "bool"}


def _enum(*values: str) -> Spec:
    return {"t": "enum", "values": values}


def _arr(items: Spec, **facets: Any) -> Spec:
    return {"t": "arr", "items": items, **facets}


def _obj(fields: dict[str, Spec], required: tuple[str, ...] = ()) -> Spec:
    return {"t": "obj", "fields": fields, "required": required}


def _map(values: Spec) -> Spec:
    return {"t": "map", "values": values}


def _custom(fn: Callable[[Any, str, _Errors], None]) -> Spec:
    return {"t": "custom", "fn": fn}


# stringTypes.raml / numberTypes.raml
_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
_NETWORK_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9_]*[a-z0-9])?$"
_PATH_ID_PATTERN = (
    r"^(\/?((\.\.)|(([a-z0-9]|[a-z0-9][a-z0-9\-]*[a-z0-9])\.)*"
    r"([a-z0-9]|[a-z0-9][a-z0-9\-]*[a-z0-9]))?($|\/))+$"
)
_PATH_ID = _str(minLength=1, pattern=_PATH_ID_PATTERN)
_LEGACY_NAME = _str(minLength=1, pattern=_NAME_PATTERN)
_NAME = _str(minLength=1, maxLength=63, pattern=_NAME_PATTERN)
_ANY_PORT = _int(min=0, max=65535)
_NETWORK_PROTOCOL = _enum("tcp", "udp", "udp,tcp")
_KV_LABELS = _map(_str())
_READ_MODE = _enum("RO", "RW")


def _env_value(value: Any, path: str, errs: _Errors) -> None:
    # EnvVarValueOrSecret = (EnvVarValue | EnvVarSecret): `validate[String] orElse
    # validate[EnvVarSecret]`; when both fail play-json keeps the second error.
    if isinstance(value, str):
        return
    if isinstance(value, dict):
        _check(_obj({"secret": _str()}, required=("secret",)), value, path, errs)
        return
    errs.add(path + "/secret", "error.path.missing")


def _unreachable(value: Any, path: str, errs: _Errors) -> None:
    # UnreachableStrategy = (UnreachableDisabled | UnreachableEnabled)
    if isinstance(value, str):
        if value.lower() != "disabled":
            errs.add(path, "error.unknown.enum.literal")
        return
    if isinstance(value, dict):
        _check(
            _obj(
                {
                    "inactiveAfterSeconds": _int(min=0, long=True),
                    "expungeAfterSeconds": _int(min=0, long=True),
                }
            ),
            value,
            path,
            errs,
        )
        return
    errs.add(path, "error.expected.jsobject")


_PORT_MAPPING = _obj(
    {
        "containerPort": _ANY_PORT,
        "hostPort": _ANY_PORT,
        "labels": _KV_LABELS,
        "name": _LEGACY_NAME,
        "protocol": _NETWORK_PROTOCOL,
        "servicePort": _ANY_PORT,
        "networkNames": _arr(_NAME),
    }
)

_PERSISTENT_VOLUME_INFO = _obj(
    {
        "type": _enum("root", "path", "mount"),
        "size": _int(min=0, long=True),
        "maxSize": _int(min=0, long=True),
        "profileName": _str(),
        "constraints": _arr(_arr(_str(), minItems=2, maxItems=3)),
    },
    required=("size",),
)

_EXTERNAL_VOLUME_INFO = _obj(
    {
        "size": _int(min=0, long=True),
        "name": _str(),
        "provider": _str(),
        "options": _KV_LABELS,
        "shared": _BOOL,
    }
)

_APP_VOLUME = _obj(
    {
        "containerPath": _str(),
        "hostPath": _str(),
        "mode": _READ_MODE,
        "persistent": _PERSISTENT_VOLUME_INFO,
        "external": _EXTERNAL_VOLUME_INFO,
        "secret": _str(),
    }
)

_DOCKER = _obj(
    {
        "credential": _obj({"principal": _str(), "secret": _str()}, required=("principal",)),
        "pullConfig": _obj({"secret": _str(minLength=1)}, required=("secret",)),
        "forcePullImage": _BOOL,
        "image": _str(minLength=1),
        "network": _enum("BRIDGE", "HOST", "NONE", "USER"),
        "parameters": _arr(
            _obj({"key": _str(minLength=1), "value": _str()}, required=("key", "value"))
        ),
        "portMappings": _arr(_PORT_MAPPING),
        "privileged": _BOOL,
    },
    required=("image",),
)

_CONTAINER = _obj(
    {
        "type": _enum("MESOS", "DOCKER"),
        "docker": _DOCKER,
        "linuxInfo": _obj({}),
        "volumes": _arr(_APP_VOLUME),
        "portMappings": _arr(_PORT_MAPPING),
    }
)

_HEALTH_CHECK = _obj(
    {
        "command": _obj({"value": _str()}, required=("value",)),
        "gracePeriodSeconds": _int(min=0),
        "ignoreHttp1xx": _BOOL,
        "intervalSeconds": _int(min=0),
        "maxConsecutiveFailures": _int(min=0),
        "path": _str(),
        "port": _ANY_PORT,
        "portIndex": _ANY_PORT,
        "protocol": _enum(
            "HTTP", "HTTPS", "TCP", "COMMAND", "MESOS_TCP", "MESOS_HTTP", "MESOS_HTTPS"
        ),
        "ipProtocol": _enum("IPv4", "IPv6"),
        "timeoutSeconds": _int(),
        "delaySeconds": _int(min=0),
    }
)

_READINESS_CHECK = _obj(
    {
        "name": _str(minLength=1),
        "protocol": _enum("HTTP", "HTTPS"),
        "path": _str(minLength=1, maxLength=1024),
        "portName": _LEGACY_NAME,
        "intervalSeconds": _int(min=0),
        "timeoutSeconds": _int(min=1),
        "httpStatusCodesForReady": _arr(_int(min=100, max=999), minItems=1),
        "preserveLastResponse": _BOOL,
    }
)

_NETWORK = _obj(
    {
        "name": _str(minLength=1, maxLength=63, pattern=_NETWORK_NAME_PATTERN),
        "mode": _enum("container", "container/bridge", "host"),
        "labels": _KV_LABELS,
    }
)

_IP_ADDRESS = _obj(
    {
        "discovery": _obj(
            {
                "ports": _arr(
                    _obj(
                        {
                            "number": _ANY_PORT,
                            "name": _LEGACY_NAME,
                            "protocol": _NETWORK_PROTOCOL,
                            "labels": _KV_LABELS,
                        },
                        required=("name",),
                    )
                )
            }
        ),
        "groups": _arr(_str()),
        "labels": _KV_LABELS,
        "networkName": _str(minLength=1),
    }
)

_PORT_DEFINITION = _obj(
    {
        "port": _ANY_PORT,
        "labels": _KV_LABELS,
        "name": _LEGACY_NAME,
        "protocol": _NETWORK_PROTOCOL,
    }
)

_APP_FIELDS: dict[str, Spec] = {
    "id": _PATH_ID,
    "acceptedResourceRoles": _arr(_str()),
    "args": _arr(_str()),
    "backoffFactor": _num(min=1.0),
    "backoffSeconds": _int(min=0),
    "cmd": _str(minLength=1),
    "constraints": _arr(_arr(_str())),
    "container": _CONTAINER,
    "cpus": _num(min=0.001),
    "dependencies": _arr(_PATH_ID),
    "disk": _num(min=0),
    "env": _map(_custom(_env_value)),
    "executor": _str(pattern=r"^(//cmd)|(/?[^/]+(/[^/]+)*)|$"),
    "executorResources": _obj({"cpus": _num(min=0), "mem": _num(min=0), "disk": _num(min=0)}),
    "fetch": _arr(
        _obj(
            {
                "uri": _str(minLength=1, maxLength=1024),
                "extract": _BOOL,
                "executable": _BOOL,
                "cache": _BOOL,
                "destPath": _str(),
            },
            required=("uri",),
        )
    ),
    "healthChecks": _arr(_HEALTH_CHECK),
    "check": _obj({}),
    "instances": _int(min=0),
    "labels": _KV_LABELS,
    "maxLaunchDelaySeconds": _int(min=0),
    "mem": _num(min=0),
    "gpus": _int(min=0),
    "ipAddress": _IP_ADDRESS,
    "networks": _arr(_NETWORK),
    "ports": _arr(_ANY_PORT),
    "portDefinitions": _arr(_PORT_DEFINITION),
    "readinessChecks": _arr(_READINESS_CHECK),
    "residency": _obj(
        {
            "relaunchEscalationTimeoutSeconds": _int(min=0, long=True),
            "taskLostBehavior": _enum("WAIT_FOREVER", "RELAUNCH_AFTER_TIMEOUT"),
        }
    ),
    "resourceLimits": _obj({}),
    "requirePorts": _BOOL,
    "secrets": _map(_obj({"source": _str(minLength=1)}, required=("source",))),
    "taskKillGracePeriodSeconds": _int(min=0),
    "upgradeStrategy": _obj(
        {
            "maximumOverCapacity": _num(min=0.0, max=1.0),
            "minimumHealthCapacity": _num(min=0.0, max=1.0),
        },
        required=("maximumOverCapacity", "minimumHealthCapacity"),
    ),
    "uris": _arr(_str(minLength=1, maxLength=1024)),
    "user": _str(),
    "version": _str(),
    "versionInfo": _obj({}),
    "killSelection": _enum("YOUNGEST_FIRST", "OLDEST_FIRST"),
    "unreachableStrategy": _custom(_unreachable),
    "tty": _BOOL,
    "role": _str(minLength=1),
}

_APP = _obj(_APP_FIELDS, required=("id",))
_APP_UPDATE = _obj(_APP_FIELDS)

_INT32 = (-(2**31), 2**31 - 1)
_INT64 = (-(2**63), 2**63 - 1)


def _is_number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check(spec: Spec, value: Any, path: str, errs: _Errors) -> None:
    kind = spec["t"]
    if kind == "custom":
        spec["fn"](value, path, errs)
        return
    if kind == "str":
        if not isinstance(value, str):
            errs.add(path, "error.expected.jsstring")
            return
        if "minLength" in spec and len(value) < spec["minLength"]:
            errs.add(path, "error.minLength")
        if "maxLength" in spec and len(value) > spec["maxLength"]:
            errs.add(path, "error.maxLength")
        if "pattern" in spec and re.fullmatch(spec["pattern"], value) is None:
            # play-json's `pattern` reads use Regex.unapplySeq, i.e. a full match.
            errs.add(path, "error.pattern")
        return
    if kind in ("num", "int"):
        if not _is_number(value):
            errs.add(path, "error.expected.jsnumber")
            return
        if kind == "int":
            lo, hi = _INT64 if spec.get("long") else _INT32
            if float(value) != int(value) or not lo <= int(value) <= hi:
                errs.add(path, "error.expected.long" if spec.get("long") else "error.expected.int")
                return
        if "min" in spec and value < spec["min"]:
            errs.add(path, "error.min")
        if "max" in spec and value > spec["max"]:
            errs.add(path, "error.max")
        return
    if kind == "bool":
        if not isinstance(value, bool):
            errs.add(path, "error.expected.jsboolean")
        return
    if kind == "enum":
        values = {v.lower() for v in spec["values"]}
        if not isinstance(value, str) or value.lower() not in values:
            errs.add(path, "error.unknown.enum.literal")
        return
    if kind == "arr":
        if not isinstance(value, list):
            errs.add(path, "error.expected.jsarray")
            return
        for i, item in enumerate(value):
            _check(spec["items"], item, f"{path}({i})", errs)
        if "minItems" in spec and len(value) < spec["minItems"]:
            errs.add(path, "error.minLength")
        if "maxItems" in spec and len(value) > spec["maxItems"]:
            errs.add(path, "error.maxLength")
        return
    if kind == "map":
        if not isinstance(value, dict):
            errs.add(path, "error.expected.jsobject")
            return
        for key, item in value.items():
            _check(spec["values"], item, f"{path}/{key}", errs)
        return
    if kind == "obj":
        if not isinstance(value, dict):
            errs.add(path, "error.expected.jsobject")
            return
        for name, field_spec in spec["fields"].items():
            child = f"{path}/{name}"
            if name not in value or value[name] is None:
                if name in spec["required"]:
                    if name in value:  # explicit null for a required field
                        _check(field_spec, None, child, errs)
                    else:
                        errs.add(child, "error.path.missing")
                continue
            _check(field_spec, value[name], child, errs)
        return
    raise AssertionError(f"unknown spec kind {kind}")  # pragma: no cover


def check_types_app(raw: object, *, partial: bool = False, prefix: str = "") -> Details:
    """JSON-reader errors for an app (``partial``: AppUpdate, every field optional).

    Non-empty result -> respond ``ValidationError(details, "Invalid JSON")``.
    """
    errs = _Errors()
    _check(_APP_UPDATE if partial else _APP, raw, prefix, errs)
    return errs.details()


def check_types_group(raw: object, *, prefix: str = "") -> Details:
    """JSON-reader errors for a ``GroupUpdate`` body (nested apps/groups included)."""
    errs = _Errors()
    _check_group_types(raw, prefix, errs)
    return errs.details()


def _check_group_types(raw: object, path: str, errs: _Errors) -> None:
    if not isinstance(raw, dict):
        errs.add(path, "error.expected.jsobject")
        return
    fields: dict[str, Spec] = {
        "id": _PATH_ID,
        "dependencies": _arr(_PATH_ID),
        "scaleBy": _num(min=0),
        "version": _str(),
        "enforceRole": _BOOL,
    }
    _check(_obj(fields, required=("id",)), raw, path, errs)
    for key, item_spec in (("apps", _APP), ("groups", None)):
        items = raw.get(key)
        if items is None:
            continue
        if not isinstance(items, list):
            errs.add(f"{path}/{key}", "error.expected.jsarray")
            continue
        for i, item in enumerate(items):
            if item_spec is None:
                _check_group_types(item, f"{path}/{key}({i})", errs)
            else:
                _check(item_spec, item, f"{path}/{key}({i})", errs)


# ---------------------------------------------------------------------------------------------
# Stage 2: semantic validation (accord validators)
# ---------------------------------------------------------------------------------------------

# PathIdValidation.ID_PATH_SEGMENT_PATTERN (message quotes the pattern verbatim).
ID_PATH_SEGMENT_PATTERN = (
    r"^(([a-z0-9]|[a-z0-9][a-z0-9\-]*[a-z0-9])\.)*([a-z0-9]|[a-z0-9][a-z0-9\-]*[a-z0-9])|(\.|\.\.)$"
)
_ID_SEGMENT_RE = re.compile(ID_PATH_SEGMENT_PATTERN)
MSG_ID_PATTERN = f"must fully match regular expression '{ID_PATH_SEGMENT_PATTERN}'"
_RESERVED_KEYWORDS = ("restart", "tasks", "versions")
MSG_RESERVED = "must not end with any of the following reserved keywords: " + ", ".join(
    _RESERVED_KEYWORDS
)
MSG_CMD_ARGS_CONTAINER = (
    "AppDefinition must either contain one of 'cmd' or 'args', and/or a 'container'."
)
#: AppValidationMessages.NetworkNameRequiredForMultipleContainerNetworks
MSG_HOST_PORT_NETWORK_NAME = (
    "networkNames must be a single item list when hostPort is specified and more than 1"
    " container network is defined"
)
#: AppValidationMessages.DockerEngineLimitedToSingleContainerNetwork
MSG_DOCKER_SINGLE_NETWORK = (
    "may only specify a single container network when using the Docker container engine"
)
MSG_CONSTRAINT_OPERATOR = (
    "Constraint operator must be one of the following UNIQUE, CLUSTER, GROUP_BY, LIKE, MAX_PER,"
    " UNLIKE or IS"
)
_CONSTRAINT_OPERATORS = ("UNIQUE", "CLUSTER", "GROUP_BY", "LIKE", "UNLIKE", "MAX_PER", "IS")
_MESOS_HC_PROTOCOLS = {"COMMAND", "MESOS_HTTP", "MESOS_HTTPS", "MESOS_TCP"}
_MARATHON_HC_PROTOCOLS = {"HTTP", "HTTPS", "TCP"}


def _fmt_num(value: Any) -> str:
    """Scala's toString for the boxed value accord puts into "got X" messages."""
    if isinstance(value, float):
        return repr(value)
    return str(value)


# ---- path ids -------------------------------------------------------------------------------


def _split(path: str) -> list[str]:
    return [p for p in path.split("/") if p]


def canonical_path(raw_id: str, base: str = "/") -> str:
    """PathId.canonicalPath: resolve a relative id against ``base`` and fold '.'/'..'."""
    parts = [] if raw_id.startswith("/") else _split(base)
    for seg in _split(raw_id):
        if seg == ".":
            continue
        if seg == "..":
            if parts:
                parts.pop()
            continue
        parts.append(seg)
    return "/" + "/".join(parts)


def _parent(path: str) -> str:
    parts = _split(path)
    return "/" + "/".join(parts[:-1])


def _check_id_segments(raw_id: str, path: str, errs: _Errors) -> None:
    segments = _split(raw_id)
    if not all(_ID_SEGMENT_RE.fullmatch(s) for s in segments):
        errs.add(path, MSG_ID_PATTERN)


def _check_child_of(raw_id: str, base: str, path: str, errs: _Errors) -> None:
    if raw_id.startswith("/") and base != "/":
        if _parent(canonical_path(raw_id)) != canonical_path(base):
            errs.add(path, f"Identifier is not child of {base}. Hint: use relative paths.")


# ---- app ------------------------------------------------------------------------------------


def _container(app: dict[str, Any]) -> dict[str, Any] | None:
    c = app.get("container")
    return c if isinstance(c, dict) else None


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _port_mappings(app: dict[str, Any]) -> list[Any]:
    """Canonical container.portMappings (legacy container.docker.portMappings normalised)."""
    c = _container(app) or {}
    pms = c.get("portMappings")
    if pms is None:
        pms = _dict(c.get("docker")).get("portMappings")
    return _list(pms)


def _networks(app: dict[str, Any]) -> list[dict[str, Any]]:
    """Canonical networks, after AppNormalization of the deprecated network API."""
    nets = app.get("networks")
    if isinstance(nets, list):
        return [n if isinstance(n, dict) else {} for n in nets]
    docker_net = _dict(_dict(app.get("container")).get("docker")).get("network")
    if docker_net == "BRIDGE":
        return [{"mode": "container/bridge"}]
    if docker_net == "USER" or app.get("ipAddress") is not None:
        name = _dict(app.get("ipAddress")).get("networkName")
        return [{"mode": "container", **({"name": name} if name else {})}]
    return [{"mode": "host"}]


def _persistent_volumes(app: dict[str, Any]) -> list[Any]:
    c = _container(app) or {}
    return [v for v in _list(c.get("volumes")) if isinstance(v, dict) and "persistent" in v]


def _validate_constraint(c: Any, path: str, errs: _Errors) -> None:
    """SchedulingValidation.complyWithAppConstraintRules."""
    if not isinstance(c, list) or not (2 <= len(c) <= 3):
        errs.add(path, "Each constraint must have either 2 or 3 fields")
        return
    field, op = c[0], c[1]
    value = c[2] if len(c) == 3 else None
    if not field:
        errs.add(path, "Missing field and operator")
        return
    if op not in _CONSTRAINT_OPERATORS:
        errs.add(path, MSG_CONSTRAINT_OPERATOR)
        return
    if op == "UNIQUE":
        if value is not None:
            errs.add(path, "Value specified but not used")
    elif op == "CLUSTER":
        if not value:
            errs.add(path, "Missing value")
    elif op == "GROUP_BY":
        if value is not None and not _is_scala_int(value):
            errs.add(path, "Value was specified but is not a number")
    elif op == "MAX_PER":
        if value is None or not _is_scala_int(value):
            errs.add(path, "Value was not specified or is not a number")
    elif op in ("LIKE", "UNLIKE"):
        if value is None:
            errs.add(path, "A regular expression value must be provided")
        else:
            try:
                re.compile(value)
            except re.error:
                errs.add(path, f"'{value}' is not a valid regular expression")
    elif op == "IS" and not value:
        errs.add(path, "Missing value")


def _is_scala_int(value: str) -> bool:
    # "x".toInt: optional sign, decimal digits, fits an Int.
    if not re.fullmatch(r"[+-]?[0-9]+", value):
        return False
    return _INT32[0] <= int(value) <= _INT32[1]


def _unique(values: list[Any]) -> bool:
    return len(values) == len(set(values))


def _validate_port_definitions(pds: list[Any], path: str, errs: _Errors) -> None:
    names = [p["name"] for p in pds if isinstance(p, dict) and p.get("name") is not None]
    if not _unique(names):
        errs.add(path, "Port names must be unique.")
    ports = [p.get("port", 0) for p in pds if isinstance(p, dict)]
    if not _unique([p for p in ports if p != 0]):
        errs.add(path, "Ports must be unique.")


def _validate_container(app: dict[str, Any], c: dict[str, Any], path: str, errs: _Errors) -> None:
    pms = c.get("portMappings")
    if pms is None:
        pms = _dict(c.get("docker")).get("portMappings")
        pm_path = f"{path}/docker/portMappings"
    else:
        pm_path = f"{path}/portMappings"
    names = [p["name"] for p in _list(pms) if isinstance(p, dict) and p.get("name") is not None]
    if not _unique(names):
        errs.add(pm_path, "Port names must be unique.")
    # portMappingIsCompatibleWithNetworks: with several container networks a host port
    # belongs to exactly one of them.
    if sum(1 for n in _networks(app) if n.get("mode", "container") == "container") > 1:
        for i, pm in enumerate(_list(pms)):
            if (
                isinstance(pm, dict)
                and pm.get("hostPort") is not None
                and len(_list(pm.get("networkNames"))) != 1
            ):
                errs.add(f"{pm_path}({i})", MSG_HOST_PORT_NETWORK_NAME)

    ctype = c.get("type", "DOCKER")
    if isinstance(ctype, str) and ctype.upper() == "DOCKER" and c.get("docker") is None:
        errs.add(f"{path}/docker", "not defined")

    vols = _list(c.get("volumes"))
    ext_names = [
        _dict(v.get("external")).get("name")
        for v in vols
        if isinstance(v, dict) and _dict(v.get("external")).get("name")
    ]
    if not _unique(ext_names):
        errs.add(f"{path}/volumes", "Volume names must be unique")
    for i, vol in enumerate(vols):
        if isinstance(vol, dict):
            _validate_volume(vol, f"{path}/volumes({i})", errs)


def _validate_volume(vol: dict[str, Any], path: str, errs: _Errors) -> None:
    persistent, external = vol.get("persistent"), vol.get("external")
    cpath = vol.get("containerPath")
    if persistent is not None and external is not None:
        errs.add(path, "illegal combination of persistent and external volume fields")
        return
    if isinstance(persistent, dict):
        if cpath in ("", ".", ".."):
            errs.add(
                f"{path}/containerPath",
                "must not be empty" if cpath == "" else "can not be one of (.,..)",
            )
        if isinstance(cpath, str) and "/" in cpath:
            errs.add(f"{path}/containerPath", 'value must not contain "/"')
        if vol.get("mode", "RW") != "RW":
            errs.add(f"{path}/mode", "must be RW")
        size = persistent.get("size")
        if _is_number(size) and size <= 0:
            errs.add(f"{path}/persistent/size", f"got {_fmt_num(size)}, expected more than 0")
        ptype = persistent.get("type", "root")
        if ptype == "root" and persistent.get("constraints"):
            errs.add(f"{path}/persistent", "Constraints on root volumes are not supported")
        max_size = persistent.get("maxSize")
        if max_size is not None:
            if ptype != "mount":
                errs.add(f"{path}/persistent", "Only mount volumes can have maxSize")
            if _is_number(size) and _is_number(max_size) and max_size <= size:
                errs.add(f"{path}/persistent", "Max size must be larger than size")
        return
    if isinstance(external, dict):
        if not cpath:
            errs.add(f"{path}/containerPath", "must not be empty")
        for key in ("name", "provider"):
            if external.get(key) is None:
                errs.add(f"{path}/external/{key}", "not defined")
        external_mod.validate_volume(external, path, errs.add)
        return
    if vol.get("secret") is not None:
        return
    # host volume
    if not cpath:
        errs.add(f"{path}/containerPath", "must not be empty")
    if vol.get("hostPath") is None:
        errs.add(f"{path}/hostPath", "not defined")
    elif vol.get("hostPath") == "":
        errs.add(f"{path}/hostPath", "must not be empty")


def _validate_health_checks(app: dict[str, Any], p: str, errs: _Errors) -> None:
    hcs = _list(app.get("healthChecks"))
    pms = _port_mappings(app)
    if pms:
        n_ports = len(pms)
    elif app.get("portDefinitions") is not None:
        n_ports = len(_list(app.get("portDefinitions")))
    elif app.get("ports") is not None:
        n_ports = len(_list(app.get("ports")))
    elif any(n.get("mode") != "host" for n in _networks(app)):
        n_ports = 0
    else:
        n_ports = 1  # AppNormalization default: one port definition (port 0)
    mesos_checks = 0
    for i, hc in enumerate(hcs):
        if not isinstance(hc, dict):
            continue
        path = f"{p}/healthChecks({i})"
        protocol = str(hc.get("protocol", "HTTP")).upper()
        has_command = hc.get("command") is not None
        if protocol == "COMMAND" and not has_command:
            # Not verified against Marathon sources (see module/test docs).
            errs.add(f"{path}/command", "not defined")
        if not has_command and protocol in _MESOS_HC_PROTOCOLS:
            mesos_checks += 1
        if not has_command and protocol in _MARATHON_HC_PROTOCOLS:
            idx = hc.get("portIndex")
            ok = (
                (0 <= idx < n_ports)
                if isinstance(idx, int)
                else (hc.get("port") is not None or n_ports == 1)
            )
            if not ok:
                errs.add(
                    path,
                    "Health check port indices must address an element of the ports array"
                    " or container port mappings.",
                )
        if hc.get("port") is not None and hc.get("portIndex") is not None:
            errs.add(path, "Only one of port or portIndex may be set")
    if mesos_checks > 1:
        errs.add(p or "/", "AppDefinition can contain at most one Mesos health check")


def _validate_readiness_checks(app: dict[str, Any], p: str, errs: _Errors) -> None:
    rcs = _list(app.get("readinessChecks"))
    if len(rcs) > 1:
        errs.add(f"{p}/readinessChecks", f"got {len(rcs)}, expected 1 or less")
    names = {pd.get("name") for pd in _list(app.get("portDefinitions")) if isinstance(pd, dict)} | {
        pm.get("name") for pm in _port_mappings(app) if isinstance(pm, dict)
    }
    names.discard(None)
    for i, rc in enumerate(rcs):
        if not isinstance(rc, dict):
            continue
        path = f"{p}/readinessChecks({i})"
        port_name = rc.get("portName", "http-api")
        if port_name not in names:
            errs.add(f"{path}/portName", f"No port definition reference for portName {port_name}")
        interval = rc.get("intervalSeconds", 30)
        timeout = rc.get("timeoutSeconds", 10)
        if _is_number(interval) and _is_number(timeout) and not timeout < interval:
            errs.add(
                f"{path}/timeoutSeconds",
                f"got {_fmt_num(timeout)}, expected less than {_fmt_num(interval)}",
            )


def _validate_common(app: dict[str, Any], p: str, errs: _Errors, *, update: bool) -> None:
    """Rules shared by full apps and partial updates (only fields that are present)."""
    root = p or "/"
    cmd = app.get("cmd")
    if isinstance(cmd, str) and len(cmd) <= 1:
        # sic: Marathon rejects one-character commands with this message too.
        errs.add(root, "must not be an empty string")

    constraints = app.get("constraints")
    for i, c in enumerate(_list(constraints)):
        _validate_constraint(c, f"{p}/constraints({i})", errs)

    if app.get("portDefinitions") is not None:
        _validate_port_definitions(_list(app["portDefinitions"]), f"{p}/portDefinitions", errs)

    c = _container(app)
    if c is not None:
        _validate_container(app, c, f"{p}/container", errs)

    roles = app.get("acceptedResourceRoles")
    if isinstance(roles, list) and not roles:
        errs.add(f"{p}/acceptedResourceRoles", "must not be empty")

    # deprecated API (AppValidation.validateOldAppAPI / validateOldAppUpdateAPI)
    ports = app.get("ports")
    if isinstance(ports, list) and not _unique([x for x in ports if x != 0]):
        errs.add(root, "ports must be unique")
    has_ports = bool(_list(ports)) or bool(_list(app.get("portDefinitions")))
    if app.get("ipAddress") is not None and has_ports:
        errs.add(root, "cannot specify both an IP address and port")
    if ports is not None and app.get("portDefinitions") is not None:
        pd_ports = [d.get("port", 0) for d in _list(app["portDefinitions"]) if isinstance(d, dict)]
        if pd_ports != ports:
            errs.add(root, "cannot specify both ports and port definitions")
    if app.get("ipAddress") is not None and _list(app.get("networks")):
        errs.add(root, "must not specify both networks and ipAddress")
    docker = _dict(_dict(app.get("container")).get("docker"))
    if docker.get("network") is not None and app.get("networks") is not None:
        errs.add(root, "must not specify both container.docker.network and networks")
    ip = app.get("ipAddress")
    if (
        isinstance(ip, dict)
        and ip.get("discovery") is not None
        and str(_dict(app.get("container")).get("type", "")).upper() == "DOCKER"
    ):
        errs.add(f"{p}/ipAddress", "ipAddress/discovery is not allowed for Docker containers")
    if _list(app.get("uris")) and _list(app.get("fetch")):
        errs.add(f"{p}/uris", "may not be set in conjunction with fetch")

    # networks
    nets = app.get("networks")
    if isinstance(nets, list):
        _validate_networks([n if isinstance(n, dict) else {} for n in nets], f"{p}/networks", errs)
        modes = {n.get("mode", "container") for n in nets if isinstance(n, dict)}
        if "host" in modes and _list(_dict(app.get("container")).get("portMappings")):
            errs.add(root, "portMappings are not allowed with host-networking")
        if modes - {"host"} and _list(app.get("portDefinitions")):
            errs.add(root, "portDefinitions are only allowed with host-networking")

    if update and app.get("version") is not None:
        others = [k for k, v in app.items() if v is not None and k not in ("id", "version")]
        if others:
            errs.add(root, "The 'version' field may only be combined with the 'id' field.")


def _validate_networks(nets: list[dict[str, Any]], path: str, errs: _Errors) -> None:
    """NetworkValidation.ramlNetworksValidator (+ defaultNetworkNameValidator, no default)."""
    if any(n.get("mode") == "host" and (n.get("name") or n.get("labels")) for n in nets):
        errs.add(path, "Host networks may not have names or labels")
    if any(n.get("mode") == "container/bridge" and n.get("name") for n in nets):
        errs.add(path, "Bridge networks may not have names")
    unnamed = sum(
        1 for n in nets if not n.get("name") and n.get("mode", "container") == "container"
    )
    names = [n["name"] for n in nets if n.get("name")]
    if unnamed >= 2 or not _unique(names):
        errs.add(path, "Duplicate networks are not allowed")
    counts = {m: 0 for m in ("host", "container/bridge", "container")}
    for n in nets:
        mode = n.get("mode", "container")
        if mode in counts:
            counts[mode] += 1
    h, b, ct = counts["host"], counts["container/bridge"], counts["container"]
    if not (
        (h <= 1 and b == 0 and ct == 0)
        or (h == 0 and b <= 1 and ct == 0)
        or (h == b == 0 and ct > 0)
    ):
        errs.add(
            path,
            "May specify a single host network, single bridge network, or else 1-to-n container networks",
        )
    if any(n.get("mode", "container") == "container" and not n.get("name") for n in nets):
        errs.add(path, "Network name must be specified when container network is selected.")


def _validate_full_app(app: dict[str, Any], p: str, base: str, errs: _Errors) -> None:
    root = p or "/"
    raw_id = app.get("id")
    if isinstance(raw_id, str):
        _check_child_of(raw_id, base, f"{p}/id", errs)
        _check_id_segments(raw_id, f"{p}/id", errs)
        segments = _split(canonical_path(raw_id, base))
        if segments and segments[-1] in _RESERVED_KEYWORDS:
            errs.add(f"{p}/id", MSG_RESERVED)
        if not segments:
            errs.add(root, "must not be root")

    _validate_common(app, p, errs, update=False)

    # containsCmdArgsOrContainer
    has_cmd = app.get("cmd") is not None
    has_args = bool(_list(app.get("args")))
    c = _container(app)
    has_image_container = False
    if c is not None:
        ctype = str(c.get("type", "DOCKER")).upper()
        has_image_container = c.get("docker") is not None and ctype in ("DOCKER", "MESOS")
    if not ((has_cmd ^ has_args) or (not (has_cmd and has_args) and has_image_container)):
        errs.add(root, MSG_CMD_ARGS_CONTAINER)

    _validate_health_checks(app, p, errs)
    _validate_readiness_checks(app, p, errs)

    labels = _dict(app.get("labels"))
    single_instance = labels.get("MARATHON_SINGLE_INSTANCE_APP") == "true"
    instances = app.get("instances", 1)
    if single_instance and _is_number(instances) and instances > 1:
        errs.add(root, "Single instance app may only have one instance")
    if labels.get("DCOS_MIGRATION_API_VERSION"):
        if not (
            labels["DCOS_MIGRATION_API_VERSION"] == "v1"
            and labels.get("DCOS_PACKAGE_FRAMEWORK_NAME")
            and labels.get("DCOS_MIGRATION_API_PATH")
        ):
            errs.add(
                root,
                "DCOS_PACKAGE_FRAMEWORK_NAME and DCOS_MIGRATION_API_PATH must be defined"
                " when using DCOS_MIGRATION_API_VERSION",
            )

    external_mod.validate_app(app, p, errs.add)
    container = _dict(app.get("container"))
    container_type = str(container.get("type", "DOCKER") if container else "").upper()
    if (
        container_type == "DOCKER"
        and sum(1 for n in _networks(app) if n.get("mode", "container") == "container") > 1
    ):
        errs.add(root, MSG_DOCKER_SINGLE_NETWORK)  # complyWithDockerNetworkingRules
    resident = bool(_persistent_volumes(app))
    if app.get("residency") is not None and not resident:
        errs.add(root, "App must contain persistent volumes and define residency")
    # DVDI volumes are held to the same upgrade strategy (UpgradeStrategy.validForResidentTasks).
    resident_like = resident or bool(external_mod.external_volumes(app))
    us = app.get("upgradeStrategy")
    if isinstance(us, dict):
        moc, mhc = us.get("maximumOverCapacity"), us.get("minimumHealthCapacity")
        if single_instance:
            if _is_number(mhc) and mhc != 0:
                errs.add(
                    f"{p}/upgradeStrategy/minimumHealthCapacity",
                    f"got {_fmt_num(mhc)}, expected 0.0",
                )
            if _is_number(moc) and moc != 0:
                errs.add(
                    f"{p}/upgradeStrategy/maximumOverCapacity", f"got {_fmt_num(moc)}, expected 0.0"
                )
        if resident_like and _is_number(moc) and moc != 0:
            errs.add(
                f"{p}/upgradeStrategy/maximumOverCapacity", f"got {_fmt_num(moc)}, expected 0.0"
            )
        if resident_like and _is_number(mhc) and mhc > 0.5:
            # docs/persistent-volumes.md: a resident app stays at or below the defaults
            # (minimumHealthCapacity 0.5, maximumOverCapacity 0).
            errs.add(
                f"{p}/upgradeStrategy/minimumHealthCapacity",
                f"got {_fmt_num(mhc)}, expected 0.5 or less",
            )
    un = app.get("unreachableStrategy")
    if resident and un is not None and not (isinstance(un, str) and un.lower() == "disabled"):
        errs.add(root, "unreachableStrategy must be disabled for resident tasks")

    gpus = app.get("gpus", 0)
    if (
        _is_number(gpus)
        and gpus > 0
        and c is not None
        and str(c.get("type", "DOCKER")).upper() == "DOCKER"
    ):
        errs.add(root, "GPU resources only work with the Mesos containerizer")

    parent = _parent(canonical_path(raw_id, base)) if isinstance(raw_id, str) else base
    for i, dep in enumerate(_list(app.get("dependencies"))):
        if isinstance(dep, str):
            _check_id_segments(dep, f"{p}/dependencies({i})", errs)
            _check_child_of(dep, parent, f"{p}/dependencies({i})", errs)


def validate_app(raw: dict[str, Any], *, prefix: str = "", base: str = "/") -> Details:
    """Semantic validation of a full app definition; ``base`` is the enclosing group id."""
    errs = _Errors()
    _validate_full_app(raw, prefix, base, errs)
    return errs.details()


def validate_resident_update(
    old: dict[str, Any], new: dict[str, Any], *, prefix: str = ""
) -> Details:
    """``residentUpdateIsValid``: a resident app keeps its volumes and its resources."""
    errs = _Errors()
    if not (_persistent_volumes(old) or _persistent_volumes(new)):
        return errs.details()
    root = prefix or "/"
    old_vols, new_vols = _persistent_volumes(old), _persistent_volumes(new)

    def same(v: dict[str, Any]) -> bool:
        match = [w for w in new_vols if w.get("containerPath") == v.get("containerPath")]
        return bool(match) and _volume_key(match[0]) == _volume_key(v)

    if len(old_vols) != len(new_vols) or not all(same(v) for v in old_vols):
        errs.add(root, "Persistent volumes can not be changed!")
    keys = ("cpus", "mem", "disk", "gpus")
    defaults = {"cpus": 1.0, "mem": 128.0, "disk": 0.0, "gpus": 0}
    changed = any(
        float(old.get(k, defaults[k]) or 0) != float(new.get(k, defaults[k]) or 0) for k in keys
    )
    if changed or bool(old.get("requirePorts")) != bool(new.get("requirePorts")):
        errs.add(root, "Resident Tasks may not change resource requirements!")
    return errs.details()


def _volume_key(v: dict[str, Any]) -> tuple[Any, ...]:
    p = _dict(v.get("persistent"))
    return (
        v.get("containerPath"),
        v.get("mode", "RW"),
        p.get("type", "root"),
        p.get("size"),
        p.get("maxSize"),
    )


def validate_app_update(raw: dict[str, Any], *, prefix: str = "") -> Details:
    """Semantic validation of a partial update (AppUpdate): only present fields are checked."""
    errs = _Errors()
    raw_id = raw.get("id")
    if isinstance(raw_id, str):
        _check_id_segments(raw_id, f"{prefix}/id", errs)
        if not _split(canonical_path(raw_id)):
            errs.add(prefix or "/", "must not be root")
    # Cross-field rules (cmd/args/container, health check port indices, readiness port names)
    # need the merged app; callers run validate_app on the result of applying the update.
    _validate_common(raw, prefix, errs, update=True)
    return errs.details()


def validate_group(raw: dict[str, Any]) -> Details:
    """Semantic validation of a ``/v2/groups`` body (nested apps and groups)."""
    errs = _Errors()
    _validate_group(raw, "", "/", errs, top=True)
    return errs.details()


def _validate_group(raw: dict[str, Any], p: str, base: str, errs: _Errors, *, top: bool) -> None:
    raw_id = raw.get("id")
    gid = base
    if isinstance(raw_id, str):
        if not top:
            _check_child_of(raw_id, base, f"{p}/id", errs)
        _check_id_segments(raw_id, f"{p}/id", errs)
        gid = canonical_path(raw_id, base)
    for i, app in enumerate(_list(raw.get("apps"))):
        if isinstance(app, dict):
            _validate_full_app(app, f"{p}/apps({i})", gid, errs)
    for i, group in enumerate(_list(raw.get("groups"))):
        if isinstance(group, dict):
            _validate_group(group, f"{p}/groups({i})", gid, errs, top=False)
