"""The dependency direction of DESIGN §8, enforced on the import graph."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NODE_PACKAGES = [
    "mesos",
    "coordinator",
    "cluster",
    "marathon",
    "monitor",
    "workloads",
    "storage",
    "dns",
    "edge",
    "l4lb",
]
FORBIDDEN_FOR_NODES = ("tui", "textual", "docker")


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
    return out


def test_node_packages_never_import_the_tui_textual_or_docker() -> None:
    """No module of a node package imports tui, textual or docker."""
    offenders = []
    for pkg in NODE_PACKAGES:
        for f in (ROOT / "playground" / pkg).rglob("*.py"):
            for mod in imports_of(f):
                if mod.split(".")[0] in FORBIDDEN_FOR_NODES:
                    offenders.append(f"{f.relative_to(ROOT)} imports {mod}")
    assert offenders == []


def test_client_does_not_reach_into_node_internals() -> None:
    """The client package imports only the shared models of node packages, never servers."""
    offenders = []
    for f in (ROOT / "playground" / "client").rglob("*.py"):
        for mod in imports_of(f):
            if mod.startswith("playground.") and not mod.startswith(
                ("playground.client", "playground.errors", "playground.mesos.models")
            ):
                offenders.append(f"{f.relative_to(ROOT)} imports {mod}")
    assert offenders == []


def test_tui_and_labs_use_only_client_and_backends() -> None:
    """The TUI and the labs reach a cluster through playground.client and playground.backends only."""
    allowed = ("playground.client", "playground.backends", "playground.errors")
    offenders = []
    for folder in ("tui", "labs"):
        for f in (ROOT / folder).rglob("*.py") if (ROOT / folder).exists() else []:
            for mod in imports_of(f):
                if mod.startswith("playground") and not mod.startswith(allowed):
                    offenders.append(f"{f.relative_to(ROOT)} imports {mod}")
    assert offenders == []
