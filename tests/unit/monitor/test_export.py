"""`monitoring export`: prometheus.yml and rules.yml a real Prometheus loads (promtool checks both)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from playground.cluster import addresses, topology
from playground.cluster.statedir import StateDir
from playground.monitor import export as ex
from playground.monitor import rules as rules_mod


@pytest.fixture
def state(tmp_path: Path) -> StateDir:
    """A cluster record (no processes) of the default topology."""
    topo = topology.load("default")
    st = StateDir(tmp_path / "state")
    st.write(
        {
            "cluster_id": "x",
            "name": topo.name,
            "topology": topo.raw,
            "time_scale": 10.0,
            "addresses": addresses.to_json(addresses.plan(topo, "per-ip", 7)),
            "nodes": {n.name: {"role": n.role} for n in topo.nodes},
        }
    )
    return st


def test_export_writes_targets_and_rules(state: StateDir, tmp_path: Path) -> None:
    """prometheus.yml scrapes the monitor (honor_labels) and Marathon; rules.yml has no kit keys."""
    rules_mod.set_remediation(rules_mod.ensure_rules_file(state.root), "MarathonDown", True)
    result = ex.export(state.root, tmp_path / "out", check=False)
    assert [f.name for f in result.files] == ["prometheus.yml", "rules.yml"]
    config = yaml.safe_load((tmp_path / "out" / "prometheus.yml").read_text())
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    assert jobs["playground-monitor"]["honor_labels"] is True
    assert jobs["playground-monitor"]["static_configs"][0]["targets"] == ["127.77.7.5:9090"]
    assert jobs["marathon-direct"]["metrics_path"] == "/metrics/prometheus"
    assert jobs["marathon-direct"]["static_configs"][0]["targets"] == ["127.77.7.3:8080"]
    assert config["rule_files"] == ["rules.yml"]
    exported = (tmp_path / "out" / "rules.yml").read_text()
    assert "remediation" not in yaml.safe_load(exported).__repr__()
    names = {r.name for r in rules_mod.load_text(exported)}
    assert names == {r.name for r in rules_mod.load(rules_mod.shipped_path())}


def test_export_refuses_a_bad_rules_file(state: StateDir, tmp_path: Path) -> None:
    """A rules file the monitor rejects is not exported."""
    rules_mod.ensure_rules_file(state.root).write_text("groups: [")
    with pytest.raises(rules_mod.RuleFileError, match="not valid YAML"):
        ex.export(state.root, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(
    shutil.which("promtool") is None, reason="promtool is not installed (Debian: prometheus)"
)
def test_promtool_accepts_the_export(state: StateDir, tmp_path: Path) -> None:
    """promtool check rules and check config both pass on the export."""
    result = ex.export(state.root, tmp_path / "out")
    assert [c.command[1:3] for c in result.checks] == [["check", "rules"], ["check", "config"]]
    assert result.ok, [c.output for c in result.checks]
    assert "SUCCESS: 12 rules found" in result.checks[0].output


@pytest.mark.skipif(
    shutil.which("promtool") is None, reason="promtool is not installed (Debian: prometheus)"
)
def test_promtool_rejects_what_prometheus_would(state: StateDir, tmp_path: Path) -> None:
    """The check is real: a rule file with the kit's key left in fails promtool (strict keys)."""
    f = tmp_path / "kit.yml"
    shutil.copy(rules_mod.shipped_path(), f)
    import subprocess

    cp = subprocess.run(
        ["promtool", "check", "rules", str(f)], capture_output=True, text=True, check=False
    )
    assert cp.returncode != 0 and "remediation" in cp.stdout + cp.stderr
