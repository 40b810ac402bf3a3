"""An encrypted chunk store, for the snapshots of ``secure`` volumes.

Same interface as :class:`~playground.storage.chunks.ChunkStore` (content addressed by the
SHA-256 of the plaintext, deduplicated, crash-safe writes, checked reads), but every chunk
is sealed with AES-256-GCM (a random 96-bit nonce per write, the digest as associated data)
and stored under an HMAC-SHA256 of its digest, so neither content nor content digests
appear on disk. Both keys derive from one 32-byte key of the cluster's secret store.

A chunk that does not authenticate, or whose plaintext does not hash to its digest, is
reported corrupt exactly as a plaintext chunk would be.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from playground.storage.chunks import _TMP, ChunkError, ChunkStore, PutResult, _fsync_dir

KEY_SECRET = "storage.key"
_NONCE = 12


def _derive(key: bytes, label: bytes) -> bytes:
    return hmac.new(key, b"playground-storage:" + label, hashlib.sha256).digest()


class SealedChunkStore(ChunkStore):
    """Chunks under ``root``, encrypted with keys derived from ``key`` (32 bytes)."""

    def __init__(self, root: Path | str, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("the storage key is 32 bytes")
        super().__init__(root)
        self._aead = AESGCM(_derive(key, b"chunk-encryption"))
        self._naming = _derive(key, b"chunk-names")
        self._manifests = AESGCM(_derive(key, b"manifest-encryption"))

    def __repr__(self) -> str:
        return f"SealedChunkStore({str(self.root)!r})"

    def name(self, digest: str) -> str:
        return hmac.new(self._naming, digest.encode(), hashlib.sha256).hexdigest()

    def path(self, digest: str) -> Path:
        super().path(digest)  # validates the digest
        name = self.name(digest)
        return self.root / name[:2] / name

    def put(self, data: bytes, repair: bool = False) -> PutResult:
        digest = hashlib.sha256(data).hexdigest()
        final = self.path(digest)
        if final.is_file() and not (repair and digest in self.verify([digest])):
            return PutResult(digest, len(data), False)
        final.parent.mkdir(parents=True, exist_ok=True)
        nonce = os.urandom(_NONCE)
        blob = nonce + self._aead.encrypt(nonce, data, digest.encode())
        tmp = final.parent / f"{_TMP}{final.name}.{os.getpid()}"
        with open(tmp, "wb") as fh:
            fh.write(blob)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, final)
        _fsync_dir(final.parent)
        return PutResult(digest, len(data), True)

    def get(self, digest: str) -> bytes:
        try:
            blob = self.path(digest).read_bytes()
        except FileNotFoundError:
            raise ChunkError(f"chunk {digest[:12]} is missing from {self.root}") from None
        try:
            data = self._aead.decrypt(blob[:_NONCE], blob[_NONCE:], digest.encode())
        except (InvalidTag, ValueError):
            raise ChunkError(
                f"chunk {digest[:12]} is corrupt: it does not authenticate with this "
                "cluster's storage key"
            ) from None
        if hashlib.sha256(data).hexdigest() != digest:
            raise ChunkError(f"chunk {digest[:12]} is corrupt: its content does not match")
        return data

    def collect(self, live: Iterable[str]) -> int:
        keep = {self.name(d) for d in live}
        removed = 0
        for name in list(self.digests()):  # on disk, names are HMACs
            if name not in keep:
                (self.root / name[:2] / name).unlink(missing_ok=True)
                removed += 1
        return removed

    def size(self) -> int:
        return sum((self.root / n[:2] / n).stat().st_size for n in self.digests())

    # -- manifests ---------------------------------------------------------------------
    def seal_manifest(self, manifest: dict[str, Any], context: str) -> str:
        """The manifest encrypted (file names and digests are content too)."""
        nonce = os.urandom(_NONCE)
        data = json.dumps(manifest, sort_keys=True).encode()
        blob = nonce + self._manifests.encrypt(nonce, data, context.encode())
        return base64.b64encode(blob).decode()

    def open_manifest(self, sealed: str, context: str) -> dict[str, Any]:
        blob = base64.b64decode(sealed)
        try:
            data = self._manifests.decrypt(blob[:_NONCE], blob[_NONCE:], context.encode())
        except (InvalidTag, ValueError):
            raise ChunkError(f"the manifest of {context} does not authenticate") from None
        out = json.loads(data)
        if not isinstance(out, dict):
            raise ChunkError(f"the manifest of {context} is not a manifest")
        return out
