"""`playground dns` as a user runs it, against a real embedded cluster.

The CLI runs as a subprocess against the module's `default` cluster, where the Marathon
app `/prod/web` runs 2 tasks; answers must match Marathon's `/v2/tasks`.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from playground.backends import EmbeddedBackend
from playground.client import MarathonClient
from tests.conftest import playground_cmd
from tests.support.marathon_http import HTTP_CMD, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.slow]


def pg(
    cluster: EmbeddedBackend, *args: str, check: int | None = 0
) -> subprocess.CompletedProcess[str]:
    """Run `playground ARGS --state-dir <the cluster's>`; assert the exit code unless None."""
    cp = subprocess.run(
        [*playground_cmd(), *args, "--state-dir", str(cluster.state_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ),
    )
    if check is not None:
        assert cp.returncode == check, (
            f"playground {' '.join(args)}: exit {cp.returncode}\n"
            f"stdout: {cp.stdout}\nstderr: {cp.stderr}"
        )
    return cp


@pytest.fixture(scope="module")
def web(cluster: EmbeddedBackend) -> Iterator[list[dict[str, Any]]]:
    with MarathonClient(cluster.endpoints()["marathon"]) as m:
        _, dep = m.create_app(
            {
                "id": "/prod/web",
                "cmd": HTTP_CMD,
                "cpus": 0.1,
                "mem": 32,
                "instances": 2,
                "portDefinitions": [{"port": 0, "name": "http"}],
            }
        )
        if dep:
            m.wait_for_deployment(dep, timeout=60)
        tasks = wait_until(
            lambda: (
                (ts := m.list_tasks("/prod/web"))
                and len(ts) == 2
                and all(t["state"] == "TASK_RUNNING" for t in ts)
                and ts
            ),
            60,
            desc="2 running tasks",
        )
        yield tasks


def dns_json(cluster: EmbeddedBackend, *args: str) -> list[dict[str, Any]]:
    return list(json.loads(pg(cluster, "dns", *args, "--json").stdout))


def dns_json_once_known(cluster: EmbeddedBackend, *args: str) -> list[dict[str, Any]]:
    """The JSON answer, or [] while the name is unknown (the DNS refreshes every 1.2 s)."""
    cp = pg(cluster, "dns", *args, "--json", check=None)
    if cp.returncode == 1 and "NXDOMAIN" in cp.stderr:
        return []
    assert cp.returncode == 0, cp.stderr
    return list(json.loads(cp.stdout))


def test_a_answers_every_task_host(cluster: EmbeddedBackend, web: list[dict[str, Any]]) -> None:
    """`playground dns web-prod.marathon` (domain added) answers each task's host, in JSON and text."""
    hosts = sorted(t["host"] for t in web)
    got = wait_until(
        lambda: (
            (rows := dns_json_once_known(cluster, "web-prod.marathon"))
            and sorted(r["value"] for r in rows) == hosts
            and rows
        ),
        15,
        desc="A answers for the two tasks",
    )
    assert {(r["name"], r["type"], r["ttl"]) for r in got} == {
        ("web-prod.marathon.mesos.", "A", 60)
    }
    text = pg(cluster, "dns", "web-prod.marathon.mesos").stdout.splitlines()
    assert len(text) == 2
    for line in text:
        name, ttl, rtype, value = line.split()
        assert (name, ttl, rtype) == ("web-prod.marathon.mesos.", "60", "A")
        assert value in hosts


def test_srv_is_the_default_for_underscore_names(
    cluster: EmbeddedBackend, web: list[dict[str, Any]]
) -> None:
    """A name starting with `_` asks for SRV: port, target and the target's address per task."""
    want = sorted((t["host"], t["ports"][0]) for t in web)
    rows = dns_json(cluster, "_web-prod._tcp.marathon")
    assert sorted((r["address"], r["port"]) for r in rows) == want
    assert {(r["type"], r["priority"], r["weight"]) for r in rows} == {("SRV", 0, 1)}
    assert all(r["target"].startswith("web-prod-") for r in rows)
    text = pg(cluster, "dns", "_http._web-prod._tcp.marathon.mesos.", "--type", "SRV").stdout
    for host, port in want:
        assert f" {port} " in text and f"({host})" in text


def test_leader_and_tcp(cluster: EmbeddedBackend) -> None:
    """leader.mesos over TCP is the leading master's address."""
    master_host = cluster.endpoints()["master"].split("//", 1)[1].rsplit(":", 1)[0]
    rows = dns_json(cluster, "leader", "--tcp")
    assert [(r["name"], r["value"]) for r in rows] == [("leader.mesos.", master_host)]


def test_unknown_name_exits_1_with_nxdomain(cluster: EmbeddedBackend) -> None:
    """An unknown name exits 1, says NXDOMAIN and hints at the naming scheme."""
    cp = pg(cluster, "dns", "nope.marathon", check=1)
    assert cp.stdout == ""
    assert "error: nope.marathon.mesos.: no such name in the cluster's DNS (NXDOMAIN)" in cp.stderr
    assert "hint: mesos-dns names look like <task>.<framework>.mesos" in cp.stderr


def test_names_outside_the_domain_are_refused(cluster: EmbeddedBackend) -> None:
    """A fully qualified name outside .mesos exits 1: the DNS refuses it, nothing is forwarded."""
    cp = pg(cluster, "dns", "example.com.", check=1)
    assert "example.com.: refused (REFUSED)" in cp.stderr


def test_status_shows_the_dns_endpoints(cluster: EmbeddedBackend) -> None:
    """`status --json` has endpoints.dns and dns_http; the text output lists them."""
    st = json.loads(pg(cluster, "status", "--json").stdout)
    master_host = st["endpoints"]["master"].split("//", 1)[1].rsplit(":", 1)[0]
    assert st["endpoints"]["dns"] == f"{master_host}:8053"
    assert st["endpoints"]["dns_http"] == f"http://{master_host}:8123"
    text = pg(cluster, "status").stdout
    assert f"dns          {master_host}:8053" in text
    assert f"dns_http     http://{master_host}:8123" in text


def test_vips_lists_a_named_vip_and_dns_resolves_it(cluster: EmbeddedBackend) -> None:
    """`playground vips` shows a VIP_0 label's name, address and backends; `playground dns`
    answers the VIP's name with that address; the address balances across the tasks."""
    with MarathonClient(cluster.endpoints()["marathon"]) as m:
        _, dep = m.create_app(
            {
                "id": "/cli/vip",
                "cmd": HTTP_CMD,
                "cpus": 0.1,
                "mem": 32,
                "instances": 2,
                "portDefinitions": [{"port": 0, "labels": {"VIP_0": "/cli/vip:8000"}}],
            }
        )
        if dep:
            m.wait_for_deployment(dep, timeout=60)
        tasks = wait_until(
            lambda: (
                (ts := m.list_tasks("/cli/vip"))
                and len(ts) == 2
                and all(t["state"] == "TASK_RUNNING" for t in ts)
                and ts
            ),
            60,
            desc="2 running tasks",
        )
    want = sorted((t["host"], t["ports"][0]) for t in tasks)

    def the_vip() -> dict[str, Any] | None:
        data = json.loads(pg(cluster, "vips", "--json").stdout)
        vip = next((v for v in data["vips"] if v["vip"] == "/clivip:8000"), None)
        if vip and sorted((b["host"], b["port"]) for b in vip["backends"]) == want:
            return vip
        return None

    vip = wait_until(the_vip, 10, desc="the VIP with both tasks")
    assert (
        vip["fqdn"] == "clivip.marathon.l4lb.thisdcos.directory" and vip["label"] == "/cli/vip:8000"
    )
    host = vip["address"].rsplit(":", 1)[0]
    rows = dns_json(cluster, "clivip.marathon.l4lb.thisdcos.directory")
    assert [(r["type"], r["value"]) for r in rows] == [("A", host)]
    text = pg(cluster, "vips").stdout
    assert (
        f"/cli/vip:8000  clivip.marathon.l4lb.thisdcos.directory:8000  at {vip['address']}" in text
    )
    assert all(f"-> {h}:{p}" in text for h, p in want)
    for t in tasks:  # a task may still be starting its web server
        wait_until(lambda t=t: httpx.get(f"http://{t['host']}:{t['ports'][0]}/", timeout=2),
                   10, desc="the task answering")  # fmt: skip
    for _ in range(4):
        assert httpx.get(f"http://{vip['address']}/", timeout=5).status_code == 200
    after = json.loads(pg(cluster, "vips", "--json").stdout)
    (v,) = [v for v in after["vips"] if v["vip"] == "/clivip:8000"]
    assert [b["connections"] for b in v["backends"]] == [2, 2]
