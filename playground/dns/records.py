"""The record set of mesos-dns, generated from a leading master's ``/master/state``.

Pure logic, no I/O: :func:`generate` turns the master's state JSON (Mesos's field names)
into the A, AAAA and SRV records mesos-dns would serve, following its generator rule by
rule (``naming.md`` is the contract):

* per framework: ``<framework>.<domain>`` A (the scheduler's host) and, when the
  framework has a libprocess PID, ``_framework._tcp.<framework>.<domain>`` SRV;
* per agent: ``slave.<domain>`` A and ``_slave._tcp.<domain>`` SRV;
* the listener: ``<SOAMname>`` A (the address this DNS listens on);
* masters: ``leader.<domain>`` A, ``_leader._tcp|_udp.<domain>`` SRV, ``master.<domain>``
  A (every configured master and the leader) and ``masterN.<domain>`` A (one per master,
  in the configured order);
* per ``TASK_RUNNING`` task on a known agent, with ``task`` its DiscoveryInfo name (or its
  name) made a label and ``canonical`` = ``task-<hash of task id>-<agent id tail>``:
  ``task.<fw>.<domain>`` and ``canonical.<fw>.<domain>`` A (the task's IP from
  ``IPSources``), ``task.<fw>.slave.<domain>`` and ``canonical.<fw>.slave.<domain>`` A (the
  agent's IP); for each host port ``_task._tcp|_udp.<fw>.slave.<domain>`` SRV (and
  without ``.slave`` when the task has no DiscoveryInfo) to ``canonical.<fw>.slave``;
  for each DiscoveryInfo port ``_task._<proto>.<fw>.<domain>`` and, when the port is
  named, ``_<name>._task._<proto>.<fw>.<domain>`` SRV to ``canonical.<fw>.<domain>``.

A task with DiscoveryInfo gets its records twice, once under its raw DiscoveryInfo name
and once under the label made of it, as mesos-dns does ("LEGACY" in its generator): a
Marathon app ``/prod/web`` (Mesos task name ``web.prod``) answers as
``web-prod.marathon.mesos`` and, like on DC/OS, as ``web.prod.marathon.mesos`` too.

Host names that are not IP literals are not looked up (a node never blocks its event
loop on a resolver): the kit's nodes are addressed by IP, as its master reports them.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
from dataclasses import dataclass, field
from typing import Any

from playground.dns import labels
from playground.dns.config import DnsConfig
from playground.errors import PlaygroundError

log = logging.getLogger("playground.dns")

A = "A"
AAAA = "AAAA"
SRV = "SRV"

DOCKER_IP_LABEL = "Docker.NetworkSettings.IPAddress"
MESOS_IP_LABEL = "MesosContainerizer.NetworkSettings.IPAddress"


class StateError(PlaygroundError):
    """A master's state cannot be made into records (no leader in it)."""


# --------------------------------------------------------------------------------------
# The record set
# --------------------------------------------------------------------------------------


@dataclass
class RecordSet:
    """Names (fully qualified, lower case) to record values, per kind.

    A and AAAA values are addresses; SRV values are ``target:port``. Values keep their
    insertion order and are unique per name, as in mesos-dns's record maps.
    """

    a: dict[str, dict[str, None]] = field(default_factory=dict)
    aaaa: dict[str, dict[str, None]] = field(default_factory=dict)
    srv: dict[str, dict[str, None]] = field(default_factory=dict)
    #: ``GET /v1/enumerate``: frameworks, their running tasks and each task's records.
    frameworks: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._kinds = {A: self.a, AAAA: self.aaaa, SRV: self.srv}

    def _kind(self, kind: str) -> dict[str, dict[str, None]]:
        return self._kinds[kind]

    def add(self, kind: str, name: str, value: str) -> bool:
        """Add one record; False when ``value`` is empty or already there."""
        if not value:
            return False
        values = self._kinds[kind].setdefault(name, {})
        if value in values:
            return False
        values[value] = None
        return True

    def get(self, kind: str, name: str) -> list[str]:
        return list(self._kind(kind).get(name, ()))

    def first(self, kind: str, name: str) -> str | None:
        for value in self._kind(kind).get(name, ()):
            return value
        return None

    def has_name(self, name: str) -> bool:
        return name in self.a or name in self.aaaa or name in self.srv

    def enumerate(self) -> dict[str, Any]:
        return {"frameworks": self.frameworks}

    def __len__(self) -> int:
        return sum(len(v) for kind in (self.a, self.aaaa, self.srv) for v in kind.values())


# --------------------------------------------------------------------------------------
# Reading the state
# --------------------------------------------------------------------------------------


def parse_ip(value: str | None) -> str | None:
    """The canonical text of an IP literal, or None."""
    if not value:
        return None
    return _parse_ip(value)


@functools.lru_cache(maxsize=4096)
def _parse_ip(value: str) -> str | None:
    try:
        return str(ipaddress.ip_address(value.strip("[]")))
    except ValueError:
        return None


def kind_of(ip: str) -> str:
    return AAAA if ":" in ip else A


def split_hostport(hostport: str) -> tuple[str, str] | None:
    """``host:port`` (or ``[v6]:port``) -> (host, port); None when it has no port."""
    host, sep, port = hostport.rpartition(":")
    if not sep or not host:
        return None
    return host.strip("[]"), port


def parse_upid(pid: Any) -> tuple[str, str] | None:
    """A libprocess PID ``name@host:port`` -> (host, port), or None."""
    if not isinstance(pid, str) or "@" not in pid:
        return None
    name, _, hostport = pid.partition("@")
    if not name:
        return None
    return split_hostport(hostport)


def ips_4_and_6(ips: list[str]) -> list[str]:
    """At most the first IPv4 and the first IPv6 address of ``ips`` (in that order)."""
    v4 = next((ip for ip in ips if kind_of(ip) == A), None)
    v6 = next((ip for ip in ips if kind_of(ip) == AAAA), None)
    return [ip for ip in (v4, v6) if ip]


def port_list(ranges: Any) -> list[str]:
    """Mesos's ``"[31000-31001, 31005-31005]"`` -> every port, as text."""
    if not isinstance(ranges, str) or "[" not in ranges:
        return []
    inner = ranges.split("[", 1)[1].split("]", 1)[0]
    out: list[str] = []
    for part in inner.split(","):
        lo, _, hi = part.strip().partition("-")
        try:
            out.extend(str(p) for p in range(int(lo), int(hi or lo) + 1))
        except ValueError:
            continue
    return out


def _latest_running(statuses: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The TASK_RUNNING status with the latest timestamp (state order is not guaranteed)."""
    best: dict[str, Any] | None = None
    for s in statuses:
        if s.get("state") == "TASK_RUNNING" and (
            best is None or float(s.get("timestamp", 0)) > float(best.get("timestamp", 0))
        ):
            best = s
    return best


def _netinfo_ips(task: dict[str, Any], network: str = "") -> list[str]:
    status = _latest_running(task.get("statuses") or [])
    if status is None:
        return []
    out: list[str] = []
    for ni in (status.get("container_status") or {}).get("network_infos") or []:
        if network and ni.get("name") != network:
            continue
        addrs = ni.get("ip_addresses") or []
        if addrs:
            out.extend(ip for a in addrs if (ip := parse_ip(a.get("ip_address"))))
        elif ip := parse_ip(ni.get("ip_address")):  # Mesos 0.25's single address
            out.append(ip)
    return out


def _label_ips(task: dict[str, Any], key: str) -> list[str]:
    status = _latest_running(task.get("statuses") or [])
    if status is None:
        return []
    return [
        ip
        for lab in status.get("labels") or []
        if lab.get("key") == key and (ip := parse_ip(lab.get("value")))
    ]


def _auto_ips(task: dict[str, Any], slave_ips: list[str]) -> list[str]:
    for port in _discovery_ports(task):
        lbls = {lab.get("key"): lab.get("value") for lab in _labels(port.get("labels"))}
        scope = lbls.get("network-scope") or ""
        if scope in ("", "host"):
            return [ip for ip in slave_ips if parse_ip(ip)]
        if scope == "container":
            return _netinfo_ips(task, lbls.get("network-name") or "")
        break
    return []


def task_ips(task: dict[str, Any], sources: list[str], slave_ips: list[str]) -> list[str]:
    """The task's addresses from each IP source in priority order (mesos-dns's ``IPs``)."""
    out: list[str] = []
    for src in sources:
        if src == "netinfo":
            out.extend(_netinfo_ips(task))
        elif src == "mesos":
            out.extend(_label_ips(task, MESOS_IP_LABEL))
        elif src == "docker":
            out.extend(_label_ips(task, DOCKER_IP_LABEL))
        elif src == "host":
            out.extend(ip for ip in slave_ips if parse_ip(ip))
        elif src == "autoip":
            out.extend(_auto_ips(task, slave_ips))
    return out


def _labels(value: Any) -> list[dict[str, Any]]:
    """Labels as a list, whether given as ``{"labels": [...]}`` or as the list itself."""
    if isinstance(value, dict):
        value = value.get("labels")
    return [x for x in value or [] if isinstance(x, dict)]


def _discovery_ports(task: dict[str, Any]) -> list[dict[str, Any]]:
    ports = (task.get("discovery") or {}).get("ports") or {}
    return [p for p in ports.get("ports") or [] if isinstance(p, dict)]


def discovery_name(task: dict[str, Any]) -> str:
    """The task's DiscoveryInfo name ('' when it has no DiscoveryInfo)."""
    return str((task.get("discovery") or {}).get("name") or "")


# --------------------------------------------------------------------------------------
# Generation
# --------------------------------------------------------------------------------------


class _Generator:
    def __init__(self, config: DnsConfig) -> None:
        self.config = config
        self.domain = config.domain
        self.spec = labels.spec(config.enforce_rfc952)
        self.rs = RecordSet()
        self.slave_ips: dict[str, list[str]] = {}

    def frameworks(self, state: dict[str, Any]) -> None:
        for f in state.get("frameworks") or []:
            upid = parse_upid(f.get("pid"))
            host, port = upid if upid else (str(f.get("hostname") or ""), "")
            ip = parse_ip(host)
            if ip is None:
                continue
            a = f"{labels.domain_frag(str(f.get('name', '')), self.spec)}.{self.domain}."
            self.rs.add(kind_of(ip), a, ip)
            if port:
                self.rs.add(SRV, f"_framework._tcp.{a}", f"{a}:{port}")

    def slaves(self, state: dict[str, Any]) -> None:
        a = f"slave.{self.domain}."
        for s in state.get("slaves") or []:
            upid = parse_upid(s.get("pid"))
            ips: list[str] = []
            if upid is not None and (ip := parse_ip(upid[0])):
                self.rs.add(kind_of(ip), a, ip)
                self.rs.add(SRV, f"_slave._tcp.{self.domain}.", f"{a}:{upid[1]}")
                ips.append(ip)
            # mesos-dns then falls back to the host as a label, which is no valid A
            # record value (mesos-dns issue 509): such an agent's tasks get no records.
            self.slave_ips[str(s.get("id"))] = ips

    def listener(self) -> None:
        ip = parse_ip(self.config.listener)
        # "0.0.0.0" would mean every local interface; the kit always names its address.
        if ip and ip != "0.0.0.0":
            self.rs.add(kind_of(ip), self.config.soa_mname, ip)

    def masters(self, leader: str) -> None:
        upid = parse_upid(leader)
        if upid is None:
            log.error("leader %r is no libprocess PID", leader)
            return
        leader_address = leader.partition("@")[2]
        ip, port = upid[0], upid[1]
        lip = parse_ip(ip)
        if lip is None:
            return
        d = self.domain
        self.rs.add(kind_of(lip), f"leader.{d}.", lip)
        self.rs.add(kind_of(lip), f"master.{d}.", lip)
        self.rs.add(SRV, f"_leader._tcp.{d}.", f"leader.{d}.:{port}")
        self.rs.add(SRV, f"_leader._udp.{d}.", f"leader.{d}.:{port}")
        added_leader = False
        idx = 0
        for master in self.config.masters:
            hp = split_hostport(master)
            mip = parse_ip(hp[0]) if hp else None
            if mip is None:
                continue
            if master != leader_address and not self.rs.add(kind_of(mip), f"master.{d}.", mip):
                continue  # a duplicate master
            if master == leader_address and added_leader:
                continue  # the leader listed twice
            self.rs.add(kind_of(mip), f"master{idx}.{d}.", mip)
            idx += 1
            if master == leader_address:
                added_leader = True
        if not added_leader:
            if self.config.masters:
                log.warning("leader %s is not in the list of masters", leader)
            self.rs.add(kind_of(lip), f"master{idx}.{d}.", lip)

    def tasks(self, state: dict[str, Any]) -> None:
        for f in state.get("frameworks") or []:
            enum_fw: dict[str, Any] = {"tasks": [], "name": str(f.get("name", ""))}
            self.rs.frameworks.append(enum_fw)
            for task in f.get("tasks") or []:
                slave_ips = self.slave_ips.get(str(task.get("slave_id")))
                if slave_ips is None or task.get("state") != "TASK_RUNNING":
                    continue
                self.task(task, f, slave_ips, enum_fw)

    def task(
        self,
        task: dict[str, Any],
        f: dict[str, Any],
        slave_ips: list[str],
        enum_fw: dict[str, Any],
    ) -> None:
        enum_task: dict[str, Any] = {
            "name": str(task.get("name", "")),
            "id": str(task.get("id", "")),
            "records": [],
        }
        enum_fw["tasks"].append(enum_task)
        ctx = {
            "task_id": labels.hash_string(str(task.get("id", ""))),
            "slave_id": labels.slave_id_tail(str(task.get("slave_id", ""))),
            "task_ips": ips_4_and_6(task_ips(task, self.config.ip_sources, slave_ips)),
            "slave_ips": slave_ips,
        }
        dname = discovery_name(task)
        if dname:
            # mesos-dns's "LEGACY" records under the raw DiscoveryInfo name, then the label.
            self.task_context(dname, ctx, task, f, enum_task)
            self.task_context(self.spec(dname), ctx, task, f, enum_task)
        else:
            self.task_context(self.spec(str(task.get("name", ""))), ctx, task, f, enum_task)

    def _insert(self, enum_task: dict[str, Any], kind: str, name: str, value: str) -> None:
        if self.rs.add(kind, name, value):
            enum_task["records"].append({"name": name, "host": value, "rtype": kind})

    def task_context(
        self,
        tname: str,
        ctx: dict[str, Any],
        task: dict[str, Any],
        f: dict[str, Any],
        enum_task: dict[str, Any],
    ) -> None:
        fname = labels.domain_frag(str(f.get("name", "")), self.spec)
        tail = f".{self.domain}."
        canonical = f"{tname}-{ctx['task_id']}-{ctx['slave_id']}.{fname}"
        arec = f"{tname}.{fname}"
        for ip in ctx["task_ips"]:
            self._insert(enum_task, kind_of(ip), arec + tail, ip)
            self._insert(enum_task, kind_of(ip), canonical + tail, ip)
        for ip in ctx["slave_ips"]:
            self._insert(enum_task, kind_of(ip), f"{arec}.slave{tail}", ip)
            self._insert(enum_task, kind_of(ip), f"{canonical}.slave{tail}", ip)

        has_di = bool(discovery_name(task))
        subdomains = [".slave"] if has_di else [".slave", ""]
        slave_host = f"{canonical}.slave{tail}"
        for port in port_list((task.get("resources") or {}).get("ports")):
            for sub in subdomains:
                for proto in ("tcp", "udp"):
                    name = f"_{tname}._{proto}.{fname}{sub}{tail}"
                    self._insert(enum_task, SRV, name, f"{slave_host}:{port}")
        if not has_di:
            return
        for dport in _discovery_ports(task):
            target = f"{canonical}{tail}:{int(dport.get('number', 0))}"
            proto = self.spec(str(dport.get("protocol") or ""))
            protos = [proto] if proto else ["tcp", "udp"]
            pname = self.spec(str(dport.get("name") or ""))
            for p in protos:
                name = f"_{tname}._{p}.{fname}{tail}"
                self._insert(enum_task, SRV, name, target)
            if pname:
                for p in protos:
                    name = f"_{pname}._{tname}._{p}.{fname}{tail}"
                    self._insert(enum_task, SRV, name, target)


def generate(state: dict[str, Any], config: DnsConfig) -> RecordSet:
    """The records mesos-dns serves for a leading master's ``/master/state``.

    Raises:
        StateError: the state names no leader (mesos-dns then keeps its old records).
    """
    leader = state.get("leader")
    if not leader:
        raise StateError("the master's state names no leading master")
    gen = _Generator(config)
    gen.frameworks(state)
    gen.slaves(state)
    gen.listener()
    gen.masters(str(leader))
    gen.tasks(state)
    return gen.rs
