"""The storage audit log: who did what to which object, when, and how it ended.

An append-only JSON-lines file, ``STATE/storage/audit.jsonl``; one line per operation::

    {"time": "2026-11-25T12:00:00.123Z", "ts": 1795...., "who": "alice@cli",
     "action": "volume.create", "target": "orders", "outcome": "ok",
     "details": {"size_gb": 2, "repl": 2}}

Secrets never reach the file: any detail whose name contains ``key``, ``secret``,
``token`` or ``password`` (any case, at any depth) is written as ``"***"``, and text
longer than :data:`MAX_VALUE_CHARS` is cut (the line says by how much).

Several processes may append at once (the storage node, CLI commands): each line is
written with one ``write`` on a descriptor opened with ``O_APPEND`` while holding an
exclusive ``flock`` on the file, so lines never interleave. A line torn by a crash is
skipped by :meth:`AuditLog.read` and the next append starts on a fresh line.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import fnmatch
import getpass
import json
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

AUDIT_FILE = "audit.jsonl"
#: Detail names containing any of these (case-insensitive) are scrubbed.
SECRET_WORDS = ("key", "secret", "token", "password")
SCRUBBED = "***"
#: Longer text values are truncated to this many characters.
MAX_VALUE_CHARS = 4096
#: Nesting deeper than this is written as a string.
MAX_DEPTH = 8
#: The outcomes the kit writes (others are accepted).
OUTCOMES = ("ok", "refused", "failed", "started")


def audit_path(state_dir: Path | str) -> Path:
    """``STATE/storage/audit.jsonl``."""
    return Path(state_dir) / "storage" / AUDIT_FILE


def current_user(via: str = "cli") -> str:
    """``<login name>@<via>``, e.g. ``alice@cli``: the usual ``who`` of a CLI command."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = f"uid{os.getuid()}"
    return f"{user}@{via}"


def is_secret_name(name: str) -> bool:
    """Whether a detail called ``name`` must never be written."""
    low = name.lower()
    return any(word in low for word in SECRET_WORDS)


def _truncate(text: str) -> str:
    if len(text) <= MAX_VALUE_CHARS:
        return text
    return text[:MAX_VALUE_CHARS] + f"...[truncated {len(text) - MAX_VALUE_CHARS} chars]"


def scrub(value: Any, depth: int = 0) -> Any:
    """``value`` made safe to log: secret-named fields replaced, long text cut, and
    anything that is not JSON (bytes, paths, objects) turned into text."""
    if depth > MAX_DEPTH:
        return _truncate(repr(value))
    if isinstance(value, Mapping):
        return {
            str(k): SCRUBBED if is_secret_name(str(k)) else scrub(v, depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value, key=repr) if isinstance(value, set | frozenset) else value
        return [scrub(v, depth + 1) for v in items]
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else str(value)
    if isinstance(value, bytes | bytearray):
        return f"<{len(value)} bytes>"
    if isinstance(value, str):
        return _truncate(value)
    return _truncate(str(value))


def _iso(ts: float) -> str:
    t = dt.datetime.fromtimestamp(ts, dt.UTC)
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _since_ts(since: float | dt.datetime | str | None) -> float | None:
    if since is None:
        return None
    if isinstance(since, dt.datetime):
        if since.tzinfo is None:
            since = since.replace(tzinfo=dt.UTC)
        return since.timestamp()
    if isinstance(since, str):
        parsed = dt.datetime.fromisoformat(since.replace("Z", "+00:00"))
        return _since_ts(parsed)
    return float(since)


class AuditLog:
    """The audit log at ``path`` (its directory is created on the first record).

    Args:
        path: the JSON-lines file, usually :func:`audit_path` of the state directory.
        fsync: fsync after every record (the default), so a record survives a crash.
    """

    def __init__(self, path: Path | str, fsync: bool = True) -> None:
        self.path = Path(path)
        self.fsync = fsync

    def record(
        self,
        who: str,
        action: str,
        target: str,
        outcome: str,
        /,
        **details: Any,
    ) -> dict[str, Any]:
        """Append one entry and return it as written.

        Args:
            who: the actor (``alice@cli``, ``storage-1``, ``schedule:nightly``).
            action: what was done, ``object.verb`` (``volume.create``, ``cloudsnap.backup``).
            target: the object (a volume, snapshot or backup id).
            outcome: ``ok``, ``refused``, ``failed`` or ``started`` (free text accepted).
            **details: anything else worth keeping (sizes, the rule that refused, the
                error); secret-named fields are scrubbed, long text truncated. The four
                arguments above are positional-only, so a detail may be called ``target``.

        Returns:
            The entry (``time``, ``ts``, ``who``, ``action``, ``target``, ``outcome``,
            ``details``).

        Raises:
            OSError: the file cannot be written.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            # Stamped under the lock, so the file is in time order across writers.
            ts = time.time()
            entry: dict[str, Any] = {
                "time": _iso(ts),
                "ts": round(ts, 6),
                "who": scrub(str(who)),
                "action": scrub(str(action)),
                "target": scrub(str(target)),
                "outcome": scrub(str(outcome)),
                "details": scrub(details),
            }
            line = (json.dumps(entry, ensure_ascii=False, separators=(",", ":")) + "\n").encode()
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                # The last line was torn by a crash: end it, so ours stays whole.
                line = b"\n" + line
            view = memoryview(line)
            while view:
                n = os.write(fd, view)
                view = view[n:]
            if self.fsync:
                os.fsync(fd)
        finally:
            os.close(fd)  # releases the lock
        return entry

    def __iter__(self) -> Iterator[dict[str, Any]]:
        """Every whole entry, oldest first (torn or foreign lines are skipped)."""
        try:
            fh = self.path.open("rb")
        except FileNotFoundError:
            return
        with fh:
            for raw in fh:
                if not raw.endswith(b"\n"):
                    continue  # torn by a crash (or being written: it is whole once it ends)
                try:
                    entry = json.loads(raw)
                except ValueError:
                    continue
                if isinstance(entry, dict) and "action" in entry and "ts" in entry:
                    yield entry

    def read(
        self,
        since: float | dt.datetime | str | None = None,
        action: str | None = None,
        target: str | None = None,
    ) -> list[dict[str, Any]]:
        """The entries, oldest first, filtered.

        Args:
            since: only entries at or after this time (epoch seconds, a datetime, or an
                ISO 8601 text; naive means UTC).
            action: only this action; shell-style patterns match too (``volume.*``).
            target: only entries about this object.

        Returns:
            The entries as written by :meth:`record`.

        Raises:
            ValueError: ``since`` is text that is not an ISO 8601 time.
        """
        start = _since_ts(since)
        out = []
        for e in self:
            if start is not None and float(e.get("ts", 0)) < start:
                continue
            if action is not None and not fnmatch.fnmatchcase(str(e.get("action")), action):
                continue
            if target is not None and e.get("target") != target:
                continue
            out.append(e)
        return out
