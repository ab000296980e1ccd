"""One authenticated WebSocket: reading and dispatching frames, a bounded outbound queue written
by its own task, in-flight tracking for re-pushes, offline batches, token expiry and re-auth."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from litestar import WebSocket

from application.accounts import Authenticate
from application.common import Principal
from application.events import Event, LoginsRevoked, MessageReceived, Typing
from application.messaging import (
    AcknowledgeDelivery,
    Batch,
    MarkRead,
    PendingFor,
    Read,
    Send,
    SendMessage,
    StillPending,
)
from application.ports import Clock, ConnectionHub
from application.presence import Connect, Disconnect, VisibleOnline
from application.social import RelayTyping
from application.users import SearchQuery, SearchUsers
from domain.delivery import InFlight
from domain.errors import (
    AuthenticationError,
    BusyError,
    DomainError,
    ForbiddenError,
    InvalidInputError,
    NotFoundError,
    RateLimitedError,
)
from domain.limits import ErrorWindow, RefusalStreak, TokenBucket, quarter_of
from domain.messages import Message
from entrypoints.metrics import Metrics
from entrypoints.settings import Settings
from entrypoints.wire import UserPublic, WireMessage, iso_ms
from entrypoints.ws import protocol as p

log = logging.getLogger("p2p_chat.ws")

# A pipelined frame's queued write: a future of what it wrote once committed, or the error that
# refused it before anything was queued.
Written = asyncio.Future[Any] | Exception

# WebSocket close codes (contract §3.4).
CLOSE_GOING_AWAY = 1001
CLOSE_POLICY = 1008
CLOSE_INTERNAL = 1011
CLOSE_RESTART = 1012
CLOSE_SLOW_CONSUMER = 4008
CLOSE_UNAUTHENTICATED = 4401
CLOSE_REVOKED = 4403
CLOSE_AUTH_TIMEOUT = 4408
CLOSE_RATE_LIMITED = 4429
CLOSE_TOO_MANY_CONNECTIONS = 4430

SYNC_TIMEOUT_S = 2.0
# sendMessage and ackMessages frames of one connection handled concurrently (their writes share
# transactions); reading stops while this many wait, and any other frame waits until they are
# answered.
MAX_PIPELINED_SENDS = 16
SEND_DRAIN_TIMEOUT_S = 5.0  # within uvicorn's graceful-shutdown timeout (10 s)
# Outbound frame kinds: typing is ephemeral (dropped first), messages are measured.
OTHER, EPHEMERAL, MESSAGE = 0, 1, 2

_ERROR_CODES: list[tuple[type[DomainError], str]] = [
    (InvalidInputError, "bad_request"),
    (NotFoundError, "not_found"),
    (ForbiddenError, "forbidden"),
    (RateLimitedError, "rate_limited"),
    (BusyError, "internal"),
    (DomainError, "bad_request"),
]


@dataclass(frozen=True, slots=True, kw_only=True)
class Services:
    """What a connection needs: the use cases, the hub, the clocks and the settings."""

    settings: Settings
    clock: Clock
    monotonic: Callable[[], float]  # seconds for the rate and error limits
    hub: ConnectionHub
    authenticate: Authenticate
    send_message: SendMessage
    acknowledge: AcknowledgeDelivery
    mark_read: MarkRead
    pending_for: PendingFor
    still_pending: StillPending
    search_users: SearchUsers
    connect: Connect
    disconnect: Disconnect
    visible_online: VisibleOnline
    relay_typing: RelayTyping
    metrics: Metrics
    repush_from_store: bool = False


class Connection:
    """A live, authenticated connection. Implements :class:`application.ports.Subscriber`."""

    def __init__(self, socket: WebSocket[Any, Any, Any], services: Services, principal: Principal, connection_id: str):
        self._socket = socket
        self._loop = asyncio.get_running_loop()  # remembered: asking for it costs a getpid() (3.11)
        self._services = services
        self._principal = principal
        self._connection_id = connection_id
        settings = services.settings
        self.inflight = InFlight(redelivery=timedelta(seconds=settings.redelivery_s))
        self._unacked: dict[str, Message] = {}  # what ``inflight`` tracks, to re-push without a read
        self._connected_at = services.clock.now()
        # (text, kind, message timestamp or None). Lists, not deques: an empty deque costs 624
        # bytes, an empty list 56, and these stay short (bounded by max_queued / 16).
        self._outbox: list[tuple[str, int, Any]] = []
        self._writer: asyncio.Task[None] | None = None
        self._prefetch: asyncio.Task[tuple[Batch, str]] | None = None  # the next offline batch
        self._settled_meanwhile: set[str] | None = None  # acknowledged here while it is read
        self._task: asyncio.Task[Any] | None = None  # the task running ``run`` (it also reads)
        # Pipelined sendMessage / ackMessages frames, oldest first: each with its request and its
        # queued write (or the error that refused it), answered in turn by the ``_answerer`` task.
        self._pipeline: list[tuple[p.SendMessage | p.AckMessages, Send | None, Written]] = []
        self._answerer: asyncio.Task[None] | None = None
        self._room: asyncio.Future[None] | None = None  # the reader waiting for a free slot
        self._receiving = False
        self._close: tuple[int, str] | None = None
        self._started = False
        self._held: list[tuple[str, int, Any]] = []  # published before ``ready`` + ``offlineMessages``
        self._messages = TokenBucket(rate=settings.rate_msg_per_s, burst=settings.rate_msg_burst)
        self._typing = quarter_of(self._messages)
        self._search = quarter_of(self._messages)
        self._refusals = RefusalStreak(seconds=settings.rate_close_after_s)
        self._errors = ErrorWindow()
        self._expiry: asyncio.TimerHandle | None = None
        self._max_frame_bytes = settings.max_frame_bytes
        self._max_queued = settings.max_queued_frames  # frames queued before it is a slow consumer

    # -- Subscriber ---------------------------------------------------------------------------

    @property
    def connection_id(self) -> str:
        return self._connection_id

    @property
    def user_id(self) -> int:
        return self._principal.user_id

    @property
    def sid(self) -> str:
        return self._principal.sid

    def deliver(self, event: Event) -> None:
        if isinstance(event, LoginsRevoked):
            if self.sid in event.sids:
                self.close_soon(CLOSE_REVOKED, "login revoked")
            return
        stamp = None
        kind = EPHEMERAL if isinstance(event, Typing) else OTHER
        if isinstance(event, MessageReceived) and event.message.recipient_id == self.user_id:
            self._pushed([event.message])
            kind, stamp = MESSAGE, event.message.created_at
        frame = p.frame_of(event)
        if frame is not None:
            self._enqueue(p.encode(frame), kind, stamp)

    # -- lifecycle ----------------------------------------------------------------------------

    def close_soon(self, code: int, reason: str) -> None:
        """Ask the connection to close with ``code`` (the first request wins). A reader waiting for
        the next frame is interrupted; a frame being handled finishes first."""
        if self._close is not None:
            return
        self._close = (code, reason)
        if self._receiving and self._task is not None:
            self._task.cancel()

    async def run(self) -> None:
        """Send ``ready`` and the first offline batch, then read frames until the socket ends or a
        close is requested; always detaches from the hub. Reading happens in the caller's task and
        a writer task exists only while frames wait to be written, so an idle connection costs
        one task."""
        hub = self._services.hub
        hub.attach(self)
        self._services.metrics.connections.inc()
        self._schedule_expiry()
        self._task = asyncio.current_task()
        try:
            try:  # listening before reading pending messages, so none falls in between
                await asyncio.wait_for(hub.synced(), timeout=SYNC_TIMEOUT_S)
            except TimeoutError:
                log.warning("fan-out not confirmed for connection %s; re-pushes will cover it", self._connection_id)
            await self._services.connect(self.user_id, self._connection_id)
            self._send_now(p.encode(self._ready()))
            await self._send_batch()
            self._started = True
            for held in self._held:
                self._enqueue(*held)
            self._held.clear()
            self._wake_writer()
            await self._read_loop()
        except asyncio.CancelledError:
            if self._close is None or self._task is None:
                raise  # cancelled from outside (server shutdown): let it propagate
            self._task.uncancel()
        except Exception:
            log.exception("connection %s failed", self._connection_id)
            self.close_soon(CLOSE_INTERNAL, "unexpected server error")
        finally:
            self._task = None
            try:
                if self._answerer is not None:  # let frames already read be answered (or fail) first
                    await asyncio.wait([self._answerer], timeout=SEND_DRAIN_TIMEOUT_S)
            finally:  # also when shutdown cancels that wait: the connection must still go away
                hub.detach(self)
                self._services.metrics.connections.dec()
                if self._writer is not None:
                    self._writer.cancel()
                if self._answerer is not None:
                    self._answerer.cancel()
                if self._prefetch is not None:
                    self._prefetch.cancel()
                if self._expiry is not None:
                    self._expiry.cancel()
                await self._services.disconnect(self.user_id, self._connection_id)
        if self._close is not None:
            code, reason = self._close
            await close_quietly(self._socket, code, reason)

    def _schedule_expiry(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        if self._principal.expires_at is None:
            return
        delay = (self._principal.expires_at - self._services.clock.now()).total_seconds()
        self._expiry = self._loop.call_later(max(0.0, delay), self.close_soon, CLOSE_UNAUTHENTICATED, "token expired")

    def _ready(self, ref: str | None = None) -> p.Ready:
        return p.Ready(
            ref=ref,
            user_id=self.user_id,
            connection_id=self._connection_id,
            server_time=iso_ms(self._services.clock.now()),
            heartbeat_s=self._services.settings.heartbeat_s,
        )

    # -- outbound -----------------------------------------------------------------------------

    def _send_now(self, text: str) -> None:
        """Queue a frame even before start-up completes (``ready``, ``offlineMessages``)."""
        self._outbox.append((text, OTHER, None))
        self._wake_writer()

    def _enqueue(self, text: str, kind: int = OTHER, stamp: Any = None) -> None:
        """Queue a frame; over the bound drop ephemeral frames first, then close 4008."""
        if not self._started:
            self._held.append((text, kind, stamp))
            return
        if len(self._outbox) >= self._max_queued:
            metrics = self._services.metrics
            if kind == EPHEMERAL:
                metrics.dropped_ephemeral.inc()
                return
            kept = [item for item in self._outbox if item[1] != EPHEMERAL]
            metrics.dropped_ephemeral.inc(len(self._outbox) - len(kept))
            self._outbox = kept
            if len(self._outbox) >= self._max_queued:
                if self._close is None:
                    metrics.slow_consumer_closes.inc()
                self.close_soon(CLOSE_SLOW_CONSUMER, "slow consumer: outbound queue full")
                return
        self._outbox.append((text, kind, stamp))
        self._wake_writer()

    def reply(self, frame: p.ServerFrame) -> None:
        self._enqueue(p.encode(frame))

    def error(self, ref: str | None, code: str, message: str) -> None:
        """Answer with an ``error`` frame; over 20 (rate limits aside) in 10 s closes 1008."""
        self._services.metrics.rejected_frames.labels(code).inc()
        self.reply(p.ErrorFrame(ref=ref, code=code, message=message))
        if code != "rate_limited" and self._errors.record(self._services.monotonic()):
            self.close_soon(CLOSE_POLICY, "too many errors")

    def _wake_writer(self) -> None:
        if self._started and self._outbox and (self._writer is None or self._writer.done()):
            self._writer = self._loop.create_task(self._write_loop())

    async def _write_loop(self) -> None:
        """Write queued frames in order, then end (the next queued frame starts a new writer)."""
        metrics, clock = self._services.metrics, self._services.clock
        try:
            while self._outbox:
                text, kind, stamp = self._outbox.pop(0)
                await self._socket.send_text(text)
                if kind == MESSAGE:
                    metrics.messages_out.inc()
                    metrics.delivery_latency.observe(max(0.0, (clock.now() - stamp).total_seconds()))
        except Exception:  # the peer is gone (the reader sees the disconnect) or the socket broke
            log.debug("writer of connection %s stopped", self._connection_id, exc_info=True)
            self.close_soon(CLOSE_INTERNAL, "could not write to the socket")

    # -- offline batches and re-pushes ---------------------------------------------------------

    def _pushed(self, messages: list[Message]) -> None:
        now = self._services.clock.now()
        self.inflight.record_push([m.id for m in messages], now)
        for m in messages:
            self._unacked[m.id] = m

    def _settled(self, ids: Iterable[str]) -> None:
        ids = list(ids)
        if self._settled_meanwhile is not None:  # a batch is being read ahead: leave these out of it
            self._settled_meanwhile.update(ids)
        self.inflight.settle(ids)
        for message_id in ids:
            self._unacked.pop(message_id, None)

    async def _send_batch(self) -> None:
        """Send the next offline batch. While the client works through one batch, the one after
        it is read and encoded (the oldest pending messages but those of the current batch), so
        the acknowledgement of the last id is answered at once. What this connection acknowledged
        meanwhile is left out of it; a message another device acknowledged meanwhile may come
        again, which clients dedupe by id (contract §3.1)."""
        ready: tuple[Batch, str] | None = None
        settled, self._settled_meanwhile = self._settled_meanwhile, None
        if (prefetch := self._prefetch) is not None:
            self._prefetch = None
            try:
                ready = await prefetch
            except Exception:  # read it again below
                log.warning("prefetching the next offline batch failed", exc_info=True)
        if ready is not None and settled and any(m.id in settled for m in ready[0].messages):
            kept = [m for m in ready[0].messages if m.id not in settled]
            ready = self._encoded(Batch(messages=kept, more=ready[0].more))
        if ready is None:
            ready = await self._fetch_batch(())
        batch, text = ready
        self.inflight.start_batch([m.id for m in batch.messages], batch.more, self._services.clock.now())
        self._pushed(batch.messages)
        self._send_now(text)
        if batch.more and batch.messages:
            self._settled_meanwhile = set()
            self._prefetch = self._loop.create_task(self._fetch_batch([m.id for m in batch.messages]))

    async def _fetch_batch(self, excluding: list[str] | tuple[()]) -> tuple[Batch, str]:
        return self._encoded(await self._services.pending_for(self.user_id, excluding=excluding))

    @staticmethod
    def _encoded(batch: Batch) -> tuple[Batch, str]:
        wire = [WireMessage.of(m) for m in batch.messages]
        return batch, p.encode(p.OfflineMessages(messages=wire, more=batch.more))

    def _push(self, message: Message) -> None:
        self._enqueue(p.encode(p.MessageReceivedFrame.of(message)), MESSAGE, message.created_at)

    def may_redeliver(self) -> bool:
        """False when :meth:`redeliver` has nothing to do (nothing pushed and unacknowledged, no
        batch being drained, no re-push from the store): the sweep skips idle connections."""
        return bool(self.inflight.pushed) or self.inflight.more_after_batch or self._services.repush_from_store

    async def redeliver(self) -> None:
        """Re-push what this connection was given but has not acknowledged within the interval;
        forget what another device acknowledged; start the next batch when one is due. With
        ``repush_from_store`` (several processes) also push pending messages that arrived while
        connected but never reached this connection (pub/sub is at-most-once)."""
        now = self._services.clock.now()
        due = self.inflight.due_for_repush(now)
        if due:
            still = await self._services.still_pending(self.user_id, due)
            self._settled(set(due) - still)
            again = [self._unacked[i] for i in due if i in still and i in self._unacked]
            self._pushed(again)
            for message in again:  # plain messageReceived frames; clients dedupe by id
                self._push(message)
        if self._services.repush_from_store:
            await self._catch_up(now)
        if self.inflight.next_batch_due():
            await self._send_batch()

    async def _catch_up(self, now: datetime) -> None:
        cutoff = now - self.inflight.redelivery
        batch = await self._services.pending_for(self.user_id)
        missed = [
            m
            for m in batch.messages
            if m.id not in self.inflight.pushed and self._connected_at <= m.created_at <= cutoff
        ]
        self._pushed(missed)
        for message in missed:
            self._push(message)

    # -- inbound ------------------------------------------------------------------------------

    async def _read_loop(self) -> None:
        while self._close is None:
            self._receiving = True
            try:
                message = await self._socket.receive()
            finally:
                self._receiving = False
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            if not isinstance(text, str):
                await self._pipeline_answered()
                self.error(None, "bad_request", "binary frames are not supported; send JSON text frames")
                continue
            if len(text) * 4 > self._max_frame_bytes and len(text.encode()) > self._max_frame_bytes:
                await self._pipeline_answered()
                self.error(None, "too_large", f"frame larger than {self._max_frame_bytes} bytes")
                continue
            await self.handle(text)

    async def handle(self, text: str) -> None:
        try:
            frame = p.decode_client(text)
        except p.FrameError as exc:
            await self._pipeline_answered()
            self.error(exc.ref, exc.code, exc.message)
            return
        refused = self._over_rate(frame)
        if refused is not None:
            await self._pipeline_answered()
            self._refuse(frame, *refused)
            return
        if isinstance(frame, p.SendMessage | p.AckMessages):
            # Pipelined: the next frames are read while this one waits for its transaction. They
            # are queued for writing in the order read, so seqs keep that order, and answered in
            # that order, so messageAcks and errors are too.
            while len(self._pipeline) >= MAX_PIPELINED_SENDS:
                self._room = self._loop.create_future()
                self._receiving = True  # a requested close interrupts this wait, as a read's
                try:
                    await self._room
                finally:
                    self._receiving = False
            request, written = self._begin(frame)
            self._pipeline.append((frame, request, written))
            if self._answerer is None or self._answerer.done():
                self._answerer = self._loop.create_task(self._answer_pipeline())
            return
        await self._pipeline_answered()  # any other frame: once the frames read before it are answered
        await self._answer(frame)

    async def _pipeline_answered(self) -> None:
        if self._answerer is not None and not self._answerer.done():
            await asyncio.wait([self._answerer])

    def _begin(self, frame: p.SendMessage | p.AckMessages) -> tuple[Send | None, Written]:
        """Validate the frame and queue its write; what the answerer needs for it (an error
        raised here is answered in its turn)."""
        s = self._services
        try:
            if isinstance(frame, p.AckMessages):
                return None, s.acknowledge.begin(self.user_id, frame.ids)
            send = Send(
                sender_id=self.user_id,
                to=frame.to,
                body=frame.message,
                client_msg_id=frame.client_msg_id,
                connection_id=self._connection_id,
            )
            return send, s.send_message.begin(send)
        except Exception as exc:
            return None, exc

    async def _answer_pipeline(self) -> None:
        """Answer the pipelined frames in order, each once its write committed; ends when none is
        left (the next pipelined frame starts another). The writes themselves are never
        cancelled from here: once queued, a write commits and is published (Step.committed) even
        if this connection goes away before its answer."""
        try:
            while self._pipeline:
                frame, request, written = self._pipeline[0]
                try:
                    await self._finish(frame, request, written)
                except asyncio.CancelledError:
                    dropped = isinstance(written, asyncio.Future) and written.cancelled()
                    current = asyncio.current_task()
                    if not dropped or (current is not None and current.cancelling()):
                        raise  # this task is cancelled: the connection is going away
                    # The write was dropped before it ran (the server is shutting down).
                    self.error(frame.ref, "internal", "the server is shutting down; send it again")
                except Exception as exc:
                    self._failed(frame, exc)
                del self._pipeline[0]
                self._make_room()
        except asyncio.CancelledError:
            for _, _, written in self._pipeline:  # nobody answers these any more
                if isinstance(written, asyncio.Future):
                    written.add_done_callback(_unanswered)
            self._pipeline.clear()
            raise
        finally:
            self._make_room()

    def _make_room(self) -> None:
        if self._room is not None and not self._room.done():
            self._room.set_result(None)

    async def _finish(self, frame: p.SendMessage | p.AckMessages, request: Send | None, written: Written) -> None:
        if isinstance(written, Exception):
            raise written
        s = self._services
        if isinstance(frame, p.AckMessages):
            s.acknowledge.finish(await written)
            self._settled(frame.ids)
            if self.inflight.next_batch_due():
                await self._send_batch()
            return
        if request is None:  # pragma: no cover - a send always has its request
            raise RuntimeError("a pipelined send without its request")
        result = await s.send_message.finish(request, await written)
        m = result.message
        if not result.duplicate:
            s.metrics.messages_in.inc()
        self.reply(
            p.MessageAck(
                ref=frame.ref,
                client_msg_id=m.client_msg_id,
                id=m.id,
                seq=m.seq,
                to=m.recipient_id,
                timestamp=iso_ms(m.created_at),
            )
        )

    async def _answer(self, frame: p.ClientMessage) -> None:
        """Handle a frame that is not pipelined and reply."""
        try:
            await self._dispatch(frame)
        except AuthenticationError:
            self.close_soon(CLOSE_UNAUTHENTICATED, "authentication failed")
        except Exception as exc:
            self._failed(frame, exc)

    def _failed(self, frame: p.ClientMessage, exc: Exception) -> None:
        """Answer a frame whose handling raised: its domain error's code, else ``internal``."""
        if isinstance(exc, DomainError):
            self.error(frame.ref, next(code for cls, code in _ERROR_CODES if isinstance(exc, cls)), exc.message)
            return
        log.error("frame %s failed on connection %s", type(frame).__name__, self._connection_id, exc_info=exc)
        self.error(frame.ref, "internal", "unexpected server error")

    def _over_rate(self, frame: p.ClientMessage) -> tuple[str, float] | None:
        """Spend a token of the frame's bucket; None when there was one, else the bucket's name and
        when the frame was refused (for :meth:`_refuse`)."""
        match frame:
            case p.SendMessage():
                bucket, name = self._messages, "message"
            case p.Typing():
                bucket, name = self._typing, "typing"
            case p.SearchUsers():
                bucket, name = self._search, "search"
            case _:
                return None
        now = self._services.monotonic()
        return None if bucket.take(now) else (name, now)

    def _refuse(self, frame: p.ClientMessage, name: str, at: float) -> None:
        """Answer ``rate_limited``; close 4429 after refusals in every second of the configured streak."""
        self._services.metrics.rate_limited.labels(name).inc()
        self.error(frame.ref, "rate_limited", f"too many {name} frames; slow down")
        if self._refusals.refused(at):
            self.close_soon(CLOSE_RATE_LIMITED, "rate limited for too long")

    async def _dispatch(self, frame: p.ClientMessage) -> None:
        s = self._services
        match frame:
            case p.MarkRead(peer_id=peer_id, up_to_seq=up_to_seq):
                await s.mark_read(
                    Read(
                        reader_id=self.user_id, peer_id=peer_id, up_to_seq=up_to_seq, connection_id=self._connection_id
                    )
                )
            case p.SearchUsers(query=query, limit=limit, ref=ref):
                cards = await s.search_users(SearchQuery(viewer=self._principal, query=query, limit=limit))
                self.reply(p.SearchResults(ref=ref, query=query, users=[UserPublic.of(c) for c in cards]))
            case p.Ping(ref=ref):
                self.reply(p.Pong(ref=ref))
            case p.Auth(token=token, ref=ref):
                principal = await s.authenticate(token)
                if principal.user_id != self.user_id:
                    self.close_soon(CLOSE_UNAUTHENTICATED, "a token of another user")
                    return
                self._principal = principal
                self._schedule_expiry()
                self.reply(self._ready(ref))
            case p.Typing(to=to, is_typing=is_typing):
                await s.relay_typing(self.user_id, to, is_typing)
            case p.GetOnlineUsers(user_ids=user_ids, ref=ref):
                online = await s.visible_online(self.user_id, user_ids)
                self.reply(p.OnlineUsers(ref=ref, user_ids=online))


def _unanswered(written: asyncio.Future[Any]) -> None:
    """Mark a write's outcome as seen when its connection went away before answering it."""
    if not written.cancelled():
        _ = written.exception()


async def close_quietly(socket: WebSocket[Any, Any, Any], code: int, reason: str) -> None:
    try:
        await socket.close(code=code, reason=reason)
    except Exception:  # the peer may already be gone; closing is best effort
        log.debug("close %s on a finished socket", code)
