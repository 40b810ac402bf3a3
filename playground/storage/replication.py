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

Sealed replicas (the secondary replicas of ``secure`` volumes): with ``seal=KEY`` every
regular file of the destination holds only ciphertext. A sealed file is the plaintext cut
into blocks of :data:`BLOCK` bytes, each stored as a random 12-byte nonce followed by its
AES-256-GCM ciphertext and 16-byte tag, with the file's relative path and the block's index
and whether it is the last block as associated data, so blocks cannot be swapped, moved
between files or cut off unnoticed (only emptying a file entirely is not detectable).
Its size is :func:`enc_size` of the plaintext's, so the size-and-mtime test still finds
equal files, and an append re-seals from the start of the file's last block. A sealed replica directory carries a
:data:`SEALED_MARKER` file (with the key's fingerprint); a directory whose sealed state
(or key) is not the one asked for is rebuilt aside and swapped in whole, so plaintext
and ciphertext never mix in one replica. With ``unseal=KEY`` the source is read through
its seal. File and directory names, sizes (to within the seal's overhead), modes,
modification times and symlinks stay as they are: names are not secret in this kit.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import shutil
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

T = TypeVar("T")

#: Prefix of the files a pass writes aside before renaming them into place.
TEMP_PREFIX = ".pg-repl-"
_BUF = 1 << 20
#: Plaintext bytes per sealed block.
BLOCK = 1 << 20
_NONCE = 12
_TAG = 16
#: Bytes a sealed block adds to its plaintext.
OVERHEAD = _NONCE + _TAG
#: The file that marks a replica directory as sealed (never replicated, never data).
SEALED_MARKER = ".pg-sealed"


class SealError(OSError):
    """A sealed file does not authenticate (tampered, torn, or another key)."""


def enc_size(n: int) -> int:
    """Size of the sealed form of ``n`` plaintext bytes."""
    return n + -(-n // BLOCK) * OVERHEAD


def dec_size(n: int) -> int:
    """Plaintext size of a sealed file of ``n`` bytes (its inverse on :func:`enc_size`)."""
    return n - -(-n // (BLOCK + OVERHEAD)) * OVERHEAD


def key_id(key: bytes) -> str:
    return hmac.new(key, b"playground-replica-key-id", hashlib.sha256).hexdigest()[:16]


def sealed_with(path: Path) -> str | None:
    """The key fingerprint of a sealed replica directory, None if it is plaintext."""
    try:
        return str(json.loads((path / SEALED_MARKER).read_text())["key_id"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        return ""  # a damaged marker: sealed with an unknown key


def is_sealed(path: Path) -> bool:
    return (path / SEALED_MARKER).exists()


def _ad(rel: str, index: int, last: bool) -> bytes:
    return f"{rel}\0{index}\0{int(last)}".encode()


def _plain_blocks(
    path: Path, rel: str, aead: AESGCM | None, start: int, end: int
) -> Iterator[bytes]:
    """The plaintext of ``path`` from ``start`` to ``end`` (read through its seal)."""
    if aead is None:
        with open(path, "rb") as fh:
            fh.seek(start)
            left = end - start
            while left > 0:
                data = fh.read(min(_BUF, left))
                if not data:
                    return
                yield data
                left -= len(data)
        return
    index = start // BLOCK
    skip = start - index * BLOCK
    pos = index * BLOCK
    with open(path, "rb") as fh:
        blocks = -(-os.fstat(fh.fileno()).st_size // (BLOCK + OVERHEAD))
        fh.seek(index * (BLOCK + OVERHEAD))
        while pos < end:
            blob = fh.read(BLOCK + OVERHEAD)
            if not blob:
                return
            try:
                data = aead.decrypt(
                    blob[:_NONCE], blob[_NONCE:], _ad(rel, index, index == blocks - 1)
                )
            except (InvalidTag, ValueError):
                raise SealError(f"{rel}: block {index} does not authenticate") from None
            piece = data[skip : end - pos]
            if piece:
                yield piece
            pos += len(data)
            skip = 0
            index += 1


@dataclass
class PassResult:
    bytes_copied: int = 0
    files_copied: int = 0
    removed: int = 0
    #: Bytes of the working copy's regular files (its usage).
    total_bytes: int = 0
    #: ``rel -> (inode in the working copy, size copied)``: lets the next pass append.
    known: dict[str, tuple[int, int]] = field(default_factory=dict)


@dataclass
class _Codec:
    """How one pass reads its source and writes its destination."""

    rd: AESGCM | None = None
    wr: AESGCM | None = None

    def plain_size(self, st_size: int) -> int:
        return dec_size(st_size) if self.rd else st_size

    def dst_size(self, plain: int) -> int:
        return enc_size(plain) if self.wr else plain


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _copy_range(
    src: Path, dst_fh: int, start: int, end: int, rel: str = "", codec: _Codec | None = None
) -> int:
    """Plaintext ``[start, end)`` of ``src`` into ``dst_fh`` (sealed from ``start``, which
    is then a block boundary); returns the plaintext bytes copied."""
    codec = codec or _Codec()
    done = 0
    if codec.wr is None:
        for data in _plain_blocks(src, rel, codec.rd, start, end):
            _write_all(dst_fh, data)
            done += len(data)
        return done
    index = start // BLOCK
    last = (end - 1) // BLOCK
    pending = b""
    for data in _plain_blocks(src, rel, codec.rd, start, end):
        pending += data
        while len(pending) >= BLOCK:
            block, pending = pending[:BLOCK], pending[BLOCK:]
            nonce = os.urandom(_NONCE)
            _write_all(
                dst_fh, nonce + codec.wr.encrypt(nonce, block, _ad(rel, index, index == last))
            )
            done += len(block)
            index += 1
    if pending:
        nonce = os.urandom(_NONCE)
        _write_all(dst_fh, nonce + codec.wr.encrypt(nonce, pending, _ad(rel, index, index == last)))
        done += len(pending)
    return done


def _full_copy(
    src: Path, dst: Path, size: int, durable: bool, rel: str = "", codec: _Codec | None = None
) -> int:
    tmp = dst.with_name(f"{TEMP_PREFIX}{dst.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        n = _copy_range(src, fd, 0, size, rel, codec)
        if durable:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    os.close(fd)
    os.replace(tmp, dst)
    return n


def _append(
    src: Path,
    dst: Path,
    start: int,
    end: int,
    durable: bool,
    rel: str = "",
    codec: _Codec | None = None,
) -> int:
    codec = codec or _Codec()
    if codec.wr is not None:
        # The last block (marked last, partial or not) is sealed again, whole.
        start = (start - 1) // BLOCK * BLOCK if start else 0
    fd = os.open(dst, os.O_WRONLY)
    try:
        at = codec.dst_size(start)
        os.ftruncate(fd, at)  # a torn earlier append must not stay in the middle
        os.lseek(fd, at, os.SEEK_SET)
        n = _copy_range(src, fd, start, end, rel, codec)
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
    seal: bytes | None = None,
    unseal: bytes | None = None,
) -> PassResult:
    """Make ``dst`` mirror ``src``; ``known`` is the previous pass's result for ``dst``.

    ``seal``: ``dst`` holds the files sealed with this key; ``unseal``: ``src`` is sealed
    with this key (a sealed source without it is refused: ciphertext is never data).
    ``src`` and ``dst`` may be one directory only to change its sealed state (it is then
    rebuilt aside and swapped in)."""
    want = key_id(seal) if seal is not None else None
    src_key = sealed_with(src)
    if src_key is not None and (unseal is None or src_key != key_id(unseal)):
        raise SealError(f"{src} is sealed and no (or another) key was given to read it")
    if src_key is None:
        unseal = None
    if src.absolute() == dst.absolute() or (
        dst.is_dir() and sealed_with(dst) != want and any(_entries(dst))
    ):
        return _rebuild(src, dst, durable, seal, unseal)
    codec = _Codec(
        AESGCM(unseal) if unseal is not None else None, AESGCM(seal) if seal is not None else None
    )
    known = dict(known or {})
    result = PassResult()
    dst.mkdir(parents=True, exist_ok=True)
    if sealed_with(dst) != want:  # an empty directory (or just the marker)
        if want is None:
            (dst / SEALED_MARKER).unlink(missing_ok=True)
        else:
            _write_marker(dst, want)
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
            if name.startswith(TEMP_PREFIX) or rel == SEALED_MARKER:
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
            size = codec.plain_size(st.st_size)
            result.total_bytes += size
            try:
                dt = d_path.lstat()
            except FileNotFoundError:
                dt = None
            if (
                dt is not None
                and stat.S_ISREG(dt.st_mode)
                and dt.st_size == codec.dst_size(size)
                and dt.st_mtime_ns == st.st_mtime_ns
            ):
                result.known[rel] = (st.st_ino, size)
                continue
            try:
                prev = known.get(rel)
                if (
                    dt is not None
                    and stat.S_ISREG(dt.st_mode)
                    and prev is not None
                    and prev[0] == st.st_ino
                    and codec.dst_size(prev[1]) == dt.st_size
                    and prev[1] < size
                ):
                    n = _append(s_path, d_path, prev[1], size, durable, rel, codec)
                else:
                    if dt is not None and not stat.S_ISREG(dt.st_mode):
                        _remove(d_path)
                    n = _full_copy(s_path, d_path, size, durable, rel, codec)
                    touched_dirs.add(target_dir)
                os.chmod(d_path, stat.S_IMODE(st.st_mode))
                os.utime(d_path, ns=(st.st_atime_ns, st.st_mtime_ns))
            except FileNotFoundError:
                continue
            result.bytes_copied += n
            result.files_copied += 1
            result.known[rel] = (st.st_ino, size)
    # Remove what the working copy no longer has (deepest first).
    for dirpath, dirnames, filenames in os.walk(dst, topdown=False):
        rel_dir = os.path.relpath(dirpath, dst)
        for name in [*filenames, *dirnames]:
            rel = os.path.normpath(os.path.join(rel_dir, name))
            if rel in seen or rel == SEALED_MARKER:
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


def _entries(path: Path) -> Iterator[str]:
    return (n for n in os.listdir(path) if n != SEALED_MARKER)


def _write_marker(dst: Path, kid: str) -> None:
    tmp = dst / f"{TEMP_PREFIX}{SEALED_MARKER}"
    data = {"sealed": "aes-256-gcm", "block": BLOCK, "key_id": kid}
    with open(tmp, "w") as fh:
        json.dump(data, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, dst / SEALED_MARKER)
    _fsync_dir(dst)


def _rebuild(
    src: Path, dst: Path, durable: bool, seal: bytes | None, unseal: bytes | None
) -> PassResult:
    """Change a replica's sealed state: a full copy built aside, then swapped in whole (the
    names are those of :func:`playground.storage.snapshots.restore`, whose crash recovery,
    at the pool's opening, finishes or undoes an interrupted swap)."""
    return swap_in(dst, lambda staging: replicate(src, staging, None, True, seal, unseal))


def swap_in(dest: Path, build: Callable[[Path], T]) -> T:
    """Replace the directory ``dest`` (if any) by one ``build`` fills beside it: staged as
    ``.restore-NAME.PID``, the old one kept as ``.replaced-NAME.PID`` until the swap is
    done (``StorageNode.recover_restores`` finishes or undoes a swap a crash cut), the
    directories fsynced. On error nothing is left but ``dest`` as it was."""
    dest = dest.absolute()
    staging = dest.with_name(f".restore-{dest.name}.{os.getpid()}")
    old = dest.with_name(f".replaced-{dest.name}.{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        result = build(staging)
        _fsync_dir(staging)
        if dest.exists():
            os.replace(dest, old)
        os.replace(staging, dest)
        _fsync_dir(dest.parent)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if old.exists() and not dest.exists():
            os.replace(old, dest)
        raise
    shutil.rmtree(old, ignore_errors=True)
    return result


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def usage(path: Path) -> int:
    """Bytes of the regular files under ``path`` (0 if it does not exist); plaintext bytes
    for a sealed replica."""
    sealed = is_sealed(path)
    total = 0
    for dirpath, _dirnames, filenames in os.walk(path):
        for name in filenames:
            if name == SEALED_MARKER and dirpath == str(path):
                continue
            with contextlib.suppress(OSError):
                st = os.lstat(os.path.join(dirpath, name))
                if stat.S_ISREG(st.st_mode):
                    total += dec_size(st.st_size) if sealed else st.st_size
    return total


def digest_tree(path: Path, unseal: bytes | None = None) -> dict[str, str]:
    """``rel -> sha256`` of every regular file under ``path`` (symlinks as ``link:TARGET``);
    of the plaintext for a sealed replica, read with ``unseal`` (refused without it)."""
    aead: AESGCM | None = None
    kid = sealed_with(path)
    if kid is not None:
        if unseal is None or kid != key_id(unseal):
            raise SealError(f"{path} is sealed and no (or another) key was given to read it")
        aead = AESGCM(unseal)
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(path):
        rel_dir = os.path.relpath(dirpath, path)
        for name in sorted([*filenames, *dirnames]):
            p = Path(dirpath) / name
            rel = os.path.normpath(os.path.join(rel_dir, name))
            if name.startswith(TEMP_PREFIX) or rel == SEALED_MARKER:
                continue
            if p.is_symlink():
                out[rel] = "link:" + os.readlink(p)
            elif p.is_file():
                h = hashlib.sha256()
                if aead is None:
                    with open(p, "rb") as fh:
                        while block := fh.read(_BUF):
                            h.update(block)
                    out[rel] = h.hexdigest()
                    continue
                size = p.stat().st_size
                if aead is not None:
                    if enc_size(dec_size(size)) != size:
                        raise SealError(f"{rel}: a sealed file of a torn size ({size})")
                    size = dec_size(size)
                got = 0
                for block in _plain_blocks(p, rel, aead, 0, size):
                    h.update(block)
                    got += len(block)
                if aead is not None and got != size:
                    raise SealError(f"{rel}: sealed blocks are missing")
                out[rel] = h.hexdigest()
    return out
