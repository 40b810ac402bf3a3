"""The platform token of a test cluster, for tests that call platform services directly."""

from __future__ import annotations

from playground.backends import EmbeddedBackend
from playground.client import auth as client_auth
from playground.cluster import auth


def headers(cluster: EmbeddedBackend) -> dict[str, str]:
    """``Authorization: token=...`` with the cluster's platform token (as the CLI sends it)."""
    token = auth.load_token(cluster.state_dir)
    assert token, f"no platform token in {cluster.state_dir}"
    return client_auth.headers(token)
