"""IP-per-task networks on real embedded clusters: every task on ``dcos`` gets its own loopback
address from its agent's IPAM slice, serves on it, is reported with it, and gives it back.

The ``default`` cluster (module-scoped) runs the three-instance app; a one-agent topology
with a pool of 2 (written here) runs the exhaustion and agent-recovery story.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from typing import Any

import httpx
import psutil
import pytest

from playground.backends import EmbeddedBackend
from tests.conftest import _cluster
from tests.support.marathon_http import Marathon, app_def, wait_until

pytestmark = [pytest.mark.integration]

WEB_CMD = "playground workload web"  # binds $HOST:$PORT0 and answers with its task id

TINY = """\
schema_version: 1
name: tiny-ipam
description: one agent whose slice of dcos hands out 2 addresses
networks:
  - {name: dcos, size: 2}
nodes:
  - {name: coordinator-1, role: coordinator}
  - {name: master-1, role: master}
  - {name: agent-1, role: agent, zone: a}
  - {name: marathon-1, role: marathon}
"""


# ---- helpers ---------------------------------------------------------------------------------
def ip_app(app_id: str, instances: int, cmd: str = WEB_CMD, **extra: Any) -> dict[str, Any]:
    return app_def(
        app_id,
        cmd,
        instances,
        networks=[{"mode": "container", "name": "dcos"}],
        container={"type": "MESOS", "portMappings": [{"containerPort": 8080, "name": "http"}]},
        **{"mem": 128, **extra},  # the web workload needs more than app_def's 32 MB
    )


def block_of(backend: EmbeddedBackend) -> int:
    return int(backend.cluster.record()["addressing"]["block"])


def ipam_file(backend: EmbeddedBackend, agent: str) -> dict[str, Any]:
    path = backend.state_dir / "nodes" / agent / "work" / "meta" / "ipam.json"
    return dict(json.loads(path.read_text())) if path.exists() else {}


def held(backend: EmbeddedBackend, agent: str) -> dict[str, str]:
    """Address -> task id of every address the agent's IPAM holds on dcos."""
    allocations = ipam_file(backend, agent).get("networks", {}).get("dcos", {}).get("allocations")
    return {ip: a["task_id"] for ip, a in (allocations or {}).items()}


def agent_names(backend: EmbeddedBackend) -> dict[str, str]:
    """Agent node name by its address (the tasks' ``host``)."""
    return {
        n.address.split(":")[0]: n.name
        for n in backend.nodes()
        if n.role in ("agent", "public-agent")
    }


def running_now(m: Marathon, app_id: str) -> list[dict[str, Any]]:
    """The app's running tasks that have their address."""
    tasks = m.get(f"/v2/apps{app_id}/tasks").json()["tasks"]
    return [t for t in tasks if t["state"] == "TASK_RUNNING" and t["ipAddresses"]]


def running(m: Marathon, app_id: str, count: int, timeout: float = 30.0) -> list[dict[str, Any]]:
    """Wait until exactly ``count`` tasks of the app run (and no other is listed)."""

    def check() -> list[dict[str, Any]] | None:
        tasks = m.get(f"/v2/apps{app_id}/tasks").json()["tasks"]
        ok = [t for t in tasks if t["state"] == "TASK_RUNNING" and t["ipAddresses"]]
        return ok if len(ok) == count and len(tasks) == count else None

    return wait_until(check, timeout, desc=f"{count} running task(s) of {app_id}")


def queue_entry(m: Marathon, app_id: str) -> dict[str, Any] | None:
    for entry in m.get("/v2/queue").json()["queue"]:
        if entry["app"]["id"] == app_id:
            return dict(entry)
    return None


def answers(ip: str, port: int = 8080) -> str:
    """What the task on ``ip:port`` answers (waiting until it listens)."""
    return wait_until(
        lambda: httpx.get(f"http://{ip}:{port}/", timeout=3).text.strip(),
        15,
        desc=f"an answer from {ip}:{port}",
    )


def launch_env(backend: EmbeddedBackend, agent: str, task_id: str) -> dict[str, str]:
    """The environment the agent gave a task (its run's launch record)."""
    for run in (backend.state_dir / "nodes" / agent / "work" / "meta" / "runs").iterdir():
        task = json.loads((run / "task.json").read_text())
        if task["info"]["task_id"]["value"] == task_id:
            return dict(json.loads((run / "launch.json").read_text())["env"])
    raise AssertionError(f"no run of {task_id} on {agent}")


def task_pid(backend: EmbeddedBackend, agent: str, task_id: str) -> int:
    for run in (backend.state_dir / "nodes" / agent / "work" / "meta" / "runs").iterdir():
        task = json.loads((run / "task.json").read_text())
        if task["info"]["task_id"]["value"] == task_id:
            return int((run / "task.pid").read_text())
    raise AssertionError(f"no run of {task_id} on {agent}")


# ---- fixtures ----------------------------------------------------------------------------------
def _connect(backend: EmbeddedBackend) -> Marathon:
    m = Marathon(str(backend.endpoints()["marathon"]))
    wait_until(lambda: m.info().get("frameworkId"), 30, desc="Marathon registered with Mesos")
    return m


@pytest.fixture()
def m(cluster: EmbeddedBackend) -> Iterator[Marathon]:
    client = _connect(cluster)
    client.cleanup()
    yield client
    client.cleanup()
    client.close()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBackend]:
    path = tmp_path_factory.mktemp("topology") / "tiny-ipam.yaml"
    path.write_text(TINY)
    yield from _cluster(tmp_path_factory, str(path), 50.0)


# ---- the default cluster -----------------------------------------------------------------------
def test_each_task_gets_its_own_address_serves_on_it_and_gives_it_back(
    cluster: EmbeddedBackend, m: Marathon
) -> None:
    """3 tasks on dcos: distinct IPs of their agents' slices, HTTP on IP:8080, network_infos in
    the master's state, addresses freed in the agents' IPAM files when scaled down to 1."""
    k = block_of(cluster)
    names = agent_names(cluster)
    slices = {"agent-1": 80, "agent-2": 81, "agent-3": 82, "public-agent-1": 83}
    m.post("/v2/apps", ip_app("/ipt", 3)).raise_for_status()
    tasks = running(m, "/ipt", 3)

    ips = {t["id"]: t["ipAddresses"][0]["ipAddress"] for t in tasks}
    assert len(set(ips.values())) == 3
    for t in tasks:
        agent = names[t["host"]]  # `host` stays the agent's address
        assert t["ipAddresses"] == [{"ipAddress": ips[t["id"]], "protocol": "IPv4"}]
        assert ips[t["id"]].startswith(f"127.{slices[agent]}.{k}.")
        assert t["ports"] == []  # no host port: the task is reached on its own address
        assert answers(ips[t["id"]]) == t["id"]
        assert held(cluster, agent)[ips[t["id"]]] == t["id"]
        env = launch_env(cluster, agent, t["id"])
        assert env["HOST"] == ips[t["id"]] and env["MESOS_CONTAINER_IP"] == ips[t["id"]]
        assert (env["PORT0"], env["PORT_8080"], env["PORT_HTTP"], env["PORTS"]) == (
            "8080",
            "8080",
            "8080",
            "",
        )

    embedded = m.get("/v2/apps", params={"embed": "apps.tasks"}).json()["apps"]
    listed = {t["id"]: t["ipAddresses"] for a in embedded if a["id"] == "/ipt" for t in a["tasks"]}
    assert listed == {tid: [{"ipAddress": ip, "protocol": "IPv4"}] for tid, ip in ips.items()}

    master = str(cluster.endpoints()["master"])
    state = httpx.get(f"{master}/master/state", timeout=5).json()
    by_id = {t["id"]: t for fw in state["frameworks"] for t in fw["tasks"]}
    master_tasks = httpx.get(f"{master}/master/tasks", timeout=5).json()["tasks"]
    for tid, ip in ips.items():
        want = [{"name": "dcos", "ip_addresses": [{"protocol": "IPv4", "ip_address": ip}]}]
        assert by_id[tid]["statuses"][-1]["container_status"]["network_infos"] == want
        assert by_id[tid]["container"]["network_infos"] == [{"name": "dcos"}]
        (listed_task,) = [t for t in master_tasks if t["id"] == tid]
        assert listed_task["statuses"][-1]["container_status"]["network_infos"] == want

    m.put("/v2/apps/ipt", {"instances": 1}).raise_for_status()
    (kept,) = running(m, "/ipt", 1)
    gone = {tid: ip for tid, ip in ips.items() if tid != kept["id"]}

    def released() -> bool:
        holders = {ip: tid for a in slices for ip, tid in held(cluster, a).items()}
        return holders.get(ips[kept["id"]]) == kept["id"] and not set(gone.values()) & set(holders)

    wait_until(released, 15, desc="the scaled-down tasks' addresses freed")
    assert answers(ips[kept["id"]]) == kept["id"]


def test_an_unknown_network_fails_the_launch_with_the_reason_in_the_queue(
    cluster: EmbeddedBackend, m: Marathon
) -> None:
    """Marathon accepts any network name (it does not know CNI networks); the agent refuses it."""
    app = ip_app("/blue", 1)
    app["networks"] = [{"mode": "container", "name": "blue"}]
    m.post("/v2/apps", app).raise_for_status()
    entry = wait_until(
        lambda: (e := queue_entry(m, "/blue")) and e.get("waitingReason") and e,
        20,
        desc="/blue queued with a waitingReason",
    )
    assert entry["waitingReason"] == (
        "Failed to allocate an IP address on network 'blue': unknown network; the networks of "
        "this cluster: dcos (a topology declares them under `networks`)"
    )
    failure = m.get("/v2/apps/blue").json()["app"]["lastTaskFailure"]
    assert failure["state"] == "TASK_FAILED" and failure["message"] == entry["waitingReason"]


def test_a_host_port_leads_from_the_agent_to_the_task(
    cluster: EmbeddedBackend, m: Marathon
) -> None:
    """hostPort 0 on a container network: Marathon allocates a host port (in PORT0, as Marathon
    does), the task binds its container port, and AGENT_IP:hostPort reaches it."""
    app = ip_app("/mapped", 1, cmd="playground workload web --port 8080")
    app["container"]["portMappings"] = [{"containerPort": 8080, "hostPort": 0, "name": "http"}]
    m.post("/v2/apps", app).raise_for_status()
    (task,) = running(m, "/mapped", 1)
    (host_port,) = task["ports"]
    ip = task["ipAddresses"][0]["ipAddress"]
    agent = agent_names(cluster)[task["host"]]
    env = launch_env(cluster, agent, task["id"])
    assert (env["PORT0"], env["PORT_8080"], env["PORT_HTTP"], env["HOST"]) == (
        str(host_port),
        str(host_port),
        str(host_port),
        ip,
    )
    assert answers(ip, 8080) == task["id"]
    assert answers(task["host"], host_port) == task["id"]
    master = str(cluster.endpoints()["master"])
    state = httpx.get(f"{master}/master/state", timeout=5).json()
    (mtask,) = [t for fw in state["frameworks"] for t in fw["tasks"] if t["id"] == task["id"]]
    assert mtask["container"]["network_infos"] == [
        {
            "name": "dcos",
            "port_mappings": [{"host_port": host_port, "container_port": 8080, "protocol": "tcp"}],
        }
    ]
    m.delete("/v2/apps/mapped").raise_for_status()

    def unmapped() -> bool:
        try:
            httpx.get(f"http://{task['host']}:{host_port}/", timeout=1)
        except httpx.ConnectError:
            return True  # refused: nothing listens on the host port any more
        except httpx.HTTPError:
            pass  # still accepted (and cut: the task is gone), not unmapped yet
        return False

    wait_until(unmapped, 15, desc="the host port unmapped when the task ended", ignore=())


# ---- a one-agent cluster with a pool of 2 ------------------------------------------------------
@pytest.mark.slow
def test_an_exhausted_pool_holds_a_launch_until_an_address_is_freed(
    tiny: EmbeddedBackend,
) -> None:
    """Pool of 2, 3 instances: 2 run, the third waits with the reason in /v2/queue; killing one
    lets it run on the freed address; a crashed agent keeps its live tasks' addresses (and maps
    their host ports again) and frees those of tasks that ended while it was down."""
    m = _connect(tiny)
    try:
        k = block_of(tiny)
        pool = {f"127.80.{k}.1", f"127.80.{k}.2"}
        # A long unreachableStrategy: at time scale 50 the master may call the crashed agent
        # unreachable (1.5 s) before it is back, and its tasks must not be replaced meanwhile.
        app = ip_app(
            "/pool",
            3,
            cmd="playground workload web --port 8080",
            unreachableStrategy={"inactiveAfterSeconds": 3600, "expungeAfterSeconds": 7200},
        )
        app["container"]["portMappings"][0]["hostPort"] = 0  # also reached on the agent
        m.post("/v2/apps", app).raise_for_status()
        first = wait_until(
            lambda: (ts := running_now(m, "/pool")) and len(ts) == 2 and ts,
            30,
            desc="2 running tasks of /pool",
        )
        assert {t["ipAddresses"][0]["ipAddress"] for t in first} == pool
        reason = (
            "Failed to allocate an IP address on network 'dcos': "
            f"the pool of agent-1 (127.80.{k}.0/24, size 2) is exhausted"
        )
        entry = wait_until(
            lambda: (e := queue_entry(m, "/pool")) and e.get("waitingReason") and e,
            20,
            desc="/pool queued with a waitingReason",
        )
        assert entry["count"] == 1 and entry["waitingReason"] == reason
        failure = m.get("/v2/apps/pool").json()["app"]["lastTaskFailure"]
        assert failure["state"] == "TASK_FAILED" and failure["message"] == reason
        assert held(tiny, "agent-1") == {t["ipAddresses"][0]["ipAddress"]: t["id"] for t in first}

        # Killing one (and scaling to 2) frees its address: the waiting launch gets it.
        # (force: the deployment of 3 instances still runs, and locks the app.)
        victim, survivor = first
        victim_ip = victim["ipAddresses"][0]["ipAddress"]
        m.delete(
            f"/v2/apps/pool/tasks/{victim['id']}", params={"scale": "true", "force": "true"}
        ).raise_for_status()
        tasks = wait_until(
            lambda: (
                (ts := running_now(m, "/pool"))
                and len(ts) == 2
                and victim["id"] not in {t["id"] for t in ts}
                and ts
            ),
            30,
            desc="the waiting instance running instead of the killed one",
        )
        (newcomer,) = [t for t in tasks if t["id"] != survivor["id"]]
        assert newcomer["ipAddresses"] == [{"ipAddress": victim_ip, "protocol": "IPv4"}]
        assert answers(victim_ip) == newcomer["id"]
        wait_until(lambda: queue_entry(m, "/pool") is None, 10, desc="an empty queue")
        assert held(tiny, "agent-1") == {
            victim_ip: newcomer["id"],
            survivor["ipAddresses"][0]["ipAddress"]: survivor["id"],
        }

        # The agent crashes; meanwhile the newcomer's process dies. On recovery the survivor
        # keeps its address and the newcomer's is freed (its relaunch gets it again).
        rec = tiny.cluster.record()
        agent = psutil.Process(int(rec["nodes"]["agent-1"]["pid"]))
        agent.send_signal(signal.SIGKILL)
        agent.wait(5)
        os.killpg(task_pid(tiny, "agent-1", newcomer["id"]), signal.SIGKILL)
        tiny.start("agent-1")
        survivor_ip = survivor["ipAddresses"][0]["ipAddress"]

        def recovered() -> dict[str, str] | None:
            ids = {t["id"] for t in running_now(m, "/pool")}
            if len(ids) == 2 and survivor["id"] in ids and newcomer["id"] not in ids:
                return held(tiny, "agent-1")
            return None

        holders = wait_until(recovered, 40, desc="the newcomer relaunched after the recovery")
        assert holders[survivor_ip] == survivor["id"]
        relaunched = holders[victim_ip]
        assert (
            relaunched != newcomer["id"]
            and relaunched.rsplit(".", 1)[0] == newcomer["id"].rsplit(".", 1)[0]
        )  # the same instance, a new incarnation
        assert answers(survivor_ip) == survivor["id"]
        assert answers(survivor["host"], survivor["ports"][0]) == survivor["id"]
        assert answers(victim_ip) == relaunched
    finally:
        m.cleanup()
        m.close()
