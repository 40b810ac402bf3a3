"""`playground tickets` and `playground monitoring export|remediation` as a user runs them."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.test_cli import as_json, run

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A ``default`` cluster started with the CLI (time scale 50), shared by this module's tests."""
    root = tmp_path_factory.mktemp("monitor") / "state"
    run("up", "--time-scale", "50", "--state-dir", str(root))
    try:
        yield root
    finally:
        run("destroy", "--yes", "--state-dir", str(root), check=None)


def pg(state: Path, *args: str, check: int | None = 0) -> Any:
    cp = run(*args, "--state-dir", str(state), check=check)
    return as_json(cp) if "--json" in args and check == 0 else cp


def test_no_cluster_is_an_error(tmp_path: Path) -> None:
    """Without a cluster, tickets and export exit 1 with the `playground up` hint."""
    for args in (("tickets",), ("monitoring", "export", "--out", str(tmp_path / "o"))):
        cp = run(*args, "--state-dir", str(tmp_path / "none"), check=1)
        assert "error: no cluster in" in cp.stderr and "playground up" in cp.stderr


def test_status_names_the_monitor(state: Path) -> None:
    """status lists monitor-1 and its endpoint."""
    st = pg(state, "status", "--json")
    assert st["endpoints"]["monitor"].endswith(":9090")
    assert [n["state"] for n in st["nodes"] if n["name"] == "monitor-1"] == ["running"]


def test_tickets_json_follows_a_fault(state: Path) -> None:
    """tickets --json: [] on a healthy cluster; a crashed agent's ticket; --open; the file when the monitor is down."""
    assert pg(state, "tickets", "--json") == []
    assert "no tickets" in pg(state, "tickets").stdout
    pg(state, "break", "agent-1")
    try:
        deadline = time.monotonic() + 30
        while True:
            items = pg(state, "tickets", "--json", "--open")
            if any(i["rule"] == "AgentUnreachable" for i in items):
                break
            assert time.monotonic() < deadline, "no ticket for the crashed agent"
            time.sleep(0.3)
    finally:
        pg(state, "heal", "agent-1")
    # The agent and its storage pool: two alerts, one ticket each, both about agent-1.
    by_rule = {i["rule"]: i for i in items}
    assert set(by_rule) == {"AgentUnreachable", "StoragePoolOffline"}
    assert by_rule["StoragePoolOffline"]["subject"] == "agent-1"
    t = by_rule["AgentUnreachable"]
    assert set(t) == {
        "id",
        "rule",
        "severity",
        "subject",
        "opened_at",
        "detected_after_s",
        "resolved_at",
        "actions",
    }
    assert (t["rule"], t["subject"], t["actions"]) == ("AgentUnreachable", "agent-1", [])
    table = pg(state, "tickets").stdout
    assert "AgentUnreachable" in table and "agent-1" in table
    deadline = time.monotonic() + 30
    while pg(state, "tickets", "--json", "--open"):
        assert time.monotonic() < deadline, "ticket not resolved after heal"
        time.sleep(0.3)
    # The monitor down: the file, and a note saying so on stderr (stdout stays JSON).
    pg(state, "break", "monitor-1")
    try:
        cp = run("tickets", "--json", "--state-dir", str(state))
        assert cp.returncode == 0
        assert sorted(x["id"] for x in as_json(cp)) == sorted(i["id"] for i in items)
        assert "not answering" in cp.stderr and "tickets.json" in cp.stderr
    finally:
        pg(state, "heal", "monitor-1")


def test_monitoring_export(state: Path, tmp_path: Path) -> None:
    """export writes prometheus.yml and rules.yml (checked by promtool when it is installed)."""
    out = tmp_path / "prom"
    result = pg(state, "monitoring", "export", "--out", str(out), "--json")
    assert sorted(Path(f).name for f in result["files"]) == ["prometheus.yml", "rules.yml"]
    config = yaml.safe_load((out / "prometheus.yml").read_text())
    assert config["rule_files"] == ["rules.yml"]
    assert "remediation:" not in (out / "rules.yml").read_text()
    if shutil.which("promtool"):
        assert result["ok"] and len(result["checks"]) == 2
    else:
        assert result["checks"] == [] and result["promtool"] is None
    text = pg(state, "monitoring", "export", "--out", str(out)).stdout
    assert f"wrote {out / 'prometheus.yml'}" in text


def test_monitoring_remediation_switch(state: Path) -> None:
    """remediation RULE on|off edits the cluster's rules file; unknown rules and rules without a policy exit 1."""
    on = pg(state, "monitoring", "remediation", "MarathonDown", "on", "--json")
    assert (on["rule"], on["action"], on["enabled"]) == ("MarathonDown", "heal", True)
    rules = (state / "monitor" / "rules.yml").read_text()
    assert "remediation: {action: heal, after: 60s, enabled: true}" in rules
    assert "is off" in pg(state, "monitoring", "remediation", "MarathonDown", "off").stdout
    cp = pg(state, "monitoring", "remediation", "Nope", "on", check=1)
    assert "no alerting rule named 'Nope'" in cp.stderr and "AgentUnreachable" in cp.stderr
    cp = pg(state, "monitoring", "remediation", "NoLeader", "on", check=1)
    assert "has no remediation policy" in cp.stderr
    assert (
        "Invalid value"
        in pg(state, "monitoring", "remediation", "NoLeader", "maybe", check=2).stderr
    )
