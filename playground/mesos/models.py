"""Typed models of the Mesos JSON the kit serves and reads (the v0 endpoints' shapes).

Field names and types follow Mesos 1.11; the reference payloads in the project's
shared references parse through these models, and so do the embedded master's answers.
Optional fields default to absent, never to null.
"""

from __future__ import annotations

from typing import Any

import msgspec


class Base(msgspec.Struct, omit_defaults=True, kw_only=True):
    pass


class TaskStatusV0(Base, kw_only=True):
    state: str
    timestamp: float
    container_status: dict[str, Any] | None = None
    healthy: bool | None = None


class Task(Base, kw_only=True):
    id: str
    name: str
    framework_id: str
    executor_id: str
    slave_id: str
    state: str
    resources: dict[str, Any]
    role: str | None = None
    statuses: list[TaskStatusV0] = []
    labels: list[dict[str, Any]] | None = None
    discovery: dict[str, Any] | None = None
    container: dict[str, Any] | None = None
    health_check: dict[str, Any] | None = None


class Agent(Base, kw_only=True):
    id: str
    pid: str
    hostname: str
    port: int | None = None
    registered_time: float | None = None
    reregistered_time: float | None = None
    resources: dict[str, Any]
    used_resources: dict[str, Any] | None = None
    offered_resources: dict[str, Any] | None = None
    reserved_resources: dict[str, Any] | None = None
    unreserved_resources: dict[str, Any] | None = None
    attributes: dict[str, Any] = {}
    active: bool
    deactivated: bool | None = None
    version: str | None = None
    domain: dict[str, Any] | None = None
    capabilities: list[str] | None = None


class Framework(Base, kw_only=True):
    id: str
    name: str
    active: bool
    connected: bool | None = None
    recovered: bool | None = None
    user: str | None = None
    hostname: str | None = None
    role: str | None = None
    roles: list[str] | None = None
    capabilities: list[str] | None = None
    failover_timeout: float | None = None
    checkpoint: bool | None = None
    registered_time: float | None = None
    reregistered_time: float | None = None
    unregistered_time: float | None = None
    used_resources: dict[str, Any] | None = None
    offered_resources: dict[str, Any] | None = None
    tasks: list[Task] = []
    unreachable_tasks: list[Task] = []
    completed_tasks: list[Task] = []
    offers: list[dict[str, Any]] = []
    executors: list[dict[str, Any]] = []


class MasterState(Base, kw_only=True):
    version: str
    git_sha: str | None = None
    git_tag: str | None = None
    git_branch: str | None = None
    build_date: str
    build_time: float
    build_user: str
    start_time: float
    elected_time: float | None = None
    id: str
    pid: str
    hostname: str
    activated_slaves: float
    deactivated_slaves: float
    unreachable_slaves: float | None = None
    cluster: str | None = None
    leader: str | None = None
    leader_info: dict[str, Any] | None = None
    log_dir: str | None = None
    external_log_file: str | None = None
    flags: dict[str, str]
    capabilities: list[str] | None = None
    slaves: list[Agent]
    frameworks: list[Framework]
    completed_frameworks: list[Framework]
    orphan_tasks: list[Task] = []
    unregistered_frameworks: list[Any] = []


class Version(Base, kw_only=True):
    version: str
    build_date: str
    build_time: float
    build_user: str
    git_sha: str | None = None
    git_tag: str | None = None
    git_branch: str | None = None


def decode(data: bytes | str, typ: type[Any]) -> Any:
    """Decode JSON into ``typ``; unknown fields are kept out, missing required ones fail."""
    return msgspec.json.decode(data, type=typ)


def convert(obj: Any, typ: type[Any]) -> Any:
    return msgspec.convert(obj, type=typ)
