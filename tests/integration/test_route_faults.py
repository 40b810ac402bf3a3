"""Route faults against a real embedded cluster, through the `playground` command.

An exposed web app gets latency, a reset, loss and a bandwidth limit on its edge route:
what a client measures through the edge changes by about that much, `playground faults`
lists the fault, `heal` (or its duration) takes it away, and an edge that restarts with
its public agent applies what is still active and nothing that was healed meanwhile.
Margins are wide: a 2-core machine running other tests is noisy.
"""

from __future__ import annotations

import json
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from playground.backends import EmbeddedBackend
from playground.client.edge import EdgeClient
from tests.conftest import playground_cmd
from tests.support.marathon_http import Marathon, app_def, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

APP = "/rf/web"
WEB_CMD = f"{sys.executable} -m playground workload web"


def pg(cluster: EmbeddedBackend, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    cp = subprocess.run(
        [*playground_cmd(), *args, "--state-dir", str(cluster.state_dir)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    if ok:
        assert cp.returncode == 0, cp.stdout + cp.stderr
    return cp


def pg_json(cluster: EmbeddedBackend, *args: str) -> Any:
    return json.loads(pg(cluster, *args, "--json").stdout)


@pytest.fixture(scope="module")
def served(cluster: EmbeddedBackend) -> Iterator[str]:
    """The base URL of APP (one `web` task) on its service port at the edge."""
    m = Marathon(str(cluster.endpoints()["marathon"]))
    wait_until(lambda: m.info().get("frameworkId"), 30, desc="Marathon registered with Mesos")
    app = app_def(APP, WEB_CMD, 1, portDefinitions=[{"port": 0, "name": "http"}],
                  labels={"HAPROXY_GROUP": "external"}, mem=128)  # fmt: skip
    m.deploy(app)
    with EdgeClient(str(cluster.endpoints()["edge_stats"])) as edge:
        route = wait_until(
            lambda: next((r for r in edge.routes() if r["app"] == APP and r["backends"]), None),
            10, desc="the edge serving the app",
        )  # fmt: skip
    url = f"http://{cluster.endpoints()['edge']}:{route['service_port']}"
    wait_until(lambda: httpx.get(url + "/", timeout=2).status_code == 200, 10, desc="answering")
    yield url
    m.close()


@pytest.fixture()
def edge(cluster: EmbeddedBackend) -> Iterator[EdgeClient]:
    with EdgeClient(str(cluster.endpoints()["edge_stats"])) as client:
        yield client


@pytest.fixture(autouse=True)
def _healed(cluster: EmbeddedBackend) -> Iterator[None]:
    yield
    pg(cluster, "heal", "--all")


def seconds(url: str) -> float:
    """One request on a new connection, timed."""
    start = time.monotonic()
    r = httpx.get(url, timeout=10, headers={"Connection": "close"})
    r.raise_for_status()
    return time.monotonic() - start


def median_seconds(url: str, n: int = 7) -> float:
    return statistics.median(seconds(url) for _ in range(n))


def test_latency_raises_request_latency_by_about_that_much_until_healed(
    cluster: EmbeddedBackend, served: str, edge: EdgeClient
) -> None:
    base = median_seconds(served + "/")
    fault = pg_json(cluster, "break", "--route", APP, "--latency", "300ms")
    assert (fault["kind"], fault["target"], fault["revert_at"]) == ("route", APP, None)
    assert fault["route"]["toxics"][0]["attributes"] == {"latency": 300.0, "jitter": 0}
    slowed = median_seconds(served + "/")
    assert 0.25 <= slowed - base <= 0.7, (base, slowed)
    # visible while active: faults, the route, the status, the metrics
    assert [f["id"] for f in pg_json(cluster, "faults")] == [fault["id"]]
    assert "latency 300ms (downstream)" in pg(cluster, "faults").stdout
    route = next(r for r in edge.routes() if r["app"] == APP)
    assert [t["name"] for t in route["toxics"]] == [f"{fault['id']}-latency"]
    assert [t["fault"] for t in edge.status()["toxics"]] == [fault["id"]]
    assert f"toxic {fault['id']}-latency: latency downstream" in pg(cluster, "routes").stdout
    metrics = httpx.get(str(cluster.endpoints()["edge_stats"]) + "/metrics").text
    assert f'playground_edge_toxic_active{{toxic="{fault["id"]}-latency"' in metrics
    chunks = next(
        line for line in metrics.splitlines()
        if line.startswith(f'playground_edge_toxic_chunks_total{{toxic="{fault["id"]}-latency"}}')
    )  # fmt: skip
    assert int(chunks.rsplit(" ", 1)[1]) >= 7
    healed = pg_json(cluster, "heal", APP)
    assert [f["id"] for f in healed] == [fault["id"]] and healed[0]["reverted_at"]
    assert pg_json(cluster, "faults") == []
    assert edge.routes() and next(r for r in edge.routes() if r["app"] == APP)["toxics"] == []
    assert median_seconds(served + "/") < base + 0.15


def test_reset_resets_connections(cluster: EmbeddedBackend, served: str) -> None:
    pg(cluster, "break", "--route", APP, "--reset")
    host, port = served.removeprefix("http://").split(":")
    for _ in range(3):
        with socket.create_connection((host, int(port)), timeout=5) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            with pytest.raises(ConnectionResetError):
                s.recv(65536)
    pg(cluster, "heal", APP)
    assert httpx.get(served + "/", timeout=5).status_code == 200


def test_loss_fails_about_that_fraction_of_requests(cluster: EmbeddedBackend, served: str) -> None:
    pg(cluster, "break", "--route", APP, "--loss", "50%")
    failed = 0
    for _ in range(40):
        try:
            httpx.get(served + "/", timeout=5, headers={"Connection": "close"}).raise_for_status()
        except httpx.HTTPError:
            failed += 1
    assert 8 <= failed <= 32, failed  # 20 expected; binomial spread is about 3


def test_bandwidth_slows_a_large_response_to_about_the_rate(
    cluster: EmbeddedBackend, served: str
) -> None:
    url = served + "/bytes/300000"
    assert seconds(url) < 1.0
    pg(cluster, "break", "--route", APP, "--bandwidth", "100KB")
    took = seconds(url)
    assert 2.4 <= took <= 5.0, took  # 300 KB at 100 KB/s: 3 s


def test_a_timed_route_fault_reverts_itself(
    cluster: EmbeddedBackend, served: str, edge: EdgeClient
) -> None:
    fault = pg_json(cluster, "break", "--route", APP, "--latency", "300ms", "--for", "2")
    assert fault["revert_at"] is not None
    assert [f["id"] for f in pg_json(cluster, "faults")] == [fault["id"]]
    assert seconds(served + "/") >= 0.25

    def reverted() -> bool:
        # read the file, not `faults`: that command would revert what is due itself
        data = json.loads((cluster.state_dir / "faults.json").read_text())
        return any(f["id"] == fault["id"] and f["reverted_at"] for f in data["faults"])

    wait_until(reverted, 10, interval=0.2, desc="the reverter reverting the fault")
    assert pg_json(cluster, "faults") == []
    assert fault["id"] in {f["id"] for f in pg_json(cluster, "faults", "--all")}
    assert edge.toxics() == []
    assert seconds(served + "/") < 0.25


def test_the_edge_reapplies_active_route_faults_after_its_public_agent_restarts(
    cluster: EmbeddedBackend, served: str, edge: EdgeClient
) -> None:
    def back() -> bool:
        return httpx.get(served + "/", timeout=5).status_code == 200

    fault = pg_json(cluster, "break", "--route", APP, "--latency", "300ms")
    cluster.crash("public-agent-1")
    cluster.start("public-agent-1")
    wait_until(back, 20, desc="served again")
    assert [t["fault"] for t in edge.toxics()] == [fault["id"]]
    assert seconds(served + "/") >= 0.25
    # healed while the edge is down: it comes back without the fault
    cluster.crash("public-agent-1")
    assert [f["id"] for f in pg_json(cluster, "heal", APP)] == [fault["id"]]
    cluster.start("public-agent-1")
    wait_until(back, 20, desc="served again")
    assert edge.toxics() == []
    assert seconds(served + "/") < 0.25


def test_bad_route_faults_exit_non_zero_saying_why(
    cluster: EmbeddedBackend, served: str, edge: EdgeClient
) -> None:
    cp = pg(cluster, "break", "--route", "/nope", "--latency", "10ms", ok=False)
    assert cp.returncode == 1 and "the edge serves no route for /nope" in cp.stderr
    assert APP in cp.stderr  # the hint lists the routes
    cp = pg(cluster, "break", "--route", APP, "--loss", "2", ok=False)
    assert cp.returncode == 1 and "loss probability must be above 0 and at most 1" in cp.stderr
    cp = pg(cluster, "break", "--route", APP, "--latency", "soon", ok=False)
    assert cp.returncode == 2 and "'soon' is not a duration" in cp.stderr
    cp = pg(cluster, "break", "agent-1", "--latency", "10ms", ok=False)
    assert cp.returncode == 2 and "applies to --route APP_ID only" in cp.stderr
    assert pg_json(cluster, "faults") == []
    # the edge's own API: Toxiproxy's JSON, an unknown route refused
    toxic = {"type": "latency", "attributes": {"latency": 300}, "route": {"app": "/nope"}}
    with pytest.raises(Exception, match="the edge serves no route /nope"):
        edge.add_toxic(toxic)
    added = edge.add_toxic({**toxic, "route": {"app": APP}})
    assert added["name"] == "rf_web_latency_downstream" and added["fault"] is None
    assert seconds(served + "/") >= 0.25
    edge.remove_toxic(added["name"])
    assert seconds(served + "/") < 0.25
