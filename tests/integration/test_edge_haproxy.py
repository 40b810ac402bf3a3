"""The edge on real HAProxy (``--edge-engine haproxy``): it serves, reloads on change and
reports HAProxy's own stats. Needs Debian's ``haproxy`` (``.ci/run`` installs it)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest

from playground.backends import EmbeddedBackend
from playground.client.edge import EdgeClient
from tests.conftest import _cluster, playground_cmd
from tests.support.marathon_http import Marathon, app_def, wait_until

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("haproxy") is None, reason="Debian's haproxy is not installed"),
]


@pytest.fixture(scope="module")
def hcluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBackend]:
    gen = _cluster(tmp_path_factory, "default", 50.0)
    backend = next(gen)
    try:
        cp = subprocess.run(
            [*playground_cmd(), "up", "--state-dir", str(backend.state_dir), "--edge-engine", "haproxy"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert cp.returncode == 0, cp.stdout + cp.stderr
        assert "restart the edge" in cp.stdout + cp.stderr
        backend.crash("edge-1")
        backend.start("edge-1")
        yield backend
    finally:
        gen.close()


def test_haproxy_serves_reloads_and_reports(hcluster: EmbeddedBackend) -> None:
    ep = hcluster.endpoints()
    m = Marathon(str(ep["marathon"]))
    edge = EdgeClient(str(ep["edge_stats"]))
    try:
        assert edge.status()["engine"] == "haproxy"
        app = app_def(
            "/hap/web", f"{sys.executable} -m playground workload web", 2, mem=128,
            portDefinitions=[{"port": 0}], labels={"HAPROXY_GROUP": "external", "HAPROXY_0_VHOST": "hap.test"},
        )  # fmt: skip
        tasks = m.deploy(app)
        for t in tasks:
            wait_until(
                lambda t=t: (
                    httpx.get(f"http://{t['host']}:{t['ports'][0]}/", timeout=2).status_code == 200
                ),
                10,
            )
        port = m.app("/hap/web")["portDefinitions"][0]["port"]
        url = f"http://{ep['edge']}:{port}/"
        seen = wait_until(lambda: {httpx.get(url, timeout=2).text.strip() for _ in range(6)} == {t["id"] for t in tasks},
                          10, desc="HAProxy balancing over both tasks")  # fmt: skip
        assert seen
        r = httpx.get(ep["edge_http"], headers={"Host": "hap.test"}, timeout=2)
        assert r.status_code == 200 and r.text.strip() in {t["id"] for t in tasks}
        rows = [r for r in edge.stats() if r["pxname"] == f"hap_web_{port}"]
        assert {r["svname"] for r in rows} >= {"FRONTEND", "BACKEND"} and len(rows) == 4
        assert "backend hap_web_" in edge.config() and "bind " + ep["edge"] in edge.config()
        # scale to 1: HAProxy reloads and only the survivor answers
        m.put("/v2/apps/hap/web", {"instances": 1}, params={"force": "true"})
        survivor = wait_until(
            lambda: len(m.tasks("/hap/web")) == 1 and m.tasks("/hap/web")[0]["id"], 20
        )
        wait_until(lambda: {httpx.get(url, timeout=2).text.strip() for _ in range(4)} == {survivor},
                   10, desc="HAProxy reloaded without the removed task")  # fmt: skip
        assert edge.status()["reload_errors"] == 0
    finally:
        m.close()
        edge.close()


def test_route_faults_are_refused_on_the_haproxy_engine(hcluster: EmbeddedBackend) -> None:
    """break --route and the edge's toxics API both say to use the proxy engine."""
    ep = hcluster.endpoints()
    cp = subprocess.run(
        [*playground_cmd(), "break", "--route", "/hap/web", "--latency", "100ms",
         "--state-dir", str(hcluster.state_dir)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert cp.returncode == 1, cp.stdout + cp.stderr
    assert "route faults need the kit's proxy engine" in cp.stderr
    assert "default `proxy` engine" in cp.stderr
    r = httpx.post(
        f"{ep['edge_stats']}/v1/toxics",
        json={"type": "latency", "attributes": {"latency": 100}, "route": {"app": "/hap/web"}},
    )
    assert r.status_code == 409 and "proxy engine" in r.json()["message"]
