"""Remediation: what the monitor does about a firing alert when its rule asks for it.

A rule's policy (``remediation: {action: rebuild, after: 60s, enabled: true}``) runs
its action on the alert's subject node once the alert has fired for ``after``
(real-cluster seconds, scaled). The action goes through the fault registry
(:class:`playground.chaos.faults.Faults` on the embedded backend), exactly as
``playground rebuild`` / ``heal`` do, so the fault is marked reverted and the timeline
says who did it.

The action runs in a short-lived helper process (``python -m
playground.monitor.remediation STATE ACTION NODE [SOURCE]``), not in a thread of the monitor:
a node started from a thread of the monitor would be the monitor's child, so crashing
the monitor would take the rebuilt node down with it. The helper prints one JSON
object (``ok``, ``detail``) and exits; the monitor's event loop goes on meanwhile.
Up to :data:`MAX_ATTEMPTS` attempts per ticket, ``after`` apart.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from pathlib import Path
from typing import Any

log = logging.getLogger("playground.monitor.remediation")

MAX_ATTEMPTS = 3
#: Wall seconds an action may take before the monitor gives up on it.
ACTION_TIMEOUT = 90.0


async def run_action(
    state_dir: Path,
    action: str,
    node: str,
    source: str = "monitor-1",
    timeout: float = ACTION_TIMEOUT,
) -> tuple[bool, str]:
    """Run ``action`` on ``node`` in a helper process; ``(succeeded, what happened)``."""
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "playground.monitor.remediation",
            str(state_dir),
            action,
            node,
            source,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
    except OSError as exc:
        return False, f"could not start the remediation helper: {exc}"
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return False, f"{action} {node} did not finish within {timeout:.0f}s"
    try:
        result = json.loads(out.decode().strip().splitlines()[-1])
        return bool(result["ok"]), str(result["detail"])
    except (ValueError, IndexError, KeyError):
        tail = (err.decode(errors="replace").strip().splitlines() or ["no output"])[-1]
        return False, f"the remediation helper failed (exit {proc.returncode}): {tail}"


def perform(state_dir: Path, action: str, node: str) -> dict[str, Any]:
    """Do ``action`` to ``node`` through the fault registry (in the helper process)."""
    from playground.backends import EmbeddedBackend
    from playground.chaos.faults import Faults

    faults = Faults(EmbeddedBackend(state_dir))
    if action in ("rebuild", "rebuild-keep-disk"):
        info = faults.resolve(node)
        keep = action == "rebuild-keep-disk" or info.role not in ("agent", "public-agent")
        r = faults.rebuild(node, keep_disk=keep)
        detail = f"rebuilt {r.node} " + ("with its disk" if keep else "with a clean disk")
        if r.old_agent_id and not keep:
            detail += f"; old agent id {r.old_agent_id} marked gone"
        if r.agent_id:
            detail += f"; agent id {r.agent_id}"
        return {"ok": True, "detail": detail}
    if action == "heal":
        reverted = faults.heal(node)
        detail = f"started {node} again" + (
            f"; reverted {', '.join(f.id for f in reverted)}" if reverted else ""
        )
        return {"ok": True, "detail": detail}
    return {"ok": False, "detail": f"unknown action {action!r}"}


def main(argv: list[str]) -> int:
    from playground.cluster.statedir import set_event_source
    from playground.errors import PlaygroundError

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    state_dir, action, node = Path(argv[0]), argv[1], argv[2]
    set_event_source(argv[3] if len(argv) > 3 else "monitor-1")
    try:
        result = perform(state_dir, action, node)
    except PlaygroundError as exc:
        result = {"ok": False, "detail": str(exc) + (f" ({exc.hint})" if exc.hint else "")}
    except Exception as exc:
        log.exception("remediation %s %s failed", action, node)
        result = {"ok": False, "detail": f"{type(exc).__name__}: {exc}"}
    print(json.dumps(result), flush=True)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
