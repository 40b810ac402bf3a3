"""The v1 operator call MARK_AGENT_GONE, and a clean-disk rebuild, on a real cluster."""

from __future__ import annotations

import time
from typing import Any

import httpx
import psutil
import pytest

from playground.backends import EmbeddedBackend
from playground.chaos.faults import FaultError, Faults
from playground.cluster import procs
from tests.integration.test_scheduler_api import agent_id_of, master_url, offer_on, sandbox_pid
from tests.support import auth
from tests.support.v1scheduler import V1Scheduler, task_info

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def operator(cluster: EmbeddedBackend, call: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{master_url(cluster)}/api/v1", json=call, timeout=10)


def mark_gone(cluster: EmbeddedBackend, agent_id: str) -> httpx.Response:
    return operator(
        cluster, {"type": "MARK_AGENT_GONE", "mark_agent_gone": {"agent_id": {"value": agent_id}}}
    )


def test_unknown_or_missing_agent_id_is_an_error(cluster: EmbeddedBackend) -> None:
    r = mark_gone(cluster, "no-such-agent")
    assert r.status_code == 404 and "no-such-agent" in r.text
    r = operator(cluster, {"type": "MARK_AGENT_GONE", "mark_agent_gone": {}})
    assert r.status_code == 400 and "agent_id" in r.text


def test_mark_agent_gone_ends_tasks_and_the_agent_for_good(cluster: EmbeddedBackend) -> None:
    """agent-3 marked gone: TASK_GONE_BY_OPERATOR, not listed, shut down; a rebuild returns it."""
    s = V1Scheduler(master_url(cluster), roles=("*", "slave_public"), failover_timeout=3600)
    s.subscribe()
    try:
        offer = offer_on(s, cluster, "agent-3")
        s.launch(
            offer,
            [task_info("doomed", "doomed-1", None, "echo $$ > pid; exec sleep 600", offer=offer)],
        )
        s.wait_task_state("doomed-1", "TASK_RUNNING")
        task_proc = psutil.Process(sandbox_pid(cluster, "agent-3", "doomed-1"))
        gone = agent_id_of(cluster, "agent-3")

        r = mark_gone(cluster, gone)
        assert (r.status_code, r.content) == (200, b"")
        status = s.wait_task_state("doomed-1", "TASK_GONE_BY_OPERATOR", timeout=10)
        assert status["reason"] == "REASON_SLAVE_REMOVED_BY_OPERATOR"
        assert status["agent_id"]["value"] == gone
        assert mark_gone(cluster, gone).status_code == 200  # idempotent

        agents = operator(cluster, {"type": "GET_AGENTS"}).json()["get_agents"]["agents"]
        assert gone not in [a["agent_info"]["id"]["value"] for a in agents]
        url = master_url(cluster)
        assert gone not in [x["id"] for x in httpx.get(f"{url}/master/slaves").json()["slaves"]]
        assert gone not in [x["id"] for x in httpx.get(f"{url}/master/state").json()["slaves"]]
        # The master shuts the agent down: its task and its process end.
        assert procs.wait_gone([task_proc], 10) == []
        deadline = time.monotonic() + 10
        while cluster.node("agent-3").state == "running":
            assert time.monotonic() < deadline, "agent-3 still runs after it was marked gone"
            time.sleep(0.1)

        # It can never come back under its old id.
        address = cluster.node("agent-3").address
        back = httpx.post(
            f"{url}/master/mesos.internal.ReregisterSlaveMessage",
            json={
                "agent_info": {"id": {"value": gone}, "hostname": "x"},
                "pid": f"slave(1)@{address}",
                "url": f"http://{address}",
            },
            headers=auth.headers(cluster),  # as an agent would: internal messages need it
            timeout=5,
        )
        assert back.status_code == 403 and "gone" in back.text

        # The same machine cannot return with its disk: the error says why and what to do.
        with pytest.raises(FaultError, match="marked gone") as err:
            Faults(cluster).rebuild("agent-3", keep_disk=True)
        assert err.value.hint and "clean disk" in err.value.hint

        # A clean-disk rebuild: same name and address, a new agent id; the cluster is whole.
        res = Faults(cluster).rebuild("agent-3")
        assert res.old_agent_id == gone and res.agent_id not in (None, gone)
        assert agent_id_of(cluster, "agent-3") == res.agent_id
        assert '"fault.rebuilt"' in (cluster.state_dir / "events.jsonl").read_text()
    finally:
        try:
            s.teardown()
        finally:
            s.close()
