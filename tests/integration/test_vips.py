"""VIPs (``VIP_{n}`` port labels) against a real ``ha`` cluster (three masters).

A 3-instance web app with ``"VIP_0": "/shop/cart:80"`` must be reachable at the address
``playground vips`` names and as ``shopcart.marathon.l4lb.thisdcos.directory`` in the
cluster's DNS, balanced across its tasks; a killed task costs no failed connection and
drops out; a task failing its Mesos-level health check gets no new connections; the VIP
keeps answering while the leading master is down.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from playground.backends import EmbeddedBackend
from playground.cli.vips import collect
from playground.client.dns import DnsClient
from tests.support.marathon_http import Marathon, answering, app_def, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

WEB_CMD = f"{sys.executable} -m playground workload web"
FQDN = "shopcart.marathon.l4lb.thisdcos.directory"


@pytest.fixture(scope="module")
def marathon(ha_cluster: EmbeddedBackend) -> Iterator[Marathon]:
    m = Marathon(str(ha_cluster.endpoints()["marathon"]))
    wait_until(lambda: m.info().get("frameworkId"), 30, desc="Marathon registered with Mesos")
    yield m
    m.close()


@pytest.fixture()
def m(marathon: Marathon) -> Iterator[Marathon]:
    marathon.cleanup()
    yield marathon
    marathon.cleanup()


def vip_app(app_id: str, vip: str, instances: int = 3) -> dict[str, Any]:
    return app_def(
        app_id,
        WEB_CMD,
        instances,
        portDefinitions=[{"port": 0, "name": "http", "labels": {"VIP_0": vip}}],
        mem=128,
    )


def view(cluster: EmbeddedBackend) -> dict[str, Any]:
    return collect(cluster.cluster.status())


def vip_of(cluster: EmbeddedBackend, label: str) -> dict[str, Any] | None:
    return next((v for v in view(cluster)["vips"] if v["vip"] == label), None)


def backends(vip: dict[str, Any] | None) -> set[tuple[str, int]]:
    return {(b["host"], b["port"]) for b in (vip or {}).get("backends", [])}


def get(address: str) -> str:
    return httpx.get(f"http://{address}/", timeout=5).text.strip()


def test_a_named_vip_balances_across_the_tasks_and_resolves(
    m: Marathon, ha_cluster: EmbeddedBackend
) -> None:
    tasks = answering(m.deploy(vip_app("/shop/cart", "/shop/cart:80")))
    want = {(t["host"], t["ports"][0]) for t in tasks}
    vip = wait_until(lambda: backends(v := vip_of(ha_cluster, "/shopcart:80")) == want and v,
                     10, desc="the VIP with the three tasks")  # fmt: skip
    assert vip["fqdn"] == FQDN and vip["apps"] == ["/shop/cart"] and vip["listening"]
    assert vip["label"] == "/shop/cart:80"
    host, port = vip["address"].rsplit(":", 1)
    assert host.startswith("127.") and int(port) in (80, 10080)
    # Every master serves it, so the VIP's address is the same in every master's view.
    masters = [n for n in ha_cluster.cluster.status()["nodes"] if n["role"] == "master"]
    views = [httpx.get(f"http://{n['address']}/net/v1/vips", timeout=5).json() for n in masters]
    assert len(views) == 3
    assert all(v2["address"] == vip["address"] for v in views for v2 in v["vips"])

    answers = Counter(get(vip["address"]) for _ in range(30))
    ids = {t["id"] for t in tasks}
    assert set(answers) == ids, answers
    # Round robin in each master's balancer: no task gets more than half of 30.
    assert max(answers.values()) <= 15, answers
    merged = vip_of(ha_cluster, "/shopcart:80")
    assert merged is not None and merged["connections"] >= 30

    dns = DnsClient(str(ha_cluster.endpoints()["dns"]))
    reply = wait_until(lambda: (r := dns.query(FQDN, "A")).answers and r, 10, desc="DNS A")
    assert [a.value for a in reply.answers] == [host]


def test_a_killed_task_costs_no_connection_and_drops_out(
    m: Marathon, ha_cluster: EmbeddedBackend
) -> None:
    tasks = answering(m.deploy(vip_app("/kill/cart", "/kill/cart:8080")))
    want = {(t["host"], t["ports"][0]) for t in tasks}
    vip = wait_until(lambda: backends(v := vip_of(ha_cluster, "/killcart:8080")) == want and v,
                     10, desc="the VIP with the three tasks")  # fmt: skip
    victim = tasks[0]
    r = m.delete(f"/v2/apps/kill/cart/tasks/{victim['id']}", params={"scale": "true"})
    assert r.status_code == 200, r.text
    killed_at = time.monotonic()
    failed, answers = [], []
    while time.monotonic() - killed_at < 3.0:
        try:
            answers.append((time.monotonic(), get(vip["address"])))
        except httpx.HTTPError as exc:
            failed.append(repr(exc))
    assert len(failed) <= 1, failed  # at most a connection in flight on the victim
    late = [tid for t, tid in answers if t > killed_at + 1.5]
    assert late and victim["id"] not in late
    wait_until(
        lambda: (victim["host"], victim["ports"][0]) not in backends(vip_of(ha_cluster, "/killcart:8080")),
        5, desc="the killed task out of the VIP",
    )  # fmt: skip


def test_a_task_failing_its_mesos_health_check_gets_no_new_connections(
    m: Marathon, ha_cluster: EmbeddedBackend, tmp_path: Path
) -> None:
    app = vip_app("/sick/cart", "/sick/cart:8081", 2)
    app["healthChecks"] = [
        {
            "protocol": "COMMAND",  # run by Mesos: its result is in the task's status
            "command": {"value": f"test ! -e {tmp_path}/sick-$MESOS_TASK_ID"},
            "gracePeriodSeconds": 1,
            "intervalSeconds": 1,
            "timeoutSeconds": 1,
            "maxConsecutiveFailures": 1000,
        }
    ]
    tasks = answering(m.deploy(app, healthy=True))
    healthy = wait_until(lambda: (v := vip_of(ha_cluster, "/sickcart:8081")) and
                         len([b for b in v["backends"] if b["healthy"]]) == 2 and v,
                         10, desc="two healthy backends")  # fmt: skip
    victim, other = tasks
    (tmp_path / f"sick-{victim['id']}").touch()

    def victim_unhealthy() -> bool:
        v = vip_of(ha_cluster, "/sickcart:8081")
        flags = {b["task_id"]: b["healthy"] for b in (v or {}).get("backends", [])}
        return flags.get(victim["id"]) is False

    wait_until(victim_unhealthy, 15, desc="the victim unhealthy in the VIP's view")
    time.sleep(1.5)  # every master's balancer has refreshed since
    answers = {get(healthy["address"]) for _ in range(10)}
    assert answers == {other["id"]}


def test_the_vip_keeps_answering_while_the_leading_master_is_down(
    m: Marathon, ha_cluster: EmbeddedBackend
) -> None:
    tasks = answering(m.deploy(vip_app("/ha/cart", "10.10.0.7:5000", 2)))
    want = {(t["host"], t["ports"][0]) for t in tasks}
    vip = wait_until(lambda: backends(v := vip_of(ha_cluster, "10.10.0.7:5000")) == want and v,
                     10, desc="the IP VIP with both tasks")  # fmt: skip
    assert vip["fqdn"] is None and vip["address"].endswith(":5000")
    leader = ha_cluster.cluster.status()["leader"]
    assert leader is not None
    ha_cluster.crash(leader)
    try:
        # Through the election and the agents' re-registration with the new leader (whose
        # state knows their tasks only once they have): no connection may fail.
        answers, t0, new_leader = [], time.monotonic(), None
        while time.monotonic() - t0 < 8.0 and (new_leader is None or time.monotonic() - t0 < 4.0):
            answers.append(get(vip["address"]))
            if new_leader is None:
                new_leader = ha_cluster.cluster.status()["leader"]
        assert new_leader not in (None, leader), "no new leading master"
        assert set(answers) == {t["id"] for t in tasks}
    finally:
        ha_cluster.start(leader)


def test_dns_ipam_vip_and_edge_together_on_a_container_network(
    m: Marathon, ha_cluster: EmbeddedBackend
) -> None:
    """One app on the `dcos` network, with a VIP label on its port mapping and exposed on
    the edge: each task has its own IP; the DNS A records, the VIP's backends and the edge's
    backends are all those IPs on the container port, and all three reach every task."""
    app = app_def(
        "/ipt/web",
        WEB_CMD,
        2,
        networks=[{"mode": "container", "name": "dcos"}],
        container={
            "type": "MESOS",
            "portMappings": [
                {"containerPort": 8080, "name": "http", "labels": {"VIP_0": "/ipt/web:8080"}}
            ],
        },
        labels={"HAPROXY_GROUP": "external"},
        mem=128,
    )
    tasks = m.deploy(app)
    ips = sorted(t["ipAddresses"][0]["ipAddress"] for t in tasks)
    assert len(set(ips)) == 2 and all(ip.startswith("127.8") for ip in ips)
    for ip in ips:
        wait_until(lambda ip=ip: httpx.get(f"http://{ip}:8080/", timeout=2).status_code == 200,
                   10, desc=f"{ip}:8080 answering")  # fmt: skip
    ids = {t["id"] for t in tasks}
    want = {(ip, 8080) for ip in ips}

    vip = wait_until(lambda: backends(v := vip_of(ha_cluster, "/iptweb:8080")) == want and v,
                     10, desc="the VIP on the task IPs")  # fmt: skip
    assert {get(vip["address"]) for _ in range(6)} == ids

    dns = DnsClient(str(ha_cluster.endpoints()["dns"]))
    reply = wait_until(lambda: (r := dns.query("web-ipt.marathon.mesos.", "A")) and
                       sorted(a.value for a in r.answers) == ips and r,
                       15, desc="DNS A records of the task IPs")  # fmt: skip
    assert len(reply.answers) == 2

    edge = str(ha_cluster.endpoints()["edge_stats"])

    def route() -> dict[str, Any] | None:
        rows = httpx.get(f"{edge}/v1/routes", timeout=5).json()
        r = next((x for x in rows if x["app"] == "/ipt/web"), None)
        got = {(b["host"], b["port"]) for b in (r or {}).get("backends", []) if b["healthy"]}
        return r if got == want else None

    r = wait_until(route, 10, desc="the edge on the task IPs")
    host = ha_cluster.endpoints()["edge"]
    assert {get(f"{host}:{r['service_port']}") for _ in range(6)} == ids
