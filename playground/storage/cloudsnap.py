"""Cloud snapshots: backups of a snapshot to any S3-compatible endpoint, through boto3.

A backup uploads one snapshot manifest (:mod:`playground.storage.snapshots`) and the
chunks it refers to (:mod:`playground.storage.chunks`), and is

* **deduplicated and incremental**: a chunk already in the bucket (from any earlier
  backup made with the same key) is not uploaded again, so a backup after a 1 % change
  uploads about 1 % of the bytes;
* **compressed** (zlib, skipped for chunks that do not shrink) and **encrypted** with
  AES-256-GCM; the GCM tag authenticates every object, the chunk's SHA-256 is checked
  again after decryption;
* **opaque**: objects are named by HMAC-SHA256(key, digest), never by the content digest.

The 32-byte key lives in the cluster's secret store (``cloudsnap.key``, see
:func:`keyring`); encryption and naming use subkeys derived from it (HKDF-SHA256). Keys
are never logged, never put in an error message, a record or a ``repr``. A key is known
by its *fingerprint* (an HMAC of a constant, 16 hex digits), which tells which key a
backup needs without revealing it.

Bucket layout (``PREFIX`` = ``cloudsnap/``)::

    cloudsnap/index/ID.json       clear-text record of backup ID (BackupRecord.to_json)
    cloudsnap/manifests/ID        the snapshot manifest, compressed and encrypted
    cloudsnap/chunks/HMAC         one chunk, compressed and encrypted

The index record is written when a backup starts (``"status": "running"``), refreshed
with its progress at most once a second (``bytes_done``, ``updated_at``) and rewritten
at the end (``"done"`` or ``"failed"`` with ``error``). A backup whose writer was killed
stays ``running`` with an old ``updated_at``; its uploaded chunks are reused by the next
backup. Everything is synchronous; uploads and downloads run on a small thread pool.

Typical use (the storage node)::

    target = target_from_secrets(cloud.client(), cloud.bucket, SecretStore(state))
    rec = target.backup(store, manifest, "vol1", {"region": "eu"}, progress=cb)
    manifest = target.restore(rec.id, other_store)   # then snapshots.restore(...)
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import secrets as _random
import time
import zlib
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from playground.cluster.secrets import SecretError, SecretStore
from playground.errors import PlaygroundError
from playground.storage import snapshots
from playground.storage.chunks import ChunkError, ChunkStore

PREFIX = "cloudsnap/"
INDEX_PREFIX = PREFIX + "index/"
MANIFEST_PREFIX = PREFIX + "manifests/"
CHUNK_PREFIX = PREFIX + "chunks/"
#: The current key in the secret store; older keys (kept by :func:`import_key` so their
#: backups stay restorable) are ``cloudsnap.key.<fingerprint>``.
KEY_SECRET = "cloudsnap.key"
KEY_BYTES = 32
RECORD_SCHEMA = 1
KEY_FILE_KIND = "playground-cloudsnap-key"

_MAGIC = b"PGCS1"
_RAW, _ZLIB = 0, 1
_NONCE = 12
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_PROGRESS_EVERY = 1.0

Progress = Callable[[int, int], None]


class CloudSnapError(PlaygroundError):
    """A cloud backup or restore failed; nothing was restored."""


class WrongKeyError(CloudSnapError):
    """The backup was made with a key this cluster does not have."""


class TamperedError(CloudSnapError):
    """An object does not authenticate: altered, truncated or swapped."""


def fingerprint(key: bytes) -> str:
    """A key's public name: 16 hex digits of an HMAC, from which the key cannot be found."""
    _check_key(key)
    return hmac.new(key, b"playground.cloudsnap.fingerprint", hashlib.sha256).hexdigest()[:16]


def _check_key(key: bytes) -> None:
    if not isinstance(key, bytes | bytearray) or len(key) != KEY_BYTES:
        raise CloudSnapError(f"a cloud snapshot key is {KEY_BYTES} bytes")


class _Key:
    """One key's derived subkeys (never printed)."""

    __slots__ = ("aead", "fp", "name_key")

    def __init__(self, key: bytes) -> None:
        _check_key(key)
        self.fp = fingerprint(key)
        self.aead = AESGCM(_derive(key, b"playground.cloudsnap.enc"))
        self.name_key = _derive(key, b"playground.cloudsnap.name")

    def __repr__(self) -> str:
        return f"<cloudsnap key {self.fp}>"

    def chunk_name(self, digest: str) -> str:
        return CHUNK_PREFIX + hmac.new(self.name_key, digest.encode(), hashlib.sha256).hexdigest()

    def seal(self, data: bytes, context: bytes, compress: bool = True) -> bytes:
        alg, body = _RAW, data
        if compress and _worth_compressing(data):
            packed = zlib.compress(data, 3)
            if len(packed) < len(data):
                alg, body = _ZLIB, packed
        head = _MAGIC + bytes([alg])
        nonce = os.urandom(_NONCE)
        return head + nonce + self.aead.encrypt(nonce, body, head + context)

    def open(self, blob: bytes, context: bytes) -> bytes:
        """Decrypt and decompress; InvalidTag or ValueError if it does not authenticate."""
        head, nonce, ct = blob[:6], blob[6 : 6 + _NONCE], blob[6 + _NONCE :]
        if len(blob) < 6 + _NONCE + 16 or head[:5] != _MAGIC or head[5] not in (_RAW, _ZLIB):
            raise ValueError("not a cloud snapshot object")
        body = self.aead.decrypt(nonce, ct, head + context)
        return zlib.decompress(body) if head[5] == _ZLIB else body


def _derive(key: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(bytes(key))


def _worth_compressing(data: bytes) -> bool:
    """Cheap probe: compress a 64 KiB sample and skip data that does not shrink by 5 %."""
    sample = data[: 64 << 10]
    return len(sample) > 0 and len(zlib.compress(sample, 1)) < 0.95 * len(sample)


@dataclass
class BackupRecord:
    """The clear-text index entry of one backup (no key, no content digest)."""

    id: str
    volume: str
    created_at: float
    status: str  # running | done | failed
    size: int  # bytes of the volume's files
    chunk_count: int  # distinct chunks the backup refers to
    bytes_total: int  # bytes of those chunks
    bytes_done: int = 0  # of bytes_total, already in the bucket (uploaded or reused)
    uploaded_bytes: int = 0  # bytes sent (compressed, encrypted) by this backup
    chunks_uploaded: int = 0
    chunks_reused: int = 0
    labels: dict[str, str] = field(default_factory=dict)
    key_fingerprint: str = ""
    updated_at: float = 0.0
    finished_at: float | None = None
    error: str | None = None
    schema: int = RECORD_SCHEMA

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BackupRecord:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)

    @property
    def progress(self) -> float:
        """Fraction of the chunks in the bucket, 0..1."""
        return 1.0 if self.bytes_total == 0 else self.bytes_done / self.bytes_total


class CloudTarget:
    """Backups in ``bucket`` of an S3 endpoint, made with ``key``.

    Args:
        client: a boto3 S3 client (e.g. ``Cloud(dir).client()``).
        bucket: the bucket (it must exist).
        key: the current 32-byte key; new backups are encrypted with it.
        old_keys: more keys, to restore backups made before a key change.
        workers: parallel uploads/downloads.
    """

    def __init__(
        self,
        client: Any,
        bucket: str,
        key: bytes,
        old_keys: Iterable[bytes] = (),
        workers: int = 8,
    ) -> None:
        self.client = client
        self.bucket = bucket
        self._key = _Key(key)
        self._keys = {self._key.fp: self._key}
        for k in old_keys:
            kk = _Key(k)
            self._keys.setdefault(kk.fp, kk)
        self.workers = max(1, workers)

    def __repr__(self) -> str:
        return f"CloudTarget(bucket={self.bucket!r}, key={self._key.fp})"

    @property
    def key_fingerprint(self) -> str:
        return self._key.fp

    # -- backup ------------------------------------------------------------------------

    def backup(
        self,
        store: ChunkStore,
        manifest: dict[str, Any],
        volume: str,
        labels: Mapping[str, str] | None = None,
        progress: Progress | None = None,
        backup_id: str | None = None,
    ) -> BackupRecord:
        """Upload ``manifest`` and the chunks of ``store`` it needs; returns the done record.

        ``progress(bytes_done, bytes_total)`` is called from this thread as chunks land.
        On failure the record says ``failed`` (with the error) and CloudSnapError is raised;
        the chunks already uploaded are reused by the next attempt.
        """
        if manifest.get("schema_version") != snapshots.SCHEMA_VERSION:
            raise CloudSnapError("not a snapshot manifest this kit reads: nothing uploaded")
        if not isinstance(volume, str) or not _ID.match(volume):
            raise CloudSnapError(f"invalid volume name {volume!r}: nothing uploaded")
        labels = dict(labels or {})
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in labels.items()):
            raise CloudSnapError("labels must map strings to strings: nothing uploaded")
        bid = backup_id or new_backup_id()
        _check_id(bid)
        wanted = sorted(snapshots.digests(manifest))
        try:
            sizes = {d: store.path(d).stat().st_size for d in wanted}
        except FileNotFoundError:
            missing = [d[:12] for d in wanted if not store.has(d)]
            raise CloudSnapError(
                f"the snapshot refers to {len(missing)} chunk(s) missing from {store.root} "
                f"(first {missing[0]}): nothing uploaded",
                hint="verify the snapshot (playground volume verify) and take a new one",
            ) from None
        now = time.time()
        rec = BackupRecord(
            id=bid,
            volume=volume,
            created_at=now,
            status="running",
            size=int(manifest.get("size", 0)),
            chunk_count=len(wanted),
            bytes_total=sum(sizes.values()),
            labels=labels,
            key_fingerprint=self._key.fp,
            updated_at=now,
        )
        self._write_record(rec)
        try:
            self._upload(store, wanted, sizes, rec, progress)
            blob = self._key.seal(
                json.dumps(manifest, sort_keys=True).encode(), b"manifest:" + bid.encode()
            )
            self._put(MANIFEST_PREFIX + bid, blob)
            rec.uploaded_bytes += len(blob)
        except BaseException as exc:
            rec.status = "failed"
            rec.error = _describe(exc)
            rec.finished_at = rec.updated_at = time.time()
            try:
                self._write_record(rec)
            except CloudSnapError:
                pass  # the endpoint is gone: the record stays "running", stale
            if isinstance(exc, CloudSnapError):
                raise
            if isinstance(exc, Exception):
                raise CloudSnapError(
                    f"backup {bid} of {volume} failed: {rec.error}",
                    hint="check the cloud (playground cloud status) and run the backup again",
                ) from exc
            raise
        rec.status = "done"
        rec.finished_at = rec.updated_at = time.time()
        self._write_record(rec)
        return rec

    def _upload(
        self,
        store: ChunkStore,
        wanted: list[str],
        sizes: dict[str, int],
        rec: BackupRecord,
        progress: Progress | None,
    ) -> None:
        present = self._existing_chunks()
        todo = []
        for d in wanted:
            if self._key.chunk_name(d) in present:
                rec.chunks_reused += 1
                rec.bytes_done += sizes[d]
            else:
                todo.append(d)
        if progress:
            progress(rec.bytes_done, rec.bytes_total)
        last = time.monotonic()

        def send(digest: str) -> tuple[int, int]:
            data = store.get(digest)  # checked against its digest
            blob = self._key.seal(data, b"chunk:" + digest.encode())
            self._put(self._key.chunk_name(digest), blob)
            return len(data), len(blob)

        for plain, sent in self._run(send, todo):
            rec.chunks_uploaded += 1
            rec.bytes_done += plain
            rec.uploaded_bytes += sent
            if progress:
                progress(rec.bytes_done, rec.bytes_total)
            if time.monotonic() - last >= _PROGRESS_EVERY:
                last = time.monotonic()
                rec.updated_at = time.time()
                self._write_record(rec)

    def _existing_chunks(self) -> set[str]:
        out: set[str] = set()
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=CHUNK_PREFIX
            )
            for page in pages:
                out.update(o["Key"] for o in page.get("Contents", []))
        except Exception as exc:
            raise self._s3_error("list the chunks in", exc) from exc
        return out

    # -- queries -------------------------------------------------------------------------

    def list_backups(self, volume: str | None = None) -> list[BackupRecord]:
        """Every backup in the bucket (all keys), oldest first; only ``volume``'s if given."""
        out = []
        for key in self._keys_under(INDEX_PREFIX):
            if not key.endswith(".json"):
                continue
            try:
                rec = self._read_record(key)
            except CloudSnapError:
                continue  # deleted meanwhile, or not ours
            if volume is None or rec.volume == volume:
                out.append(rec)
        out.sort(key=lambda r: (r.created_at, r.id))
        return out

    def status(self, backup_id: str) -> BackupRecord:
        """One backup's record (status, progress, sizes)."""
        _check_id(backup_id)
        return self._read_record(INDEX_PREFIX + backup_id + ".json")

    # -- restore -------------------------------------------------------------------------

    def restore(
        self, backup_id: str, store: ChunkStore, progress: Progress | None = None
    ) -> dict[str, Any]:
        """Download a finished backup's chunks into ``store``; return its manifest.

        Every object is authenticated (GCM) and every chunk checked against its SHA-256
        before it enters the store; chunks the store already holds intact are not
        downloaded. Any failure raises (WrongKeyError, TamperedError, CloudSnapError) and
        returns no manifest, so the caller restores nothing; the verified chunks already
        stored are harmless (content-addressed, collected when unreferenced).
        """
        rec = self.status(backup_id)
        if rec.status != "done":
            raise CloudSnapError(
                f"backup {backup_id} is {rec.status}, not done: it cannot be restored",
                hint="restore a finished backup (playground cloudsnap list)",
            )
        key = self._keys.get(rec.key_fingerprint)
        if key is None:
            raise WrongKeyError(
                f"backup {backup_id} was encrypted with key {rec.key_fingerprint}; this "
                f"cluster has {', '.join(sorted(self._keys))}",
                hint="import the key it was made with: playground cloudsnap key import FILE",
            )
        blob = self._get(MANIFEST_PREFIX + backup_id)
        try:
            manifest = json.loads(key.open(blob, b"manifest:" + backup_id.encode()))
        except (InvalidTag, ValueError, zlib.error):
            raise TamperedError(
                f"the manifest of backup {backup_id} does not authenticate with key "
                f"{key.fp}: it was altered or replaced; nothing restored",
                hint="restore another backup (playground cloudsnap list)",
            ) from None
        if not isinstance(manifest, dict) or manifest.get("schema_version") != (
            snapshots.SCHEMA_VERSION
        ):
            raise CloudSnapError(f"backup {backup_id} holds a manifest this kit does not read")
        wanted = sorted(snapshots.digests(manifest))
        local = [d for d in wanted if store.has(d)]
        bad = set(store.verify(local))
        todo = [d for d in wanted if d not in local or d in bad]
        total = len(todo)
        if progress:
            progress(0, total)

        def fetch(digest: str) -> int:
            raw = self._get(key.chunk_name(digest))
            try:
                data = key.open(raw, b"chunk:" + digest.encode())
            except (InvalidTag, ValueError, zlib.error):
                raise TamperedError(
                    f"chunk {digest[:12]} of backup {backup_id} does not authenticate: "
                    "it was altered or replaced in the bucket; nothing restored",
                    hint="restore another backup (playground cloudsnap list)",
                ) from None
            if hashlib.sha256(data).hexdigest() != digest:
                raise TamperedError(
                    f"chunk {digest[:12]} of backup {backup_id} does not match its checksum; "
                    "nothing restored"
                )
            store.put(data, repair=digest in bad)
            return 1

        for done, _ in enumerate(self._run(fetch, todo), 1):
            if progress:
                progress(done, total)
        return manifest

    def delete(self, backup_id: str) -> None:
        """Remove a backup's record and manifest (its chunks stay, shared with others)."""
        _check_id(backup_id)
        self.status(backup_id)
        for k in (MANIFEST_PREFIX + backup_id, INDEX_PREFIX + backup_id + ".json"):
            try:
                self.client.delete_object(Bucket=self.bucket, Key=k)
            except Exception as exc:
                raise self._s3_error("delete from", exc) from exc

    # -- plumbing ------------------------------------------------------------------------

    def _run(self, fn: Callable[[str], Any], items: list[str]) -> Iterable[Any]:
        """``fn`` over ``items`` on the pool, results as they complete; the first error
        cancels what has not started and is raised."""
        if not items:
            return
        pool = ThreadPoolExecutor(max_workers=min(self.workers, len(items)))
        it = iter(items)
        pending: set[Future[Any]] = set()

        def refill() -> None:
            for d in it:
                pending.add(pool.submit(fn, d))
                if len(pending) >= self.workers * 2:
                    break

        try:
            refill()
            while pending:
                finished, rest = wait(pending, return_when=FIRST_EXCEPTION)
                pending.clear()
                pending.update(rest)
                for f in finished:
                    yield f.result()
                refill()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _put(self, key: str, body: bytes) -> None:
        try:
            self.client.put_object(Bucket=self.bucket, Key=key, Body=body)
        except Exception as exc:
            raise self._s3_error("write to", exc) from exc

    def _get(self, key: str) -> bytes:
        try:
            body: bytes = self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
            return body
        except Exception as exc:
            if _error_code(exc) in ("NoSuchKey", "404", "NotFound"):
                raise CloudSnapError(
                    f"object {key} is missing from bucket {self.bucket}: the backup is incomplete",
                    hint="restore another backup (playground cloudsnap list)",
                ) from None
            raise self._s3_error("read from", exc) from exc

    def _keys_under(self, prefix: str) -> list[str]:
        try:
            out: list[str] = []
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=prefix
            )
            for page in pages:
                out.extend(o["Key"] for o in page.get("Contents", []))
            return out
        except Exception as exc:
            raise self._s3_error("list", exc) from exc

    def _write_record(self, rec: BackupRecord) -> None:
        self._put(INDEX_PREFIX + rec.id + ".json", json.dumps(rec.to_json()).encode())

    def _read_record(self, key: str) -> BackupRecord:
        try:
            raw = self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except Exception as exc:
            if _error_code(exc) in ("NoSuchKey", "404", "NotFound"):
                bid = key[len(INDEX_PREFIX) : -len(".json")]
                raise CloudSnapError(
                    f"no backup {bid!r} in bucket {self.bucket}",
                    hint="list the backups: playground cloudsnap list",
                ) from None
            raise self._s3_error("read from", exc) from exc
        try:
            data = json.loads(raw)
            return BackupRecord.from_json(data)
        except (ValueError, TypeError):
            raise CloudSnapError(f"index entry {key} is not a backup record") from None

    def _s3_error(self, what: str, exc: BaseException) -> CloudSnapError:
        return CloudSnapError(
            f"cannot {what} bucket {self.bucket}: {_describe(exc)}",
            hint="is the cloud up? playground cloud status (or check the endpoint and credentials)",
        )


def new_backup_id() -> str:
    """A fresh backup id: sortable by time, unique (``cs-YYYYmmddTHHMMSSZ-xxxxxxxx``)."""
    return time.strftime("cs-%Y%m%dT%H%M%SZ-", time.gmtime()) + _random.token_hex(4)


def _check_id(backup_id: str) -> None:
    if not isinstance(backup_id, str) or not _ID.match(backup_id):
        raise CloudSnapError(f"invalid backup id {backup_id!r}")


def _error_code(exc: BaseException) -> str:
    resp = getattr(exc, "response", None)
    if isinstance(resp, dict):
        return str(resp.get("Error", {}).get("Code", ""))
    return ""


def _describe(exc: BaseException) -> str:
    code = _error_code(exc)
    text = str(exc) or type(exc).__name__
    return f"{code}: {text}" if code and code not in text else text


def count_backups(client: Any, bucket: str) -> int:
    """How many backup records a bucket holds (any key, any status)."""
    n = 0
    for page in client.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=INDEX_PREFIX
    ):
        n += sum(1 for o in page.get("Contents", []) if o["Key"].endswith(".json"))
    return n


# -- keys in the secret store -------------------------------------------------------------


def keyring(secrets: SecretStore) -> tuple[bytes, list[bytes]]:
    """The current key (created on first use) and the older keys kept for restores."""
    current = secrets.get_or_create(KEY_SECRET, KEY_BYTES)
    _check_key(current)
    older = [secrets.get(n) for n in secrets.names() if n.startswith(KEY_SECRET + ".")]
    older = [k for k in older if len(k) == KEY_BYTES]
    return current, older


def target_from_secrets(
    client: Any, bucket: str, secrets: SecretStore, workers: int = 8
) -> CloudTarget:
    """A CloudTarget with the cluster's current key and every older key it keeps."""
    current, older = keyring(secrets)
    return CloudTarget(client, bucket, current, older, workers=workers)


def export_key(secrets: SecretStore, create: bool = False) -> bytes:
    """The current key as a small JSON document to keep somewhere safe (import_key reads it).

    With ``create``, a cluster without a key yet gets one first."""
    if create:
        key = secrets.get_or_create(KEY_SECRET, KEY_BYTES)
    else:
        try:
            key = secrets.get(KEY_SECRET)
        except SecretError:
            raise CloudSnapError(
                f"this cluster has no cloud snapshot key yet ({secrets.root})",
                hint="it is created by the first cloud backup; check --state-dir",
            ) from None
    _check_key(key)
    doc = {
        "kind": KEY_FILE_KIND,
        "version": 1,
        "fingerprint": fingerprint(key),
        "key": base64.b64encode(key).decode(),
    }
    return (json.dumps(doc, indent=2) + "\n").encode()


@dataclass(frozen=True)
class KeyImport:
    fingerprint: str
    previous: str | None  # the replaced current key's fingerprint (kept for restores)
    changed: bool


def import_key(secrets: SecretStore, data: bytes) -> KeyImport:
    """Make the exported key in ``data`` the current key.

    A different current key is kept as ``cloudsnap.key.<fingerprint>``, so backups made
    with it stay restorable. Bad input raises CloudSnapError and changes nothing."""
    try:
        doc = json.loads(data)
        ok = isinstance(doc, dict) and doc.get("kind") == KEY_FILE_KIND and doc.get("version") == 1
        key = base64.b64decode(doc["key"], validate=True) if ok else b""
    except (ValueError, TypeError, KeyError):
        ok, key = False, b""
    if not ok or len(key) != KEY_BYTES:
        raise CloudSnapError(
            "not a cloud snapshot key file (expected what `playground cloudsnap key export` writes)"
        )
    fp = fingerprint(key)
    if doc.get("fingerprint") != fp:
        raise CloudSnapError(
            "the key file is damaged: its key does not match its fingerprint; nothing imported"
        )
    previous = None
    if secrets.has(KEY_SECRET):
        current = secrets.get(KEY_SECRET)
        if hmac.compare_digest(current, key):
            return KeyImport(fp, None, False)
        if len(current) == KEY_BYTES:
            previous = fingerprint(current)
            secrets.put(f"{KEY_SECRET}.{previous}", current)
    secrets.put(KEY_SECRET, key)
    return KeyImport(fp, previous, True)


__all__ = [
    "BackupRecord",
    "ChunkError",
    "CloudSnapError",
    "CloudTarget",
    "KeyImport",
    "TamperedError",
    "WrongKeyError",
    "count_backups",
    "export_key",
    "fingerprint",
    "import_key",
    "keyring",
    "new_backup_id",
    "target_from_secrets",
]
