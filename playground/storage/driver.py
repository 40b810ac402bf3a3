"""The agent's volume driver for external volumes (what ``dvdcli`` and the Portworx plugin do).

A task's ``container.volumes`` entry of source type ``DOCKER_VOLUME`` whose driver is
``playground`` or ``pxd`` names a volume of the storage node. Before the task starts the
agent attaches each such volume here (provisioning it on first use with the options the app
gave), links the working copy at the volume's container path in the sandbox, and passes
``PLAYGROUND_STORAGE_URL`` and ``PLAYGROUND_VOLUMES`` (a JSON object: container path ->
``{"id", "name", "path", "size_bytes"}``) in the task's environment. When the task ends the
volume is detached (a final replication pass runs first).

Portworx's inline form is understood: a volume name ``name=vol,size=10,repl=2`` carries its
options in the name.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DRIVERS = ("playground", "pxd")
#: Options the storage node understands, from ``dvdi/<option>`` or the inline form.
_OPTION_KEYS = {
    "size": "size",
    "repl": "repl",
    "secure": "secure",
    "rack_aware": "rack_aware",
    "labels": "labels",
    "label": "labels",
}


@dataclass
class ExternalVolume:
    name: str
    container_path: str
    driver: str
    options: dict[str, str] = field(default_factory=dict)

    def create_options(self) -> dict[str, Any]:
        """What the storage node provisions the volume with if it does not exist."""
        out: dict[str, Any] = {}
        for key, value in self.options.items():
            target = _OPTION_KEYS.get(key)
            if target is None:
                continue
            if target == "labels":
                labels: dict[str, str] = {}
                for part in str(value).replace(";", ",").split(","):
                    if "=" in part:
                        k, v = part.split("=", 1)
                        labels[k.strip()] = v.strip()
                    elif ":" in part:
                        k, v = part.split(":", 1)
                        labels[k.strip()] = v.strip()
                out["labels"] = {**out.get("labels", {}), **labels}
            else:
                out[target] = value
        return out

    def sandbox_path(self, sandbox: Path) -> Path:
        """Where the task sees the volume: the container path, inside the sandbox."""
        rel = os.path.normpath(self.container_path.lstrip("/") or self.name)
        # The last component is not resolved: it may be this volume's link from a previous
        # launch (which points into the pool, outside the sandbox, and is replaced).
        parent = (sandbox / rel).parent.resolve()
        root = sandbox.resolve()
        if rel in (".", "..") or rel.startswith("../") or root not in (parent, *parent.parents):
            raise ValueError(f"container path {self.container_path!r} leaves the sandbox")
        return sandbox / rel


def parse_inline(name: str) -> tuple[str, dict[str, str]]:
    """``name=vol,size=10,repl=2`` -> (``vol``, options); a plain name has none."""
    if "=" not in name:
        return name, {}
    opts: dict[str, str] = {}
    for part in name.split(","):
        if "=" in part:
            k, v = part.split("=", 1)
            opts[k.strip()] = v.strip()
    return opts.pop("name", name), opts


def external_volumes(info: dict[str, Any]) -> list[ExternalVolume]:
    """The task's volumes served by the storage node."""
    out: list[ExternalVolume] = []
    for vol in (info.get("container") or {}).get("volumes") or []:
        source = vol.get("source") or {}
        if source.get("type") != "DOCKER_VOLUME":
            continue
        dv = source.get("docker_volume") or {}
        driver = str(dv.get("driver") or "")
        if driver not in DRIVERS:
            continue
        name, options = parse_inline(str(dv.get("name") or ""))
        params = (dv.get("driver_options") or {}).get("parameter") or []
        for p in params:
            key = str(p.get("key", ""))
            key = key.split("/", 1)[1] if key.startswith("dvdi/") else key
            options.setdefault(key, str(p.get("value", "")))
        out.append(ExternalVolume(name, str(vol.get("container_path") or name), driver, options))
    return out


def link(vol: ExternalVolume, sandbox: Path, target: str) -> Path:
    """Link the working copy at the volume's path in the sandbox."""
    where = vol.sandbox_path(sandbox)
    where.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        if where.is_symlink() or where.is_file():
            where.unlink()
        elif where.is_dir():
            os.rmdir(where)  # an empty placeholder only; never data
    os.symlink(target, where)
    return where


def task_env(storage_url: str, mounted: dict[str, dict[str, Any]]) -> dict[str, str]:
    return {
        "PLAYGROUND_STORAGE_URL": storage_url,
        "PLAYGROUND_VOLUMES": json.dumps(mounted, sort_keys=True),
    }
