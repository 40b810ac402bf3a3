"""Where a volume's replicas live: distinct failure domains, enough space, one step at a time.

A volume of replication factor N has N replicas in pools on nodes of N distinct zones (of
N distinct racks when rack-aware placement is asked for; then zones are preferred distinct
too). Among the candidates the pools with the most free space win, ties by node name, so
placement is deterministic. Replication changes by one (``ha-update``): adding a replica
picks a failure domain the volume does not use yet; removing one never removes the working
copy. A factor above the failure domains available is refused with the reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from playground.errors import PlaygroundError

MAX_REPLICATION = 3


class PlacementError(PlaygroundError):
    """A volume's replicas cannot be placed as asked."""


@dataclass(frozen=True)
class Pool:
    node: str
    zone: str | None
    rack: str | None = None
    region: str | None = None
    online: bool = True
    free_gb: float = 0.0


def _domain(p: Pool, rack_aware: bool) -> tuple[str | None, ...]:
    return (p.zone, p.rack) if rack_aware else (p.zone,)


def _check_factor(repl: int) -> None:
    if not 1 <= repl <= MAX_REPLICATION:
        raise PlacementError(
            f"replication factor {repl} is not supported",
            hint=f"use 1 to {MAX_REPLICATION}",
        )


def place(
    repl: int,
    pools: Sequence[Pool],
    size_gb: float,
    rack_aware: bool = False,
    used: Sequence[str] = (),
) -> list[str]:
    """Nodes for ``repl`` new replicas, in failure domains distinct from each other and
    from the pools in ``used`` (the volume's existing replicas)."""
    by_node = {p.node: p for p in pools}
    taken = {_domain(by_node[n], rack_aware) for n in used if n in by_node}
    taken_zones = {by_node[n].zone for n in used if n in by_node}
    online = [p for p in pools if p.online and p.node not in used]
    roomy = [p for p in online if p.free_gb >= size_gb]
    chosen: list[Pool] = []
    # Most free space first; with rack awareness, prefer zones not used yet.
    for p in sorted(roomy, key=lambda p: (-p.free_gb, p.node)):
        if len(chosen) == repl:
            break
        dom = _domain(p, rack_aware)
        if dom in taken or (not rack_aware and p.zone in taken_zones):
            continue
        chosen.append(p)
        taken.add(dom)
        taken_zones.add(p.zone)
    if len(chosen) < repl:
        what = "racks" if rack_aware else "zones"
        domains = sorted({"/".join(str(x) for x in _domain(p, rack_aware)) for p in online})
        need = repl + len(used)
        if len({_domain(p, rack_aware) for p in online} | taken) < need:
            used_domains = sorted(
                {
                    "/".join(str(x) for x in _domain(by_node[n], rack_aware))
                    for n in used
                    if n in by_node
                }
            )
            in_use = f" (in use by the volume: {', '.join(used_domains)})" if used_domains else ""
            raise PlacementError(
                f"replication factor {need} needs {need} {what} with an online storage pool; "
                f"{'other ' + what + ' ' if used_domains else ''}available: "
                f"{', '.join(domains) or 'none'}{in_use}",
                hint="lower the replication factor, or bring a node of another "
                f"{what[:-1]} back (`playground heal`)",
            )
        raise PlacementError(
            f"not enough free space for {size_gb:g} GB in {need} distinct {what}",
            hint="use a smaller volume, or free space in the pools",
        )
    return [p.node for p in chosen]


def place_volume(
    repl: int, pools: Sequence[Pool], size_gb: float, rack_aware: bool = False
) -> list[str]:
    """Replicas of a new volume; the first is where its working copy starts."""
    _check_factor(repl)
    return place(repl, pools, size_gb, rack_aware)


def ha_update(
    replicas: Sequence[str],
    repl: int,
    pools: Sequence[Pool],
    size_gb: float,
    working: str | None = None,
    rack_aware: bool = False,
) -> list[str]:
    """The replica set after changing the replication factor by one step."""
    _check_factor(repl)
    now = len(replicas)
    if repl == now:
        return list(replicas)
    if abs(repl - now) != 1:
        step = now + (1 if repl > now else -1)
        raise PlacementError(
            f"replication changes one step at a time ({now} -> {step}, not {now} -> {repl})",
            hint=f"run ha-update to {step} first",
        )
    if repl > now:
        return [*replicas, *place(1, pools, size_gb, rack_aware, used=replicas)]
    # Drop a replica: an offline one first, never the working copy.
    online = {p.node: p.online for p in pools}
    candidates = [r for r in replicas if r != working]
    candidates.sort(key=lambda r: (online.get(r, False), r))
    drop = candidates[0]
    return [r for r in replicas if r != drop]
