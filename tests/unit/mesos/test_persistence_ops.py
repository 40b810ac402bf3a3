"""RESERVE, UNRESERVE, CREATE and DESTROY: Mesos's validation messages and the arithmetic."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from playground.mesos import persistence as P
from playground.mesos.resources import Resources

LABELS = {"labels": [{"key": "marathon_task_id", "value": "t1"}]}


def reserved(name: str, value: float, principal: str | None = "p", **disk: Any) -> dict[str, Any]:
    info: dict[str, Any] = {"type": "DYNAMIC", "role": "r", "labels": LABELS}
    if principal is not None:
        info["principal"] = principal
    out: dict[str, Any] = {
        "name": name,
        "type": "SCALAR",
        "scalar": {"value": value},
        "reservations": [info],
    }
    if disk:
        out["disk"] = disk
    return out


def volume(pid: str = "v1", size: float = 100, principal: str = "p") -> dict[str, Any]:
    return reserved(
        "disk",
        size,
        persistence={"id": pid, "principal": principal},
        volume={"container_path": "data", "mode": "RW"},
    )


def agent() -> Resources:
    return Resources.parse("cpus:4;mem:1024;disk:1000;ports:[31000-31010]")


def test_reserve_create_destroy_unreserve_round_trip() -> None:
    pool = agent()
    res = P.validate_reserve([reserved("cpus", 1), reserved("disk", 100)], "p", ["r"])
    pool = P.apply("RESERVE", pool, res)
    assert pool.scalar("disk") == 1000 and pool.get("disk", "*").scalar == 900  # type: ignore[union-attr]
    vols = P.validate_create([volume()], P.checkpointed_of(pool), "p")
    pool = P.apply("CREATE", pool, vols)
    (vol,) = P.volumes_of(pool)
    assert vol.persistence_id == "v1" and vol.principal == "p" and vol.labels == LABELS["labels"]
    v1 = vol.to_v1()
    assert v1["reservations"][0] == {
        "type": "DYNAMIC",
        "role": "r",
        "principal": "p",
        **{"labels": LABELS},
    }
    assert v1["disk"]["volume"] == {"container_path": "data", "mode": "RW"}
    pool = P.apply(
        "DESTROY", pool, P.validate_destroy([volume()], P.checkpointed_of(pool), Resources())
    )
    assert P.volumes_of(pool) == []
    pool = P.apply(
        "UNRESERVE", pool, P.validate_unreserve([reserved("cpus", 1), reserved("disk", 100)])
    )
    assert pool.to_text() == agent().to_text() or (
        pool.contains(agent()) and agent().contains(pool)
    )
    assert P.checkpointed_of(pool).to_v1() == []


def test_reservations_with_other_labels_stay_apart() -> None:
    a = Resources.from_v1([reserved("cpus", 1)])
    other = reserved("cpus", 2)
    other["reservations"][0]["labels"] = {"labels": [{"key": "marathon_task_id", "value": "t2"}]}
    both = a + Resources.from_v1([other])
    assert len(list(both)) == 2 and both.scalar("cpus") == 3
    assert not both.contains(Resources.from_v1([reserved("cpus", 1.5)]))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda: P.validate_reserve(
                [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 1}}], "p", ["r"]
            ),
            "Resource cpus:1 is not dynamically reserved",
        ),
        (
            lambda: P.validate_reserve([reserved("cpus", 1, principal=None)], "p", ["r"]),
            "A reserve operation was attempted by principal 'p', but there is a reserved "
            "resource in the request with no principal set in `ReservationInfo`",
        ),
        (
            lambda: P.validate_reserve([reserved("cpus", 1, principal="q")], "p", ["r"]),
            "with principal 'q' set in `ReservationInfo`",
        ),
        (
            lambda: P.validate_reserve([reserved("cpus", 1)], "p", ["other"]),
            "for a role 'r' that the framework is not subscribed to",
        ),
        (lambda: P.validate_reserve([volume()], "p", ["r"]), "must already be reserved"),
        (
            lambda: P.validate_unreserve([volume()]),
            "cannot be unreserved directly. Please destroy the persistent volume first",
        ),
        (
            lambda: P.validate_create([reserved("disk", 1)], Resources(), "p"),
            "Not a persistent volume: Resource disk(r, p):1 does not have DiskInfo",
        ),
        (
            lambda: P.validate_create([volume(principal="q")], Resources(), "p"),
            "Create volume operation has been attempted by principal 'p', but there is a "
            "volume in the operation with principal 'q' set in 'DiskInfo.Persistence'",
        ),
        (
            lambda: P.validate_create([volume("a/b")], Resources(), "p"),
            "Persistence ID 'a/b' contains invalid characters",
        ),
        (
            lambda: P.validate_create([volume(".."), volume("x")], Resources(), "p"),
            "Persistence ID '..' cannot name a volume directory",
        ),
        (
            lambda: P.validate_create([volume()], Resources.from_v1([volume()]), "p"),
            "Persistence ID 'v1' is not unique",
        ),
        (
            lambda: P.validate_destroy([volume()], Resources(), Resources()),
            "Persistent volumes not found",
        ),
        (
            lambda: P.validate_destroy(
                [volume()], Resources.from_v1([volume()]), Resources.from_v1([volume()])
            ),
            "Persistent volumes in use",
        ),
    ],
)
def test_validation_messages_are_mesos_s(call: Any, message: str) -> None:
    with pytest.raises(P.OperationError) as err:
        call()
    assert message in str(err.value)


def test_apply_refuses_what_the_offer_does_not_hold() -> None:
    res = P.validate_reserve([reserved("cpus", 8)], "p", ["r"])
    with pytest.raises(
        P.OperationError, match=r"Invalid RESERVE Operation: .* does not contain cpus:8"
    ):
        P.apply("RESERVE", agent(), res)
    with pytest.raises(P.OperationError, match="Invalid CREATE Operation"):
        P.apply("CREATE", agent(), [*Resources.from_v1([volume()])])
    with pytest.raises(P.OperationError, match=r"Persistent volume .* does not exist"):
        P.apply("DESTROY", agent(), [*Resources.from_v1([volume()])])


def test_agent_total_and_checkpoint(tmp_path: Path) -> None:
    static = agent()
    checkpointed = Resources.from_v1([reserved("cpus", 1), volume()])
    assert P.fits(static, checkpointed)
    total = P.total_with(static, checkpointed)
    assert total.scalar("cpus") == 4 and total.scalar("disk") == 1000
    assert P.checkpointed_of(total).to_v1() == checkpointed.to_v1()
    assert not P.fits(Resources.parse("cpus:0.5;disk:10"), checkpointed)

    work, meta = tmp_path / "work", tmp_path / "work" / "meta"
    vols = P.AgentVolumes(work, meta)
    created, deleted = vols.update(checkpointed)
    path = work / "volumes" / "roles" / "r" / "v1"
    assert created == [path] and deleted == [] and path.is_dir()
    (path / "record").write_text("kept")
    # A restarted agent reads its checkpoint back; the volume is mounted in a sandbox.
    again = P.AgentVolumes(work, meta)
    assert again.checkpointed.to_v1() == checkpointed.to_v1()
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    assert again.mount([volume()], sandbox) is None
    assert (sandbox / "data" / "record").read_text() == "kept"
    missing = again.mount([volume("other")], sandbox)
    assert missing is not None and "is not on this agent" in missing
    created, deleted = again.update(Resources.from_v1([reserved("cpus", 1)]))
    assert deleted == [path] and not path.exists()
