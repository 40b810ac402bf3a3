"""Dynamic reservations and persistent volumes: the offer operations of Mesos.

``RESERVE``, ``UNRESERVE``, ``CREATE`` and ``DESTROY`` (docs/reservation.md,
docs/persistent-volume.md) change what an agent's resources are: unreserved resources
become reserved for a role (with the reserver's principal and labels), reserved disk
becomes a persistent volume, and back. The master validates each operation as Mesos does
(``master/validation.cpp``, with its messages) and applies it to the offered resources;
the agent checkpoints the result (its *checkpointed resources*: every dynamic reservation
and persistent volume) and keeps a directory per volume under its work directory, so a
rebuilt agent with a clean disk has none.

Every function here is pure: it takes resources and returns new ones or raises
:class:`OperationError` with the message Mesos gives.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from playground.cluster.statedir import atomic_write
from playground.mesos.resources import Resource, ResourceGrammarError, Resources

OPERATIONS = ("RESERVE", "UNRESERVE", "CREATE", "DESTROY")


class OperationError(ValueError):
    """An offer operation (or operator call) that Mesos would refuse."""


def _describe(r: Resource) -> str:
    return Resources([r]).to_text() or r.name


def _parse(items: Any, what: str) -> list[Resource]:
    if not isinstance(items, list) or not items:
        raise OperationError(f"Invalid resources: expecting '{what}' to hold resources")
    out: list[Resource] = []
    for d in items:
        if not isinstance(d, dict):
            raise OperationError("Invalid resources: a resource must be a JSON object")
        try:
            out.append(Resource.from_v1(d))
        except (ResourceGrammarError, KeyError, TypeError, ValueError) as exc:
            raise OperationError(f"Invalid resources: {exc}") from None
    return out


def unreserved(r: Resource) -> Resource:
    """The resource as it was before any dynamic reservation (role ``*``, no disk info)."""
    out = r.copy()
    out.role = "*"
    out.reservation = None
    out.principal = None
    out.labels = None
    out.extra.pop("disk", None)
    return out


def stripped(r: Resource) -> Resource:
    """A persistent volume without its persistence and volume: the reserved disk under it."""
    out = r.copy()
    disk = dict(out.extra.get("disk") or {})
    disk.pop("persistence", None)
    disk.pop("volume", None)
    if disk:
        out.extra["disk"] = disk
    else:
        out.extra.pop("disk", None)
    return out


def _validate_disk_info(r: Resource) -> None:
    """``validateDiskInfo`` of ``master/validation.cpp``."""
    disk = r.disk
    if not disk:
        return
    if "persistence" in disk:
        if r.role == "*":
            raise OperationError(
                "Invalid resources: Invalid DiskInfo: "
                "Persistent volumes cannot be created from unreserved resources"
            )
        volume = disk.get("volume")
        if not isinstance(volume, dict):
            raise OperationError(
                "Invalid resources: Invalid DiskInfo: "
                "Expecting 'volume' to be set for persistent volume"
            )
        if volume.get("host_path"):
            raise OperationError(
                "Invalid resources: Invalid DiskInfo: "
                "Expecting 'host_path' to be unset for persistent volume"
            )
        pid = str((disk.get("persistence") or {}).get("id", ""))
        if any(c in "/\\" or ord(c) < 32 or ord(c) == 127 for c in pid):
            raise OperationError(
                f"Invalid resources: Invalid DiskInfo: Persistence ID '{pid}' contains "
                "invalid characters"
            )
        if pid in ("", ".", ".."):
            # Mesos leaves this to a TODO; the agent makes a directory of the id, so the
            # kit refuses ids that name no directory of their own.
            raise OperationError(
                f"Invalid resources: Invalid DiskInfo: Persistence ID '{pid}' cannot name "
                "a volume directory (use a non-empty id other than '.' and '..')"
            )
    elif "volume" in disk:
        raise OperationError(
            "Invalid resources: Invalid DiskInfo: Non-persistent volume not supported"
        )


def _validate_persistent_volumes(volumes: list[Resource]) -> None:
    """``validatePersistentVolume``: every resource is a RW persistent volume."""
    for v in volumes:
        disk = v.disk
        if not disk:
            raise OperationError(
                f"Not a persistent volume: Resource {_describe(v)} does not have DiskInfo"
            )
        if "persistence" not in disk:
            raise OperationError("Not a persistent volume: 'persistence' is not set in DiskInfo")
        if not isinstance(disk.get("volume"), dict):
            raise OperationError(
                "Not a persistent volume: Expecting 'volume' to be set for persistent volume"
            )
        if disk["volume"].get("mode", "RW") == "RO":
            raise OperationError(
                "Not a persistent volume: Read-only persistent volume not supported"
            )


def _unique_persistence_ids(resources: Iterable[Resource]) -> None:
    seen: set[tuple[str, str]] = set()
    for r in resources:
        pid = r.persistence_id
        if pid is None:
            continue
        if (r.role, pid) in seen:
            raise OperationError(f"Persistence ID '{pid}' is not unique")
        seen.add((r.role, pid))


def validate_reserve(
    items: Any, principal: str | None, roles: Iterable[str] | None = None
) -> list[Resource]:
    """``operation::validate(Reserve)``: dynamically reserved, the caller's principal, a role
    of the framework (``roles``; ``None`` for operators), no persistent volumes."""
    resources = _parse(items, "resources")
    allowed = set(roles) if roles is not None else None
    for r in resources:
        _validate_disk_info(r)
        if not r.is_dynamically_reserved:
            raise OperationError(f"Resource {_describe(r)} is not dynamically reserved")
        if principal is not None:
            if r.principal is None:
                raise OperationError(
                    f"A reserve operation was attempted by principal '{principal}', but there "
                    "is a reserved resource in the request with no principal set in "
                    "`ReservationInfo`"
                )
            if r.principal != principal:
                raise OperationError(
                    f"A reserve operation was attempted by principal '{principal}', but there "
                    f"is a reserved resource in the request with principal '{r.principal}' set "
                    "in `ReservationInfo`"
                )
        if allowed is not None and r.role not in allowed:
            raise OperationError(
                f"A reserve operation was attempted for a role '{r.role}' that the framework "
                f"is not subscribed to (its roles: {', '.join(sorted(allowed)) or 'none'})"
            )
        if r.is_persistent_volume:
            raise OperationError(f"A persistent volume {_describe(r)} must already be reserved")
    return resources


def validate_unreserve(items: Any) -> list[Resource]:
    """``operation::validate(Unreserve)``: dynamic reservations, never a volume directly."""
    resources = _parse(items, "resources")
    for r in resources:
        _validate_disk_info(r)
        if not r.is_dynamically_reserved:
            raise OperationError(f"Resource {_describe(r)} is not dynamically reserved")
        if r.is_persistent_volume:
            raise OperationError(
                f"A dynamically reserved persistent volume {_describe(r)} cannot be unreserved "
                "directly. Please destroy the persistent volume first then unreserve the resource"
            )
    return resources


def validate_create(items: Any, checkpointed: Resources, principal: str | None) -> list[Resource]:
    """``operation::validate(Create)``: RW persistent volumes on reserved disk, ids unique
    per role on the agent, the creator's principal."""
    volumes = _parse(items, "volumes")
    for v in volumes:
        _validate_disk_info(v)
    _validate_persistent_volumes(volumes)
    _unique_persistence_ids([*checkpointed, *volumes])
    if principal is not None:
        for v in volumes:
            creator = (v.disk.get("persistence") or {}).get("principal")
            if creator is None:
                raise OperationError(
                    f"Create volume operation has been attempted by principal '{principal}', "
                    "but there is a volume in the operation with no principal set in "
                    "'DiskInfo.Persistence'"
                )
            if creator != principal:
                raise OperationError(
                    f"Create volume operation has been attempted by principal '{principal}', "
                    f"but there is a volume in the operation with principal '{creator}' set in "
                    "'DiskInfo.Persistence'"
                )
    return volumes


def validate_destroy(items: Any, checkpointed: Resources, used: Resources) -> list[Resource]:
    """``operation::validate(Destroy)``: existing volumes that no task uses."""
    volumes = _parse(items, "volumes")
    for v in volumes:
        _validate_disk_info(v)
    _validate_persistent_volumes(volumes)
    if not checkpointed.contains(Resources(volumes)):
        raise OperationError("Persistent volumes not found")
    for v in volumes:
        if used.contains(Resources([v])):
            raise OperationError("Persistent volumes in use")
    return volumes


# -- applying operations ------------------------------------------------------------------


def apply(kind: str, pool: Resources, resources: list[Resource]) -> Resources:
    """``Resources::apply``: the pool after the operation, or :class:`OperationError`."""
    if kind == "RESERVE":
        before = Resources(unreserved(r) for r in resources)
        if not pool.contains(before):
            raise OperationError(
                f"Invalid RESERVE Operation: {pool.to_text()} does not contain {before.to_text()}"
            )
        return pool - before + Resources(resources)
    if kind == "UNRESERVE":
        wanted = Resources(resources)
        if not pool.contains(wanted):
            raise OperationError(
                f"Invalid UNRESERVE Operation: {pool.to_text()} does not contain {wanted.to_text()}"
            )
        return pool - wanted + Resources(unreserved(r) for r in resources)
    if kind == "CREATE":
        disk = Resources(stripped(r) for r in resources)
        if not pool.contains(disk):
            raise OperationError(
                f"Invalid CREATE Operation: {pool.to_text()} does not contain {disk.to_text()}"
            )
        return pool - disk + Resources(resources)
    if kind == "DESTROY":
        for v in resources:
            if not pool.contains(Resources([v])):
                raise OperationError(
                    f"Invalid DESTROY Operation: Persistent volume {_describe(v)} does not exist"
                )
        return pool - Resources(resources) + Resources(stripped(r) for r in resources)
    raise OperationError(f"Unsupported operation {kind}")


def checkpointed_of(total: Resources) -> Resources:
    """The resources an agent checkpoints: dynamic reservations and persistent volumes."""
    return Resources(r for r in total if r.is_dynamically_reserved or r.is_persistent_volume)


def total_with(static: Resources, checkpointed: Resources) -> Resources:
    """An agent's total: its static resources with the checkpointed ones carved out of them.

    Checkpointed resources the static resources cannot hold (the agent was restarted with
    smaller ``--resources``) are dropped, as Mesos refuses such an agent; see
    :func:`fits`.
    """
    before = Resources(unreserved(r) for r in checkpointed)
    return static - before + checkpointed


def fits(static: Resources, checkpointed: Resources) -> bool:
    return static.contains(Resources(unreserved(r) for r in checkpointed))


def volumes_of(resources: Iterable[Resource]) -> list[Resource]:
    return [r for r in resources if r.is_persistent_volume]


def volume_dir(work: Path, role: str, persistence_id: str) -> Path:
    """Where an agent keeps a persistent volume: ``<work>/volumes/roles/<role>/<id>``."""
    return work / "volumes" / "roles" / role / persistence_id


def load_checkpoint(path: Path) -> Resources:
    """The checkpointed resources an agent wrote (none when the file is missing)."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return Resources()
    return Resources.from_v1(data.get("resources") or [])


def dump_checkpoint(resources: Resources) -> bytes:
    return json.dumps({"resources": resources.to_v1()}, indent=1).encode()


_FIELDS = {
    "RESERVE": ("reserve", "resources"),
    "UNRESERVE": ("unreserve", "resources"),
    "CREATE": ("create", "volumes"),
    "DESTROY": ("destroy", "volumes"),
}


def operation_items(op: dict[str, Any]) -> Any:
    """The resources an ``Offer.Operation`` names (``reserve.resources``, ``create.volumes``)."""
    kind = str(op.get("type"))
    outer, inner = _FIELDS[kind]
    body = op.get(outer)
    if not isinstance(body, dict):
        raise OperationError(f"Expecting '{outer}' to be present")
    return body.get(inner)


def validate_operation(
    kind: str,
    items: Any,
    *,
    checkpointed: Resources,
    used: Resources,
    principal: str | None,
    roles: Iterable[str] | None,
) -> list[Resource]:
    """Validate one operation as the master does before applying it."""
    if kind == "RESERVE":
        return validate_reserve(items, principal, roles)
    if kind == "UNRESERVE":
        return validate_unreserve(items)
    if kind == "CREATE":
        return validate_create(items, checkpointed, principal)
    if kind == "DESTROY":
        return validate_destroy(items, checkpointed, used)
    raise OperationError(f"Unsupported operation {kind}")


# -- the agent's side -----------------------------------------------------------------------


class AgentVolumes:
    """An agent's checkpointed resources and the directories of its persistent volumes.

    The checkpoint is ``<work>/meta/resources.json`` (written atomically, fsynced), the
    volumes live in ``<work>/volumes/roles/<role>/<persistence id>``: both inside the work
    directory, so they survive an agent restart and a ``rebuild --keep-disk`` and are gone
    after a clean-disk rebuild.
    """

    def __init__(self, work: Path, meta: Path) -> None:
        self.work = work
        self.path = meta / "resources.json"
        self.checkpointed = load_checkpoint(self.path)

    def volume_path(self, r: Resource) -> Path:
        return volume_dir(self.work, r.role, str(r.persistence_id))

    def update(self, resources: Resources) -> tuple[list[Path], list[Path]]:
        """Checkpoint ``resources``: create new volumes' directories, delete destroyed ones.

        Returns the directories created and deleted.
        """
        old = {(r.role, r.persistence_id): r for r in volumes_of(self.checkpointed)}
        new = {(r.role, r.persistence_id): r for r in volumes_of(resources)}
        created: list[Path] = []
        for key, r in new.items():
            path = self.volume_path(r)
            if key not in old or not path.is_dir():
                path.mkdir(parents=True, exist_ok=True)
                created.append(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(self.path, dump_checkpoint(resources))
        self.checkpointed = resources.copy()
        deleted: list[Path] = []
        for key, r in old.items():
            if key not in new:
                path = self.volume_path(r)
                root = (self.work / "volumes").resolve()
                if root in path.resolve().parents:
                    shutil.rmtree(path, ignore_errors=True)
                    deleted.append(path)
        return created, deleted

    def mount(self, task_resources: list[dict[str, Any]], sandbox: Path) -> str | None:
        """Link each persistent volume a task uses at its container path in the sandbox.

        Returns why the task cannot start, or ``None``.
        """
        try:
            volumes = volumes_of(Resources.from_v1(task_resources))
        except (ResourceGrammarError, KeyError, TypeError, ValueError) as exc:
            return f"Task uses invalid resources: {exc}"
        for v in volumes:
            if not self.checkpointed.contains(Resources([v])):
                return (
                    f"Persistent volume '{v.persistence_id}' (role {v.role}) is not on this "
                    "agent: it was destroyed or the agent's disk was wiped"
                )
            cpath = str((v.disk.get("volume") or {}).get("container_path", ""))
            parts = Path(cpath).parts
            if not cpath or Path(cpath).is_absolute() or ".." in parts:
                return (
                    f"Persistent volume '{v.persistence_id}': container path '{cpath}' must be "
                    "a relative path inside the sandbox"
                )
            target = self.volume_path(v)
            target.mkdir(parents=True, exist_ok=True)
            link = sandbox / cpath
            link.parent.mkdir(parents=True, exist_ok=True)
            if link.is_symlink():
                link.unlink()
            elif link.exists():
                return f"Cannot mount persistent volume at '{cpath}': the sandbox already has it"
            link.symlink_to(target, target_is_directory=True)
        return None
