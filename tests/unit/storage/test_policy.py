"""The placement policy: the file (load, errors with lines, versioned saves) and the checks."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from playground.storage.policy import (
    KINDS,
    Location,
    Policy,
    PolicyError,
    PolicyFileError,
    Rule,
    check_placement,
    enforce,
    load_policy,
    parse_policy,
    policy_path,
    save_policy,
)

EU_POLICY = """\
schema_version: 1
rules:
  - name: pii-stays-in-eu
    description: personal data stays in the EU
    match: {labels: {pii: "true", residency: eu}}
    allow: {regions: [eu]}
  - name: ledger-in-zones-a-b
    match:
      labels: {app: ledger}
    allow:
      zones: [a, b]
    kinds: [replica]
"""
PII = {"pii": "true", "residency": "eu", "team": "crm"}


def test_policy_path_is_in_the_state_directory(tmp_path: Path) -> None:
    assert policy_path(tmp_path) == tmp_path / "storage" / "policy.yaml"


def test_an_absent_or_empty_file_means_no_rules(tmp_path: Path) -> None:
    assert load_policy(tmp_path / "nope.yaml") == Policy((), 0)
    (tmp_path / "empty.yaml").write_text("# nothing yet\n")
    assert load_policy(tmp_path / "empty.yaml").rules == ()
    assert check_placement(Policy(), PII, [("replica", "agent-9", "us", "x")]) == []


def test_rules_parse_with_labels_as_text_regions_zones_and_kinds(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(EU_POLICY)
    p = load_policy(path)
    assert [r.name for r in p.rules] == ["pii-stays-in-eu", "ledger-in-zones-a-b"]
    eu, ledger = p.rules
    assert eu.labels == {"pii": "true", "residency": "eu"}
    assert eu.regions == frozenset({"eu"}) and eu.zones is None
    assert eu.kinds == frozenset(KINDS) and eu.description == "personal data stays in the EU"
    assert ledger.zones == frozenset({"a", "b"}) and ledger.regions is None
    assert ledger.kinds == frozenset({"replica"})
    # YAML's unquoted true is the label value "true".
    unquoted = parse_policy(
        "rules:\n- name: r\n  match: {labels: {pii: true}}\n  allow: {regions: [eu]}\n"
    )
    assert unquoted.rules[0].labels == {"pii": "true"}
    assert unquoted.rules_for({"pii": True}) == list(unquoted.rules)
    assert unquoted.rules_for({"pii": "false"}) == []


def test_replicas_snapshots_and_backups_outside_the_allowed_region_are_violations() -> None:
    p = parse_policy(EU_POLICY)
    locations = [
        ("replica", "agent-1", "eu", "a"),
        Location("replica", "agent-7", "us", "d"),
        ("snapshot", "storage-1", "eu", "a"),
        ("cloud-backup", "s3-virginia", "us-east-1", None),
        ("cloud-backup", "s3-unlabelled", None, None),
    ]
    vs = check_placement(p, PII, locations, volume="customers")
    assert [(v.rule, v.location.target) for v in vs] == [
        ("pii-stays-in-eu", "agent-7"),
        ("pii-stays-in-eu", "s3-virginia"),
        ("pii-stays-in-eu", "s3-unlabelled"),
    ]
    assert str(vs[0]) == (
        "rule pii-stays-in-eu: volume customers (labelled pii=true, residency=eu): "
        "replica on agent-7 is in region us, but only eu is allowed"
    )
    assert "cloud-backup on s3-virginia is in region us-east-1" in vs[1].message
    assert "an unknown region" in vs[2].message
    assert vs[1].as_dict()["kind"] == "cloud-backup" and vs[1].as_dict()["region"] == "us-east-1"
    # Without the labels (or with only some of them) the rule does not apply.
    assert check_placement(p, {"pii": "true"}, locations) == []
    assert check_placement(p, {}, locations) == []


def test_zone_rules_apply_only_to_their_kinds() -> None:
    p = parse_policy(EU_POLICY)
    labels = {"app": "ledger"}
    vs = check_placement(
        p,
        labels,
        [
            ("replica", "agent-1", "eu", "a"),
            ("replica", "agent-3", "eu", "c"),
            ("snapshot", "storage-1", "eu", "c"),
            ("cloud-backup", "s3", "eu", None),
        ],
        volume="ledger",
    )
    assert [(v.rule, v.location.target) for v in vs] == [("ledger-in-zones-a-b", "agent-3")]
    assert "zone c, but only zones a, b are allowed" in vs[0].message


def test_a_rule_with_regions_and_zones_needs_both_and_says_both() -> None:
    p = Policy((Rule("strict", {}, frozenset({"eu"}), frozenset({"a"})),))
    (v,) = check_placement(p, {}, [("replica", "agent-9", "us", "b")], volume="v")
    assert "region us, but only eu is allowed" in v.message
    assert "zone b, but only zones a are allowed" in v.message
    assert check_placement(p, {"any": "thing"}, [("replica", "agent-1", "eu", "a")]) == []


def test_an_unknown_location_kind_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown location kind 'disk'"):
        check_placement(Policy(), {}, [("disk", "x", "eu", "a")])


def test_enforce_refuses_with_the_rule_name_and_passes_allowed_placements() -> None:
    p = parse_policy(EU_POLICY)
    enforce(p, PII, [("replica", "agent-1", "eu", "a")], "create", "customers")
    with pytest.raises(PolicyError) as err:
        enforce(p, PII, [("cloud-backup", "s3-us", "us", None)], "backup", "customers")
    msg = str(err.value)
    assert msg.startswith("backup of volume customers refused by the placement policy")
    assert "rule pii-stays-in-eu" in msg and "region us" in msg
    assert err.value.rules == ["pii-stays-in-eu"] and len(err.value.violations) == 1
    assert err.value.hint


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("rules: [\n", "policy.yaml:2:1: not valid YAML"),
        ("schema_version: 2\nrules: []\n", "policy.yaml:1: schema_version: 2 is not supported"),
        ("rules: {a: 1}\n", "policy.yaml:1: rules: must be a list, not a mapping"),
        ("rulez: []\n", "policy.yaml:1: rulez: unknown field"),
        ("version: -1\n", "policy.yaml:1: version: must be an integer >= 0"),
        (
            "rules:\n  - name: a\n    allow: {regions: [eu]}\n  - name: b\n    allow: {regions: eu}\n",
            "policy.yaml:5: rules[1] (b).allow.regions: must be a non-empty list of names, "
            "not the text 'eu'",
        ),
        (
            "rules:\n  - name: a\n    alow: {regions: [eu]}\n",
            "policy.yaml:3: rules[0].alow: unknown field (known: name, description, match, allow, kinds)",
        ),
        ("rules:\n  - allow: {regions: [eu]}\n", "policy.yaml:2: rules[0].name: required"),
        ("rules:\n  - name: ../x\n    allow: {zones: [a]}\n", "policy.yaml:2: rules[0].name"),
        ("rules:\n  - name: a\n", "policy.yaml:2: rules[0] (a).allow: required"),
        ("rules:\n  - name: a\n    allow: {}\n", "policy.yaml:3: rules[0] (a).allow: give regions"),
        (
            "rules:\n  - name: a\n    allow: {zones: [a]}\n  - name: a\n    allow: {zones: [b]}\n",
            "policy.yaml:4: rules[1].name: duplicate rule 'a'",
        ),
        (
            "rules:\n  - name: a\n    name: b\n    allow: {zones: [a]}\n",
            "policy.yaml:3: name: duplicate field (first on line 2)",
        ),
        (
            "rules:\n  - name: a\n    allow: {zones: [a]}\n    kinds: [replica, tape]\n",
            "policy.yaml:4: rules[0] (a).kinds: unknown kind tape",
        ),
        (
            "rules:\n  - name: a\n    match: {labels: {pii: [x]}}\n    allow: {zones: [a]}\n",
            "policy.yaml:3: rules[0] (a).match.labels.pii: a label is a name and a text value",
        ),
        (
            "rules:\n  - name: a\n    match: {tags: {}}\n    allow: {zones: [a]}\n",
            "policy.yaml:3: rules[0] (a).match.tags: unknown field (known: labels)",
        ),
        ("- just\n- a list\n", "policy.yaml:1: : must be a mapping, not a list"),
    ],
)
def test_a_malformed_policy_names_the_line_and_the_field(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    with pytest.raises(PolicyFileError) as err:
        load_policy(path)
    msg = str(err.value)
    assert msg.startswith(f"{path.parent}/"), msg
    assert expected in msg, msg
    assert err.value.hint and "schema_version: 1" in err.value.hint


def test_an_unreadable_policy_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_bytes(b"rules: \xff\xfe\n")
    with pytest.raises(PolicyFileError, match="cannot read the policy file"):
        load_policy(path)


def test_save_policy_is_versioned_and_keeps_the_previous_versions(tmp_path: Path) -> None:
    path = policy_path(tmp_path / "state")
    first = save_policy(path, EU_POLICY)
    assert first.version == 1 and first.rules[0].name == "pii-stays-in-eu"
    assert load_policy(path) == first
    assert sorted(p.name for p in path.parent.iterdir()) == ["policy.yaml", "policy.yaml.lock"]

    second = save_policy(path, Policy(first.rules[:1], version=99))  # its version is ignored
    assert second.version == 2 and load_policy(path) == second
    assert load_policy(path.with_name("policy.yaml.1")) == first

    third = save_policy(path, Policy())
    assert third.version == 3 and load_policy(path).rules == ()
    assert load_policy(path.with_name("policy.yaml.2")) == second
    # The saved file is the documented format, readable by hand.
    doc = yaml.safe_load(path.read_text())
    assert doc == {"schema_version": 1, "version": 3, "rules": []}
    # No temporary file is left behind.
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


def test_save_policy_round_trips_every_field(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    saved = save_policy(path, EU_POLICY)
    again = parse_policy(path.read_text())
    assert again == saved
    assert again.rules[1].as_dict() == {
        "name": "ledger-in-zones-a-b",
        "match": {"labels": {"app": "ledger"}},
        "allow": {"zones": ["a", "b"]},
        "kinds": ["replica"],
    }


def test_an_invalid_new_policy_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    save_policy(path, EU_POLICY)
    before = path.read_bytes()
    with pytest.raises(PolicyFileError, match="the new policy:3: rules"):
        save_policy(path, "rules:\n  - name: a\n    allow: {regions: 5}\n")
    assert path.read_bytes() == before
    assert not path.with_name("policy.yaml.1").exists()


def test_a_hand_written_file_without_a_version_is_kept_before_a_save(tmp_path: Path) -> None:
    """A file edited by hand (no version, or broken) is kept as a numbered backup."""
    path = tmp_path / "policy.yaml"
    path.write_text("rules: [oops\n")
    saved = save_policy(path, EU_POLICY)
    assert path.with_name("policy.yaml.1").read_text() == "rules: [oops\n"
    assert saved.version == 2 and load_policy(path).version == 2
    path.write_text(EU_POLICY)  # hand-edited again (no version): kept after backup 1
    assert save_policy(path, Policy()).version == 3
    assert path.with_name("policy.yaml.2").read_text() == EU_POLICY


def test_a_failed_save_leaves_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """If the rename never happens (a crash before it), the old policy is intact."""
    path = tmp_path / "policy.yaml"
    save_policy(path, EU_POLICY)
    before = path.read_bytes()

    def boom(src: str, dst: str) -> None:
        if str(dst) == str(path):
            raise OSError(28, "No space left on device")
        real_replace(src, dst)

    real_replace = os.replace
    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        save_policy(path, Policy())
    assert path.read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
