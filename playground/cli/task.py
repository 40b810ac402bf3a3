"""``playground task list|logs``: what runs on the agents."""

from __future__ import annotations

import sys
import time
from typing import Any

import click

from playground.cli.common import emit_json, handle_errors, json_option, state_dir, state_dir_option
from playground.client import AgentClient, MasterClient
from playground.cluster.lifecycle import Cluster
from playground.errors import PlaygroundError


def _master(cluster: Cluster) -> MasterClient:
    st = cluster.status()
    url = st["endpoints"].get("master")
    if not url:
        raise PlaygroundError(
            "no leading master", hint="is the cluster up? see `playground status`"
        )
    return MasterClient(url)


@click.group()
def task() -> None:
    """Tasks running on the agents."""


@task.command("list")
@click.option("--all", "show_all", is_flag=True, help="Include completed tasks.")
@json_option
@state_dir_option
@handle_errors
def list_(show_all: bool, as_json: bool) -> None:
    """List tasks: id, framework, state, agent host."""
    with _master(Cluster(state_dir())) as m:
        state = m.state_raw()
    hosts = {s["id"]: s["hostname"] for s in state["slaves"]}
    rows: list[dict[str, Any]] = []
    for fw in state["frameworks"]:
        groups = [fw["tasks"], fw.get("unreachable_tasks", [])] + (
            [fw["completed_tasks"]] if show_all else []
        )
        for tasks in groups:
            for t in tasks:
                rows.append(
                    {
                        "id": t["id"],
                        "name": t["name"],
                        "framework": fw["name"],
                        "state": t["state"],
                        "agent_id": t["slave_id"],
                        "host": hosts.get(t["slave_id"]),
                    }
                )
    if as_json:
        emit_json(rows)
        return
    if not rows:
        click.echo("no tasks")
        return
    w = max([len("TASK")] + [len(r["id"]) for r in rows]) + 2
    click.echo(f"{'TASK':<{w}}{'FRAMEWORK':<18}{'STATE':<18}HOST")
    for r in rows:
        click.echo(f"{r['id']:<{w}}{r['framework']:<18}{r['state']:<18}{r['host'] or '-'}")


def _find_sandbox(state: dict[str, Any], task_id: str) -> tuple[str, str]:
    """(agent URL, sandbox directory) of a task, by id or unique id prefix."""
    matches = []
    for s in state["slaves"]:
        matches.append(s)
    candidates: list[tuple[dict[str, Any], dict[str, Any]]] = []
    for fw in state["frameworks"] + state.get("completed_frameworks", []):
        for t in fw["tasks"] + fw.get("completed_tasks", []):
            if t["id"] == task_id or t["id"].startswith(task_id):
                candidates.append((fw, t))
    if not candidates:
        raise PlaygroundError(f"no task {task_id!r}", hint="see `playground task list --all`")
    exact = [c for c in candidates if c[1]["id"] == task_id]
    if exact:
        candidates = exact[-1:]
    if len({c[1]["id"] for c in candidates}) > 1:
        ids = ", ".join(sorted({c[1]["id"] for c in candidates}))
        raise PlaygroundError(f"{task_id!r} matches several tasks: {ids}")
    fw, t = candidates[-1]
    agent = next((s for s in matches if s["id"] == t["slave_id"]), None)
    if agent is None:
        raise PlaygroundError(
            f"the agent of task {t['id']} is not registered", hint="see `playground status`"
        )
    url = "http://" + agent["pid"].split("@", 1)[1]
    with AgentClient(url) as a:
        astate = a.state()
    for afw in astate["frameworks"]:
        for ex in afw["executors"] + afw["completed_executors"]:
            if ex["id"] == t["id"]:
                return url, ex["directory"]
    raise PlaygroundError(f"the sandbox of task {t['id']} is gone (garbage collected)")


@task.command()
@click.argument("task_id", metavar="TASK")
@click.option("--stderr", "use_stderr", is_flag=True, help="Show stderr instead of stdout.")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new output.")
@state_dir_option
@handle_errors
def logs(task_id: str, use_stderr: bool, follow: bool) -> None:
    """Print a task's stdout (or stderr) from its sandbox on the agent."""
    with _master(Cluster(state_dir())) as m:
        state = m.state_raw()
    url, sandbox = _find_sandbox(state, task_id)
    path = f"{sandbox}/{'stderr' if use_stderr else 'stdout'}"
    offset = 0
    with AgentClient(url) as a:
        while True:
            data, off = a.read(path, offset)
            if data:
                sys.stdout.write(data)
                sys.stdout.flush()
                offset = off + len(data.encode())
            if not follow:
                return
            try:
                time.sleep(0.3)
            except KeyboardInterrupt:
                return
