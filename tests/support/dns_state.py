"""A hand-built ``/master/state`` in the embedded master's shape, for the DNS unit tests.

Field for field what ``playground.mesos.master.Master.state()`` serves (Mesos's v0 names):
three agents ``...-S0..S2`` on 127.77.1.20-22, master-2 leading among three masters,
Marathon (an HTTP framework, empty ``pid``) running ``/prod/web`` twice with DiscoveryInfo
and a container IP task, plus a libprocess framework with an awkward name.
"""

from __future__ import annotations

from typing import Any

MASTER_ID = "6f2c1b0e-0c4e-4a59-9b0e-5d1d8c7f9a10"
AGENT_IPS = ["127.77.1.20", "127.77.1.21", "127.77.1.22"]
MASTERS = ["127.77.1.10:5050", "127.77.1.11:5050", "127.77.1.12:5050"]
LEADER = "master@127.77.1.11:5050"
MARATHON_IP = "127.77.1.3"


def agent_id(i: int) -> str:
    return f"{MASTER_ID}-S{i}"


def slave(i: int) -> dict[str, Any]:
    ip = AGENT_IPS[i]
    return {
        "id": agent_id(i),
        "pid": f"slave(1)@{ip}:5051",
        "hostname": ip,
        "port": 5051,
        "registered_time": 1_700_000_000.0,
        "resources": {"cpus": 4.0, "disk": 20000.0, "gpus": 0.0, "mem": 4096.0},
        "attributes": {"zone": "abc"[i]},
        "active": True,
        "deactivated": False,
        "version": "1.11.0",
        "capabilities": [],
    }


def status(state: str, ts: float, ip: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {"state": state, "timestamp": ts}
    if ip is not None:
        out["container_status"] = {
            "container_id": {"value": f"c-{ts}"},
            "network_infos": [{"ip_addresses": [{"protocol": "IPv4", "ip_address": ip}]}],
        }
    return out


def task(
    task_id: str,
    name: str,
    agent: int,
    state: str = "TASK_RUNNING",
    ports: str | None = None,
    discovery: dict[str, Any] | None = None,
    container_ip: str | None = None,
) -> dict[str, Any]:
    ip = container_ip or AGENT_IPS[agent]
    statuses = [status("TASK_STARTING", 1.0, ip)]
    if state != "TASK_STAGING":
        statuses.append(status("TASK_RUNNING", 2.0, ip))
    out: dict[str, Any] = {
        "id": task_id,
        "name": name,
        "framework_id": f"{MASTER_ID}-0000",
        "executor_id": "",
        "slave_id": agent_id(agent),
        "state": state,
        "resources": {"cpus": 0.1, "disk": 0.0, "gpus": 0.0, "mem": 32.0},
        "role": "*",
        "statuses": statuses,
    }
    if ports:
        out["resources"]["ports"] = ports
    if discovery is not None:
        out["discovery"] = discovery
    return out


def web_discovery(port0: int, port1: int) -> dict[str, Any]:
    """What the kit's Marathon sends for ``/prod/web`` with a named TCP and a UDP port."""
    return {
        "visibility": "FRAMEWORK",
        "name": "web.prod",
        "ports": {
            "ports": [
                {"number": port0, "protocol": "tcp", "name": "http"},
                {"number": port1, "protocol": "udp"},
            ]
        },
    }


WEB_TASKS = [
    ("prod_web.instance-0a1b2c3d-1111-4222-8333-444455556666._app.1", 0, 31001, 31002),
    ("prod_web.instance-9f8e7d6c-aaaa-4bbb-8ccc-ddddeeeeffff._app.1", 1, 31010, 31011),
]
BATCH_ID = "batch.5e7c0b2a-7b0d-11ee-b962-0242ac120002"
CT_ID = "ct.1c3a2b4d-7b0d-11ee-b962-0242ac120002"
LONG_NAME = "a-very-long-service-name-that-goes-on-and-on-and-on-past-the-limit-of-dns"


def master_state(leader: str | None = LEADER) -> dict[str, Any]:
    tasks = [
        task(
            tid,
            "web.prod",
            agent,
            ports=f"[{p0}-{p1}]",
            discovery=web_discovery(p0, p1),
        )
        for tid, agent, p0, p1 in WEB_TASKS
    ]
    tasks += [
        # No DiscoveryInfo: the name is used, underscores and dots become dashes.
        task(BATCH_ID, "My_Batch.Job", 2, ports="[31005-31005]"),
        # A container IP (netinfo comes first in IPSources).
        task(CT_ID, "ct", 2, container_ip="10.0.4.1"),
        task("long.1", LONG_NAME, 0),
        # Not running, or on an agent the master does not know: no records.
        task("staging.1", "staging", 0, state="TASK_STAGING"),
        task("killing.1", "killing", 1, state="TASK_KILLING"),
        {**task("lost.1", "lost", 0), "slave_id": f"{MASTER_ID}-S99"},
    ]
    marathon = {
        "id": f"{MASTER_ID}-0000",
        "name": "marathon",
        "pid": "",
        "hostname": MARATHON_IP,
        "active": True,
        "connected": True,
        "tasks": tasks,
        "unreachable_tasks": [],
        "completed_tasks": [task("done.1", "done", 0, state="TASK_FINISHED")],
    }
    chronos = {
        "id": f"{MASTER_ID}-0001",
        "name": "Chronos With A Space AND MIXED.case",
        "pid": "scheduler-7a1@127.77.1.9:25501",
        "hostname": "127.77.1.9",
        "active": True,
        "connected": True,
        "tasks": [task("box.1", "some-box", 1)],
        "unreachable_tasks": [],
        "completed_tasks": [],
    }
    out: dict[str, Any] = {
        "version": "1.11.0",
        "id": MASTER_ID,
        "pid": "master@127.77.1.10:5050",
        "hostname": "127.77.1.10",
        "slaves": [slave(i) for i in range(3)],
        "frameworks": [marathon, chronos],
        "completed_frameworks": [],
        "orphan_tasks": [],
        "unregistered_frameworks": [],
    }
    if leader:
        host, _, port = leader.partition("@")[2].partition(":")
        out["leader"] = leader
        out["leader_info"] = {
            "id": "leader-id",
            "pid": leader,
            "port": int(port),
            "hostname": host,
            "address": {"hostname": host, "ip": host, "port": int(port)},
        }
    return out
