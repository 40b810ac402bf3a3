"""The v1 scheduler test client against a tiny fake master (aiohttp on an ephemeral port)."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from aiohttp import web

from playground.mesos.recordio import encode
from tests.support.v1scheduler import (
    CallError,
    DisconnectedError,
    SubscribeError,
    SubscribeTimeoutError,
    V1Scheduler,
    offer_ports,
    offer_scalar,
    resolve_location,
    task_info,
)

pytestmark = pytest.mark.timeout(10)

FRAMEWORK_ID = "fake-0000-framework"
AGENTS = ("fake-S0", "fake-S1")
UUID = base64.b64encode(bytes(range(16))).decode()


def make_offer(n: int, agent: str) -> dict[str, Any]:
    """An offer as the Mesos master sends it to a MULTI_ROLE framework."""
    alloc = {"role": "*"}
    return {
        "id": {"value": f"fake-O{n}"},
        "framework_id": {"value": FRAMEWORK_ID},
        "agent_id": {"value": agent},
        "hostname": f"{agent}.local",
        "allocation_info": alloc,
        "resources": [
            {
                "name": "cpus",
                "type": "SCALAR",
                "scalar": {"value": 2.0},
                "role": "*",
                "allocation_info": alloc,
            },
            {
                "name": "mem",
                "type": "SCALAR",
                "scalar": {"value": 1024.0},
                "role": "*",
                "allocation_info": alloc,
            },
            {
                "name": "ports",
                "type": "RANGES",
                "ranges": {
                    "range": [{"begin": 31000, "end": 31002}, {"begin": 31010, "end": 31010}]
                },
                "role": "*",
                "allocation_info": alloc,
            },
        ],
    }


def update_event(task_id: str, state: str, uuid: str | None = UUID) -> dict[str, Any]:
    """An UPDATE event; reliable (agent-generated) updates carry a uuid."""
    status: dict[str, Any] = {
        "task_id": {"value": task_id},
        "agent_id": {"value": AGENTS[0]},
        "state": state,
        "source": "SOURCE_EXECUTOR",
        "timestamp": time.time(),
    }
    if uuid is not None:
        status["uuid"] = uuid
    return {"type": "UPDATE", "update": {"status": status}}


class FakeMaster:
    """Just enough of ``/api/v1/scheduler`` to exercise a scheduler client.

    SUBSCRIBE gets a RecordIO stream (SUBSCRIBED, OFFERS, UPDATE, then HEARTBEATs and whatever
    :meth:`push` sends), written in 7-byte pieces; other calls are recorded and get 202, or
    403 without a live ``Mesos-Stream-Id``.
    """

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []  # {"headers": ..., "body": ...} of every POST
        self.redirect_to: str | None = None  # answer every POST with 307 to this Location
        self.subscribe_refusal: tuple[int, str] | None = None  # HTTP status and body
        self.refusals_left = -1  # how many SUBSCRIBEs to refuse (-1: all)
        self.error_event: str | None = None  # answer SUBSCRIBE with this ERROR event
        self.initial_events: list[dict[str, Any]] | None = None  # default: OFFERS + UPDATE
        self.end_stream_with: bytes | None = None  # write this after the events, then end
        self.heartbeat_interval = 0.05
        self.closed_streams: list[str] = []
        self.port = 0
        self._streams: dict[str, asyncio.Queue[dict[str, Any] | None]] = {}
        self._n = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeMaster:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(5)
        return self

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/api/v1/scheduler", self._scheduler)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    def stop(self) -> None:
        async def _stop() -> None:
            for queue in self._streams.values():
                queue.put_nowait(None)
            if self._runner is not None:
                await self._runner.cleanup()

        asyncio.run_coroutine_threadsafe(_stop(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def push(self, event: dict[str, Any] | None) -> None:
        """Send an event on every open stream (None ends the streams)."""
        for queue in list(self._streams.values()):
            self._loop.call_soon_threadsafe(queue.put_nowait, event)

    def calls_of(self, type_: str) -> list[dict[str, Any]]:
        return [c for c in self.calls if c["body"].get("type") == type_]

    async def _scheduler(self, request: web.Request) -> web.StreamResponse:
        body = json.loads(await request.read())
        self.calls.append({"headers": dict(request.headers), "body": body})
        if self.redirect_to is not None:
            return web.Response(status=307, headers={"Location": self.redirect_to})
        if body.get("type") == "SUBSCRIBE":
            return await self._subscribe(request, body)
        stream_id = request.headers.get("Mesos-Stream-Id")
        if stream_id not in self._streams:
            return web.Response(status=403, text="Framework is not subscribed")
        if body.get("type") == "TEARDOWN":
            self._streams[stream_id].put_nowait(None)
        return web.Response(status=202)

    async def _subscribe(self, request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        if self.subscribe_refusal is not None and self.refusals_left != 0:
            self.refusals_left -= 1
            status, text = self.subscribe_refusal
            return web.Response(status=status, text=text)
        self._n += 1
        stream_id = f"stream-{self._n}"
        response = web.StreamResponse(
            headers={"Content-Type": "application/json", "Mesos-Stream-Id": stream_id}
        )
        await response.prepare(request)
        framework_id = body.get("framework_id", {}).get("value", FRAMEWORK_ID)
        if self.error_event is not None:
            events = [{"type": "ERROR", "error": {"message": self.error_event}}]
        else:
            subscribed = {
                "framework_id": {"value": framework_id},
                "heartbeat_interval_seconds": 15.0,
            }
            events = [{"type": "SUBSCRIBED", "subscribed": subscribed}]
            if self.initial_events is None:
                offers = [make_offer(1, AGENTS[0]), make_offer(2, AGENTS[1])]
                events += [
                    {"type": "OFFERS", "offers": {"offers": offers}},
                    update_event("t-1", "TASK_RUNNING"),
                ]
            else:
                events += self.initial_events
        data = b"".join(encode(json.dumps(e).encode()) for e in events)
        # Registered before the first write, so that events pushed meanwhile are queued.
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._streams[stream_id] = queue
        try:
            for i in range(0, len(data), 7):  # split records arbitrarily across HTTP chunks
                await response.write(data[i : i + 7])
            if self.error_event is not None or self.end_stream_with is not None:
                await response.write(self.end_stream_with or b"")
                await response.write_eof()
                return response
            while True:
                try:
                    event = await asyncio.wait_for(queue.get(), self.heartbeat_interval)
                except TimeoutError:
                    event = {"type": "HEARTBEAT"}
                if event is None:
                    await response.write_eof()
                    break
                await response.write(encode(json.dumps(event).encode()))
        except (ConnectionError, RuntimeError):
            pass  # the scheduler went away
        finally:
            del self._streams[stream_id]
            self.closed_streams.append(stream_id)
        return response


@pytest.fixture()
def masters() -> Iterator[Callable[[], FakeMaster]]:
    started: list[FakeMaster] = []

    def start() -> FakeMaster:
        started.append(FakeMaster().start())
        return started[-1]

    yield start
    for master in started:
        master.stop()


@pytest.fixture()
def master(masters: Callable[[], FakeMaster]) -> FakeMaster:
    return masters()


@pytest.fixture()
def scheduler(master: FakeMaster) -> Iterator[V1Scheduler]:
    with V1Scheduler(master.url, failover_timeout=60) as s:
        s.subscribe(timeout=5)
        yield s


def test_subscribe_sends_framework_info_and_records_ids(master: FakeMaster) -> None:
    """SUBSCRIBE posts the documented FrameworkInfo and yields the framework and stream IDs."""
    with V1Scheduler(
        master.url, name="fw", roles=("*", "web"), failover_timeout=60, user="alice"
    ) as s:
        assert s.subscribe(timeout=5) == FRAMEWORK_ID
        assert s.framework_id == FRAMEWORK_ID
        assert s.stream_id == "stream-1"
        assert s.subscribed
        assert s.heartbeat_interval == 15.0
        (call,) = master.calls_of("SUBSCRIBE")
        assert call["headers"]["Content-Type"] == "application/json"
        assert call["headers"]["Accept"] == "application/json"
        assert "Mesos-Stream-Id" not in call["headers"]
        assert "framework_id" not in call["body"]
        assert call["body"]["subscribe"]["framework_info"] == {
            "user": "alice",
            "name": "fw",
            "roles": ["*", "web"],
            "capabilities": [{"type": "MULTI_ROLE"}, {"type": "PARTITION_AWARE"}],
            "checkpoint": True,
            "failover_timeout": 60.0,
        }
        s.wait_event("HEARTBEAT", timeout=2)
        assert s.last_heartbeat is not None


def test_resubscribe_carries_the_framework_id(master: FakeMaster) -> None:
    """A scheduler given a framework ID sets both framework_info.id and Call.framework_id."""
    with V1Scheduler(master.url, framework_id="fw-old") as s:
        assert s.subscribe(timeout=5) == "fw-old"
    body = master.calls_of("SUBSCRIBE")[0]["body"]
    assert body["framework_id"] == {"value": "fw-old"}
    assert body["subscribe"]["framework_info"]["id"] == {"value": "fw-old"}


def test_offers_are_collected_and_forgotten_when_used_or_rescinded(
    master: FakeMaster, scheduler: V1Scheduler
) -> None:
    """Offers from OFFERS events are held per ID until declined, accepted or rescinded."""
    offers = scheduler.wait_offers(n_agents=2, timeout=5)
    assert sorted(o["agent_id"]["value"] for o in offers) == list(AGENTS)
    assert set(scheduler.offers) == {"fake-O1", "fake-O2"}
    master.push({"type": "RESCIND", "rescind": {"offer_id": {"value": "fake-O1"}}})
    scheduler.wait_event("RESCIND", timeout=2)
    assert set(scheduler.offers) == {"fake-O2"}
    scheduler.decline(["fake-O2"], refuse_seconds=1)
    assert scheduler.offers == {}
    assert master.calls_of("DECLINE")[0]["body"]["decline"] == {
        "offer_ids": [{"value": "fake-O2"}],
        "filters": {"refuse_seconds": 1.0},
    }


def test_update_is_acknowledged_automatically(master: FakeMaster, scheduler: V1Scheduler) -> None:
    """An UPDATE with a uuid is ACKNOWLEDGEd with its agent_id, task_id and uuid before it is seen."""
    status = scheduler.wait_task_state("t-1", "TASK_RUNNING", timeout=5)
    assert status["uuid"] == UUID
    (ack,) = master.calls_of("ACKNOWLEDGE")
    assert ack["headers"]["Mesos-Stream-Id"] == "stream-1"
    assert ack["body"] == {
        "type": "ACKNOWLEDGE",
        "framework_id": {"value": FRAMEWORK_ID},
        "acknowledge": {
            "agent_id": {"value": AGENTS[0]},
            "task_id": {"value": "t-1"},
            "uuid": UUID,
        },
    }
    assert scheduler.acknowledged == [(AGENTS[0], "t-1", UUID)]
    assert [u["state"] for u in scheduler.updates] == ["TASK_RUNNING"]


def test_update_without_uuid_is_not_acknowledged(
    master: FakeMaster, scheduler: V1Scheduler
) -> None:
    """An UPDATE without uuid (e.g. from reconciliation) must not be acknowledged."""
    scheduler.wait_task_state("t-1", "TASK_RUNNING", timeout=5)
    master.push(update_event("t-2", "TASK_LOST", uuid=None))
    assert (
        scheduler.wait_task_state("t-2", ("TASK_LOST", "TASK_GONE"), timeout=2)["state"]
        == "TASK_LOST"
    )
    assert len(master.calls_of("ACKNOWLEDGE")) == 1  # only t-1's
    assert scheduler.ack_errors == []


def test_redirect_from_a_non_leader_is_followed(masters: Callable[[], FakeMaster]) -> None:
    """A 307 with a scheme-relative Location sends SUBSCRIBE and later calls to the leader."""
    leader, follower = masters(), masters()
    follower.redirect_to = f"//127.0.0.1:{leader.port}/api/v1/scheduler"
    with V1Scheduler(follower.url) as s:
        s.subscribe(timeout=5)
        assert s.endpoint == f"{leader.url}/api/v1/scheduler"
        s.revive()
    assert len(follower.calls_of("SUBSCRIBE")) == 1
    assert len(leader.calls_of("SUBSCRIBE")) == 1
    assert len(leader.calls_of("REVIVE")) == 1
    assert follower.calls_of("REVIVE") == []


def test_call_without_subscription_raises(master: FakeMaster) -> None:
    """A call made before subscribing goes without stream ID and raises CallError on the 403."""
    with V1Scheduler(master.url) as s, pytest.raises(CallError) as info:
        s.kill("t-1")
    assert info.value.status == 403
    assert "not subscribed" in str(info.value)
    assert "Mesos-Stream-Id" not in master.calls_of("KILL")[0]["headers"]


def test_subscribe_http_refusal_raises_with_the_body(master: FakeMaster) -> None:
    """A 4xx answer to SUBSCRIBE raises SubscribeError carrying status and body."""
    master.subscribe_refusal = (400, "Failed to validate scheduler::Call: Expecting 'user'")
    with (
        V1Scheduler(master.url) as s,
        pytest.raises(SubscribeError, match="Expecting 'user'") as info,
    ):
        s.subscribe(timeout=5)
    assert info.value.status == 400


def test_subscribe_retries_while_no_leader_is_elected(master: FakeMaster) -> None:
    """SUBSCRIBE answered 503 (no leader yet) is retried until a master accepts it."""
    master.subscribe_refusal = (503, "No leader elected")
    master.refusals_left = 2
    with V1Scheduler(master.url) as s:
        assert s.subscribe(timeout=5) == FRAMEWORK_ID
    assert len(master.calls_of("SUBSCRIBE")) == 3


def test_subscribe_to_an_unreachable_master_times_out() -> None:
    """With no master listening, subscribe() raises SubscribeTimeoutError naming the failure."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: connections are refused
        with (
            V1Scheduler(f"127.0.0.1:{port}") as s,
            pytest.raises(SubscribeTimeoutError, match="ConnectError"),
        ):
            s.subscribe(timeout=0.3)


def test_subscribe_error_event_raises_with_the_message(master: FakeMaster) -> None:
    """An ERROR event in place of SUBSCRIBED raises SubscribeError with its message."""
    master.error_event = "Framework is not authorized"
    with V1Scheduler(master.url) as s, pytest.raises(SubscribeError, match="not authorized"):
        s.subscribe(timeout=5)


def test_calls_send_the_documented_bodies(master: FakeMaster, scheduler: V1Scheduler) -> None:
    """Each call carries the stream ID, the framework ID and its documented payload."""
    offer = scheduler.wait_offers(n_agents=2, timeout=5)[0]
    task = task_info("web", "web-1", None, "sleep 1", ports=[31000], offer=offer)
    scheduler.launch(offer, [task], refuse_seconds=2)
    scheduler.suppress(["*"])
    scheduler.revive()
    scheduler.kill("web-1", AGENTS[0])
    scheduler.reconcile([("web-1", AGENTS[0]), ("other", None)])
    bodies = {
        c["body"]["type"]: c["body"] for c in master.calls if c["body"]["type"] != "SUBSCRIBE"
    }
    for call in master.calls[1:]:
        assert call["headers"]["Mesos-Stream-Id"] == "stream-1"
        assert call["body"]["framework_id"] == {"value": FRAMEWORK_ID}
    assert bodies["ACCEPT"]["accept"] == {
        "offer_ids": [offer["id"]],
        "operations": [{"type": "LAUNCH", "launch": {"task_infos": [task]}}],
        "filters": {"refuse_seconds": 2.0},
    }
    assert offer["id"]["value"] not in scheduler.offers
    assert bodies["SUPPRESS"]["suppress"] == {"roles": ["*"]}
    assert "revive" not in bodies["REVIVE"]
    assert bodies["KILL"]["kill"] == {
        "task_id": {"value": "web-1"},
        "agent_id": {"value": AGENTS[0]},
    }
    assert bodies["RECONCILE"]["reconcile"] == {
        "tasks": [
            {"task_id": {"value": "web-1"}, "agent_id": {"value": AGENTS[0]}},
            {"task_id": {"value": "other"}},
        ]
    }
    scheduler.teardown()
    assert master.calls_of("TEARDOWN")[0]["body"] == {
        "type": "TEARDOWN",
        "framework_id": {"value": FRAMEWORK_ID},
    }
    assert scheduler.disconnected.is_set()
    assert scheduler.stream_error is None  # the master ending the stream after TEARDOWN is expected


@pytest.mark.parametrize(
    ("ending", "error_type"),
    [(b"", ConnectionError), (b"garbage\n", ValueError), (b"99\n{}", ConnectionError)],
    ids=["eof", "garbage", "truncated"],
)
def test_stream_ended_by_the_master_is_surfaced(
    master: FakeMaster, ending: bytes, error_type: type[Exception]
) -> None:
    """When the master ends or corrupts the stream, disconnected is set and the error recorded."""
    master.initial_events = []
    master.end_stream_with = ending
    with V1Scheduler(master.url) as s:
        s.subscribe(timeout=5)
        assert s.disconnected.wait(2)
        assert isinstance(s.stream_error, error_type)
        assert not s.subscribed
        with pytest.raises(DisconnectedError, match="disconnected"):
            s.wait_event("OFFERS", timeout=2)


def test_close_ends_the_reader_cleanly(master: FakeMaster, scheduler: V1Scheduler) -> None:
    """close() (no TEARDOWN) stops the reader thread at once without recording an error."""
    scheduler.wait_offers(timeout=5)
    thread = scheduler._stream.thread  # type: ignore[union-attr]
    assert thread is not None and thread.is_alive()
    started = time.monotonic()
    scheduler.close()
    assert time.monotonic() - started < 1
    assert not thread.is_alive()
    assert scheduler.disconnected.is_set()
    assert scheduler.stream_error is None
    assert master.calls_of("TEARDOWN") == []
    deadline = time.monotonic() + 2
    while not master.closed_streams and time.monotonic() < deadline:
        time.sleep(0.01)
    assert master.closed_streams == ["stream-1"]  # the master saw the scheduler go


def test_resubscribing_replaces_the_stream(master: FakeMaster, scheduler: V1Scheduler) -> None:
    """subscribe() again closes the old stream and re-subscribes with the framework ID."""
    scheduler.subscribe(timeout=5)
    assert scheduler.stream_id == "stream-2"
    assert master.calls_of("SUBSCRIBE")[1]["body"]["framework_id"] == {"value": FRAMEWORK_ID}
    assert scheduler.subscribed
    scheduler.wait_offers(n_agents=2, timeout=5)


def test_stream_outlives_the_subscribe_timeout(master: FakeMaster) -> None:
    """The subscribe timeout bounds the wait for SUBSCRIBED only, not the gaps between events."""
    master.heartbeat_interval = 60
    with V1Scheduler(master.url) as s:
        s.subscribe(timeout=0.3)
        time.sleep(0.6)
        master.push({"type": "HEARTBEAT"})
        s.wait_event("HEARTBEAT", timeout=2)
        assert not s.disconnected.is_set()


def test_wait_event_timeout_lists_what_was_seen(scheduler: V1Scheduler) -> None:
    """A wait that times out raises TimeoutError naming the events received and unconsumed."""
    scheduler.wait_offers(timeout=5)
    with pytest.raises(TimeoutError) as info:
        scheduler.wait_event("FAILURE", timeout=0.2)
    message = str(info.value)
    assert "FAILURE" in message
    assert "SUBSCRIBED" in message
    assert "UPDATE(t-1=TASK_RUNNING)" in message
    with pytest.raises(TimeoutError, match=r"t-9 did not reach \['TASK_FINISHED'\]"):
        scheduler.wait_task_state("t-9", "TASK_FINISHED", timeout=0.1)


def test_wait_event_consumes_buffered_events_in_order(
    master: FakeMaster, scheduler: V1Scheduler
) -> None:
    """Buffered events are returned oldest first, once each, whatever was waited for before."""
    scheduler.wait_event("UPDATE", timeout=5)
    master.push(update_event("a", "TASK_STAGING"))
    master.push(update_event("a", "TASK_RUNNING"))
    assert scheduler.wait_task_state("a", "TASK_RUNNING", timeout=2)["state"] == "TASK_RUNNING"
    assert scheduler.wait_event("UPDATE", timeout=2)["update"]["status"]["state"] == "TASK_STAGING"
    with pytest.raises(TimeoutError):
        scheduler.wait_event("UPDATE", timeout=0.1)


def test_task_info_builds_a_command_task_from_an_offer() -> None:
    """task_info() builds a shell CommandInfo task with cpus, mem, port ranges and the offer's allocation."""
    offer = make_offer(1, AGENTS[0])
    info = task_info("web", "web-1", None, "python -m http.server $PORT0", cpus=0.5, mem=64,
                     ports=[31002, 31000, 31001, 31010], env={"PORT0": "31000"}, offer=offer)  # fmt: skip
    alloc = {"role": "*"}
    assert info == {
        "name": "web",
        "task_id": {"value": "web-1"},
        "agent_id": {"value": AGENTS[0]},
        "resources": [
            {"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.5}, "allocation_info": alloc},
            {"name": "mem", "type": "SCALAR", "scalar": {"value": 64.0}, "allocation_info": alloc},
            {
                "name": "ports",
                "type": "RANGES",
                "ranges": {
                    "range": [{"begin": 31000, "end": 31002}, {"begin": 31010, "end": 31010}]
                },
                "allocation_info": alloc,
            },
        ],
        "command": {
            "shell": True,
            "value": "python -m http.server $PORT0",
            "environment": {"variables": [{"name": "PORT0", "value": "31000"}]},
        },
    }
    bare = task_info("x", "x-1", "S9", "true")
    assert bare["agent_id"] == {"value": "S9"}
    assert all("allocation_info" not in r and "role" not in r for r in bare["resources"])
    assert [r["name"] for r in bare["resources"]] == ["cpus", "mem"]
    assert "environment" not in bare["command"]
    assert offer_scalar(offer, "cpus") == 2.0
    assert offer_ports(offer) == [31000, 31001, 31002, 31010]


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        ("//10.0.0.2:5050/api/v1/scheduler", "http://10.0.0.2:5050/api/v1/scheduler"),
        ("//10.0.0.2:5050", "http://10.0.0.2:5050/api/v1/scheduler"),
        ("10.0.0.2:5050", "http://10.0.0.2:5050/api/v1/scheduler"),
        ("http://m2:5050/api/v1/scheduler", "http://m2:5050/api/v1/scheduler"),
        ("/master/api/v1/scheduler", "http://m1:5050/master/api/v1/scheduler"),
    ],
)
def test_resolve_location(location: str, expected: str) -> None:
    """Redirect locations (scheme-relative as Mesos sends them, or bare host:port) resolve to http URLs."""
    assert resolve_location("http://m1:5050/api/v1/scheduler", location) == expected
