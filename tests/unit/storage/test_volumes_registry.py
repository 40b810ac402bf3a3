"""The storage registry: validation of names, sizes, replication, labels; persistence; lookups."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from playground.storage.volumes import (
    MAX_SIZE_GB,
    MIN_SIZE_GB,
    Registry,
    StorageError,
    as_bool,
    check_labels,
    check_name,
    check_repl,
    check_size,
    iso,
    new_id,
)


def refused(fn: Any, *args: Any) -> StorageError:
    with pytest.raises(StorageError) as exc:
        fn(*args)
    assert exc.value.status == 400
    return exc.value


@pytest.mark.parametrize("name", ["db", "pg-data_1.v2", "A", "9lives", "x" * 63])
def test_valid_names(name: str) -> None:
    assert check_name(name) == name


@pytest.mark.parametrize(
    "name",
    ["../x", "..", ".", "a/b", "a..b", ".hidden", "-dash", "_under", "", "x" * 64, "sp ace",
     "tab\t", "nul\0", "é", None, 12, ["db"]],
)  # fmt: skip
def test_invalid_names_say_what_a_name_is(name: Any) -> None:
    err = refused(check_name, name)
    assert str(err).startswith(f"invalid volume name {name!r}: a name is 1 to 63 characters")
    assert err.body() == {"message": str(err), "hint": err.hint}
    assert err.hint and "playground volume list" in err.hint


def test_snapshot_names_say_snapshot() -> None:
    assert str(refused(check_name, "../s", "snapshot")).startswith("invalid snapshot name")


@pytest.mark.parametrize(
    ("size", "value"), [(1, 1.0), ("2", 2.0), (0.5, 0.5), (MIN_SIZE_GB, MIN_SIZE_GB), ("1e1", 10.0)]
)
def test_valid_sizes(size: Any, value: float) -> None:
    assert check_size(size) == value


@pytest.mark.parametrize("size", [0, -1, MIN_SIZE_GB / 2, MAX_SIZE_GB * 2, "inf", "nan", math.nan])
def test_sizes_out_of_range(size: Any) -> None:
    err = refused(check_size, size)
    assert f"from {MIN_SIZE_GB:g} to {MAX_SIZE_GB:g} GB" in str(err)


@pytest.mark.parametrize("size", ["big", None, [], {}, "1GB"])
def test_sizes_that_are_not_numbers(size: Any) -> None:
    assert "a number of GB, e.g. 1 or 0.5" in str(refused(check_size, size))


@pytest.mark.parametrize(("repl", "value"), [(1, 1), (2, 2), (3, 3), ("3", 3)])
def test_valid_replication(repl: Any, value: int) -> None:
    assert check_repl(repl) == value


@pytest.mark.parametrize("repl", [0, 4, -1, 2.5, "2.0", "two", None, True, "", []])
def test_invalid_replication(repl: Any) -> None:
    assert str(refused(check_repl, repl)) == f"invalid replication factor {repl!r}: from 1 to 3"


def test_labels() -> None:
    assert check_labels(None) == {}
    assert check_labels({"pii": True, "tier": "gold", "n": 3, "k8s.io/app": "db"}) == {
        "pii": "true",
        "tier": "gold",
        "n": "3",
        "k8s.io/app": "db",
    }
    assert "labels must be an object" in str(refused(check_labels, ["pii=true"]))
    assert "invalid label key '../x'" in str(refused(check_labels, {"../x": "1"}))
    assert "invalid label key ''" in str(refused(check_labels, {"": "1"}))
    assert "invalid value for label 'a'" in str(refused(check_labels, {"a": "x" * 254}))
    assert "invalid value for label 'a'" in str(refused(check_labels, {"a": {"nested": 1}}))


@pytest.mark.parametrize(
    ("value", "want"),
    [(True, True), (False, False), ("true", True), ("YES", True), ("1", True), ("no", False),
     ("0", False), ("False", False)],
)  # fmt: skip
def test_as_bool(value: Any, want: bool) -> None:
    assert as_bool(value, "secure") is want


@pytest.mark.parametrize("value", ["maybe", 1, None, "on"])
def test_as_bool_refuses_the_rest(value: Any) -> None:
    assert str(refused(as_bool, value, "secure")) == f"invalid secure {value!r}: true or false"


def test_storage_error_body_carries_the_hint() -> None:
    err = StorageError(409, "in use", hint="scale the app to 0")
    assert (err.status, err.body()) == (409, {"message": "in use", "hint": "scale the app to 0"})


def test_ids_and_times() -> None:
    a, b = new_id("vol"), new_id("vol")
    assert a != b and a.startswith("vol-") and len(a) == len("vol-") + 12
    assert iso(0.25) == "1970-01-01T00:00:00.250Z"


def volume(vol_id: str, name: str) -> dict[str, Any]:
    return {"id": vol_id, "name": name, "size_gb": 1.0, "repl": 1, "replicas": []}


def test_registry_persists_volumes_schedules_and_snapshots(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "work")
    reg.volumes["vol-1"] = volume("vol-1", "db")
    reg.schedules["sched-1"] = {"id": "sched-1", "volume_id": "vol-1"}
    reg.save()
    reg.save_snapshot({"id": "snap-1", "name": "nightly", "volume_id": "vol-1"})
    data = json.loads((tmp_path / "work" / "volumes.json").read_text())
    assert data["schema_version"] == 1
    again = Registry(tmp_path / "work")
    assert again.volumes == reg.volumes
    assert again.schedules == reg.schedules
    assert again.snapshot("nightly")["id"] == "snap-1"
    again.delete_snapshot("snap-1")
    assert not (tmp_path / "work" / "snapshots" / "snap-1.json").exists()
    assert Registry(tmp_path / "work").snapshots == {}


def test_registry_skips_an_unreadable_snapshot_file(tmp_path: Path) -> None:
    reg = Registry(tmp_path)
    reg.save_snapshot({"id": "snap-ok", "volume_id": "v"})
    (tmp_path / "snapshots" / "snap-bad.json").write_text('{"id": "snap-bad", ')
    assert set(Registry(tmp_path).snapshots) == {"snap-ok"}


def test_lookups_by_id_or_name(tmp_path: Path) -> None:
    reg = Registry(tmp_path)
    reg.volumes["vol-1"] = volume("vol-1", "db")
    assert reg.find("vol-1") is reg.find("db") is reg.volumes["vol-1"]
    assert reg.by_name("db") is reg.volumes["vol-1"] and reg.by_name("vol-1") is None
    with pytest.raises(StorageError) as exc:
        reg.find("nope")
    assert (exc.value.status, str(exc.value)) == (404, "no volume 'nope'")
    assert exc.value.hint == "`playground volume list` shows the volumes"


def test_snapshot_lookup_by_id_unique_name_or_refused(tmp_path: Path) -> None:
    reg = Registry(tmp_path)
    reg.save_snapshot({"id": "snap-1", "name": "daily", "volume_id": "v"})
    reg.save_snapshot({"id": "snap-2", "name": "daily", "volume_id": "w"})
    reg.save_snapshot({"id": "snap-3", "name": "once", "volume_id": "v"})
    assert reg.snapshot("snap-2")["id"] == "snap-2"
    assert reg.snapshot("once")["id"] == "snap-3"
    with pytest.raises(StorageError) as exc:
        reg.snapshot("daily")
    assert exc.value.status == 409 and "2 snapshots are named 'daily'; use the snapshot id" in str(
        exc.value
    )
    with pytest.raises(StorageError) as exc:
        reg.snapshot("missing")
    assert exc.value.status == 404
