"""VIP labels -> VIPs, their addresses and backends (playground.l4lb.vips), and the DNS
answers for named VIPs."""

from __future__ import annotations

from typing import Any

import pytest
from dnslib import QTYPE, RCODE, DNSRecord

from playground.dns.config import DnsConfig
from playground.dns.server import Resolver
from playground.l4lb import vips
from playground.l4lb.server import services
from playground.l4lb.vips import VipError, VipKey, parse_vip

PER_IP = {"mode": "per-ip", "block": 7}
SHARED = {"mode": "shared-ip", "block": 7}


@pytest.mark.parametrize(
    ("value", "key"),
    [
        ("/web:80", VipKey("name", "web", 80)),
        ("web:80", VipKey("name", "web", 80)),
        ("/prod/web:8080", VipKey("name", "prodweb", 8080)),
        ("/My-App:5555", VipKey("name", "my-app", 5555)),
        ("10.0.0.1:80", VipKey("ip", "10.0.0.1", 80)),
        (" 1.2.3.4:5000 ", VipKey("ip", "1.2.3.4", 5000)),
    ],
)
def test_parse_vip_reads_named_and_ip_forms(value: str, key: VipKey) -> None:
    assert parse_vip(value) == key


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("/web", "is not '/name:port'"),
        ("web:http", "is not '/name:port'"),
        (":80", "is not '/name:port'"),
        ("/web:0", "not in 1-65535"),
        ("/web:70000", "not in 1-65535"),
        ("/we b:80", "the name must be"),
        ("[::1]:80", "the name must be"),
        ("/" + "x" * 64 + ":80", "the name must be"),
    ],
)
def test_parse_vip_refuses_what_is_not_a_vip(value: str, message: str) -> None:
    with pytest.raises(VipError, match=message.replace("(", r"\(")):
        parse_vip(value)


def test_fqdn_and_label() -> None:
    k = parse_vip("/prod/web:80")
    assert k.fqdn == "prodweb.marathon.l4lb.thisdcos.directory"
    assert k.label == "/prodweb:80"
    ip = parse_vip("10.0.0.1:80")
    assert ip.fqdn is None and ip.label == "10.0.0.1:80"


def test_place_is_deterministic_inside_the_cluster_block_and_never_collides() -> None:
    keys = [parse_vip(f"/svc{i}:80") for i in range(200)] + [parse_vip("/svc1:81")]
    a = vips.place(keys, PER_IP, low_ports=True)
    b = vips.place(list(reversed(keys)), PER_IP, low_ports=True)
    assert a == b  # the order the VIPs were seen in does not matter
    assert len(set(a.values())) == len(keys)
    assert all(
        h.startswith("127.78.7.") and 2 <= int(h.rsplit(".", 1)[1]) <= 254 for h, _ in a.values()
    )
    assert a[parse_vip("/svc1:81")][0] == a[parse_vip("/svc1:80")][0]  # one name, one IP


def test_a_full_vip_block_leaves_the_extra_vips_out_with_a_notice() -> None:
    keys = [parse_vip(f"/svc{i}:80") for i in range(300)]
    placed = vips.place(keys, PER_IP, low_ports=True)
    assert len(placed) == len(vips.VIP_HOSTS) == len(set(placed.values()))
    state = _state(
        *[_task(f"s{i}.1", f"s{i}", "S1", 31000 + i, {"VIP_0": f"/svc{i}:80"}) for i in range(260)]
    )
    t = vips.table(state, PER_IP, True)
    assert len(t.vips) == 253 and len(t.notices) == 7
    assert all("no free address" in n["message"] for n in t.notices)


def test_place_moves_low_ports_when_they_cannot_be_bound() -> None:
    k = parse_vip("/web:80")
    assert vips.place([k], PER_IP, low_ports=True)[k][1] == 80
    assert vips.place([k], PER_IP, low_ports=False)[k][1] == 10080
    high = parse_vip("/web:8080")
    assert vips.place([high], PER_IP, low_ports=False)[high][1] == 8080


def test_shared_ip_mode_uses_a_port_range_of_the_cluster() -> None:
    keys = [parse_vip(f"/svc{i}:80") for i in range(20)]
    placed = vips.place(keys, SHARED, low_ports=False)
    base = vips.SHARED_BASE + vips.SHARED_SLOTS * 7
    assert all(
        h == "127.0.0.1" and base <= p < base + vips.SHARED_SLOTS for h, p in placed.values()
    )
    assert len(set(placed.values())) == 20


def _task(
    tid: str,
    name: str,
    agent: str,
    port: int,
    labels: dict[str, str],
    state: str = "TASK_RUNNING",
    healthy: bool | None = None,
    scope: str = "host",
    ip: str | None = None,
    protocol: str = "tcp",
) -> dict[str, Any]:
    status: dict[str, Any] = {"state": state, "timestamp": 2.0}
    if healthy is not None:
        status["healthy"] = healthy
    if ip:
        status["container_status"] = {
            "network_infos": [{"name": "dcos", "ip_addresses": [{"ip_address": ip}]}]
        }
    lbls = [{"key": k, "value": v} for k, v in labels.items()]
    lbls.append({"key": "network-scope", "value": scope})
    if scope == "container":
        lbls.append({"key": "network-name", "value": "dcos"})
    return {
        "id": tid,
        "name": name,
        "slave_id": agent,
        "state": state,
        "statuses": [{"state": "TASK_STARTING", "timestamp": 1.0}, status],
        "discovery": {
            "name": name,
            "ports": {
                "ports": [{"number": port, "protocol": protocol, "labels": {"labels": lbls}}]
            },
        },
    }


def _state(*tasks: dict[str, Any]) -> dict[str, Any]:
    return {
        "slaves": [
            {"id": "S1", "hostname": "127.77.7.20"},
            {"id": "S2", "hostname": "127.77.7.21"},
        ],
        "frameworks": [{"tasks": list(tasks)}],
    }


def test_table_collects_running_tasks_by_vip_with_their_addresses() -> None:
    state = _state(
        _task("web.1", "web.prod", "S1", 31001, {"VIP_0": "/prod/web:80"}),
        _task("web.2", "web.prod", "S2", 31002, {"VIP_0": "/prod/web:80"}),
        _task("web.3", "web.prod", "S2", 31003, {"VIP_0": "/prod/web:80"}, state="TASK_STAGING"),
        _task(
            "db.1", "db", "S1", 8080, {"VIP_1": "10.0.0.5:5432"}, scope="container", ip="127.80.0.9"
        ),
        _task("other.1", "other", "S1", 31004, {"HAPROXY_GROUP": "external"}),
    )
    t = vips.table(state, PER_IP, low_ports=True)
    web = t.vips[parse_vip("/prod/web:80")]
    assert {(b.host, b.port) for b in web.backends} == {
        ("127.77.7.20", 31001),
        ("127.77.7.21", 31002),
    }
    assert web.apps == {"/prod/web"} and web.written == "/prod/web:80"
    db = t.vips[parse_vip("10.0.0.5:5432")]
    assert [(b.host, b.port, b.agent_host) for b in db.backends] == [
        ("127.80.0.9", 8080, "127.77.7.20")
    ]
    assert len(t.vips) == 2 and not t.notices
    out = t.to_json()["vips"]
    assert {v["vip"] for v in out} == {"/prodweb:80", "10.0.0.5:5432"}
    assert all(v["address"] == f"{v['host']}:{v['served_port']}" for v in out)


def test_unhealthy_tasks_are_marked_by_mesos_status_or_marathon_results() -> None:
    state = _state(
        _task("a.1", "a", "S1", 31001, {"VIP_0": "/a:80"}, healthy=False),
        _task("a.2", "a", "S2", 31002, {"VIP_0": "/a:80"}, healthy=True),
        _task("a.3", "a", "S2", 31003, {"VIP_0": "/a:80"}),
    )
    health = vips.marathon_health(
        [
            {"id": "a.2", "healthCheckResults": [{"alive": True}]},
            {"id": "a.3", "healthCheckResults": [{"alive": False}]},
            {"id": "x.1", "healthCheckResults": []},
        ]
    )
    assert health == {"a.2": True, "a.3": False}
    t = vips.table(state, PER_IP, True, health)
    flags = {b.task_id: b.healthy for b in t.vips[parse_vip("/a:80")].backends}
    assert flags == {"a.1": False, "a.2": True, "a.3": False}
    (svc,) = [s for group in services(t).values() for s in group]
    assert [s.task_id for s in svc.live_servers] == ["a.2"]
    assert svc.mode == "tcp" and svc.backend == "vip_a_80"


def test_bad_labels_and_udp_ports_become_notices() -> None:
    state = _state(
        _task("b.1", "b", "S1", 31001, {"VIP_0": "nonsense"}),
        _task("c.1", "c", "S1", 31002, {"VIP_0": "/c:53"}, protocol="udp"),
    )
    t = vips.table(state, PER_IP, True)
    assert not t.vips
    assert [(n["task_id"], n["label"]) for n in t.notices] == [("b.1", "VIP_0"), ("c.1", "VIP_0")]
    assert "only TCP VIPs" in t.notices[1]["message"]


def _ask(resolver: Resolver, name: str, qtype: str = "A") -> DNSRecord:
    q = DNSRecord.question(name, qtype)
    return DNSRecord.parse(resolver.handle(q.pack()) or b"")


def test_the_dns_answers_named_vips_and_nothing_else_in_their_zone() -> None:
    r = Resolver(DnsConfig())
    r.set_vips({"prodweb.marathon.l4lb.thisdcos.directory": "127.78.7.30"})
    a = _ask(r, "prodweb.marathon.l4lb.thisdcos.directory.")
    assert a.header.rcode == RCODE.NOERROR and [str(x.rdata) for x in a.rr] == ["127.78.7.30"]
    assert a.header.aa == 1
    nx = _ask(r, "nope.marathon.l4lb.thisdcos.directory.")
    assert nx.header.rcode == RCODE.NXDOMAIN and not nx.rr
    nodata = _ask(r, "prodweb.marathon.l4lb.thisdcos.directory.", "AAAA")
    assert nodata.header.rcode == RCODE.NOERROR and not nodata.rr
    assert _ask(r, "example.com.").header.rcode == RCODE.REFUSED
    assert a.rr[0].rtype == QTYPE.A


def test_backends_on_agents_not_yet_reregistered_are_carried_over() -> None:
    """After a failover the new leader lists its registry's agents as recovered_slaves
    until they re-register; their tasks keep their place in the VIP meanwhile."""
    before = vips.table(
        _state(
            _task("a.1", "a", "S1", 31001, {"VIP_0": "/a:80"}),
            _task("a.2", "a", "S2", 31002, {"VIP_0": "/a:80"}),
        ),
        PER_IP,
        True,
    )
    fresh = {
        "slaves": [{"id": "S2", "hostname": "127.77.7.21"}],
        "recovered_slaves": [{"id": "S1", "hostname": "127.77.7.20", "port": 5051}],
        "frameworks": [{"tasks": [_task("a.2", "a", "S2", 31002, {"VIP_0": "/a:80"})]}],
    }
    hosts = vips.recovering_hosts(fresh)
    assert hosts == {"127.77.7.20"}
    after = vips.carry_over(vips.table(fresh, PER_IP, True), before, hosts)
    got = {b.task_id for b in after.vips[parse_vip("/a:80")].backends}
    assert got == {"a.1", "a.2"}
    # Once S1 has re-registered without a.1, a.1 is gone.
    settled = {**fresh, "recovered_slaves": [], "slaves": _state()["slaves"]}
    final = vips.carry_over(
        vips.table(settled, PER_IP, True), after, vips.recovering_hosts(settled)
    )
    assert {b.task_id for b in final.vips[parse_vip("/a:80")].backends} == {"a.2"}
    # Nothing on a recovering agent and no VIP before: nothing invented.
    bare = vips.carry_over(vips.table(fresh, PER_IP, True), vips.VipTable(), hosts)
    assert {b.task_id for b in bare.vips[parse_vip("/a:80")].backends} == {"a.2"}
