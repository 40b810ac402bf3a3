"""Health and readiness checks of the Marathon 1.10 node.

Mirrors Marathon 1.10 (``core.health`` and ``core.readiness``):

* Marathon-level checks (``HTTP``, ``HTTPS``, ``TCP``) run like ``HealthCheckActor`` /
  ``HealthCheckWorker``: first check after ``min(intervalSeconds, 5)``, then one every
  ``intervalSeconds`` (fixed rate, probes may overlap), healthy on a status in 200..399,
  1xx discarded when ``ignoreHttp1xx`` (HTTP only), HTTPS without certificate checks.
  A failure is ignored while the task has never been healthy and is inside
  ``gracePeriodSeconds``; the task is killed on a failure seen when ``maxConsecutiveFailures``
  failures were already counted (so on failure ``max + 1``); ``0`` never kills.
* Mesos-level checks (``COMMAND``, ``MESOS_HTTP``, ``MESOS_HTTPS``, ``MESOS_TCP``) run like
  the Mesos executor's health checker, standing in for it: first check after
  ``delaySeconds``, then ``intervalSeconds`` after each probe finished; the task is killed
  when ``consecutive failures >= maxConsecutiveFailures`` (``0`` kills on the first counted
  failure). Marathon only learns health transitions from Mesos status updates (first
  success, first failure, the failure that kills) and records them with an empty cause, so
  ``healthCheckResults`` shows ``lastFailureCause: ""`` for these checks.

Durations in check definitions are real-cluster seconds. Intervals, delays, grace periods and
check timeouts are converted with ``ts.wall(seconds, CHECK_FLOOR)`` (floor 1 s of wall time;
the same floor is used for timeouts). Failure causes quote the real-cluster durations.
Timestamps render as Marathon's ``Timestamp``: ``2017-05-08T14:42:31.123Z``.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import http
import logging
import os
import signal
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

import aiohttp

from playground.cluster import network

log = logging.getLogger(__name__)

#: Wall-time floor for check intervals, delays and timeouts (see playground.cluster.timescale).
CHECK_FLOOR = 1.0

# HealthCheck.scala (object HealthCheck) / healthCheck.raml defaults.
DEFAULT_GRACE_PERIOD_SECONDS = 300
DEFAULT_INTERVAL_SECONDS = 60
DEFAULT_TIMEOUT_SECONDS = 20
DEFAULT_MAX_CONSECUTIVE_FAILURES = 3
DEFAULT_DELAY_SECONDS = 15
DEFAULT_PROTOCOL = "HTTP"
DEFAULT_IP_PROTOCOL = "IPv4"
DEFAULT_IGNORE_HTTP1XX = False
#: HealthCheck.DefaultFirstHealthCheckAfter: the first Marathon-level check runs after
#: min(intervalSeconds, this).
FIRST_HEALTH_CHECK_AFTER_SECONDS = 5

# ReadinessCheck.scala / readinessCheck.raml defaults.
DEFAULT_READINESS_NAME = "readinessCheck"
DEFAULT_READINESS_PROTOCOL = "HTTP"
DEFAULT_READINESS_PATH = "/"
DEFAULT_READINESS_PORT_NAME = "http-api"
DEFAULT_READINESS_INTERVAL_SECONDS = 30
DEFAULT_READINESS_TIMEOUT_SECONDS = 10
DEFAULT_HTTP_STATUS_CODES_FOR_READY = (200,)
DEFAULT_PRESERVE_LAST_RESPONSE = False

MARATHON_PROTOCOLS = frozenset({"HTTP", "HTTPS", "TCP"})
MESOS_PROTOCOLS = frozenset({"COMMAND", "MESOS_HTTP", "MESOS_HTTPS", "MESOS_TCP"})
PROTOCOLS = MARATHON_PROTOCOLS | MESOS_PROTOCOLS
_PORT_PROTOCOLS = PROTOCOLS - {"COMMAND"}
_HTTP_PROTOCOLS = frozenset({"HTTP", "HTTPS", "MESOS_HTTP", "MESOS_HTTPS"})


class WallClock(Protocol):
    """The part of :class:`playground.cluster.timescale.TimeScale` used here."""

    def wall(self, seconds: float, floor: float = ...) -> float: ...


def format_timestamp(epoch_seconds: float) -> str:
    """Marathon ``Timestamp.toString``: ``yyyy-MM-dd'T'HH:mm:ss.SSS'Z'`` in UTC."""
    dt = datetime.fromtimestamp(epoch_seconds, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def _scala_seconds(seconds: float) -> str:
    """A Scala ``FiniteDuration`` in seconds, as ``toString`` prints it (``20 seconds``)."""
    n = int(seconds) if float(seconds).is_integer() else seconds
    return f"{n} second" if n == 1 else f"{n} seconds"


def _is_mesos_level(check: dict[str, Any]) -> bool:
    return check.get("protocol", DEFAULT_PROTOCOL) in MESOS_PROTOCOLS


# --------------------------------------------------------------------------- definitions


def normalize_health_check(raw: dict[str, Any]) -> dict[str, Any]:
    """A health check as Marathon 1.10 stores and renders it in ``GET /v2/apps``.

    Fills the defaults of ``AppHealthCheck`` (healthCheck.raml, HealthCheck.scala) and the
    ``portIndex: 0`` of ``AppNormalization.normalizeHealthChecks`` (every protocol but
    ``COMMAND``, when neither ``port`` nor ``portIndex`` is given). Fields per protocol follow
    ``HealthCheckConversion.appHealthCheckWrites``: ``ignoreHttp1xx`` only for HTTP/HTTPS,
    ``path`` only for the HTTP kinds and only when given (Marathon's default is *no* path,
    probed as ``/``), ``command`` only for COMMAND, ``delaySeconds`` and ``ipProtocol``
    always (RAML defaults). Keys come in RAML property order.
    """
    protocol = raw.get("protocol") or DEFAULT_PROTOCOL
    if raw.get("command") is not None and raw.get("protocol") is None:
        protocol = "COMMAND"
    if protocol not in PROTOCOLS:
        raise ValueError(f"{protocol} is not a valid protocol")
    out: dict[str, Any] = {}
    if protocol == "COMMAND":
        command = raw.get("command")
        if not isinstance(command, dict) or not isinstance(command.get("value"), str):
            raise ValueError("COMMAND health check needs command.value")
        out["command"] = {"value": command["value"]}
    out["gracePeriodSeconds"] = int(raw.get("gracePeriodSeconds", DEFAULT_GRACE_PERIOD_SECONDS))
    if protocol in ("HTTP", "HTTPS"):
        out["ignoreHttp1xx"] = bool(raw.get("ignoreHttp1xx", DEFAULT_IGNORE_HTTP1XX))
    out["intervalSeconds"] = int(raw.get("intervalSeconds", DEFAULT_INTERVAL_SECONDS))
    out["maxConsecutiveFailures"] = int(
        raw.get("maxConsecutiveFailures", DEFAULT_MAX_CONSECUTIVE_FAILURES)
    )
    if protocol in _HTTP_PROTOCOLS and raw.get("path") is not None:
        out["path"] = str(raw["path"])
    if protocol in _PORT_PROTOCOLS:
        port, port_index = raw.get("port"), raw.get("portIndex")
        if port is None and port_index is None:
            port_index = 0
        if port is not None:
            out["port"] = int(port)
        if port_index is not None:
            out["portIndex"] = int(port_index)
    out["protocol"] = protocol
    out["ipProtocol"] = raw.get("ipProtocol") or DEFAULT_IP_PROTOCOL
    out["timeoutSeconds"] = int(raw.get("timeoutSeconds", DEFAULT_TIMEOUT_SECONDS))
    out["delaySeconds"] = int(raw.get("delaySeconds", DEFAULT_DELAY_SECONDS))
    return out


def normalize_readiness_check(raw: dict[str, Any]) -> dict[str, Any]:
    """A readiness check with the defaults of ``ReadinessCheck.scala`` / readinessCheck.raml.

    All eight fields are always rendered (``ReadinessCheckFormat`` writes every field).
    """
    protocol = raw.get("protocol") or DEFAULT_READINESS_PROTOCOL
    if protocol not in ("HTTP", "HTTPS"):
        raise ValueError("Choose one of HTTP, HTTPS")
    codes = raw.get("httpStatusCodesForReady")
    if codes is None:
        codes = list(DEFAULT_HTTP_STATUS_CODES_FOR_READY)
    return {
        "name": raw.get("name") or DEFAULT_READINESS_NAME,
        "protocol": protocol,
        "path": raw.get("path") or DEFAULT_READINESS_PATH,
        "portName": raw.get("portName") or DEFAULT_READINESS_PORT_NAME,
        "intervalSeconds": int(raw.get("intervalSeconds", DEFAULT_READINESS_INTERVAL_SECONDS)),
        "timeoutSeconds": int(raw.get("timeoutSeconds", DEFAULT_READINESS_TIMEOUT_SECONDS)),
        "httpStatusCodesForReady": [int(c) for c in dict.fromkeys(codes)],
        "preserveLastResponse": bool(
            raw.get("preserveLastResponse", DEFAULT_PRESERVE_LAST_RESPONSE)
        ),
    }


# --------------------------------------------------------------------------- probes


def _status_text(status: int, reason: str | None) -> str:
    """Akka's ``StatusCode.toString``: ``500 Internal Server Error``."""
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:
        phrase = reason or ""
    return f"{status} {phrase}".rstrip()


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def _effective_port(check: dict[str, Any], ports: list[int]) -> int | None:
    if check.get("port") is not None:
        return int(check["port"])
    index = check.get("portIndex", 0)
    if isinstance(index, int) and 0 <= index < len(ports) and ports[index] > 0:
        return int(ports[index])
    return None


def _connect_failure(host: str, port: int, exc: BaseException) -> str:
    """How akka-http reports a failed connect in ``e.getMessage``."""
    return (
        f"Tcp command [Connect({host}:{port},None,List(),Some(10 seconds),true)] failed "
        f"because of java.net.ConnectException: {_java_connect_message(exc)}"
    )


def _java_connect_message(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError) or "refused" in str(exc).lower():
        return "Connection refused"
    return str(getattr(exc, "strerror", None) or exc) or type(exc).__name__


async def _http_get(
    url: str, timeout: float, *, read_body: bool
) -> tuple[int, str | None, str | None, str]:
    """GET without following redirects or checking certificates.

    Returns (status, reason, content type header, body)."""
    client_timeout = aiohttp.ClientTimeout(total=timeout)
    connector = aiohttp.TCPConnector(ssl=False, force_close=True)
    async with (
        aiohttp.ClientSession(
            timeout=client_timeout, connector=connector, trace_configs=network.trace_configs()
        ) as session,
        session.get(url, allow_redirects=False) as resp,
    ):
        body = ""
        if read_body:
            body = (await resp.read()).decode("utf-8", errors="replace")
        return resp.status, resp.reason, resp.headers.get("Content-Type"), body


def _check_url(check: dict[str, Any], host: str, port: int) -> str:
    """The URL an HTTP(S) or MESOS_HTTP(S) check asks for (path "/" when none is set)."""
    scheme = "https" if check["protocol"] in ("HTTPS", "MESOS_HTTPS") else "http"
    raw_path = check.get("path") or ""
    path = raw_path if raw_path.startswith("/") else f"/{raw_path}"
    return f"{scheme}://{_url_host(host)}:{port}{path}"


async def _probe_marathon_http(
    check: dict[str, Any], host: str, port: int, timeout: float
) -> tuple[bool, str | None]:
    url = _check_url(check, host, port)
    seconds = check.get("timeoutSeconds", DEFAULT_TIMEOUT_SECONDS)
    try:
        status, reason, _, _ = await _http_get(url, timeout, read_body=False)
    except (TimeoutError, aiohttp.ServerTimeoutError):
        return False, (
            f"TCP idle-timeout encountered on connection to [/{host}:{port}], "
            f"no bytes passed in the last {_scala_seconds(seconds)}"
        )
    except aiohttp.ClientConnectorError as exc:
        return False, _connect_failure(host, port, exc.os_error)
    except (aiohttp.ClientError, OSError) as exc:
        return False, str(exc) or type(exc).__name__
    return classify_http_status(check, status, reason)


def classify_http_status(
    check: dict[str, Any], status: int, reason: str | None = None
) -> tuple[bool, str | None]:
    """``HealthCheckWorker.http``/``https``: 200..399 healthy; 1xx ignored only for HTTP with
    ``ignoreHttp1xx`` (``(False, None)``); anything else unhealthy with akka's status text.

    aiohttp never hands an interim 1xx answer to the caller (it waits for the final
    response), so a server answering only 1xx fails with ``Server disconnected`` here.
    """
    if 200 <= status < 400:
        return True, None
    if check.get("protocol") == "HTTP" and check.get("ignoreHttp1xx") and 100 <= status < 200:
        return False, None  # Ignored: Marathon leaves the health unchanged
    return False, _status_text(status, reason)


async def _probe_mesos_http(
    check: dict[str, Any], host: str, port: int, timeout: float
) -> tuple[bool, str | None]:
    url = _check_url(check, host, port)
    seconds = check.get("timeoutSeconds", DEFAULT_TIMEOUT_SECONDS)
    try:
        status, _, _, _ = await _http_get(url, timeout, read_body=False)
    except (TimeoutError, aiohttp.ServerTimeoutError):
        return False, f"Command timed out after {seconds}secs"
    except (aiohttp.ClientError, OSError) as exc:
        return False, f"curl {url} failed: {exc}"
    if 200 <= status < 400:
        return True, None
    return False, f"Unexpected HTTP response code: {status}"


async def _tcp_connect(host: str, port: int, timeout: float) -> None:
    net = network.current()
    if net is not None and net.blocks(f"tcp://{_url_host(host)}:{port}"):
        raise OSError(errno.ENETUNREACH, "Network is unreachable (network partition)")
    _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()


async def _probe_tcp(
    check: dict[str, Any], host: str, port: int, timeout: float
) -> tuple[bool, str | None]:
    try:
        await _tcp_connect(host, port, timeout)
    except TimeoutError:
        if check["protocol"] == "MESOS_TCP":
            return False, f"Command timed out after {check.get('timeoutSeconds')}secs"
        return False, "SocketTimeoutException: connect timed out"
    except OSError as exc:
        if check["protocol"] == "MESOS_TCP":
            return False, "Command returned: Exited with status 1"
        msg = _java_connect_message(exc)
        return False, f"ConnectException: {msg} ({msg})"
    return True, None


async def _probe_command(
    check: dict[str, Any], env: dict[str, str], cwd: str | None, timeout: float
) -> tuple[bool, str | None]:
    command = (check.get("command") or {}).get("value", "")
    proc = await asyncio.create_subprocess_exec(
        "sh",
        "-c",
        command,
        env={**os.environ, **env},
        cwd=cwd,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        code = await asyncio.wait_for(proc.wait(), timeout)
    except (TimeoutError, asyncio.CancelledError) as exc:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(Exception):
            await asyncio.shield(proc.wait())
        if isinstance(exc, asyncio.CancelledError):
            raise
        return False, f"Command timed out after {check.get('timeoutSeconds')}secs"
    if code == 0:
        return True, None
    if code < 0:
        return False, f"Command returned: Terminated by signal {-code}"
    return False, f"Command returned: Exited with status {code}"


async def probe(
    check: dict[str, Any],
    *,
    host: str,
    ports: list[int],
    env: dict[str, str],
    cwd: str | None,
    timeout: float,
) -> tuple[bool, str | None]:
    """One probe of a normalised health check; ``timeout`` is in wall seconds.

    Returns ``(True, None)`` when healthy and ``(False, cause)`` when not, with the cause
    worded as Marathon's ``HealthCheckWorker`` words it for HTTP/HTTPS/TCP (``500 Internal
    Server Error``, akka's connect/idle-timeout messages, ``ConnectException: ...``) and as
    the Mesos health checker logs it for COMMAND/MESOS_* checks. ``(False, None)`` means the
    result is *ignored* (a 1xx answer to an HTTP check with ``ignoreHttp1xx``).
    """
    protocol = check.get("protocol", DEFAULT_PROTOCOL)
    if protocol == "COMMAND":
        return await _probe_command(check, env, cwd, timeout)
    port = _effective_port(check, ports)
    if port is None:
        return False, (
            "UnsupportedOperationException: Health check failed: "
            "unable to get the task's effectivePort"
        )
    if protocol in ("HTTP", "HTTPS"):
        return await _probe_marathon_http(check, host, port, timeout)
    if protocol in ("MESOS_HTTP", "MESOS_HTTPS"):
        return await _probe_mesos_http(check, host, port, timeout)
    if protocol in ("TCP", "MESOS_TCP"):
        return await _probe_tcp(check, host, port, timeout)
    raise ValueError(f"{protocol} is not a valid protocol")


# --------------------------------------------------------------------------- state


class HealthTracker:
    """State of one health check for one task (instance), as Marathon's HealthCheckActor keeps it.

    ``now`` and ``started_at`` are epoch seconds of wall time; the grace period is
    ``ts.wall(gracePeriodSeconds, CHECK_FLOOR)`` wall seconds after ``started_at``.
    """

    def __init__(
        self, check: dict[str, Any], instance_id: str, started_at: float, ts: WallClock
    ) -> None:
        self.check = check
        self.instance_id = instance_id
        self.started_at = started_at
        self.mesos_level = _is_mesos_level(check)
        self.max_failures = int(
            check.get("maxConsecutiveFailures", DEFAULT_MAX_CONSECUTIVE_FAILURES)
        )
        self.grace = ts.wall(
            float(check.get("gracePeriodSeconds", DEFAULT_GRACE_PERIOD_SECONDS)), CHECK_FLOOR
        )
        # core.health.Health
        self.first_success: float | None = None
        self.last_success: float | None = None
        self.last_failure: float | None = None
        self.last_failure_cause: str | None = None
        self.consecutive_failures = 0
        #: Cause given with the last "kill" decision (UnhealthyInstanceKillEvent.reason).
        self.kill_reason: str | None = None
        # The Mesos health checker's own counters (Mesos-level checks only).
        self._mesos_failures = 0
        self._mesos_reported_healthy = False

    @property
    def marathon_alive(self) -> bool:
        """``Health.alive``: a success newer than the last failure."""
        if self.last_success is None:
            return False
        return self.last_failure is None or self.last_success > self.last_failure

    def alive(self) -> bool | None:
        """``Health.alive``, or ``None`` while no result has been counted yet."""
        if self.last_success is None and self.last_failure is None:
            return None
        return self.marathon_alive

    def _in_grace(self, now: float) -> bool:
        return self.first_success is None and self.started_at + self.grace > now

    def _success(self, now: float) -> None:
        if self.first_success is None:
            self.first_success = now
        self.last_success = now
        self.consecutive_failures = 0

    def _failure(self, cause: str, now: float) -> None:
        self.last_failure = now
        self.last_failure_cause = cause
        self.consecutive_failures += 1

    def record(self, healthy: bool, cause: str | None, now: float) -> str | None:
        """Count one probe result; ``"kill"`` when the task must be killed, else ``None``.

        ``healthy=False`` with ``cause=None`` is an ignored result (no change).
        """
        if self.mesos_level:
            return self._record_mesos(healthy, cause, now)
        if healthy:
            self._success(now)
            return None
        if cause is None or self._in_grace(now):
            return None
        # HealthCheckActor.checkConsecutiveFailures runs on the health *before* this failure.
        kill = 0 < self.max_failures <= self.consecutive_failures
        if kill:
            self.kill_reason = self.last_failure_cause or "unknown"
        self._failure(cause, now)
        return "kill" if kill else None

    def _record_mesos(self, healthy: bool, cause: str | None, now: float) -> str | None:
        # Mesos HealthChecker: status updates on the first success (and the first success
        # after failures), on the first counted failure and on the failure that kills.
        if healthy:
            if not self._mesos_reported_healthy or self._mesos_failures > 0:
                self._success(now)
                self._mesos_reported_healthy = True
            self._mesos_failures = 0
            return None
        if cause is None:
            return None
        if self._in_grace(now):
            return None
        self._mesos_failures += 1
        kill = self._mesos_failures >= self.max_failures
        if self._mesos_failures == 1 or kill:
            # MarathonHealthCheckManager.update: Unhealthy(instanceId, version, "")
            self._failure("", now)
        if kill:
            self.kill_reason = cause
            return "kill"
        return None

    def to_json(self) -> dict[str, Any]:
        """A ``healthCheckResults`` entry as ``HealthWrites`` renders it (all keys present)."""

        def ts(value: float | None) -> str | None:
            return None if value is None else format_timestamp(value)

        return {
            "alive": self.marathon_alive,
            "consecutiveFailures": self.consecutive_failures,
            "firstSuccess": ts(self.first_success),
            "lastFailure": ts(self.last_failure),
            "lastSuccess": ts(self.last_success),
            "lastFailureCause": self.last_failure_cause,
            "instanceId": self.instance_id,
        }


# --------------------------------------------------------------------------- runner


class HealthRunner:
    """Runs every health check of one task periodically (asyncio tasks) until stopped.

    ``on_change(instance_id, check_index, alive)`` fires when Marathon's ``Health.alive`` of
    a check flips (``health_status_changed_event``); ``on_kill(instance_id, reason)`` fires
    once, on the first kill decision of any check (``unhealthy_instance_kill_event`` for
    Marathon-level checks; the Mesos executor's kill for Mesos-level ones). Checks keep
    running after a kill until :meth:`stop`.
    """

    def __init__(
        self,
        checks: list[dict[str, Any]],
        *,
        instance_id: str,
        host: str,
        ports: list[int],
        env: dict[str, str],
        cwd: str | None,
        ts: WallClock,
        on_change: Callable[[str, int, bool | None], None],
        on_kill: Callable[[str, str], None],
        started_at: float,
    ) -> None:
        self.checks = [normalize_health_check(c) for c in checks]
        self.instance_id = instance_id
        self.host = host
        self.ports = list(ports)
        self.env = dict(env)
        self.cwd = cwd
        self.ts = ts
        self.on_change = on_change
        self.on_kill = on_kill
        self.started_at = started_at
        self.trackers = [HealthTracker(c, instance_id, started_at, ts) for c in self.checks]
        self.killed = False
        self._tasks: list[asyncio.Task[None]] = []
        self._probes: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        if self._tasks:
            return
        for index, check in enumerate(self.checks):
            loop = self._mesos_loop if _is_mesos_level(check) else self._marathon_loop
            self._tasks.append(
                asyncio.create_task(loop(index), name=f"health-{self.instance_id}-{index}")
            )

    async def stop(self) -> None:
        tasks = [*self._tasks, *self._probes]
        self._tasks.clear()
        self._probes.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def results(self) -> list[dict[str, Any]]:
        """``healthCheckResults`` of the task: one entry per check with a counted result."""
        return [t.to_json() for t in self.trackers if t.alive() is not None]

    def healthy(self) -> bool | None:
        """True when every check is alive, False when any is failing, None otherwise."""
        states = [t.alive() for t in self.trackers]
        if not states:
            return None
        if any(s is False for s in states):
            return False
        if all(s is True for s in states):
            return True
        return None

    # -- internals

    def _wall(self, seconds: float) -> float:
        return float(self.ts.wall(float(seconds), CHECK_FLOOR))

    async def _probe_and_record(self, index: int) -> None:
        check = self.checks[index]
        timeout = self._wall(check["timeoutSeconds"]) or CHECK_FLOOR
        try:
            healthy, cause = await probe(
                check,
                host=self.host,
                ports=self.ports,
                env=self.env,
                cwd=self.cwd,
                timeout=timeout,
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # HealthCheckWorker.run: any exception is Unhealthy
            healthy, cause = False, f"{type(exc).__name__}: {exc}"
        self._record(index, healthy, cause, time.time())

    def _record(self, index: int, healthy: bool, cause: str | None, now: float) -> None:
        tracker = self.trackers[index]
        before = tracker.marathon_alive
        decision = tracker.record(healthy, cause, now)
        after = tracker.marathon_alive
        if before != after:
            try:
                self.on_change(self.instance_id, index, after)
            except Exception:
                log.exception("health on_change callback failed")
        if decision == "kill" and not self.killed:
            self.killed = True
            try:
                self.on_kill(self.instance_id, tracker.kill_reason or "unknown")
            except Exception:
                log.exception("health on_kill callback failed")

    async def _marathon_loop(self, index: int) -> None:
        # HealthCheckActor: Tick every interval (fixed rate), each tick dispatches a worker.
        check = self.checks[index]
        interval = check["intervalSeconds"]
        await asyncio.sleep(self._wall(min(interval, FIRST_HEALTH_CHECK_AFTER_SECONDS)))
        while True:
            probe_task = asyncio.create_task(self._probe_and_record(index))
            self._probes.add(probe_task)
            probe_task.add_done_callback(self._probes.discard)
            await asyncio.sleep(self._wall(interval) or CHECK_FLOOR)

    async def _mesos_loop(self, index: int) -> None:
        # Mesos HealthChecker: first check after delaySeconds, next one interval after each.
        check = self.checks[index]
        await asyncio.sleep(self._wall(check["delaySeconds"]))
        while True:
            await self._probe_and_record(index)
            await asyncio.sleep(self._wall(check["intervalSeconds"]) or CHECK_FLOOR)


# --------------------------------------------------------------------------- readiness


def _media_type(content_type: str | None) -> str:
    """Akka ``ContentType.mediaType.value``: the type without parameters, "" if absent."""
    if not content_type:
        return ""
    return content_type.split(";", 1)[0].strip().lower()


async def run_readiness(
    check: dict[str, Any],
    *,
    host: str,
    ports: list[int],
    port_names: list[str | None],
    ts: WallClock,
    on_result: Callable[[dict[str, Any]], None],
    stop: asyncio.Event,
    task_id: str = "",
) -> None:
    """Poll one readiness check until ready (or ``stop`` is set), like
    ``ReadinessCheckExecutorImpl``: the first check is immediate, the next one starts
    ``intervalSeconds`` after the previous finished; every result goes to ``on_result``
    as a ``TaskReadinessCheckResult`` (``name``, ``taskId``, ``ready`` and, only when
    ``preserveLastResponse``, ``lastResponse {status, contentType, body}``). A failed query
    counts as a 504 ``text/plain`` response ``Marathon could not query <url>: <error>``.

    Raises ValueError when no port is named ``portName`` (as Marathon's spec does).
    """
    check = normalize_readiness_check(check)
    name = check["portName"]
    if name not in port_names:
        raise ValueError(f"no port definition for port name '{name}' was found")
    port = ports[port_names.index(name)]
    scheme = "https" if check["protocol"] == "HTTPS" else "http"
    url = f"{scheme}://{_url_host(host)}:{port}{check['path']}"
    timeout = float(ts.wall(float(check["timeoutSeconds"]), CHECK_FLOOR)) or CHECK_FLOOR
    interval = float(ts.wall(float(check["intervalSeconds"]), CHECK_FLOOR)) or CHECK_FLOOR
    ready_codes = set(check["httpStatusCodesForReady"])

    while not stop.is_set():
        try:
            status, _, content_type, body = await _http_get(url, timeout, read_body=True)
            response = {"status": status, "contentType": _media_type(content_type), "body": body}
            ready = status in ready_codes
        except (TimeoutError, aiohttp.ServerTimeoutError):
            message = f"Marathon could not query {url}: Timed out after {check['timeoutSeconds']}s"
            response = {"status": 504, "contentType": "text/plain", "body": message}
            ready = False
        except (aiohttp.ClientError, OSError) as exc:
            error = exc.os_error if isinstance(exc, aiohttp.ClientConnectorError) else exc
            detail = (
                _connect_failure(host, port, error)
                if isinstance(exc, aiohttp.ClientConnectorError)
                else (str(exc) or type(exc).__name__)
            )
            response = {
                "status": 504,
                "contentType": "text/plain",
                "body": f"Marathon could not query {url}: {detail}",
            }
            ready = False
        if stop.is_set():
            return
        result: dict[str, Any] = {"name": check["name"], "taskId": task_id, "ready": ready}
        if check["preserveLastResponse"]:
            result["lastResponse"] = response
        on_result(result)
        if ready:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)
