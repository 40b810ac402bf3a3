"""The cloud for real: SeaweedFS ``weed mini`` as the S3 server, cloud snapshots through boto3.

No cluster is needed: the cloud is a service of its own. These tests start the real
server in a temporary cloud directory and stop it at the end (their teardown checks
that nothing is left running).
"""

from __future__ import annotations

import json
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import botocore.exceptions
import psutil
import pytest
from botocore.config import Config

from playground.cloud import Cloud, CloudError
from playground.cluster.secrets import SecretStore
from playground.storage import cloudsnap, snapshots
from playground.storage.chunks import ChunkStore

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[Cloud]:
    c = Cloud(tmp_path / "cloud")
    yield c
    c.down()
    assert not c.status().running


def listening_hosts(pid: int) -> set[str]:
    return {
        conn.laddr.ip
        for conn in psutil.Process(pid).net_connections(kind="inet")
        if conn.status == psutil.CONN_LISTEN
    }


def test_up_is_a_real_authenticated_s3_server_on_loopback(cloud: Cloud) -> None:
    """up answers S3 with auth on, on 127.0.0.1 only; a second up finds it; down stops it."""
    t0 = time.monotonic()
    lines: list[str] = []
    st = cloud.up(progress=lines.append)
    started = time.monotonic() - t0
    assert st.running and st.endpoint and st.endpoint.startswith("http://127.0.0.1:")
    assert started < 5, started
    assert any("starting the cloud" in x for x in lines)
    assert st.pid is not None and listening_hosts(st.pid) == {"127.0.0.1"}
    rss = psutil.Process(st.pid).memory_info().rss
    print(f"\nweed mini: up in {started:.2f} s, RSS {rss / 2**20:.0f} MiB")
    for name in ("credentials.json", "s3.json"):
        assert stat.S_IMODE((cloud.root / name).stat().st_mode) == 0o600
    rec = json.loads((cloud.root / "cloud.json").read_text())
    assert rec["pid"] == st.pid and rec["bucket"] == cloud.bucket and rec["started_at"] > 0
    assert set(rec["ports"]) >= {"s3", "master", "filer", "volume"}

    client = cloud.client()
    client.put_object(Bucket=cloud.bucket, Key="hello", Body=b"world")
    assert client.get_object(Bucket=cloud.bucket, Key="hello")["Body"].read() == b"world"
    wrong = boto3.client(
        "s3",
        endpoint_url=st.endpoint,
        aws_access_key_id=cloud.credentials()[0],
        aws_secret_access_key="not-the-secret",
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )
    with pytest.raises(botocore.exceptions.ClientError):
        wrong.get_object(Bucket=cloud.bucket, Key="hello")

    again = cloud.up()
    assert again.already_running and again.pid == st.pid
    assert cloud.down() is True
    assert not psutil.pid_exists(st.pid) or psutil.Process(st.pid).status() == "zombie"
    assert cloud.down() is False
    with pytest.raises(CloudError, match="not running"):
        cloud.client()
    assert not any(Path("/tmp").glob(f"seaweedfs-*-grpc-{rec['ports']['s3_grpc']}.sock"))


def test_down_never_signals_a_process_that_is_not_the_recorded_server(cloud: Cloud) -> None:
    """A recorded PID whose creation time differs (a recycled PID) is left alone."""
    cloud.up()
    rec = json.loads((cloud.root / "cloud.json").read_text())
    real = rec["pid"]
    bystander = psutil.Popen(["sleep", "30"])
    try:
        forged = dict(rec, pid=bystander.pid)  # the bystander's PID, the server's create time
        (cloud.root / "cloud.json").write_text(json.dumps(forged))
        assert not cloud.status().running
        cloud.down()
        assert bystander.is_running() and bystander.status() != "zombie"
        # the real server, unrecorded now, is found by its data directory and stopped
        assert not psutil.pid_exists(real) or psutil.Process(real).status() == "zombie"
    finally:
        bystander.kill()
        bystander.wait()


def test_backup_restore_and_the_data_survives_a_restart(cloud: Cloud, tmp_path: Path) -> None:
    """A 100 MiB volume backed up, 1 % changed and backed up again, restored after a restart."""
    cloud.up()
    vol = tmp_path / "vol"
    vol.mkdir()
    for i in range(100):
        (vol / f"part-{i:03}.bin").write_bytes(os.urandom(1 << 20))
    store = ChunkStore(tmp_path / "chunks")
    secrets = SecretStore(tmp_path / "state")
    first = snapshots.capture(store, vol)
    target = cloudsnap.target_from_secrets(cloud.client(), cloud.bucket, secrets)
    t0 = time.monotonic()
    r1 = target.backup(store, first.manifest, "vol1", {"region": "eu"})
    full = time.monotonic() - t0
    assert r1.status == "done" and r1.chunks_uploaded == 100

    # 1 % of the bytes appended or written as new files (the benchmark)
    with open(vol / "part-007.bin", "ab") as fh:
        fh.write(os.urandom(512 << 10))
    (vol / "new.bin").write_bytes(os.urandom(512 << 10))
    second = snapshots.capture(store, vol, first.manifest)
    t0 = time.monotonic()
    r2 = target.backup(store, second.manifest, "vol1", {"region": "eu"})
    incr = time.monotonic() - t0
    ratio = r2.uploaded_bytes / second.manifest["size"]
    # 1 % rewritten in place, scattered over 4 chunks: whole 1 MiB chunks are sent
    for i in range(0, 100, 25):
        with open(vol / f"part-{i:03}.bin", "r+b") as fh:
            fh.seek(4096)
            fh.write(os.urandom(256 << 10))
    third = snapshots.capture(store, vol, second.manifest)
    r3 = target.backup(store, third.manifest, "vol1", {"region": "eu"})
    scattered = r3.uploaded_bytes / third.manifest["size"]
    print(
        f"\n100 MiB volume: full backup {full:.2f} s ({100 / full:.0f} MiB/s), "
        f"{r1.uploaded_bytes / 2**20:.1f} MiB sent; after 1 % appended/new: {incr:.2f} s, "
        f"{r2.uploaded_bytes / 2**20:.2f} MiB sent, ratio {ratio:.2%}; after 1 % rewritten "
        f"in 4 places: {r3.uploaded_bytes / 2**20:.2f} MiB sent, ratio {scattered:.2%}"
    )
    assert r2.chunks_uploaded == 2 and 0.009 < ratio < 0.012, ratio
    assert r3.chunks_uploaded == 4 and scattered < 0.05

    st = cloud.status()
    assert st.pid is not None
    print(f"weed RSS after the backups: {psutil.Process(st.pid).memory_info().rss / 2**20:.0f} MiB")
    assert st.backups == 3 and st.bytes_stored is not None and st.bytes_stored > 100 << 20
    cloud.down()
    cloud.up()  # new ports, same data
    target = cloudsnap.target_from_secrets(cloud.client(), cloud.bucket, secrets)
    assert [r.id for r in target.list_backups("vol1")] == [r1.id, r2.id, r3.id]
    fresh = ChunkStore(tmp_path / "fresh")
    t0 = time.monotonic()
    manifest = target.restore(r3.id, fresh)
    snapshots.restore(fresh, manifest, tmp_path / "restored")
    print(f"restore of 100 MiB: {time.monotonic() - t0:.2f} s")
    for name in ("part-000.bin", "part-007.bin", "part-025.bin", "part-099.bin", "new.bin"):
        assert (tmp_path / "restored" / name).read_bytes() == (vol / name).read_bytes()
