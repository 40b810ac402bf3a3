"""The embedded master's and agents' answers have Mesos's keys and types."""

from __future__ import annotations

import httpx
import pytest

from playground.backends import EmbeddedBackend
from playground.client import AgentClient, MasterClient
from playground.mesos import models

pytestmark = [pytest.mark.integration]


def test_master_state_and_aliases_decode_into_the_models(cluster: EmbeddedBackend) -> None:
    """/master/state, /state.json and /master/state.json answer the same shape, decoding into MasterState."""
    url = cluster.endpoints()["master"]
    with MasterClient(url) as m:
        state = m.state()
        assert state.leader == state.pid
        assert len(state.slaves) == 4
        for path in ("/state.json", "/master/state.json", "/state"):
            data = httpx.get(url + path, timeout=5).json()
            models.convert(data, models.MasterState)
            assert set(data) == set(m.state_raw())
        agent = state.slaves[0]
        assert agent.resources["ports"] == "[31000-32000]" or agent.reserved_resources
        assert m.version().version == "1.11.0"
        assert m.healthy()


def test_metrics_have_the_real_names(cluster: EmbeddedBackend) -> None:
    """/metrics/snapshot has master/elected, master/slaves_active and the task state gauges."""
    with MasterClient(cluster.endpoints()["master"]) as m:
        metrics = m.metrics()
    assert metrics["master/elected"] == 1.0
    assert metrics["master/slaves_active"] == 4.0
    for key in (
        "master/tasks_running",
        "master/tasks_staging",
        "master/tasks_finished",
        "master/cpus_total",
        "master/mem_used",
    ):
        assert key in metrics


@pytest.mark.parametrize(
    "call",
    [
        "GET_HEALTH",
        "GET_VERSION",
        "GET_STATE",
        "GET_AGENTS",
        "GET_TASKS",
        "GET_FRAMEWORKS",
        "GET_MASTER",
    ],
)
def test_operator_api_calls(cluster: EmbeddedBackend, call: str) -> None:
    """Each v1 operator call answers with its type and the matching get_* field."""
    with MasterClient(cluster.endpoints()["master"]) as m:
        out = m.call(call)
    assert out["type"] == call
    assert call.lower() in out
    if call == "GET_AGENTS":
        agents = out["get_agents"]["agents"]
        assert len(agents) == 4
        assert {a["agent_info"]["domain"]["fault_domain"]["region"]["name"] for a in agents} == {
            "eu"
        }


def test_unknown_operator_call_is_400(cluster: EmbeddedBackend) -> None:
    """An unknown operator call is refused with 400 and a message."""
    r = httpx.post(cluster.endpoints()["master"] + "/api/v1", json={"type": "NOPE"}, timeout=5)
    assert r.status_code == 400 and "NOPE" in r.text


def test_scheduler_call_without_subscription_is_refused(cluster: EmbeddedBackend) -> None:
    """A scheduler call for an unknown framework gets 403, a malformed one 400."""
    url = cluster.endpoints()["master"] + "/api/v1/scheduler"
    r = httpx.post(url, json={"type": "REVIVE", "framework_id": {"value": "nope"}}, timeout=5)
    assert r.status_code == 403
    r = httpx.post(
        url, content=b"{not json", headers={"Content-Type": "application/json"}, timeout=5
    )
    assert r.status_code == 400


def test_agent_state_and_files(cluster: EmbeddedBackend) -> None:
    """An agent's /state names its id, attributes and domain; /files refuses paths outside sandboxes."""
    node = cluster.node("agent-2")
    with AgentClient(f"http://{node.address}") as a:
        st = a.state()
        assert st["attributes"] == {"zone": "b", "rack": "r1"}
        assert st["domain"]["fault_domain"]["zone"]["name"] == "b"
        assert a.metrics()["slave/registered"] == 1.0
    r = httpx.get(f"http://{node.address}/files/read", params={"path": "/etc/passwd"}, timeout=5)
    assert r.status_code == 404
