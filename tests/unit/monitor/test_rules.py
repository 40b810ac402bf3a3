"""Rule files: the shipped rules load, bad files are refused with the place named, remediations switch."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from playground.monitor import rules as r

SHIPPED = {
    "AgentUnreachable",
    "AppUnderCapacity",
    "NoLeader",
    "QuorumLost",
    "DeploymentStuck",
    "TaskFlapping",
    "MarathonDown",
    "StoragePoolOffline",
    "VolumeReplicationDegraded",
    "VolumeNearlyFull",
    "VolumeFull",
    "CloudBackupFailed",
}


def test_shipped_rules() -> None:
    """The shipped file has the twelve alerts, each with a severity; remediations are off."""
    rules = r.load(r.shipped_path())
    assert {x.name for x in rules} == SHIPPED
    assert all(x.kind == "alert" and x.labels.get("severity") for x in rules)
    by = {x.name: x for x in rules}
    assert by["AgentUnreachable"].remediation == r.Remediation("rebuild", 60.0, False)
    assert by["AppUnderCapacity"].for_s == 120.0
    assert all(not (x.remediation and x.remediation.enabled) for x in rules)


def test_ensure_rules_file_copies_once(tmp_path: Path) -> None:
    """The state dir gets a copy of the shipped rules at first, and keeps its own afterwards."""
    path = r.ensure_rules_file(tmp_path)
    assert path == tmp_path / "monitor" / "rules.yml"
    assert path.read_text() == r.shipped_path().read_text()
    path.write_text("groups: []\n")
    assert r.ensure_rules_file(tmp_path).read_text() == "groups: []\n"


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ("groups: [", "not valid YAML"),
        ("- 1\n", "a mapping with 'groups'"),
        ("groups:\n - name: g\n   rules:\n    - alert: A\n", "'expr' must be a PromQL expression"),
        (
            "groups:\n - name: g\n   rules:\n    - alert: A\n      expr: 'up =='\n",
            "group 'g' rules[0] (A): expr:",
        ),
        ("groups:\n - name: g\n   rules:\n    - alert: A\n      expr: up[5m]\n", "instant vector"),
        (
            "groups:\n - name: g\n   rules:\n    - alert: A\n      expr: up\n      for: 30\n",
            "durations need a unit",
        ),
        (
            "groups:\n - name: g\n   rules:\n    - alert: A\n      expr: up\n      fro: 30s\n",
            "unknown key(s) fro",
        ),
        (
            "groups:\n - name: g\n   rules:\n    - alert: 'A B'\n      expr: up\n",
            "invalid alert name",
        ),
        (
            "groups:\n - name: g\n   rules:\n    - alert: A\n      record: b\n      expr: up\n",
            "exactly one of",
        ),
        ("groups:\n - {name: g, rules: []}\n - {name: g, rules: []}\n", "used twice"),
        (
            "groups:\n - name: g\n   rules:\n    - alert: A\n      expr: up\n      remediation: {action: reboot}\n",
            "action must be one of",
        ),
        (
            "groups:\n - name: g\n   rules:\n    - alert: A\n      expr: up\n      remediation: {action: heal, enabled: 'yes'}\n",
            "enabled must be true or false",
        ),
    ],
)
def test_invalid_rule_files_name_the_problem(tmp_path: Path, doc: str, message: str) -> None:
    """Each invalid rule file fails with the file, the group, the rule and the field named."""
    f = tmp_path / "rules.yml"
    f.write_text(doc)
    with pytest.raises(r.RuleFileError) as err:
        r.load(f)
    assert message in str(err.value)
    assert str(f) in str(err.value)


def test_recording_rules_and_empty_files(tmp_path: Path) -> None:
    """Recording rules load (they feed later rules); an empty file is no rules."""
    rules = r.load_text(
        "groups:\n - name: g\n   rules:\n    - record: job:up:sum\n      expr: sum by (job) (up)\n"
    )
    assert [(x.kind, x.name) for x in rules] == [("record", "job:up:sum")]
    assert r.load_text("") == []


def test_strip_kit_keys_leaves_prometheus_keys() -> None:
    """The export drops only the kit's remediation keys."""
    data = yaml.safe_load(r.shipped_path().read_text())
    out = r.strip_kit_keys(data)
    rules = [x for g in out["groups"] for x in g["rules"]]
    assert not any("remediation" in x for x in rules)
    assert any("remediation" in x for g in data["groups"] for x in g["rules"]), "input untouched"
    assert {x["alert"] for x in rules} == SHIPPED


def test_set_remediation_keeps_comments(tmp_path: Path) -> None:
    """Switching a remediation edits its line only: the file's comments stay."""
    path = r.ensure_rules_file(tmp_path)
    before = path.read_text()
    assert r.set_remediation(path, "AgentUnreachable", True) == ["playground"]
    after = path.read_text()
    assert "# Alert rules of the Stateful Playground" in after
    assert [a for a, b in zip(before.splitlines(), after.splitlines(), strict=True) if a != b] == [
        "        remediation: {action: rebuild, after: 60s, enabled: false}"
    ]
    by = {x.name: x for x in r.load(path)}
    assert by["AgentUnreachable"].remediation == r.Remediation("rebuild", 60.0, True)
    assert by["MarathonDown"].remediation is not None and not by["MarathonDown"].remediation.enabled
    r.set_remediation(path, "AgentUnreachable", False)
    assert path.read_text() == before


def test_set_remediation_rewrites_block_style(tmp_path: Path) -> None:
    """A policy written as a block mapping is switched too (the file is rewritten)."""
    path = tmp_path / "rules.yml"
    path.write_text(
        "groups:\n - name: g\n   rules:\n    - alert: A\n      expr: up == 0\n"
        "      remediation:\n        action: heal\n        after: 1m\n"
    )
    r.set_remediation(path, "A", True)
    rule = r.load(path)[0]
    assert rule.remediation == r.Remediation("heal", 60.0, True)


def test_set_remediation_errors(tmp_path: Path) -> None:
    """An unknown rule lists the rules; a rule without a policy says how to add one."""
    path = r.ensure_rules_file(tmp_path)
    with pytest.raises(r.RuleFileError) as err:
        r.set_remediation(path, "Nope", True)
    assert "no alerting rule named 'Nope'" in str(err.value)
    assert err.value.hint is not None and "AgentUnreachable" in err.value.hint
    with pytest.raises(r.RuleFileError, match="has no remediation policy"):
        r.set_remediation(path, "NoLeader", True)
