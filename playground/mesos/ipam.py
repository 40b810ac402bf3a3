"""IP address management for container networks: what a CNI IPAM plugin does on an agent.

A topology declares its IP-per-task networks (``networks: [{name: dcos, size: 254}]``).
As DC/OS gives every agent its own /24 of the overlay ``9.0.0.0/8``, every agent here
gets its own slice of every network, a /24 of loopback addresses:

    127.S.K.0/24    S = 80 + network_index * number_of_agents + agent_index
                    K = the cluster's block (``cluster.json`` ``addressing.block``)

* ``agent_index`` counts the agents and public agents in topology order from 0,
  ``network_index`` the networks in declaration order; the default topology in block 5
  gives ``dcos`` the slices 127.80.5.0/24 (agent-1), 127.81.5.0/24 (agent-2),
  127.82.5.0/24 (agent-3) and 127.83.5.0/24 (public-agent-1).
* K is the block of the nodes' own addresses (127.77.K.0/24), which no two clusters on
  a host share, so two clusters never hand out the same task address.
* S is 80 or more: the slices never meet the nodes (127.77.x.x) nor what a host puts on
  127.0.x.x (127.0.0.1, Debian's 127.0.1.1, systemd-resolved's 127.0.0.53); S stays at
  most 254, so networks x agents is at most 175 (checked when a topology is parsed).
* A slice hands out the hosts ``.1`` to ``.size`` (``size`` at most 254, default 254), so
  a lab can make a pool of 2 and exhaust it.

With shared-ip addressing (only 127.0.0.1 exists) a task cannot have an address of its
own: every allocation fails, saying so.

The allocations of an agent live in its work directory, ``meta/ipam.json``
(``schema_version`` 1), replaced atomically on every change::

    {"schema_version": 1,
     "networks": {"dcos": {"subnet": "127.80.5.0/24", "size": 254, "last": "127.80.5.2",
                           "allocations": {"127.80.5.1": {"container_id": "...",
                                                          "task_id": "..."}}}}}

Addresses are handed out as CNI's ``host-local`` plugin does: the next free one after
the last handed out (wrapping round), so an address just released is not reused at once
and an address is never given to two holders.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from playground.cluster.statedir import atomic_write
from playground.errors import PlaygroundError

if TYPE_CHECKING:
    from playground.cluster.topology import Topology

log = logging.getLogger("playground.ipam")

SCHEMA_VERSION = 1
#: Second octet of the first slice (network 0, agent 0).
FIRST_OCTET = 80
#: Second octet of the last possible slice.
LAST_OCTET = 254
#: How many (network, agent) slices a cluster can have.
MAX_SLICES = LAST_OCTET - FIRST_OCTET + 1
#: Addresses a slice can hand out (hosts .1 to .254 of its /24).
MAX_SIZE = 254
DEFAULT_SIZE = 254


class IpamError(PlaygroundError):
    """An address cannot be allocated; the message says why (it becomes the task's)."""


class UnknownNetwork(IpamError):
    """The task asks for a network the cluster does not declare."""


class PoolExhausted(IpamError):
    """Every address of the agent's slice of the network is held."""


class NotSupported(IpamError):
    """This cluster's addressing cannot give a task an address of its own."""


@dataclass(frozen=True)
class Pool:
    """One agent's slice of one network."""

    network: str
    agent: str
    prefix: str  # the first three octets, e.g. "127.80.5"
    size: int

    @property
    def subnet(self) -> str:
        return f"{self.prefix}.0/24"

    def addresses(self) -> list[str]:
        """The addresses this slice hands out, in order."""
        return [f"{self.prefix}.{h}" for h in range(1, self.size + 1)]

    def contains(self, ip: str) -> bool:
        head, _, host = ip.rpartition(".")
        return head == self.prefix and host.isdigit() and 1 <= int(host) <= MAX_SIZE


def slice_octet(network_index: int, agent_index: int, agents: int) -> int:
    """The second octet of a slice (see the module docstring)."""
    return FIRST_OCTET + network_index * agents + agent_index


def pools_for(topology: Topology, agent: str, block: int) -> dict[str, Pool]:
    """The slices of every declared network that ``agent`` hands out, by network name."""
    names = [a.name for a in topology.agents]
    if agent not in names:
        return {}
    i = names.index(agent)
    return {
        net.name: Pool(net.name, agent, f"127.{slice_octet(j, i, len(names))}.{block}", net.size)
        for j, net in enumerate(topology.networks)
    }


class Ipam:
    """The address allocations of one agent, kept in ``path``.

    Args:
        path: the state file (``meta/ipam.json`` in the agent's work directory).
        agent: the agent's node name (named in error messages).
        pools: the agent's slice of every declared network (``pools_for``).
        shared_ip: the cluster runs in shared-ip mode: every allocation fails.
    """

    def __init__(
        self, path: Path, agent: str, pools: dict[str, Pool], *, shared_ip: bool = False
    ) -> None:
        self.path = path
        self.agent = agent
        self.pools = pools
        self.shared_ip = shared_ip
        #: network -> address -> {"container_id", "task_id"}
        self.allocations: dict[str, dict[str, dict[str, str]]] = {n: {} for n in pools}
        self.last: dict[str, str | None] = {n: None for n in pools}
        self._load()

    # ---- persistence ----------------------------------------------------------------
    def _load(self) -> None:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            # Written atomically, so this is not a torn write; the agent's recovery
            # rebuilds the allocations of its live tasks from their checkpoints.
            log.error("ignoring unreadable %s: %s", self.path, exc)
            return
        if not isinstance(data, dict) or data.get("schema_version") != SCHEMA_VERSION:
            log.error("ignoring %s: not schema_version %d", self.path, SCHEMA_VERSION)
            return
        for name, net in (data.get("networks") or {}).items():
            pool = self.pools.get(name)
            if pool is None or net.get("subnet") != pool.subnet:
                log.warning(
                    "%s: dropping the allocations of network %s (%s)",
                    self.path,
                    name,
                    "no longer declared" if pool is None else "another subnet",
                )
                continue
            self.allocations[name] = {
                ip: {"container_id": str(a["container_id"]), "task_id": str(a.get("task_id", ""))}
                for ip, a in (net.get("allocations") or {}).items()
                if pool.contains(ip)
            }
            self.last[name] = net.get("last")

    def to_json(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "networks": {
                name: {
                    "subnet": pool.subnet,
                    "size": pool.size,
                    "last": self.last.get(name),
                    "allocations": dict(sorted(self.allocations[name].items(), key=_ip_key)),
                }
                for name, pool in self.pools.items()
            },
        }

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(self.path, json.dumps(self.to_json(), indent=1).encode())

    # ---- allocation -----------------------------------------------------------------
    def allocate(self, network: str, container_id: str, task_id: str = "") -> str:
        """An address of ``network`` for a container (the one it holds, if it holds one).

        Raises:
            NotSupported: shared-ip addressing.
            UnknownNetwork: the cluster does not declare ``network``.
            PoolExhausted: every address of this agent's slice is held.
        """
        if self.shared_ip:
            raise NotSupported(
                "IP-per-task needs per-ip addressing (a loopback address per node), and this "
                "cluster runs in shared-ip mode (every node on 127.0.0.1)",
                hint="run `playground doctor` for the loopback alias commands, then recreate "
                "the cluster",
            )
        pool = self.pools.get(network)
        if pool is None:
            declared = ", ".join(sorted(self.pools)) or "none"
            raise UnknownNetwork(
                f"unknown network; the networks of this cluster: {declared} "
                "(a topology declares them under `networks`)"
            )
        held = self.allocations[network]
        for ip, a in held.items():
            if a["container_id"] == container_id:
                return ip
        candidates = pool.addresses()
        last = self.last.get(network)
        start = candidates.index(last) + 1 if last in candidates else 0
        for k in range(len(candidates)):
            ip = candidates[(start + k) % len(candidates)]
            if ip not in held:
                held[ip] = {"container_id": container_id, "task_id": task_id}
                self.last[network] = ip
                self._save()
                return ip
        raise PoolExhausted(
            f"the pool of {self.agent} ({pool.subnet}, size {pool.size}) is exhausted"
        )

    def claim(self, network: str, ip: str, container_id: str, task_id: str = "") -> bool:
        """Record that a container holds ``ip`` (recovery); False if another holds it."""
        pool = self.pools.get(network)
        if pool is None or not pool.contains(ip):
            return False
        held = self.allocations[network]
        owner = held.get(ip)
        if owner is not None:
            return owner["container_id"] == container_id
        held[ip] = {"container_id": container_id, "task_id": task_id}
        self._save()
        return True

    def release(self, container_id: str) -> list[str]:
        """Free every address a container holds; returns them."""
        freed = [
            ip
            for held in self.allocations.values()
            for ip, a in list(held.items())
            if a["container_id"] == container_id
        ]
        if not freed:
            return []
        for held in self.allocations.values():
            for ip in freed:
                if ip in held and held[ip]["container_id"] == container_id:
                    del held[ip]
        self._save()
        return freed

    def reconcile(self, live: dict[str, tuple[str, dict[str, str]]]) -> tuple[list[str], list[str]]:
        """Make the allocations those of the live containers (agent recovery).

        Args:
            live: container id -> (task id, network name -> address) for every container
                that still runs (the addresses its checkpoint records).

        Returns:
            The addresses freed (their containers are gone) and those of live containers
            that could not be claimed again (held by another container).
        """
        freed: list[str] = []
        for held in self.allocations.values():
            for ip, a in list(held.items()):
                if a["container_id"] not in live:
                    del held[ip]
                    freed.append(ip)
        if freed:
            self._save()
        conflicts: list[str] = []
        for cid, (task_id, nets) in live.items():
            for network, ip in nets.items():
                if not self.claim(network, ip, cid, task_id):
                    conflicts.append(ip)
        return freed, conflicts

    def held(self, network: str) -> dict[str, dict[str, str]]:
        """The addresses of ``network`` held now, with their holders."""
        return dict(self.allocations.get(network, {}))


def _ip_key(item: tuple[str, Any]) -> tuple[int, ...]:
    return tuple(int(p) for p in item[0].split("."))
