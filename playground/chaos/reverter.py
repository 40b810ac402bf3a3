"""The fault reverter: a small detached process that reverts faults when their time is up.

``playground break NODE --for 30`` records ``revert_at`` on the fault and starts this
process (``python -m playground.chaos.reverter STATE``); it sleeps until the earliest
``revert_at``, reverts what is due through the fault registry and exits when no fault
waits any more. One runs per state directory (an exclusive lock); it carries the kit's
process marker, so ``playground down`` and ``clean`` end it with the cluster. Faults
are also reverted by any ``break``, ``faults`` or ``heal`` that finds them due, so a
reverter that was killed loses nothing.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from playground.cluster import procs

NAME = "fault-reverter"
LOCK = ".reverter.lock"
#: The reverter looks at the registry at least this often (faults change under it).
POLL = 1.0

log = logging.getLogger("playground.reverter")


def spawn(state_dir: Path) -> None:
    """Start the reverter of ``state_dir`` unless one holds the lock already."""
    if _held(state_dir):
        return
    env = dict(os.environ)
    env[procs.MARK_ENV] = procs.mark_value(state_dir, NAME)
    env.pop("PYTEST_CURRENT_TEST", None)
    log_path = state_dir / "nodes" / NAME / "node.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "playground.chaos.reverter", str(state_dir)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
            close_fds=True,
        )
    procs.threading_wait(proc)


def _held(state_dir: Path) -> bool:
    """Whether a reverter holds the state directory's lock now."""
    try:
        with _exclusive(state_dir) as mine:
            return not mine
    except OSError:
        return False


@contextlib.contextmanager
def _exclusive(state_dir: Path) -> Iterator[bool]:
    with open(state_dir / LOCK, "a+") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _next_due(state_dir: Path) -> float | None:
    """Epoch seconds of the earliest pending revert, or None when none is pending."""
    from playground.backends import EmbeddedBackend
    from playground.chaos.faults import Faults, _epoch

    due = [_epoch(f.revert_at) for f in Faults(EmbeddedBackend(state_dir)).active() if f.revert_at]
    return min(due) if due else None


def run(state_dir: Path) -> int:
    from playground.backends import EmbeddedBackend
    from playground.chaos.faults import Faults
    from playground.cluster.statedir import set_event_source

    set_event_source(NAME)
    while True:
        with _exclusive(state_dir) as mine:
            if not mine:
                return 0  # another reverter serves this state directory
            while (due := _next_due(state_dir)) is not None:
                time.sleep(min(max(due - time.time(), 0.0), POLL))
                if time.time() >= due:
                    for f in Faults(EmbeddedBackend(state_dir)).revert_due():
                        log.info("reverted %s (%s %s)", f.id, f.kind, f.target)
        # A fault added while the lock was being released would find the lock held and
        # rely on this process: look once more before leaving.
        if _next_due(state_dir) is None:
            return 0


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s {NAME} %(levelname)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        import setproctitle

        setproctitle.setproctitle(procs.title(Path(argv[0]), NAME))
    except ImportError:  # pragma: no cover - the dependency is declared
        pass
    try:
        return run(Path(argv[0]))
    except Exception:
        log.exception("the reverter failed; faults revert at the next break, faults or heal")
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
