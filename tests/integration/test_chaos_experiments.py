"""The shipped experiments against a real ``default`` cluster that also runs an unrelated app.

Each experiment deploys, breaks, judges and removes its own probe app; the unrelated app
must neither decide the outcome nor be left at a different instance count. Experiments run
in this process through chaostoolkit-lib (``playground.chaos.runner``), as `playground
chaos run` runs them. Time scale 50: recovery bounds of 300 cluster seconds are 6 s of wall
time plus 5 s of grace, and a passing experiment takes 5 to 8 s.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from playground.backends import EmbeddedBackend
from playground.chaos import catalogue, faults, runner
from playground.chaos.faults import Faults
from tests.support.marathon_http import HTTP_CMD, Marathon, app_def, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

UNRELATED = "/unrelated/web"

DEFAULT_TOPOLOGY = [
    "CrashOneNode",
    "RebootOneNode",
    "PartitionOneNode",
    "ZoneOutage",
    "AppTasksDown",
    "AppScaleUpAndDown",
    "MaintenanceDrain",
    "MarathonRestart",
    "EdgeRouteLatency",
]


def unavailable(name: str) -> str | None:
    """Why the kit cannot run ``name`` yet (its fault is not there), else None."""
    if name == "PartitionOneNode" and "partition" not in faults.KINDS:
        return "the kit has no partition fault yet"
    if name == "MaintenanceDrain" and not hasattr(Faults, "drain"):
        return "the kit has no drain fault yet"
    return None


@pytest.fixture(scope="module")
def marathon(cluster: EmbeddedBackend) -> Iterator[Marathon]:
    m = Marathon(str(cluster.endpoints()["marathon"]))
    wait_until(lambda: m.info().get("frameworkId"), 30, desc="Marathon registered")
    m.deploy(app_def(UNRELATED, HTTP_CMD, 2, portDefinitions=[{"port": 0}]))
    yield m
    m.close()


def check_clean(cluster: EmbeddedBackend, m: Marathon, app_id: str) -> None:
    """Nothing left broken, the probe app removed, the unrelated app at its count."""
    assert Faults(cluster).active() == []
    assert all(n.state == "running" for n in cluster.nodes())
    assert m.get(f"/v2/apps{app_id}").status_code == 404
    m.wait_running(UNRELATED, 2, timeout=20)


@pytest.mark.parametrize("name", DEFAULT_TOPOLOGY)
def test_shipped_experiment_passes_on_a_healthy_cluster(
    cluster: EmbeddedBackend, marathon: Marathon, name: str
) -> None:
    if reason := unavailable(name):
        pytest.skip(reason)
    result = runner.run(catalogue.load(name), name, cluster.state_dir)
    assert result.ok, "\n".join(runner.summary(result))
    j = result.journal
    assert j["status"] == "completed" and not j["deviated"]
    assert j["steady_states"]["before"]["steady_state_met"]
    assert j["steady_states"]["after"]["steady_state_met"]
    assert result.path.is_file() and result.path.parent == cluster.state_dir / "chaos" / "journals"
    assert json.loads(result.path.read_text())["status"] == "completed"
    check_clean(cluster, marathon, j["experiment"]["configuration"]["app_id"])


def test_a_steady_state_that_does_not_hold_before_the_method_fails_and_breaks_nothing(
    cluster: EmbeddedBackend, marathon: Marathon, tmp_path: Path
) -> None:
    """A probe app that can never run: the run fails before its method, nothing is broken,
    and the rollbacks still remove the probe app (chaostoolkit alone would say 'completed')."""
    exp = copy.deepcopy(catalogue.load("CrashOneNode"))
    exp["title"] = "CrashOneNode with a probe app that cannot be placed"
    exp["configuration"]["app_id"] = "/playground-chaos/cannot-run"
    exp["configuration"]["recovery"] = 10
    exp["controls"][0]["provider"]["arguments"]["constraints"] = [["hostname", "LIKE", "nowhere"]]
    path = tmp_path / "unplaceable.json"
    path.write_text(json.dumps(exp))
    loaded, name = runner.load(str(path))
    before = len(Faults(cluster).all())
    result = runner.run(loaded, name, cluster.state_dir)
    assert not result.ok
    assert result.journal["status"] == "completed"  # what chaostoolkit's exit code would go by
    assert result.reasons[0].startswith("the steady state was not met before the method")
    assert result.journal["run"] == []
    assert len(Faults(cluster).all()) == before
    assert [r["status"] for r in result.journal["rollbacks"]] == ["succeeded", "succeeded"]
    assert result.path.name.endswith("-unplaceable.json") and result.path.is_file()
    check_clean(cluster, marathon, "/playground-chaos/cannot-run")


def test_failover_experiments_refuse_a_single_master_cluster_at_once(
    cluster: EmbeddedBackend, marathon: Marathon
) -> None:
    """LeaderFailover on one master: interrupted before anything is deployed, with the reason."""
    result = runner.run(catalogue.load("LeaderFailover"), "LeaderFailover", cluster.state_dir)
    assert not result.ok and result.journal["status"] == "interrupted"
    assert any("needs at least 3 masters" in r and "--topology ha" in r for r in result.reasons)
    assert result.journal["steady_states"]["before"] is None and result.journal["run"] == []
    assert marathon.get("/v2/apps/playground-chaos/leader-failover").status_code == 404
    assert [n.state for n in cluster.nodes() if n.role == "master"] == ["running"]
