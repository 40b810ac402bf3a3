"""Where the cloud lives when no ``--cloud-dir`` is given: outside any cluster."""

from __future__ import annotations

from pathlib import Path

import pytest

from playground.cloud.server import default_cloud_dir


def test_the_env_variable_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PLAYGROUND_CLOUD_DIR", str(tmp_path / "mine"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert default_cloud_dir() == tmp_path / "mine"


def test_xdg_data_home_is_the_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("PLAYGROUND_CLOUD_DIR", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert default_cloud_dir() == tmp_path / "xdg" / "playground" / "cloud"


def test_without_xdg_it_is_under_the_home_share(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("PLAYGROUND_CLOUD_DIR", raising=False)
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_cloud_dir() == tmp_path / ".local" / "share" / "playground" / "cloud"
    assert not (tmp_path / ".local").exists(), "naming the directory creates nothing"
