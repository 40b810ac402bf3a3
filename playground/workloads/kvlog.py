"""The storage engine of the ``kv`` workload: a crash-consistent append-only log.

The log is one file, ``data.log``, in a data directory. Every write appends one record::

    header  = magic (u32) | payload length (u32) | crc32(payload) (u32)     big-endian, 12 bytes
    payload = op (u8: 1 PUT, 2 DELETE) | key length (u16) | key (UTF-8) | value (rest)

Opening a log replays it into an in-memory index and truncates a torn or corrupt tail
(a short header, a short payload, a wrong magic, a CRC mismatch or an undecodable
payload: the last write of a crashed process), so what was acknowledged is all there is.
A write that fails half-way is cut off again before the error is raised, so later
records never land behind garbage.
"""

from __future__ import annotations

import errno
import hashlib
import os
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

LOG_NAME = "data.log"
MAGIC = 0x4B564C31  # "KVL1"
HEADER = struct.Struct(">III")  # magic, payload length, crc32(payload)
KEYLEN = struct.Struct(">BH")  # op, key length
OP_PUT = 1
OP_DELETE = 2
MAX_KEY_BYTES = 0xFFFF
_FULL_ERRNOS = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC), errno.EFBIG}


class VolumeFullError(OSError):
    """A write would grow the log beyond its size limit (or the disk itself is full)."""


@dataclass(frozen=True)
class Record:
    """One record appended to the log, as handed to the ``after_sync`` hook.

    Attributes:
        op: ``OP_PUT`` or ``OP_DELETE``.
        key: the record's key.
        value: the stored value (empty for a delete).
        version: the log's record count once this record is in it.
        raw: the record exactly as written (header and payload), ready to ship verbatim.
    """

    op: int
    key: str
    value: bytes
    version: int
    raw: bytes


AfterSync = Callable[[Record], None]


def encode_record(op: int, key: str, value: bytes = b"") -> bytes:
    """Encode one record (header and payload).

    Args:
        op: ``OP_PUT`` or ``OP_DELETE``.
        key: the key; at most 65535 bytes in UTF-8.
        value: the value (empty for a delete).

    Returns:
        The bytes to append to a log.

    Raises:
        ValueError: the op is unknown or the key is empty or too long.
    """
    if op not in (OP_PUT, OP_DELETE):
        raise ValueError(f"unknown op {op}")
    kb = key.encode("utf-8")
    if not kb or len(kb) > MAX_KEY_BYTES:
        raise ValueError(f"a key has 1 to {MAX_KEY_BYTES} bytes, not {len(kb)}")
    payload = KEYLEN.pack(op, len(kb)) + kb + value
    return HEADER.pack(MAGIC, len(payload), zlib.crc32(payload)) + payload


def _decode_payload(payload: bytes) -> tuple[int, str, bytes] | None:
    """Decode a payload whose CRC matched; None if it is malformed anyway."""
    if len(payload) < KEYLEN.size:
        return None
    op, klen = KEYLEN.unpack_from(payload, 0)
    if op not in (OP_PUT, OP_DELETE) or klen == 0 or KEYLEN.size + klen > len(payload):
        return None
    try:
        key = payload[KEYLEN.size : KEYLEN.size + klen].decode("utf-8")
    except UnicodeDecodeError:
        return None
    value = payload[KEYLEN.size + klen :]
    if op == OP_DELETE and value:
        return None
    return op, key, value


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class KVLog:
    """An append-only key-value log in a data directory.

    Values are kept in memory (they are small); the log file is the source of truth
    on restart. Not thread-safe: use it from one thread (the service's event loop).

    Args:
        path: the data directory (created if missing); the log is ``path / "data.log"``.
        durable: fsync the log after every append before acknowledging the write (and
            fsync the directory when the log file is created).
        size_limit_bytes: refuse writes that would grow the log beyond this many bytes;
            None means unlimited.
        after_sync: called with the appended ``Record`` after the record is written (and,
            when durable, fsynced) and before the write is acknowledged. If it raises, the
            record stays in the log and in the index (it is durable locally) and the
            exception propagates to the writer, who did not get an acknowledgement.

    Attributes:
        dir: the data directory.
        file: the log file.
        durable: whether every append is fsynced.
        size_limit_bytes: the current size limit, or None.
        after_sync: the hook described above, or None; may be set after construction.
        record_count: the number of records in the log (puts and deletes).
        truncated_bytes: how many bytes of torn or corrupt tail were cut off on open.
    """

    def __init__(
        self,
        path: Path | str,
        durable: bool = False,
        size_limit_bytes: int | None = None,
        after_sync: AfterSync | None = None,
    ) -> None:
        self.dir = Path(path)
        self.file = self.dir / LOG_NAME
        self.durable = durable
        self.size_limit_bytes: int | None = None
        self.set_size_limit(size_limit_bytes)
        self.after_sync = after_sync
        self.record_count = 0
        self.truncated_bytes = 0
        self._index: dict[str, bytes] = {}
        self._checksum: str | None = None
        self._end = 0

        dir_created = not self.dir.exists()
        self.dir.mkdir(parents=True, exist_ok=True)
        if dir_created and durable:
            _fsync_dir(self.dir.parent)
        file_created = not self.file.exists()
        self._fd = os.open(self.file, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            self._replay()
            if file_created and durable:
                os.fsync(self._fd)
                _fsync_dir(self.dir)
        except BaseException:
            os.close(self._fd)
            raise

    # -- opening -----------------------------------------------------------------------

    def _replay(self) -> None:
        with open(self.file, "rb") as fh:
            data = fh.read()
        pos = 0
        while pos + HEADER.size <= len(data):
            magic, length, crc = HEADER.unpack_from(data, pos)
            end = pos + HEADER.size + length
            if magic != MAGIC or end > len(data):
                break
            payload = data[pos + HEADER.size : end]
            if zlib.crc32(payload) != crc:
                break
            decoded = _decode_payload(payload)
            if decoded is None:
                break
            self._apply(*decoded)
            self.record_count += 1
            pos = end
        self._end = pos
        if pos < len(data):
            self.truncated_bytes = len(data) - pos
            os.ftruncate(self._fd, pos)
            os.fsync(self._fd)

    def _apply(self, op: int, key: str, value: bytes) -> None:
        if op == OP_PUT:
            self._index[key] = value
        else:
            self._index.pop(key, None)
        self._checksum = None

    # -- writing -----------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._fd < 0:
            raise ValueError(f"the log {self.file} is closed")

    def _append(self, op: int, key: str, value: bytes = b"") -> None:
        self._check_open()
        raw = encode_record(op, key, value)
        limit = self.size_limit_bytes
        if limit is not None and self._end + len(raw) > limit:
            raise VolumeFullError(
                errno.ENOSPC,
                f"volume is full: the log holds {self._end} bytes, this write needs "
                f"{len(raw)} more and the size limit is {limit} bytes; "
                "the volume can be resized to write more (nothing acknowledged was lost)",
            )
        try:
            view = memoryview(raw)
            while view:
                n = os.write(self._fd, view)
                view = view[n:]
            if self.durable:
                os.fsync(self._fd)
        except OSError as exc:
            self._undo_partial_write()
            if exc.errno in _FULL_ERRNOS:
                raise VolumeFullError(
                    exc.errno,
                    f"volume is full: the disk refused a write of {len(raw)} bytes at "
                    f"{self._end} bytes ({exc.strerror}); the volume can be resized to write more "
                    "(nothing acknowledged was lost)",
                ) from exc
            raise
        self._end += len(raw)
        self.record_count += 1
        self._apply(op, key, value)
        if self.after_sync is not None:
            self.after_sync(Record(op, key, value, self.record_count, raw))

    def _undo_partial_write(self) -> None:
        """Cut a half-written record off so later appends never follow garbage."""
        try:
            os.ftruncate(self._fd, self._end)
        except OSError:
            pass  # the next open truncates the torn tail anyway

    def put(self, key: str, value: bytes) -> bool:
        """Store ``value`` under ``key``.

        Args:
            key: the key (1 to 65535 bytes of UTF-8).
            value: the value.

        Returns:
            True if the key was new, False if an existing value was replaced.

        Raises:
            VolumeFullError: the write would exceed the size limit or the disk is full;
                nothing was stored.
        """
        created = key not in self._index
        self._append(OP_PUT, key, bytes(value))
        return created

    def get(self, key: str) -> bytes | None:
        """Return the value stored under ``key``.

        Args:
            key: the key.

        Returns:
            The value, or None if the key is absent.
        """
        return self._index.get(key)

    def delete(self, key: str) -> bool:
        """Delete ``key`` (appends a DELETE record if the key exists).

        Args:
            key: the key.

        Returns:
            True if the key existed and is now deleted, False if it was absent.

        Raises:
            VolumeFullError: the delete record does not fit; nothing was deleted.
        """
        if key not in self._index:
            return False
        self._append(OP_DELETE, key)
        return True

    # -- reading -----------------------------------------------------------------------

    def keys(self, prefix: str = "", limit: int | None = None) -> list[str]:
        """List live keys in sorted order.

        Args:
            prefix: only keys that start with this.
            limit: at most this many keys (None: all).

        Returns:
            The sorted keys.

        Raises:
            ValueError: ``limit`` is negative.
        """
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be >= 0, not {limit}")
        out = sorted(k for k in self._index if k.startswith(prefix))
        return out if limit is None else out[:limit]

    def __len__(self) -> int:
        """The number of live keys."""
        return len(self._index)

    def __contains__(self, key: object) -> bool:
        """Whether ``key`` is live."""
        return key in self._index

    @property
    def size(self) -> int:
        """The log's size in bytes (everything up to the end of the last good record)."""
        return self._end

    def checksum(self) -> str:
        """A SHA-256 hex digest of the live content.

        Keys are hashed in sorted order, each key and value prefixed with its length, so
        two logs (replicas) with the same live content have the same checksum whatever
        their history.

        Returns:
            The hex digest.
        """
        if self._checksum is None:
            h = hashlib.sha256()
            for k in sorted(self._index):
                kb = k.encode("utf-8")
                v = self._index[k]
                h.update(struct.pack(">I", len(kb)))
                h.update(kb)
                h.update(struct.pack(">Q", len(v)))
                h.update(v)
            self._checksum = h.hexdigest()
        return self._checksum

    # -- limits and lifecycle ----------------------------------------------------------

    def set_size_limit(self, limit: int | None) -> None:
        """Resize online: later writes are checked against the new limit.

        A limit below the current size is allowed: reads keep working and writes are
        refused until the limit grows again.

        Args:
            limit: the new limit in bytes, or None for unlimited.

        Raises:
            ValueError: ``limit`` is negative.
        """
        if limit is not None and limit < 0:
            raise ValueError(f"a size limit is >= 0 bytes, not {limit}")
        self.size_limit_bytes = limit

    def close(self) -> None:
        """Close the log file (fsynced first when durable); closing twice is harmless."""
        if self._fd < 0:
            return
        fd, self._fd = self._fd, -1
        try:
            if self.durable:
                os.fsync(fd)
        finally:
            os.close(fd)

    @property
    def closed(self) -> bool:
        """Whether ``close()`` was called."""
        return self._fd < 0

    def __enter__(self) -> KVLog:
        """Use the log as a context manager that closes it."""
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the log."""
        self.close()
