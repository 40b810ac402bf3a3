"""A scheduler written against the v1 API drives a real embedded cluster."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import httpx
import psutil
import pytest

from playground.backends import EmbeddedBackend
from playground.cluster import procs
from tests.support.v1scheduler import V1Scheduler, offer_ports, task_info

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def master_url(cluster: EmbeddedBackend) -> str:
    url = cluster.endpoints()["master"]
    assert url, "no leading master"
    return str(url)


def agent_state(cluster: EmbeddedBackend, node: str) -> dict[str, Any]:
    host = cluster.node(node).address
    return dict(httpx.get(f"http://{host}/state", timeout=5).json())


def agent_id_of(cluster: EmbeddedBackend, node: str) -> str:
    return str(agent_state(cluster, node)["id"])


def sandbox_pid(cluster: EmbeddedBackend, node: str, task_id: str) -> int:
    """The PID of a task's command, as the task itself wrote it into its sandbox."""
    st = agent_state(cluster, node)
    for fw in st["frameworks"]:
        for ex in fw["executors"]:
            if ex["id"] == task_id:
                path = os.path.join(ex["directory"], "pid")
                deadline = time.monotonic() + 5
                while time.monotonic() < deadline:
                    try:
                        return int(open(path).read().strip())
                    except (OSError, ValueError):
                        time.sleep(0.05)
    raise AssertionError(f"no pid file for {task_id} on {node}")


def offer_on(scheduler: V1Scheduler, cluster: EmbeddedBackend, node: str) -> dict[str, Any]:
    aid = agent_id_of(cluster, node)
    return scheduler.wait_offers(predicate=lambda o: o["agent_id"]["value"] == aid, timeout=10)[0]


@pytest.fixture()
def scheduler(cluster: EmbeddedBackend) -> Any:
    s = V1Scheduler(master_url(cluster), roles=("*", "slave_public"), failover_timeout=3600)
    s.subscribe()
    yield s
    try:
        s.teardown()
    finally:
        s.close()


def test_offers_come_from_every_agent_with_attributes_and_fault_domains(
    cluster: EmbeddedBackend, scheduler: V1Scheduler
) -> None:
    """A subscribed framework receives offers from all four agents with their zone, rack and fault domain."""
    offers = scheduler.wait_offers(n_agents=4, timeout=10)
    by_host = {o["hostname"]: o for o in offers}
    nodes = {
        n.address.split(":")[0]: n for n in cluster.nodes() if n.role in ("agent", "public-agent")
    }
    assert set(by_host) == set(nodes)
    for host, offer in by_host.items():
        node = nodes[host]
        attrs = {a["name"]: a for a in offer["attributes"]}
        assert attrs["zone"] == {"name": "zone", "type": "TEXT", "text": {"value": node.zone}}
        assert attrs["rack"]["text"]["value"] == node.rack
        assert offer["domain"] == {
            "fault_domain": {"region": {"name": "eu"}, "zone": {"name": node.zone}}
        }
        roles = {r.get("allocation_info", {}).get("role") for r in offer["resources"]}
        if node.role == "public-agent":
            assert offer["allocation_info"]["role"] == "slave_public"
            assert all(
                r["reservations"] == [{"type": "STATIC", "role": "slave_public"}]
                for r in offer["resources"]
            )
        else:
            assert roles == {offer["allocation_info"]["role"]}
            assert offer_ports(offer)[0] == 31000 and offer_ports(offer)[-1] == 32000


def test_launch_on_chosen_agent_serves_http_and_kill_ends_it(
    cluster: EmbeddedBackend, scheduler: V1Scheduler
) -> None:
    """A task launched on agent-2 runs as a real process answering HTTP on its host port, and KILL ends it."""
    offer = offer_on(scheduler, cluster, "agent-2")
    port = offer_ports(offer)[5]
    cmd = (
        'echo $$ > pid; exec python3 -c "import http.server,os;'
        "h=type('H',(http.server.BaseHTTPRequestHandler,),{'do_GET':lambda s:(s.send_response(200),s.end_headers(),"
        "s.wfile.write((os.environ['MESOS_TASK_ID']+' '+os.environ['MESOS_SANDBOX']).encode()))});"
        f"http.server.HTTPServer((os.environ['HOST'],{port}),h).serve_forever()\""
    )
    host = offer["hostname"]
    t = task_info(
        "web", "web-1", None, cmd, cpus=0.1, mem=64, ports=[port], env={"HOST": host}, offer=offer
    )
    scheduler.launch(offer, [t])
    running = scheduler.wait_task_state("web-1", "TASK_RUNNING", timeout=10)
    assert running["container_status"]["network_infos"][0]["ip_addresses"][0]["ip_address"] == host
    body = ""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            body = httpx.get(f"http://{host}:{port}/", timeout=2).text
            break
        except httpx.HTTPError:
            time.sleep(0.1)
    task_id, sandbox = body.split(" ", 1)
    assert task_id == "web-1"
    assert os.path.isfile(os.path.join(sandbox, "stdout"))
    pid = sandbox_pid(cluster, "agent-2", "web-1")
    assert psutil.pid_exists(pid)
    scheduler.kill("web-1")
    killed = scheduler.wait_task_state("web-1", "TASK_KILLED", timeout=10)
    assert killed["source"] == "SOURCE_EXECUTOR"
    assert procs.wait_gone([psutil.Process(pid)] if psutil.pid_exists(pid) else [], 3) == []


def test_exit_codes_become_finished_and_failed(
    cluster: EmbeddedBackend, scheduler: V1Scheduler
) -> None:
    """A command exiting 0 is TASK_FINISHED; one exiting 3 is TASK_FAILED with Mesos's message."""
    offer = scheduler.wait_offers(predicate=lambda o: o["allocation_info"]["role"] == "*")[0]
    scheduler.launch(
        offer,
        [
            task_info("ok", "ok-1", None, "exit 0", offer=offer),
            task_info("bad", "bad-1", None, "exit 3", offer=offer),
        ],
    )
    done = scheduler.wait_task_state("ok-1", "TASK_FINISHED")
    failed = scheduler.wait_task_state("bad-1", "TASK_FAILED")
    assert done["message"] == "Command exited with status 0"
    assert failed["message"] == "Command exited with status 3"


def test_memory_over_limit_is_killed_with_container_limitation(
    cluster: EmbeddedBackend, scheduler: V1Scheduler
) -> None:
    """A task using more memory than its mem resource is killed with REASON_CONTAINER_LIMITATION_MEMORY."""
    offer = scheduler.wait_offers(predicate=lambda o: o["allocation_info"]["role"] == "*")[0]
    cmd = 'exec python3 -c "import time; b=bytearray(120*1024*1024); time.sleep(60)"'
    scheduler.launch(offer, [task_info("hog", "hog-1", None, cmd, mem=32, offer=offer)])
    status = scheduler.wait_task_state("hog-1", "TASK_FAILED", timeout=15)
    assert status["reason"] == "REASON_CONTAINER_LIMITATION_MEMORY"
    assert status["source"] == "SOURCE_AGENT"
    assert "Memory limit exceeded" in status["message"]


def test_invalid_task_gets_task_error(cluster: EmbeddedBackend, scheduler: V1Scheduler) -> None:
    """A task asking for more than the offer holds is refused with TASK_ERROR / REASON_TASK_INVALID."""
    offer = scheduler.wait_offers(predicate=lambda o: o["allocation_info"]["role"] == "*")[0]
    scheduler.launch(offer, [task_info("big", "big-1", None, "sleep 1", cpus=64, offer=offer)])
    status = scheduler.wait_task_state("big-1", "TASK_ERROR")
    assert status["reason"] == "REASON_TASK_INVALID"
    assert status["source"] == "SOURCE_MASTER"


def test_agent_restart_keeps_task_running_and_reconciles(
    cluster: EmbeddedBackend, scheduler: V1Scheduler
) -> None:
    """Restarting only agent-1's process leaves its task running; the new agent recovers it and still kills it."""
    offer = offer_on(scheduler, cluster, "agent-1")
    scheduler.launch(
        offer, [task_info("sleeper", "sleep-1", None, "echo $$ > pid; exec sleep 600", offer=offer)]
    )
    scheduler.wait_task_state("sleep-1", "TASK_RUNNING")
    pid = sandbox_pid(cluster, "agent-1", "sleep-1")
    task_proc = psutil.Process(pid)
    old_agent = cluster.node("agent-1").pid
    cluster.restart_agent_process("agent-1")
    assert cluster.node("agent-1").pid != old_agent
    assert task_proc.is_running() and task_proc.status() != psutil.STATUS_ZOMBIE
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        st = agent_state(cluster, "agent-1")
        tasks = [t for fw in st["frameworks"] for ex in fw["executors"] for t in ex["tasks"]]
        if any(t["id"] == "sleep-1" and t["state"] == "TASK_RUNNING" for t in tasks):
            break
        time.sleep(0.1)
    else:
        raise AssertionError("the restarted agent did not recover sleep-1")
    scheduler.reconcile([("sleep-1", None)])
    status = scheduler.wait_task_state("sleep-1", "TASK_RUNNING")
    assert status["reason"] == "REASON_RECONCILIATION"
    assert task_proc.is_running()
    scheduler.kill("sleep-1")
    scheduler.wait_task_state("sleep-1", "TASK_KILLED", timeout=10)
    assert procs.wait_gone([task_proc], 3) == []


def test_crash_kills_node_tree_and_task_becomes_unreachable(
    cluster: EmbeddedBackend, scheduler: V1Scheduler
) -> None:
    """Crashing agent-3 kills its task processes at once; the master then reports TASK_UNREACHABLE."""
    offer = offer_on(scheduler, cluster, "agent-3")
    scheduler.launch(
        offer, [task_info("victim", "victim-1", None, "echo $$ > pid; exec sleep 600", offer=offer)]
    )
    scheduler.wait_task_state("victim-1", "TASK_RUNNING")
    pid = sandbox_pid(cluster, "agent-3", "victim-1")
    victim = psutil.Process(pid)
    cluster.crash("agent-3")
    assert procs.wait_gone([victim], 1) == []
    assert procs.find_marked(cluster.state_dir, "agent-3") == []
    assert cluster.node("agent-3").state == "crashed"
    status = scheduler.wait_task_state("victim-1", "TASK_UNREACHABLE", timeout=30)
    assert status["reason"] == "REASON_SLAVE_REMOVED"
    lost_agent = status["agent_id"]["value"]
    failure = scheduler.wait_event(
        "FAILURE", lambda e: e["failure"]["agent_id"]["value"] == lost_agent
    )
    assert "executor_id" not in failure["failure"]
    cluster.start("agent-3")
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and not any(
        n.name == "agent-3" and n.state == "running" for n in cluster.nodes()
    ):
        time.sleep(0.1)
    # The returning agent re-registers; its dead task is reported as failed, not running.
    status = scheduler.wait_task_state(
        "victim-1", ("TASK_FAILED", "TASK_GONE", "TASK_LOST"), timeout=20
    )
    assert status["state"] != "TASK_RUNNING"


def test_sigterm_of_a_task_process_is_failure_not_kill(
    cluster: EmbeddedBackend, scheduler: V1Scheduler
) -> None:
    """A task killed by a signal nobody asked for is TASK_FAILED with the signal's name."""
    offer = scheduler.wait_offers(predicate=lambda o: o["allocation_info"]["role"] == "*")[0]
    node = next(n.name for n in cluster.nodes() if n.address.split(":")[0] == offer["hostname"])
    scheduler.launch(
        offer, [task_info("term", "term-1", None, "echo $$ > pid; exec sleep 600", offer=offer)]
    )
    scheduler.wait_task_state("term-1", "TASK_RUNNING")
    os.kill(sandbox_pid(cluster, node, "term-1"), signal.SIGTERM)
    status = scheduler.wait_task_state("term-1", "TASK_FAILED")
    assert status["message"] == "Command terminated with signal Terminated"


def test_kv_workload_runs_as_a_task_with_sandbox_data(
    cluster: EmbeddedBackend, scheduler: V1Scheduler
) -> None:
    """`playground workload kv --data data --durable` runs as a task (kit on PATH) and keeps data in its sandbox."""
    offer = offer_on(scheduler, cluster, "agent-1")
    port = offer_ports(offer)[10]
    host = offer["hostname"]
    t = task_info(
        "kv",
        "kv-1",
        None,
        "playground workload kv --data data --durable",
        mem=128,
        ports=[port],
        env={"PORT0": str(port), "HOST": host},
        offer=offer,
    )
    scheduler.launch(offer, [t])
    scheduler.wait_task_state("kv-1", "TASK_RUNNING")
    deadline = time.monotonic() + 15
    while True:
        try:
            r = httpx.put(f"http://{host}:{port}/v1/kv/hello", content=b"world", timeout=2)
            break
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    assert r.status_code == 201
    stats = httpx.get(f"http://{host}:{port}/stats", timeout=2).json()
    assert stats["task_id"] == "kv-1" and stats["durable"] is True
    st = agent_state(cluster, "agent-1")
    sandbox = next(
        ex["directory"] for fw in st["frameworks"] for ex in fw["executors"] if ex["id"] == "kv-1"
    )
    assert os.path.getsize(os.path.join(sandbox, "data", "data.log")) > 0
    scheduler.kill("kv-1")
    scheduler.wait_task_state("kv-1", "TASK_KILLED")
