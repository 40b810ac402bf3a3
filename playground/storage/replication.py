"""Copying a volume's working copy to a replica: only what changed, crash-safe.

Replicas are plain directories, so replication is a file-level mirror: a file whose size
or modification time differ from the working copy's is brought over (appended bytes only
when the replica is known to hold a prefix of the very same file, as an append-only log
is; otherwise the whole file, written aside and renamed into place), then given the
working copy's modification time, so the next pass recognises it as equal. Entries the
working copy no longer has are removed. A crash at any point leaves every replica file
either as it was or as it should be (a torn append is seen as a size mismatch and copied
again on the next pass).

``durable=True`` fsyncs every file and directory written: what ``sync`` promises.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import stat
from dataclasses import dataclass, field
from pathlib import Path

#: Prefix of the files a pass writes aside before renaming them into place.
TEMP_PREFIX = ".pg-repl-"
_BUF = 1 << 20


@dataclass
class PassResult:
    bytes_copied: int = 0
    files_copied: int = 0
    removed: int = 0
    #: Bytes of the working copy's regular files (its usage).
    total_bytes: int = 0
    #: ``rel -> (inode in the working copy, size copied)``: lets the next pass append.
    known: dict[str, tuple[int, int]] = field(default_factory=dict)


def _copy_range(src: Path, dst_fh: int, start: int, end: int) -> int:
    done = 0
    with open(src, "rb") as fh:
        fh.seek(start)
        left = end - start
        while left > 0:
            data = fh.read(min(_BUF, left))
            if not data:
                break
            os.write(dst_fh, data)
            done += len(data)
            left -= len(data)
    return done


def _full_copy(src: Path, dst: Path, size: int, durable: bool) -> int:
    tmp = dst.with_name(f"{TEMP_PREFIX}{dst.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        n = _copy_range(src, fd, 0, size)
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, dst)
    return n


def _append(src: Path, dst: Path, start: int, end: int, durable: bool) -> int:
    fd = os.open(dst, os.O_WRONLY)
    try:
        os.ftruncate(fd, start)  # a torn earlier append must not stay in the middle
        os.lseek(fd, start, os.SEEK_SET)
        n = _copy_range(src, fd, start, end)
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)
    return n


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def replicate(
    src: Path,
    dst: Path,
    known: dict[str, tuple[int, int]] | None = None,
    durable: bool = False,
) -> PassResult:
    """Make ``dst`` mirror ``src``; ``known`` is the previous pass's result for ``dst``."""
    known = dict(known or {})
    result = PassResult()
    dst.mkdir(parents=True, exist_ok=True)
    seen: set[str] = set()
    touched_dirs: set[Path] = set()
    for dirpath, dirnames, filenames in os.walk(src):
        rel_dir = os.path.relpath(dirpath, src)
        target_dir = dst if rel_dir == "." else dst / rel_dir
        if rel_dir != ".":
            seen.add(rel_dir)
        try:
            if not target_dir.is_dir() or target_dir.is_symlink():
                if target_dir.is_symlink() or target_dir.exists():
                    _remove(target_dir)
                target_dir.mkdir(parents=True)
                touched_dirs.add(target_dir.parent)
        except OSError:
            continue
        entries = [*filenames, *[d for d in dirnames if (Path(dirpath) / d).is_symlink()]]
        for name in entries:
            rel = os.path.normpath(os.path.join(rel_dir, name))
            if name.startswith(TEMP_PREFIX):
                continue
            s_path = Path(dirpath) / name
            d_path = target_dir / name
            try:
                st = s_path.lstat()
            except FileNotFoundError:
                continue  # removed while we walk: the next pass removes it
            seen.add(rel)
            if stat.S_ISLNK(st.st_mode):
                link = os.readlink(s_path)
                with contextlib.suppress(OSError):
                    if d_path.is_symlink() and os.readlink(d_path) == link:
                        continue
                _remove(d_path)
                os.symlink(link, d_path)
                touched_dirs.add(target_dir)
                continue
            if not stat.S_ISREG(st.st_mode):
                continue
            result.total_bytes += st.st_size
            try:
                dt = d_path.lstat()
            except FileNotFoundError:
                dt = None
            if (
                dt is not None
                and stat.S_ISREG(dt.st_mode)
                and dt.st_size == st.st_size
                and dt.st_mtime_ns == st.st_mtime_ns
            ):
                result.known[rel] = (st.st_ino, st.st_size)
                continue
            try:
                prev = known.get(rel)
                if (
                    dt is not None
                    and stat.S_ISREG(dt.st_mode)
                    and prev is not None
                    and prev[0] == st.st_ino
                    and prev[1] == dt.st_size
                    and dt.st_size < st.st_size
                ):
                    n = _append(s_path, d_path, dt.st_size, st.st_size, durable)
                else:
                    if dt is not None and not stat.S_ISREG(dt.st_mode):
                        _remove(d_path)
                    n = _full_copy(s_path, d_path, st.st_size, durable)
                    touched_dirs.add(target_dir)
                os.chmod(d_path, stat.S_IMODE(st.st_mode))
                os.utime(d_path, ns=(st.st_atime_ns, st.st_mtime_ns))
            except FileNotFoundError:
                continue
            result.bytes_copied += n
            result.files_copied += 1
            result.known[rel] = (st.st_ino, st.st_size)
    # Remove what the working copy no longer has (deepest first).
    for dirpath, dirnames, filenames in os.walk(dst, topdown=False):
        rel_dir = os.path.relpath(dirpath, dst)
        for name in [*filenames, *dirnames]:
            rel = os.path.normpath(os.path.join(rel_dir, name))
            if rel in seen:
                continue
            p = Path(dirpath) / name
            if p.is_dir() and not p.is_symlink() and name in dirnames:
                # a directory of the working copy that still exists is in ``seen``
                shutil.rmtree(p, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
            result.removed += 1
            touched_dirs.add(Path(dirpath))
    if durable:
        for d in touched_dirs:
            _fsync_dir(d)
    return result


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def usage(path: Path) -> int:
    """Bytes of the regular files under ``path`` (0 if it does not exist)."""
    total = 0
    for dirpath, _dirnames, filenames in os.walk(path):
        for name in filenames:
            with contextlib.suppress(OSError):
                st = os.lstat(os.path.join(dirpath, name))
                if stat.S_ISREG(st.st_mode):
                    total += st.st_size
    return total


def digest_tree(path: Path) -> dict[str, str]:
    """``rel -> sha256`` of every regular file under ``path`` (symlinks as ``link:TARGET``)."""
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(path):
        rel_dir = os.path.relpath(dirpath, path)
        for name in sorted([*filenames, *dirnames]):
            p = Path(dirpath) / name
            rel = os.path.normpath(os.path.join(rel_dir, name))
            if name.startswith(TEMP_PREFIX):
                continue
            if p.is_symlink():
                out[rel] = "link:" + os.readlink(p)
            elif p.is_file():
                h = hashlib.sha256()
                with open(p, "rb") as fh:
                    while block := fh.read(_BUF):
                        h.update(block)
                out[rel] = h.hexdigest()
    return out
