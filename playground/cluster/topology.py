"""Topologies: which nodes a cluster has, where they sit, what they offer.

A topology is a YAML file (``schema_version: 1``). The shipped ones live beside this
module; a lab or a challenge may pass its own by path.

Besides its nodes, a topology may declare IP-per-task networks, each agent handing out
up to ``size`` addresses of its own slice (see ``playground.mesos.ipam`` for the layout)::

    networks:
      - {name: dcos, size: 254}
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib import resources as importlib_resources
from pathlib import Path
from typing import Any

import yaml

from playground.errors import PlaygroundError
from playground.mesos import ipam
from playground.mesos.resources import (
    ResourceGrammarError,
    Resources,
    attributes_flat,
    parse_attributes,
)

SCHEMA_VERSION = 1
ROLES = (
    "coordinator",
    "master",
    "agent",
    "public-agent",
    "marathon",
    "monitor",
    "storage",
    "edge",
)
_NAME = re.compile(
    r"^(coordinator|master|agent|public-agent|marathon|monitor|storage|edge)-[1-9][0-9]*$"
)
#: The role whose static reservation makes an agent public (as in DC/OS).
PUBLIC_ROLE = "slave_public"
#: Marathon's ``strings.NetworkName`` (stringTypes.raml), at most 63 characters.
_NETWORK_NAME = re.compile(r"^[a-z0-9]([-a-z0-9_]*[a-z0-9])?$")
_NETWORK_KEYS = ("name", "size")


#: The default ``task_user``: an unprivileged account every Linux and macOS system has.
DEFAULT_TASK_USER = "nobody"
_USER_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,31}\$?$")


class TopologyError(PlaygroundError):
    """A topology file is missing or invalid."""


@dataclass(frozen=True)
class NodeSpec:
    """One node of a topology."""

    name: str
    role: str
    region: str | None = None
    zone: str | None = None
    rack: str | None = None
    resources: str | None = None
    attributes: str | None = None

    @property
    def is_agent(self) -> bool:
        return self.role in ("agent", "public-agent")

    def agent_resources(self) -> Resources:
        """The agent's resources; a public agent's are reserved to ``slave_public``."""
        assert self.resources is not None
        role = PUBLIC_ROLE if self.role == "public-agent" else "*"
        return Resources.parse(self.resources, default_role=role)

    def agent_attributes(self) -> list[dict[str, Any]]:
        return parse_attributes(self.attributes or "")

    def fault_domain(self) -> dict[str, Any] | None:
        if self.region is None or self.zone is None:
            return None
        return {"fault_domain": {"region": {"name": self.region}, "zone": {"name": self.zone}}}


@dataclass(frozen=True)
class NetworkSpec:
    """An IP-per-task network: every agent hands out up to ``size`` addresses of it."""

    name: str
    size: int = ipam.DEFAULT_SIZE


@dataclass(frozen=True)
class Topology:
    """A parsed, validated topology."""

    name: str
    description: str
    region: str
    quorum: int
    nodes: tuple[NodeSpec, ...]
    networks: tuple[NetworkSpec, ...] = ()
    source: str = ""
    raw: dict[str, Any] = field(default_factory=dict, compare=False)
    #: Who tasks run as when the agents run as root and the app names no ``user``
    #: (Marathon's ``--mesos_user``); ignored when the agents are not root.
    task_user: str = DEFAULT_TASK_USER

    def by_role(self, *roles: str) -> list[NodeSpec]:
        return [n for n in self.nodes if n.role in roles]

    def node(self, name: str) -> NodeSpec:
        for n in self.nodes:
            if n.name == name:
                return n
        raise TopologyError(
            f"no node named {name!r} in topology {self.name!r}",
            hint="valid nodes: " + ", ".join(n.name for n in self.nodes),
        )

    @property
    def masters(self) -> list[NodeSpec]:
        return self.by_role("master")

    @property
    def agents(self) -> list[NodeSpec]:
        return self.by_role("agent", "public-agent")

    def host_companions(self, name: str) -> list[str]:
        """Nodes that share ``name``'s machine and go down with it: ``edge-N`` runs on
        ``public-agent-N`` (marathon-lb on the public agent, as in DC/OS)."""
        role, _, index = name.rpartition("-")
        if role == "public-agent":
            return [n.name for n in self.nodes if n.name == f"edge-{index}"]
        return []


def shipped() -> dict[str, Path]:
    """The topologies that ship with the kit, by name."""
    folder = importlib_resources.files("playground.cluster") / "topologies"
    out = {}
    for entry in folder.iterdir():
        if entry.name.endswith(".yaml"):
            out[entry.name[: -len(".yaml")]] = Path(str(entry))
    return dict(sorted(out.items()))


def load(name_or_path: str) -> Topology:
    """Load a shipped topology by name, or a topology file by path."""
    known = shipped()
    if name_or_path in known:
        path = known[name_or_path]
    else:
        path = Path(name_or_path)
        if not path.is_file():
            raise TopologyError(
                f"unknown topology {name_or_path!r}",
                hint=f"use one of {', '.join(known)} or the path of a topology YAML file",
            )
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise TopologyError(f"{path}: not valid YAML: {exc}") from None
    return parse(data, source=str(path))


def parse(data: Any, source: str = "<topology>") -> Topology:
    """Validate a topology document; every error names the file and the field."""

    def fail(msg: str) -> TopologyError:
        return TopologyError(f"{source}: {msg}")

    if not isinstance(data, dict):
        raise fail("a topology is a mapping with 'name' and 'nodes'")
    version = data.get("schema_version", SCHEMA_VERSION)
    if version != SCHEMA_VERSION:
        raise fail(f"schema_version {version} is not supported (this kit reads {SCHEMA_VERSION})")
    name = data.get("name")
    if not isinstance(name, str) or not re.match(r"^[a-z0-9][a-z0-9-]*$", name):
        raise fail("'name' must be lower-case letters, digits and dashes")
    region = str(data.get("region", "eu"))
    default_res = str(data.get("agent_resources", "cpus:4;mem:4096;disk:20000;ports:[31000-32000]"))
    raw_nodes = data.get("nodes")
    if not isinstance(raw_nodes, list) or not raw_nodes:
        raise fail("'nodes' must be a non-empty list")
    nodes: list[NodeSpec] = []
    seen: set[str] = set()
    for i, raw in enumerate(raw_nodes):
        if not isinstance(raw, dict):
            raise fail(f"nodes[{i}] must be a mapping")
        nname, role = raw.get("name"), raw.get("role")
        if role not in ROLES:
            raise fail(f"nodes[{i}].role must be one of {', '.join(ROLES)}, got {role!r}")
        if not isinstance(nname, str) or not _NAME.match(nname) or not nname.startswith(role + "-"):
            raise fail(f"nodes[{i}].name must be '{role}-N' (N >= 1), got {nname!r}")
        if nname in seen:
            raise fail(f"node name {nname!r} is used twice")
        seen.add(nname)
        spec_kw: dict[str, Any] = {"name": nname, "role": role}
        if role in ("agent", "public-agent"):
            zone = str(raw.get("zone", "a"))
            rack = raw.get("rack")
            nregion = str(raw.get("region", region))
            attrs = raw.get("attributes")
            if attrs is None:
                attrs = f"zone:{zone}" + (f";rack:{rack}" if rack else "")
                if role == "public-agent":
                    attrs += ";public_ip:true"
            resources = str(raw.get("resources", default_res))
            try:
                Resources.parse(resources)
                parse_attributes(str(attrs))
            except ResourceGrammarError as exc:
                raise fail(f"nodes[{i}] ({nname}): {exc}") from None
            spec_kw.update(
                region=nregion,
                zone=zone,
                rack=str(rack) if rack else None,
                resources=resources,
                attributes=str(attrs),
            )
        nodes.append(NodeSpec(**spec_kw))
    counts = {r: sum(1 for n in nodes if n.role == r) for r in ROLES}
    if counts["coordinator"] != 1:
        raise fail("a topology needs exactly one coordinator node")
    if counts["master"] < 1:
        raise fail("a topology needs at least one master")
    if counts["agent"] + counts["public-agent"] < 1:
        raise fail("a topology needs at least one agent")
    if counts["marathon"] > 1:
        raise fail("a topology has at most one marathon node")
    if counts["monitor"] > 1:
        raise fail("a topology has at most one monitor node")
    if counts["storage"] > 1:
        raise fail("a topology has at most one storage node")
    publics = {n.name for n in nodes if n.role == "public-agent"}
    for n in nodes:
        if n.role == "edge" and "public-agent-" + n.name.rsplit("-", 1)[1] not in publics:
            raise fail(
                f"{n.name} runs on the public agent of the same number, "
                f"but there is no public-agent-{n.name.rsplit('-', 1)[1]}"
            )
    quorum = int(data.get("quorum", counts["master"] // 2 + 1))
    if not 1 <= quorum <= counts["master"]:
        raise fail(f"quorum must be between 1 and the number of masters ({counts['master']})")
    networks = _parse_networks(data.get("networks"), fail)
    task_user = data.get("task_user", DEFAULT_TASK_USER)
    if not isinstance(task_user, str) or not _USER_NAME.match(task_user):
        raise fail(f"task_user must be a user name (e.g. nobody), got {task_user!r}")
    n_agents = counts["agent"] + counts["public-agent"]
    if len(networks) * n_agents > ipam.MAX_SLICES:
        raise fail(
            f"networks: {len(networks)} network(s) x {n_agents} agents need "
            f"{len(networks) * n_agents} address slices; a cluster has {ipam.MAX_SLICES}"
        )
    return Topology(
        name=name,
        description=str(data.get("description", "")),
        region=region,
        quorum=quorum,
        nodes=tuple(nodes),
        networks=networks,
        source=source,
        raw=data,
        task_user=task_user,
    )


def _parse_networks(raw: Any, fail: Any) -> tuple[NetworkSpec, ...]:
    """The ``networks`` list: names as Marathon allows them, sizes 1-254, no duplicates."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise fail("'networks' must be a list of {name, size} mappings")
    out: list[NetworkSpec] = []
    for i, net in enumerate(raw):
        if not isinstance(net, dict):
            raise fail(f"networks[{i}] must be a mapping with 'name' (and 'size')")
        unknown = sorted(str(k) for k in net if k not in _NETWORK_KEYS)
        if unknown:
            raise fail(
                f"networks[{i}] has unknown field(s) {', '.join(unknown)} "
                f"(known: {', '.join(_NETWORK_KEYS)})"
            )
        name = net.get("name")
        if not isinstance(name, str) or len(name) > 63 or not _NETWORK_NAME.match(name):
            raise fail(
                f"networks[{i}].name must be lower-case letters, digits, '-' and '_' "
                f"(at most 63, starting and ending with a letter or digit), got {name!r}"
            )
        if any(n.name == name for n in out):
            raise fail(f"networks[{i}].name {name!r} is declared twice")
        size = net.get("size", ipam.DEFAULT_SIZE)
        if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= ipam.MAX_SIZE:
            raise fail(
                f"networks[{i}].size must be a whole number from 1 to {ipam.MAX_SIZE} "
                f"(addresses per agent), got {size!r}"
            )
        out.append(NetworkSpec(name, size))
    return tuple(out)


def describe(topo: Topology) -> dict[str, Any]:
    """A JSON-able summary, for ``playground topology show``."""
    return {
        "name": topo.name,
        "description": topo.description,
        "region": topo.region,
        "quorum": topo.quorum,
        "source": topo.source,
        "networks": [{"name": n.name, "size": n.size} for n in topo.networks],
        "nodes": [
            {
                "name": n.name,
                "role": n.role,
                **(
                    {
                        "region": n.region,
                        "zone": n.zone,
                        "rack": n.rack,
                        "resources": n.agent_resources().to_text(),
                        "attributes": attributes_flat(n.agent_attributes()),
                    }
                    if n.is_agent
                    else {}
                ),
            }
            for n in topo.nodes
        ],
    }
