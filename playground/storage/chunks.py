"""A content-addressed chunk store: the bottom layer of snapshots and backups.

Content is cut into fixed-size chunks (1 MiB by default), each stored once under its
SHA-256 digest (``ROOT/ab/abcdef...``): a file that changed in one place stores one new
chunk, an appended log only its last, so the cost of a snapshot grows with changed data,
not with the volume's size. The digest is the chunk's checksum: :meth:`ChunkStore.get`
refuses content that does not hash to its name, and :meth:`ChunkStore.verify` proves a
set of chunks intact.

Crash safety: a chunk is written to a temporary file in the store, flushed, fsynced and
renamed into place, so a SIGKILL at any moment leaves either no chunk or a whole one
(temporary files are swept by :meth:`ChunkStore.sweep`). A file restored from chunks
appears under its final name only once complete (:func:`restore_file`).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from playground.errors import PlaygroundError

CHUNK_SIZE = 1 << 20
_TMP = ".tmp-"


class ChunkError(PlaygroundError):
    """A chunk is missing or its content does not match its checksum."""


@dataclass(frozen=True)
class PutResult:
    digest: str
    size: int
    new: bool  # False: the store had it already (deduplicated)


class ChunkStore:
    """Chunks under ``root``, named by the SHA-256 of their content."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def path(self, digest: str) -> Path:
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise ChunkError(f"not a chunk digest: {digest!r}")
        return self.root / digest[:2] / digest

    def has(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def put(self, data: bytes, repair: bool = False) -> PutResult:
        """Store ``data`` once; storing the same content again writes nothing.

        With ``repair``, an existing chunk is checked and rewritten if it is corrupt (a
        chunk found bad by :meth:`verify`, put again from a good copy)."""
        digest = hashlib.sha256(data).hexdigest()
        final = self.path(digest)
        if final.is_file() and not (repair and digest in self.verify([digest])):
            return PutResult(digest, len(data), False)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.parent / f"{_TMP}{digest}.{os.getpid()}"
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, final)
        _fsync_dir(final.parent)
        return PutResult(digest, len(data), True)

    def get(self, digest: str) -> bytes:
        """A chunk's content, checked against its checksum."""
        try:
            data = self.path(digest).read_bytes()
        except FileNotFoundError:
            raise ChunkError(f"chunk {digest[:12]} is missing from {self.root}") from None
        if hashlib.sha256(data).hexdigest() != digest:
            raise ChunkError(
                f"chunk {digest[:12]} is corrupt: its content does not match its checksum"
            )
        return data

    def verify(self, digests: Iterable[str]) -> list[str]:
        """The digests among ``digests`` that are missing or corrupt (empty: all intact)."""
        bad = []
        for d in dict.fromkeys(digests):
            try:
                self.get(d)
            except ChunkError:
                bad.append(d)
        return bad

    def digests(self) -> Iterator[str]:
        """Every chunk in the store."""
        if not self.root.is_dir():
            return
        for sub in sorted(self.root.iterdir()):
            if sub.is_dir() and len(sub.name) == 2:
                for f in sorted(sub.iterdir()):
                    if not f.name.startswith(_TMP) and len(f.name) == 64:
                        yield f.name

    def collect(self, live: Iterable[str]) -> int:
        """Delete the chunks no manifest refers to; returns how many were removed."""
        keep = set(live)
        removed = 0
        for d in list(self.digests()):
            if d not in keep:
                self.path(d).unlink(missing_ok=True)
                removed += 1
        return removed

    def sweep(self) -> int:
        """Remove temporary files a crashed writer left behind."""
        removed = 0
        if self.root.is_dir():
            for tmp in self.root.glob(f"*/{_TMP}*"):
                tmp.unlink(missing_ok=True)
                removed += 1
        return removed

    def size(self) -> int:
        """Bytes of stored chunk content."""
        return sum(self.path(d).stat().st_size for d in self.digests())


def store_file(store: ChunkStore, path: Path, chunk_size: int = CHUNK_SIZE) -> list[PutResult]:
    """Cut a file into chunks and store them; its manifest is the list of digests."""
    out = []
    with open(path, "rb") as fh:
        while block := fh.read(chunk_size):
            out.append(store.put(block))
    return out


def restore_file(store: ChunkStore, digests: Iterable[str], dest: Path) -> int:
    """Write a file from its chunks (checked); it appears under ``dest`` only when complete."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f"{_TMP}{dest.name}.{os.getpid()}")
    size = 0
    try:
        with open(tmp, "wb") as fh:
            for d in digests:
                data = store.get(d)
                fh.write(data)
                size += len(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(dest.parent)
    return size


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
