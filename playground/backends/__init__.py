"""Backends: what runs the cluster. Everything no HTTP API offers (start, stop, crash a node) goes through one."""

from playground.backends.base import Backend, BackendError, NodeInfo
from playground.backends.embedded import EmbeddedBackend

__all__ = ["Backend", "BackendError", "EmbeddedBackend", "NodeInfo"]
