"""Soak: 50 random faults against a multi-app workload; afterwards the cluster converges.

The chaos monkey (``playground.chaos.monkey``) breaks one node at a time -- crash, stop,
partition or agent restart of an agent, or of Marathon -- and heals it after a random
while. Afterwards: every app is back at its instance count (and healthy), Mesos and
Marathon agree on the running tasks, no task id is doubled, no task process runs that
Mesos does not list as running, every fault is reverted and every ticket is resolved.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import httpx
import psutil
import pytest

from playground.backends import EmbeddedBackend
from playground.chaos.faults import Faults
from playground.chaos.monkey import Monkey
from playground.cluster import procs
from tests.support.marathon_http import HTTP_CMD, SLEEP_CMD, Marathon, app_def, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FAULTS = 50
INTERVAL = 1.2  # wall seconds between faults (time scale 50: a minute of cluster time)


def running_mesos_tasks(cluster: EmbeddedBackend) -> list[str]:
    master = cluster.endpoints()["master"]
    tasks = httpx.get(f"{master}/master/tasks?limit=10000", timeout=5).json()["tasks"]
    return [t["id"] for t in tasks if t["state"] == "TASK_RUNNING"]


def task_processes(cluster: EmbeddedBackend) -> dict[int, str]:
    """Live processes of this cluster's tasks: pid -> the Mesos task id in their environment."""
    out: dict[int, str] = {}
    prefix = f"{cluster.state_dir}|"
    for p in psutil.process_iter():
        try:
            env = p.environ()
        except (psutil.Error, OSError):
            continue
        mark = env.get(procs.MARK_ENV, "")
        if mark.startswith(prefix) and env.get("MESOS_TASK_ID") and p.is_running():
            if p.status() != psutil.STATUS_ZOMBIE:
                out[p.pid] = env["MESOS_TASK_ID"]
    return out


def test_fifty_random_faults_then_the_cluster_converges(cluster: EmbeddedBackend) -> None:
    m = Marathon(str(cluster.endpoints()["marathon"]))
    wait_until(lambda: m.info().get("frameworkId"), 30, desc="Marathon registered")
    m.cleanup()
    check = {
        "protocol": "HTTP",
        "path": "/",
        "portIndex": 0,
        "gracePeriodSeconds": 30,
        "intervalSeconds": 10,
        "timeoutSeconds": 10,
        "maxConsecutiveFailures": 3,
    }
    apps = {
        "/soak/web": app_def(
            "/soak/web",
            HTTP_CMD,
            2,
            healthChecks=[check],
            constraints=[["hostname", "UNIQUE"]],
            acceptedResourceRoles=["*"],
        ),
        "/soak/zoned": app_def("/soak/zoned", SLEEP_CMD, 3, constraints=[["@zone", "GROUP_BY"]]),
        "/soak/plain": app_def("/soak/plain", SLEEP_CMD, 4),
    }
    for app in apps.values():
        m.deploy(app, healthy="healthChecks" in app, timeout=60)

    faults = Faults(cluster)
    monkey = Monkey(
        faults, interval=INTERVAL, targets=("agent", "public-agent", "marathon"), seed=7
    )
    started = time.monotonic()
    try:
        while len(monkey.done) < FAULTS:
            assert time.monotonic() - started < 400, f"only {len(monkey.done)} faults in 400 s"
            monkey.step()
            deadline = time.monotonic() + INTERVAL
            while time.monotonic() < deadline:
                monkey.heal_due()
                time.sleep(0.1)
    finally:
        monkey.heal_due(everything=True)
        faults.heal()
    assert len(monkey.done) == FAULTS
    kinds = Counter(d["how"] for d in monkey.done)
    assert len(kinds) >= 3, kinds  # a mix of crash, stop, partition, agent-restart

    # Every fault reverted, on the registry and on the timeline.
    assert faults.active() == []
    events = cluster.cluster.state.events(kinds=("fault.",))
    started_ids = {e["fault"] for e in events if e["kind"] == "fault.started"}
    reverted_ids = {e["fault"] for e in events if e["kind"] == "fault.reverted"}
    assert started_ids and started_ids <= reverted_ids
    assert all(n.state == "running" for n in cluster.nodes())

    # Every app at its instance count, the web app healthy.
    def converged() -> bool:
        for app_id, app in apps.items():
            a = m.app(app_id)
            if a["tasksRunning"] != app["instances"] or a["tasksStaged"]:
                return False
            if "healthChecks" in app and a["tasksHealthy"] != app["instances"]:
                return False
        return not m.deployments()

    wait_until(converged, 90, interval=0.5, desc="every app back at its instance count")

    # Mesos and Marathon agree; no task id twice; no task process Mesos does not run.
    def agreed() -> Any:
        marathon_ids = [t["id"] for a in apps for t in m.tasks(a) if t["state"] == "TASK_RUNNING"]
        mesos_ids = running_mesos_tasks(cluster)
        ours = [t for t in mesos_ids if t.startswith("soak_")]
        if sorted(ours) != sorted(marathon_ids):
            return None
        return marathon_ids, mesos_ids

    # Marathon kills tasks it does not know at its next reconciliation (12 s here).
    marathon_ids, mesos_ids = wait_until(agreed, 40, interval=0.5, desc="Mesos and Marathon agree")
    assert len(marathon_ids) == len(set(marathon_ids)) == sum(a["instances"] for a in apps.values())
    assert len(mesos_ids) == len(set(mesos_ids))
    instances = [t.split("._app.")[0] for t in marathon_ids]
    assert len(instances) == len(set(instances)), "an instance runs two tasks"

    def no_orphans() -> dict[int, str] | None:
        orphans = {
            pid: tid
            for pid, tid in task_processes(cluster).items()
            if tid not in set(running_mesos_tasks(cluster))
        }
        return None if orphans else {}

    wait_until(lambda: no_orphans() is not None, 20, desc="no orphan task processes")

    # Every ticket the faults opened is resolved.
    monitor = cluster.endpoints()["monitor"]
    wait_until(
        lambda: httpx.get(f"{monitor}/v1/tickets?open=true", timeout=5).json() == [],
        60,
        interval=0.5,
        desc="every ticket resolved",
    )
    tickets = httpx.get(f"{monitor}/v1/tickets", timeout=5).json()
    assert tickets, "50 faults opened no ticket at all"
    m.cleanup()
    m.close()
