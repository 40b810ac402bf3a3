"""The agent's volume driver: DOCKER_VOLUME entries, inline and dvdi options, the sandbox link, env."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from playground.marathon import external
from playground.storage import driver
from playground.storage.driver import ExternalVolume, external_volumes, parse_inline


def docker_volume(name: str, drv: str = "pxd", path: str = "data", **params: str) -> dict[str, Any]:
    return {
        "container_path": path,
        "mode": "RW",
        "source": {
            "type": "DOCKER_VOLUME",
            "docker_volume": {
                "driver": drv,
                "name": name,
                "driver_options": {
                    "parameter": [
                        {"key": k.replace("__", "/"), "value": v} for k, v in params.items()
                    ]
                },
            },
        },
    }


def test_parse_inline_reads_portworx_names() -> None:
    assert parse_inline("name=vol,size=10,repl=2") == ("vol", {"size": "10", "repl": "2"})
    assert parse_inline("size=3, name=db ,secure=true") == (
        "db",
        {"size": "3", "secure": "true"},
    )
    assert parse_inline("plain") == ("plain", {})
    assert parse_inline("plain-name.v2") == ("plain-name.v2", {})


def test_inline_options_become_create_options() -> None:
    """``name=vol,size=10,repl=2`` provisions volume ``vol`` with size 10 and replication 2."""
    info = {"container": {"volumes": [docker_volume("name=vol,size=10,repl=2", path="pg")]}}
    (vol,) = external_volumes(info)
    assert (vol.name, vol.container_path, vol.driver) == ("vol", "pg", "pxd")
    assert vol.create_options() == {"size": "10", "repl": "2"}


def test_dvdi_options_are_stripped_of_their_prefix_and_mapped() -> None:
    """``dvdi/repl``, ``dvdi/secure``, ``size`` (Marathon's external.size) and labels; unknown keys dropped."""
    info = {
        "container": {
            "volumes": [
                docker_volume(
                    "dbvol",
                    "playground",
                    "pgdata",
                    dvdi__repl="3",
                    dvdi__secure="true",
                    dvdi__rack_aware="true",
                    dvdi__labels="pii=true;residency=eu",
                    dvdi__label="team:core",
                    dvdi__iops="500",
                    size="2",
                )
            ]
        }
    }
    (vol,) = external_volumes(info)
    assert vol.name == "dbvol"
    assert vol.options["iops"] == "500", "kept as given, but not sent to the storage node"
    assert vol.create_options() == {
        "repl": "3",
        "secure": "true",
        "rack_aware": "true",
        "size": "2",
        "labels": {"pii": "true", "residency": "eu", "team": "core"},
    }


def test_inline_options_win_over_driver_options() -> None:
    info = {"container": {"volumes": [docker_volume("name=v,repl=2", dvdi__repl="3")]}}
    (vol,) = external_volumes(info)
    assert vol.create_options() == {"repl": "2"}


def test_only_docker_volumes_of_the_kits_drivers_are_served() -> None:
    """Host paths, persistent volumes and other Docker volume drivers are not the storage node's."""
    info = {
        "container": {
            "volumes": [
                {"container_path": "tmp", "host_path": "/tmp", "mode": "RW"},
                {
                    "container_path": "data",
                    "source": {"type": "PATH", "path": {"root": "x"}},
                },
                docker_volume("rexray-vol", "rexray"),
                docker_volume("a", "playground", "a"),
                docker_volume("b", "pxd", "b"),
            ]
        }
    }
    assert [v.name for v in external_volumes(info)] == ["a", "b"]
    assert external_volumes({}) == []
    assert external_volumes({"container": {"volumes": None}}) == []


def test_marathon_and_driver_agree_on_the_task_volumes() -> None:
    """What Marathon gives the task (mesos_volumes) is what the agent's driver reads back."""
    app = {
        "id": "/db",
        "container": {
            "type": "MESOS",
            "volumes": [
                {
                    "containerPath": "pgdata",
                    "mode": "RW",
                    "external": {
                        "name": "dbvol",
                        "provider": "dvdi",
                        "size": 1,
                        "options": {"dvdi/driver": "pxd", "dvdi/repl": "2"},
                    },
                },
                {"containerPath": "scratch", "hostPath": "/tmp", "mode": "RW"},
            ],
        },
    }
    assert external.storage_volumes(app) == ["dbvol"]
    protos = external.mesos_volumes(app)
    (vol,) = external_volumes({"container": {"volumes": protos}})
    assert (vol.name, vol.container_path, vol.driver) == ("dbvol", "pgdata", "pxd")
    assert vol.create_options() == {"repl": "2", "size": "1"}


@pytest.mark.parametrize("path", ["../escape", "a/../../b", "/../../etc", "data/../.."])
def test_a_container_path_cannot_leave_the_sandbox(tmp_path: Path, path: str) -> None:
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    vol = ExternalVolume("v", path, "pxd")
    with pytest.raises(ValueError, match="leaves the sandbox"):
        vol.sandbox_path(sandbox)
    with pytest.raises(ValueError):
        driver.link(vol, sandbox, str(tmp_path / "pool" / "vol-1"))
    assert list(tmp_path.iterdir()) == [sandbox], "nothing created outside"


def test_a_link_in_the_sandbox_cannot_carry_a_container_path_out(tmp_path: Path) -> None:
    """A symlink the task left in its sandbox pointing outside is not a way out."""
    sandbox, outside = tmp_path / "sandbox", tmp_path / "outside"
    sandbox.mkdir()
    outside.mkdir()
    os.symlink(str(outside), sandbox / "evil")
    with pytest.raises(ValueError, match="leaves the sandbox"):
        driver.link(ExternalVolume("v", "evil/data", "pxd"), sandbox, str(tmp_path))
    assert list(outside.iterdir()) == []


def test_a_container_path_is_relative_to_the_sandbox(tmp_path: Path) -> None:
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    assert ExternalVolume("v", "/var/lib/db", "pxd").sandbox_path(sandbox) == (
        sandbox / "var/lib/db"
    )
    assert ExternalVolume("v", "data/./x", "pxd").sandbox_path(sandbox) == sandbox / "data/./x"
    assert ExternalVolume("v", "", "pxd").sandbox_path(sandbox) == sandbox / "v"


def test_link_points_the_container_path_at_the_working_copy(tmp_path: Path) -> None:
    """An empty placeholder directory is replaced by the link; a directory with data is never removed."""
    sandbox, target = tmp_path / "sandbox", tmp_path / "pool" / "vol-1"
    target.mkdir(parents=True)
    (sandbox / "pgdata").mkdir(parents=True)
    where = driver.link(ExternalVolume("v", "pgdata", "pxd"), sandbox, str(target))
    assert where == sandbox / "pgdata" and os.readlink(where) == str(target)
    (where / "f").write_bytes(b"through the link")
    assert (target / "f").read_bytes() == b"through the link"
    # Linked again (a retried launch): the old link is replaced.
    other = tmp_path / "pool" / "vol-2"
    other.mkdir()
    driver.link(ExternalVolume("v", "pgdata", "pxd"), sandbox, str(other))
    assert os.readlink(sandbox / "pgdata") == str(other)
    # Nested paths get their parents.
    nested = driver.link(ExternalVolume("w", "/var/lib/w", "pxd"), sandbox, str(other))
    assert nested.is_symlink() and nested.parent.is_dir()
    # Data in the way is not thrown away.
    (sandbox / "busy").mkdir()
    (sandbox / "busy" / "keep").write_bytes(b"k")
    with pytest.raises(OSError):
        driver.link(ExternalVolume("x", "busy", "pxd"), sandbox, str(other))
    assert (sandbox / "busy" / "keep").read_bytes() == b"k"


def test_task_env_names_the_storage_node_and_the_mounts() -> None:
    mounted = {"pgdata": {"id": "vol-1", "name": "dbvol", "path": "/s/pgdata", "size_bytes": 5}}
    env = driver.task_env("http://127.0.0.9:9700", mounted)
    assert env["PLAYGROUND_STORAGE_URL"] == "http://127.0.0.9:9700"
    assert json.loads(env["PLAYGROUND_VOLUMES"]) == mounted
