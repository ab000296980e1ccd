"""Cross-process fan-out over Redis pub/sub (scaled-out mode): :class:`RedisFanout`.

Decisions:

* **One channel per user**, ``{prefix}:user:{user_id}``. A process subscribes to the channel of
  every user with at least one connection attached here (subscribe on the user's first attach,
  unsubscribe after the last detach) and hands what arrives to those connections. Redis thus sends
  each process only the events of its own users; a pattern subscription or one shared channel would
  send every event to every process.
* **Payload**: the msgspec JSON envelope of :mod:`adapters.redis.codec` — the event with a ``kind``
  tag, ``skip`` (the connection that must not get it) and ``origin`` (a random id of the publishing
  process).
* **Local first**: :meth:`RedisFanout.publish` delivers to this process's connections at once and
  only then queues the PUBLISH; the listener ignores envelopes of its own origin. Same-process
  delivery therefore keeps working, in order, while Redis is down, and costs no round trip.
* **Publishing never blocks the caller**: ``publish`` encodes and appends ``(channel, payload)``
  to an in-process queue; one publisher task drains it in order (a pipeline of up to
  ``batch_size`` PUBLISHes at a time). Pub/sub is at most once and messages are durable in the
  database and re-pushed from it, so a PUBLISH that fails or gets no answer within ``timeout_s`` is
  dropped (logged), never retried by us; the publisher then backs off ``reconnect_delay_s``.
  While Redis is unreachable the queue keeps at most ``max_backlog`` entries, dropping the oldest.
* **The listener survives Redis restarts and killed connections**: one task owns the pub/sub
  connection. On any error it backs off ``reconnect_delay_s``, opens a fresh PubSub and subscribes
  to every channel needed *now* (the table is the source of truth, not the lost connection). A
  connection silent for ``timeout_s`` gets a PING; no answer within another ``timeout_s`` counts as
  lost (a half-open TCP connection raises nothing by itself).
* ``attach``/``detach`` are synchronous (the port says so): they update the
  :class:`~application.connections.ConnectionTable` and wake the listener, which reconciles its
  subscriptions with the table — so a quick detach + attach costs nothing, and no (un)subscribe
  command can be lost or reordered.
* Bad payloads on our channels are logged and skipped; nothing a peer publishes can stop the
  listener.

Events published while a subscription is not yet confirmed by Redis (right after an attach, or
during a reconnect) are lost for that process — :meth:`RedisFanout.synced` waits for the
confirmation where that matters.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import deque
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from adapters.redis import text
from adapters.redis.codec import Envelope, PayloadError, decode, encode
from adapters.redis.degraded import REDIS_ERRORS
from application.connections import ConnectionTable
from application.events import MessageReceived
from application.ports import ConnectionHub, Notifier

if TYPE_CHECKING:
    from collections.abc import Callable

    from redis.asyncio import Redis
    from redis.asyncio.client import PubSub

    from application.events import Event
    from application.ports import Subscriber

DRAIN_AT_ONCE = 256  # pub/sub messages handled per wake-up of the listener

log = logging.getLogger(__name__)


class ListenerStalledError(ConnectionError):
    """The pub/sub connection did not answer a PING within ``timeout_s``."""


class RedisFanout(Notifier, ConnectionHub):
    """:class:`Notifier` and :class:`ConnectionHub` over Redis pub/sub; see the module docstring.

    ``start()`` launches the listener and publisher tasks, ``stop()`` flushes the queue for at most
    ``drain_s`` and ends them; the Redis client belongs to the caller (``stop`` does not close it).
    ``publish`` before ``start`` delivers locally and queues the rest.
    """

    def __init__(
        self,
        redis: Redis,
        *,
        prefix: str = "chat",
        reconnect_delay_s: float = 0.2,
        timeout_s: float = 5.0,
        max_backlog: int = 10_000,
        batch_size: int = 100,
        observe_lag: Callable[[float], None] | None = None,
    ) -> None:
        """``observe_lag(seconds)`` is told, for each message event from another process, how long
        after the message's timestamp it arrived here (the metrics)."""
        self._redis = redis
        self._observe_lag = observe_lag
        self._channel_prefix = f"{prefix}:user:"
        self._reconnect_delay_s = reconnect_delay_s
        self._timeout_s = timeout_s
        self._max_backlog = max_backlog
        self._batch_size = batch_size
        self._origin = uuid.uuid4().hex
        self._table = ConnectionTable()
        self._outbox: deque[tuple[str, bytes]] = deque()
        self._outbox_ready = asyncio.Event()  # the outbox got an entry
        self._outbox_idle = asyncio.Event()  # the outbox is empty and nothing is in flight
        self._outbox_idle.set()
        self._dropping = False  # the outbox is full and drops its oldest entries
        self._wanted_changed = asyncio.Event()  # a user got their first / lost their last connection
        self._confirmed: set[str] = set()  # channels Redis confirmed on the current connection
        self._progress = asyncio.Event()  # _confirmed or the wanted channels changed
        self._listener_failing = False  # the last pub/sub connection failed; none confirmed since
        self._tasks: list[asyncio.Task[None]] = []

    # -- ConnectionHub ---------------------------------------------------------------------------

    def attach(self, subscriber: Subscriber) -> None:
        if self._table.attach(subscriber):
            self._wanted_changed.set()
            self._progress.set()

    def detach(self, subscriber: Subscriber) -> None:
        if self._table.detach(subscriber):
            self._wanted_changed.set()
            self._progress.set()

    # -- Notifier --------------------------------------------------------------------------------

    def publish(self, user_id: int, event: Event, *, skip_connection: str | None = None) -> None:
        self._table.deliver(user_id, event, skip_connection)
        try:
            payload = encode(Envelope(event=event, origin=self._origin, skip_connection=skip_connection))
        except Exception:  # a bug, not an outage: the local connections got it, the others cannot
            log.exception("fan-out: cannot encode %r", event)
            return
        if len(self._outbox) >= self._max_backlog:
            self._outbox.popleft()
            if not self._dropping:
                log.warning("fan-out: %d events queued for Redis; dropping the oldest", self._max_backlog)
                self._dropping = True
        self._outbox.append((self._channel(user_id), payload))
        self._outbox_idle.clear()
        self._outbox_ready.set()

    # -- lifecycle ---------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start listening and publishing (idempotent). Returns at once, even if Redis is down."""
        if self._tasks:
            return
        self._tasks = [
            asyncio.create_task(self._listen_forever(), name="fanout-listener"),
            asyncio.create_task(self._publish_forever(), name="fanout-publisher"),
        ]

    async def stop(self, *, drain_s: float = 1.0) -> None:
        """Give queued events at most ``drain_s`` to reach Redis, then end both tasks (idempotent)."""
        if not self._tasks:
            return
        try:
            await asyncio.wait_for(self._outbox_idle.wait(), drain_s)
        except TimeoutError:
            log.warning("fan-out: stopping with %d events not published", len(self._outbox))
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def synced(self) -> None:
        """Wait until Redis has confirmed the channel of every user attached here.

        Returns at once while the pub/sub connection is failing (Redis down: nothing to wait for;
        the re-push from the store covers what pub/sub misses). A hung Redis is noticed only by
        the PING, so bound the wait with :func:`asyncio.wait_for`. A connection lost after the
        confirmation is noticed only when it fails, so this is a barrier for "attached, now
        listening", not a health check.
        """
        while not self._listener_failing and not self._wanted() <= self._confirmed:
            self._progress.clear()
            await self._progress.wait()

    # -- publisher -------------------------------------------------------------------------------

    async def _publish_forever(self) -> None:
        failing = False
        while True:
            while not self._outbox:
                self._dropping = False
                self._outbox_idle.set()
                self._outbox_ready.clear()
                await self._outbox_ready.wait()
            batch = [self._outbox.popleft() for _ in range(min(len(self._outbox), self._batch_size))]
            try:
                async with asyncio.timeout(self._timeout_s):
                    await self._publish_batch(batch)
            except Exception as exc:  # outage, killed connection, no answer: drop and back off
                REDIS_ERRORS.count += 1
                if not failing:
                    log.warning("fan-out: PUBLISH failed (%s); dropped %d events, retrying", _describe(exc), len(batch))
                else:
                    log.debug("fan-out: PUBLISH still failing (%s); dropped %d events", _describe(exc), len(batch))
                failing = True
                await asyncio.sleep(self._reconnect_delay_s)
            else:
                if failing:
                    log.info("fan-out: PUBLISH works again")
                failing = False

    async def _publish_batch(self, batch: list[tuple[str, bytes]]) -> None:
        if len(batch) == 1:
            await self._redis.publish(*batch[0])
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            for channel, payload in batch:
                _ = pipe.publish(channel, payload)  # queues: a pipeline command returns the pipeline
            await pipe.execute()

    # -- listener --------------------------------------------------------------------------------

    async def _listen_forever(self) -> None:
        while True:
            while not self._wanted():
                self._wanted_changed.clear()
                await self._wanted_changed.wait()
            pubsub = self._redis.pubsub()
            try:
                await self._listen(pubsub)
            except Exception as exc:  # whatever broke, start over on a fresh connection
                REDIS_ERRORS.count += 1
                if not self._listener_failing:
                    log.warning(
                        "fan-out: pub/sub connection lost (%s); re-subscribing in %.2fs",
                        _describe(exc),
                        self._reconnect_delay_s,
                    )
                else:
                    log.debug("fan-out: pub/sub still unavailable (%s)", _describe(exc))
                self._listener_failing = True
            finally:
                self._confirmed.clear()
                self._progress.set()
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
            if self._listener_failing:
                await asyncio.sleep(self._reconnect_delay_s)

    async def _listen(self, pubsub: PubSub) -> None:
        """Keep ``pubsub`` subscribed to the wanted channels and deliver what arrives. Returns when
        no channel is wanted any more; raises when the connection fails or stalls."""
        loop = asyncio.get_running_loop()
        subscribed: set[str] = set()
        read: asyncio.Task[Any] | None = None
        wake: asyncio.Task[Any] | None = None
        last_heard = loop.time()
        ping_sent: float | None = None
        try:
            while True:
                if not subscribed or self._wanted_changed.is_set():
                    self._wanted_changed.clear()
                    wanted = self._wanted()
                    if not wanted:
                        return
                    if added := wanted - subscribed:
                        await pubsub.subscribe(*sorted(added))
                        subscribed |= added
                    if removed := subscribed - wanted:
                        await pubsub.unsubscribe(*sorted(removed))
                        subscribed -= removed
                now = loop.time()
                if ping_sent is not None and now - ping_sent >= self._timeout_s:
                    raise ListenerStalledError(f"no answer to PING within {self._timeout_s}s")
                if ping_sent is None and now - last_heard >= self._timeout_s:
                    await pubsub.ping()
                    ping_sent = now
                deadline = (last_heard if ping_sent is None else ping_sent) + self._timeout_s
                if read is None:
                    read = asyncio.create_task(pubsub.get_message(timeout=None))
                if wake is None or wake.done():
                    wake = asyncio.create_task(self._wanted_changed.wait())
                await asyncio.wait((read, wake), timeout=deadline - now, return_when=asyncio.FIRST_COMPLETED)
                if read.done():
                    message, read = read.result(), None
                    last_heard, ping_sent = loop.time(), None
                    if message is not None:
                        self._on_message(message)
                    # Under load many messages arrive together: take the ones already received
                    # without a task and a wait each (bounded, so re-subscribing gets its turn).
                    for _ in range(DRAIN_AT_ONCE):
                        message = await pubsub.get_message(timeout=0.0)
                        if message is None:
                            break
                        self._on_message(message)
        finally:
            pending = [task for task in (read, wake) if task is not None and not task.done()]
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)

    def _on_message(self, message: dict[str, Any]) -> None:
        try:
            kind = text(message["type"])
            if kind == "subscribe":
                self._confirmed.add(text(message["channel"]))
                self._progress.set()
                if self._listener_failing:
                    log.info("fan-out: pub/sub connection re-established")
                    self._listener_failing = False
            elif kind == "unsubscribe":
                self._confirmed.discard(text(message["channel"]))
                self._progress.set()
            elif kind == "message":
                self._on_payload(text(message["channel"]), message["data"])
        except Exception as exc:  # never let one message end the listener; never log its data (a message's body)
            log.error("fan-out: cannot handle a pub/sub message (%s): %s", _shape(message), type(exc).__name__)

    def _on_payload(self, channel: str, data: bytes | str) -> None:
        try:
            envelope = decode(data)
            user_id = int(channel.removeprefix(self._channel_prefix))
        except (PayloadError, ValueError) as exc:
            log.warning("fan-out: skipping a bad payload on %s: %s", channel, exc)
            return
        if envelope.origin != self._origin:  # our own events went to our connections already
            event = envelope.event
            if self._observe_lag is not None and isinstance(event, MessageReceived):
                self._observe_lag(max(0.0, (datetime.now(UTC) - event.message.created_at).total_seconds()))
            self._table.deliver(user_id, event, envelope.skip_connection)

    # -- helpers -----------------------------------------------------------------------------------

    def _channel(self, user_id: int) -> str:
        return f"{self._channel_prefix}{user_id}"

    def _wanted(self) -> set[str]:
        return {self._channel(user_id) for user_id in self._table.users()}


def _shape(message: dict[str, Any]) -> str:
    """A pub/sub message's type and size, for the log: not its data."""
    data = message.get("data")
    size = len(data) if isinstance(data, bytes | str) else 0
    return f"{message.get('type')!r}, {size} bytes"


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
