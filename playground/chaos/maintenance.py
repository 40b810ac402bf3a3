"""Planned maintenance of agents through Mesos's maintenance primitives.

The operations behind ``playground maintenance schedule|status|down|up`` (the TUI and the
labs use them too). A node is named as ``playground status`` names it; its *machine* is
what the agent announces to the master (hostname and IP), so the calls below are exactly
what an operator would ``curl`` against a real master:

* ``schedule``: add a window for the nodes to the master's schedule (``POST
  /maintenance/schedule``; windows naming the same nodes are replaced) -- the machines are
  *Draining*: offers from them carry ``unavailability`` and Marathon declines them once the
  window is near (``--draining_seconds``, default 0);
* ``down``: ``POST /machine/down`` -- the agents are removed (their tasks are lost and
  Marathon replaces them) and shut down; they cannot register while the machine is down;
* ``up``: ``POST /machine/up`` -- maintenance ends and the nodes start again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import httpx

from playground.backends.base import Backend, NodeInfo
from playground.chaos.faults import AGENT_ROLES, FaultError, Faults


@dataclass
class MachineStatus:
    node: str | None  # the kit's node on this machine (None: a machine the kit does not know)
    hostname: str
    ip: str
    mode: str  # DRAINING | DOWN
    start: float | None  # unavailability start, epoch seconds
    duration: float | None  # seconds; None: open-ended

    def to_dict(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "machine": {"hostname": self.hostname, "ip": self.ip},
            "mode": self.mode,
            "unavailability_start": self.start,
            "unavailability_duration": self.duration,
        }


class Maintenance:
    """Maintenance schedule and machine modes of a cluster, by node name."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.faults = Faults(backend)

    # ---- names ------------------------------------------------------------------------
    def _agents(self, names: list[str]) -> list[NodeInfo]:
        if not names:
            raise FaultError("name at least one agent node", hint="e.g. agent-1")
        nodes = self.backend.nodes()
        out = []
        for name in names:
            info = self.faults.resolve(name, nodes)
            if info.role not in AGENT_ROLES:
                raise FaultError(
                    f"maintenance applies to agents; {info.name} is a {info.role}",
                    hint="agents: " + ", ".join(n.name for n in nodes if n.role in AGENT_ROLES),
                )
            if info not in out:
                out.append(info)
        return out

    @staticmethod
    def machine(info: NodeInfo) -> dict[str, str]:
        """The MachineID of a node: agents announce their address as hostname and IP."""
        host = info.address.rsplit(":", 1)[0]
        return {"hostname": host, "ip": host}

    # ---- HTTP -------------------------------------------------------------------------
    def _get(self, path: str) -> Any:
        master = self.faults._master()
        try:
            r = httpx.get(f"{master}{path}", timeout=10)
        except httpx.HTTPError as exc:
            raise FaultError(f"GET {path} failed: {exc}") from None
        if r.status_code != 200:
            raise FaultError(f"GET {path} failed: {r.status_code} {r.text.strip()}")
        return r.json()

    def _post(self, path: str, body: Any) -> None:
        master = self.faults._master()
        try:
            r = httpx.post(f"{master}{path}", json=body, timeout=10)
        except httpx.HTTPError as exc:
            raise FaultError(f"POST {path} failed: {exc}") from None
        if r.status_code != 200:
            raise FaultError(f"the master refused {path}: {r.text.strip() or r.status_code}")

    # ---- operations -------------------------------------------------------------------
    def schedule(
        self, names: list[str], start_in: float = 0.0, duration: float | None = 3600.0
    ) -> list[MachineStatus]:
        """Schedule maintenance of the nodes ``start_in`` seconds from now for ``duration``."""
        infos = self._agents(names)
        machines = [self.machine(i) for i in infos]
        keys = {(m["hostname"].lower(), m["ip"]) for m in machines}
        current = self._get("/master/maintenance/schedule").get("windows", [])
        kept = []
        for w in current:
            ids = [
                m
                for m in w.get("machine_ids", [])
                if (str(m.get("hostname", "")).lower(), str(m.get("ip", ""))) not in keys
            ]
            if ids:
                kept.append({**w, "machine_ids": ids})
        unavailability: dict[str, Any] = {
            "start": {"nanoseconds": int((time.time() + start_in) * 1e9)}
        }
        if duration is not None:
            unavailability["duration"] = {"nanoseconds": int(duration * 1e9)}
        kept.append({"machine_ids": machines, "unavailability": unavailability})
        self._post("/master/maintenance/schedule", {"windows": kept})
        return [s for s in self.status() if s.node in {i.name for i in infos}]

    def status(self) -> list[MachineStatus]:
        """Every machine in maintenance, with its mode and window."""
        nodes = {
            self.machine(n)["ip"]: n.name for n in self.backend.nodes() if n.role in AGENT_ROLES
        }
        status = self._get("/master/maintenance/status")
        windows = self._get("/master/maintenance/schedule").get("windows", [])

        def window_of(hostname: str, ip: str) -> tuple[float | None, float | None]:
            for w in windows:
                for m in w.get("machine_ids", []):
                    if str(m.get("hostname", "")).lower() == hostname and m.get("ip", "") == ip:
                        u = w.get("unavailability") or {}
                        start = (u.get("start") or {}).get("nanoseconds")
                        dur = (u.get("duration") or {}).get("nanoseconds")
                        return (
                            int(start) / 1e9 if start is not None else None,
                            int(dur) / 1e9 if dur is not None else None,
                        )
            return None, None

        out = []
        for mode, items in (
            ("DRAINING", [d["id"] for d in status.get("draining_machines", [])]),
            ("DOWN", status.get("down_machines", [])),
        ):
            for m in items:
                hostname, ip = str(m.get("hostname", "")), str(m.get("ip", ""))
                start, dur = window_of(hostname, ip)
                out.append(MachineStatus(nodes.get(ip), hostname, ip, mode, start, dur))
        return out

    def down(self, names: list[str]) -> list[MachineStatus]:
        """Start maintenance: the agents are removed and shut down (``/machine/down``)."""
        infos = self._agents(names)
        self._post("/master/machine/down", [self.machine(i) for i in infos])
        # The agent ends its tasks and exits when the master shuts it down; then it is
        # recorded as stopped (so `heal` does not start it while its machine is down).
        deadline = time.monotonic() + 10
        for info in infos:
            while time.monotonic() < deadline and self.backend.node(info.name).state == "running":
                time.sleep(0.1)
            self.backend.stop(info.name)
        return [s for s in self.status() if s.node in {i.name for i in infos}]

    def up(self, names: list[str]) -> list[str]:
        """End maintenance (``/machine/up``) and start the nodes again; returns their names."""
        infos = self._agents(names)
        self._post("/master/machine/up", [self.machine(i) for i in infos])
        for info in infos:
            if self.backend.node(info.name).state != "running":
                self.backend.start(info.name)
        return [i.name for i in infos]
