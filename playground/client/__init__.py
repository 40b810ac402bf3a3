"""Typed HTTP clients: the only way the CLI, the TUI, labs and experiments reach a cluster."""

from playground.client.errors import ClientError, LeaderUnavailable, NotFound
from playground.client.mesos import AgentClient, MasterClient

__all__ = ["AgentClient", "ClientError", "LeaderUnavailable", "MasterClient", "NotFound"]
