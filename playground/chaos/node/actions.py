"""Actions on one node. ``node`` is a name as ``playground status`` shows it (or ``leader``,
``marathon``); without one, ``app_id`` picks the agent running that app's first task.

Every fault goes through ``playground.chaos.Faults``: it is listed by ``playground faults``,
recorded on the timeline, and remembered for this run so ``heal_node()`` (no node) heals
exactly what the experiment broke.
"""

import time
from typing import Any

from playground.chaos import extension as ext
from playground.chaos import faults as faults_mod

__all__ = [
    "crash_node",
    "drain_node",
    "heal_node",
    "partition_node",
    "reboot_node",
    "rebuild_node",
    "restart_agent",
    "stop_node",
]


def _break(
    how: str, node: str, app_id: str, for_seconds: float, configuration: dict[str, Any] | None
) -> dict:
    reg = ext.faults(configuration)
    target = ext.pick_node(configuration, node, app_id)
    fault = reg.break_node(target, how, for_seconds or None)
    ext.remember(fault)
    return fault.to_dict()


def crash_node(
    node: str = "",
    app_id: str = "",
    for_seconds: float = 0,
    configuration: dict[str, Any] | None = None,
) -> dict:
    """SIGKILL a node's whole process tree (its tasks die with it); returns the fault."""
    return _break("crash", node, app_id, for_seconds, configuration)


def stop_node(
    node: str = "",
    app_id: str = "",
    for_seconds: float = 0,
    configuration: dict[str, Any] | None = None,
) -> dict:
    """Shut a node down cleanly (an agent unregisters; its tasks are killed and replaced)."""
    return _break("stop", node, app_id, for_seconds, configuration)


def restart_agent(
    node: str = "", app_id: str = "", configuration: dict[str, Any] | None = None
) -> dict:
    """Restart only an agent's process: its tasks keep running and are recovered."""
    return _break("agent-restart", node, app_id, 0, configuration)


def partition_node(
    node: str = "",
    app_id: str = "",
    for_seconds: float = 0,
    configuration: dict[str, Any] | None = None,
) -> dict:
    """Cut a node off from every other node while its processes keep running."""
    if "partition" not in faults_mod.KINDS:
        raise ext.fail("this kit cannot partition nodes yet (no `partition` fault)")
    return _break("partition", node, app_id, for_seconds, configuration)


def drain_node(
    node: str = "",
    app_id: str = "",
    for_seconds: float = 0,
    configuration: dict[str, Any] | None = None,
) -> dict:
    """Drain an agent for maintenance: Mesos kills its tasks and Marathon replaces them elsewhere."""
    reg = ext.faults(configuration)
    drain = getattr(reg, "drain", None)
    if drain is None:
        raise ext.fail("this kit cannot drain agents yet (no Faults.drain)")
    target = ext.pick_node(configuration, node, app_id)
    fault = drain(reg.resolve(target).name, for_seconds or None)
    ext.remember(fault)
    return dict(fault.to_dict())


def reboot_node(
    node: str = "",
    app_id: str = "",
    downtime: float = 30,
    within: float = 120,
    configuration: dict[str, Any] | None = None,
) -> dict:
    """Stop a node cleanly, keep it down ``downtime`` cluster seconds, start it with its disk.

    An agent must register again within ``within`` cluster seconds. Returns the fault, the
    seconds it was down and (agents) the agent id it registered with.
    """
    reg = ext.faults(configuration)
    target = reg.resolve(ext.pick_node(configuration, node, app_id)).name
    fault = reg.break_node(target, "stop")
    ext.remember(fault)
    started = time.monotonic()
    time.sleep(max(float(downtime), 0.0) / ext.time_scale(configuration))
    reg.heal(target)
    ext.forget({fault.id})
    down = time.monotonic() - started
    out: dict[str, Any] = {"fault": fault.to_dict(), "down_seconds": round(down, 2)}
    if reg.resolve(target).role in faults_mod.AGENT_ROLES:
        wall = ext.wall_seconds(configuration, within)

        def registered() -> str | None:
            for n in ext.agent_nodes(configuration):
                if n["name"] == target and n.get("registered"):
                    return str(n.get("agent_id"))
            return None

        agent_id, waited = ext.poll(registered, wall)
        if not agent_id:
            raise ext.fail(f"{target} did not register again within {waited:.1f}s")
        out["agent_id"] = agent_id
    return out


def heal_node(
    node: str = "", within: float = 120, configuration: dict[str, Any] | None = None
) -> list:
    """Revert faults: of ``node``, or (without one) every fault this experiment run broke.

    Nodes start again with their disks; healed agents must be registered again within
    ``within`` cluster seconds. Returns the reverted faults.
    """
    reg = ext.faults(configuration)
    if node:
        reverted = reg.heal(node)
        ext.forget({f.id for f in reverted})
    else:
        mine = {f.id for f in ext.remembered()}
        reverted = []
        for target in dict.fromkeys(f.target for f in reg.active() if f.id in mine):
            reverted += reg.heal(target)
        ext.forget()
    agents = {n.name for n in reg.backend.nodes() if n.role in faults_mod.AGENT_ROLES}
    waiting = sorted({f.target for f in reverted} & agents)
    if waiting:

        def registered() -> bool:
            ok = {n["name"] for n in ext.agent_nodes(configuration) if n.get("registered")}
            return set(waiting) <= ok

        done, waited = ext.poll(registered, ext.wall_seconds(configuration, within))
        if not done:
            raise ext.fail(f"healed, but not registered again after {waited:.1f}s: {waiting}")
    return [f.to_dict() for f in reverted]


def rebuild_node(
    node: str = "",
    app_id: str = "",
    keep_disk: bool = False,
    configuration: dict[str, Any] | None = None,
) -> dict:
    """Bring a node back under its name and address (an agent: with a clean disk by default)."""
    reg = ext.faults(configuration)
    target = ext.pick_node(configuration, node, app_id)
    result = reg.rebuild(target, keep_disk=keep_disk)
    ext.forget(set(result.reverted))
    return result.to_dict()
