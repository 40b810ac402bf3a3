"""Incremental, crash-safe snapshots of a directory into a chunk store.

A snapshot is a *manifest* (JSON): for every regular file under the volume its relative
path, size, modification time, inode, mode and the digests of its chunks; directories and
symlinks are recorded too. Capturing against the previous manifest re-reads only files
whose (size, mtime, inode) changed -- the issue's rule -- so a snapshot of a big, mostly
unchanged volume costs little. Restoring builds the tree in a temporary directory next to
the destination and renames it into place, so a crash leaves the old tree or the new one.

The freeze (SIGSTOP of the task's process group while capturing) belongs to the storage
node; this module only reads the files it is given.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import stat
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from playground.cluster.statedir import atomic_write
from playground.storage.chunks import CHUNK_SIZE, ChunkError, ChunkStore, _fsync_dir, store_file
from playground.storage.replication import swap_in

SCHEMA_VERSION = 1
#: Files a restore writes at once (SHA-256 checks, writes and fsyncs release the GIL).
RESTORE_WORKERS = 4
#: Bytes a restore writes to a file before asking the kernel to start writing them out.
WRITEBACK_BYTES = 16 << 20


@dataclass
class Capture:
    manifest: dict[str, Any]
    files_read: int  # files whose content was (re-)read
    bytes_new: int  # bytes of chunks the store did not have


def capture(
    store: ChunkStore,
    root: Path,
    previous: dict[str, Any] | None = None,
    chunk_size: int = CHUNK_SIZE,
) -> Capture:
    """Snapshot the tree under ``root``; unchanged files reuse ``previous``'s chunks."""
    before = (previous or {}).get("files", {})
    files: dict[str, Any] = {}
    dirs: list[str] = []
    links: dict[str, str] = {}
    read = 0
    new_bytes = 0
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        rel_dir = os.path.relpath(dirpath, root)
        if rel_dir != ".":
            dirs.append(rel_dir)
        for name in sorted(filenames):
            path = Path(dirpath) / name
            rel = os.path.normpath(os.path.join(rel_dir, name))
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                links[rel] = os.readlink(path)
                continue
            if not stat.S_ISREG(st.st_mode):
                continue  # sockets, fifos: not data
            key = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ino": st.st_ino}
            old = before.get(rel)
            if old is not None and all(old.get(k) == v for k, v in key.items()):
                files[rel] = old
                continue
            results = store_file(store, path, chunk_size)
            read += 1
            new_bytes += sum(r.size for r in results if r.new)
            files[rel] = {
                **key,
                "mode": stat.S_IMODE(st.st_mode),
                "chunks": [r.digest for r in results],
            }
        for name in dirnames:
            p = Path(dirpath) / name
            if p.is_symlink():
                links[os.path.normpath(os.path.join(rel_dir, name))] = os.readlink(p)
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "created_at": time.time(),
        "files": files,
        "dirs": dirs,
        "links": links,
        "size": sum(int(f["size"]) for f in files.values()),
    }
    return Capture(manifest, read, new_bytes)


def digests(manifest: dict[str, Any]) -> set[str]:
    """Every chunk a manifest refers to (what the store must keep)."""
    return {d for f in manifest.get("files", {}).values() for d in f.get("chunks", [])}


def verify(store: ChunkStore, manifest: dict[str, Any]) -> list[str]:
    """Files of the snapshot with a missing or corrupt chunk (empty: intact)."""
    bad = set(store.verify(digests(manifest)))
    return sorted(p for p, f in manifest.get("files", {}).items() if bad & set(f["chunks"]))


def restore(store: ChunkStore, manifest: dict[str, Any], dest: Path) -> None:
    """Make ``dest`` the snapshot's tree: built aside, durable, then renamed into place."""
    if manifest.get("schema_version") != SCHEMA_VERSION:
        raise ChunkError(f"snapshot manifest of schema {manifest.get('schema_version')!r}")

    def build(staging: Path) -> None:
        staging.mkdir(parents=True)
        dirs = {staging}
        for d in manifest.get("dirs", []):
            (staging / _safe(d)).mkdir(parents=True, exist_ok=True)
            dirs.add(staging / _safe(d))
        files = manifest.get("files", {})
        dirs.update((staging / _safe(rel)).parent for rel in files)
        _restore_files(store, files, staging)
        for rel, link in manifest.get("links", {}).items():
            target = staging / _safe(rel)
            target.parent.mkdir(parents=True, exist_ok=True)
            dirs.add(target.parent)
            os.symlink(link, target)
        # The files are fsynced; the directories once each, at the end.
        for d in dirs:
            _fsync_dir(d)

    swap_in(dest, build)


def _restore_files(store: ChunkStore, files: dict[str, Any], staging: Path) -> None:
    """Write the files, :data:`RESTORE_WORKERS` at a time, then fsync them all: checking
    and writing one file overlaps another, and the disk writes while the CPU checks (the
    first error stops what has not started)."""
    todo = [(staging / _safe(rel), f) for rel, f in files.items()]

    def write(item: tuple[Path, dict[str, Any]]) -> None:
        target, f = item
        target.parent.mkdir(parents=True, exist_ok=True)
        _write_file(store, f["chunks"], target, int(f.get("mode", 0o644)), f.get("mtime_ns"))

    def fsync(item: tuple[Path, dict[str, Any]]) -> None:
        fd = os.open(item[0], os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    if len(todo) < 2 or RESTORE_WORKERS < 2:
        for item in todo:
            write(item)
            fsync(item)
        return
    pool = ThreadPoolExecutor(max_workers=RESTORE_WORKERS, thread_name_prefix="restore")
    try:
        for step in (write, fsync):
            for fut in [pool.submit(step, item) for item in todo]:
                fut.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _write_file(
    store: ChunkStore, digests: list[str], target: Path, mode: int, mtime_ns: Any
) -> None:
    """One file of a restore, straight into the staging tree (which as a whole appears only
    when complete), every chunk checked, with its mode and the snapshot's modification time
    (replicas restored from it compare equal). Writeback is started every
    :data:`WRITEBACK_BYTES`, so the disk works while the next chunks are checked and the
    fsync that follows waits for little."""
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        done = started = 0
        for digest in digests:
            view = memoryview(store.get(digest))
            while view:
                n = os.write(fd, view)
                view = view[n:]
                done += n
            if done - started >= WRITEBACK_BYTES:
                start_writeback(fd, started, done - started)
                started = done
        if done > started:
            start_writeback(fd, started, done - started)
        os.fchmod(fd, mode)
        if mtime_ns is not None:
            os.utime(fd, ns=(int(mtime_ns), int(mtime_ns)))
    finally:
        os.close(fd)


def start_writeback(fd: int, offset: int, length: int) -> None:
    """Ask the kernel to start writing a range of dirty pages now, without waiting
    (Linux ``sync_file_range(SYNC_FILE_RANGE_WRITE)``; elsewhere nothing): the fsync that
    follows then waits for little. A hint only; durability still comes from the fsync."""
    fn = _sync_file_range()
    if fn is not None:
        fn(fd, offset, length, 2)  # SYNC_FILE_RANGE_WRITE; errors are ignored (a hint)


_SFR: list[Any] = []


def _sync_file_range() -> Any:
    if not _SFR:
        fn = None
        if sys.platform.startswith("linux"):
            with contextlib.suppress(OSError, AttributeError):
                libc = ctypes.CDLL(None, use_errno=True)
                fn = libc.sync_file_range
                fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
                fn.restype = ctypes.c_int
        _SFR.append(fn)
    return _SFR[0]


def save_manifest(manifest: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(manifest, sort_keys=True).encode())


def load_manifest(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text())
    if not isinstance(data, dict) or data.get("schema_version") != SCHEMA_VERSION:
        raise ChunkError(f"{path} is not a snapshot manifest this kit reads")
    return data


def _safe(rel: str) -> str:
    """A manifest path that stays inside the tree it is restored into."""
    norm = os.path.normpath(rel)
    if norm.startswith("..") or os.path.isabs(norm):
        raise ChunkError(f"snapshot path {rel!r} leaves the volume")
    return norm
