"""mesos-dns's record generation from a leading master's state (naming.md, rule by rule)."""

from __future__ import annotations

import pytest

from playground.dns import labels, records
from playground.dns.config import DnsConfig
from playground.dns.records import generate
from tests.support.dns_state import (
    AGENT_IPS,
    BATCH_ID,
    CT_ID,
    LONG_NAME,
    MARATHON_IP,
    MASTERS,
    WEB_TASKS,
    master_state,
)


def config(**kw: object) -> DnsConfig:
    return DnsConfig(masters=list(MASTERS), listener="127.77.1.11", port=8053, **kw)  # type: ignore[arg-type]


@pytest.fixture
def rs() -> records.RecordSet:
    return generate(master_state(), config())


def canonical(task_id: str, label: str, agent: int) -> str:
    return f"{label}-{labels.hash_string(task_id)}-s{agent}"


# ---- labels -------------------------------------------------------------------------------
def test_hash_matches_mesos_dns_test_vector() -> None:
    """A task id hashes to mesos-dns's five zbase32 characters (its own test: "test" -> "iffe9")."""
    assert labels.hash_string("test") == "iffe9"
    assert len(labels.hash_string(WEB_TASKS[0][0])) == 5


def test_task_names_become_rfc1123_labels() -> None:
    """Dots and underscores become dashes, letters are lowered, others dropped, 63 chars max."""
    assert labels.rfc1123("web.prod") == "web-prod"
    assert labels.rfc1123("My_Batch.Job") == "my-batch-job"
    assert labels.rfc1123("--a b!c--") == "abc"
    assert labels.rfc1123(LONG_NAME) == LONG_NAME[:63]
    assert len(labels.rfc1123("x" * 100)) == 63
    # A dash at the cut is replaced by what follows it, as mesos-dns's trimCut does.
    assert labels.rfc1123("a" * 62 + "-bcd") == "a" * 62 + "b"


def test_rfc952_labels_are_24_chars_starting_with_a_letter() -> None:
    """enforceRFC952: at most 24 characters, leading digits and dashes trimmed."""
    assert labels.rfc952("Chronos With A Space AND MIXED case") == "chronoswithaspaceandmixe"
    assert labels.rfc952("42-answer") == "answer"


def test_framework_names_keep_their_dots() -> None:
    """A framework name is a domain fragment: each dot-separated part is a label."""
    assert labels.domain_frag("marathon.prod", labels.rfc1123) == "marathon.prod"
    assert labels.domain_frag("a..B_c", labels.rfc1123) == "a.b-c"


# ---- task records ---------------------------------------------------------------------------
def test_task_a_records_use_the_label_of_the_discovery_name(rs: records.RecordSet) -> None:
    """/prod/web (Mesos task web.prod) answers as web-prod.marathon.mesos, one IP per task."""
    assert sorted(rs.get("A", "web-prod.marathon.mesos.")) == AGENT_IPS[:2]
    assert sorted(rs.get("A", "web-prod.marathon.slave.mesos.")) == AGENT_IPS[:2]
    tid, agent, _, _ = WEB_TASKS[0]
    assert rs.get("A", f"{canonical(tid, 'web-prod', agent)}.marathon.mesos.") == [AGENT_IPS[0]]
    assert rs.get("A", f"{canonical(tid, 'web-prod', agent)}.marathon.slave.mesos.") == [
        AGENT_IPS[0]
    ]


def test_legacy_records_under_the_raw_discovery_name(rs: records.RecordSet) -> None:
    """As mesos-dns does, the raw DiscoveryInfo name (with its dot) gets records too."""
    assert sorted(rs.get("A", "web.prod.marathon.mesos.")) == AGENT_IPS[:2]
    assert len(rs.get("SRV", "_web.prod._tcp.marathon.mesos.")) == 2


def test_srv_records_with_discovery_info_target_the_canonical_task_name(
    rs: records.RecordSet,
) -> None:
    """DiscoveryInfo ports: _task._proto.fw.mesos -> task-hash-sN.fw.mesos:port, per protocol."""
    targets = {
        "tcp": {
            f"{canonical(tid, 'web-prod', a)}.marathon.mesos.:{p0}" for tid, a, p0, _ in WEB_TASKS
        },
        "udp": {
            f"{canonical(tid, 'web-prod', a)}.marathon.mesos.:{p1}" for tid, a, _, p1 in WEB_TASKS
        },
    }
    assert set(rs.get("SRV", "_web-prod._tcp.marathon.mesos.")) == targets["tcp"]
    assert set(rs.get("SRV", "_web-prod._udp.marathon.mesos.")) == targets["udp"]
    # The canonical targets resolve (to the task's IP).
    target = next(iter(targets["tcp"])).rsplit(":", 1)[0]
    assert rs.get("A", target)


def test_named_discovery_ports_get_their_own_srv_name(rs: records.RecordSet) -> None:
    """A named port adds _name._task._proto.fw.mesos; an unnamed one does not."""
    assert set(rs.get("SRV", "_http._web-prod._tcp.marathon.mesos.")) == {
        f"{canonical(tid, 'web-prod', a)}.marathon.mesos.:{p0}" for tid, a, p0, _ in WEB_TASKS
    }
    assert rs.get("SRV", "_http._web-prod._udp.marathon.mesos.") == []


def test_host_port_srv_records_live_under_slave(rs: records.RecordSet) -> None:
    """Every host port of the task's resources: _task._tcp|_udp.fw.slave.mesos -> .slave target."""
    want = {
        f"{canonical(tid, 'web-prod', a)}.marathon.slave.mesos.:{p}"
        for tid, a, p0, p1 in WEB_TASKS
        for p in (p0, p1)
    }
    assert set(rs.get("SRV", "_web-prod._tcp.marathon.slave.mesos.")) == want
    assert set(rs.get("SRV", "_web-prod._udp.marathon.slave.mesos.")) == want


def test_task_without_discovery_info_gets_host_port_srv_in_both_places(
    rs: records.RecordSet,
) -> None:
    """Without DiscoveryInfo the task name is used and SRVs exist with and without .slave."""
    target = f"{canonical(BATCH_ID, 'my-batch-job', 2)}.marathon.slave.mesos.:31005"
    assert rs.get("A", "my-batch-job.marathon.mesos.") == [AGENT_IPS[2]]
    for name in (
        "_my-batch-job._tcp.marathon.mesos.",
        "_my-batch-job._udp.marathon.mesos.",
        "_my-batch-job._tcp.marathon.slave.mesos.",
        "_my-batch-job._udp.marathon.slave.mesos.",
    ):
        assert rs.get("SRV", name) == [target], name


def test_container_ip_comes_first_and_the_slave_name_keeps_the_agent_ip(
    rs: records.RecordSet,
) -> None:
    """IPSources netinfo first: the task's A is its container IP, .slave stays the agent's."""
    assert rs.get("A", "ct.marathon.mesos.") == ["10.0.4.1"]
    assert rs.get("A", f"{canonical(CT_ID, 'ct', 2)}.marathon.mesos.") == ["10.0.4.1"]
    assert rs.get("A", "ct.marathon.slave.mesos.") == [AGENT_IPS[2]]
    host_only = generate(master_state(), config(ip_sources=["host"]))
    assert host_only.get("A", "ct.marathon.mesos.") == [AGENT_IPS[2]]


def test_long_task_names_are_cut_at_63_characters(rs: records.RecordSet) -> None:
    """A task name longer than a DNS label is cut to 63 characters."""
    assert rs.get("A", f"{LONG_NAME[:63]}.marathon.mesos.") == [AGENT_IPS[0]]
    assert not any(LONG_NAME in name for name in rs.a)


def test_only_running_tasks_on_known_agents_have_records(rs: records.RecordSet) -> None:
    """Staging, killing, finished tasks and tasks on unknown agents are not published."""
    names = set(rs.a) | set(rs.srv)
    for gone in ("staging", "killing", "done", "lost"):
        assert not any(n.startswith((f"{gone}.", f"_{gone}.", f"{gone}-")) for n in names), gone


def test_rfc952_mode_cuts_framework_labels_to_24(rs: records.RecordSet) -> None:
    """enforceRFC952 applies to framework names too (each part cut to 24 characters)."""
    strict = generate(master_state(), config(enforce_rfc952=True))
    assert strict.get("A", "some-box.chronoswithaspaceandmixe.case.mesos.") == [AGENT_IPS[1]]
    assert rs.get("A", "some-box.chronoswithaspaceandmixed.case.mesos.") == [AGENT_IPS[1]]


# ---- cluster records ------------------------------------------------------------------------
def test_leader_and_master_records(rs: records.RecordSet) -> None:
    """leader.mesos is the leading master; master.mesos all; masterN in the configured order."""
    assert rs.get("A", "leader.mesos.") == ["127.77.1.11"]
    assert sorted(rs.get("A", "master.mesos.")) == ["127.77.1.10", "127.77.1.11", "127.77.1.12"]
    assert rs.get("A", "master0.mesos.") == ["127.77.1.10"]
    assert rs.get("A", "master1.mesos.") == ["127.77.1.11"]
    assert rs.get("A", "master2.mesos.") == ["127.77.1.12"]
    assert rs.get("A", "master3.mesos.") == []
    assert rs.get("SRV", "_leader._tcp.mesos.") == ["leader.mesos.:5050"]
    assert rs.get("SRV", "_leader._udp.mesos.") == ["leader.mesos.:5050"]


def test_a_leader_missing_from_the_masters_list_is_numbered_last() -> None:
    """As mesos-dns: the leader not in the masters list becomes master<N> after them."""
    rs = generate(master_state(), DnsConfig(masters=["127.77.1.10:5050"]))
    assert rs.get("A", "master0.mesos.") == ["127.77.1.10"]
    assert rs.get("A", "master1.mesos.") == ["127.77.1.11"]
    assert sorted(rs.get("A", "master.mesos.")) == ["127.77.1.10", "127.77.1.11"]


def test_agent_framework_and_listener_records(rs: records.RecordSet) -> None:
    """slave.mesos lists every agent; frameworks get A (and SRV with a PID); ns1 is the listener."""
    assert sorted(rs.get("A", "slave.mesos.")) == AGENT_IPS
    assert rs.get("SRV", "_slave._tcp.mesos.") == ["slave.mesos.:5051"]
    assert rs.get("A", "marathon.mesos.") == [MARATHON_IP]
    assert rs.get("SRV", "_framework._tcp.marathon.mesos.") == []  # an HTTP framework: no PID
    fw = "chronoswithaspaceandmixed.case.mesos."
    assert rs.get("A", fw) == ["127.77.1.9"]
    assert rs.get("SRV", f"_framework._tcp.{fw}") == [f"{fw}:25501"]
    assert rs.get("A", "ns1.mesos.") == ["127.77.1.11"]


def test_a_state_without_leader_is_refused() -> None:
    """No leader in the state: an error, so the server keeps serving its old records."""
    with pytest.raises(records.StateError):
        generate(master_state(leader=None), config())


def test_enumeration_lists_frameworks_tasks_and_their_records(rs: records.RecordSet) -> None:
    """/v1/enumerate: every framework, its running tasks (raw names) and each one's records."""
    data = rs.enumerate()
    assert [f["name"] for f in data["frameworks"]] == [
        "marathon",
        "Chronos With A Space AND MIXED.case",
    ]
    marathon = data["frameworks"][0]
    assert [t["name"] for t in marathon["tasks"]] == [
        "web.prod",
        "web.prod",
        "My_Batch.Job",
        "ct",
        LONG_NAME,
    ]
    first = marathon["tasks"][0]
    assert first["id"] == WEB_TASKS[0][0]
    assert {"name": "web-prod.marathon.mesos.", "host": AGENT_IPS[0], "rtype": "A"} in first[
        "records"
    ]
    assert set(first["records"][0]) == {"name", "host", "rtype"}
