"""``playground cloud`` and ``playground cloudsnap key`` as a user runs them (subprocesses)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import psutil
import pytest

from tests.conftest import playground_cmd

pytestmark = [pytest.mark.e2e]


def run(
    *args: str, check: int | None = 0, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    cp = subprocess.run(
        [*playground_cmd(), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )
    if check is not None:
        assert cp.returncode == check, (
            f"exit {cp.returncode}\nstdout: {cp.stdout}\nstderr: {cp.stderr}"
        )
    return cp


@pytest.mark.slow
def test_cloud_up_status_down(tmp_path: Path) -> None:
    """up (with a progress line), up again, status --json, down, status: a whole lifecycle."""
    cdir = str(tmp_path / "cloud")
    try:
        cp = run("cloud", "up", "--cloud-dir", cdir)
        assert "starting the cloud" in cp.stderr and "cloud up in" in cp.stderr
        assert "endpoint   http://127.0.0.1:" in cp.stdout
        again = run("cloud", "up", "--cloud-dir", cdir)
        assert "already running" in again.stdout
        st = json.loads(run("cloud", "status", "--json", "--cloud-dir", cdir).stdout)
        assert st["running"] and st["endpoint"].startswith("http://127.0.0.1:")
        assert st["backups"] == 0 and st["bytes_stored"] == 0 and st["disk_bytes"] > 0
        pid = st["pid"]
        assert psutil.Process(pid).is_running()
        # the environment variable names the directory as well as the option
        via_env = run("cloud", "status", "--json", env={"PLAYGROUND_CLOUD_DIR": cdir})
        assert json.loads(via_env.stdout)["pid"] == pid
        text = run("cloud", "status", "--cloud-dir", cdir).stdout
        assert "cloud running" in text and "0 backup(s)" in text
    finally:
        down = run("cloud", "down", "--cloud-dir", cdir)
    assert "cloud stopped" in down.stdout
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie"
    assert "was not running" in run("cloud", "down", "--cloud-dir", cdir).stdout
    st = json.loads(run("cloud", "status", "--json", "--cloud-dir", cdir).stdout)
    assert st["running"] is False and st["endpoint"] is None and st["backups"] is None


def test_a_missing_server_binary_is_a_clear_error(tmp_path: Path) -> None:
    """Without `weed`, up exits 1 and says how to get it; nothing is left running."""
    cp = run(
        "cloud",
        "up",
        "--cloud-dir",
        str(tmp_path / "cloud"),
        check=1,
        env={"PLAYGROUND_WEED": str(tmp_path / "no-such-weed")},
    )
    assert "error: PLAYGROUND_WEED=" in cp.stderr and "hint:" in cp.stderr
    assert not (tmp_path / "cloud" / "cloud.json").exists()


def test_key_export_and_import_between_state_dirs(tmp_path: Path) -> None:
    """export --out writes a 0600 file; import into another cluster's state makes it its key."""
    old, new = tmp_path / "old", tmp_path / "new"
    old.mkdir()
    (old / "cluster.json").write_text("{}")  # a cluster's state dir (no need to run it)
    out = tmp_path / "key.json"
    cp = run("cloudsnap", "key", "export", "--out", str(out), "--state-dir", str(old))
    assert stat.S_IMODE(out.stat().st_mode) == 0o600 and "mode 0600" in cp.stdout
    fp = json.loads(out.read_text())["fingerprint"]
    assert fp in cp.stdout
    assert stat.S_IMODE((old / "secrets").stat().st_mode) == 0o700
    # refuse to overwrite; stdout export gives the same key
    run("cloudsnap", "key", "export", "--out", str(out), "--state-dir", str(old), check=1)
    same = run("cloudsnap", "key", "export", "--state-dir", str(old)).stdout
    assert json.loads(same) == json.loads(out.read_text())

    imp = run("cloudsnap", "key", "import", str(out), "--json", "--state-dir", str(new))
    assert json.loads(imp.stdout) == {"fingerprint": fp, "previous": None, "changed": True}
    assert (new / "secrets" / "cloudsnap.key").read_bytes() == (
        old / "secrets" / "cloudsnap.key"
    ).read_bytes()
    assert (
        "already this cluster's key"
        in run("cloudsnap", "key", "import", str(out), "--state-dir", str(new)).stdout
    )


def test_key_commands_refuse_bad_input(tmp_path: Path) -> None:
    """No cluster to export from, a file that is not a key: exit 1, nothing written."""
    nowhere = tmp_path / "nowhere"
    cp = run("cloudsnap", "key", "export", "--state-dir", str(nowhere), check=1)
    assert "no cluster at" in cp.stderr and not nowhere.exists()
    junk = tmp_path / "junk.json"
    junk.write_text('{"hello": 1}')
    cp = run("cloudsnap", "key", "import", str(junk), "--state-dir", str(tmp_path / "s"), check=1)
    assert "not a cloud snapshot key file" in cp.stderr
    assert not (tmp_path / "s" / "secrets" / "cloudsnap.key").exists()
    cp = run("cloudsnap", "key", "import", str(tmp_path / "absent"), check=1)
    assert "cannot read" in cp.stderr
