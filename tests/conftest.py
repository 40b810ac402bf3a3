"""Shared fixtures: real embedded clusters in per-test state directories."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from playground.backends import EmbeddedBackend

ROOT = Path(__file__).resolve().parent.parent


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def playground_cmd() -> list[str]:
    """The ``playground`` command of the environment running the tests."""
    exe = shutil.which("playground", path=str(Path(sys.executable).parent))
    return [exe] if exe else [sys.executable, "-m", "playground"]


def traversable(path: Path, base: Path) -> None:
    """Let other users traverse (o+x) the test directories from ``base`` down to ``path``.

    As root, tasks run as ``nobody`` and reach their sandboxes by absolute path, so the
    directories above a state directory must be traversable (as Mesos's work directory's
    are); pytest makes its temporary directories 0700.
    """
    if os.geteuid() != 0:
        return
    top = base.parent if base.parent.name.startswith("pytest-of-") else base
    if path != top and top not in path.parents:
        return
    for d in [path, *path.parents]:
        if d.is_dir() and not d.stat().st_mode & 0o001:
            d.chmod(d.stat().st_mode & 0o7777 | 0o001)
        if d == top or d == d.parent:
            break


@pytest.fixture(scope="session", autouse=True)
def _traversable_temp_dirs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """As root, every test directory is traversable by the tasks' user (see traversable)."""
    if os.geteuid() != 0:
        yield
        return
    base = tmp_path_factory.getbasetemp()
    traversable(base, base)
    mktemp = tmp_path_factory.mktemp

    def traversable_mktemp(basename: str, numbered: bool = True) -> Path:
        path = mktemp(basename, numbered)
        traversable(path, base)
        return path

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tmp_path_factory, "mktemp", traversable_mktemp)
        yield


@pytest.fixture(autouse=True)
def _isolated_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Never touch the user's default state directory from a test."""
    monkeypatch.setenv("PLAYGROUND_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))


def _cluster(
    tmp_path_factory: pytest.TempPathFactory, topology: str, time_scale: float
) -> Iterator[EmbeddedBackend]:
    # A shipped topology by name, or a topology file by path (its stem names the folder).
    state = tmp_path_factory.mktemp(f"cluster-{Path(topology).stem}") / "state"
    backend = EmbeddedBackend(state, topology=topology, time_scale=time_scale)
    # Started as a user starts it: `playground up` in its own small process, which forks
    # the nodes (fast, shared pages). Forking the pytest process itself has hung a node at
    # start-up (under investigation), and a fresh interpreter per node costs ~1.5 s a boot.
    env = {**os.environ, "PLAYGROUND_SPAWN": "fork"}
    cmd = [*playground_cmd(), "up", "--state-dir", str(state), "--topology", topology]
    cp = subprocess.run(
        [*cmd, "--time-scale", f"{time_scale:g}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if cp.returncode != 0:
        backend.destroy()
        raise RuntimeError(f"`playground up` failed ({cp.returncode}):\n{cp.stdout}\n{cp.stderr}")
    try:
        yield backend
    finally:
        backend.destroy()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBackend]:
    """A running ``default`` cluster shared by the tests of one module (time scale 50)."""
    yield from _cluster(tmp_path_factory, "default", 50.0)


@pytest.fixture(scope="module")
def ha_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBackend]:
    """A running ``ha`` cluster shared by the tests of one module (time scale 50)."""
    yield from _cluster(tmp_path_factory, "ha", 50.0)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "integration" in item.nodeid.split(os.sep)[0:2] or "/integration/" in item.nodeid:
            item.add_marker(pytest.mark.integration)
        if "/e2e/" in item.nodeid:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session", autouse=True)
def _no_leftover_processes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """After the suite, no process of a test cluster may still run (and none is left behind)."""
    from playground.cluster import procs

    base = str(tmp_path_factory.getbasetemp())
    yield
    leftovers = [
        p
        for p in procs.find_marked(None)
        if procs._marker_of(p) and str(procs._marker_of(p)).startswith(base)
    ]
    procs.terminate(leftovers)
    assert not leftovers, f"test clusters left {len(leftovers)} process(es) running"
