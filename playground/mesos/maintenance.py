"""Mesos's maintenance primitives: the schedule, machine modes and their validation.

As ``docs/maintenance.md`` describes them (Mesos 1.10):

* a *schedule* is a list of windows, each a list of machines (``hostname`` and/or ``ip``)
  with an ``unavailability`` (``start`` and optional ``duration`` in nanoseconds); posting a
  schedule replaces the previous one, and every machine in it is *Draining* at once;
* ``machine/down`` moves scheduled machines to *Down* (their agents are removed and may not
  register until the machine is up again); ``machine/up`` ends maintenance: the machines
  leave the schedule and their agents may register;
* a machine is recognised by both fields: an omitted ``hostname`` or ``ip`` is ``""``, and
  the hostname is not case-sensitive.

This module holds the state and the checks (pure, unit-tested); the master applies the
consequences (offers with ``unavailability``, removing agents, refusing registrations).
"""

from __future__ import annotations

import copy
import ipaddress
from typing import Any

DRAINING = "DRAINING"
DOWN = "DOWN"

MachineKey = tuple[str, str]


class MaintenanceError(Exception):
    """A schedule or machine list the master rejects (HTTP 400 with this text)."""


def machine_key(machine: dict[str, Any]) -> MachineKey:
    return (str(machine.get("hostname", "")).lower(), str(machine.get("ip", "")))


def machine_json(key: MachineKey) -> dict[str, str]:
    out: dict[str, str] = {}
    if key[0]:
        out["hostname"] = key[0]
    if key[1]:
        out["ip"] = key[1]
    return out


def _check_machine(machine: Any) -> MachineKey:
    if not isinstance(machine, dict):
        raise MaintenanceError("Expecting a MachineID object")
    if not machine.get("hostname") and not machine.get("ip"):
        raise MaintenanceError("Both 'hostname' and 'ip' for a machine are empty")
    ip = machine.get("ip")
    if ip:
        try:
            ipaddress.ip_address(str(ip))
        except ValueError:
            raise MaintenanceError(f"Failed to parse IP address: {ip}") from None
    return machine_key(machine)


def _nanos(value: Any) -> int | None:
    if isinstance(value, dict) and "nanoseconds" in value:
        try:
            return int(value["nanoseconds"])
        except (TypeError, ValueError):
            return None
    return None


def check_machines(machines: Any) -> list[MachineKey]:
    """A ``machine/down`` or ``machine/up`` list: non-empty, each machine once, well formed."""
    if not isinstance(machines, list) or not machines:
        raise MaintenanceError("List of machines is empty")
    keys: list[MachineKey] = []
    for m in machines:
        key = _check_machine(m)
        if key in keys:
            raise MaintenanceError(f"Machine {machine_json(key)} appears more than once")
        keys.append(key)
    return keys


class Schedule:
    """The cluster's maintenance schedule and the mode of every machine in maintenance."""

    def __init__(self) -> None:
        self.windows: list[dict[str, Any]] = []
        self.modes: dict[MachineKey, str] = {}

    # ---- persistence ----------------------------------------------------------------
    def to_registry(self) -> dict[str, Any]:
        return {
            "windows": self.windows,
            "down": [list(k) for k, m in self.modes.items() if m == DOWN],
        }

    @classmethod
    def from_registry(cls, data: Any) -> Schedule:
        s = cls()
        if not isinstance(data, dict):
            return s
        s.windows = list(data.get("windows") or [])
        for w in s.windows:
            for m in w.get("machine_ids", []):
                s.modes[machine_key(m)] = DRAINING
        for h, ip in data.get("down") or []:
            s.modes[(str(h), str(ip))] = DOWN
        return s

    # ---- the operator's calls ---------------------------------------------------------
    def update(self, schedule: Any) -> set[MachineKey]:
        """Replace the schedule; returns the machines whose mode changed."""
        if not isinstance(schedule, dict):
            raise MaintenanceError("Expecting a maintenance Schedule object")
        windows = schedule.get("windows") or []
        if not isinstance(windows, list):
            raise MaintenanceError("Expecting 'windows' to be a list")
        seen: dict[MachineKey, None] = {}  # in schedule order
        for w in windows:
            if not isinstance(w, dict):
                raise MaintenanceError("Expecting a maintenance Window object")
            ids = w.get("machine_ids") or []
            if not ids:
                raise MaintenanceError("List of machines in the maintenance window is empty")
            if _nanos((w.get("unavailability") or {}).get("start")) is None:
                raise MaintenanceError(
                    "Maintenance window does not specify an unavailability start time"
                )
            for m in ids:
                key = _check_machine(m)
                if key in seen:
                    raise MaintenanceError(
                        f"Machine {machine_json(key)} appears more than once in the schedule"
                    )
                seen[key] = None
        for key, mode in self.modes.items():
            if mode == DOWN and key not in seen:
                raise MaintenanceError(
                    f"Machine {machine_json(key)} is deactivated (DOWN) and must remain in "
                    "the schedule; bring it up with machine/up first"
                )
        before = dict(self.modes)
        self.windows = copy.deepcopy(windows)
        self.modes = {k: (DOWN if before.get(k) == DOWN else DRAINING) for k in seen}
        return {k for k in set(before) | set(self.modes) if before.get(k) != self.modes.get(k)}

    def down(self, machines: Any) -> list[MachineKey]:
        keys = check_machines(machines)
        for k in keys:
            if k not in self.modes:
                raise MaintenanceError(
                    f"Machine {machine_json(k)} is not part of a maintenance schedule"
                )
        for k in keys:
            self.modes[k] = DOWN
        return keys

    def up(self, machines: Any) -> list[MachineKey]:
        keys = check_machines(machines)
        for k in keys:
            if self.modes.get(k) != DOWN:
                raise MaintenanceError(f"Machine {machine_json(k)} is not in DOWN mode")
        for k in keys:
            del self.modes[k]
        kept = []
        for w in self.windows:
            ids = [m for m in w.get("machine_ids", []) if machine_key(m) not in keys]
            if ids:
                kept.append({**w, "machine_ids": ids})
        self.windows = kept
        return keys

    # ---- what the master asks ---------------------------------------------------------
    def mode(self, key: MachineKey) -> str | None:
        return self.modes.get(key)

    def unavailability(self, key: MachineKey) -> dict[str, Any] | None:
        """The unavailability of a draining or down machine's window (for its offers)."""
        if key not in self.modes:
            return None
        for w in self.windows:
            if any(machine_key(m) == key for m in w.get("machine_ids", [])):
                return copy.deepcopy(w.get("unavailability"))
        return None

    def status(self) -> dict[str, Any]:
        """``/maintenance/status``: draining machines (with inverse-offer responses) and down ones."""
        draining = [{"id": machine_json(k)} for k, m in self.modes.items() if m == DRAINING]
        down = [machine_json(k) for k, m in self.modes.items() if m == DOWN]
        out: dict[str, Any] = {}
        if draining:
            out["draining_machines"] = draining
        if down:
            out["down_machines"] = down
        return out
