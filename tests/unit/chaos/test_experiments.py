"""The Chaos Toolkit extension without a cluster: discovery, the catalogue, journals and verdicts.

The integration tests (tests/integration/test_chaos_experiments.py) run the experiments
against real clusters; here every shipped experiment is validated by chaostoolkit-lib
itself, dry-run through it, and the exit-code logic is judged on hand-made journals.
"""

from __future__ import annotations

import importlib
import inspect
import json
from pathlib import Path
from typing import Any

import pytest
from chaoslib.experiment import ensure_experiment_is_valid

import playground.chaos as chaos_pkg
from playground.chaos import catalogue, discovery, runner
from playground.errors import PlaygroundError

CATALOGUE = [
    "AppScaleUpAndDown",
    "AppTasksDown",
    "CrashOneNode",
    "EdgeRouteLatency",
    "LeaderFailover",
    "MaintenanceDrain",
    "MarathonRestart",
    "PartitionOneNode",
    "QuorumLoss",
    "RebootOneNode",
    "ZoneOutage",
]


# ---- discovery ------------------------------------------------------------------------------
def test_targets_are_discovered_from_the_package_layout() -> None:
    """Targets are the subpackages with actions.py/probes.py: nothing is hand-listed."""
    assert discovery.targets() == ["app", "cluster", "marathon", "node", "route"]
    mods = discovery.activity_modules()
    assert ("playground.chaos.node.actions", "action") in mods
    assert ("playground.chaos.app.probes", "probe") in mods
    assert ("playground.chaos.route.actions", "action") in mods
    assert len(mods) == 10


def test_discover_finds_every_exported_activity_with_its_arguments() -> None:
    """discover() follows the Chaos Toolkit convention and lists each __all__ function once."""
    result = chaos_pkg.discover(discover_system=False)
    assert result["extension"]["name"] == "stateful-playground"
    assert result["system"] is None
    found = {(a["mod"], a["name"]): a for a in result["activities"]}
    expected = 0
    for path, kind in discovery.activity_modules():
        mod = importlib.import_module(path)
        for name in mod.__all__:
            expected += 1
            activity = found[(path, name)]
            assert activity["type"] == kind
            assert activity["doc"], f"{path}.{name} has no docstring"
            params = inspect.signature(getattr(mod, name)).parameters
            assert [a["name"] for a in activity["arguments"]] == list(params)
            assert "configuration" in params, f"{path}.{name} takes no configuration"
            for arg in activity["arguments"]:
                default = params[arg["name"]].default
                if default is not inspect.Parameter.empty:
                    assert arg["default"] == default
    assert len(found) == expected
    crash = found[("playground.chaos.node.actions", "crash_node")]
    assert crash["return_type"] == "mapping"
    assert {a["name"]: a.get("type") for a in crash["arguments"]}["for_seconds"] == "number"


def test_discover_system_without_a_cluster_says_so(tmp_path: Path) -> None:
    system = discovery.explore_system({"state_dir": str(tmp_path / "none")})
    assert system["cluster"] is None and "no cluster" in system["error"]


# ---- the catalogue --------------------------------------------------------------------------
def test_catalogue_ships_the_torpedo_scenarios() -> None:
    assert catalogue.names() == CATALOGUE
    assert catalogue.find("crashonenode").name == "CrashOneNode"
    with pytest.raises(PlaygroundError, match="no experiment named 'Nope'") as info:
        catalogue.find("Nope")
    assert "CrashOneNode" in str(info.value.hint)


@pytest.mark.parametrize("name", CATALOGUE)
def test_every_experiment_is_valid_and_judges_its_own_probe_app(name: str) -> None:
    """chaostoolkit-lib accepts it; it deploys, judges and removes its own probe app."""
    exp = catalogue.load(name)
    ensure_experiment_is_valid(exp)
    config = exp["configuration"]
    app_id = config["app_id"]
    assert app_id.startswith("/playground-chaos/") and app_id == app_id.lower()
    assert config["state_dir"] == {"type": "env", "key": "PLAYGROUND_STATE_DIR", "default": ""}
    (control,) = exp["controls"]
    assert control["provider"]["module"] == "playground.chaos.control"
    assert control["provider"]["arguments"]["app_id"] == "${app_id}"
    probes = exp["steady-state-hypothesis"]["probes"]
    funcs = [p["provider"]["func"] for p in probes]
    assert "app_healthy" in funcs and "tasks_answering" in funcs
    for p in probes:
        if p["provider"]["module"] == "playground.chaos.app.probes":
            assert p["provider"]["arguments"]["app_id"] == "${app_id}"
    assert exp["method"]
    rollbacks = [r["provider"]["func"] for r in exp["rollbacks"]]
    assert rollbacks[-1] == "remove_app"
    breaks = any(
        m["provider"]["module"].endswith(("node.actions", "cluster.actions", "marathon.actions"))
        for m in exp["method"]
    )
    assert ("heal_node" in rollbacks) == breaks
    ha = name in ("LeaderFailover", "QuorumLoss")
    assert catalogue.find(name).needs == ({"masters": 3, "topology": "ha"} if ha else {})
    assert ("needs" in control["provider"]["arguments"]) == ha


def test_zone_outage_spreads_its_probe_app_by_zone() -> None:
    control = catalogue.load("ZoneOutage")["controls"][0]["provider"]["arguments"]
    assert control["constraints"] == [["@zone", "GROUP_BY", "3"]]


# ---- journals and verdicts ------------------------------------------------------------------
def _run(name: str, status: str = "succeeded", **extra: Any) -> dict[str, Any]:
    return {
        "activity": {"type": "probe", "name": name, "tolerance": True},
        "status": status,
        "output": True,
        "duration": 0.1,
        **extra,
    }


def journal(**over: Any) -> dict[str, Any]:
    j: dict[str, Any] = {
        "experiment": catalogue.load("CrashOneNode"),
        "status": "completed",
        "deviated": False,
        "steady_states": {
            "before": {"steady_state_met": True, "probes": [_run("p")]},
            "after": {"steady_state_met": True, "probes": [_run("p")]},
            "during": [],
        },
        "run": [_run("crash")],
        "rollbacks": [_run("heal")],
        "duration": 3.0,
    }
    j.update(over)
    return j


def test_a_completed_run_that_held_its_steady_state_passes() -> None:
    assert runner.verdict(journal()) == (True, [])


def test_steady_state_not_met_before_the_method_fails_though_chaostoolkit_says_completed() -> None:
    before = {
        "steady_state_met": False,
        "probes": [_run("probe-app-healthy", output=False, tolerance_met=False)],
    }
    ok, reasons = runner.verdict(
        journal(steady_states={"before": before, "after": None, "during": []}, run=[])
    )
    assert not ok
    assert reasons == [
        "the steady state was not met before the method: "
        "probe probe-app-healthy returned False, expected True"
    ]


def test_deviation_interruption_and_failed_activities_fail() -> None:
    after = {"steady_state_met": False, "probes": [_run("p", output=1, tolerance_met=False)]}
    ok, reasons = runner.verdict(
        journal(
            deviated=True,
            steady_states={
                "before": journal()["steady_states"]["before"],
                "after": after,
                "during": [],
            },
        )
    )
    assert not ok and reasons[0].startswith("the steady state deviated after the method: probe p")
    ok, reasons = runner.verdict(journal(status="interrupted"))
    assert not ok and reasons == ["the run ended 'interrupted', not 'completed'"]
    failed = _run("crash", "failed", exception=["Traceback...\n", "ActivityFailed: boom\n"])
    ok, reasons = runner.verdict(journal(run=[failed]))
    assert reasons == ["method activity crash failed: ActivityFailed: boom"]
    ok, reasons = runner.verdict(journal(rollbacks=[_run("heal", "failed", exception="x")]))
    assert reasons == ["rollback heal failed: x"]


def test_journal_paths_are_stamped_and_never_overwritten(tmp_path: Path) -> None:
    p1 = runner.journal_path(tmp_path, "Crash One/Node", now=1_700_000_000)
    assert p1 == tmp_path / "chaos" / "journals" / "20231114T221320Z-Crash-One-Node.json"
    runner.write_journal({"a": 1}, p1)
    p2 = runner.journal_path(tmp_path, "Crash One/Node", now=1_700_000_000)
    assert p2.name == "20231114T221320Z-Crash-One-Node-2.json"


# ---- loading and running (dry: no cluster needed) --------------------------------------------
def test_load_names_what_is_wrong_with_a_file(tmp_path: Path) -> None:
    with pytest.raises(runner.ExperimentInvalid, match="no experiment file"):
        runner.load(str(tmp_path / "missing.json"))
    bad = tmp_path / "bad.json"
    bad.write_text('{"title": "x",\n  "method": [}\n')
    with pytest.raises(runner.ExperimentInvalid, match=r"not valid JSON: .* line 2"):
        runner.load(str(bad))
    bad.write_text("[1, 2]")
    with pytest.raises(runner.ExperimentInvalid, match="holds a list"):
        runner.load(str(bad))
    bad.write_text(json.dumps({"title": "no method", "description": "d"}))
    exp, name = runner.load(str(bad))
    assert name == "bad"
    with pytest.raises(runner.ExperimentInvalid, match=r"invalid experiment: .*method"):
        runner.validate(exp)
    exp, name = runner.load("zoneoutage")
    assert name == "ZoneOutage" and exp["title"]


def test_dry_run_walks_an_experiment_and_keeps_its_journal_in_the_state_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A dry run acts on nothing (no cluster here) and still writes journal and log."""
    monkeypatch.chdir(tmp_path)
    state = tmp_path / "state"
    lines: list[str] = []
    result = runner.run(
        catalogue.load("CrashOneNode"), "CrashOneNode", state, dry=True, say=lines.append
    )
    assert result.ok, result.reasons
    assert result.path.parent == state / "chaos" / "journals"
    saved = json.loads(result.path.read_text())
    assert saved["status"] == "completed" and saved["experiment"]["dry"] == "activities"
    assert [r["activity"]["name"] for r in saved["rollbacks"]] == [
        "heal-what-the-experiment-broke",
        "remove-the-probe-app",
    ]
    assert (state / "chaos" / "chaostoolkit.log").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state"]  # nothing in the CWD
    assert any("crash-a-node-running-the-probe-app" in line for line in lines)
    text = "\n".join(runner.summary(result))
    assert "dry run" in text and "result: passed" in text and str(result.path) in text
