"""Probes of nodes: their state, agent registration, the faults that are active."""

from typing import Any

from playground.chaos import extension as ext

__all__ = ["active_faults", "agent_registered", "broken_nodes", "node_state", "wait_node_running"]


def node_state(node: str, configuration: dict[str, Any] | None = None) -> str:
    """A node's state: ``running``, ``stopped``, ``crashed`` (or ``partitioned``)."""
    reg = ext.faults(configuration)
    return reg.resolve(node).state


def broken_nodes(configuration: dict[str, Any] | None = None) -> list:
    """Names of the nodes that are not running."""
    return [n.name for n in ext.backend(configuration).nodes() if n.state != "running"]


def active_faults(configuration: dict[str, Any] | None = None) -> list:
    """The faults not reverted yet (as ``playground faults --json`` lists them)."""
    return [f.to_dict() for f in ext.faults(configuration).active()]


def agent_registered(node: str, configuration: dict[str, Any] | None = None) -> bool:
    """True when the leading master lists the agent ``node`` as active."""
    name = ext.faults(configuration).resolve(node).name
    return any(n["name"] == name and n.get("registered") for n in ext.agent_nodes(configuration))


def wait_node_running(
    node: str, within: float = 60, configuration: dict[str, Any] | None = None
) -> bool:
    """Wait up to ``within`` cluster seconds until ``node`` runs (an agent: and is registered)."""
    reg = ext.faults(configuration)
    info = reg.resolve(node)

    def ok() -> bool:
        if reg.resolve(info.name).state != "running":
            return False
        return info.role not in ("agent", "public-agent") or agent_registered(
            info.name, configuration
        )

    done, waited = ext.poll(ok, ext.wall_seconds(configuration, within))
    if not done:
        raise ext.fail(f"{info.name} is not running and registered after {waited:.1f}s")
    return True
