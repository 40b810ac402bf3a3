"""The reference payloads of Mesos parse through the project's models."""

from __future__ import annotations

import json
import re
from pathlib import Path

from playground.mesos import models

REF = Path(__file__).resolve().parents[2] / "reference" / "mesos" / "endpoints"


def example_json(doc: Path) -> dict:  # type: ignore[type-arg]
    text = doc.read_text()
    block = re.search(r"```\n(\{.*?\})\n```", text, re.S)
    assert block, f"no JSON example in {doc}"
    return json.loads(block.group(1))


def test_reference_master_state_parses() -> None:
    """The /master/state example of the Mesos reference decodes into MasterState."""
    data = example_json(REF / "master" / "state.md")
    state = models.convert(data, models.MasterState)
    assert state.version == "0.28.0"
    assert state.flags["agent_ping_timeout"] == "15secs"
    assert state.slaves == [] and state.frameworks == []


def test_models_omit_absent_optionals() -> None:
    """Encoding a model leaves absent optional fields out instead of writing null."""
    import msgspec

    task = models.Task(
        id="t",
        name="t",
        framework_id="f",
        executor_id="",
        slave_id="s",
        state="TASK_RUNNING",
        resources={"cpus": 1.0},
    )
    out = json.loads(msgspec.json.encode(task))
    assert "labels" not in out and "discovery" not in out and None not in out.values()
