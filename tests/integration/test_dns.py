"""The DNS beside the masters (mesos-dns) against a real embedded cluster.

A Marathon app ``/prod/web`` with 3 instances runs on the agents; its DNS names must
answer what Marathon's ``/v2/tasks`` says (hosts and ports), ``leader.mesos`` must be the
leading master, the HTTP API must agree, and a scale-down must show after a refresh
(``refreshSeconds`` 60 at time scale 50: 1.2 s of wall time).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from playground.backends import EmbeddedBackend
from playground.client import MarathonClient
from playground.client.dns import DnsClient, DnsHttpClient, DnsQueryError, DnsReply
from tests.support.marathon_http import HTTP_CMD, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

APP = "/prod/web"
A_NAME = "web-prod.marathon.mesos."
SRV_NAME = "_web-prod._tcp.marathon.mesos."
#: Time for the DNS to see a change: a refresh period (1.2 s) and the time to fetch it.
REFRESH_WAIT = 10.0


@pytest.fixture(scope="module")
def marathon(cluster: EmbeddedBackend) -> Iterator[MarathonClient]:
    with MarathonClient(cluster.endpoints()["marathon"]) as client:
        yield client


@pytest.fixture(scope="module")
def dns(cluster: EmbeddedBackend) -> DnsClient:
    return DnsClient(cluster.endpoints()["dns"])


@pytest.fixture(scope="module")
def web(marathon: MarathonClient) -> list[dict[str, Any]]:
    """/prod/web, 3 instances of a small web server, each with one port named "http"."""
    _, dep = marathon.create_app(
        {
            "id": APP,
            "cmd": HTTP_CMD,
            "cpus": 0.1,
            "mem": 32,
            "instances": 3,
            "portDefinitions": [{"port": 0, "name": "http"}],
        }
    )
    if dep:
        marathon.wait_for_deployment(dep, timeout=60)
    return running_tasks(marathon, 3)


def running_tasks(marathon: MarathonClient, n: int) -> list[dict[str, Any]]:
    def ok() -> list[dict[str, Any]] | None:
        tasks = marathon.list_tasks(APP)
        if len(tasks) == n and all(t["state"] == "TASK_RUNNING" for t in tasks):
            return tasks
        return None

    return wait_until(ok, 60, desc=f"{n} running tasks of {APP}")


def srv_view(reply: DnsReply) -> list[tuple[str, int]]:
    """(address, port) of every SRV answer, the address from the additional section."""
    out = []
    for rr in reply.answers:
        assert rr.type == "SRV" and rr.target is not None and rr.port is not None
        address = reply.address_of(rr.target)
        assert address is not None, f"no address for {rr.target} in {reply.additional}"
        out.append((address, rr.port))
    return sorted(out)


def task_view(tasks: list[dict[str, Any]]) -> list[tuple[str, int]]:
    return sorted((t["host"], t["ports"][0]) for t in tasks)


def test_status_names_the_dns_of_the_leading_master(cluster: EmbeddedBackend) -> None:
    """endpoints.dns is on the leading master's address, port 8053; dns_http on 8123."""
    eps = cluster.endpoints()
    master_host = eps["master"].split("//", 1)[1].rsplit(":", 1)[0]
    assert eps["dns"] == f"{master_host}:8053"
    assert eps["dns_http"] == f"http://{master_host}:8123"


def test_a_and_srv_answers_match_marathon_tasks(dns: DnsClient, web: list[dict[str, Any]]) -> None:
    """A: every task's host; SRV (UDP and TCP): every task's host and port, as /v2/tasks says."""
    hosts = sorted(t["host"] for t in web)

    def a_ok() -> DnsReply | None:
        reply = dns.query(A_NAME, "A")
        return reply if sorted(rr.value for rr in reply.answers) == hosts else None

    reply = wait_until(a_ok, REFRESH_WAIT, desc=f"A {A_NAME} == {hosts}")
    assert reply.rcode == "NOERROR"
    assert {rr.ttl for rr in reply.answers} == {60}
    for tcp in (False, True):
        srv = dns.query(SRV_NAME, "SRV", tcp=tcp)
        assert srv_view(srv) == task_view(web)
        assert {(rr.priority, rr.weight) for rr in srv.answers} == {(0, 1)}
        assert all(rr.target and rr.target.startswith("web-prod-") for rr in srv.answers)
    named = dns.query("_http._web-prod._tcp.marathon.mesos.", "SRV")
    assert srv_view(named) == task_view(web)


def test_leader_and_unknown_names(cluster: EmbeddedBackend, dns: DnsClient) -> None:
    """leader.mesos is the leading master's IP; unknown names are NXDOMAIN, others REFUSED."""
    master_host = cluster.endpoints()["master"].split("//", 1)[1].rsplit(":", 1)[0]
    leader = dns.query("leader.mesos.", "A")
    assert [rr.value for rr in leader.answers] == [master_host]
    assert dns.query("nope.marathon.mesos.", "A").rcode == "NXDOMAIN"
    assert dns.query("example.com.", "A").rcode == "REFUSED"
    agents = sorted(n.address.split(":")[0] for n in cluster.nodes() if "agent" in n.role)
    slave = dns.query("slave.mesos.", "A")
    assert sorted(rr.value for rr in slave.answers) == agents


def test_http_api_agrees_with_marathon(cluster: EmbeddedBackend, web: list[dict[str, Any]]) -> None:
    """/v1/services and /v1/hosts of the HTTP API give the tasks' hosts and ports."""
    with DnsHttpClient(cluster.endpoints()["dns_http"]) as http:
        services = wait_until(
            lambda: (s := http.services(SRV_NAME)) and len(s) == 3 and s,
            REFRESH_WAIT,
            desc="3 services",
        )
        assert sorted((s["ip"], int(s["port"])) for s in services) == task_view(web)
        assert {s["service"] for s in services} == {SRV_NAME}
        hosts = http.hosts(A_NAME)
        assert sorted(h["ip"] for h in hosts) == sorted(t["host"] for t in web)
        assert http.config()["RefreshSeconds"] == 60
        app_records = {
            r["name"]
            for fw in http.enumerate()["frameworks"]
            if fw["name"] == "marathon"
            for t in fw["tasks"]
            for r in t["records"]
        }
        assert {A_NAME, SRV_NAME} <= app_records


def test_records_follow_a_scale_down(
    marathon: MarathonClient, dns: DnsClient, web: list[dict[str, Any]]
) -> None:
    """After scaling to 1 instance, A and SRV answer only the remaining task (after a refresh)."""
    dep = marathon.scale_app(APP, 1)
    marathon.wait_for_deployment(dep["deploymentId"], timeout=60)
    (task,) = running_tasks(marathon, 1)

    def follows() -> bool:
        a = dns.query(A_NAME, "A")
        return [rr.value for rr in a.answers] == [task["host"]] and srv_view(
            dns.query(SRV_NAME, "SRV")
        ) == task_view([task])

    wait_until(follows, REFRESH_WAIT, desc="DNS to show the single remaining task")


# ---- three masters ---------------------------------------------------------------------------
def test_every_master_runs_a_dns_and_a_crashed_leader_takes_its_own_down(
    ha_cluster: EmbeddedBackend,
) -> None:
    """Each of the 3 masters answers on its address; after the leader crashes, the others'
    DNS name the new leader and the crashed master's DNS is gone with it."""
    masters = [n for n in ha_cluster.nodes() if n.role == "master"]
    hosts = {m.name: m.address.split(":")[0] for m in masters}
    clients = {name: DnsClient(f"{host}:8053", timeout=1.0) for name, host in hosts.items()}

    def one_leader(skip: str = "", other_than: str | None = None) -> str | None:
        """The leader every DNS (but ``skip``'s) names, if they agree on one."""
        seen = {
            tuple(rr.value for rr in c.query("leader.mesos.", "A").answers)
            for name, c in clients.items()
            if name != skip
        }
        if len(seen) == 1:
            (ips,) = seen
            if len(ips) == 1 and ips[0] != other_than:
                return ips[0]
        return None

    first = wait_until(one_leader, REFRESH_WAIT, desc="every DNS to name one leader")
    st = ha_cluster.cluster.status()
    assert first == hosts[st["leader"]]
    for name, c in clients.items():
        reply = c.query("master.mesos.", "A")
        assert sorted(rr.value for rr in reply.answers) == sorted(hosts.values()), name
        assert [rr.value for rr in c.query("master0.mesos.", "A").answers] == [hosts["master-1"]]

    old = st["leader"]
    ha_cluster.crash(old)
    new = wait_until(
        lambda: one_leader(skip=old, other_than=hosts[old]),
        20.0,
        desc="the surviving masters' DNS to name a new leader",
    )
    assert new != hosts[old]
    with pytest.raises(DnsQueryError):
        clients[old].query("leader.mesos.", "A")
