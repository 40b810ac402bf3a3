"""Mesos's --switch_user: who a task runs as, handing directories over, dropping privileges."""

from __future__ import annotations

import json
import os
import pwd
import subprocess
import sys
from pathlib import Path

import pytest

from playground.mesos import executor, users

ROOT = os.geteuid() == 0


def test_the_command_user_wins_then_the_framework_then_the_default() -> None:
    """CommandInfo.user, else FrameworkInfo.user, else the cluster's task_user."""
    assert users.requested("alice", "root", "nobody") == "alice"
    assert users.requested(None, "root", "nobody") == "root"
    assert users.requested("", "", "nobody") == "nobody"


def test_an_unknown_user_fails_with_mesos_words() -> None:
    """A missing account is refused with 'Failed to get user information for ...'."""
    with pytest.raises(users.UserError, match="Failed to get user information for 'no-such-x'"):
        users.resolve("no-such-x")


def test_a_resolved_user_carries_its_groups_and_login_environment() -> None:
    """resolve gives uid, gid, supplementary groups and HOME/USER/LOGNAME."""
    me = pwd.getpwuid(os.getuid()).pw_name
    u = users.resolve(me)
    assert (u.uid, u.gid) == (os.getuid(), pwd.getpwuid(os.getuid()).pw_gid)
    assert u.gid in u.groups
    assert u.env() == {"HOME": u.home, "USER": me, "LOGNAME": me}
    assert executor.credentials(u.to_json()) == {
        "user": u.uid,
        "group": u.gid,
        "extra_groups": list(u.groups),
    }
    assert executor.credentials(None) == {}


def test_only_the_path_below_the_state_directory_becomes_traversable(tmp_path: Path) -> None:
    """make_traversable adds o+x (never o+r) from the root down, and nothing above it."""
    tmp_path.chmod(0o700)
    root = tmp_path / "state"
    deep = root / "nodes" / "agent-1" / "work" / "sandbox"
    deep.mkdir(parents=True)
    for d in (root, *deep.parents, deep):
        if root in (d, *d.parents):
            d.chmod(0o700)
    users.make_traversable(deep, root)
    for d in (root, root / "nodes", root / "nodes" / "agent-1", deep.parent, deep):
        assert d.stat().st_mode & 0o777 == 0o701, d
    assert tmp_path.stat().st_mode & 0o777 == 0o700
    users.make_traversable(tmp_path / "elsewhere", root)  # outside the root: untouched
    assert tmp_path.stat().st_mode & 0o777 == 0o700


@pytest.mark.skipif(not ROOT, reason="dropping privileges needs root")
def test_the_executor_drops_privileges_before_the_command(tmp_path: Path) -> None:
    """As root, a task with a user runs as that user, in its sandbox, with its groups."""
    nobody = users.resolve("nobody")
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    tmp_path.chmod(0o700)  # closed above the sandbox: the task still starts inside it
    users.chown_tree(sandbox, nobody)
    spec = {
        "sandbox": str(sandbox),
        "shell": True,
        "value": "id -u; id -g; id -G; pwd; echo $USER; touch mine && stat -c %U mine",
        "env": {"PATH": "/usr/bin:/bin", **nobody.env()},
        "user": nobody.to_json(),
    }
    (tmp_path / "launch.json").write_text(json.dumps(spec))
    subprocess.run(
        [sys.executable, "-I", "-S", executor.__file__, str(tmp_path)], check=True, timeout=30
    )
    out = (sandbox / "stdout").read_text().split("\n")
    assert out[0] == str(nobody.uid) and out[1] == str(nobody.gid)
    assert set(out[2].split()) == {str(g) for g in nobody.groups}
    assert out[3] == str(sandbox) and out[4] == "nobody" and out[5] == "nobody"
    assert (sandbox / "stdout").stat().st_uid == nobody.uid
    assert json.loads((tmp_path / "exit.json").read_text())["status"] == 0
