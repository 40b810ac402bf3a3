"""Processes: start nodes detached, find everything the kit started, end it safely.

Every process the kit starts carries a marker: the environment variable
``PLAYGROUND_MARK=<state dir>|<node>`` (inherited by executors and tasks) and, for node
processes, a process title ``playground-node <node> [<state dir>]``. A PID is only ever
signalled after its identity (creation time and marker) is confirmed, so a recycled PID
is never hit.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import psutil

MARK_ENV = "PLAYGROUND_MARK"
TITLE_PREFIX = "playground-node"


def mark_value(state_dir: Path, node: str) -> str:
    return f"{state_dir}|{node}"


def title(state_dir: Path, node: str) -> str:
    return f"{TITLE_PREFIX} {node} [{state_dir}]"


@dataclass(frozen=True)
class ProcRef:
    """A PID together with what proves it is still the same process."""

    pid: int
    create_time: float

    def alive(self) -> bool:
        """True while the process exists, is not a zombie and is the one recorded."""
        try:
            p = psutil.Process(self.pid)
            if abs(p.create_time() - self.create_time) > 0.05:
                return False
            return p.status() != psutil.STATUS_ZOMBIE
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return False

    def to_json(self) -> dict[str, float | int]:
        return {"pid": self.pid, "create_time": self.create_time}


def ref(pid: int) -> ProcRef:
    return ProcRef(pid, psutil.Process(pid).create_time())


def _marker_of(p: psutil.Process) -> str | None:
    try:
        cmd = " ".join(p.cmdline()).strip("\x00 ")
        if cmd.startswith(TITLE_PREFIX + " ") and cmd.endswith("]"):
            node, _, rest = cmd[len(TITLE_PREFIX) + 1 : -1].partition(" [")
            return f"{rest}|{node}"
        return p.environ().get(MARK_ENV)
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, OSError):
        return None


def _scan() -> tuple[dict[int, psutil.Process], dict[int, list[int]], dict[int, str]]:
    """One pass over the process table: processes, children by parent, markers."""
    me = os.getpid()
    uid = os.getuid()
    table: dict[int, psutil.Process] = {}
    children: dict[int, list[int]] = {}
    marks: dict[int, str] = {}
    for p in psutil.process_iter(["pid", "ppid", "uids"]):
        if p.pid == me:
            continue
        info = p.info
        uids = info.get("uids")
        if uid != 0 and uids is not None and uids.real != uid:
            continue
        table[p.pid] = p
        if info.get("ppid") is not None:
            children.setdefault(info["ppid"], []).append(p.pid)
        mark = _marker_of(p)
        if mark is not None:
            marks[p.pid] = mark
    return table, children, marks


def _ancestors() -> set[int]:
    out = {os.getpid()}
    try:
        out.update(p.pid for p in psutil.Process().parents())
    except psutil.Error:
        pass
    return out


def find_marked(state_dir: Path | None = None, node: str | None = None) -> list[psutil.Process]:
    """Processes carrying the kit's marker, of one state dir (and node) or of all.

    The calling process and its ancestors are never included.
    """
    table, _, marks = _scan()
    skip = _ancestors()
    out = []
    for pid, mark in marks.items():
        sdir, _, mnode = mark.rpartition("|")
        if pid in skip:
            continue
        if state_dir is not None and sdir != str(state_dir):
            continue
        if node is not None and mnode != node:
            continue
        out.append(table[pid])
    return out


def cluster_trees(
    state_dir: Path, roots: dict[str, ProcRef | None]
) -> dict[str, list[psutil.Process]]:
    """The whole process tree of every node: its process, descendants and marked strays."""
    table, children, marks = _scan()
    skip = _ancestors()
    out: dict[str, list[psutil.Process]] = {}
    seeds: dict[str, set[int]] = {name: set() for name in roots}
    for name, ref in roots.items():
        if ref is not None and ref.pid in table and ref.alive():
            seeds[name].add(ref.pid)
    for pid, mark in marks.items():
        sdir, _, mnode = mark.rpartition("|")
        if sdir == str(state_dir):
            seeds.setdefault(mnode, set()).add(pid)
    for name, pids in seeds.items():
        found: set[int] = set()
        stack = list(pids)
        while stack:
            pid = stack.pop()
            if pid in found or pid in skip or pid not in table:
                continue
            found.add(pid)
            stack.extend(children.get(pid, []))
        out[name] = [table[p] for p in sorted(found)]
    return out


def tree(root: ProcRef | None, state_dir: Path, node: str) -> list[psutil.Process]:
    """The whole process tree of one node."""
    return cluster_trees(state_dir, {node: root}).get(node, [])


def signal_all(procs: Iterable[psutil.Process], sig: int) -> None:
    """Send ``sig`` to each process (psutil re-checks the identity of every PID)."""
    for p in procs:
        try:
            p.send_signal(sig)
        except (psutil.NoSuchProcess, psutil.AccessDenied, ProcessLookupError):
            pass


def _gone(p: psutil.Process) -> bool:
    try:
        return not p.is_running() or p.status() == psutil.STATUS_ZOMBIE
    except psutil.Error:
        return True


def wait_gone(procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Wait until every process has exited (a zombie counts as gone); return the rest."""
    deadline = time.monotonic() + timeout
    alive = list(procs)
    while alive:
        alive = [p for p in alive if not _gone(p)]
        if not alive or time.monotonic() >= deadline:
            break
        time.sleep(0.02)
    return alive


def terminate(procs: list[psutil.Process], grace: float = 0.5) -> list[psutil.Process]:
    """SIGTERM, wait up to ``grace`` seconds, SIGKILL what is left; return survivors."""
    if not procs:
        return []
    signal_all(procs, signal.SIGTERM)
    alive = wait_gone(procs, grace)
    if alive:
        signal_all(alive, signal.SIGKILL)
        alive = wait_gone(alive, 3.0)
    return alive


def kill(procs: list[psutil.Process]) -> list[psutil.Process]:
    """SIGKILL now (a crash); return survivors after up to 3 s."""
    if not procs:
        return []
    signal_all(procs, signal.SIGKILL)
    return wait_gone(procs, 3.0)


def spawn_detached(state_dir: Path, node: str, log: Path) -> ProcRef:
    """Start a node as a detached process tree (its own session) and return its PID.

    When this process is single-threaded the node is forked from it, so the node shares
    the already imported code (fast start, shared memory pages); otherwise a fresh
    interpreter is started.
    """
    import threading

    log.parent.mkdir(parents=True, exist_ok=True)
    if threading.active_count() == 1 and os.environ.get("PLAYGROUND_SPAWN", "fork") == "fork":
        return _fork_node(state_dir, node, log)
    return _exec_node(state_dir, node, log)


def _child_env(state_dir: Path, node: str) -> dict[str, str]:
    env = dict(os.environ)
    env[MARK_ENV] = mark_value(state_dir, node)
    env.pop("PYTEST_CURRENT_TEST", None)
    return env


def _exec_node(state_dir: Path, node: str, log: Path) -> ProcRef:
    import subprocess

    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "playground.cluster.node", str(state_dir), node],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=_child_env(state_dir, node),
            close_fds=True,
        )
    # The child is reaped by a daemon thread so it never lingers as a zombie of ours.
    threading_wait(proc)
    return ref(proc.pid)


def threading_wait(proc: object) -> None:
    import threading

    t = threading.Thread(target=proc.wait, daemon=True)  # type: ignore[attr-defined]
    t.start()


def _fork_node(state_dir: Path, node: str, log: Path) -> ProcRef:
    # Preload what every node needs so the fork shares it.
    import playground.cluster.node as node_mod

    node_mod.preload()
    # Park every object loaded so far outside the collector's generations: the nodes'
    # garbage collections then do not touch (and so copy) the pages they share.
    import gc

    gc.collect()
    gc.freeze()
    r, w = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # intermediate child: detach and fork the node, then leave
        code = 0
        try:
            os.close(r)
            os.setsid()
            gpid = os.fork()
            if gpid == 0:
                os.close(w)
                _become_node(state_dir, node, log)  # never returns
            os.write(w, str(gpid).encode())
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    os.close(w)
    data = b""
    while chunk := os.read(r, 64):
        data += chunk
    os.close(r)
    os.waitpid(pid, 0)
    if not data:
        raise OSError(f"could not start node {node}")
    gpid = int(data)
    deadline = time.monotonic() + 2
    while True:
        try:
            return ref(gpid)
        except psutil.NoSuchProcess:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _become_node(state_dir: Path, node: str, log: Path) -> None:
    code = 1
    try:
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.closerange(3, 1024)
        # The parent may have replaced sys.stdout/sys.stderr (a test runner capturing
        # output, a TUI): the node writes to its log through fresh file objects.
        sys.stdout = open(1, "w", buffering=1, closefd=False)
        sys.stderr = open(2, "w", buffering=1, closefd=False)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGPIPE):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        # The title first: setproctitle needs the process's original environment block.
        import setproctitle

        setproctitle.setproctitle(title(state_dir, node))
        os.environ.clear()
        os.environ.update(_child_env(state_dir, node))
        from playground.cluster.node import main

        code = main(state_dir, node)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)
