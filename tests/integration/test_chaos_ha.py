"""LeaderFailover and QuorumLoss, the experiments that need three masters, on the ``ha`` cluster."""

from __future__ import annotations

import pytest

from playground.backends import EmbeddedBackend
from playground.chaos import catalogue, runner
from playground.chaos.faults import Faults
from tests.support.marathon_http import Marathon, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.mark.parametrize("name", ["LeaderFailover", "QuorumLoss"])
def test_master_experiments_pass_on_ha(ha_cluster: EmbeddedBackend, name: str) -> None:
    m = Marathon(str(ha_cluster.endpoints()["marathon"]))
    try:
        wait_until(lambda: m.info().get("frameworkId"), 30, desc="Marathon registered")
        result = runner.run(catalogue.load(name), name, ha_cluster.state_dir)
        assert result.ok, "\n".join(runner.summary(result))
        assert result.journal["steady_states"]["after"]["steady_state_met"]
        assert Faults(ha_cluster).active() == []
        assert all(n.state == "running" for n in ha_cluster.nodes())
        app_id = result.journal["experiment"]["configuration"]["app_id"]
        assert m.get(f"/v2/apps{app_id}").status_code == 404
    finally:
        m.close()
