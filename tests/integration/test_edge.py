"""The edge (``edge-1``, marathon-lb's role) against a real embedded cluster.

An exposed 3-instance app answers on its service port and on its vhost, requests spread
over the instances, a killed or unhealthy task stops getting traffic within a second of
Marathon knowing it, the edge dies with its public agent and comes back with it, and
malformed or conflicting labels are reported, never silently applied.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from playground.backends import EmbeddedBackend
from playground.client.edge import EdgeClient
from tests.support.marathon_http import Marathon, answering, app_def, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

WEB_CMD = f"{sys.executable} -m playground workload web"


@pytest.fixture(scope="module")
def marathon(cluster: EmbeddedBackend) -> Iterator[Marathon]:
    m = Marathon(str(cluster.endpoints()["marathon"]))
    wait_until(lambda: m.info().get("frameworkId"), 30, desc="Marathon registered with Mesos")
    yield m
    m.close()


@pytest.fixture()
def m(marathon: Marathon) -> Iterator[Marathon]:
    marathon.cleanup()
    yield marathon
    marathon.cleanup()


@pytest.fixture()
def edge(cluster: EmbeddedBackend) -> Iterator[EdgeClient]:
    with EdgeClient(str(cluster.endpoints()["edge_stats"])) as client:
        yield client


def web_app(app_id: str, instances: int = 3, **labels: str) -> dict[str, Any]:
    return app_def(
        app_id,
        WEB_CMD,
        instances,
        portDefinitions=[{"port": 0, "name": "http"}],
        labels=dict(labels),
        mem=128,  # a Python web server: 32 MB would be over its limit, and killed
    )


def route_of(edge: EdgeClient, app_id: str) -> dict[str, Any] | None:
    return next((r for r in edge.routes() if r["app"] == app_id), None)


def live(route: dict[str, Any] | None) -> set[tuple[str, int]]:
    if route is None:
        return set()
    return {(b["host"], b["port"]) for b in route["backends"] if b["healthy"]}


def task_ids(responses: list[str]) -> Counter[str]:
    return Counter(r.strip() for r in responses)


def test_status_names_the_edge_endpoints(cluster: EmbeddedBackend) -> None:
    ep = cluster.endpoints()
    agent = next(n for n in cluster.nodes() if n.name == "public-agent-1")
    assert ep["edge"] == agent.address.split(":")[0]
    assert ep["edge_http"].startswith(f"http://{ep['edge']}:")
    assert ep["edge_stats"] == f"http://{ep['edge']}:9090"
    r = httpx.get(ep["edge_stats"] + "/_haproxy_health_check")
    assert r.status_code == 200


def test_an_exposed_app_answers_on_its_service_port_and_vhost_across_instances(
    m: Marathon, edge: EdgeClient, cluster: EmbeddedBackend
) -> None:
    tasks = answering(
        m.deploy(web_app("/shop/web", 3, HAPROXY_GROUP="external", HAPROXY_0_VHOST="shop.test"))
    )
    want = {(t["host"], t["ports"][0]) for t in tasks}
    route = wait_until(lambda: live(route_of(edge, "/shop/web")) == want and route_of(edge, "/shop/web"),
                       5, desc="the edge serving all three tasks")  # fmt: skip
    app = m.app("/shop/web")
    assert route["service_port"] == app["portDefinitions"][0]["port"]
    assert route["backend"] == f"shop_web_{route['service_port']}"
    assert route["vhost"] == "shop.test" and route["mode"] == "http"
    host = cluster.endpoints()["edge"]
    by_port = [
        httpx.get(f"http://{host}:{route['service_port']}/", timeout=5).text for _ in range(9)
    ]
    assert task_ids(by_port) == Counter({t["id"]: 3 for t in tasks})
    http = cluster.endpoints()["edge_http"]
    by_vhost = [httpx.get(http, headers={"Host": "shop.test"}, timeout=5).text for _ in range(6)]
    assert set(task_ids(by_vhost)) == {t["id"] for t in tasks}
    assert httpx.get(http, headers={"Host": "nope.test"}, timeout=5).status_code == 503
    assert "shop.test shop_web_" in edge.vhost_map()
    assert f"/shop/web shop_web_{route['service_port']}" in edge.app_map()
    rows = [
        r
        for r in edge.stats()
        if r["pxname"] == route["backend"] and r["svname"] not in ("FRONTEND", "BACKEND")
    ]
    assert len(rows) == 3 and all(r["status"] == "UP" for r in rows)
    assert sum(int(r["stot"]) for r in rows) >= 15


class Load:
    """A client sending requests one after another through the edge, recording outcomes."""

    def __init__(self, url: str, headers: dict[str, str] | None = None) -> None:
        self.url, self.headers = url, headers or {}
        self.ok: list[tuple[float, str]] = []
        self.failed: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=5, headers={"Connection": "close", **self.headers}) as c:
            while not self._stop.is_set():
                t = time.monotonic()
                try:
                    r = c.get(self.url)
                    if r.status_code == 200:
                        self.ok.append((t, r.text.strip()))
                    else:
                        self.failed.append((t, f"{r.status_code}"))
                except httpx.HTTPError as exc:
                    self.failed.append((t, repr(exc)))
                time.sleep(0.01)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


def test_a_killed_task_stops_getting_traffic_within_a_second(
    m: Marathon, edge: EdgeClient, cluster: EmbeddedBackend
) -> None:
    tasks = answering(m.deploy(web_app("/kill/web", 3, HAPROXY_GROUP="external")))
    wait_until(lambda: len(live(route_of(edge, "/kill/web"))) == 3, 5, desc="3 live backends")
    port = route_of(edge, "/kill/web")["service_port"]
    victim = tasks[0]
    with Load(f"http://{cluster.endpoints()['edge']}:{port}/") as load:
        time.sleep(0.5)
        killed_at = time.monotonic()
        r = m.delete(f"/v2/apps/kill/web/tasks/{victim['id']}", params={"scale": "true"})
        assert r.status_code == 200, r.text
        wait_until(
            lambda: (victim["host"], victim["ports"][0]) not in live(route_of(edge, "/kill/web")),
            5, interval=0.02, desc="the killed task off the edge",
        )  # fmt: skip
        gone_after = time.monotonic() - killed_at
        time.sleep(1.0)
    assert gone_after <= 1.0, f"the edge dropped the killed task after {gone_after:.2f}s"
    after = [tid for t, tid in load.ok if t > killed_at + 1.0]
    assert after and victim["id"] not in after
    assert len(load.failed) <= 1, load.failed  # at most the request in flight
    assert len(load.ok) > 50


def test_an_unhealthy_task_stops_getting_traffic(
    m: Marathon, edge: EdgeClient, cluster: EmbeddedBackend, tmp_path: Path
) -> None:
    check = {
        "protocol": "COMMAND",
        "command": {"value": f"test ! -e {tmp_path}/sick-$MESOS_TASK_ID"},
        "gracePeriodSeconds": 1,
        "intervalSeconds": 1,
        "timeoutSeconds": 1,
        "maxConsecutiveFailures": 1000,  # keep the sick task (0 would kill at once)
    }
    app = web_app("/sick/web", 2, HAPROXY_GROUP="external")
    app["healthChecks"] = [check]
    tasks = m.deploy(app, healthy=True)
    wait_until(lambda: len(live(route_of(edge, "/sick/web"))) == 2, 5, desc="2 healthy backends")
    victim = tasks[0]
    (tmp_path / f"sick-{victim['id']}").touch()

    def marathon_says_unhealthy() -> float | None:
        t = next(t for t in m.tasks("/sick/web") if t["id"] == victim["id"])
        res = t.get("healthCheckResults") or []
        return time.monotonic() if res and not res[0]["alive"] else None

    seen_unhealthy = wait_until(
        marathon_says_unhealthy, 15, interval=0.02, desc="Marathon: unhealthy"
    )
    wait_until(
        lambda: (victim["host"], victim["ports"][0]) not in live(route_of(edge, "/sick/web")),
        5, interval=0.02, desc="the unhealthy task off the edge",
    )  # fmt: skip
    assert time.monotonic() - seen_unhealthy <= 1.0
    route = route_of(edge, "/sick/web")
    flags = {(b["host"], b["port"]): b["healthy"] for b in route["backends"]}
    assert flags[(victim["host"], victim["ports"][0])] is False  # still listed, no traffic
    port = route["service_port"]
    answers = {
        httpx.get(f"http://{cluster.endpoints()['edge']}:{port}/", timeout=5).text.strip()
        for _ in range(6)
    }
    assert answers == {tasks[1]["id"]}


def test_malformed_and_conflicting_labels_are_reported_not_applied(
    m: Marathon, edge: EdgeClient
) -> None:
    m.deploy(web_app("/a/first", 1, HAPROXY_GROUP="external", HAPROXY_0_PORT="10555"))
    m.deploy(web_app("/b/second", 1, HAPROXY_GROUP="external", HAPROXY_0_PORT="10555"))
    m.deploy(web_app("/c/bad", 1, HAPROXY_GROUP="external", HAPROXY_0_BALANCE="fastest"))

    def notices() -> list[dict[str, Any]]:
        return edge.status()["notices"]

    wait_until(lambda: any(n["kind"] == "conflict" for n in notices()), 5, desc="a conflict notice")
    conflict = next(n for n in notices() if n["kind"] == "conflict")
    assert "/a/first" in conflict["message"] or conflict["app"] == "/a/first"
    assert "10555" in conflict["message"]
    served = {r["app"]: r for r in edge.routes()}
    assert served["/a/first"]["service_port"] == 10555
    assert "/b/second" not in served or served["/b/second"]["service_port"] != 10555
    bad = wait_until(lambda: [n for n in notices() if n["app"] == "/c/bad"], 5, desc="malformed")
    assert bad[0]["kind"] == "malformed-label" and "HAPROXY_0_BALANCE" in (
        bad[0]["label"] or bad[0]["message"]
    )


def test_unexposed_apps_and_other_groups_are_not_served(m: Marathon, edge: EdgeClient) -> None:
    m.deploy(web_app("/internal/only", 1, HAPROXY_GROUP="internal"))
    m.deploy(web_app("/plain/app", 1))
    m.deploy(web_app("/ext/app", 1, HAPROXY_GROUP="external"))
    wait_until(lambda: route_of(edge, "/ext/app"), 5, desc="the external app served")
    apps = {r["app"] for r in edge.routes()}
    assert "/internal/only" not in apps and "/plain/app" not in apps


def test_the_edge_goes_down_with_its_public_agent_and_returns_with_it(
    m: Marathon, edge: EdgeClient, cluster: EmbeddedBackend
) -> None:
    m.deploy(web_app("/crash/web", 2, HAPROXY_GROUP="external"))
    wait_until(lambda: len(live(route_of(edge, "/crash/web"))) == 2, 5, desc="served")
    port = route_of(edge, "/crash/web")["service_port"]
    url = f"http://{cluster.endpoints()['edge']}:{port}/"
    cluster.crash("public-agent-1")
    states = {n.name: n.state for n in cluster.nodes()}
    assert states["edge-1"] != "running" and states["public-agent-1"] != "running"
    with pytest.raises(httpx.ConnectError):
        httpx.get(url, timeout=2)
    cluster.start("public-agent-1")
    assert {n.name: n.state for n in cluster.nodes()}["edge-1"] == "running"
    wait_until(lambda: httpx.get(url, timeout=2).status_code == 200, 10, desc="served again")


def test_blue_green_with_zdd_switches_without_failed_requests(
    m: Marathon, edge: EdgeClient, cluster: EmbeddedBackend, tmp_path: Path
) -> None:
    import json
    import subprocess

    from tests.conftest import playground_cmd

    app = web_app("/bg", 2, HAPROXY_GROUP="external", HAPROXY_DEPLOYMENT_GROUP="bg",
                  HAPROXY_DEPLOYMENT_ALT_PORT="10611")  # fmt: skip
    app["portDefinitions"] = [{"port": 10610}]
    app["healthChecks"] = [{"protocol": "MESOS_HTTP", "path": "/health", "portIndex": 0,
                            "gracePeriodSeconds": 5, "intervalSeconds": 1, "timeoutSeconds": 1}]  # fmt: skip
    path = tmp_path / "bg.json"
    path.write_text(json.dumps(app))

    def zdd(*extra: str) -> dict[str, Any]:
        cp = subprocess.run(
            [*playground_cmd(), "zdd", str(path), *extra, "--json", "--state-dir", str(cluster.state_dir)],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert cp.returncode == 0, cp.stdout + cp.stderr
        return json.loads(cp.stdout)

    first = zdd()
    assert first["new_app"] == "/bg-blue" and first["old_app"] is None
    blue = {t["id"] for t in answering(m.tasks("/bg-blue"))}
    url = f"http://{cluster.endpoints()['edge']}:10610/"
    wait_until(
        lambda: {httpx.get(url, timeout=2).text.strip() for _ in range(6)} == blue,
        10,
        desc="blue served",
    )
    with Load(url) as load:
        time.sleep(0.3)
        second = zdd()
        time.sleep(0.5)
    assert second == {"group": "bg", "new_app": "/bg-green", "old_app": "/bg-blue", "split": False}
    assert [a["id"] for a in m.apps()] == ["/bg-green"]
    assert m.app("/bg-green")["portDefinitions"][0]["port"] == 10611  # the alternate port
    green = {t["id"] for t in m.tasks("/bg-green")}
    assert not load.failed, load.failed[:5]
    assert {tid for _t, tid in load.ok} >= green | blue  # both colours answered on the way
    assert {httpx.get(url, timeout=2).text.strip() for _ in range(6)} == green
    # a split deployment: one new instance beside the two old ones, then --complete
    split = zdd("--new-instances", "1")
    assert split["new_app"] == "/bg-blue" and split["split"] is True
    route = route_of(edge, "/bg")
    assert sum(b["draining"] for b in route["backends"]) <= 1
    with pytest.raises(AssertionError):
        zdd()  # a split is in progress: refused
    done = zdd("--complete")
    assert done["old_app"] == "/bg-green" and [a["id"] for a in m.apps()] == ["/bg-blue"]
