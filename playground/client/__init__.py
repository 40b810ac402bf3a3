"""Typed HTTP clients: the only way the CLI, the TUI, labs and experiments reach a cluster."""

from playground.client.errors import ClientError, LeaderUnavailable, NotFound
from playground.client.marathon import (
    AppLocked,
    Conflict,
    DeploymentResult,
    DeploymentTimeout,
    InvalidDefinition,
    MarathonClient,
    MarathonError,
    MarathonNotFound,
    MarathonUnavailable,
)
from playground.client.mesos import AgentClient, MasterClient

__all__ = [
    "AgentClient",
    "AppLocked",
    "ClientError",
    "Conflict",
    "DeploymentResult",
    "DeploymentTimeout",
    "InvalidDefinition",
    "LeaderUnavailable",
    "MarathonClient",
    "MarathonError",
    "MarathonNotFound",
    "MarathonUnavailable",
    "MasterClient",
    "NotFound",
]
