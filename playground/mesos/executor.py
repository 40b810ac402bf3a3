"""The command executor: runs one task, outlives the agent, records how the task ended.

Started by the agent as ``python -I -S executor.py RUN_DIR``; it uses the standard
library only, so it starts in milliseconds. It reads ``RUN_DIR/launch.json``, starts
the task in its own process group with the sandbox's ``stdout``/``stderr``, writes
``RUN_DIR/task.pid``, waits, and writes ``RUN_DIR/exit.json`` atomically. It becomes
a child subreaper, so daemonising grandchildren stay in its tree (and are found when
the node is killed).
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


def main(run_dir: str, notify_fd: int | None = None) -> int:
    with open(os.path.join(run_dir, "launch.json")) as fh:
        spec = json.load(fh)
    sandbox = spec["sandbox"]
    _subreaper()
    out = open(os.path.join(sandbox, "stdout"), "ab", buffering=0)
    err = open(os.path.join(sandbox, "stderr"), "ab", buffering=0)
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
        )
    except OSError as exc:
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
