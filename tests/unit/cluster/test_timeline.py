"""The event timeline: schema-versioned JSON lines, readable after a torn write."""

from __future__ import annotations

import json
from pathlib import Path

from playground.cluster import statedir
from playground.cluster.statedir import TIMELINE_SCHEMA, StateDir


def test_events_carry_schema_time_kind_and_source(tmp_path: Path) -> None:
    state = StateDir(tmp_path)
    state.record_event("fault.started", target="agent-1")
    (line,) = state.events_file.read_text().splitlines()
    ev = json.loads(line)
    assert ev["schema"] == TIMELINE_SCHEMA
    assert ev["kind"] == "fault.started"
    assert ev["source"] == "cli"
    assert ev["target"] == "agent-1"
    assert isinstance(ev["time"], float)


def test_a_node_process_names_itself(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(statedir, "_source", "cli")
    statedir.set_event_source("master-1")
    StateDir(tmp_path).record_event("master.elected")
    assert StateDir(tmp_path).events()[0]["source"] == "master-1"


def test_reader_filters_and_skips_torn_and_foreign_lines(tmp_path: Path) -> None:
    state = StateDir(tmp_path)
    state.record_event("task.state", state="TASK_RUNNING")
    with open(state.events_file, "a") as fh:
        fh.write(json.dumps({"schema": 99, "time": 1.0, "kind": "task.state"}) + "\n")
    state.record_event("fault.started", target="agent-2")
    with open(state.events_file, "a") as fh:
        fh.write('{"schema": 1, "time": 2.0, "ki')  # a writer killed mid-line
    kinds = [e["kind"] for e in state.events()]
    assert kinds == ["task.state", "fault.started"]
    assert [e["kind"] for e in state.events(kinds=("fault.",))] == ["fault.started"]
    last = state.events()[-1]["time"]
    assert [e["kind"] for e in state.events(since=last)] == ["fault.started"]
    assert StateDir(tmp_path / "none").events() == []
