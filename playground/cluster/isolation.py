"""Pre-flight checks for running tasks as another user (agents running as root).

Tasks run as the cluster's ``task_user`` (default ``nobody``). That user must be able to
execute the kit's interpreter (tasks run ``playground workload ...``), read the kit, and
traverse the directories above the state directory (a task reaches its sandbox and
volumes by absolute path, as on Mesos). ``playground up`` warns about what is missing and
``playground doctor`` reports it, each with what to do.
"""

from __future__ import annotations

import os
import pwd
import stat
import sys
from pathlib import Path

import playground

#: What ``bootstrap`` offers when the interpreter is not usable by others.
BOOTSTRAP_FIX = (
    "run ./scripts/bootstrap again as root: it builds .venv from an interpreter every "
    "user can run (e.g. /usr/bin/python3.11)"
)


def _allowed(st: os.stat_result, uid: int, gids: set[int], bits: int) -> bool:
    """Whether the classic permission bits grant ``bits`` (r=4, w=2, x=1) to the user."""
    if uid == 0:
        return True
    if st.st_uid == uid:
        mode = (st.st_mode >> 6) & 7
    elif st.st_gid in gids:
        mode = (st.st_mode >> 3) & 7
    else:
        mode = st.st_mode & 7
    return mode & bits == bits


def blocker(path: Path, user: str, bits: int) -> Path | None:
    """The first directory on ``path``'s way that ``user`` cannot traverse, or ``path``
    itself if it lacks ``bits`` for them; None if the user gets through."""
    pw = pwd.getpwnam(user)
    gids = set(os.getgrouplist(user, pw.pw_gid))
    path = Path(os.path.realpath(path))
    for d in reversed(path.parents):
        try:
            st = d.stat()
        except OSError:
            return d
        if not _allowed(st, pw.pw_uid, gids, 1):
            return d
    try:
        st = path.stat()
    except OSError:
        return path
    want = bits | (1 if stat.S_ISDIR(st.st_mode) else 0)
    return None if _allowed(st, pw.pw_uid, gids, want) else path


def task_user_problems(task_user: str, state_root: Path) -> list[tuple[str, str]]:
    """What keeps tasks running as ``task_user`` from working: (problem, fix) pairs.

    Empty when this process is not root (tasks then run as the cluster's own user).
    """
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam(task_user)
    except KeyError:
        return [
            (
                f"the task user '{task_user}' does not exist: every task without an app "
                "`user` will fail to launch",
                "create it, or set `task_user:` in the topology to an existing account",
            )
        ]
    out: list[tuple[str, str]] = []
    exe = Path(os.path.realpath(sys.executable))
    where = blocker(exe, task_user, 1)
    if where is not None:
        out.append(
            (
                f"the task user '{task_user}' cannot run the kit's interpreter {exe} "
                f"({where} is closed to it): tasks running `playground workload ...` fail",
                BOOTSTRAP_FIX,
            )
        )
    kit = Path(playground.__file__).parent
    for what, path in (("the kit", kit), ("its environment", Path(sys.prefix))):
        where = blocker(path, task_user, 4)
        if where is not None:
            out.append(
                (
                    f"the task user '{task_user}' cannot read {what} at {path} "
                    f"({where} is closed to it)",
                    f"let others read and traverse it: chmod o+rX {where}",
                )
            )
    parent = state_root.absolute().parent
    existing = parent if parent.exists() else next(p for p in parent.parents if p.exists())
    where = blocker(existing, task_user, 1)
    if where is not None:
        out.append(
            (
                f"tasks running as '{task_user}' cannot reach the state directory "
                f"{state_root} by its path ({where} is closed to them): their "
                "$MESOS_SANDBOX and volumes are unreachable",
                f"use a --state-dir under a directory others may traverse, or chmod o+x {where}",
            )
        )
    return out
