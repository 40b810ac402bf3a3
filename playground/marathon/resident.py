"""Resident instances: apps with local persistent volumes (docs/persistent-volumes.md).

Marathon 1.x runs them in two steps. On a suitable offer it *reserves* what one instance
needs (cpus, mem, sandbox disk, ports, and the disk of every volume) for its role with its
principal, labelled with the framework id and the instance's reservation id, and *creates*
the persistent volumes on that disk. The instance is now pinned to that agent for good.
Later offers from the agent carry the labelled reserved resources and the volumes; the
task is launched on exactly those. When the task ends the reservation stays, and the next
task of the instance runs on it again -- with the data of the volume.

Reservations whose labels name no known instance (the app was deleted, the instance was
wiped or scaled away with ``wipe=true``) are destroyed and unreserved when an offer shows
them (Marathon's ``OfferMatcherReconciler``).

Everything here is pure: it reads an app, an offer and a reservation record and returns
operations or matches.
"""

from __future__ import annotations

import copy
import time
import uuid
from typing import Any

from playground.marathon import matching

#: Marathon's ``--mesos_authentication_principal`` (reservations carry it).
PRINCIPAL = "marathon"
LABEL_FRAMEWORK = "marathon_framework_id"
LABEL_RESERVATION = "marathon_task_id"
#: ``--task_reservation_timeout``: a reservation whose resources were never offered back
#: (the RESERVE or CREATE was dropped) is given up after this long (cluster seconds).
RESERVATION_TIMEOUT = 20.0
NO_RESERVATION = "NoCorrespondingReservationFound"


def persistent_volumes(app: dict[str, Any]) -> list[dict[str, Any]]:
    volumes = (app.get("container") or {}).get("volumes") or []
    return [v for v in volumes if isinstance(v, dict) and isinstance(v.get("persistent"), dict)]


def is_resident(app: dict[str, Any] | None) -> bool:
    return bool(app) and bool(persistent_volumes(app or {}))


def persistence_id(app_id: str, container_path: str) -> str:
    """``postgres#pgdata#53ab8732-fd96-11e5-8e70-76a1c19f8c3d`` (Marathon's LocalVolumeId)."""
    safe = app_id.strip("/").replace("/", "_")
    return f"{safe}#{container_path}#{uuid.uuid1()}"


def local_volumes(reservation: dict[str, Any] | None) -> list[dict[str, str]]:
    """The ``localVolumes`` of the task JSON."""
    if not reservation:
        return []
    return [
        {"containerPath": v["containerPath"], "persistenceId": v["persistenceId"]}
        for v in reservation.get("volumes", [])
    ]


def _labels(framework_id: str, reservation_id: str) -> list[dict[str, str]]:
    return [
        {"key": LABEL_FRAMEWORK, "value": framework_id},
        {"key": LABEL_RESERVATION, "value": reservation_id},
    ]


def _label_map(resource: dict[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    infos = list(resource.get("reservations") or [])
    if resource.get("reservation"):
        infos.append(resource["reservation"])
    for info in infos:
        for label in ((info or {}).get("labels") or {}).get("labels") or []:
            if "key" in label:
                out[str(label["key"])] = str(label.get("value", ""))
    return out


def _reserved(
    src: dict[str, Any], role: str, labels: list[dict[str, str]], **value: Any
) -> dict[str, Any]:
    out: dict[str, Any] = {"name": src["name"], "type": src.get("type", "SCALAR")}
    out.update(value or {k: copy.deepcopy(src[k]) for k in ("scalar", "ranges", "set") if k in src})
    out["role"] = role
    out["reservations"] = [
        {
            "type": "DYNAMIC",
            "role": role,
            "principal": PRINCIPAL,
            "labels": {"labels": [dict(label) for label in labels]},
        }
    ]
    out["allocation_info"] = {"role": role}
    return out


def reservation_app(app: dict[str, Any]) -> dict[str, Any]:
    """The app as the reserving match sees it: its disk plus its volumes, unreserved only."""
    out = dict(app)
    out["disk"] = float(app.get("disk") or 0) + sum(
        float(v["persistent"].get("size") or 0) for v in persistent_volumes(app)
    )
    out["acceptedResourceRoles"] = ["*"]  # dynamic reservations are made of unreserved resources
    return out


def reserve_operations(
    app: dict[str, Any],
    offer: dict[str, Any],
    m: matching.Match,
    *,
    framework_id: str,
    reservation_id: str,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """RESERVE + CREATE for one instance on ``offer`` (matched with :func:`reservation_app`).

    Returns the operations and the reservation record the instance keeps.
    """
    role = (offer.get("allocation_info") or {}).get("role") or "*"
    labels = _labels(framework_id, reservation_id)
    reserved: list[dict[str, Any]] = []
    disk_taken = 0.0
    for r in m.resources:
        if r.get("name") == "disk":
            disk_taken += float((r.get("scalar") or {}).get("value", 0.0))
            continue
        reserved.append(_reserved(r, role, labels))
    sandbox_disk = float(app.get("disk") or 0)
    if sandbox_disk > 0:
        reserved.append(
            _reserved({"name": "disk"}, role, labels, scalar={"value": round(sandbox_disk, 3)})
        )
    volumes: list[dict[str, Any]] = []
    records: list[dict[str, Any]] = []
    for v in persistent_volumes(app):
        size = float(v["persistent"].get("size") or 0)
        pid = persistence_id(app["id"], str(v["containerPath"]))
        disk = _reserved({"name": "disk"}, role, labels, scalar={"value": round(size, 3)})
        reserved.append(copy.deepcopy(disk))
        disk["disk"] = {
            "persistence": {"id": pid, "principal": PRINCIPAL},
            "volume": {"container_path": str(v["containerPath"]), "mode": v.get("mode", "RW")},
        }
        volumes.append(disk)
        records.append(
            {
                "containerPath": str(v["containerPath"]),
                "persistenceId": pid,
                "size": size,
                "mode": v.get("mode", "RW"),
            }
        )
    ops = [
        {"type": "RESERVE", "reserve": {"resources": reserved}},
        {"type": "CREATE", "create": {"volumes": volumes}},
    ]
    record = {
        "id": reservation_id,
        "agentId": offer["agent_id"]["value"],
        "hostname": offer.get("hostname", ""),
        "role": role,
        "ports": list(m.host_ports),
        "volumes": records,
        "state": "New",
        "since": time.time(),
    }
    return ops, record


def reserved_match(
    app: dict[str, Any], offer: dict[str, Any], reservation: dict[str, Any], framework_id: str
) -> matching.Match | matching.NoMatch:
    """Launch on the reservation: the offer must hold its labelled resources and volumes."""
    if offer["agent_id"]["value"] != reservation["agentId"]:
        return matching.NoMatch([NO_RESERVATION])
    mine: list[tuple[int, dict[str, Any]]] = []
    for i, r in enumerate(offer.get("resources") or []):
        labels = _label_map(r)
        if (
            labels.get(LABEL_RESERVATION) == reservation["id"]
            and labels.get(LABEL_FRAMEWORK, framework_id) == framework_id
        ):
            mine.append((i, r))
    have_volumes = {((r.get("disk") or {}).get("persistence") or {}).get("id") for _, r in mine}
    wanted = {v["persistenceId"] for v in reservation.get("volumes", [])}
    cpus = sum(
        float((r.get("scalar") or {}).get("value", 0)) for _, r in mine if r["name"] == "cpus"
    )
    mem = sum(float((r.get("scalar") or {}).get("value", 0)) for _, r in mine if r["name"] == "mem")
    enough = cpus + 1e-9 >= float(app.get("cpus") or 0) and mem + 1e-9 >= float(app.get("mem") or 0)
    if not mine or not wanted <= have_volumes or not enough:
        return matching.NoMatch([NO_RESERVATION])
    used = {i for i, _ in mine}
    remaining = {k: copy.deepcopy(v) for k, v in offer.items() if k != "resources"}
    remaining["resources"] = [
        copy.deepcopy(r) for i, r in enumerate(offer.get("resources") or []) if i not in used
    ]
    return matching.Match(
        resources=[copy.deepcopy(r) for _, r in mine],
        host_ports=list(reservation.get("ports") or []),
        placement=matching.Placement.from_offer(offer),
        remaining=remaining,
    )


def orphaned_operations(
    offer: dict[str, Any], framework_id: str, known: set[str]
) -> tuple[list[dict[str, Any]], set[str]]:
    """DESTROY + UNRESERVE for this framework's reservations that no instance owns.

    Returns the operations and the reservation ids they clean up.
    """
    volumes: list[dict[str, Any]] = []
    unreserve: list[dict[str, Any]] = []
    ids: set[str] = set()
    for r in offer.get("resources") or []:
        labels = _label_map(r)
        rid = labels.get(LABEL_RESERVATION)
        if rid is None or labels.get(LABEL_FRAMEWORK) != framework_id or rid in known:
            continue
        ids.add(rid)
        if (r.get("disk") or {}).get("persistence"):
            volumes.append(copy.deepcopy(r))
            plain = copy.deepcopy(r)
            plain.pop("disk", None)
            unreserve.append(plain)
        else:
            unreserve.append(copy.deepcopy(r))
    ops: list[dict[str, Any]] = []
    if volumes:
        ops.append({"type": "DESTROY", "destroy": {"volumes": volumes}})
    if unreserve:
        ops.append({"type": "UNRESERVE", "unreserve": {"resources": unreserve}})
    return ops, ids
