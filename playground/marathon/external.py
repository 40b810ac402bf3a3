"""External volumes (``container.volumes[].external``, provider ``dvdi``), Marathon's side.

Enabled by default (Marathon needs ``--enable_features external_volumes``). An app's
external volumes become ``DOCKER_VOLUME`` volumes of its Mesos tasks, with the ``dvdi/*``
options as driver options, as Marathon does for the Mesos containerizer; the agent's driver
(:mod:`playground.storage.driver`) attaches them through the storage node.

Offer matching consults the storage node (:class:`StorageView`): a task that needs a
``playground``/``pxd`` volume is not placed on an agent whose storage pool is offline, nor
anywhere while the volume has no online replica -- and ``/v2/queue`` says why.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from playground.client import auth as client_auth
from playground.storage.driver import DRIVERS, parse_inline

if TYPE_CHECKING:
    import aiohttp

log = logging.getLogger("playground.marathon.external")

DRIVER_OPTION = "dvdi/driver"
#: Seconds a storage view stays fresh.
VIEW_TTL = 0.5


def external_volumes(app: dict[str, Any]) -> list[dict[str, Any]]:
    """The app's ``container.volumes`` entries with an ``external`` part."""
    vols = (app.get("container") or {}).get("volumes") or []
    return [v for v in vols if isinstance(v, dict) and isinstance(v.get("external"), dict)]


def storage_volumes(app: dict[str, Any]) -> list[str]:
    """Names of the app's external volumes served by the kit's storage node."""
    out = []
    for v in external_volumes(app):
        ext = v["external"]
        driver = str((ext.get("options") or {}).get(DRIVER_OPTION, ""))
        if ext.get("provider") == "dvdi" and driver in DRIVERS:
            out.append(parse_inline(str(ext.get("name", "")))[0])
    return out


def mesos_volumes(app: dict[str, Any]) -> list[dict[str, Any]]:
    """The ``Volume`` protos Marathon gives the task for its external volumes."""
    out = []
    for v in external_volumes(app):
        ext = v["external"]
        opts = {str(k): str(val) for k, val in (ext.get("options") or {}).items()}
        driver = opts.pop(DRIVER_OPTION, "")
        params = [{"key": k, "value": val} for k, val in sorted(opts.items())]
        if ext.get("size") is not None:
            params.append({"key": "size", "value": str(ext["size"])})
        out.append(
            {
                "container_path": v.get("containerPath", ""),
                "mode": v.get("mode", "RW"),
                "source": {
                    "type": "DOCKER_VOLUME",
                    "docker_volume": {
                        "driver": driver,
                        "name": str(ext.get("name", "")),
                        "driver_options": {"parameter": params},
                    },
                },
            }
        )
    return out


def validate_volume(ext: dict[str, Any], path: str, add: Any) -> None:
    """Marathon's DVDI rules for one ``external`` part (``add(path, message)``)."""
    if ext.get("provider") is not None and ext.get("provider") != "dvdi":
        add(f"{path}/external/provider", "is unknown provider")
        return
    opts = ext.get("options")
    if ext.get("provider") == "dvdi":
        if not isinstance(opts, dict) or not opts.get(DRIVER_OPTION):
            add(f'{path}/external/options("{DRIVER_OPTION}")', "not defined")
    size = ext.get("size")
    if size is not None and (
        isinstance(size, bool) or not isinstance(size, int | float) or size <= 0
    ):
        add(f"{path}/external/size", f"got {size}, expected more than 0")


def validate_app(app: dict[str, Any], path: str, add: Any) -> None:
    """Marathon 1.10's app-level DVDI rules (the upgrade strategy is checked with residency's).

    A volume attaches to one task at a time, so an app has at most one instance, unless
    every external volume is ``shared``; a volume is declared once per app; the Docker
    containerizer takes no options but the driver, and no size.
    """
    vols = external_volumes(app)
    if not vols:
        return
    shared = all(str(v["external"].get("shared", "false")).lower() == "true" for v in vols)
    instances = app.get("instances", 1)
    if not shared and isinstance(instances, int) and instances > 1:
        add(
            path or "/",
            "Number of instances is limited to 1 when declaring DVDI volumes in app "
            f"[{app.get('id')}]",
        )
    names = [
        str(v["external"].get("name")) for v in vols if v["external"].get("provider") == "dvdi"
    ]
    for dup in sorted({n for n in names if names.count(n) > 1}):
        add(
            path or "/",
            f"Requested DVDI volume '{dup}' is declared more than once within app {app.get('id')}",
        )
    container = app.get("container") or {}
    if str(container.get("type", "")).upper() == "DOCKER":
        for i, v in enumerate(container.get("volumes") or []):
            ext = v.get("external") if isinstance(v, dict) else None
            if not isinstance(ext, dict) or ext.get("provider") != "dvdi":
                continue
            where = f"{path}/container/volumes({i})/external"
            if set(ext.get("options") or {}) - {DRIVER_OPTION}:
                add(f"{where}/options", f"must only contain {DRIVER_OPTION}")
            if ext.get("size") is not None:
                add(f"{where}/size", "must be undefined for Docker containers")


class StorageView:
    """What Marathon knows of the storage node: online pools, volumes' online replicas."""

    def __init__(self, url: str | None, token: str | None = None) -> None:
        self.url = url
        #: The platform token the storage control API requires.
        self.headers = client_auth.headers(token)
        self.fetched = 0.0
        self.pools: dict[str, bool] = {}
        self.volumes: dict[str, dict[str, Any]] = {}
        self.reachable = False

    async def refresh(self, session: aiohttp.ClientSession) -> None:
        if self.url is None or time.monotonic() - self.fetched < VIEW_TTL:
            return
        import aiohttp

        self.fetched = time.monotonic()
        try:
            timeout = aiohttp.ClientTimeout(total=1.0)
            h = self.headers
            async with session.get(f"{self.url}/v1/pools", timeout=timeout, headers=h) as r:
                r.raise_for_status()
                pools = await r.json()
            async with session.get(f"{self.url}/v1/volumes", timeout=timeout, headers=h) as r:
                r.raise_for_status()
                vols = await r.json()
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
            if self.reachable:
                log.warning("the storage node does not answer: %s", exc)
            self.reachable = False
            return
        self.reachable = True
        self.pools = {p["node"]: bool(p["online"]) for p in pools}
        self.volumes = {v["name"]: v for v in vols}

    def replica_nodes(self, app: dict[str, Any]) -> set[str]:
        """Agents holding an online replica of every storage volume of the app."""
        names = storage_volumes(app)
        if not names or not self.reachable:
            return set()
        nodes: set[str] | None = None
        for name in names:
            vol = self.volumes.get(name)
            if vol is None:
                return set()
            here = {r["node"] for r in vol["replicas"] if r["state"] not in ("offline", "resync")}
            nodes = here if nodes is None else nodes & here
        return nodes or set()

    def blocker(self, app: dict[str, Any], agent_node: str | None) -> str | None:
        """Why an instance of ``app`` cannot run on ``agent_node`` now (None: it can)."""
        names = storage_volumes(app)
        if not names or self.url is None:
            return None
        if not self.reachable:
            return "the storage node does not answer"
        if agent_node is not None and not self.pools.get(agent_node, False):
            if agent_node not in self.pools:
                return f"{agent_node} has no storage pool"
            return f"the storage pool on {agent_node} is offline"
        for name in names:
            vol = self.volumes.get(name)
            if vol is None:
                continue  # provisioned on first use
            online = [r["node"] for r in vol["replicas"] if r["state"] not in ("offline", "resync")]
            if not online:
                where = ", ".join(r["node"] for r in vol["replicas"])
                return f"volume {name} has no online replica (on {where})"
        return None


def new_session() -> aiohttp.ClientSession:
    import aiohttp

    from playground.cluster import network

    return aiohttp.ClientSession(trace_configs=network.trace_configs())


def root_conflicts(apps: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Marathon's root-group rule: a DVDI volume name (not ``shared``) belongs to one app."""
    owners: dict[str, list[str]] = {}
    for aid, app in apps.items():
        for v in external_volumes(app):
            ext = v["external"]
            if ext.get("provider") != "dvdi" or str(ext.get("shared", "")).lower() == "true":
                continue
            owners.setdefault(str(ext.get("name")), []).append(aid)
    errors: list[str] = []
    for aid in sorted(apps):
        for v in external_volumes(apps[aid]):
            name = str(v["external"].get("name"))
            others = [o for o in owners.get(name, []) if o != aid]
            if others and v["external"].get("provider") == "dvdi":
                errors.append(
                    f"Volume name '{name}' in {aid} conflicts with volume(s) of same name in "
                    f"app(s): {', '.join(others)}"
                )
    return [{"path": "/", "errors": errors}] if errors else []
