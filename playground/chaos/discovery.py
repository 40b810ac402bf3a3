"""Chaos Toolkit discovery of the kit's extension: every target's actions and probes.

A target is a subpackage of ``playground.chaos`` holding ``actions.py`` and/or
``probes.py``; each module lists its activities in ``__all__``. Nothing is hand-listed:
adding ``playground/chaos/<target>/probes.py`` adds a target.
"""

from __future__ import annotations

import importlib.util
import pkgutil
from typing import Any

from playground import __version__
from playground.errors import PlaygroundError

EXTENSION_NAME = "stateful-playground"
KINDS = {"actions": "action", "probes": "probe"}


def targets() -> list[str]:
    """Names of the subpackages of ``playground.chaos`` with actions or probes."""
    import playground.chaos as pkg

    out = []
    for info in pkgutil.iter_modules(pkg.__path__):
        if not info.ispkg:
            continue
        if any(
            importlib.util.find_spec(f"{pkg.__name__}.{info.name}.{module}") is not None
            for module in KINDS
        ):
            out.append(info.name)
    return sorted(out)


def activity_modules() -> list[tuple[str, str]]:
    """``(module path, "action" | "probe")`` of every target's activity module."""
    out = []
    for target in targets():
        for module, kind in KINDS.items():
            path = f"playground.chaos.{target}.{module}"
            if importlib.util.find_spec(path) is not None:
                out.append((path, kind))
    return out


def load_exported_activities() -> list[dict[str, Any]]:
    """Every exported action and probe, with its arguments, as Chaos Toolkit describes them."""
    from chaoslib.discovery import discover_actions, discover_probes

    activities: list[dict[str, Any]] = []
    for path, kind in activity_modules():
        found = discover_actions(path) if kind == "action" else discover_probes(path)
        activities.extend(found)
    return activities


def explore_system(configuration: dict[str, Any] | None = None) -> dict[str, Any]:
    """The cluster the extension would act on: state dir, topology, nodes, endpoints."""
    from playground.chaos import extension as ext

    root = ext.state_dir(configuration)
    try:
        status = ext.backend(configuration).cluster.status()
    except PlaygroundError as exc:
        return {"state_dir": str(root), "cluster": None, "error": str(exc)}
    return {
        "state_dir": str(root),
        "cluster": {
            "topology": status.get("topology"),
            "time_scale": status.get("time_scale"),
            "leader": status.get("leader"),
            "endpoints": status.get("endpoints"),
            "nodes": [
                {k: n.get(k) for k in ("name", "role", "zone", "state")}
                for n in status.get("nodes", [])
            ],
        },
    }


def discover(discover_system: bool = True) -> dict[str, Any]:
    """Chaos Toolkit's extension entry point: the kit's activities (and the cluster)."""
    from chaoslib.discovery import initialize_discovery_result

    result: dict[str, Any] = initialize_discovery_result(EXTENSION_NAME, __version__, "playground")
    result["activities"].extend(load_exported_activities())
    if discover_system:
        result["system"] = explore_system()
    return result
