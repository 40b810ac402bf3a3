"""The command executor: runs one task, outlives the agent, records how the task ended.

Started by the agent as ``python -I -S executor.py RUN_DIR``; it uses the standard
library only, so it starts in milliseconds. It reads ``RUN_DIR/launch.json``, starts
the task in its own process group with the sandbox's ``stdout``/``stderr``, writes
``RUN_DIR/task.pid``, waits, and writes ``RUN_DIR/exit.json`` atomically. It becomes
a child subreaper, so daemonising grandchildren stay in its tree (and are found when
the node is killed).

When ``launch.json`` names a ``user`` (the agent runs as root: Mesos's
``--switch_user``), the task's process enters its sandbox, then drops privileges
(supplementary groups, gid, uid) before it executes the command; the executor itself
stays root, so it can still signal and reap the task.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time


def _subreaper() -> None:
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        pass


def _atomic_json(path: str, data: dict[str, object]) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(data, fh)
    os.replace(tmp, path)


def credentials(user: dict[str, object] | None) -> dict[str, object]:
    """``Popen`` arguments that drop the task's privileges to ``user`` (none: keep ours).

    ``subprocess`` does it in the child between fork and exec, in the safe order:
    ``chdir`` (into the sandbox, while still privileged), ``setgroups``, ``setregid``,
    ``setreuid``.
    """
    if not user:
        return {}
    return {
        "user": int(user["uid"]),  # type: ignore[call-overload]
        "group": int(user["gid"]),  # type: ignore[call-overload]
        "extra_groups": [int(g) for g in user.get("groups") or []],  # type: ignore[attr-defined]
    }


def main(run_dir: str, notify_fd: int | None = None) -> int:
    with open(os.path.join(run_dir, "launch.json")) as fh:
        spec = json.load(fh)
    sandbox = spec["sandbox"]
    _subreaper()
    out = open(os.path.join(sandbox, "stdout"), "ab", buffering=0)
    err = open(os.path.join(sandbox, "stderr"), "ab", buffering=0)
    user = spec.get("user")
    if user:
        # The sandbox's output belongs to the task's user, as the rest of its sandbox.
        for fh in (out, err):
            os.fchown(fh.fileno(), int(user["uid"]), int(user["gid"]))
    if spec.get("shell", True):
        argv = ["/bin/sh", "-c", spec["value"]]
    else:
        argv = (
            [spec["value"], *spec.get("arguments", [])[1:]]
            if spec.get("arguments")
            else [spec["value"]]
        )
    try:
        proc = subprocess.Popen(
            argv,
            cwd=sandbox,
            env=spec["env"],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            process_group=0,
            close_fds=True,
            umask=0o022,
            **credentials(user),  # type: ignore[arg-type]
        )
    except (OSError, subprocess.SubprocessError) as exc:
        err.write(f"Failed to launch the task: {exc}\n".encode())
        _atomic_json(
            os.path.join(run_dir, "exit.json"), {"launch_error": str(exc), "time": time.time()}
        )
        return 1
    with open(os.path.join(run_dir, "task.pid.tmp"), "w") as fh:
        fh.write(str(proc.pid))
    os.replace(os.path.join(run_dir, "task.pid.tmp"), os.path.join(run_dir, "task.pid"))
    if notify_fd is not None:
        # Tell the agent the command runs (it waits on this pipe instead of polling).
        try:
            os.write(notify_fd, f"{proc.pid}\n".encode())
            os.close(notify_fd)
        except OSError:
            pass

    def forward(signum: int, _frame: object) -> None:
        try:
            os.killpg(proc.pid, signum)
        except ProcessLookupError:
            pass

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    while True:
        try:
            status = proc.wait()
            break
        except InterruptedError:
            continue
    # The task's container ends with its task: nothing of its process group outlives it.
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    # Reap whatever daemonised grandchildren were re-parented to us, without blocking.
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            break
    _atomic_json(os.path.join(run_dir, "exit.json"), {"status": status, "time": time.time()})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else None))
