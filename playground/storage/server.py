"""The ``storage`` node (plays Portworx / an OpenStorage-style volume service).

Pools are directories on the agents (``STATE/nodes/AGENT/work/pool``; the public agent
has none). A pool is online while its agent answers ``/health`` from here (so a crash, a
stop or a network partition takes it offline) and carries a ``.pool.json`` marker: a pool
found without its marker is a clean disk (a rebuilt node) and re-syncs from scratch.

A volume's working copy is its replica on the node running its task (``primary``); the
other replicas follow it asynchronously (:mod:`playground.storage.replication`) every
:data:`REPL_INTERVAL` seconds, each with its measured lag; a ``secure`` volume's other
replicas are sealed (ciphertext only, see :mod:`playground.storage.replication`) and
unsealed when one becomes the working copy. ``POST /v1/volumes/{id}/sync``
runs a durable pass that starts after the call, so it returns only when every online
replica holds every change made before it. Attaching on another node promotes the
freshest online replica; a dead node's attachment is fenced, so failover never deadlocks.

HTTP API (JSON; errors are ``{"message": ..., "hint": ...}`` with 400/404/409/507):
    GET  /health, /metrics (Prometheus), /v1/pools
    GET  /v1/volumes                    POST /v1/volumes {name, size, repl, secure, labels, rack_aware}
    GET  /v1/volumes/{ref}              DELETE /v1/volumes/{ref}
    POST /v1/volumes/{ref}/resize {size} | /ha-update {repl} | /sync | /verify
    POST /v1/volumes/{ref}/attach {node, task_id, create?} | /detach {node, task_id}
    PUT  /v1/volumes/{ref}/attachment {task_id, pid}
    GET  /v1/volumes/{ref}/snapshots    POST /v1/volumes/{ref}/snapshots {name?}
    POST /v1/volumes/{ref}/clone {name}
    GET  /v1/snapshots                  GET|DELETE /v1/snapshots/{id}
    POST /v1/snapshots/{id}/restore {to?}

Everything but ``/health`` and ``/metrics`` requires the platform token
(``Authorization: token=<t>``; 401 ``{"message": ...}`` without it), except that a task's
volume token (:func:`playground.cluster.auth.volume_token`, in ``PLAYGROUND_VOLUMES``)
may ``GET /v1/volumes/{ref}`` and ``POST /v1/volumes/{ref}/sync`` for its own volume.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import web

from playground.cluster import auth, network
from playground.cluster.httpserver import json_response, require_token, run_app, supervise
from playground.cluster.statedir import atomic_write
from playground.storage import policy as policy_mod
from playground.storage import replication, snapshots
from playground.storage.audit import AuditLog, audit_path
from playground.storage.chunks import ChunkError, ChunkStore
from playground.storage.placement import PlacementError, Pool, ha_update, place, place_volume
from playground.storage.sealed import KEY_SECRET, SealedChunkStore, _derive
from playground.storage.volumes import (
    DEFAULT_SIZE_GB,
    GB,
    Registry,
    StorageError,
    as_bool,
    check_labels,
    check_name,
    check_repl,
    check_size,
    iso,
    new_id,
)

if TYPE_CHECKING:
    from playground.cluster.node import NodeContext

log = logging.getLogger("playground.storage")

#: Seconds between background replication passes of a volume.
REPL_INTERVAL = 0.25
#: Seconds a restore in place waits for a detach in progress (the task being stopped).
DETACH_WAIT = 60.0
#: Seconds between pool health probes, and the probe's timeout.
PROBE_INTERVAL = 0.5
PROBE_TIMEOUT = 1.0
#: A pool's nominal capacity (GB): volumes are thin, this bounds what is provisioned.
POOL_CAPACITY_GB = 256.0
#: Usage above this fraction of a volume's size counts as nearly full.
NEARLY_FULL = 0.9
POOL_MARKER = ".pool.json"
#: Wall seconds after the node starts during which a pool never seen online is not
#: reported offline to the monitor (the agents start after the storage node).
STARTUP_GRACE = 15.0


class PoolState:
    def __init__(
        self,
        node: str,
        zone: str | None,
        rack: str | None,
        region: str | None,
        path: Path,
        url: str,
    ) -> None:
        self.node = node
        self.zone = zone
        self.rack = rack
        self.region = region
        self.path = path
        self.url = url
        self.online = False
        self.pool_id: str | None = None
        self.since = time.time()
        self.fails = 0
        self.probed = False
        self.seen_online = False

    def view(self, provisioned: float, used: int, volumes: int) -> dict[str, Any]:
        return {
            "node": self.node,
            "zone": self.zone,
            "rack": self.rack,
            "region": self.region,
            "online": self.online,
            "status": "online" if self.online else "offline",
            "since": iso(self.since),
            "pool_id": self.pool_id,
            "path": str(self.path),
            "capacity_gb": POOL_CAPACITY_GB,
            "provisioned_gb": round(provisioned, 3),
            "used_bytes": used,
            "volumes": volumes,
        }


#: What a task may do with its own volume's token (the ``kv`` workload's durable mode).
VOLUME_TOKEN_CALLS = {("GET", "/v1/volumes/{ref}"), ("POST", "/v1/volumes/{ref}/sync")}


class StorageNode:
    def __init__(self, ctx: NodeContext) -> None:
        self.ctx = ctx
        self.work = ctx.work_dir
        self.reg = Registry(self.work)
        self.store = ChunkStore(self.work / "chunks")
        self._sealed: SealedChunkStore | None = None
        self._replica_key: bytes | None = None
        self.pools: dict[str, PoolState] = {}
        for spec in ctx.topology.nodes:
            if spec.role != "agent":
                continue  # the public agent has no pool
            self.pools[spec.name] = PoolState(
                spec.name,
                spec.zone,
                spec.rack,
                spec.region,
                ctx.state.node_dir(spec.name) / "work" / "pool",
                ctx.address_of(spec.name).url,
            )
        self.locks: dict[str, asyncio.Lock] = {}
        #: volume id -> replica node -> what the last pass copied (for appends)
        self.known: dict[str, dict[str, dict[str, tuple[int, int]]]] = {}
        #: volume id -> replica node -> {"synced_through", "pending", "error"} (runtime)
        self.lag: dict[str, dict[str, dict[str, Any]]] = {}
        self.usage: dict[str, int] = {}
        self.session: aiohttp.ClientSession | None = None
        self.started = time.time()
        self._dirty = False
        self.progress: dict[str, dict[str, int]] = {}
        self.backups_done = 0
        self.backups_failed = 0
        self.bg: set[asyncio.Task[Any]] = set()
        self._policy: policy_mod.Policy | None = None
        self._policy_mtime = -1
        self.audit = AuditLog(audit_path(ctx.state.root))
        self.thaw_leftovers()
        self.rollback_restores()
        # Chunk writes a crash cut short (whole chunks are renamed into place; never torn).
        self.store.sweep()
        ChunkStore(self.work / "chunks-sealed").sweep()

    # ---- helpers ----------------------------------------------------------------------
    def event(self, kind: str, **fields: Any) -> None:
        self.ctx.state.record_event(kind, **fields)

    def lock(self, vol_id: str) -> asyncio.Lock:
        lk = self.locks.get(vol_id)
        if lk is None:
            lk = self.locks[vol_id] = asyncio.Lock()
        return lk

    def replica_dir(self, node: str, vol_id: str) -> Path:
        return self.pools[node].path / vol_id

    def replica_ok(self, vol: dict[str, Any], rep: dict[str, Any]) -> bool:
        """The replica's pool is online and is the pool the replica was written to."""
        pool = self.pools.get(rep["node"])
        return bool(pool and pool.online and pool.pool_id == rep.get("pool_id"))

    def current(self, vol: dict[str, Any], rep: dict[str, Any]) -> bool:
        """The replica is online and may serve the volume: not one still holding what a
        restore replaced (``stale`` until a pass from the working copy levels it)."""
        return self.replica_ok(vol, rep) and not rep.get("stale")

    def pool_list(self, online_only: bool = False) -> list[Pool]:
        prov: dict[str, float] = {}
        for v in self.reg.volumes.values():
            for r in v["replicas"]:
                prov[r["node"]] = prov.get(r["node"], 0.0) + float(v["size_gb"])
        return [
            Pool(
                p.node, p.zone, p.rack, p.region, p.online, POOL_CAPACITY_GB - prov.get(p.node, 0.0)
            )
            for p in self.pools.values()
            if p.online or not online_only
        ]

    def synced_through(self, vol: dict[str, Any], node: str) -> float:
        live = self.lag.get(vol["id"], {}).get(node)
        if live is not None:
            return float(live["synced_through"])
        for r in vol["replicas"]:
            if r["node"] == node:
                return float(r.get("synced_through", 0.0))
        return 0.0

    def source(self, vol: dict[str, Any]) -> str | None:
        """Where the volume's freshest data is: the working copy, else the freshest replica."""
        reps = {r["node"]: r for r in vol["replicas"]}
        primary = vol.get("primary")
        if primary in reps and self.current(vol, reps[primary]):
            return str(primary)
        online = [r["node"] for r in vol["replicas"] if self.current(vol, r)]
        if not online:
            return None
        return max(online, key=lambda n: (self.synced_through(vol, n), n))

    def view(self, vol: dict[str, Any]) -> dict[str, Any]:
        now = time.time()
        primary = vol.get("primary")
        reps = []
        online = 0
        for r in vol["replicas"]:
            pool = self.pools.get(r["node"])
            ok = self.replica_ok(vol, r)
            online += ok
            through = self.synced_through(vol, r["node"])
            live = self.lag.get(vol["id"], {}).get(r["node"], {})
            if not (pool and pool.online):
                state = "offline"
            elif not ok or r.get("stale"):
                state = "resync"
            elif r["node"] == primary:
                state = "working-copy"
            elif live.get("pending", 0) == 0 and through > 0:
                state = "in-sync"
            else:
                state = "syncing"
            reps.append(
                {
                    "node": r["node"],
                    "zone": pool.zone if pool else None,
                    "rack": pool.rack if pool else None,
                    "region": pool.region if pool else None,
                    "state": state,
                    "primary": r["node"] == primary,
                    "lag_seconds": 0.0
                    if r["node"] == primary and ok
                    else round(max(0.0, now - through), 3)
                    if through
                    else None,
                    "pending_bytes": live.get("pending", 0) if ok else None,
                    "synced_at": iso(through) if through else None,
                }
            )
        usage = self.usage.get(vol["id"], vol.get("usage_bytes", 0))
        size_bytes = int(float(vol["size_gb"]) * GB)
        status = "up" if online else "down"
        if online and online < vol["repl"]:
            status = "degraded"
        return {
            "id": vol["id"],
            "name": vol["name"],
            "size_gb": vol["size_gb"],
            "size_bytes": size_bytes,
            "used_bytes": usage,
            "usage": round(usage / size_bytes, 4) if size_bytes else 0.0,
            "repl": vol["repl"],
            "secure": vol["secure"],
            "labels": vol["labels"],
            "rack_aware": vol.get("rack_aware", False),
            "status": status,
            "created_at": vol["created_at"],
            "primary": primary,
            "attachment": vol.get("attachment"),
            "replicas": reps,
            "snapshots": sum(1 for s in self.reg.snapshots.values() if s["volume_id"] == vol["id"]),
        }

    def save(self) -> None:
        self.reg.save()

    @property
    def sealed(self) -> SealedChunkStore:
        """Where the snapshots of ``secure`` volumes go: encrypted with the cluster's key."""
        if self._sealed is None:
            from playground.cluster.secrets import SecretStore

            key = SecretStore(self.ctx.state.root).get_or_create(KEY_SECRET, 32)
            self._sealed = SealedChunkStore(self.work / "chunks-sealed", key)
        return self._sealed

    @property
    def replica_key(self) -> bytes:
        """What the secondary replicas of ``secure`` volumes are sealed with: derived from
        the cluster's storage key, distinct from the snapshots' keys."""
        if self._replica_key is None:
            from playground.cluster.secrets import SecretStore

            key = SecretStore(self.ctx.state.root).get_or_create(KEY_SECRET, 32)
            self._replica_key = _derive(key, b"replica-encryption")
        return self._replica_key

    def seal_for(self, vol: dict[str, Any], node: str) -> bytes | None:
        """A ``secure`` volume's replicas are sealed but on its working copy's node."""
        return self.replica_key if vol["secure"] and node != vol.get("primary") else None

    def unseal_for(self, path: Path) -> bytes | None:
        """The key to read a replica directory with (None: it is plaintext)."""
        return self.replica_key if replication.is_sealed(path) else None

    def store_of(self, snap: dict[str, Any]) -> ChunkStore:
        return self.sealed if snap.get("sealed") else self.store

    def manifest_of(self, snap: dict[str, Any]) -> dict[str, Any]:
        if snap.get("sealed"):
            return self.sealed.open_manifest(snap["manifest_sealed"], snap["id"])
        return dict(snap["manifest"])

    # ---- pools ------------------------------------------------------------------------
    def thaw_leftovers(self) -> None:
        """A storage node killed during a snapshot must not leave a task frozen."""
        frozen = self.work / "frozen.json"
        if not frozen.exists():
            return
        with contextlib.suppress(OSError, ValueError):
            pid = int(json.loads(frozen.read_text())["pid"])
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGCONT)
                log.warning("resumed task process group %d left frozen by a crash", pid)
        frozen.unlink(missing_ok=True)

    async def probe_loop(self) -> None:
        while not self.ctx.stop.is_set():
            await asyncio.gather(*(self.probe(p) for p in self.pools.values()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.ctx.stop.wait(), PROBE_INTERVAL)

    async def probe(self, pool: PoolState) -> None:
        assert self.session is not None
        ok = False
        with contextlib.suppress(Exception):
            async with self.session.get(
                f"{pool.url}/health", timeout=aiohttp.ClientTimeout(total=PROBE_TIMEOUT)
            ) as r:
                ok = r.status == 200
        if ok:
            pool.fails = 0
            if not pool.online:
                await asyncio.to_thread(self.open_pool, pool)
                pool.online = True
                pool.seen_online = True
                pool.since = time.time()
                self.event("storage.pool.online", node=pool.node, pool_id=pool.pool_id)
                log.info("pool on %s is online (%s)", pool.node, pool.pool_id)
            elif not (pool.path / POOL_MARKER).exists():
                # Rebuilt between two probes (crash, clean disk, start): a new pool.
                old = pool.pool_id
                await asyncio.to_thread(self.open_pool, pool)
                pool.since = time.time()
                self.event("storage.pool.online", node=pool.node, pool_id=pool.pool_id)
                log.warning("pool on %s was replaced (%s -> %s)", pool.node, old, pool.pool_id)
        else:
            pool.fails += 1
            if pool.online and pool.fails >= 2:
                pool.online = False
                pool.since = time.time()
                self.event("storage.pool.offline", node=pool.node)
                log.warning("pool on %s is offline", pool.node)
        pool.probed = True

    def open_pool(self, pool: PoolState) -> None:
        """Read (or create) the pool's marker; a missing marker is a clean disk."""
        marker = pool.path / POOL_MARKER
        try:
            pool.pool_id = json.loads(marker.read_text())["pool_id"]
        except (OSError, ValueError, KeyError):
            pool.path.mkdir(parents=True, exist_ok=True)
            pool.pool_id = new_id("pool")
            atomic_write(
                marker,
                json.dumps(
                    {"pool_id": pool.pool_id, "node": pool.node, "created_at": iso(time.time())}
                ).encode(),
            )
            lost = [
                v["name"]
                for v in list(self.reg.volumes.values())
                if any(r["node"] == pool.node for r in v["replicas"])
            ]
            if lost:
                self.event("storage.pool.replaced", node=pool.node, volumes=lost)
                log.warning("pool on %s is new (clean disk): its replicas re-sync", pool.node)
        self.recover_restores(pool.path)
        keep = {
            v["id"]
            for v in list(self.reg.volumes.values())
            if any(r["node"] == pool.node for r in v["replicas"])
        }
        for d in pool.path.iterdir():
            # A deleted volume or a dropped replica; the registry is asked again at the last
            # moment, so a volume created meanwhile (in the event loop) is never touched.
            vol = self.reg.volumes.get(d.name)
            if (
                d.name.startswith("vol-")
                and d.name not in keep
                and (vol is None or all(r["node"] != pool.node for r in vol["replicas"]))
            ):
                shutil.rmtree(d, ignore_errors=True)

    @staticmethod
    def recover_restores(path: Path) -> None:
        """Finish or undo a restore interrupted by a crash (see snapshots.restore)."""
        for d in path.glob(".replaced-*"):
            name = d.name[len(".replaced-") :].rsplit(".", 1)[0]
            dest = path / name
            if not dest.exists():
                os.replace(d, dest)
            else:
                shutil.rmtree(d, ignore_errors=True)
        for d in path.glob(".restore-*"):
            shutil.rmtree(d, ignore_errors=True)

    # ---- replication -------------------------------------------------------------------
    async def repl_loop(self) -> None:
        last_save = 0.0
        while not self.ctx.stop.is_set():
            for vol_id in list(self.reg.volumes):
                vol = self.reg.volumes.get(vol_id)
                if vol is None:
                    continue
                lk = self.lock(vol_id)
                if lk.locked():
                    continue
                async with lk:
                    if vol_id in self.reg.volumes:
                        await self.replicate(vol, durable=False)
            if self._dirty and time.time() - last_save > 1.0:
                self._dirty = False
                last_save = time.time()
                # In the event loop, like every other save: one writer, in order.
                self.reg.save(False)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.ctx.stop.wait(), REPL_INTERVAL)

    async def replicate(self, vol: dict[str, Any], durable: bool) -> dict[str, Any]:
        """One pass from the source to every online replica (caller holds the lock)."""
        src = self.source(vol)
        out: dict[str, Any] = {"source": src, "replicas": {}}
        if src is None:
            return out
        start = time.time()
        src_dir = self.replica_dir(src, vol["id"])
        lags = self.lag.setdefault(vol["id"], {})
        known = self.known.setdefault(vol["id"], {})
        lags[src] = {"synced_through": start, "pending": 0}
        src_dir.mkdir(parents=True, exist_ok=True)
        unseal = self.unseal_for(src_dir)
        for rep in vol["replicas"]:
            node = rep["node"]
            if node == src:
                continue
            pool = self.pools.get(node)
            if not (pool and pool.online):
                out["replicas"][node] = "offline"
                continue
            try:
                res = await asyncio.to_thread(
                    replication.replicate,
                    src_dir,
                    self.replica_dir(node, vol["id"]),
                    known.get(node),
                    durable,
                    self.seal_for(vol, node),
                    unseal,
                )
            except OSError as exc:
                lags.setdefault(node, {"synced_through": 0.0, "pending": 1})["error"] = str(exc)
                out["replicas"][node] = f"error: {exc}"
                continue
            known[node] = res.known
            self.usage[vol["id"]] = res.total_bytes
            lags[node] = {"synced_through": start, "pending": 0}
            if rep.get("pool_id") != pool.pool_id:
                rep["pool_id"] = pool.pool_id  # a fresh pool now holds a full copy
                self.event("storage.replica.resynced", volume=vol["name"], node=node)
                self._dirty = True
            if rep.get("synced_through", 0) < start - 1 or durable:
                rep["synced_through"] = start
                self._dirty = True
            if rep.pop("stale", None):
                self.event("storage.replica.level", volume=vol["name"], node=node)
                self._dirty = True
            out["replicas"][node] = "synced"
        if len(vol["replicas"]) == 1 or all(r["node"] == src for r in vol["replicas"]):
            self.usage[vol["id"]] = await asyncio.to_thread(replication.usage, src_dir)
        for rep in vol["replicas"]:
            if rep["node"] == src:
                rep["synced_through"] = start
        return out

    # ---- volume lifecycle --------------------------------------------------------------
    async def restore_replicas(
        self, vol: dict[str, Any], store: ChunkStore, manifest: dict[str, Any]
    ) -> None:
        """Restore a snapshot into the volume's working copy (built aside, durable, renamed
        into place); the other replicas catch up in the background, as replication does.

        Until a pass from the working copy levels them they are ``stale``: shown as
        ``resync`` and never promoted, so a node lost meanwhile cannot bring the replaced
        data back (the volume waits for the working copy's node instead). They are marked
        before the working copy changes, so a crash at any point errs on the safe side.
        Restored files keep the snapshot's modification times, so an in-place restore
        copies only the files that differ to the other replicas."""
        src = self.source(vol)
        if src is None:
            raise StorageError(409, f"volume {vol['name']} has no online replica")
        vol["primary"] = src
        for r in vol["replicas"]:
            if r["node"] != src:
                r["stale"] = True
                self.lag.setdefault(vol["id"], {}).pop(r["node"], None)
        self.save()
        await asyncio.to_thread(
            snapshots.restore, store, manifest, self.replica_dir(src, vol["id"])
        )
        self.known.pop(vol["id"], None)
        if len(vol["replicas"]) > 1:
            self.spawn(self.level(vol["id"]))

    async def level(self, vol_id: str) -> None:
        """One durable pass to every online replica, once the volume's lock is free."""
        async with self.lock(vol_id):
            vol = self.reg.volumes.get(vol_id)
            if vol is not None and any(r.get("stale") for r in vol["replicas"]):
                await self.replicate(vol, durable=True)

    def forget_volume(self, vol: dict[str, Any]) -> None:
        self.reg.volumes.pop(vol["id"], None)
        self.save()
        self.drop_replica_dirs(vol["id"], [r["node"] for r in vol["replicas"]])

    def create_volume(
        self, body: dict[str, Any], node: str | None = None, restoring: bool = False
    ) -> dict[str, Any]:
        name = check_name(body.get("name"))
        if self.reg.by_name(name) is not None:
            raise StorageError(
                409,
                f"a volume named {name!r} exists already",
                hint="pick another name, or delete the old volume first",
            )
        size = check_size(body.get("size", DEFAULT_SIZE_GB))
        repl = check_repl(body.get("repl", 1))
        secure = as_bool(body.get("secure", False), "secure")
        labels = check_labels(body.get("labels"))
        rack_aware = as_bool(body.get("rack_aware", False), "rack_aware")
        pools = self.allowed_pools(labels, name)
        try:
            if node is not None:
                if node not in self.pools or not self.pools[node].online:
                    raise StorageError(409, f"node {node} has no online storage pool")
                nodes = [node, *place(repl - 1, pools, size, rack_aware, used=[node])]
            else:
                nodes = place_volume(repl, pools, size, rack_aware)
        except PlacementError as exc:
            self.refuse_if_policy_narrowed(labels, name, repl, size, rack_aware, pools)
            raise StorageError(409, str(exc), exc.hint) from None
        self.enforce(labels, [self.replica_location(n) for n in nodes], "create", name)
        vol_id = new_id("vol")
        now = time.time()
        vol = {
            "id": vol_id,
            "name": name,
            "size_gb": size,
            "repl": repl,
            "secure": secure,
            "labels": labels,
            "rack_aware": rack_aware,
            "created_at": iso(now),
            "primary": nodes[0],
            "attachment": None,
            **({"state": "restoring"} if restoring else {}),
            "replicas": [
                {"node": n, "pool_id": self.pools[n].pool_id, "synced_through": now} for n in nodes
            ],
        }
        for n in nodes:
            self.replica_dir(n, vol_id).mkdir(parents=True, exist_ok=True)
        self.reg.volumes[vol_id] = vol
        self.save()
        self.event("storage.volume.created", volume=name, id=vol_id, replicas=nodes, size_gb=size)
        return vol

    # ---- policy -------------------------------------------------------------------------
    def policy(self) -> policy_mod.Policy:
        path = policy_mod.policy_path(self.ctx.state.root)
        try:
            mtime = path.stat().st_mtime_ns
        except FileNotFoundError:
            mtime = 0
        if self._policy is None or mtime != self._policy_mtime:
            try:
                self._policy = policy_mod.load_policy(path)
            except policy_mod.PolicyFileError as exc:
                raise StorageError(409, str(exc), exc.hint) from None
            self._policy_mtime = mtime
        return self._policy

    def replica_location(self, node: str) -> policy_mod.Location:
        pool = self.pools.get(node)
        return policy_mod.Location(
            "replica", node, pool.region if pool else None, pool.zone if pool else None
        )

    def snapshot_location(self) -> policy_mod.Location:
        spec = self.ctx.spec
        return policy_mod.Location(
            "snapshot", self.ctx.name, spec.region or self.ctx.topology.region, spec.zone
        )

    def enforce(
        self, labels: dict[str, str], locations: list[policy_mod.Location], action: str, volume: str
    ) -> None:
        try:
            policy_mod.enforce(self.policy(), labels, locations, action, volume)
        except policy_mod.PolicyError as exc:
            raise StorageError(403, str(exc), exc.hint) from None

    def allowed_pools(self, labels: dict[str, str], volume: str) -> list[Pool]:
        """Pools where the policy lets this volume's replicas live (all when no rule)."""
        pol = self.policy()
        out = []
        for p in self.pool_list():
            loc = self.replica_location(p.node)
            if not policy_mod.check_placement(pol, labels, [loc], volume):
                out.append(p)
        return out

    def refuse_if_policy_narrowed(
        self,
        labels: dict[str, str],
        name: str,
        repl: int,
        size: float,
        rack_aware: bool,
        allowed: list[Pool],
    ) -> None:
        """When only the policy makes a placement impossible, say so, naming its rules."""
        every = self.pool_list()
        if len(allowed) == len(every):
            return
        try:
            nodes = place_volume(repl, every, size, rack_aware)
        except PlacementError:
            return  # impossible anyway: the placement error says why
        # Possible without the policy: refuse naming the rules that keep the pools out.
        self.enforce(labels, [self.replica_location(n) for n in nodes], "create", name)

    def refuse_if_ha_policy_narrowed(
        self, vol: dict[str, Any], nodes: list[str], repl: int
    ) -> None:
        """An ha-update the policy alone makes impossible is refused naming its rules."""
        try:
            new = ha_update(
                nodes,
                repl,
                self.pool_list(),
                float(vol["size_gb"]),
                working=vol.get("primary"),
                rack_aware=vol.get("rack_aware", False),
            )
        except PlacementError:
            return  # impossible anyway: the placement error says why
        added = [self.replica_location(n) for n in new if n not in nodes]
        self.enforce(vol["labels"], added, "ha-update", vol["name"])

    def violations(self) -> list[dict[str, Any]]:
        """Where existing data breaks the policy: replicas, snapshots and cloud backups.

        Backups are those of this node's cloud journal (made by this cluster, running or
        done, of a volume that still exists, so its labels are known), in the region they
        were sent to; the cloud itself is never asked, so a stopped cloud changes nothing.
        """
        out = []
        pol = self.policy()
        journal = self.journal()
        for v in self.reg.volumes.values():
            locs = [self.replica_location(r["node"]) for r in v["replicas"]]
            if any(s["volume_id"] == v["id"] for s in self.reg.snapshots.values()):
                locs.append(self.snapshot_location())
            for bid, entry in sorted(journal.items()):
                if (
                    isinstance(entry, dict)
                    and entry.get("volume") == v["name"]
                    and entry.get("status") in ("running", "done")
                ):
                    region = str(entry.get("region") or self.cloud_region())
                    locs.append(
                        policy_mod.Location("cloud-backup", f"cloud (backup {bid})", region, None)
                    )
            out += [
                x.as_dict() | {"volume": v["name"]}
                for x in policy_mod.check_placement(pol, v["labels"], locs, v["name"])
            ]
        return out

    async def h_policy(self, request: web.Request) -> web.Response:
        pol = self.policy()
        return json_response(
            {
                "version": pol.version,
                "policy": pol.as_dict(),
                "path": str(policy_mod.policy_path(self.ctx.state.root)),
                "violations": self.violations(),
            }
        )

    def drop_replica_dirs(self, vol_id: str, nodes: list[str]) -> None:
        for n in nodes:
            pool = self.pools.get(n)
            if pool and pool.online:
                shutil.rmtree(self.replica_dir(n, vol_id), ignore_errors=True)

    async def attach(
        self, vol: dict[str, Any], node: str, task_id: str, running: list[str]
    ) -> dict[str, Any]:
        if node not in self.pools:
            raise StorageError(
                409,
                f"{node} has no storage pool (the public agent has none)",
                hint="run the app on a private agent (acceptedResourceRoles)",
            )
        pool = self.pools[node]
        if not pool.online:
            raise StorageError(409, f"the storage pool on {node} is offline")
        if vol.get("state") == "restoring":
            raise StorageError(409, f"volume {vol['name']} is being restored; attach it after")
        att = vol.get("attachment")
        if att and att["task_id"] != task_id:
            holder = self.pools.get(att["node"])
            alive = holder is not None and holder.online
            if alive and (att["node"] != node or att["task_id"] in running):
                raise StorageError(
                    409,
                    f"volume {vol['name']} is attached to task {att['task_id']} on "
                    f"{att['node']}; a volume is attached to one task at a time",
                    hint="stop that task first (scale its app to 0)",
                )
            self.event(
                "storage.attachment.fenced",
                volume=vol["name"],
                node=att["node"],
                task_id=att["task_id"],
            )
            log.warning(
                "volume %s: fenced the attachment of %s on %s",
                vol["name"],
                att["task_id"],
                att["node"],
            )
        src = self.source(vol)
        behind = [r["node"] for r in vol["replicas"] if self.replica_ok(vol, r)]
        if src is None and behind:
            raise StorageError(
                409,
                f"volume {vol['name']}: the replicas online ({', '.join(behind)}) still hold"
                " what a restore replaced; its working copy's node "
                f"{vol.get('primary')} is offline",
                hint="bring that node back (`playground heal`): the restored data is there",
            )
        if src is None:
            where = ", ".join(r["node"] for r in vol["replicas"])
            raise StorageError(
                409,
                f"volume {vol['name']} has no online replica (replicas on {where}: offline)",
                hint="bring a node holding a replica back (`playground heal`); with replication"
                " 1 the data lives on one node only",
            )
        promoted = src != vol.get("primary")
        moved_from: str | None = None
        nodes = [r["node"] for r in vol["replicas"]]
        if node not in nodes:
            self.enforce(vol["labels"], [self.replica_location(node)], "attach", vol["name"])
            # The working copy moves here: a new replica in place of an offline one, one in
            # the same zone, or the stalest, never the source.
            vol["replicas"].append({"node": node, "pool_id": pool.pool_id, "synced_through": 0})
            if len(vol["replicas"]) > vol["repl"]:

                def rank(r: dict[str, Any]) -> tuple[int, int, float]:
                    p = self.pools.get(r["node"])
                    return (
                        1 if self.replica_ok(vol, r) else 0,
                        0 if p and p.zone == pool.zone else 1,
                        self.synced_through(vol, r["node"]),
                    )

                candidates = [r for r in vol["replicas"] if r["node"] not in (node, src)]
                if candidates:
                    drop = min(candidates, key=rank)
                    vol["replicas"].remove(drop)
                    self.known.get(vol["id"], {}).pop(drop["node"], None)
                    self.drop_replica_dirs(vol["id"], [drop["node"]])
                else:
                    moved_from = src  # replication 1: the only replica moves here
        src_dir = self.replica_dir(src, vol["id"])
        if node == src and replication.is_sealed(src_dir):
            # A sealed secondary becomes the working copy: unsealed (aside, then swapped).
            await asyncio.to_thread(
                replication.replicate, src_dir, src_dir, None, True, None, self.unseal_for(src_dir)
            )
            self.known.pop(vol["id"], None)
        if node != src:
            dst = self.replica_dir(node, vol["id"])
            # The working copy is plaintext (a sealed source is unsealed on the way).
            await asyncio.to_thread(
                replication.replicate, src_dir, dst, None, True, None, self.unseal_for(src_dir)
            )
            for r in vol["replicas"]:
                if r["node"] == node:
                    r["pool_id"] = pool.pool_id
                    r["synced_through"] = self.synced_through(vol, src)
                    r.pop("stale", None)
            self.known.get(vol["id"], {}).pop(node, None)
            if moved_from is not None:
                vol["replicas"] = [r for r in vol["replicas"] if r["node"] != moved_from]
                self.known.get(vol["id"], {}).pop(moved_from, None)
                self.lag.get(vol["id"], {}).pop(moved_from, None)
                self.drop_replica_dirs(vol["id"], [moved_from])
        vol["primary"] = node
        self.lag.setdefault(vol["id"], {})[node] = {"synced_through": time.time(), "pending": 0}
        vol["attachment"] = {
            "node": node,
            "task_id": task_id,
            "pid": None,
            "attached_at": iso(time.time()),
        }
        self.save()
        self.event(
            "storage.volume.attached",
            volume=vol["name"],
            node=node,
            task_id=task_id,
            promoted_from=src if promoted or node != src else None,
        )
        return {"volume": self.view(vol), "path": str(self.replica_dir(node, vol["id"]))}

    # ---- HTTP ---------------------------------------------------------------------------
    def app(self) -> web.Application:
        # The token check runs inside the audit, so refused attempts are audited too.
        guard = require_token(self.ctx.token, "the storage control API", self.open_to)
        app = web.Application(
            middlewares=[self.audit_middleware, guard, errors_middleware],
            client_max_size=1 << 20,
        )
        r = app.router
        r.add_get("/v1/policy", self.h_policy)
        r.add_get("/health", self.h_health)
        r.add_get("/metrics", self.h_metrics)
        r.add_get("/v1/pools", self.h_pools)
        r.add_get("/v1/volumes", self.h_volumes)
        r.add_post("/v1/volumes", self.h_create)
        r.add_get("/v1/volumes/{ref}", self.h_volume)
        r.add_delete("/v1/volumes/{ref}", self.h_delete)
        r.add_post("/v1/volumes/{ref}/resize", self.h_resize)
        r.add_post("/v1/volumes/{ref}/ha-update", self.h_ha_update)
        r.add_post("/v1/volumes/{ref}/sync", self.h_sync)
        r.add_post("/v1/volumes/{ref}/verify", self.h_verify)
        r.add_post("/v1/volumes/{ref}/attach", self.h_attach)
        r.add_post("/v1/volumes/{ref}/detach", self.h_detach)
        r.add_put("/v1/volumes/{ref}/attachment", self.h_attachment)
        r.add_post("/v1/volumes/{ref}/attachment", self.h_attachment)
        r.add_get("/v1/volumes/{ref}/snapshots", self.h_volume_snapshots)
        r.add_post("/v1/volumes/{ref}/snapshots", self.h_snapshot_create)
        r.add_post("/v1/volumes/{ref}/clone", self.h_clone)
        r.add_get("/v1/snapshots", self.h_snapshots)
        r.add_get("/v1/snapshots/{id}", self.h_snapshot)
        r.add_delete("/v1/snapshots/{id}", self.h_snapshot_delete)
        r.add_post("/v1/snapshots/{id}/restore", self.h_restore)
        r.add_post("/v1/volumes/{ref}/cloudsnaps", self.h_cloud_backup)
        r.add_get("/v1/cloudsnaps", self.h_cloud_list)
        r.add_get("/v1/cloudsnaps/{id}", self.h_cloud_status)
        r.add_post("/v1/cloudsnaps/{id}/restore", self.h_cloud_restore)
        r.add_get("/v1/schedules", self.h_schedules)
        r.add_post("/v1/schedules", self.h_schedule_create)
        r.add_delete("/v1/schedules/{id}", self.h_schedule_delete)
        return app

    async def body(self, request: web.Request) -> dict[str, Any]:
        raw = await request.read()
        if not raw:
            return {}
        try:
            data = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise StorageError(400, f"the request body is not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise StorageError(400, "the request body must be a JSON object")
        return data

    async def h_health(self, request: web.Request) -> web.Response:
        return json_response(
            {
                "status": "ok",
                "pools": {p.node: p.online for p in self.pools.values()},
                "volumes": len(self.reg.volumes),
            }
        )

    async def h_pools(self, request: web.Request) -> web.Response:
        out = []
        for p in self.pools.values():
            vols = [
                v
                for v in self.reg.volumes.values()
                if any(r["node"] == p.node for r in v["replicas"])
            ]
            out.append(
                p.view(
                    sum(float(v["size_gb"]) for v in vols),
                    sum(self.usage.get(v["id"], 0) for v in vols),
                    len(vols),
                )
            )
        return json_response(out)

    async def h_volumes(self, request: web.Request) -> web.Response:
        vols = sorted(self.reg.volumes.values(), key=lambda v: v["name"])
        return json_response([self.view(v) for v in vols])

    async def h_volume(self, request: web.Request) -> web.Response:
        return json_response(self.view(self.reg.find(request.match_info["ref"])))

    async def h_create(self, request: web.Request) -> web.Response:
        body = await self.body(request)
        vol = self.create_volume(body)
        return json_response(self.view(vol), status=201)

    async def h_delete(self, request: web.Request) -> web.Response:
        vol = self.reg.find(request.match_info["ref"])
        async with self.lock(vol["id"]):
            att = vol.get("attachment")
            if att:
                raise StorageError(
                    409,
                    f"volume {vol['name']} is in use by task {att['task_id']} on {att['node']}",
                    hint="stop the app using it first (scale it to 0 or delete it)",
                )
            self.reg.volumes.pop(vol["id"], None)
            self.save()
            self.drop_replica_dirs(vol["id"], [r["node"] for r in vol["replicas"]])
            self.lag.pop(vol["id"], None)
            self.known.pop(vol["id"], None)
        self.event("storage.volume.deleted", volume=vol["name"], id=vol["id"])
        return json_response({"id": vol["id"], "name": vol["name"], "deleted": True})

    async def h_resize(self, request: web.Request) -> web.Response:
        vol = self.reg.find(request.match_info["ref"])
        size = check_size((await self.body(request)).get("size"))
        used = self.usage.get(vol["id"], 0)
        if size * GB < used:
            raise StorageError(
                409,
                f"volume {vol['name']} holds {used} bytes; {size:g} GB is smaller than that",
                hint="a volume shrinks only down to what it holds",
            )
        old = vol["size_gb"]
        vol["size_gb"] = size
        self.save()
        self.event("storage.volume.resized", volume=vol["name"], from_gb=old, to_gb=size)
        return json_response(self.view(vol))

    async def h_ha_update(self, request: web.Request) -> web.Response:
        vol = self.reg.find(request.match_info["ref"])
        repl = check_repl((await self.body(request)).get("repl"))
        async with self.lock(vol["id"]):
            nodes = [r["node"] for r in vol["replicas"]]
            try:
                new = ha_update(
                    nodes,
                    repl,
                    self.allowed_pools(vol["labels"], vol["name"]),
                    float(vol["size_gb"]),
                    working=vol.get("primary"),
                    rack_aware=vol.get("rack_aware", False),
                )
            except PlacementError as exc:
                self.refuse_if_ha_policy_narrowed(vol, nodes, repl)
                raise StorageError(409, str(exc), exc.hint) from None
            added = [n for n in new if n not in nodes]
            dropped = [n for n in nodes if n not in new]
            vol["replicas"] = [r for r in vol["replicas"] if r["node"] in new] + [
                {"node": n, "pool_id": None, "synced_through": 0} for n in added
            ]
            vol["repl"] = repl
            self.drop_replica_dirs(vol["id"], dropped)
            for n in dropped:
                self.known.get(vol["id"], {}).pop(n, None)
                self.lag.get(vol["id"], {}).pop(n, None)
            self.save()
        self.event(
            "storage.volume.ha_update", volume=vol["name"], repl=repl, added=added, dropped=dropped
        )
        return json_response(self.view(vol))

    async def h_sync(self, request: web.Request) -> web.Response:
        vol = self.reg.find(request.match_info["ref"])
        t0 = time.monotonic()
        async with self.lock(vol["id"]):
            res = await self.replicate(vol, durable=True)
        if res["source"] is None:
            raise StorageError(409, f"volume {vol['name']} has no online replica to sync from")
        failed = {n: r for n, r in res["replicas"].items() if r.startswith("error")}
        if failed:
            # The promise is every online replica: one that could not be written breaks it.
            where = "; ".join(f"{n}: {r}" for n, r in sorted(failed.items()))
            raise StorageError(
                503,
                f"volume {vol['name']}: not every online replica holds the changes ({where})",
                hint="retry the write; `playground volume inspect` shows the replicas' state",
            )
        return json_response(
            {
                "id": vol["id"],
                "name": vol["name"],
                "source": res["source"],
                "replicas": res["replicas"],
                "duration_ms": round((time.monotonic() - t0) * 1000, 3),
            }
        )

    async def h_verify(self, request: web.Request) -> web.Response:
        vol = self.reg.find(request.match_info["ref"])
        async with self.lock(vol["id"]):
            res = await self.replicate(vol, durable=True)
            src = res["source"]
            reps = []
            ok = src is not None
            if src is not None:
                src_dir = self.replica_dir(src, vol["id"])
                try:
                    ref = await asyncio.to_thread(
                        replication.digest_tree, src_dir, self.unseal_for(src_dir)
                    )
                except replication.SealError as exc:
                    raise StorageError(
                        409,
                        f"volume {vol['name']}: the sealed replica on {src} does not unseal"
                        f" ({exc})",
                        hint="bring the working copy's node back (`playground heal`)",
                    ) from None
                for r in vol["replicas"]:
                    if not self.replica_ok(vol, r):
                        reps.append({"node": r["node"], "ok": None, "state": "offline"})
                        continue
                    d = self.replica_dir(r["node"], vol["id"])
                    sealed = replication.is_sealed(d)
                    try:
                        got = await asyncio.to_thread(
                            replication.digest_tree, d, self.unseal_for(d)
                        )
                    except replication.SealError as exc:
                        ok = False
                        reps.append(
                            {"node": r["node"], "ok": False, "sealed": sealed, "error": str(exc)}
                        )
                        continue
                    diff = sorted(k for k in set(ref) | set(got) if ref.get(k) != got.get(k))
                    ok = ok and not diff
                    reps.append(
                        {
                            "node": r["node"],
                            "ok": not diff,
                            "files": len(got),
                            "differing": diff[:20],
                            **({"sealed": sealed} if vol["secure"] else {}),
                        }
                    )
        snaps = []
        for s in self.reg.snapshots.values():
            if s["volume_id"] != vol["id"]:
                continue
            bad = await asyncio.to_thread(snapshots.verify, self.store_of(s), self.manifest_of(s))
            ok = ok and not bad
            snaps.append(
                {"id": s["id"], "name": s.get("name"), "ok": not bad, "damaged_files": bad[:20]}
            )
        self.event("storage.volume.verified", volume=vol["name"], ok=ok)
        return json_response(
            {
                "id": vol["id"],
                "name": vol["name"],
                "ok": ok,
                "source": src,
                "replicas": reps,
                "snapshots": snaps,
            }
        )

    async def h_attach(self, request: web.Request) -> web.Response:
        body = await self.body(request)
        ref = request.match_info["ref"]
        node, task_id = body.get("node"), body.get("task_id")
        if not isinstance(node, str) or not isinstance(task_id, str):
            raise StorageError(400, "attach needs the node and the task_id")
        running = [str(t) for t in body.get("running") or []]
        vol = self.reg.by_name(ref) or self.reg.volumes.get(ref)
        if vol is None:
            create = body.get("create")
            if not isinstance(create, dict):
                raise StorageError(404, f"no volume {ref!r}")
            # Provisioned on first use, its working copy where the task runs.
            vol = self.create_volume({**create, "name": ref}, node=node)
            self.event("storage.volume.provisioned", volume=ref, node=node, task_id=task_id)
        async with self.lock(vol["id"]):
            out = await self.attach(vol, node, task_id, running)
        return json_response(out)

    async def h_detach(self, request: web.Request) -> web.Response:
        body = await self.body(request)
        vol = self.reg.find(request.match_info["ref"])
        att = vol.get("attachment")
        if att and att["task_id"] == body.get("task_id"):
            # A detach in progress (the task is being killed, or its final pass waits for
            # the lock): a restore waits for it rather than refusing.
            att.setdefault("detaching", iso(time.time()))
            if body.get("begin"):
                return json_response({"id": vol["id"], "detached": False, "detaching": True})
        async with self.lock(vol["id"]):
            att = vol.get("attachment")
            if not att or att["task_id"] != body.get("task_id"):
                return json_response(
                    {"id": vol["id"], "detached": False, "reason": "not attached to that task"}
                )
            await self.replicate(vol, durable=True)
            vol["attachment"] = None
            self.save()
        self.event(
            "storage.volume.detached", volume=vol["name"], node=att["node"], task_id=att["task_id"]
        )
        return json_response({"id": vol["id"], "detached": True})

    async def h_attachment(self, request: web.Request) -> web.Response:
        body = await self.body(request)
        vol = self.reg.find(request.match_info["ref"])
        att = vol.get("attachment")
        if not att or att["task_id"] != body.get("task_id"):
            raise StorageError(409, f"volume {vol['name']} is not attached to that task")
        pid = body.get("pid")
        if not isinstance(pid, int) or pid <= 1:
            raise StorageError(400, "pid must be the task's process id")
        att["pid"] = pid
        self.save()
        return json_response(att)

    # ---- snapshots ----------------------------------------------------------------------
    def snap_view(self, s: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in s.items() if k not in ("manifest", "manifest_sealed")}

    async def h_snapshots(self, request: web.Request) -> web.Response:
        snaps = sorted(self.reg.snapshots.values(), key=lambda s: s["created_ts"])
        vol = request.query.get("volume")
        if vol:
            v = self.reg.find(vol)
            snaps = [s for s in snaps if s["volume_id"] == v["id"]]
        return json_response([self.snap_view(s) for s in snaps])

    async def h_volume_snapshots(self, request: web.Request) -> web.Response:
        v = self.reg.find(request.match_info["ref"])
        snaps = sorted(
            (s for s in self.reg.snapshots.values() if s["volume_id"] == v["id"]),
            key=lambda s: s["created_ts"],
        )
        return json_response([self.snap_view(s) for s in snaps])

    async def h_snapshot(self, request: web.Request) -> web.Response:
        return json_response(self.snap_view(self.reg.snapshot(request.match_info["id"])))

    async def h_snapshot_create(self, request: web.Request) -> web.Response:
        vol = self.reg.find(request.match_info["ref"])
        body = await self.body(request)
        name = body.get("name")
        if name is not None:
            check_name(name, "snapshot")
        async with self.lock(vol["id"]):
            snap = await self.take_snapshot(vol, name)
        return json_response(self.snap_view(snap), status=201)

    async def take_snapshot(
        self, vol: dict[str, Any], name: str | None, schedule: str | None = None
    ) -> dict[str, Any]:
        src = self.source(vol)
        if src is None:
            raise StorageError(409, f"volume {vol['name']} has no online replica to snapshot")
        self.enforce(vol["labels"], [self.snapshot_location()], "snapshot", vol["name"])
        previous = None
        mine = [s for s in self.reg.snapshots.values() if s["volume_id"] == vol["id"]]
        if mine:
            latest = max(mine, key=lambda s: s["created_ts"])
            if bool(latest.get("sealed")) == bool(vol["secure"]):
                previous = self.manifest_of(latest)
        att = vol.get("attachment")
        pid = att.get("pid") if att and att.get("node") == src else None
        root = self.replica_dir(src, vol["id"])
        t0 = time.monotonic()
        store = self.sealed if vol["secure"] else self.store
        key = self.unseal_for(root)
        if key is None:
            cap, freeze = await asyncio.to_thread(self._capture, store, root, previous, pid)
        else:
            # The working copy's node is offline and this replica is sealed: captured from
            # a plaintext copy made aside in its pool (a full read, not incremental).
            plain = root.with_name(f".restore-capture-{vol['id']}.{os.getpid()}")
            try:
                await asyncio.to_thread(replication.replicate, root, plain, None, False, None, key)
                cap, freeze = await asyncio.to_thread(self._capture, store, plain, previous, None)
            finally:
                await asyncio.to_thread(shutil.rmtree, plain, True)
        took = time.monotonic() - t0
        now = time.time()
        snap_id = new_id("snap")
        snap: dict[str, Any] = {
            "id": snap_id,
            "name": name,
            "volume_id": vol["id"],
            "volume": vol["name"],
            "volume_size_gb": vol["size_gb"],
            "volume_repl": vol["repl"],
            "volume_labels": vol["labels"],
            "secure": vol["secure"],
            "created_at": iso(now),
            "created_ts": now,
            "source_node": src,
            "size_bytes": cap.manifest["size"],
            "files": len(cap.manifest["files"]),
            "files_read": cap.files_read,
            "bytes_new": cap.bytes_new,
            "freeze_ms": round(freeze * 1000, 3) if freeze is not None else None,
            "duration_ms": round(took * 1000, 3),
            "schedule": schedule,
            "sealed": bool(vol["secure"]),
        }
        if vol["secure"]:
            snap["manifest_sealed"] = self.sealed.seal_manifest(cap.manifest, snap_id)
        else:
            snap["manifest"] = cap.manifest
        self.reg.save_snapshot(snap)
        self.event(
            "storage.snapshot.created",
            volume=vol["name"],
            snapshot=snap["id"],
            bytes_new=cap.bytes_new,
            freeze_ms=snap["freeze_ms"],
        )
        return snap

    def _capture(
        self, store: ChunkStore, root: Path, previous: dict[str, Any] | None, pid: int | None
    ) -> tuple[snapshots.Capture, float | None]:
        frozen_file = self.work / "frozen.json"
        frozen_at: float | None = None
        if pid is not None:
            atomic_write(frozen_file, json.dumps({"pid": pid}).encode())
            try:
                os.killpg(pid, signal.SIGSTOP)
                frozen_at = time.monotonic()
            except (ProcessLookupError, PermissionError):
                frozen_file.unlink(missing_ok=True)
        try:
            cap = snapshots.capture(store, root, previous)
        finally:
            freeze = None
            if frozen_at is not None and pid is not None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGCONT)
                freeze = time.monotonic() - frozen_at
                frozen_file.unlink(missing_ok=True)
        return cap, freeze

    async def h_snapshot_delete(self, request: web.Request) -> web.Response:
        snap = self.reg.snapshot(request.match_info["id"])
        self.reg.delete_snapshot(snap["id"])
        removed = await self.collect_chunks()
        self.event("storage.snapshot.deleted", snapshot=snap["id"], volume=snap["volume"])
        return json_response({"id": snap["id"], "deleted": True, "chunks_removed": removed})

    async def h_restore(self, request: web.Request) -> web.Response:
        snap = self.reg.snapshot(request.match_info["id"])
        body = await self.body(request)
        to = body.get("to")
        created = False
        if to is not None:
            check_name(to)
            vol = self.reg.by_name(to)
            if vol is None:
                vol = self.create_volume(
                    {
                        "name": to,
                        "size": snap["volume_size_gb"],
                        "repl": snap["volume_repl"],
                        "secure": snap["secure"],
                        "labels": snap["volume_labels"],
                    },
                    restoring=True,
                )
                created = True
            elif vol["id"] != snap["volume_id"]:
                raise StorageError(
                    409,
                    f"a volume named {to!r} exists already",
                    hint="restore into a new name, or in place",
                )
        else:
            vol = self.reg.volumes.get(snap["volume_id"])
            if vol is None:
                raise StorageError(
                    409,
                    f"the snapshot's volume {snap['volume']!r} is deleted",
                    hint="restore it into a new volume with --to NAME",
                )
        await self.wait_for_detach(vol)
        async with self.lock(vol["id"]):
            att = vol.get("attachment")
            if att:
                waited = (
                    f"; it has been detaching since {att['detaching']}"
                    if att.get("detaching")
                    else ""
                )
                raise StorageError(
                    409,
                    f"volume {vol['name']} is attached to task {att['task_id']} on "
                    f"{att['node']}; restoring over a volume in use is refused{waited}",
                    hint="stop the app first (scale it to 0), or restore into a new volume"
                    " with --to NAME",
                )
            dst = self.source(vol)
            if dst is None:
                raise StorageError(409, f"volume {vol['name']} has no online replica")
            t0 = time.monotonic()
            try:
                await self.restore_replicas(vol, self.store_of(snap), self.manifest_of(snap))
            except (OSError, ChunkError) as exc:
                if created:
                    self.forget_volume(vol)
                raise StorageError(
                    409,
                    f"restore of {snap['id']} failed: {exc}",
                    hint="`playground volume verify` checks the snapshot's chunks",
                ) from None
            vol.pop("state", None)
            self.save()
        self.event("storage.snapshot.restored", snapshot=snap["id"], volume=vol["name"])
        return json_response(
            {
                "snapshot": snap["id"],
                "volume": self.view(vol),
                "duration_ms": round((time.monotonic() - t0) * 1000, 3),
            }
        )

    async def wait_for_detach(self, vol: dict[str, Any]) -> None:
        """While the volume's task is being stopped (a detach in progress), wait for the
        detach, up to :data:`DETACH_WAIT` seconds; an attachment not detaching is left to
        the caller to refuse."""
        deadline = time.monotonic() + DETACH_WAIT
        while time.monotonic() < deadline:
            att = vol.get("attachment")
            if not (att and att.get("detaching")):
                return
            await asyncio.sleep(0.05)

    async def h_clone(self, request: web.Request) -> web.Response:
        vol = self.reg.find(request.match_info["ref"])
        name = check_name((await self.body(request)).get("name"))
        if self.reg.by_name(name):
            raise StorageError(409, f"a volume named {name!r} exists already")
        async with self.lock(vol["id"]):
            snap = await self.take_snapshot(vol, f"clone-of-{vol['name']}"[:63])
        try:
            clone = self.create_volume(
                {
                    "name": name,
                    "size": vol["size_gb"],
                    "repl": vol["repl"],
                    "secure": vol["secure"],
                    "labels": vol["labels"],
                },
                restoring=True,
            )
            async with self.lock(clone["id"]):
                try:
                    await self.restore_replicas(clone, self.store_of(snap), self.manifest_of(snap))
                except (OSError, ChunkError) as exc:
                    self.forget_volume(clone)
                    raise StorageError(409, f"clone of {vol['name']} failed: {exc}") from None
                clone.pop("state", None)
                self.save()
        finally:
            # The clone's snapshot served its purpose.
            self.reg.delete_snapshot(snap["id"])
            await self.collect_chunks()
        self.event("storage.volume.cloned", volume=vol["name"], clone=name)
        return json_response(self.view(clone), status=201)

    # ---- cloud snapshots ----------------------------------------------------------------
    def cloud_target(self, cloud_dir: Any) -> Any:
        """The cloud's bucket with this cluster's key (the key never leaves this process)."""
        from playground.cloud.server import Cloud, CloudError
        from playground.cluster.secrets import SecretStore
        from playground.storage.cloudsnap import target_from_secrets

        if cloud_dir is not None and not isinstance(cloud_dir, str):
            raise StorageError(400, "cloud_dir must be a path")
        cloud = Cloud(cloud_dir or os.environ.get("PLAYGROUND_CLOUD_DIR") or None)
        try:
            client = cloud.client()
        except CloudError as exc:
            raise StorageError(409, str(exc), exc.hint) from None
        return target_from_secrets(client, cloud.bucket, SecretStore(self.ctx.state.root))

    @staticmethod
    def cloud_region() -> str:
        """Where the cloud is, for the placement policy (``PLAYGROUND_CLOUD_REGION``)."""
        from playground.cloud.server import REGION

        return os.environ.get("PLAYGROUND_CLOUD_REGION") or REGION

    def journal(self) -> dict[str, Any]:
        try:
            data = json.loads((self.work / "cloudsnaps.json").read_text())
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def write_journal(self, data: dict[str, Any]) -> None:
        atomic_write(self.work / "cloudsnaps.json", json.dumps(data, sort_keys=True).encode())

    async def h_cloud_backup(self, request: web.Request) -> web.Response:
        vol = self.reg.find(request.match_info["ref"])
        body = await self.body(request)
        region = str(body.get("region") or self.cloud_region())
        self.enforce(
            vol["labels"],
            [policy_mod.Location("cloud-backup", "cloud", region, None)],
            "backup",
            vol["name"],
        )
        target = await asyncio.to_thread(self.cloud_target, body.get("cloud_dir"))
        from playground.storage.cloudsnap import new_backup_id

        async with self.lock(vol["id"]):
            snap = await self.take_snapshot(vol, None, schedule="cloudsnap")
        bid = new_backup_id()
        journal = self.journal()
        journal[bid] = {
            "volume": vol["name"],
            "snapshot": snap["id"],
            "status": "running",
            "cloud_dir": body.get("cloud_dir"),
            "region": region,
            "started": time.time(),
        }
        self.write_journal(journal)
        self.progress[bid] = {"bytes_done": 0, "bytes_total": 0}
        self.spawn(self.run_backup(target, vol, snap, bid))
        self.event("storage.cloudsnap.started", volume=vol["name"], backup=bid)
        return json_response(
            {"id": bid, "volume": vol["name"], "status": "running", "snapshot": snap["id"]},
            status=202,
        )

    def backup_labels(self, vol: dict[str, Any]) -> dict[str, str]:
        labels = {f"label.{k}": str(v) for k, v in vol["labels"].items()}
        return {
            **labels,
            "size_gb": f"{vol['size_gb']:g}",
            "repl": str(vol["repl"]),
            "secure": str(vol["secure"]).lower(),
            "cluster": self.ctx.cluster_id,
        }

    async def run_backup(
        self, target: Any, vol: dict[str, Any], snap: dict[str, Any], bid: str
    ) -> None:
        def progress(done: int, total: int) -> None:
            self.progress[bid] = {"bytes_done": done, "bytes_total": total}

        status, error = "done", None
        try:
            await asyncio.to_thread(
                target.backup,
                self.store_of(snap),
                self.manifest_of(snap),
                vol["name"],
                self.backup_labels(vol),
                progress,
                bid,
            )
        except Exception as exc:
            status, error = "failed", str(exc)
            self.backups_failed += 1
            log.warning("cloud backup %s of %s failed: %s", bid, vol["name"], exc)
        finally:
            # The local snapshot served the upload; its chunks stay for the next increment.
            self.reg.delete_snapshot(snap["id"])
        journal = self.journal()
        if bid in journal:
            journal[bid].update(status=status, error=error, finished=time.time())
            self.write_journal(journal)
        self.progress.pop(bid, None)
        if status == "done":
            self.backups_done += 1
        # The request was audited when it was accepted; its end is audited here.
        details: dict[str, Any] = {"id": bid, "snapshot": snap["id"]}
        if error is not None:
            details["error"] = error
        await self.audit_entry(self.ctx.name, "cloudsnap.backup", vol["name"], status, **details)
        self.event(f"storage.cloudsnap.{status}", volume=vol["name"], backup=bid, error=error)

    async def resume_backups(self) -> None:
        """A backup cut short by a crash of this node is run again (its chunks are reused)."""
        journal = self.journal()
        for bid, entry in journal.items():
            if entry.get("status") != "running":
                continue
            vol = self.reg.by_name(str(entry.get("volume")))
            snap = self.reg.snapshots.get(str(entry.get("snapshot")))
            try:
                if vol is None or snap is None:
                    raise StorageError(409, "its volume or snapshot is gone")
                target = await asyncio.to_thread(self.cloud_target, entry.get("cloud_dir"))
            except StorageError as exc:
                entry.update(status="failed", error=f"interrupted, not resumed: {exc}")
                self.backups_failed += 1
                self.write_journal(journal)
                continue
            log.info("resuming cloud backup %s of %s", bid, vol["name"])
            self.event("storage.cloudsnap.resumed", volume=vol["name"], backup=bid)
            self.progress[bid] = {"bytes_done": 0, "bytes_total": 0}
            await self.run_backup(target, vol, snap, bid)

    async def h_cloud_list(self, request: web.Request) -> web.Response:
        target = await asyncio.to_thread(self.cloud_target, request.query.get("cloud_dir"))
        recs = await asyncio.to_thread(target.list_backups, request.query.get("volume") or None)
        return json_response([self.backup_view(r.to_json()) for r in recs])

    def backup_view(self, rec: dict[str, Any]) -> dict[str, Any]:
        live = self.progress.get(rec["id"])
        if live and rec.get("status") == "running":
            rec = {**rec, **{k: v for k, v in live.items() if v}}
        total = rec.get("bytes_total") or 0
        rec["progress"] = 1.0 if not total else round(rec.get("bytes_done", 0) / total, 4)
        rec["created"] = iso(float(rec["created_at"]))
        return rec

    async def h_cloud_status(self, request: web.Request) -> web.Response:
        bid = request.match_info["id"]
        target = await asyncio.to_thread(self.cloud_target, request.query.get("cloud_dir"))
        from playground.storage.cloudsnap import CloudSnapError

        try:
            rec = await asyncio.to_thread(target.status, bid)
        except CloudSnapError as exc:
            if bid in self.progress:  # started here, its first record not written yet
                return json_response({"id": bid, "status": "running", **self.progress[bid]})
            raise StorageError(404, str(exc), exc.hint) from None
        return json_response(self.backup_view(rec.to_json()))

    async def h_cloud_restore(self, request: web.Request) -> web.Response:
        from playground.storage.cloudsnap import CloudSnapError

        bid = request.match_info["id"]
        body = await self.body(request)
        name = check_name(body.get("to"))
        if self.reg.by_name(name) is not None:
            raise StorageError(
                409,
                f"a volume named {name!r} exists already",
                hint="restore into a new volume name",
            )
        target = await asyncio.to_thread(self.cloud_target, body.get("cloud_dir"))
        try:
            rec = await asyncio.to_thread(target.status, bid)
        except CloudSnapError as exc:
            raise StorageError(404, str(exc), exc.hint) from None
        labels = rec.labels
        spec = {
            "name": name,
            "size": labels.get("size_gb", DEFAULT_SIZE_GB),
            "repl": min(
                int(labels.get("repl", "1")), len([p for p in self.pools.values() if p.online]) or 1
            ),
            "secure": labels.get("secure", "false"),
            "labels": {k[6:]: v for k, v in labels.items() if k.startswith("label.")},
        }
        t0 = time.monotonic()
        vol = self.create_volume(spec, restoring=True)  # removed if this node dies meanwhile
        try:
            async with self.lock(vol["id"]):
                store = self.sealed if vol["secure"] else self.store
                manifest = await asyncio.to_thread(target.restore, bid, store)
                await self.restore_replicas(vol, store, manifest)
                vol.pop("state", None)
                self.save()
        except (CloudSnapError, OSError, ChunkError) as exc:
            self.forget_volume(vol)
            hint = exc.hint if isinstance(exc, CloudSnapError) else None
            raise StorageError(
                409, f"restore of backup {bid} failed, nothing kept: {exc}", hint
            ) from None
        await self.collect_chunks()
        self.event("storage.cloudsnap.restored", backup=bid, volume=name)
        return json_response(
            {
                "backup": bid,
                "volume": self.view(vol),
                "duration_ms": round((time.monotonic() - t0) * 1000, 3),
            }
        )

    def rollback_restores(self) -> None:
        """Volumes a crash left half-restored are removed: restores are all or nothing."""
        for vol in [v for v in self.reg.volumes.values() if v.get("state") == "restoring"]:
            self.reg.volumes.pop(vol["id"], None)
            for r in vol["replicas"]:
                shutil.rmtree(self.replica_dir(r["node"], vol["id"]), ignore_errors=True)
            self.event("storage.restore.rolled_back", volume=vol["name"])
            log.warning("removed volume %s: a crash interrupted its restore", vol["name"])
        self.save()

    def spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self.bg.add(task)
        task.add_done_callback(self.bg.discard)

    # ---- schedules ----------------------------------------------------------------------
    def next_run(self, sched: dict[str, Any], after: float) -> float:
        """The next cluster-clock time the schedule is due after ``after``."""
        return next_run(sched, after)

    def sched_view(self, sched: dict[str, Any]) -> dict[str, Any]:
        describe = (
            f"every {sched['every_minutes']:g} min"
            if sched.get("every_minutes")
            else f"daily at {sched['daily']}"
        )
        vol = self.reg.volumes.get(sched["volume_id"])
        return {
            **sched,
            "volume": vol["name"] if vol else sched.get("volume"),
            "describe": describe,
            "next_at": iso(sched["next_cluster_ts"]),
            "last_at": iso(sched["last_cluster_ts"]) if sched.get("last_cluster_ts") else None,
            "snapshots": sum(
                1 for x in self.reg.snapshots.values() if x.get("schedule") == sched["id"]
            ),
        }

    async def h_schedules(self, request: web.Request) -> web.Response:
        scheds = sorted(self.reg.schedules.values(), key=lambda x: x["created_at"])
        return json_response([self.sched_view(x) for x in scheds])

    async def h_schedule_create(self, request: web.Request) -> web.Response:
        body = await self.body(request)
        vol = self.reg.find(str(body.get("volume", "")))
        every, daily = body.get("every_minutes"), body.get("daily")
        if (every is None) == (daily is None):
            raise StorageError(400, "a schedule has exactly one of every_minutes or daily")
        if every is not None:
            try:
                every = float(every)
            except (TypeError, ValueError):
                every = 0.0
            if not every >= 1:
                raise StorageError(400, f"every_minutes must be a number >= 1, not {every!r}")
        if daily is not None:
            parts = str(daily).split(":")
            ok = len(parts) == 2 and all(p.isdigit() for p in parts)
            if not ok or not (0 <= int(parts[0]) <= 23 and 0 <= int(parts[1]) <= 59):
                raise StorageError(400, f"daily must be HH:MM (00:00 to 23:59), not {daily!r}")
        keep = body.get("keep", 5)
        if not isinstance(keep, int) or isinstance(keep, bool) or keep < 1:
            raise StorageError(400, f"keep must be an integer >= 1, not {keep!r}")
        now = self.ctx.time.cluster_now()
        sched: dict[str, Any] = {
            "id": new_id("sched"),
            "volume_id": vol["id"],
            "volume": vol["name"],
            "every_minutes": every,
            "daily": daily,
            "keep": keep,
            "created_at": iso(time.time()),
            "last_cluster_ts": None,
        }
        sched["next_cluster_ts"] = self.next_run(sched, now)
        self.reg.schedules[sched["id"]] = sched
        self.save()
        self.event("storage.schedule.created", schedule=sched["id"], volume=vol["name"])
        return json_response(self.sched_view(sched), status=201)

    async def h_schedule_delete(self, request: web.Request) -> web.Response:
        sid = request.match_info["id"]
        sched = self.reg.schedules.pop(sid, None)
        if sched is None:
            raise StorageError(
                404, f"no schedule {sid!r}", hint="`playground schedule list` shows the schedules"
            )
        self.save()
        self.event("storage.schedule.deleted", schedule=sid)
        return json_response({"id": sid, "deleted": True})

    async def schedule_loop(self) -> None:
        while not self.ctx.stop.is_set():
            now = self.ctx.time.cluster_now()
            for sched in list(self.reg.schedules.values()):
                if now < sched["next_cluster_ts"]:
                    continue
                vol = self.reg.volumes.get(sched["volume_id"])
                sched["last_cluster_ts"] = now
                sched["next_cluster_ts"] = self.next_run(sched, now)
                self.save()
                if vol is None:
                    continue
                try:
                    async with self.lock(vol["id"]):
                        snap = await self.take_snapshot(vol, None, schedule=sched["id"])
                except (StorageError, OSError) as exc:
                    self.event("storage.schedule.failed", schedule=sched["id"], error=str(exc))
                    log.warning("schedule %s: snapshot failed: %s", sched["id"], exc)
                    await self.audit_entry(
                        "scheduler",
                        "snapshot.create",
                        vol["name"],
                        "refused"
                        if isinstance(exc, StorageError) and exc.status < 500
                        else "failed",
                        schedule=sched["id"],
                        error=str(exc),
                    )
                    continue
                await self.audit_entry(
                    "scheduler",
                    "snapshot.create",
                    vol["name"],
                    "ok",
                    schedule=sched["id"],
                    id=snap["id"],
                )
                await self.apply_retention(sched)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.ctx.stop.wait(), 0.25)

    async def apply_retention(self, sched: dict[str, Any]) -> None:
        mine = sorted(
            (x for x in self.reg.snapshots.values() if x.get("schedule") == sched["id"]),
            key=lambda x: x["created_ts"],
        )
        old = mine[: max(0, len(mine) - int(sched["keep"]))]
        if not old:
            return
        for x in old:
            self.reg.delete_snapshot(x["id"])
        await self.collect_chunks()
        vol = self.reg.volumes.get(sched["volume_id"])
        for x in old:
            await self.audit_entry(
                "scheduler",
                "snapshot.delete",
                x["id"],
                "ok",
                schedule=sched["id"],
                volume=vol["name"] if vol else sched.get("volume"),
                reason=f"retention: keep {sched['keep']}",
            )
        self.event("storage.schedule.pruned", schedule=sched["id"], deleted=[x["id"] for x in old])

    async def collect_chunks(self) -> int:
        live: set[str] = set()
        for x in self.reg.snapshots.values():
            if not x.get("sealed"):
                live |= snapshots.digests(x["manifest"])
        removed = int(await asyncio.to_thread(self.store.collect, live))
        sealed = [x for x in self.reg.snapshots.values() if x.get("sealed")]
        if sealed or (self.work / "chunks-sealed").exists():
            live_sealed: set[str] = set()
            for x in sealed:
                live_sealed |= snapshots.digests(self.manifest_of(x))
            removed += int(await asyncio.to_thread(self.sealed.collect, live_sealed))
        return removed

    # ---- who may call what ---------------------------------------------------------------
    def open_to(self, request: web.Request) -> bool:
        """Requests that need no platform token: health, metrics, and a task's own volume.

        A task with an external volume holds that volume's token (an HMAC of the platform
        token and the volume id) and may read the volume and ``sync`` it, nothing else.
        """
        if request.path in ("/health", "/metrics"):
            return True
        resource = request.match_info.route.resource
        canonical = resource.canonical if resource is not None else ""
        if (request.method, canonical) not in VOLUME_TOKEN_CALLS:
            return False
        try:
            vol = self.reg.find(request.match_info["ref"])
        except StorageError:
            return False
        return auth.matches(
            auth.presented(request.headers), auth.volume_token(self.ctx.token, vol["id"])
        )

    # ---- audit --------------------------------------------------------------------------
    async def audit_entry(
        self, who: str, action: str, target: str, outcome: str, **details: Any
    ) -> None:
        """Append to the audit log what the node did on its own (never raises)."""
        try:
            await asyncio.to_thread(self.audit.record, who, action, target, outcome, **details)
        except OSError as exc:
            log.error("cannot write the audit log: %s", exc)

    @web.middleware
    async def audit_middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """Every operation that changes something is audited: who, what, when, outcome."""
        if request.method == "GET":
            return await handler(request)
        resource = request.match_info.route.resource
        canonical = resource.canonical if resource is not None else request.path
        action = AUDITED.get((request.method, canonical))
        if action is None:
            return await handler(request)
        resp = await handler(request)
        who = request.headers.get("X-Playground-User") or "api"
        target = request.match_info.get("ref") or request.match_info.get("id") or ""
        outcome = "ok" if resp.status < 400 else "refused" if resp.status < 500 else "failed"
        details: dict[str, Any] = {"status": resp.status}
        try:
            raw = await request.json() if request.body_exists else {}
        except ValueError:
            raw = {}
        if isinstance(raw, dict):
            details.update({k: raw[k] for k in AUDIT_FIELDS if k in raw})
            if who == "api" and isinstance(raw.get("node"), str):
                who = raw["node"]  # the agent's volume driver
            target = target or str(raw.get("name") or raw.get("volume") or "")
        if resp.status >= 400 and isinstance(resp, web.Response) and resp.body:
            with contextlib.suppress(ValueError, TypeError):
                details["message"] = json.loads(bytes(resp.body))["message"]  # type: ignore[arg-type]
        elif isinstance(resp, web.Response) and resp.body:
            with contextlib.suppress(ValueError, TypeError, KeyError):
                body = json.loads(bytes(resp.body))  # type: ignore[arg-type]
                if isinstance(body, dict) and body.get("id"):
                    details["id"] = body["id"]
        try:
            await asyncio.to_thread(self.audit.record, who, action, target, outcome, **details)
        except OSError as exc:
            log.error("cannot write the audit log: %s", exc)
        return resp

    # ---- metrics ------------------------------------------------------------------------
    async def h_metrics(self, request: web.Request) -> web.Response:
        lines = [
            "# HELP playground_storage_pool_online 1 if the storage pool answers.",
            "# TYPE playground_storage_pool_online gauge",
        ]
        starting = time.time() - self.started < STARTUP_GRACE
        for p in self.pools.values():
            if starting and not p.seen_online:
                continue  # the cluster is starting: its agents may not answer yet
            lines.append(f'playground_storage_pool_online{{node="{p.node}"}} {int(p.online)}')
        series: dict[str, list[str]] = {
            "playground_storage_volume_replicas": [],
            "playground_storage_volume_replicas_online": [],
            "playground_storage_volume_used_bytes": [],
            "playground_storage_volume_size_bytes": [],
            "playground_storage_volume_attached": [],
            "playground_storage_replica_lag_seconds": [],
        }
        for v in self.reg.volumes.values():
            view = self.view(v)
            lbl = f'volume="{v["name"]}"'
            series["playground_storage_volume_replicas"].append(f"{{{lbl}}} {v['repl']}")
            online = sum(1 for r in view["replicas"] if r["state"] not in ("offline", "resync"))
            series["playground_storage_volume_replicas_online"].append(f"{{{lbl}}} {online}")
            series["playground_storage_volume_used_bytes"].append(f"{{{lbl}}} {view['used_bytes']}")
            series["playground_storage_volume_size_bytes"].append(f"{{{lbl}}} {view['size_bytes']}")
            series["playground_storage_volume_attached"].append(
                f"{{{lbl}}} {int(bool(v.get('attachment')))}"
            )
            for r in view["replicas"]:
                if r["lag_seconds"] is not None:
                    series["playground_storage_replica_lag_seconds"].append(
                        f'{{{lbl},node="{r["node"]}"}} {r["lag_seconds"]}'
                    )
        for name, samples in series.items():
            lines.append(f"# TYPE {name} gauge")
            lines.extend(name + s for s in samples)
        lines += [
            "# HELP playground_storage_cloud_backup_failed_total Cloud backups that failed.",
            "# TYPE playground_storage_cloud_backup_failed_total counter",
            f"playground_storage_cloud_backup_failed_total {self.backups_failed}",
            "# TYPE playground_storage_cloud_backup_done_total counter",
            f"playground_storage_cloud_backup_done_total {self.backups_done}",
        ]
        return web.Response(text="\n".join(lines) + "\n", content_type="text/plain")

    # ---- run ------------------------------------------------------------------------------
    async def run(self) -> int:
        self.session = aiohttp.ClientSession(trace_configs=network.trace_configs())
        loops = [
            asyncio.create_task(supervise("probe", self.probe_loop, self.ctx.stop)),
            asyncio.create_task(supervise("replication", self.repl_loop, self.ctx.stop)),
            asyncio.create_task(supervise("schedules", self.schedule_loop, self.ctx.stop)),
            asyncio.create_task(self.resume_backups()),
        ]
        try:
            await run_app(self.app(), self.ctx.address.host, self.ctx.address.port, self.ctx.stop)
        finally:
            for t in loops:
                t.cancel()
            await asyncio.gather(*loops, return_exceptions=True)
            self.reg.save()
            await self.session.close()
        return 0


def next_run(sched: dict[str, Any], after: float) -> float:
    """The next time a schedule is due strictly after ``after`` (cluster-clock seconds).

    ``every_minutes``: that long after ``after``. ``daily`` (``HH:MM``): that time of the
    cluster clock's (UTC) day of ``after`` if it is still to come, else of the next day.
    """
    if sched.get("every_minutes"):
        return after + float(sched["every_minutes"]) * 60
    hh, mm = (int(x) for x in str(sched["daily"]).split(":"))
    day = after - after % 86400
    at = day + hh * 3600 + mm * 60
    return at if at > after else at + 86400


#: (method, route) -> audited action; data-path calls (sync, pid reports) are not audited.
AUDITED = {
    ("POST", "/v1/volumes"): "volume.create",
    ("DELETE", "/v1/volumes/{ref}"): "volume.delete",
    ("POST", "/v1/volumes/{ref}/resize"): "volume.resize",
    ("POST", "/v1/volumes/{ref}/ha-update"): "volume.ha_update",
    ("POST", "/v1/volumes/{ref}/verify"): "volume.verify",
    ("POST", "/v1/volumes/{ref}/attach"): "volume.attach",
    ("POST", "/v1/volumes/{ref}/detach"): "volume.detach",
    ("POST", "/v1/volumes/{ref}/clone"): "volume.clone",
    ("POST", "/v1/volumes/{ref}/snapshots"): "snapshot.create",
    ("DELETE", "/v1/snapshots/{id}"): "snapshot.delete",
    ("POST", "/v1/snapshots/{id}/restore"): "snapshot.restore",
    ("POST", "/v1/volumes/{ref}/cloudsnaps"): "cloudsnap.backup",
    ("POST", "/v1/cloudsnaps/{id}/restore"): "cloudsnap.restore",
    ("POST", "/v1/schedules"): "schedule.create",
    ("DELETE", "/v1/schedules/{id}"): "schedule.delete",
}
AUDIT_FIELDS = (
    "name",
    "size",
    "repl",
    "secure",
    "labels",
    "rack_aware",
    "to",
    "node",
    "task_id",
    "volume",
    "every_minutes",
    "daily",
    "keep",
    "region",
)


@web.middleware
async def errors_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        return await handler(request)
    except StorageError as exc:
        return json_response(exc.body(), status=exc.status)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return json_response(
            {"message": f"{exc.reason}: {request.method} {request.path}"}, status=exc.status
        )
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        log.exception("%s %s failed", request.method, request.path)
        return json_response({"message": f"internal error: {type(exc).__name__}: {exc}"}, 500)


async def serve(ctx: NodeContext) -> int:
    return await StorageNode(ctx).run()
