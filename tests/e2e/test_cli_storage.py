"""`playground volume|snapshot|schedule|policy` as a user runs them (subprocesses).

One ``default`` cluster for the module, started with the CLI at ``--time-scale 60`` (a
cluster minute is a wall second, so a schedule of every minute runs every second), with a
kv app whose data lives on an external volume (``kvvol``, attached to its task).

What is checked: ``--json`` on every listing is a JSON list and on every create the new
object with its ``id``; bad input and refused operations exit 1 with ``error:`` (and a
``hint:``) on stderr and change nothing; schedules snapshot on the cluster clock and keep
what their retention says; the placement policy is checked, obeyed and named; the audit
log records who did what, and no secret.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import yaml

from tests.conftest import playground_cmd

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.slow]

T = TypeVar("T")

KV_VOLUME = "kvvol"
KV_APP: dict[str, Any] = {
    "id": "/e2e/storage-kv",
    "cmd": "playground workload kv --data data --durable",
    "cpus": 0.1,
    "mem": 64,
    "instances": 1,
    "portDefinitions": [{"port": 0, "name": "http"}],
    "container": {
        "type": "MESOS",
        "volumes": [
            {
                "containerPath": "data",
                "mode": "RW",
                "external": {
                    "name": KV_VOLUME,
                    "provider": "dvdi",
                    "size": 1,
                    "options": {"dvdi/driver": "playground", "dvdi/repl": "2"},
                },
            }
        ],
    },
    "upgradeStrategy": {"minimumHealthCapacity": 0, "maximumOverCapacity": 0},
}


def run(state: Path, *args: str, check: int | None = 0) -> subprocess.CompletedProcess[str]:
    """`playground --state-dir STATE ARGS`; assert the exit code unless ``check`` is None."""
    cp = subprocess.run(
        [*playground_cmd(), "--state-dir", str(state), *args],
        capture_output=True,
        text=True,
        timeout=120,
        # as a user with PLAYGROUND_STATE_DIR set (a command's own --state-dir option reads
        # the variable too, and would take it over the main option's value)
        env={**os.environ, "PLAYGROUND_STATE_DIR": str(state)},
    )
    if check is not None:
        assert cp.returncode == check, (
            f"playground {' '.join(args)}: exit {cp.returncode}\n"
            f"stdout: {cp.stdout}\nstderr: {cp.stderr}"
        )
    return cp


def pg_json(state: Path, *args: str) -> Any:
    return json.loads(run(state, *args, "--json").stdout)


def eventually(fn: Callable[[], T | None], timeout: float = 30.0, what: str = "") -> T:
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or fn}: last {last!r}")


def stable(vols: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A volume listing without what moves on its own (replication lag and timestamps)."""
    moving = ("lag_seconds", "synced_at", "pending_bytes", "state")
    return [
        {
            **v,
            "replicas": [{k: x for k, x in r.items() if k not in moving} for r in v["replicas"]],
        }
        for v in vols
    ]


def everything(state: Path) -> dict[str, Any]:
    """What a refused command must not change: volumes, snapshots, schedules."""
    return {
        "volumes": stable(pg_json(state, "volume", "list")),
        "snapshots": pg_json(state, "snapshot", "list"),
        "schedules": pg_json(state, "schedule", "list"),
    }


def events(state: Path, kind: str) -> list[dict[str, Any]]:
    out = []
    for line in (state / "events.jsonl").read_text().splitlines():
        try:
            ev = json.loads(line)
        except ValueError:
            continue
        if ev.get("kind") == kind:
            out.append(ev)
    return out


def audit(state: Path) -> list[dict[str, Any]]:
    path = state / "storage" / "audit.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A ``default`` cluster started with the CLI at time scale 60, with the kv app on kvvol."""
    base = tmp_path_factory.mktemp("cli-storage")
    root = base / "state"
    run(root, "up", "--time-scale", "60")
    try:
        eventually(
            lambda: all(p["online"] for p in pg_json(root, "volume", "pools")),
            what="every storage pool online",
        )
        app = base / "kv.json"
        app.write_text(json.dumps(KV_APP))
        run(root, "app", "add", str(app), "--wait", "--timeout", "90")
        vol = pg_json(root, "volume", "inspect", KV_VOLUME)
        assert vol["attachment"] and vol["attachment"]["task_id"].startswith("e2e_storage-kv")
        yield root
    finally:
        run(root, "destroy", "--yes", check=None)


@pytest.fixture
def pii_policy(state: Path) -> Iterator[dict[str, Any]]:
    """A volume labelled pii=true in two zones, then a policy forbidding one of them.

    Yields ``{"rule", "volume", "forbidden", "allowed"}``; the policy file is removed
    afterwards, so the module's other tests run without it."""
    vol = pg_json(
        state, "volume", "create", "pii-db", "--size", "1", "--repl", "2", "--label", "pii=true"
    )
    zones = sorted(p["zone"] for p in pg_json(state, "volume", "pools"))
    forbidden = vol["replicas"][1]["zone"]
    allowed = [z for z in zones if z != forbidden]
    rule = "pii-only-in-" + "-".join(allowed)
    path = state / "storage" / "policy.yaml"
    doc = {
        "schema_version": 1,
        "rules": [
            {
                "name": rule,
                "description": "personal data only in some zones",
                "match": {"labels": {"pii": "true"}},
                "allow": {"zones": allowed},
                "kinds": ["replica"],
            }
        ],
    }
    tmp = path.with_name(".policy.yaml.tmp")
    tmp.write_text(yaml.safe_dump(doc))
    os.replace(tmp, path)  # the storage node never reads half a file
    try:
        yield {"rule": rule, "volume": vol, "forbidden": forbidden, "allowed": allowed}
    finally:
        path.unlink(missing_ok=True)
        run(state, "volume", "delete", "pii-db", check=None)


# ---- --json ---------------------------------------------------------------------------
def test_json_listings_are_lists_and_creates_return_the_object(state: Path) -> None:
    """Every listing's --json is a JSON list; every create's --json is the object with its id."""
    vol = pg_json(state, "volume", "create", "json-vol", "--size", "0.5", "--repl", "2")
    assert vol["id"].startswith("vol-") and vol["name"] == "json-vol"
    assert vol["size_gb"] == 0.5 and vol["repl"] == 2 and len(vol["replicas"]) == 2
    assert len({r["zone"] for r in vol["replicas"]}) == 2  # distinct zones

    snap = pg_json(state, "snapshot", "create", "json-vol", "--name", "first")
    assert snap["id"].startswith("snap-") and snap["volume"] == "json-vol"
    assert snap["name"] == "first" and "manifest" not in snap
    clone = pg_json(state, "volume", "clone", "json-vol", "json-clone")
    assert clone["id"].startswith("vol-") and clone["name"] == "json-clone"
    restored = pg_json(state, "snapshot", "restore", snap["id"], "--to", "json-restored")
    assert restored["volume"]["name"] == "json-restored" and restored["volume"]["id"]
    sched = pg_json(state, "schedule", "create", "json-vol", "--daily", "03:30", "--keep", "3")
    assert sched["id"].startswith("sched-") and sched["daily"] == "03:30"

    listings = {
        ("volume", "list"): "json-vol",
        ("volume", "pools"): None,
        ("snapshot", "list"): snap["id"],
        ("snapshot", "list", "--volume", "json-vol"): snap["id"],
        ("schedule", "list"): sched["id"],
        ("policy", "check"): None,
    }
    for args, member in listings.items():
        out = pg_json(state, *args)
        assert isinstance(out, list), (args, out)
        if member is not None:
            assert member in {x.get("id") for x in out} | {x.get("name") for x in out}, args
    pools = pg_json(state, "volume", "pools")
    assert {p["node"] for p in pools} == {"agent-1", "agent-2", "agent-3"}  # no public pool
    assert pg_json(state, "policy", "check") == []
    inspect = pg_json(state, "volume", "inspect", "json-vol")
    assert inspect["id"] == vol["id"] and inspect["snapshots"] == 1

    run(state, "schedule", "delete", sched["id"])
    for name in ("json-vol", "json-clone", "json-restored"):
        assert pg_json(state, "volume", "delete", name)["deleted"] is True
    run(state, "snapshot", "delete", snap["id"])


# ---- bad input changes nothing ----------------------------------------------------------
def test_bad_input_and_refusals_exit_1_and_change_nothing(state: Path) -> None:
    """Invalid names, sizes, replication; unknown objects; deleting or restoring over the
    kv app's attached volume: exit 1, `error:` on stderr, and nothing changed."""
    snap = pg_json(state, "snapshot", "create", KV_VOLUME, "--name", "kv-before")
    before = everything(state)
    cases: list[tuple[tuple[str, ...], str]] = [
        (("volume", "create", "../x", "--size", "1"), "invalid volume name '../x'"),
        (("volume", "create", "a/b", "--size", "1"), "invalid volume name 'a/b'"),
        (("volume", "create", "", "--size", "1"), "invalid volume name ''"),
        (("volume", "create", "ok-name", "--size", "0"), "invalid size"),
        (("volume", "create", "ok-name", "--size", "-1"), "invalid size"),
        (("volume", "create", "ok-name", "--size", "1", "--repl", "4"), "from 1 to 3"),
        (("volume", "create", KV_VOLUME, "--size", "1"), f"a volume named '{KV_VOLUME}'"),
        (("volume", "inspect", "no-such-vol"), "no volume 'no-such-vol'"),
        (("volume", "delete", "no-such-vol"), "no volume 'no-such-vol'"),
        (("volume", "resize", "no-such-vol", "--size", "2"), "no volume 'no-such-vol'"),
        (("volume", "ha-update", KV_VOLUME, "--repl", "4"), "from 1 to 3"),
        (("volume", "clone", KV_VOLUME, "a/b"), "invalid volume name 'a/b'"),
        (("snapshot", "create", "no-such-vol"), "no volume 'no-such-vol'"),
        (("snapshot", "create", KV_VOLUME, "--name", "../s"), "invalid snapshot name"),
        (("snapshot", "restore", "snap-000000000000"), "no snapshot 'snap-000000000000'"),
        (("snapshot", "restore", snap["id"], "--to", "../x"), "invalid volume name '../x'"),
        (("snapshot", "delete", "snap-000000000000"), "no snapshot 'snap-000000000000'"),
        (("schedule", "delete", "sched-000000000000"), "no schedule 'sched-000000000000'"),
        # the kv app's volume is attached to its task
        (("volume", "delete", KV_VOLUME), f"volume {KV_VOLUME} is in use by task"),
        (("snapshot", "restore", snap["id"]), "restoring over a volume in use is refused"),
        (("snapshot", "restore", snap["id"], "--to", KV_VOLUME), "in use is refused"),
    ]
    failures = []
    with ThreadPoolExecutor(max_workers=4) as pool:  # refusals: the order does not matter
        results = list(pool.map(lambda c: run(state, *c[0], check=None), cases))
    for (args, expected), cp in zip(cases, results, strict=True):
        if cp.returncode != 1 or not cp.stderr.startswith("error: ") or expected not in cp.stderr:
            failures.append(f"{args}: exit {cp.returncode}, stderr {cp.stderr!r}")
        if "in use" in expected:  # what to do next
            assert "hint: stop the app" in cp.stderr, cp.stderr
        if expected.startswith("no "):
            assert "hint: `playground" in cp.stderr and "list` shows" in cp.stderr, cp.stderr
    assert not failures, "\n".join(failures)

    # A size that is not a number is a usage error (exit 2, as every usage error).
    cp = run(state, "volume", "create", "ok-name", "--size", "abc", check=2)
    assert "Invalid value for '--size'" in cp.stderr
    assert everything(state) == before
    # The kv app still has its volume and answers.
    vol = pg_json(state, "volume", "inspect", KV_VOLUME)
    assert vol["attachment"] is not None and vol["status"] == "up"
    run(state, "snapshot", "delete", snap["id"])


def test_invalid_values_come_with_a_hint(state: Path) -> None:
    """An invalid name, size or replication factor says what to do next (`hint:`)."""
    for args in (
        ("volume", "create", "a/b", "--size", "1"),
        ("volume", "create", "ok-name", "--size", "1", "--repl", "4"),
    ):
        cp = run(state, *args, check=1)
        assert "\nhint: " in cp.stderr, (args, cp.stderr)


def test_a_reference_cannot_reach_another_object(state: Path) -> None:
    """`volume delete ../snapshots/ID` is an unknown volume, not a snapshot deletion."""
    run(state, "volume", "create", "ref-vol", "--size", "0.1")
    snap = pg_json(state, "snapshot", "create", "ref-vol")
    try:
        cp = run(state, "volume", "delete", f"../snapshots/{snap['id']}", check=None)
        assert snap["id"] in {s["id"] for s in pg_json(state, "snapshot", "list")}, (
            "a snapshot was deleted by `volume delete`"
        )
        assert cp.returncode == 1 and "no volume" in cp.stderr, cp.stderr
    finally:
        run(state, "snapshot", "delete", snap["id"], check=None)
        run(state, "volume", "delete", "ref-vol", check=None)


def test_state_dir_after_the_arguments(state: Path) -> None:
    """`playground volume list --state-dir DIR` works as `playground --state-dir DIR volume list`."""
    for args in (
        ("volume", "list"),
        ("snapshot", "list"),
        ("schedule", "list"),
        ("policy", "check"),
    ):
        cp = subprocess.run(
            [*playground_cmd(), *args, "--json", "--state-dir", str(state)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert cp.returncode == 0, (args, cp.stderr)
        assert isinstance(json.loads(cp.stdout), list)


def test_the_main_state_dir_option_wins_over_the_variable(tmp_path: Path) -> None:
    """An explicit `playground --state-dir B` beats PLAYGROUND_STATE_DIR=A (no cluster needed)."""
    given = tmp_path / "given"
    given.mkdir()
    (given / "cluster.json").write_text("{}")  # a cluster's state dir (it need not run)
    cp = subprocess.run(
        [*playground_cmd(), "--state-dir", str(given), "cloudsnap", "key", "export"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PLAYGROUND_STATE_DIR": str(tmp_path / "other")},
    )
    assert cp.returncode == 0, cp.stderr
    assert json.loads(cp.stdout)["fingerprint"]
    assert (given / "secrets" / "cloudsnap.key").exists()


def test_a_typo_is_a_usage_error_with_a_suggestion(state: Path) -> None:
    """`playground volum list` exits 2 and suggests `volume`; `volume lsit` lists the verbs."""
    cp = run(state, "volum", "list", check=2)
    assert "No such command 'volum'" in cp.stderr and "Did you mean 'volume'" in cp.stderr
    cp = run(state, "volume", "lsit", check=2)
    assert "No such command 'lsit'" in cp.stderr and "Did you mean 'list'" in cp.stderr


# ---- schedules ------------------------------------------------------------------------
def test_schedule_snapshots_on_the_cluster_clock_and_keeps_its_retention(state: Path) -> None:
    """--every 1 --keep 2 at time scale 60: a snapshot a second, only the last 2 kept;
    after `schedule delete` no more snapshots are taken and the kept ones stay."""
    run(state, "volume", "create", "sched-vol", "--size", "0.1")
    sched = pg_json(state, "schedule", "create", "sched-vol", "--every", "1", "--keep", "2")
    assert sched["every_minutes"] == 1 and sched["keep"] == 2 and sched["volume"] == "sched-vol"
    sid = sched["id"]

    def created() -> int:
        return sum(
            1 for e in events(state, "storage.snapshot.created") if e["volume"] == "sched-vol"
        )

    eventually(lambda: created() >= 4, timeout=30, what="4 scheduled snapshots")
    pruned = [e for e in events(state, "storage.schedule.pruned") if e["schedule"] == sid]
    assert pruned, "retention deleted nothing"
    mine = [s for s in pg_json(state, "snapshot", "list", "--volume", "sched-vol")]
    assert len(mine) == 2 and all(s["schedule"] == sid for s in mine), mine
    listed = {s["id"]: s for s in pg_json(state, "schedule", "list")}
    assert listed[sid]["snapshots"] == 2 and listed[sid]["last_at"] is not None
    # the scheduler's snapshots and retention deletions are audited, by "scheduler"
    by_sched = [x for x in audit(state) if x["details"].get("schedule") == sid]
    taken = [x for x in by_sched if x["action"] == "snapshot.create"]
    assert len(taken) >= 4 and all(x["who"] == "scheduler" for x in taken), by_sched
    assert all(x["target"] == "sched-vol" and x["outcome"] == "ok" for x in taken)
    gone = {x["target"] for x in by_sched if x["action"] == "snapshot.delete"}
    assert gone and all(x["who"] == "scheduler" for x in by_sched)
    assert gone.isdisjoint(s["id"] for s in mine)  # what retention deleted, not what it kept
    assert gone <= {x["details"]["id"] for x in taken}

    assert pg_json(state, "schedule", "delete", sid) == {"id": sid, "deleted": True}
    assert sid not in {s["id"] for s in pg_json(state, "schedule", "list")}
    count = created()
    time.sleep(2.5)  # more than two periods of the deleted schedule
    assert created() == count, "a deleted schedule still takes snapshots"
    kept = pg_json(state, "snapshot", "list", "--volume", "sched-vol")
    assert len(kept) == 2  # a schedule's snapshots outlive it
    for s in kept:
        run(state, "snapshot", "delete", s["id"])
    run(state, "volume", "delete", "sched-vol")


# ---- placement policy -----------------------------------------------------------------
def test_policy_check_names_the_rule_and_placement_obeys_it(
    state: Path, pii_policy: dict[str, Any]
) -> None:
    """With a rule keeping pii=true volumes out of one zone: `policy check` exits 1 naming
    the rule and the misplaced replica; new pii volumes avoid that zone; others do not care."""
    rule, forbidden = pii_policy["rule"], pii_policy["forbidden"]
    cp = run(state, "policy", "check", check=1)
    assert f"rule {rule}" in cp.stdout and "pii-db" in cp.stdout
    assert f"zone {forbidden}" in cp.stdout, cp.stdout
    (found,) = json.loads(run(state, "policy", "check", "--json", check=1).stdout)
    assert found["rule"] == rule and found["volume"] == "pii-db"
    assert found["kind"] == "replica" and found["zone"] == forbidden
    shown = pg_json(state, "policy", "show")
    assert [r["name"] for r in shown["rules"]] == [rule]

    for i in range(3):  # placement is not luck: every new pii volume avoids the zone
        vol = pg_json(
            state,
            "volume",
            "create",
            f"pii-new-{i}",
            "--size",
            "0.1",
            "--repl",
            "2",
            "--label",
            "pii=true",
        )
        zones = {r["zone"] for r in vol["replicas"]}
        assert zones == set(pii_policy["allowed"]), vol["replicas"]
    free = pg_json(state, "volume", "create", "not-pii", "--size", "0.1", "--repl", "3")
    assert len({r["zone"] for r in free["replicas"]}) == 3
    # policy check still names only the old volume
    names = {
        v["volume"] for v in json.loads(run(state, "policy", "check", "--json", check=1).stdout)
    }
    assert names == {"pii-db"}
    for name in ("pii-new-0", "pii-new-1", "pii-new-2", "not-pii"):
        run(state, "volume", "delete", name)


def test_a_create_the_policy_forbids_is_refused_naming_the_rule(
    state: Path, pii_policy: dict[str, Any]
) -> None:
    """A pii volume with 3 replicas cannot be placed in 2 allowed zones: refused, the rule
    named, nothing created."""
    before = stable(pg_json(state, "volume", "list"))
    cp = run(
        state,
        "volume",
        "create",
        "pii-three",
        "--size",
        "0.1",
        "--repl",
        "3",
        "--label",
        "pii=true",
        check=None,
    )
    assert cp.returncode == 1 and cp.stderr.startswith("error: "), cp.stderr
    assert stable(pg_json(state, "volume", "list")) == before
    assert pii_policy["rule"] in cp.stderr, cp.stderr


def write_policy(state: Path, doc: dict[str, Any]) -> Path:
    """Put ``doc`` in force as STATE/storage/policy.yaml (atomically: the node never reads
    half a file); returns its path."""
    path = state / "storage" / "policy.yaml"
    tmp = path.with_name(".policy.yaml.tmp")
    tmp.write_text(yaml.safe_dump(doc))
    os.replace(tmp, path)
    return path


def test_ha_update_snapshot_and_backup_the_policy_forbids_are_refused_naming_the_rule(
    state: Path, tmp_path: Path
) -> None:
    """A volume labelled fence=true under three rules: its replicas only in their zone,
    its snapshots and cloud backups only in regions where none can be. The ha-update that
    needs another zone, a snapshot and a backup to us-east-1 (the cloud is not even
    running: the policy answers first) are each refused naming their rule, audited as
    refused, and change nothing. `policy check` lists the backups of the node's cloud
    journal that break the policy (done or running, not failed) without asking the cloud."""
    vol = pg_json(
        state, "volume", "create", "fenced", "--size", "0.1", "--repl", "1", "--label", "fence=true"
    )
    zone = vol["replicas"][0]["zone"]
    match = {"labels": {"fence": "true"}}
    path = write_policy(
        state,
        {
            "schema_version": 1,
            "rules": [
                {
                    "name": "fence-replicas",
                    "match": match,
                    "allow": {"zones": [zone]},
                    "kinds": ["replica"],
                },
                {
                    "name": "fence-snapshots",
                    "match": match,
                    "allow": {"regions": ["nowhere-1"]},
                    "kinds": ["snapshot"],
                },
                {
                    "name": "fence-backups",
                    "match": match,
                    "allow": {"regions": ["eu-central-1"]},
                    "kinds": ["cloud-backup"],
                },
            ],
        },
    )
    journal = state / "nodes" / "storage-1" / "work" / "cloudsnaps.json"
    old_journal = journal.read_bytes() if journal.exists() else None
    try:
        assert run(state, "policy", "check").returncode == 0  # nothing misplaced yet
        before = everything(state)
        cloud = tmp_path / "cloud"
        refusals = {
            "fence-replicas": (
                "volume.ha_update",
                ["volume", "ha-update", "fenced", "--repl", "2"],
            ),
            "fence-snapshots": ("snapshot.create", ["snapshot", "create", "fenced"]),
            "fence-backups": (
                "cloudsnap.backup",
                [
                    "cloudsnap",
                    "backup",
                    "fenced",
                    "--region",
                    "us-east-1",
                    "--cloud-dir",
                    str(cloud),
                ],
            ),
        }
        for rule, (_action, args) in refusals.items():
            cp = run(state, *args, check=1)
            assert cp.stderr.startswith("error: "), cp.stderr
            assert f"(rule {rule})" in cp.stderr and "refused by the placement policy" in cp.stderr
            others = set(refusals) - {rule}
            assert not any(o in cp.stderr for o in others), cp.stderr
        assert "zone " in run(state, *refusals["fence-replicas"][1], check=1).stderr
        assert "region us-east-1" in run(state, *refusals["fence-backups"][1], check=1).stderr
        assert everything(state) == before
        assert not (journal.exists() and b"fenced" in journal.read_bytes())
        assert not cloud.exists() or not any(cloud.rglob("*"))  # the cloud was never touched
        lines = audit(state)
        for rule, (action, _args) in refusals.items():
            hits = [x for x in lines if x["action"] == action and x["target"] == "fenced"]
            assert hits and hits[-1]["outcome"] == "refused", hits
            assert f"(rule {rule})" in hits[-1]["details"]["message"]

        # a schedule's snapshots are refused too, and the scheduler's refusal is audited
        sid = pg_json(state, "schedule", "create", "fenced", "--every", "1", "--keep", "1")["id"]
        try:
            refused = eventually(
                lambda: [
                    x
                    for x in audit(state)
                    if x["who"] == "scheduler" and x["details"].get("schedule") == sid
                ],
                timeout=15,
                what="the scheduler's audited refusal",
            )
            assert refused[0]["action"] == "snapshot.create" and refused[0]["target"] == "fenced"
            assert refused[0]["outcome"] == "refused", refused
            assert "(rule fence-snapshots)" in refused[0]["details"]["error"]
        finally:
            run(state, "schedule", "delete", sid)
        assert pg_json(state, "snapshot", "list", "--volume", "fenced") == []

        # backups of the journal: one in a forbidden region is listed, the others not
        entries = {
            "bk-us": {"volume": "fenced", "status": "done", "region": "us-east-1"},
            "bk-eu": {"volume": "fenced", "status": "done", "region": "eu-central-1"},
            "bk-failed": {"volume": "fenced", "status": "failed", "region": "us-east-1"},
            "bk-gone": {"volume": "no-such-volume", "status": "done", "region": "us-east-1"},
        }
        data = json.loads(old_journal) if old_journal else {}
        journal.write_text(json.dumps(data | entries))
        cp = run(state, "policy", "check", check=1)  # the cloud is not running: no matter
        assert "rule fence-backups" in cp.stdout and "backup bk-us" in cp.stdout, cp.stdout
        (found,) = json.loads(run(state, "policy", "check", "--json", check=1).stdout)
        assert found["rule"] == "fence-backups" and found["volume"] == "fenced"
        assert found["kind"] == "cloud-backup" and found["region"] == "us-east-1"
        assert "bk-us" in found["target"]
    finally:
        path.unlink(missing_ok=True)
        if old_journal is None:
            journal.unlink(missing_ok=True)
        else:
            journal.write_bytes(old_journal)
        run(state, "volume", "delete", "fenced", check=None)


def test_policy_set_validates_saves_a_new_version_and_keeps_the_old(
    state: Path, tmp_path: Path
) -> None:
    """`policy set FILE` puts a valid policy in force with the next version (the node
    obeys it at once) and keeps the one it replaces as policy.yaml.N; a bad file exits 1
    naming the file and line, and changes nothing."""
    path = state / "storage" / "policy.yaml"
    first = tmp_path / "first.yaml"
    first.write_text(
        yaml.safe_dump(
            {
                "schema_version": 1,
                "rules": [
                    {
                        "name": "set-nowhere",
                        "match": {"labels": {"set-test": "yes"}},
                        "allow": {"zones": ["nowhere"]},
                    }
                ],
            }
        )
    )
    second = tmp_path / "second.yaml"
    second.write_text("schema_version: 1\nrules: []\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text("schema_version: 1\nrules:\n  - name: oops\n    allow: {planets: [mars]}\n")
    try:
        cp = run(state, "policy", "set", str(first))
        assert cp.stdout.startswith("policy version 1 in force: 1 rules"), cp.stdout
        shown = pg_json(state, "policy", "show")
        assert [r["name"] for r in shown["rules"]] == ["set-nowhere"] and shown["version"] == 1
        cp = run(
            state,
            "volume",
            "create",
            "set-vol",
            "--size",
            "0.1",
            "--label",
            "set-test=yes",
            check=1,
        )
        assert "set-nowhere" in cp.stderr, cp.stderr

        saved = pg_json(state, "policy", "set", str(second))
        assert saved["version"] == 2 and saved["rules"] == [] and saved["path"] == str(path)
        kept = path.with_name("policy.yaml.1")
        assert "set-nowhere" in kept.read_text() and "set-nowhere" not in path.read_text()
        assert pg_json(state, "policy", "show")["version"] == 2

        # from stdin too
        piped = subprocess.run(
            [*playground_cmd(), "--state-dir", str(state), "policy", "set", "-"],
            input=second.read_text(),
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "PLAYGROUND_STATE_DIR": str(state)},
        )
        assert piped.returncode == 0, piped.stderr
        assert piped.stdout.startswith("policy version 3 in force: 0 rules"), piped.stdout
        assert path.with_name("policy.yaml.2").exists()

        files = sorted(p.name for p in path.parent.glob("policy.yaml*"))
        text = path.read_bytes()
        cp = run(state, "policy", "set", str(bad), check=1)
        assert cp.stderr.startswith(f"error: {bad}:4: "), cp.stderr
        assert "planets" in cp.stderr and "hint:" in cp.stderr
        cp = run(state, "policy", "set", str(tmp_path / "missing.yaml"), check=1)
        assert cp.stderr.startswith("error: cannot read the policy file"), cp.stderr
        assert path.read_bytes() == text
        assert sorted(p.name for p in path.parent.glob("policy.yaml*")) == files
        assert pg_json(state, "policy", "show")["version"] == 3
    finally:
        for p in path.parent.glob("policy.yaml*"):
            p.unlink()
        run(state, "volume", "delete", "set-vol", check=None)


# ---- audit ----------------------------------------------------------------------------
def test_the_audit_log_records_who_did_what_and_no_secret(state: Path) -> None:
    """Operations (done and refused) are in STATE/storage/audit.jsonl with who, action,
    target and outcome; the agent's attach of the kv volume too; secrets are scrubbed."""
    secret = "s3cr3t-" + os.urandom(6).hex()
    run(state, "volume", "create", "audited", "--size", "0.2", "--label", f"api_token={secret}")
    run(state, "volume", "resize", "audited", "--size", "0.3")
    run(state, "volume", "create", "../escape", "--size", "1", check=1)
    run(state, "volume", "delete", KV_VOLUME, check=1)
    run(state, "volume", "delete", "audited")
    key = json.loads(run(state, "cloudsnap", "key", "export").stdout)["key"]

    text = (state / "storage" / "audit.jsonl").read_text()
    assert secret not in text and key not in text
    lines = audit(state)
    for line in lines:
        assert {"time", "who", "action", "target", "outcome"} <= set(line), line

    def find(action: str, target: str, outcome: str) -> dict[str, Any]:
        hits = [
            x
            for x in lines
            if x["action"] == action and x["target"] == target and x["outcome"] == outcome
        ]
        assert hits, f"no audit line {action} {target} {outcome}"
        return hits[-1]

    created = find("volume.create", "audited", "ok")
    assert created["who"].endswith("@cli") and created["details"]["id"].startswith("vol-")
    assert created["details"]["labels"] == {"api_token": "***"}
    assert find("volume.resize", "audited", "ok")["details"]["size"] == 0.3
    assert find("volume.delete", "audited", "ok")["who"].endswith("@cli")
    refused = find("volume.create", "../escape", "refused")
    assert "invalid volume name" in refused["details"]["message"]
    in_use = find("volume.delete", KV_VOLUME, "refused")
    assert "in use" in in_use["details"]["message"]
    attach = find("volume.attach", KV_VOLUME, "ok")
    assert attach["who"].startswith("agent-")  # the agent's volume driver
    times = [x["ts"] for x in lines]
    assert times == sorted(times)
    # the kv app's task still answers: nothing above touched it
    vol = pg_json(state, "volume", "inspect", KV_VOLUME)
    app = pg_json(state, "app", "show", KV_APP["id"])
    (task,) = [t for t in app["tasks"] if t["state"] == "TASK_RUNNING"]
    assert task["id"] == vol["attachment"]["task_id"]
    stats = httpx.get(f"http://{task['host']}:{task['ports'][0]}/stats", timeout=5).json()
    assert stats["durable"] is True
