"""The cluster's secret store: private modes, atomic writes, one value for concurrent creators."""

from __future__ import annotations

import multiprocessing
import os
import stat
from pathlib import Path

import pytest

from playground.cluster.secrets import SecretError, SecretStore


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_modes_are_private(tmp_path: Path) -> None:
    """The directory is 0700 and every secret 0600, whatever the umask."""
    old = os.umask(0o022)
    try:
        s = SecretStore(tmp_path / "state")
        s.put("a", b"one")
        value = s.get_or_create("cloudsnap.key")
    finally:
        os.umask(old)
    assert len(value) == 32
    assert mode(tmp_path / "state" / "secrets") == 0o700
    assert mode(s.root / "a") == 0o600 and mode(s.root / "cloudsnap.key") == 0o600
    os.chmod(s.root, 0o755)
    s.put("b", b"two")  # a loosened directory is tightened again
    assert mode(s.root) == 0o700
    assert sorted(s.names()) == ["a", "b", "cloudsnap.key"]
    assert not list(s.root.glob(".*.tmp"))


def test_get_or_create_keeps_the_first_value(tmp_path: Path) -> None:
    """get_or_create creates once; put replaces; get of a missing secret names it."""
    s = SecretStore(tmp_path)
    first = s.get_or_create("k", 16)
    assert len(first) == 16 and s.get_or_create("k", 16) == first == s.get("k")
    s.put("k", b"replaced")
    assert s.get("k") == b"replaced"
    with pytest.raises(SecretError, match="no secret 'missing'"):
        s.get("missing")
    assert s.delete("k") and not s.delete("k") and not s.has("k")


@pytest.mark.parametrize("name", ["", "../x", "a/b", ".hidden", "x" * 65, "a b"])
def test_bad_names_are_refused(tmp_path: Path, name: str) -> None:
    """Names that could leave the directory, hide or be ambiguous are refused, nothing written."""
    s = SecretStore(tmp_path)
    with pytest.raises(SecretError, match="invalid secret name"):
        s.put(name, b"v")
    assert not (tmp_path / "x").exists() and not s.root.exists()


def test_an_empty_value_is_refused(tmp_path: Path) -> None:
    s = SecretStore(tmp_path)
    with pytest.raises(SecretError, match="non-empty"):
        s.put("k", b"")


def _create(root: str, q: multiprocessing.Queue[bytes]) -> None:
    q.put(SecretStore(root).get_or_create("shared"))


def test_concurrent_creators_agree(tmp_path: Path) -> None:
    """Processes racing to create the same secret all get one value."""
    ctx = multiprocessing.get_context("spawn")
    q: multiprocessing.Queue[bytes] = ctx.Queue()
    procs = [ctx.Process(target=_create, args=(str(tmp_path), q)) for _ in range(4)]
    for p in procs:
        p.start()
    values = {q.get(timeout=30) for _ in procs}
    for p in procs:
        p.join(timeout=30)
    assert len(values) == 1 and values == {SecretStore(tmp_path).get("shared")}


def test_repr_names_no_value(tmp_path: Path) -> None:
    s = SecretStore(tmp_path)
    v = s.get_or_create("k")
    assert v.hex() not in repr(s) and str(tmp_path) in repr(s)
