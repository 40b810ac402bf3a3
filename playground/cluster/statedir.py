"""The state directory: everything a cluster owns lives under it.

Layout (``schema_version`` 1)::

    STATE/cluster.json      endpoints, addresses, node PIDs and desired states
    STATE/events.jsonl      the event timeline (one JSON object per line, see below)
    STATE/.lock             serialises writers of cluster.json
    STATE/nodes/NAME/       one folder per node: its work dir and its log (node.log)
    STATE/secrets/          the secret store (the platform token, keys), 0700

Permissions: the state directory belongs to the cluster's user. It and ``nodes/`` are
0711 (others may traverse to a task's sandbox, as Mesos's work directory, but list
nothing); every file the kit writes here is 0600 and every other directory 0700, except
the paths an agent opens (``o+x`` only) to the sandboxes and volumes of tasks running as
another user (:mod:`playground.mesos.users`).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from playground.errors import PlaygroundError

SCHEMA_VERSION = 1
#: Version of the timeline's line format. Every line of ``events.jsonl`` is one JSON
#: object with at least ``schema`` (this number), ``time`` (wall clock, epoch seconds),
#: ``kind`` (dotted, e.g. ``fault.started``, ``task.state``, ``master.elected``) and
#: ``source`` (the node that wrote it, or ``cli`` for the kit's commands); the other
#: fields depend on the kind. Readers skip lines of other schemas and torn last lines.
TIMELINE_SCHEMA = 1
#: Who writes timeline events from this process (a node process sets its name).
_source = "cli"


def set_event_source(name: str) -> None:
    """Name this process in the timeline events it records (node processes call it)."""
    global _source
    _source = name


ENV_STATE_DIR = "PLAYGROUND_STATE_DIR"
#: The state directory and ``nodes/``: traversable by others, listable by the owner only.
DIR_MODE = 0o711
#: What the kit's processes create under the state directory is the owner's only.
UMASK = 0o077


class StateDirError(PlaygroundError):
    """The state directory is missing, unreadable or from an unknown version."""


def default_state_dir() -> Path:
    """``$PLAYGROUND_STATE_DIR``, else ``$XDG_STATE_HOME/playground/default``."""
    env = os.environ.get(ENV_STATE_DIR)
    if env:
        return Path(env).expanduser().absolute()
    xdg = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(xdg).expanduser().absolute() / "playground" / "default"


def atomic_write(path: Path, data: bytes, durable: bool = True) -> None:
    """Write a file so a crash leaves either the old or the new content, never a mix.

    Args:
        path: the file to replace.
        data: its new content.
        durable: also fsync, so the content survives a power loss, not only a process
            crash (a node crash kills processes; the page cache survives it).
    """
    # Unique per process and thread: two writers must never share a temporary file.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    # Private whatever the umask: state files are the cluster user's only.
    with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as fh:
        os.fchmod(fh.fileno(), 0o600)
        fh.write(data)
        if durable:
            fh.flush()
            os.fsync(fh.fileno())
    os.replace(tmp, path)
    if not durable:
        return
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


class StateDir:
    """Paths and the persisted cluster record of one cluster."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).expanduser().absolute()

    @property
    def cluster_file(self) -> Path:
        return self.root / "cluster.json"

    @property
    def events_file(self) -> Path:
        return self.root / "events.jsonl"

    def node_dir(self, name: str) -> Path:
        return self.root / "nodes" / name

    def node_log(self, name: str) -> Path:
        return self.node_dir(name) / "node.log"

    def exists(self) -> bool:
        return self.cluster_file.is_file()

    def ensure(self) -> None:
        # Parents the kit creates stay traversable (tasks of another user reach their
        # sandboxes by absolute path) whatever the umask.
        for parent in reversed(self.root.parents):
            if not parent.exists():
                parent.mkdir(exist_ok=True)
                os.chmod(parent, DIR_MODE)
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "nodes").mkdir(exist_ok=True)
        for d in (self.root, self.root / "nodes"):
            if d.stat().st_mode & 0o777 != DIR_MODE:
                os.chmod(d, DIR_MODE)

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Serialise read-modify-write of ``cluster.json`` between processes."""
        self.ensure()
        with open(os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT, 0o600), "a+") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.cluster_file.read_text())
        except FileNotFoundError:
            raise StateDirError(
                f"no cluster in {self.root}",
                hint="start one with `playground up` (or pass --state-dir)",
            ) from None
        except (OSError, json.JSONDecodeError) as exc:
            raise StateDirError(f"cannot read {self.cluster_file}: {exc}") from None
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            raise StateDirError(
                f"{self.cluster_file} has schema_version {version}; this kit reads {SCHEMA_VERSION}",
                hint="run `playground destroy` and start again, or use the kit version that made it",
            )
        return data

    def write(self, data: dict[str, Any]) -> None:
        data["schema_version"] = SCHEMA_VERSION
        self.ensure()
        atomic_write(self.cluster_file, json.dumps(data, indent=2, sort_keys=True).encode())

    def record_event(self, kind: str, **fields: Any) -> None:
        """Append one event to the timeline (small appends are atomic on POSIX)."""
        self.ensure()
        event = {"schema": TIMELINE_SCHEMA, "time": time.time(), "kind": kind, "source": _source}
        event.update(fields)
        line = json.dumps(event, sort_keys=True, default=str)
        fd = os.open(self.events_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with open(fd, "a") as fh:
            fh.write(line + "\n")

    def events(self, since: float = 0.0, kinds: tuple[str, ...] = ()) -> list[dict[str, Any]]:
        """The timeline's events (of ``kinds`` prefixes, if given) from ``since`` on.

        Lines of another schema, and a torn last line of a crashed writer, are skipped.
        """
        out: list[dict[str, Any]] = []
        try:
            fh = open(self.events_file)
        except FileNotFoundError:
            return out
        with fh:
            for raw in fh:
                try:
                    ev = json.loads(raw)
                except json.JSONDecodeError:
                    continue
                if not isinstance(ev, dict) or ev.get("schema") != TIMELINE_SCHEMA:
                    continue
                if float(ev.get("time", 0)) < since:
                    continue
                if kinds and not str(ev.get("kind", "")).startswith(kinds):
                    continue
                out.append(ev)
        return out
