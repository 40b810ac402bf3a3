"""Marathon's durable state: apps, groups, versions, instances, deployments, framework id.

Everything lives under the node's work directory. Every file is replaced atomically
(write, rename), so a crash at any moment leaves the previous or the new content, never
a mix. App definitions and versions are written before the API answers; instance records
are written before their task is launched, and their later changes are written within
a few milliseconds (coalesced), because after a restart the master's reconciliation
tells Marathon the tasks' real states anyway.
"""

from __future__ import annotations

import json
import logging
import urllib.parse
from pathlib import Path
from typing import Any

from playground.cluster.statedir import atomic_write

log = logging.getLogger("playground.marathon.store")

SCHEMA_VERSION = 1


class Store:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.versions_dir = root / "versions"
        self.versions_dir.mkdir(parents=True, exist_ok=True)
        self.state_file = root / "state.json"

    def load(self) -> dict[str, Any]:
        if not self.state_file.exists():
            return {}
        data = json.loads(self.state_file.read_text())
        if data.get("schema_version") != SCHEMA_VERSION:
            raise RuntimeError(
                f"{self.state_file} has schema version {data.get('schema_version')}; "
                f"this kit reads {SCHEMA_VERSION}"
            )
        return dict(data)

    def write_now(self, snapshot: dict[str, Any]) -> None:
        """Write the whole state at once (before the API answers a change)."""
        data = {"schema_version": SCHEMA_VERSION, **snapshot}
        atomic_write(self.state_file, json.dumps(data, separators=(",", ":")).encode(), False)

    # ---- versions --------------------------------------------------------------------
    def _app_dir(self, app_id: str) -> Path:
        return self.versions_dir / urllib.parse.quote(app_id, safe="")

    def save_version(self, app: dict[str, Any]) -> None:
        d = self._app_dir(app["id"])
        d.mkdir(parents=True, exist_ok=True)
        atomic_write(d / f"{app['version']}.json", json.dumps(app).encode(), False)

    def versions(self, app_id: str) -> list[str]:
        d = self._app_dir(app_id)
        if not d.is_dir():
            return []
        return sorted((p.stem for p in d.glob("*.json")), reverse=True)

    def version(self, app_id: str, version: str) -> dict[str, Any] | None:
        p = self._app_dir(app_id) / f"{version}.json"
        if not p.is_file():
            return None
        return dict(json.loads(p.read_text()))

    def drop_versions(self, app_id: str) -> None:
        d = self._app_dir(app_id)
        if d.is_dir():
            for p in d.glob("*.json"):
                p.unlink(missing_ok=True)
            d.rmdir()
