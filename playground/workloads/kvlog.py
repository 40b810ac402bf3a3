"""The storage engine of the ``kv`` workload: a crash-consistent append-only log.

Each record is ``header + payload``; the header holds a magic number, the payload's
length and its CRC32. Opening a log replays it and truncates a torn or corrupt tail
(the last write of a crashed process), so what was acknowledged is all there is.
"""

from __future__ import annotations

import hashlib
import os
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

MAGIC = 0x4B564C31  # "KVL1"
HEADER = struct.Struct(">III")  # magic, payload length, crc32(payload)
OP_PUT, OP_DELETE = 1, 2
KEYLEN = struct.Struct(">BH")  # op, key length


class VolumeFullError(OSError):
    """A write would grow the log beyond its size limit."""


class KVLog:
    """An append-only key-value log in a directory.

    Args:
        path: the data directory (created if missing).
        durable: fsync every write before acknowledging it.
        size_limit_bytes: refuse writes that would grow the log beyond this size.
    """

    def __init__(
        self, path: Path | str, durable: bool = False, size_limit_bytes: int | None = None
    ) -> None:
        self.dir = Path(path)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.file = self.dir / "data.log"
        self.durable = durable
        self.size_limit_bytes = size_limit_bytes
        self.after_sync: Callable[[], None] | None = None
        self.index: dict[str, bytes] = {}
        self.record_count = 0
        self.truncated_bytes = 0
        created = not self.file.exists()
        self._replay()
        self._fh = open(self.file, "ab")
        if created and durable:
            self._fsync_dir()

    def _replay(self) -> None:
        if not self.file.exists():
            return
        data = self.file.read_bytes()
        pos = 0
        while pos + HEADER.size <= len(data):
            magic, length, crc = HEADER.unpack_from(data, pos)
            end = pos + HEADER.size + length
            if magic != MAGIC or end > len(data):
                break
            payload = data[pos + HEADER.size : end]
            if zlib.crc32(payload) != crc or len(payload) < KEYLEN.size:
                break
            op, klen = KEYLEN.unpack_from(payload, 0)
            key = payload[KEYLEN.size : KEYLEN.size + klen].decode()
            if op == OP_PUT:
                self.index[key] = payload[KEYLEN.size + klen :]
            elif op == OP_DELETE:
                self.index.pop(key, None)
            else:
                break
            self.record_count += 1
            pos = end
        if pos < len(data):
            self.truncated_bytes = len(data) - pos
            with open(self.file, "r+b") as fh:
                fh.truncate(pos)
                fh.flush()
                os.fsync(fh.fileno())

    def _fsync_dir(self) -> None:
        fd = os.open(self.dir, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    @property
    def size(self) -> int:
        return self.file.stat().st_size

    def set_size_limit(self, limit: int | None) -> None:
        """Resize online: later writes are checked against the new limit."""
        self.size_limit_bytes = limit

    def _append(self, op: int, key: str, value: bytes = b"") -> None:
        kb = key.encode()
        payload = KEYLEN.pack(op, len(kb)) + kb + value
        record = HEADER.pack(MAGIC, len(payload), zlib.crc32(payload)) + payload
        if self.size_limit_bytes is not None and self.size + len(record) > self.size_limit_bytes:
            raise VolumeFullError(
                f"volume full: the log holds {self.size} bytes and its limit is {self.size_limit_bytes}; "
                "resize the volume to write more"
            )
        self._fh.write(record)
        self._fh.flush()
        if self.durable:
            os.fsync(self._fh.fileno())
            if self.after_sync is not None:
                self.after_sync()
        self.record_count += 1

    def put(self, key: str, value: bytes) -> bool:
        """Store ``value``; return True if the key is new."""
        self._append(OP_PUT, key, value)
        created = key not in self.index
        self.index[key] = value
        return created

    def get(self, key: str) -> bytes | None:
        return self.index.get(key)

    def delete(self, key: str) -> bool:
        if key not in self.index:
            return False
        self._append(OP_DELETE, key)
        del self.index[key]
        return True

    def keys(self, prefix: str = "", limit: int | None = None) -> list[str]:
        out = sorted(k for k in self.index if k.startswith(prefix))
        return out[:limit] if limit is not None else out

    def checksum(self) -> str:
        """A digest of the live content; equal content gives an equal checksum."""
        h = hashlib.sha256()
        for k in sorted(self.index):
            v = self.index[k]
            h.update(
                struct.pack(">I", len(k.encode())) + k.encode() + struct.pack(">I", len(v)) + v
            )
        return h.hexdigest()

    def close(self) -> None:
        self._fh.close()
