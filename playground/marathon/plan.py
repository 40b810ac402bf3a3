"""Deployment plans as Marathon 1.10's ``DeploymentPlan.apply`` builds them.

Steps run one after the other, the actions of a step in parallel:

1. ``StopApplication`` for every app that is gone from the target;
2. ``StartApplication`` (with 0 instances) for every new app;
3. one step per dependency level of the target (``runSpecsGroupedByLongestPath``: apps whose
   longest dependency chain is shorter come first) holding, for each new or changed app,
   ``ScaleApplication`` (new app, or a scale-only change: ``isOnlyScaleChange``) or
   ``RestartApplication`` (``needsRestart``: a config change -- ``isUpgrade`` -- or a new
   ``versionInfo``, which is how ``/v2/apps/{id}/restart`` asks for a restart).

Empty steps are dropped.  Actions of one step are sorted by app id (Marathon keeps them in a set).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from playground.marathon import appdef

__all__ = [
    "affected_apps",
    "build_plan",
    "canonical_path",
    "dependency_levels",
    "is_config_change",
    "is_scale_change",
    "needs_restart",
]

Action = dict[str, str]

_VERSION_KEYS = frozenset({"version", "versionInfo"})
# Status fields of the app JSON: never part of the definition.
_RUNTIME_KEYS = appdef.RUNTIME_FIELDS - _VERSION_KEYS
# Fields that are sets in AppDefinition: order does not matter.
_SET_KEYS = ("constraints", "acceptedResourceRoles", "healthChecks", "dependencies")


def canonical_path(path: str, base: str = "/") -> str:
    """``PathId.canonicalPath``: resolve a (relative) id against the absolute group ``base``.

    ``canonical_path("db", "/prod")`` is ``/prod/db``, ``"../db"`` goes one group up, ``"."`` is
    skipped; absolute paths only get ``.``/``..`` resolved.
    """
    return appdef.canonical_id(path, base)


def _dependencies(app_id: str, app: dict[str, Any]) -> list[str]:
    return [canonical_path(str(d), appdef.parent_of(app_id)) for d in app.get("dependencies") or []]


def _sorted_json(items: Iterable[Any]) -> list[Any]:
    return sorted(items, key=lambda x: json.dumps(x, sort_keys=True))


def _definition(app: dict[str, Any], *, drop: frozenset[str]) -> dict[str, Any]:
    app_id = str(app.get("id", ""))
    out = {k: v for k, v in app.items() if k not in drop and k not in _RUNTIME_KEYS}
    if "acceptedResourceRoles" in out and not out["acceptedResourceRoles"]:
        del out["acceptedResourceRoles"]
    out.setdefault("acceptedResourceRoles", ["*"])
    if "dependencies" in out:
        out["dependencies"] = _dependencies(app_id, app) if app_id else out["dependencies"]
    for key in _SET_KEYS:
        if key in out and isinstance(out[key], list):
            # Sets: order and duplicates do not matter.
            unique = {json.dumps(x, sort_keys=True): x for x in out[key]}
            out[key] = _sorted_json(unique.values())
    return out


def _version_info(app: dict[str, Any]) -> tuple[Any, Any]:
    return app.get("version"), app.get("versionInfo")


def is_config_change(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """``AppDefinition.isUpgrade``: the same app with a changed definition -- anything besides
    ``instances`` and the version information.  Different ids are never an upgrade.
    """
    if old.get("id") != new.get("id"):
        return False
    drop = _VERSION_KEYS | {"instances"}
    return _definition(old, drop=drop) != _definition(new, drop=drop)


def is_scale_change(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """``AppDefinition.isOnlyScaleChange``: no config change, but another instance count."""
    return not is_config_change(old, new) and old.get("instances") != new.get("instances")


def needs_restart(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """``AppDefinition.needsRestart``: a config change or a new ``versionInfo`` (restart)."""
    return _version_info(old) != _version_info(new) or is_config_change(old, new)


def _edges(target: dict[str, dict[str, Any]]) -> dict[str, set[str]]:
    """``RootGroup.dependencyGraph``: app -> apps it depends on (an app id or a group's apps)."""
    edges: dict[str, set[str]] = {app_id: set() for app_id in target}
    for app_id, app in target.items():
        for dep in _dependencies(app_id, app):
            if dep in target:
                edges[app_id].add(dep)
                continue
            prefix = dep.rstrip("/") + "/"
            edges[app_id].update(other for other in target if other.startswith(prefix))
    return edges


def dependency_levels(target: dict[str, dict[str, Any]]) -> dict[str, int]:
    """Length of the longest dependency chain starting at each app (1 = no dependencies).

    Raises ``ValueError`` on cyclic dependencies (Marathon refuses such groups).
    """
    edges = _edges(target)
    levels: dict[str, int] = {}
    visiting: set[str] = set()

    def longest(app_id: str) -> int:
        if app_id in levels:
            return levels[app_id]
        if app_id in visiting:
            raise ValueError(f"cyclic dependencies involving {app_id}")
        visiting.add(app_id)
        length = 1 + max((longest(dep) for dep in edges[app_id]), default=0)
        visiting.discard(app_id)
        levels[app_id] = length
        return length

    for app_id in sorted(target):
        longest(app_id)
    return levels


def build_plan(
    original: dict[str, dict[str, Any]], target: dict[str, dict[str, Any]]
) -> list[list[Action]]:
    """The steps of the deployment from ``original`` to ``target`` (app id -> app JSON)."""
    steps: list[list[Action]] = []
    steps.append(
        [{"action": "StopApplication", "app": i} for i in sorted(set(original) - set(target))]
    )
    steps.append(
        [{"action": "StartApplication", "app": i} for i in sorted(set(target) - set(original))]
    )

    everything: frozenset[str] = (
        frozenset()
    )  # compare complete definitions, version information included
    changed = {
        i
        for i, app in target.items()
        if i not in original
        or _definition(original[i], drop=everything) != _definition(app, drop=everything)
    }

    levels = dependency_levels(target)
    by_level: dict[int, list[str]] = {}
    for app_id in changed:
        by_level.setdefault(levels[app_id], []).append(app_id)

    for level in sorted(by_level):
        actions: list[Action] = []
        for app_id in sorted(by_level[level]):
            new = target[app_id]
            old = original.get(app_id)
            if old is None or is_scale_change(old, new):
                actions.append({"action": "ScaleApplication", "app": app_id})
            elif needs_restart(old, new):
                actions.append({"action": "RestartApplication", "app": app_id})
        steps.append(actions)

    return [s for s in steps if s]


def affected_apps(steps: Sequence[Sequence[Action]]) -> list[str]:
    """Ids of all apps referenced by the plan's actions (``affectedApps``), sorted."""
    return sorted({a["app"] for step in steps for a in step if "app" in a})
