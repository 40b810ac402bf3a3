"""The cluster's secret store: small binary secrets under ``STATE/secrets/``.

Layout: ``STATE/secrets/`` (mode 0700) holds one file per secret (mode 0600), named by
the secret (``[A-Za-z0-9][A-Za-z0-9._-]*``, at most 64 characters), and a ``.lock`` that
serialises creators. A secret is written atomically (temporary file created 0600,
fsynced, renamed, directory fsynced), so a crash leaves the old value or the new one.

Secrets never go to logs, events, exceptions or ``repr``: error messages name the
secret, never its value.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import secrets as _random
from collections.abc import Iterator
from pathlib import Path

from playground.errors import PlaygroundError

DIR_MODE = 0o700
FILE_MODE = 0o600
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class SecretError(PlaygroundError):
    """A secret is missing, unreadable or has an invalid name."""


def write_private(path: Path, data: bytes) -> None:
    """Atomically replace ``path`` with ``data``, readable by the owner only (0600)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)  # an older tmp of the same name may have other bits
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


class SecretStore:
    """The secrets of the cluster whose state directory is ``state_root``."""

    def __init__(self, state_root: Path | str) -> None:
        self.root = Path(state_root).expanduser().absolute() / "secrets"

    def __repr__(self) -> str:
        return f"SecretStore({str(self.root)!r})"

    def _path(self, name: str) -> Path:
        if not isinstance(name, str) or not _NAME.match(name):
            raise SecretError(
                f"invalid secret name {name!r}",
                hint="use letters, digits, '.', '_' and '-' (at most 64 characters)",
            )
        return self.root / name

    def _ensure(self) -> None:
        self.root.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        if (self.root.stat().st_mode & 0o777) != DIR_MODE:
            os.chmod(self.root, DIR_MODE)

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        self._ensure()
        fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT, FILE_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def has(self, name: str) -> bool:
        return self._path(name).is_file()

    def names(self) -> list[str]:
        """The names of the stored secrets (never their values)."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_file() and _NAME.match(p.name))

    def get(self, name: str) -> bytes:
        """A secret's value; :class:`SecretError` if it does not exist."""
        path = self._path(name)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise SecretError(
                f"no secret {name!r} in {self.root}",
                hint="check --state-dir, or import the secret first",
            ) from None
        except OSError as exc:
            raise SecretError(f"cannot read secret {name!r}: {exc.strerror}") from None
        if not data:
            raise SecretError(f"secret {name!r} in {self.root} is empty")
        return data

    def put(self, name: str, value: bytes) -> None:
        """Store (or replace) a secret, atomically, mode 0600."""
        path = self._path(name)
        if not isinstance(value, bytes | bytearray) or not value:
            raise SecretError(f"secret {name!r}: the value must be non-empty bytes")
        with self._lock():
            write_private(path, bytes(value))

    def get_or_create(self, name: str, nbytes: int = 32) -> bytes:
        """The secret ``name``; created with ``nbytes`` random bytes if missing.

        Concurrent callers (several processes) all get the same value."""
        path = self._path(name)
        if nbytes < 1:
            raise SecretError(f"secret {name!r}: nbytes must be positive")
        if path.is_file():
            return self.get(name)
        with self._lock():
            if not path.is_file():
                write_private(path, _random.token_bytes(nbytes))
        return self.get(name)

    def delete(self, name: str) -> bool:
        """Remove a secret; True if it existed."""
        path = self._path(name)
        with self._lock():
            try:
                path.unlink()
            except FileNotFoundError:
                return False
        return True
