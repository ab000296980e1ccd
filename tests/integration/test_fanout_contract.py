"""The fan-out contract (:class:`Notifier` + :class:`ConnectionHub`), the same test bodies on the
in-memory and the Redis adapter, plus what only the Redis adapter can go through.

A *pair* is two processes of one deployment, each seen through its hub. In memory there is one
process, so both ends are the same :class:`InMemoryFanout` (killing Redis connections is a no-op);
on Redis each end is its own :class:`RedisFanout` with its own client over one server, with a key
prefix of its own. Waits are bounded: a recording subscriber sets an :class:`asyncio.Event` on every
delivery and tests wait on it with :func:`asyncio.wait_for`. Where only a recovery can be waited
for (killed connections, an outage), tests publish probes until one gets through, within a limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
import time
import typing
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Literal, Protocol
from urllib.parse import urlsplit, urlunsplit

import pytest
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from adapters.memory.fanout import InMemoryFanout
from adapters.redis.codec import Envelope, PayloadError, decode, encode
from adapters.redis.fanout import RedisFanout
from application.events import (
    Event,
    LoginsRevoked,
    MessageDelivered,
    MessageReceived,
    MessagesRead,
    Typing,
    UserOffline,
    UserOnline,
)
from application.ports import ConnectionHub, Notifier, Subscriber
from domain.messages import Message

BACKENDS = ["memory", pytest.param("redis", marks=pytest.mark.redis, id="redis")]
WAIT_S = 5.0  # the longest a test waits for an event that should arrive at once
RECOVERY_S = 20.0  # the longest a test waits for delivery to resume after connections died
PROBE_EVERY_S = 0.1  # how long a probe may take before the next one is published
PROBE_BASE = 1_000_000  # probes are UserOnline events about user ids from here on

T0 = datetime(2026, 3, 14, 15, 9, 26, 535_897, tzinfo=UTC)
PLUS_TWO = timezone(timedelta(hours=2))

FULL_MESSAGE = Message(
    id="0192f7e0-aaaa-7bbb-8ccc-000000000001",
    seq=7,
    sender_id=1,
    recipient_id=2,
    body='héllo 👋 "quoted" \\ back\nslash\u2028',
    client_msg_id="c-1",
    created_at=T0,
    delivered_at=(T0 + timedelta(seconds=1)).astimezone(PLUS_TWO),
    read_at=T0 + timedelta(seconds=2, microseconds=1),
)
WITHHELD_MESSAGE = Message(
    id="m-2", seq=8, sender_id=1, recipient_id=2, body="x", client_msg_id="c-2", created_at=T0, withheld=True
)
EVERY_KIND: list[Event] = [
    MessageReceived(message=FULL_MESSAGE),
    MessageReceived(message=WITHHELD_MESSAGE),
    MessageDelivered(ids=("m-1", "m-2"), to=2, delivered_at=T0),
    MessageDelivered(ids=(), to=2, delivered_at=T0),
    MessagesRead(by=2, peer_id=1, up_to_seq=7, read_at=T0.astimezone(PLUS_TWO)),
    LoginsRevoked(sids=frozenset({"sid-1", "sid-2"})),
    LoginsRevoked(sids=frozenset()),
    UserOnline(user_id=3),
    UserOffline(user_id=3, last_seen_at=T0),
    Typing(from_id=1, is_typing=True),
    Typing(from_id=1, is_typing=False),
]


def probe(n: int) -> UserOnline:
    return UserOnline(user_id=PROBE_BASE + n)


def is_probe(event: Event) -> bool:
    return isinstance(event, UserOnline) and event.user_id >= PROBE_BASE


def numbered(n: int) -> MessagesRead:
    """The n-th event of a sequence whose order a test checks."""
    return MessagesRead(by=2, peer_id=1, up_to_seq=n, read_at=T0)


# ---------------------------------------------------------------- doubles and deployments


class RecordingSubscriber(Subscriber):
    """A connection that records what it is handed and lets a test wait for it."""

    def __init__(self, user_id: int, connection_id: str | None = None) -> None:
        self._user_id = user_id
        self._connection_id = connection_id or f"conn-{uuid.uuid4().hex[:8]}"
        self.events: list[Event] = []
        self._arrived = asyncio.Event()

    @property
    def connection_id(self) -> str:
        return self._connection_id

    @property
    def user_id(self) -> int:
        return self._user_id

    @property
    def sid(self) -> str:
        return f"sid-of-{self._connection_id}"

    def deliver(self, event: Event) -> None:
        self.events.append(event)
        self._arrived.set()

    async def until(self, done: Callable[[list[Event]], bool]) -> None:
        """Return once ``done(events)`` holds (unbounded: callers wrap it in ``wait_for``)."""
        while not done(self.events):
            self._arrived.clear()
            await self._arrived.wait()

    async def wait_for(self, count: int, within: float = WAIT_S) -> list[Event]:
        """The first ``count`` events, once they are there."""
        try:
            await asyncio.wait_for(self.until(lambda events: len(events) >= count), within)
        except TimeoutError:
            pytest.fail(f"{self.connection_id} got {len(self.events)} of {count} events in {within}s")
        return self.events[:count]

    def real_events(self) -> list[Event]:
        return [event for event in self.events if not is_probe(event)]


class Hub(Notifier, ConnectionHub, Protocol):
    """What one process's fan-out is to its use cases and its connections."""


KillKind = Literal["pubsub", "normal"]


@dataclass
class Pair:
    """Two processes of one deployment (the same object twice in memory)."""

    one: Hub
    two: Hub
    synced: Callable[[], Awaitable[None]]
    kill: Callable[[KillKind], Awaitable[int]]

    async def attach(self, hub: Hub, *subscribers: Subscriber) -> None:
        """Attach and wait until the deployment will deliver to them."""
        for subscriber in subscribers:
            hub.attach(subscriber)
        await asyncio.wait_for(self.synced(), WAIT_S)


async def _nothing() -> None:
    return None


async def _kill_nothing(kind: KillKind) -> int:
    return 0


def memory_pair() -> Pair:
    hub = InMemoryFanout()
    return Pair(one=hub, two=hub, synced=_nothing, kill=_kill_nothing)


@dataclass
class RedisDeployment:
    """Redis processes: one client (own connection pool, own client name) and fan-out each."""

    url: str
    prefix: str = field(default_factory=lambda: f"test-fanout-{uuid.uuid4().hex[:12]}")
    client_options: dict[str, typing.Any] = field(default_factory=dict)
    fanout_options: dict[str, typing.Any] = field(default_factory=dict)
    clients: list[Redis] = field(default_factory=list)
    fanouts: list[RedisFanout] = field(default_factory=list)

    async def process(self, *, start: bool = True, **fanout_options: typing.Any) -> RedisFanout:
        # The options of entrypoints.container.connect_redis, unless a test asks otherwise.
        options: dict[str, typing.Any] = {"health_check_interval": 10, "socket_connect_timeout": 5}
        options |= self.client_options
        client = Redis.from_url(self.url, client_name=f"{self.prefix}-{len(self.clients) + 1}", **options)
        fanout_options = {"reconnect_delay_s": 0.05, **self.fanout_options, **fanout_options}
        fanout = RedisFanout(client, prefix=self.prefix, **fanout_options)
        self.clients.append(client)
        self.fanouts.append(fanout)
        if start:
            await fanout.start()
        return fanout

    async def synced(self) -> None:
        for fanout in self.fanouts:
            await fanout.synced()

    async def kill(self, kind: KillKind) -> int:
        """``CLIENT KILL`` every connection of this deployment's processes of that type (not other
        tests' ones: the server is shared), from a client of its own; how many died."""
        admin = Redis.from_url(self.url)
        try:
            victims = [c["id"] for c in await admin.client_list(_type=kind) if c["name"].startswith(self.prefix)]
            for client_id in victims:
                await admin.client_kill_filter(_id=client_id)
        finally:
            await admin.aclose()
        return len(victims)

    async def close(self) -> None:
        for fanout in self.fanouts:
            await fanout.stop(drain_s=0.5)
        for client in self.clients:
            await client.aclose()


@pytest.fixture
async def redis_pair(redis_url: str) -> AsyncIterator[Pair]:
    deployment = RedisDeployment(redis_url)
    try:
        one, two = await deployment.process(), await deployment.process()
        yield Pair(one=one, two=two, synced=deployment.synced, kill=deployment.kill)
    finally:
        await deployment.close()


@pytest.fixture(params=BACKENDS)
def pair(request: pytest.FixtureRequest) -> Pair:
    if request.param == "memory":
        return memory_pair()
    redis_pair: Pair = request.getfixturevalue("redis_pair")
    return redis_pair


async def until_delivered(hub: Hub, subscriber: RecordingSubscriber, limit_s: float = RECOVERY_S) -> None:
    """Publish probes to ``subscriber``'s user through ``hub`` until one arrives, for at most ``limit_s``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    for n in itertools.count():
        hub.publish(subscriber.user_id, probe(n))
        try:
            await asyncio.wait_for(subscriber.until(lambda events: any(map(is_probe, events))), PROBE_EVERY_S)
        except TimeoutError:
            if loop.time() > deadline:
                pytest.fail(f"no probe reached {subscriber.connection_id} within {limit_s}s")
        else:
            return


# ---------------------------------------------------------------- the contract


async def test_a_publish_reaches_the_users_connections_on_every_process(pair: Pair) -> None:
    here, there, other_user = RecordingSubscriber(1), RecordingSubscriber(1), RecordingSubscriber(2)
    await pair.attach(pair.one, here)
    await pair.attach(pair.two, there, other_user)

    pair.one.publish(1, UserOnline(user_id=5))
    pair.one.publish(2, UserOnline(user_id=6))  # after the first one on the same publisher

    assert await here.wait_for(1) == [UserOnline(user_id=5)]
    assert await there.wait_for(1) == [UserOnline(user_id=5)]
    assert await other_user.wait_for(1) == [UserOnline(user_id=6)]  # and nothing addressed to user 1


async def test_each_connection_gets_a_publish_exactly_once(pair: Pair) -> None:
    here, there = RecordingSubscriber(1), RecordingSubscriber(1)
    await pair.attach(pair.one, here)
    await pair.attach(pair.two, there)

    pair.one.publish(1, UserOnline(user_id=5))
    await there.wait_for(1)
    pair.two.publish(1, UserOnline(user_id=6))  # through the deployment, after the first one

    assert await here.wait_for(2) == [UserOnline(user_id=5), UserOnline(user_id=6)]
    assert await there.wait_for(2) == [UserOnline(user_id=5), UserOnline(user_id=6)]


async def test_the_skipped_connection_gets_nothing_and_the_others_everything(pair: Pair) -> None:
    sender, sender_tab, sender_phone = RecordingSubscriber(1), RecordingSubscriber(1), RecordingSubscriber(1)
    await pair.attach(pair.one, sender, sender_tab)
    await pair.attach(pair.two, sender_phone)

    pair.one.publish(1, UserOnline(user_id=5), skip_connection=sender.connection_id)
    pair.two.publish(1, UserOnline(user_id=6), skip_connection=sender_phone.connection_id)

    assert await sender_tab.wait_for(2) == [UserOnline(user_id=5), UserOnline(user_id=6)]
    assert await sender_phone.wait_for(1) == [UserOnline(user_id=5)]
    assert await sender.wait_for(1) == [UserOnline(user_id=6)]
    pair.one.publish(1, UserOnline(user_id=7))
    assert await sender_phone.wait_for(2) == [UserOnline(user_id=5), UserOnline(user_id=7)]


async def test_a_detached_connection_gets_nothing_more(pair: Pair) -> None:
    leaving, staying, witness = RecordingSubscriber(1), RecordingSubscriber(1), RecordingSubscriber(2)
    await pair.attach(pair.two, leaving, witness)
    await pair.attach(pair.one, staying)
    pair.one.publish(1, UserOnline(user_id=5))
    await leaving.wait_for(1)

    pair.two.detach(leaving)
    pair.one.publish(1, UserOnline(user_id=6))
    pair.one.publish(2, UserOnline(user_id=7))  # after the one the detached connection must miss

    assert await witness.wait_for(1) == [UserOnline(user_id=7)]
    assert await staying.wait_for(2) == [UserOnline(user_id=5), UserOnline(user_id=6)]
    assert leaving.events == [UserOnline(user_id=5)]


async def test_the_last_detach_of_a_user_stops_delivery_to_that_process(pair: Pair) -> None:
    first, witness = RecordingSubscriber(1), RecordingSubscriber(2)
    await pair.attach(pair.two, first, witness)
    pair.two.detach(first)
    again = RecordingSubscriber(1)
    await pair.attach(pair.two, again)  # the user comes back on the same process
    pair.two.detach(again)
    await asyncio.wait_for(pair.synced(), WAIT_S)

    pair.one.publish(1, UserOnline(user_id=5))
    pair.one.publish(2, UserOnline(user_id=6))

    assert await witness.wait_for(1) == [UserOnline(user_id=6)]
    assert first.events == again.events == []


async def test_every_event_kind_arrives_equal_to_what_was_published(pair: Pair) -> None:
    assert {type(event) for event in EVERY_KIND} == set(typing.get_args(Event))
    receiver = RecordingSubscriber(2)
    await pair.attach(pair.two, receiver)

    for event in EVERY_KIND:
        pair.one.publish(2, event)

    assert await receiver.wait_for(len(EVERY_KIND)) == EVERY_KIND


async def test_events_to_one_user_from_one_publisher_arrive_in_order(pair: Pair) -> None:
    here, there = RecordingSubscriber(1), RecordingSubscriber(1)
    await pair.attach(pair.one, here)
    await pair.attach(pair.two, there)
    sequence = [numbered(n) for n in range(1, 501)]

    for event in sequence:
        pair.one.publish(1, event)

    assert await there.wait_for(len(sequence)) == sequence
    assert await here.wait_for(len(sequence)) == sequence


@pytest.mark.parametrize("kinds", [("pubsub",), ("normal",), ("pubsub", "normal")], ids="+".join)
async def test_delivery_resumes_by_itself_after_redis_connections_are_killed(
    pair: Pair, kinds: tuple[KillKind, ...]
) -> None:
    here, there = RecordingSubscriber(1), RecordingSubscriber(1)
    await pair.attach(pair.one, here)
    await pair.attach(pair.two, there)
    pair.one.publish(1, UserOnline(user_id=5))  # the publisher's connection exists now
    await there.wait_for(1)

    killed = [await pair.kill(kind) for kind in kinds]
    if pair.one is not pair.two:
        assert all(killed), f"killed {killed} connections of types {kinds}"

    await until_delivered(pair.one, there)
    await until_delivered(pair.two, here)
    sequence = [numbered(n) for n in range(1, 51)]
    for event in sequence:
        pair.one.publish(1, event)
    await asyncio.wait_for(there.until(lambda _: there.real_events()[1:] == sequence), WAIT_S)
    assert here.real_events() == [UserOnline(user_id=5), *sequence]


# ---------------------------------------------------------------- Redis only: the wire


@pytest.mark.parametrize("event", EVERY_KIND, ids=lambda event: type(event).__name__)
def test_the_codec_round_trips_every_event_with_aware_utc_datetimes(event: Event) -> None:
    envelope = Envelope(event=event, origin="p-1", skip_connection="conn-1")
    decoded = decode(encode(envelope))
    assert decoded == envelope
    for value in _datetimes(decoded.event):
        assert value.utcoffset() == timedelta(0)
        assert value.tzinfo is UTC


def _datetimes(event: Event) -> Iterator[datetime]:
    values: list[object] = [getattr(event, f.name) for f in dataclasses.fields(event)]
    if isinstance(event, MessageReceived):
        values += [event.message.created_at, event.message.delivered_at, event.message.read_at]
    return (value for value in values if isinstance(value, datetime))


def test_the_codec_takes_a_naive_datetime_for_utc() -> None:
    naive = UserOffline(user_id=1, last_seen_at=T0.replace(tzinfo=None))
    decoded = decode(encode(Envelope(event=naive, origin="p-1")))
    assert decoded.event == UserOffline(user_id=1, last_seen_at=T0)
    assert decoded.skip_connection is None


def test_the_codec_writes_a_kind_tag_and_camel_case_fields() -> None:
    payload = encode(Envelope(event=Typing(from_id=4, is_typing=True), origin="p-1", skip_connection=None))
    assert payload == b'{"v":1,"origin":"p-1","skip":null,"event":{"kind":"typing","fromId":4,"isTyping":true}}'


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"not json",
        b"[]",
        b"{}",
        b'{"v":2,"origin":"p","skip":null,"event":{"kind":"typing","fromId":4,"isTyping":true}}',
        b'{"v":1,"origin":"p","skip":null,"event":{"kind":"shout","fromId":4}}',
        b'{"v":1,"origin":"p","skip":null,"event":{"kind":"typing","fromId":"4","isTyping":true}}',
        b'{"v":1,"origin":"p","skip":null,"event":{"kind":"typing","isTyping":true}}',
        b'{"v":1,"origin":"p","skip":null,"event":{"kind":"userOffline","userId":1,"lastSeenAt":"2026-01-01T00:00:00"}}',
        b"{\xff",
    ],
)
def test_the_codec_rejects_anything_else_with_a_payload_error(payload: bytes) -> None:
    with pytest.raises(PayloadError):
        decode(payload)


# ---------------------------------------------------------------- Redis only: bad payloads and outages


class LogWatch(logging.Handler):
    """The fan-out's log records, and a way to wait for one."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []
        self._logged = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())
        self._logged.set()

    def count(self, text: str) -> int:
        return sum(text in message for message in self.messages)

    async def until(self, text: str) -> None:
        """Return once a record contains ``text`` (unbounded: callers wrap it in ``wait_for``)."""
        while not self.count(text):
            self._logged.clear()
            await self._logged.wait()


@pytest.fixture
def fanout_log() -> Iterator[LogWatch]:
    logger = logging.getLogger("adapters.redis.fanout")
    watch, level = LogWatch(), logger.level
    logger.addHandler(watch)
    logger.setLevel(logging.DEBUG)
    try:
        yield watch
    finally:
        logger.removeHandler(watch)
        logger.setLevel(level)


@pytest.mark.redis
async def test_bad_payloads_on_a_users_channel_are_logged_and_skipped(redis_url: str, fanout_log: LogWatch) -> None:
    deployment = RedisDeployment(redis_url)
    admin = Redis.from_url(redis_url)
    try:
        one, two = await deployment.process(), await deployment.process()
        receiver = RecordingSubscriber(1)
        two.attach(receiver)
        await asyncio.wait_for(deployment.synced(), WAIT_S)
        for garbage in (b"garbage", b'{"v":9}', b'{"v":1,"origin":"x","skip":null,"event":{"kind":"nope"}}'):
            await admin.publish(f"{deployment.prefix}:user:1", garbage)
        one.publish(1, UserOnline(user_id=5))

        assert await receiver.wait_for(1) == [UserOnline(user_id=5)]
        assert fanout_log.count("skipping a bad payload") == 3
    finally:
        await admin.aclose()
        await deployment.close()


SECRET = "SECRET-BODY"
_MESSAGE = '{"id":"m","seq":1,"senderId":1,"recipientId":2,"body":"%s","clientMsgId":"c","createdAt":"%s"}'


@pytest.mark.redis
async def test_a_bad_payload_is_logged_by_size_and_kind_never_whole(redis_url: str, fanout_log: LogWatch) -> None:
    """A payload can hold a message's body: the log names its size and what was wrong, not its values."""
    event = '{"v":1,"origin":"x","skip":null,"event":{"kind":"messageReceived","message":%s}%s}'
    garbage = [
        '{"v":1,"origin":"x","skip":null,"event":{"kind":"%s"}}' % SECRET,  # noqa: UP031
        event % (_MESSAGE % (SECRET, SECRET), ""),
        event % (_MESSAGE % (SECRET, "2026-01-01T00:00:00Z"), ',"x":' + "[" * 1000 + "]" * 1000),
        SECRET + "{",
    ]
    deployment = RedisDeployment(redis_url)
    admin = Redis.from_url(redis_url)
    try:
        one, two = await deployment.process(), await deployment.process()
        receiver = RecordingSubscriber(1)
        two.attach(receiver)
        await asyncio.wait_for(deployment.synced(), WAIT_S)
        for payload in garbage:
            await admin.publish(f"{deployment.prefix}:user:1", payload)
        one.publish(1, UserOnline(user_id=5))

        assert await receiver.wait_for(1) == [UserOnline(user_id=5)]
        assert fanout_log.count("skipping a bad payload") == len(garbage)
        assert [m for m in fanout_log.messages if SECRET in m] == []
        assert fanout_log.count(" bytes: ") == len(garbage)
    finally:
        await admin.aclose()
        await deployment.close()


@pytest.mark.redis
async def test_events_published_before_start_are_queued_up_to_max_backlog_dropping_the_oldest(
    redis_url: str, fanout_log: LogWatch
) -> None:
    deployment = RedisDeployment(redis_url)
    try:
        there = RecordingSubscriber(1)
        (await deployment.process()).attach(there)
        await asyncio.wait_for(deployment.synced(), WAIT_S)
        late = await deployment.process(start=False, max_backlog=3)
        here = RecordingSubscriber(1)
        late.attach(here)
        sequence = [numbered(n) for n in range(1, 6)]
        for event in sequence:
            late.publish(1, event)
        assert here.events == sequence  # delivered here at once, started or not
        assert fanout_log.count("dropping the oldest") == 1

        await late.start()

        assert await there.wait_for(3) == [numbered(3), numbered(4), numbered(5)]
        late.publish(1, numbered(6))
        assert await there.wait_for(4) == [numbered(3), numbered(4), numbered(5), numbered(6)]
    finally:
        await deployment.close()


class RedisProxy:
    """A TCP relay in front of the Redis server that a test can *cut* (reset every connection and
    refuse new ones, as a stopped server does), *restore*, or *blackhole* (keep today's connections
    open but drop their bytes both ways, as a dead network path does; new ones work)."""

    def __init__(self, host: str, port: int) -> None:
        self._upstream = (host, port)
        self._server: asyncio.Server | None = None
        self._links: dict[asyncio.Task[None], list[asyncio.StreamWriter]] = {}
        self._blackholed: set[asyncio.Task[None]] = set()
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writers in self._links.values():
            for writer in writers:
                writer.transport.abort()

    async def restore(self) -> None:
        await self.start()

    def blackhole(self) -> None:
        self._blackholed |= set(self._links)

    async def close(self) -> None:
        """Cut, and wait for every relay to end (they end on their own once their sockets died)."""
        await self.cut()
        if self._links:
            await asyncio.wait(list(self._links))

    async def _relay(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        link = asyncio.current_task()
        assert link is not None
        try:
            server_reader, server_writer = await asyncio.open_connection(*self._upstream)
        except OSError:
            client_writer.transport.abort()
            return
        self._links[link] = [client_writer, server_writer]
        pumps = [
            asyncio.create_task(self._pump(client_reader, server_writer, link)),
            asyncio.create_task(self._pump(server_reader, client_writer, link)),
        ]
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pump in pumps:
                pump.cancel()
            await asyncio.wait(pumps)
            client_writer.transport.abort()
            server_writer.transport.abort()
            del self._links[link]
            self._blackholed.discard(link)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, link: asyncio.Task[None]) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                if link not in self._blackholed:
                    writer.write(data)
                    await writer.drain()


@dataclass
class Outage:
    proxy: RedisProxy
    deployment: RedisDeployment
    one: RedisFanout
    two: RedisFanout


@pytest.fixture
async def outage(redis_url: str) -> AsyncIterator[Outage]:
    """Two processes that reach Redis through a :class:`RedisProxy`, with clients that do not retry
    on their own (so the fan-out's own recovery is what gets tested) and a short ``timeout_s``."""
    parts = urlsplit(redis_url)
    proxy = RedisProxy(parts.hostname or "127.0.0.1", parts.port or 6379)
    await proxy.start()
    netloc = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
    deployment = RedisDeployment(
        urlunsplit(parts._replace(netloc=f"{netloc}127.0.0.1:{proxy.port}")),
        client_options={"retry": Retry(NoBackoff(), 0), "socket_connect_timeout": 1},
        fanout_options={"timeout_s": 0.5},
    )
    try:
        one, two = await deployment.process(), await deployment.process()
        yield Outage(proxy=proxy, deployment=deployment, one=one, two=two)
    finally:
        await asyncio.wait_for(deployment.close(), WAIT_S)
        await asyncio.wait_for(proxy.close(), WAIT_S)


@pytest.mark.redis
async def test_publishing_while_redis_is_down_neither_raises_nor_blocks_and_delivery_resumes(
    outage: Outage, fanout_log: LogWatch
) -> None:
    here, there = RecordingSubscriber(1), RecordingSubscriber(1)
    outage.one.attach(here)
    outage.two.attach(there)
    await asyncio.wait_for(outage.deployment.synced(), WAIT_S)

    await outage.proxy.cut()
    sequence = [numbered(n) for n in range(1, 1001)]
    started = time.monotonic()
    for event in sequence:
        outage.one.publish(1, event)
    assert time.monotonic() - started < 1.0
    assert here.events == sequence  # this process's connections do not need Redis
    await asyncio.wait_for(fanout_log.until("pub/sub connection lost"), WAIT_S)
    await asyncio.wait_for(fanout_log.until("PUBLISH failed"), WAIT_S)

    await outage.proxy.restore()
    await until_delivered(outage.one, there)
    await until_delivered(outage.two, here)
    assert fanout_log.count("pub/sub connection re-established")
    assert fanout_log.count("PUBLISH works again")


@pytest.mark.redis
async def test_the_listener_starts_while_redis_is_down_and_subscribes_once_it_is_back(
    outage: Outage, fanout_log: LogWatch
) -> None:
    await outage.proxy.cut()
    late = await outage.deployment.process()
    there = RecordingSubscriber(1)
    late.attach(there)
    await asyncio.wait_for(fanout_log.until("pub/sub connection lost"), WAIT_S)

    await outage.proxy.restore()
    await asyncio.wait_for(late.synced(), WAIT_S)
    await until_delivered(outage.one, there)


@pytest.mark.redis
async def test_a_silently_dead_connection_is_noticed_and_replaced(outage: Outage, fanout_log: LogWatch) -> None:
    here, there = RecordingSubscriber(1), RecordingSubscriber(1)
    outage.one.attach(here)
    outage.two.attach(there)
    await asyncio.wait_for(outage.deployment.synced(), WAIT_S)
    outage.one.publish(1, UserOnline(user_id=5))
    await there.wait_for(1)

    outage.proxy.blackhole()  # no error, no EOF: only the PING watchdog and the PUBLISH timeout notice

    await until_delivered(outage.one, there)
    await until_delivered(outage.two, here)
    assert fanout_log.count("no answer to PING")


@pytest.mark.redis
async def test_stop_returns_promptly_while_redis_is_down(outage: Outage) -> None:
    outage.two.attach(RecordingSubscriber(1))
    await outage.proxy.cut()
    for n in range(100):
        outage.one.publish(1, numbered(n))
    started = time.monotonic()
    await asyncio.wait_for(outage.one.stop(drain_s=0.2), WAIT_S)
    await asyncio.wait_for(outage.two.stop(drain_s=0.2), WAIT_S)
    assert time.monotonic() - started < 2.0


@pytest.mark.redis
async def test_an_idle_listener_pings_and_keeps_its_connection(outage: Outage, fanout_log: LogWatch) -> None:
    there = RecordingSubscriber(1)
    outage.two.attach(there)
    await asyncio.wait_for(outage.deployment.synced(), WAIT_S)
    admin = Redis.from_url(outage.deployment.url)
    try:
        for _ in range(100):  # up to 5 s for the watchdog's PING (after 0.5 s of silence)
            listeners = [
                c for c in await admin.client_list(_type="pubsub") if c["name"].startswith(outage.deployment.prefix)
            ]
            if [c["cmd"] for c in listeners] == ["ping"]:
                break
            await asyncio.sleep(0.05)
        else:
            pytest.fail("the idle listener sent no PING")
    finally:
        await admin.aclose()

    outage.one.publish(1, UserOnline(user_id=5))
    assert await there.wait_for(1) == [UserOnline(user_id=5)]
    assert not fanout_log.count("connection lost")
