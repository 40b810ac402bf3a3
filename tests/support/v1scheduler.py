"""A Mesos v1 scheduler written only against the public HTTP API, for tests.

This is "a scheduler written against the v1 API" as the Mesos documentation describes it
(``docs/scheduler-http-api.md``): it POSTs JSON ``Call`` messages to ``/api/v1/scheduler``,
keeps the ``SUBSCRIBE`` response open and decodes its RecordIO stream of ``Event`` messages.
It deliberately knows nothing about the embedded master's internals, so integration tests
that drive it prove the HTTP API, not the implementation.

The API is synchronous; a daemon thread reads the subscription stream, records the
framework's state (offers held, status updates) and acknowledges every status update that
carries a ``uuid``, as a real scheduler must. Tests then wait for what they expect::

    with V1Scheduler("http://127.0.0.1:5050") as scheduler:
        scheduler.subscribe()
        offer = scheduler.wait_offers()[0]
        task = task_info("sleep", "task-1", None, "sleep 100", offer=offer)
        scheduler.launch(offer, [task])
        scheduler.wait_task_state("task-1", "TASK_RUNNING")
"""

from __future__ import annotations

import contextlib
import functools
import getpass
import json
import logging
import socket
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx

from playground.mesos.recordio import Decoder, RecordIOError

__all__ = [
    "DEFAULT_CAPABILITIES",
    "CallError",
    "DisconnectedError",
    "SubscribeError",
    "SubscribeTimeoutError",
    "V1Scheduler",
    "V1SchedulerError",
    "offer_ports",
    "offer_scalar",
    "resolve_location",
    "task_info",
]

log = logging.getLogger("tests.v1scheduler")

SCHEDULER_PATH = "/api/v1/scheduler"
STREAM_ID_HEADER = "Mesos-Stream-Id"
DEFAULT_CAPABILITIES = ("MULTI_ROLE", "PARTITION_AWARE")
#: Statuses after which the request is re-sent to the ``Location`` (Mesos uses 307).
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 5
#: Pause between SUBSCRIBE attempts while no master can take it (503, connection refused).
SUBSCRIBE_RETRY_INTERVAL = 0.1
#: Seconds ``close()`` waits for the reader thread.
JOIN_TIMEOUT = 5.0

Event = dict[str, Any]
Predicate = Callable[[dict[str, Any]], bool]


class V1SchedulerError(Exception):
    """Base class of the errors raised by :class:`V1Scheduler`."""


class SubscribeError(V1SchedulerError):
    """SUBSCRIBE failed: an HTTP error, an ``ERROR`` event, or a stream that ended early.

    Attributes:
        status: The HTTP status of the refusal, if the master answered with one.
        body: The HTTP body of the refusal (text), if any.
        event: The ``ERROR`` event that refused the subscription, if any.
    """

    def __init__(
        self,
        message: str,
        status: int | None = None,
        body: str | None = None,
        event: Event | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body = body
        self.event = event


class SubscribeTimeoutError(SubscribeError, TimeoutError):
    """No ``SUBSCRIBED`` (or refusal) arrived within the timeout."""


class CallError(V1SchedulerError):
    """A call was not answered with the expected status (202 Accepted for most calls).

    Attributes:
        call_type: The ``Call.type`` that failed, e.g. ``"ACCEPT"``.
        status: The HTTP status the master answered.
        body: The HTTP body the master answered (text).
    """

    def __init__(self, call_type: str, status: int, body: str, url: str) -> None:
        super().__init__(f"{call_type} call to {url} failed: HTTP {status}: {body.strip()!r}")
        self.call_type = call_type
        self.status = status
        self.body = body


class DisconnectedError(V1SchedulerError, ConnectionError):
    """Waited for an event although the subscription stream has ended (no more can come)."""


def resolve_location(current_url: str, location: str) -> str:
    """Resolve a redirect ``Location`` the way a Mesos scheduler must.

    Mesos answers a non-leading master's ``307`` with a scheme-relative location such as
    ``//leader:5050/api/v1/scheduler`` (the docs even show a bare ``leader:5050``); both
    are resolved against ``http:``. A location without a path keeps the scheduler endpoint.

    Args:
        current_url: The URL that answered with the redirect.
        location: The ``Location`` header's value.

    Returns:
        The absolute URL to re-send the request to.
    """
    location = location.strip()
    if location.startswith("//"):
        url = "http:" + location
    elif "://" in location:
        url = location
    elif location.startswith("/"):
        url = urljoin(current_url, location)
    else:  # "host:port[/path]"
        url = "http://" + location
    if urlsplit(url).path in ("", "/"):
        url = url.rstrip("/") + SCHEDULER_PATH
    return url


def _endpoint(master_url: str) -> str:
    url = master_url.strip().rstrip("/")
    if "://" not in url:
        url = "http://" + url
    if not url.endswith(SCHEDULER_PATH):
        url += SCHEDULER_PATH
    return url


def _value(item: str | Mapping[str, Any]) -> dict[str, str]:
    """``{"value": ...}`` from a plain ID string or an ID message."""
    if isinstance(item, str):
        return {"value": item}
    return {"value": str(item["value"])}


def _offer_id(offer: str | Mapping[str, Any]) -> dict[str, str]:
    """An ``OfferID`` from an ID string, an ``OfferID`` message or a whole ``Offer``."""
    if isinstance(offer, Mapping) and "id" in offer:
        return _value(offer["id"])
    return _value(offer)


def _port_ranges(ports: Iterable[int]) -> list[dict[str, int]]:
    ranges: list[dict[str, int]] = []
    for port in sorted(set(ports)):
        if ranges and ranges[-1]["end"] == port - 1:
            ranges[-1]["end"] = port
        else:
            ranges.append({"begin": port, "end": port})
    return ranges


def task_info(
    name: str,
    task_id: str,
    agent_id: str | None,
    cmd: str,
    cpus: float = 0.1,
    mem: float = 32,
    ports: Sequence[int] | None = None,
    env: Mapping[str, str] | None = None,
    offer: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Build a v1 ``TaskInfo`` running a shell command.

    Resources carry no ``role`` (the deprecated field defaults to ``"*"``); when ``offer``
    is given they carry the offer's ``allocation_info``, as a ``MULTI_ROLE`` framework must.

    Args:
        name: ``TaskInfo.name``.
        task_id: ``TaskInfo.task_id.value``.
        agent_id: The agent to run on; ``None`` takes it from ``offer``.
        cmd: The shell command (``CommandInfo`` with ``shell: true``).
        cpus: ``cpus`` SCALAR resource.
        mem: ``mem`` SCALAR resource (MB).
        ports: Ports to use, turned into a ``ports`` RANGES resource (none if empty).
        env: Environment variables of the command.
        offer: The offer the task is launched from.

    Returns:
        The ``TaskInfo`` as JSON-ready dict.

    Raises:
        ValueError: Neither ``agent_id`` nor ``offer`` says which agent to use.
    """
    if agent_id is None:
        if offer is None:
            raise ValueError("task_info() needs an agent_id or an offer")
        agent_id = offer["agent_id"]["value"]
    allocation_info = offer.get("allocation_info") if offer is not None else None

    def resource(name: str, type_: str, key: str, value: Any) -> dict[str, Any]:
        res: dict[str, Any] = {"name": name, "type": type_, key: value}
        if allocation_info:
            res["allocation_info"] = dict(allocation_info)
        return res

    resources = [
        resource("cpus", "SCALAR", "scalar", {"value": float(cpus)}),
        resource("mem", "SCALAR", "scalar", {"value": float(mem)}),
    ]
    if ports:
        resources.append(resource("ports", "RANGES", "ranges", {"range": _port_ranges(ports)}))
    command: dict[str, Any] = {"shell": True, "value": cmd}
    if env:
        command["environment"] = {
            "variables": [{"name": key, "value": str(value)} for key, value in env.items()]
        }
    return {
        "name": name,
        "task_id": {"value": task_id},
        "agent_id": {"value": agent_id},
        "resources": resources,
        "command": command,
    }


def offer_scalar(offer: Mapping[str, Any], name: str) -> float:
    """The total SCALAR amount of resource ``name`` (e.g. ``"cpus"``) in an offer."""
    return sum(
        float(res.get("scalar", {}).get("value", 0.0))
        for res in offer.get("resources", [])
        if res.get("name") == name and res.get("type") == "SCALAR"
    )


def offer_ports(offer: Mapping[str, Any]) -> list[int]:
    """Every port of the offer's ``ports`` RANGES resources, ascending."""
    ports: list[int] = []
    for res in offer.get("resources", []):
        if res.get("name") == "ports" and res.get("type") == "RANGES":
            for rng in res.get("ranges", {}).get("range", []):
                ports.extend(range(int(rng["begin"]), int(rng["end"]) + 1))
    return sorted(ports)


def _summary(event: Event) -> str:
    """One short line describing an event, for timeout messages."""
    type_ = event.get("type", "?")
    if type_ == "UPDATE":
        status = event.get("update", {}).get("status", {})
        message = f" {status['message']!r}" if status.get("message") else ""
        return f"UPDATE({status.get('task_id', {}).get('value')}={status.get('state')}{message})"
    if type_ == "OFFERS":
        agents = [
            o.get("agent_id", {}).get("value") for o in event.get("offers", {}).get("offers", [])
        ]
        return f"OFFERS(agents={agents})"
    if type_ == "RESCIND":
        return f"RESCIND({event.get('rescind', {}).get('offer_id', {}).get('value')})"
    if type_ == "ERROR":
        return f"ERROR({_error_message(event)!r})"
    return str(type_)


def _error_message(event: Event) -> str:
    # scheduler.proto nests it (``error.message``); the docs' example puts it at the top.
    error = event.get("error")
    if isinstance(error, Mapping) and "message" in error:
        return str(error["message"])
    return str(event.get("message", ""))


class _Stream:
    """One subscription connection: its HTTP client and response, and the reader thread."""

    def __init__(self, client: httpx.Client, response: httpx.Response, stream_id: str) -> None:
        self.client = client
        self.response = response
        self.stream_id = stream_id
        self.closing = threading.Event()
        self.first_event: Event | None = None
        self.thread: threading.Thread | None = None

    def shutdown(self) -> None:
        """Unblock the reader: shut the socket down (close() alone does not wake a recv)."""
        self.closing.set()
        network_stream = self.response.extensions.get("network_stream")
        sock = network_stream.get_extra_info("socket") if network_stream is not None else None
        if isinstance(sock, socket.socket):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(Exception):
            self.response.close()


class V1Scheduler:
    """A synchronous, thread-backed Mesos v1 HTTP API scheduler for tests.

    Attributes:
        endpoint: The scheduler endpoint in use (the leading master's, after redirects).
        framework_id: The framework's ID once subscribed (or the one given to re-subscribe).
        stream_id: The ``Mesos-Stream-Id`` of the current subscription.
        heartbeat_interval: ``heartbeat_interval_seconds`` from ``SUBSCRIBED``.
        last_heartbeat: ``time.monotonic()`` of the last ``HEARTBEAT`` event.
        error_message: The message of the last ``ERROR`` event received.
        disconnected: Set when the subscription stream has ended, whoever ended it.
        stream_error: Why the stream ended if the master/network ended it (``None`` when
            :meth:`close` did, or while connected).
        acknowledged: ``(agent_id, task_id, uuid)`` of every update acknowledged.
        ack_errors: Exceptions of automatic acknowledgements that failed.
    """

    task_info = staticmethod(task_info)

    def __init__(
        self,
        master_url: str,
        name: str = "test-framework",
        roles: Sequence[str] = ("*",),
        framework_id: str | None = None,
        failover_timeout: float | None = None,
        checkpoint: bool = True,
        *,
        user: str | None = None,
        capabilities: Sequence[str] = DEFAULT_CAPABILITIES,
        call_timeout: float = 10.0,
    ) -> None:
        """Create an unsubscribed scheduler.

        Args:
            master_url: Any master, e.g. ``http://127.0.0.1:5050`` (a non-leader redirects).
            name: ``FrameworkInfo.name``.
            roles: ``FrameworkInfo.roles``.
            framework_id: Re-subscribe as this framework (scheduler failover).
            failover_timeout: ``FrameworkInfo.failover_timeout`` in seconds, if set.
            checkpoint: ``FrameworkInfo.checkpoint``.
            user: ``FrameworkInfo.user``; defaults to the current user.
            capabilities: ``FrameworkInfo.capabilities`` types.
            call_timeout: HTTP timeout of each call (not of the subscription stream).
        """
        self.endpoint = _endpoint(master_url)
        self.name = name
        self.roles = tuple(roles)
        self.framework_id = framework_id
        self.failover_timeout = failover_timeout
        self.checkpoint = checkpoint
        self.user = user or _current_user()
        self.capabilities = tuple(capabilities)
        self.call_timeout = call_timeout
        self.stream_id: str | None = None
        self.heartbeat_interval: float | None = None
        self.last_heartbeat: float | None = None
        self.error_message: str | None = None
        self.disconnected = threading.Event()
        self.stream_error: BaseException | None = None
        self.acknowledged: list[tuple[str, str, str]] = []
        self.ack_errors: list[Exception] = []
        self._cond = threading.Condition()
        self._offers: dict[str, dict[str, Any]] = {}
        self._updates: list[dict[str, Any]] = []
        self._events: list[Event] = []  # every event received, in order
        self._pending: list[Event] = []  # received and not consumed by a wait_*()
        self._stream: _Stream | None = None
        self._closed = False
        self._calls = _http_client(call_timeout)

    # ------------------------------------------------------------------ state

    @property
    def offers(self) -> dict[str, dict[str, Any]]:
        """A snapshot of the offers held: offer ID -> ``Offer`` (until used or rescinded)."""
        with self._cond:
            return dict(self._offers)

    @property
    def updates(self) -> list[dict[str, Any]]:
        """A snapshot of every ``TaskStatus`` received in ``UPDATE`` events, in order."""
        with self._cond:
            return list(self._updates)

    @property
    def events(self) -> list[Event]:
        """A snapshot of every event received since the first subscription, in order."""
        with self._cond:
            return list(self._events)

    @property
    def subscribed(self) -> bool:
        """Whether a subscription stream is currently open and has said ``SUBSCRIBED``."""
        stream = self._stream
        return (
            stream is not None
            and stream.first_event is not None
            and stream.first_event.get("type") == "SUBSCRIBED"
            and not self.disconnected.is_set()
        )

    def framework_info(self) -> dict[str, Any]:
        """The ``FrameworkInfo`` sent with ``SUBSCRIBE``."""
        info: dict[str, Any] = {
            "user": self.user,
            "name": self.name,
            "roles": list(self.roles),
            "capabilities": [{"type": c} for c in self.capabilities],
            "checkpoint": self.checkpoint,
        }
        if self.failover_timeout is not None:
            info["failover_timeout"] = float(self.failover_timeout)
        if self.framework_id is not None:
            info["id"] = {"value": self.framework_id}
        return info

    # -------------------------------------------------------------- subscribe

    def subscribe(self, timeout: float = 10.0) -> str:
        """SUBSCRIBE (or re-subscribe) and start reading the event stream.

        Follows ``307`` redirects to the leading master and retries while no master can
        take the subscription (``503``, connection refused) until ``timeout``. A previous
        subscription of this object is closed first (without ``TEARDOWN``) and the
        framework re-subscribes with its ID, as a failed-over scheduler does.

        Args:
            timeout: Seconds to wait for the ``SUBSCRIBED`` event.

        Returns:
            The framework ID.

        Raises:
            SubscribeError: The master refused (HTTP error with its body, or an ``ERROR``
                event with its message) or closed the stream before ``SUBSCRIBED``.
            SubscribeTimeoutError: Nothing conclusive within ``timeout``.
        """
        if self._closed:
            raise V1SchedulerError("this V1Scheduler is closed")
        self._close_stream()
        deadline = time.monotonic() + timeout
        body: dict[str, Any] = {
            "type": "SUBSCRIBE",
            "subscribe": {"framework_info": self.framework_info()},
        }
        if self.framework_id is not None:
            body["framework_id"] = {"value": self.framework_id}
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        client = _http_client(None)  # a new connection for each subscription
        try:
            response, url = self._connect(client, body, headers, deadline, timeout)
        except BaseException:
            client.close()
            raise
        stream_id = response.headers.get(STREAM_ID_HEADER)
        if not stream_id:
            response.close()
            client.close()
            raise SubscribeError(f"SUBSCRIBE to {url}: 200 without a {STREAM_ID_HEADER} header")
        # The read timeout guarded the wait for the headers; events may be far apart.
        timeouts = response.request.extensions.get("timeout")
        if isinstance(timeouts, dict):
            timeouts["read"] = None
        stream = _Stream(client, response, stream_id)
        with self._cond:
            self.endpoint = url
            self.stream_id = stream_id
            self.error_message = None
            self.stream_error = None
            self.disconnected.clear()
            self._offers.clear()
            self._pending.clear()
            self._stream = stream
        stream.thread = threading.Thread(
            target=self._read, args=(stream,), name=f"v1scheduler-{self.name}", daemon=True
        )
        stream.thread.start()
        with self._cond:
            while stream.first_event is None and not self.disconnected.is_set():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            first = stream.first_event
            error = self.stream_error
        if first is not None and first.get("type") == "SUBSCRIBED":
            assert self.framework_id is not None
            return self.framework_id
        self._close_stream()
        if first is not None and first.get("type") == "ERROR":
            raise SubscribeError(
                f"SUBSCRIBE to {url} refused: ERROR event: {_error_message(first)}", event=first
            )
        if first is not None:
            raise SubscribeError(
                f"SUBSCRIBE to {url}: first event was {_summary(first)}, not SUBSCRIBED",
                event=first,
            )
        if error is not None:
            raise SubscribeError(f"SUBSCRIBE to {url}: stream ended before SUBSCRIBED: {error!r}")
        raise SubscribeTimeoutError(f"SUBSCRIBE to {url}: no SUBSCRIBED event within {timeout}s")

    def _connect(
        self,
        client: httpx.Client,
        body: dict[str, Any],
        headers: dict[str, str],
        deadline: float,
        timeout: float,
    ) -> tuple[httpx.Response, str]:
        """POST SUBSCRIBE until a master answers 200; return the open response and its URL."""
        last_failure = "no attempt"
        while True:
            remaining = max(deadline - time.monotonic(), 0.05)
            try:
                response, url = self._post(client, body, headers, remaining, stream=True)
            except httpx.TransportError as exc:
                last_failure = f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code == 200:
                    return response, url
                try:
                    text = response.read().decode(errors="replace")
                except httpx.HTTPError as exc:
                    text = f"<unreadable body: {exc!r}>"
                finally:
                    response.close()
                if response.status_code != 503:
                    raise SubscribeError(
                        f"SUBSCRIBE to {url} failed: HTTP {response.status_code}: {text.strip()!r}",
                        status=response.status_code,
                        body=text,
                    )
                last_failure = f"HTTP 503: {text.strip()!r}"
            if time.monotonic() + SUBSCRIBE_RETRY_INTERVAL >= deadline:
                raise SubscribeTimeoutError(
                    f"SUBSCRIBE to {self.endpoint}: no master accepted it within {timeout}s; "
                    f"last failure: {last_failure}"
                )
            time.sleep(SUBSCRIBE_RETRY_INTERVAL)

    def _post(
        self,
        client: httpx.Client,
        body: Mapping[str, Any],
        headers: Mapping[str, str],
        timeout: float,
        *,
        stream: bool,
    ) -> tuple[httpx.Response, str]:
        """POST ``body`` to the endpoint, following redirects; return the response and URL."""
        content = json.dumps(body, separators=(",", ":")).encode()
        url = self.endpoint
        for _ in range(MAX_REDIRECTS + 1):
            request = client.build_request(
                "POST", url, content=content, headers=dict(headers), timeout=timeout
            )
            response = client.send(request, stream=stream)
            location = response.headers.get("Location")
            if response.status_code not in REDIRECT_STATUSES or not location:
                return response, url
            response.close()
            new_url = resolve_location(url, location)
            log.debug("%s redirected to %s", url, new_url)
            url = new_url
        raise V1SchedulerError(f"more than {MAX_REDIRECTS} redirects from {self.endpoint}")

    # ------------------------------------------------------------ the reader

    def _read(self, stream: _Stream) -> None:
        """Reader thread: decode the RecordIO stream until it ends or is closed."""
        decoder = Decoder()
        error: BaseException | None = None
        try:
            for chunk in stream.response.iter_bytes():
                try:
                    records = decoder.feed(chunk)
                except RecordIOError as exc:
                    for record in exc.records:
                        self._handle(stream, record)
                    raise
                for record in records:
                    self._handle(stream, record)
            truncated = (
                f" ({decoder.pending} bytes of an incomplete record)" if decoder.pending else ""
            )
            error = ConnectionError(f"the master closed the subscription stream{truncated}")
        except Exception as exc:
            error = exc
        finally:
            with contextlib.suppress(Exception):
                stream.response.close()
            with self._cond:
                if self._stream is stream:
                    self.stream_error = None if stream.closing.is_set() else error
                    self.disconnected.set()
                    self._cond.notify_all()
            if error is not None and not stream.closing.is_set():
                log.info("subscription stream of %s ended: %r", self.framework_id, error)

    def _handle(self, stream: _Stream, record: bytes) -> None:
        """Record one event, acknowledge it if it is a reliable update, then publish it."""
        event = json.loads(record)
        if not isinstance(event, dict):
            raise ValueError(f"event is not a JSON object: {record[:200]!r}")
        type_ = event.get("type")
        to_ack: dict[str, Any] | None = None
        with self._cond:
            if stream.first_event is None:
                stream.first_event = event
            if type_ == "SUBSCRIBED":
                subscribed = event.get("subscribed", {})
                self.framework_id = subscribed["framework_id"]["value"]
                self.heartbeat_interval = subscribed.get("heartbeat_interval_seconds")
            elif type_ == "OFFERS":
                for offer in event.get("offers", {}).get("offers", []):
                    self._offers[offer["id"]["value"]] = offer
            elif type_ == "RESCIND":
                self._offers.pop(event["rescind"]["offer_id"]["value"], None)
            elif type_ == "UPDATE":
                status = event["update"]["status"]
                self._updates.append(status)
                if status.get("uuid"):
                    to_ack = status
            elif type_ == "HEARTBEAT":
                self.last_heartbeat = time.monotonic()
            elif type_ == "ERROR":
                self.error_message = _error_message(event)
            self._cond.notify_all()
        if to_ack is not None and not stream.closing.is_set():
            self._auto_acknowledge(to_ack)
        with self._cond:
            self._events.append(event)
            self._pending.append(event)
            self._cond.notify_all()

    def _auto_acknowledge(self, status: Mapping[str, Any]) -> None:
        try:
            agent_id = status.get("agent_id", {}).get("value")
            if not agent_id:
                raise V1SchedulerError(f"cannot acknowledge an update without agent_id: {status}")
            self.acknowledge(agent_id, status["task_id"]["value"], status["uuid"])
        except Exception as exc:
            log.warning("automatic ACKNOWLEDGE failed: %r", exc)
            self.ack_errors.append(exc)

    # ---------------------------------------------------------------- waiting

    def wait_event(
        self, type_: str | None, predicate: Predicate | None = None, timeout: float = 10.0
    ) -> Event:
        """Consume the first unconsumed event of ``type_`` matching ``predicate``.

        Events already received but not yet consumed by a ``wait_*`` call count, so it does
        not matter whether the event arrives before or after the call. Non-matching events
        stay available for later waits.

        Args:
            type_: Event type, e.g. ``"UPDATE"``; ``None`` matches any type.
            predicate: Called with the whole event dict; must return true to match.
            timeout: Seconds to wait.

        Returns:
            The event (parsed JSON).

        Raises:
            TimeoutError: No match within ``timeout``; the message lists what was seen.
            DisconnectedError: No match and the stream has ended, so none can come.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for index, event in enumerate(self._pending):
                    if (type_ is None or event.get("type") == type_) and (
                        predicate is None or predicate(event)
                    ):
                        return self._pending.pop(index)
                what = f"a {type_ or 'any'} event" + (
                    f" matching {_name(predicate)}" if predicate else ""
                )
                if self.disconnected.is_set():
                    raise DisconnectedError(f"no {what}: {self._seen_locked()}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"no {what} within {timeout}s: {self._seen_locked()}")
                self._cond.wait(remaining)

    def wait_offers(
        self,
        n_agents: int | None = None,
        predicate: Predicate | None = None,
        timeout: float = 10.0,
    ) -> list[dict[str, Any]]:
        """Wait until the offers held cover at least ``n_agents`` distinct agents.

        Args:
            n_agents: Distinct agents needed; ``None`` means one offer is enough.
            predicate: Only offers for which it returns true count.
            timeout: Seconds to wait.

        Returns:
            Every offer held that matches ``predicate`` (possibly several per agent).

        Raises:
            TimeoutError: Not enough within ``timeout``; the message says what is held.
            DisconnectedError: Not enough and the stream has ended.
        """
        needed = 1 if n_agents is None else n_agents
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                offers = [o for o in self._offers.values() if predicate is None or predicate(o)]
                agents = {o["agent_id"]["value"] for o in offers}
                if len(agents) >= needed:
                    return offers
                held = sorted({o["agent_id"]["value"] for o in self._offers.values()})
                what = (
                    f"offers covering {needed} agent(s)"
                    + (f" matching {_name(predicate)}" if predicate else "")
                    + f"; matching offers cover {sorted(agents)}, all offers held cover {held}"
                )
                if self.disconnected.is_set():
                    raise DisconnectedError(f"no {what}: {self._seen_locked()}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"no {what} within {timeout}s: {self._seen_locked()}")
                self._cond.wait(remaining)

    def wait_task_state(
        self, task_id: str, state: str | Iterable[str], timeout: float = 10.0
    ) -> dict[str, Any]:
        """Consume the first ``UPDATE`` putting ``task_id`` in ``state``.

        Args:
            task_id: The task's ID.
            state: A ``TaskState`` such as ``"TASK_RUNNING"``, or several acceptable ones.
            timeout: Seconds to wait.

        Returns:
            The ``TaskStatus`` dict of that update.

        Raises:
            TimeoutError: No such update within ``timeout``; lists the task's updates.
            DisconnectedError: No such update and the stream has ended.
        """
        states = {state} if isinstance(state, str) else set(state)

        def matches(event: Event) -> bool:
            status = event.get("update", {}).get("status", {})
            return (
                status.get("task_id", {}).get("value") == task_id and status.get("state") in states
            )

        try:
            event = self.wait_event("UPDATE", matches, timeout)
        except (TimeoutError, DisconnectedError) as exc:
            seen = [
                (s.get("state"), s.get("reason"), s.get("message"))
                for s in self.updates
                if s.get("task_id", {}).get("value") == task_id
            ]
            raise type(exc)(
                f"task {task_id} did not reach {sorted(states)}; its updates: {seen}; {exc}"
            ) from None
        status: dict[str, Any] = event["update"]["status"]
        return status

    def _seen_locked(self) -> str:
        counts = Counter(str(e.get("type")) for e in self._events)
        pending = [_summary(e) for e in self._pending if e.get("type") != "HEARTBEAT"]
        state = "connected"
        if self.disconnected.is_set():
            state = f"disconnected ({self.stream_error!r})"
        return (
            f"stream {state}; events received: {dict(counts) or 'none'}; "
            f"unconsumed: {pending[-15:] or 'none'}"
        )

    # ------------------------------------------------------------------ calls

    def call(
        self,
        type_: str,
        payload: Mapping[str, Any] | None = None,
        expected: int | Iterable[int] = 202,
    ) -> httpx.Response:
        """Send any ``Call``: ``{"framework_id", "type": type_, type_.lower(): payload}``.

        Sent with the current ``Mesos-Stream-Id`` (and ``framework_id``) when there is one;
        without a subscription it is sent without them, which a master refuses with 403.

        Args:
            type_: ``Call.type``, e.g. ``"SHUTDOWN"``.
            payload: The call's message, put under the lower-cased type; omitted if None.
            expected: Acceptable HTTP status(es).

        Returns:
            The HTTP response.

        Raises:
            CallError: Another status was answered (the error has status and body).
        """
        if self._closed:
            raise V1SchedulerError("this V1Scheduler is closed")
        body: dict[str, Any] = {"type": type_}
        if self.framework_id is not None:
            body["framework_id"] = {"value": self.framework_id}
        if payload is not None:
            body[type_.lower()] = dict(payload)
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.stream_id is not None:
            headers[STREAM_ID_HEADER] = self.stream_id
        response, url = self._post(self._calls, body, headers, self.call_timeout, stream=False)
        accepted = {expected} if isinstance(expected, int) else set(expected)
        if response.status_code not in accepted:
            raise CallError(type_, response.status_code, response.text, url)
        return response

    def accept(
        self,
        offer_ids: Iterable[str | Mapping[str, Any]],
        operations: Iterable[Mapping[str, Any]],
        refuse_seconds: float | None = None,
    ) -> None:
        """ACCEPT offers with operations; the offers are no longer held afterwards.

        Args:
            offer_ids: Offer ID strings, ``OfferID`` dicts or whole offers.
            operations: ``Offer.Operation`` dicts (e.g. ``{"type": "LAUNCH", ...}``).
            refuse_seconds: ``Filters.refuse_seconds`` for the unused resources.
        """
        ids = [_offer_id(o) for o in offer_ids]
        payload: dict[str, Any] = {"offer_ids": ids, "operations": [dict(op) for op in operations]}
        if refuse_seconds is not None:
            payload["filters"] = {"refuse_seconds": float(refuse_seconds)}
        self.call("ACCEPT", payload)
        self._forget_offers(ids)

    def launch(
        self,
        offer: Mapping[str, Any],
        task_infos: Iterable[Mapping[str, Any]],
        refuse_seconds: float | None = None,
    ) -> None:
        """ACCEPT one offer with a single LAUNCH operation of ``task_infos``."""
        operation = {"type": "LAUNCH", "launch": {"task_infos": [dict(t) for t in task_infos]}}
        self.accept([offer], [operation], refuse_seconds)

    def decline(
        self, offer_ids: Iterable[str | Mapping[str, Any]], refuse_seconds: float | None = None
    ) -> None:
        """DECLINE offers (ID strings, ``OfferID`` dicts or whole offers)."""
        ids = [_offer_id(o) for o in offer_ids]
        payload: dict[str, Any] = {"offer_ids": ids}
        if refuse_seconds is not None:
            payload["filters"] = {"refuse_seconds": float(refuse_seconds)}
        self.call("DECLINE", payload)
        self._forget_offers(ids)

    def revive(self, roles: Iterable[str] | None = None) -> None:
        """REVIVE the given roles (all subscribed roles if None)."""
        self.call("REVIVE", {"roles": list(roles)} if roles is not None else None)

    def suppress(self, roles: Iterable[str] | None = None) -> None:
        """SUPPRESS offers for the given roles (all subscribed roles if None)."""
        self.call("SUPPRESS", {"roles": list(roles)} if roles is not None else None)

    def kill(self, task_id: str, agent_id: str | None = None) -> None:
        """KILL a task."""
        payload: dict[str, Any] = {"task_id": {"value": task_id}}
        if agent_id is not None:
            payload["agent_id"] = {"value": agent_id}
        self.call("KILL", payload)

    def reconcile(self, tasks: Iterable[tuple[str, str | None] | str] = ()) -> None:
        """RECONCILE the given tasks; an empty list asks for every task (implicit).

        Args:
            tasks: ``(task_id, agent_id or None)`` pairs, or bare task IDs.
        """
        entries: list[dict[str, Any]] = []
        for task in tasks:
            task_id, agent_id = (task, None) if isinstance(task, str) else task
            entry: dict[str, Any] = {"task_id": {"value": task_id}}
            if agent_id is not None:
                entry["agent_id"] = {"value": agent_id}
            entries.append(entry)
        self.call("RECONCILE", {"tasks": entries})

    def acknowledge(self, agent_id: str, task_id: str, uuid: str) -> None:
        """ACKNOWLEDGE a status update (``uuid`` is the Base64 string from the update)."""
        self.call(
            "ACKNOWLEDGE",
            {"agent_id": {"value": agent_id}, "task_id": {"value": task_id}, "uuid": uuid},
        )
        with self._cond:
            self.acknowledged.append((agent_id, task_id, uuid))

    def teardown(self) -> None:
        """TEARDOWN the framework (its tasks are killed), then :meth:`close` this object."""
        stream = self._stream
        if stream is not None:
            stream.closing.set()  # the master ends the stream: that is no error
        try:
            self.call("TEARDOWN")
        except BaseException:
            if stream is not None:
                stream.closing.clear()
            raise
        self.close()

    def _forget_offers(self, ids: Iterable[Mapping[str, str]]) -> None:
        with self._cond:
            for offer_id in ids:
                self._offers.pop(offer_id["value"], None)

    # ---------------------------------------------------------------- closing

    def _close_stream(self) -> None:
        stream = self._stream
        if stream is None:
            return
        stream.shutdown()
        if stream.thread is not None and stream.thread is not threading.current_thread():
            stream.thread.join(JOIN_TIMEOUT)
            if stream.thread.is_alive():
                log.warning("reader thread of %s did not stop", self.framework_id)
        with contextlib.suppress(Exception):
            stream.client.close()
        with self._cond:
            self.disconnected.set()
            self._cond.notify_all()

    def close(self) -> None:
        """Close the subscription stream without TEARDOWN (the scheduler "fails").

        The master sees the scheduler disconnect and starts the framework's failover
        timeout; a new ``V1Scheduler(..., framework_id=...)`` can then re-subscribe.
        Idempotent; the reader thread has ended when it returns.
        """
        if self._closed:
            return
        self._closed = True
        self._close_stream()
        self._calls.close()

    def __enter__(self) -> V1Scheduler:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "subscribed" if self.subscribed else "closed" if self._closed else "unsubscribed"
        return f"<V1Scheduler {self.name!r} {self.framework_id} {state} at {self.endpoint}>"


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    """One TLS context for all clients (building one per client costs ~40 ms)."""
    return ssl.create_default_context()


def _http_client(timeout: float | None) -> httpx.Client:
    """An HTTP client that ignores proxy settings (masters are on the local network)."""
    return httpx.Client(trust_env=False, timeout=timeout, verify=_ssl_context())


def _name(predicate: Callable[..., Any]) -> str:
    return getattr(predicate, "__qualname__", None) or repr(predicate)


def _current_user() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return "root"
