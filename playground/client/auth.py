"""How the kit's clients present the platform token (DC/OS style).

The platform services (coordination node, storage control API, the nodes' internal
messages) refuse callers without the cluster's platform token. Clients send it as DC/OS
clients send theirs: ``Authorization: token=<token>``. The token itself lives in the
cluster's secret store (``STATE/secrets/platform-token``); the CLI reads it from there.
"""

from __future__ import annotations

HEADER = "Authorization"
SCHEME = "token="


def headers(token: str | None) -> dict[str, str]:
    """The request headers that present ``token`` (none without a token)."""
    return {HEADER: SCHEME + token} if token else {}
