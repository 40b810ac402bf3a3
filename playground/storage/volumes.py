"""The storage node's registry: volumes, their replicas and attachments, snapshots.

Everything the storage node must not forget lives in ``STATE/nodes/storage-1/work``:
``volumes.json`` (the registry, written atomically on every change) and ``snapshots/``
(one JSON file per snapshot: its metadata and manifest; the content is in ``chunks/``).

Names and values coming from users are validated here, with errors that say what is
allowed; directories are named by volume id, never by a user's string.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from pathlib import Path
from typing import Any

from playground.cluster.statedir import atomic_write
from playground.errors import PlaygroundError
from playground.storage.placement import MAX_REPLICATION

SCHEMA_VERSION = 1
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
NAME_RULE = (
    "a name is 1 to 63 characters: letters, digits, '.', '_' and '-', starting with a "
    "letter or digit"
)
LABEL_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_./-]{0,62}$")
#: Smallest and largest volume sizes (GB); sizes are a quota on the volume's bytes.
MIN_SIZE_GB = 0.001
MAX_SIZE_GB = 64 * 1024.0
#: The size of a volume provisioned implicitly without one (Marathon's default).
DEFAULT_SIZE_GB = 16.0
GB = 1024**3


class StorageError(PlaygroundError):
    """A storage request that cannot be done; ``status`` is its HTTP status."""

    def __init__(self, status: int, message: str, hint: str | None = None) -> None:
        super().__init__(message, hint)
        self.status = status

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"message": str(self)}
        if self.hint:
            out["hint"] = self.hint
        return out


def check_name(name: Any, what: str = "volume") -> str:
    if not isinstance(name, str) or not NAME_PATTERN.match(name) or ".." in name:
        raise StorageError(
            400,
            f"invalid {what} name {name!r}: {NAME_RULE}",
            hint=f"e.g. `orders-db` or `customers.v2` (`playground {what} list` shows the names)",
        )
    return name


def check_size(size: Any) -> float:
    try:
        value = float(size)
    except (TypeError, ValueError):
        raise StorageError(
            400, f"invalid size {size!r}: a number of GB, e.g. 1 or 0.5", hint="--size 1"
        ) from None
    if not MIN_SIZE_GB <= value <= MAX_SIZE_GB or value != value:
        raise StorageError(
            400,
            f"invalid size {size!r}: from {MIN_SIZE_GB:g} to {MAX_SIZE_GB:g} GB",
            hint="sizes are in GB: --size 1 is 1 GB, --size 0.01 about 10 MB",
        )
    return value


def check_repl(repl: Any) -> int:
    try:
        value = int(repl)
    except (TypeError, ValueError):
        value = 0
    if str(repl).strip() != str(value) or not 1 <= value <= MAX_REPLICATION:
        raise StorageError(
            400,
            f"invalid replication factor {repl!r}: from 1 to {MAX_REPLICATION}",
            hint="each replica lives in a distinct zone; --repl 2 survives the loss of one",
        )
    return value


def check_labels(labels: Any) -> dict[str, str]:
    if labels is None:
        return {}
    if not isinstance(labels, dict):
        raise StorageError(400, "labels must be an object of string keys and values")
    out: dict[str, str] = {}
    for k, v in labels.items():
        if not isinstance(k, str) or not LABEL_KEY.match(k):
            raise StorageError(400, f"invalid label key {k!r}: letters, digits, '._/-', 1-63")
        if not isinstance(v, (str, int, float, bool)) or len(str(v)) > 253:
            raise StorageError(400, f"invalid value for label {k!r}: a string of <= 253 chars")
        out[k] = str(v).lower() if isinstance(v, bool) else str(v)
    return out


def as_bool(value: Any, what: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
        return value.lower() in ("true", "1", "yes")
    raise StorageError(400, f"invalid {what} {value!r}: true or false")


def new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(6)}"


def iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1000):03d}Z"


class Registry:
    """Volumes by id, persisted in ``volumes.json``; snapshots in ``snapshots/``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.file = root / "volumes.json"
        self.snap_dir = root / "snapshots"
        self.snap_dir.mkdir(exist_ok=True)
        self.volumes: dict[str, dict[str, Any]] = {}
        self.snapshots: dict[str, dict[str, Any]] = {}
        self.schedules: dict[str, dict[str, Any]] = {}
        self.load()

    def load(self) -> None:
        if self.file.exists():
            data = json.loads(self.file.read_text())
            self.volumes = {v["id"]: v for v in data.get("volumes", [])}
            self.schedules = {s["id"]: s for s in data.get("schedules", [])}
        for f in sorted(self.snap_dir.glob("snap-*.json")):
            try:
                snap = json.loads(f.read_text())
            except (OSError, json.JSONDecodeError):
                continue  # a torn file cannot exist (atomic writes); skip anything odd
            self.snapshots[snap["id"]] = snap

    def save(self, durable: bool = True) -> None:
        data = {
            "schema_version": SCHEMA_VERSION,
            "volumes": list(self.volumes.values()),
            "schedules": list(self.schedules.values()),
        }
        atomic_write(self.file, json.dumps(data, sort_keys=True).encode(), durable=durable)

    def save_snapshot(self, snap: dict[str, Any]) -> None:
        atomic_write(self.snap_dir / f"{snap['id']}.json", json.dumps(snap).encode())
        self.snapshots[snap["id"]] = snap

    def delete_snapshot(self, snap_id: str) -> None:
        (self.snap_dir / f"{snap_id}.json").unlink(missing_ok=True)
        self.snapshots.pop(snap_id, None)

    def find(self, ref: str) -> dict[str, Any]:
        """A volume by id or name; 404 otherwise."""
        vol = self.volumes.get(ref)
        if vol is not None:
            return vol
        for v in self.volumes.values():
            if v["name"] == ref:
                return v
        raise StorageError(
            404, f"no volume {ref!r}", hint="`playground volume list` shows the volumes"
        )

    def by_name(self, name: str) -> dict[str, Any] | None:
        for v in self.volumes.values():
            if v["name"] == name:
                return v
        return None

    def snapshot(self, ref: str) -> dict[str, Any]:
        snap = self.snapshots.get(ref)
        if snap is not None:
            return snap
        matches = [s for s in self.snapshots.values() if s.get("name") == ref]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise StorageError(
                409, f"{len(matches)} snapshots are named {ref!r}; use the snapshot id"
            )
        raise StorageError(
            404, f"no snapshot {ref!r}", hint="`playground snapshot list` shows the snapshots"
        )
