"""The shipped experiments (Chaos Toolkit JSON), modelled on Portworx Torpedo's scenarios.

Each file ``<Name>.json`` is a complete experiment: ``chaos run`` runs it as it is, and so
does ``playground chaos run Name``. Its ``extensions`` entry named ``playground`` says what
it needs of the cluster (``needs``: ``masters``, ``topology``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from playground.errors import PlaygroundError

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Entry:
    """One shipped experiment."""

    name: str
    title: str
    description: str
    path: Path
    needs: dict[str, Any] = field(default_factory=dict)
    tags: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "description": self.description,
            "needs": dict(self.needs),
            "topology": self.needs.get("topology", "default"),
            "tags": list(self.tags),
            "path": str(self.path),
        }


def needs_of(experiment: dict[str, Any]) -> dict[str, Any]:
    """What an experiment needs of the cluster (its ``playground`` extension's ``needs``)."""
    for ext in experiment.get("extensions") or []:
        if isinstance(ext, dict) and ext.get("name") == "playground":
            return dict(ext.get("needs") or {})
    return {}


def entries() -> list[Entry]:
    """Every shipped experiment, by name."""
    out = []
    for path in sorted(HERE.glob("*.json")):
        exp = json.loads(path.read_text())
        out.append(
            Entry(
                name=path.stem,
                title=str(exp.get("title", "")),
                description=str(exp.get("description", "")),
                path=path,
                needs=needs_of(exp),
                tags=tuple(t for t in exp.get("tags", []) if t != "playground"),
            )
        )
    return out


def names() -> list[str]:
    return [e.name for e in entries()]


def find(name: str) -> Entry:
    """A shipped experiment by name (case-insensitive)."""
    for e in entries():
        if e.name.lower() == name.lower():
            return e
    raise PlaygroundError(
        f"no experiment named {name!r} in the catalogue",
        hint="shipped experiments: " + ", ".join(names()) + " (or give a file path)",
    )


def load(name: str) -> dict[str, Any]:
    """A shipped experiment's JSON."""
    return dict(json.loads(find(name).path.read_text()))
