"""Who a task runs as: Mesos's ``--switch_user``.

When the agent runs as root, a task runs as its ``CommandInfo.user`` (Marathon's app
``user``), else as its framework's user (Marathon's ``--mesos_user``), else as the
cluster's ``task_user`` (default ``nobody``). The agent resolves the user, hands the
sandbox and the task's volumes over to it, and the executor drops privileges in the
task's process before it executes the command (supplementary groups, gid, uid; ``HOME``,
``USER`` and ``LOGNAME`` set). An agent that is not root cannot switch users: its tasks
run as the agent's own user and ``user`` is ignored.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class UserError(Exception):
    """The task's user does not exist on this agent."""


@dataclass(frozen=True)
class TaskUser:
    """A resolved account: what the executor needs to drop privileges to it."""

    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]
    home: str

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "uid": self.uid,
            "gid": self.gid,
            "groups": list(self.groups),
            "home": self.home,
        }

    def env(self) -> dict[str, str]:
        """The variables a login of this user has (as Mesos sets them)."""
        return {"HOME": self.home, "USER": self.name, "LOGNAME": self.name}


def can_switch() -> bool:
    """Whether this process may run tasks as other users (it is root)."""
    return os.geteuid() == 0


def requested(command_user: str | None, framework_user: str | None, default: str) -> str:
    """The user a task asks for: its command's, else its framework's, else ``default``."""
    return command_user or framework_user or default


def resolve(name: str) -> TaskUser:
    """The account ``name``; :class:`UserError` with Mesos's words if there is none."""
    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        raise UserError(
            f"Failed to get user information for '{name}': no such user on this agent"
        ) from None
    try:
        groups = tuple(os.getgrouplist(name, pw.pw_gid))
    except OSError:
        groups = (pw.pw_gid,)
    return TaskUser(name, pw.pw_uid, pw.pw_gid, groups, pw.pw_dir or "/")


def group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def make_traversable(path: Path, root: Path) -> None:
    """Let every user traverse (``o+x``, never ``o+r``) the directories from ``root``
    down to ``path``, as Mesos's work directory parents are: a task running as another
    user reaches its sandbox and volumes by absolute path, but can list nothing."""
    root = root.absolute()
    path = path.absolute()
    if path != root and root not in path.parents:
        return
    for d in [path, *path.parents]:
        with contextlib.suppress(FileNotFoundError):
            st = d.lstat()
            if st.st_mode & 0o170000 == 0o040000 and not st.st_mode & 0o001:
                os.chmod(d, (st.st_mode & 0o7777) | 0o001)
        if d == root:
            break


def chown_tree(path: Path, user: TaskUser) -> None:
    """Give ``path`` and everything under it to ``user``; symbolic links are not followed."""
    os.lchown(path, user.uid, user.gid)
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            with contextlib.suppress(FileNotFoundError):
                os.lchown(os.path.join(dirpath, name), user.uid, user.gid)
