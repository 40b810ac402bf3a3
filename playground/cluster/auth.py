"""The platform token: who may use the platform services of an embedded cluster.

``playground up`` creates the token in the cluster's secret store
(``STATE/secrets/platform-token``, mode 0600 in a 0700 directory); it is never written to
``cluster.json``, logs, events, a task's environment or a process's arguments. Node
processes read it from the store; the kit's clients and CLI send it as
``Authorization: token=<token>`` (see :mod:`playground.client.auth`).

Services that require it: the coordination node, the storage control API and the
nodes' internal messages (``/master/mesos.internal.*``, ``/slave(1)/mesos.internal.*``:
launching, killing and shutting down tasks and agents). Their answer without it is 401
with ``{"message": ...}``. The comparison is constant-time.

A task using an external volume gets a **volume token** instead, per volume (in
``PLAYGROUND_VOLUMES``): an HMAC of the platform token and the volume id, valid only for
that volume's ``sync`` and ``GET`` (what the ``kv`` workload's durable mode needs), so a
task can neither derive the platform token nor touch another volume.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from pathlib import Path

from playground.client.auth import HEADER, SCHEME
from playground.cluster.secrets import SecretError, SecretStore

#: The secret's name in the cluster's secret store.
TOKEN_SECRET = "platform-token"
#: Bytes of randomness in a token (hex-encoded: 64 characters).
TOKEN_BYTES = 32


def ensure_token(state_root: Path | str) -> None:
    """Create the cluster's platform token if it does not exist yet (``up`` does)."""
    SecretStore(state_root).get_or_create(TOKEN_SECRET, TOKEN_BYTES)


def load_token(state_root: Path | str) -> str | None:
    """The cluster's platform token, or None if there is none (or it is unreadable)."""
    try:
        return SecretStore(state_root).get(TOKEN_SECRET).hex()
    except SecretError:
        return None


def presented(headers: Mapping[str, str]) -> str | None:
    """The token a request presents (``Authorization: token=<t>``), or None."""
    value = headers.get(HEADER, "").strip()
    if value[: len(SCHEME)].lower() != SCHEME:
        return None
    return value[len(SCHEME) :].strip() or None


def matches(given: str | None, expected: str | None) -> bool:
    """Whether ``given`` is ``expected``, compared in constant time; never without both."""
    if not given or not expected:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())


def volume_token(platform_token: str, volume_id: str) -> str:
    """The token a task may use for one volume: HMAC-SHA256(platform token, volume id)."""
    msg = f"playground-volume:{volume_id}".encode()
    return hmac.new(platform_token.encode(), msg, hashlib.sha256).hexdigest()
