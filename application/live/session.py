"""One live connection's rules as a synchronous state machine: no I/O, no event loop, no clock reads
for timing. Modelled on python-websockets' sans-I/O ``Protocol``: the driver feeds what happened
(a frame, a write's outcome, a batch read, an event, the time) and then performs what the session
queued — :attr:`LiveSession.actions` (see :mod:`application.live.actions`) and the outbox it takes
frame by frame with :meth:`LiveSession.next_frame`.

Time: every input that needs it takes ``now_ms``, milliseconds of the driver's monotonic clock
(the rate limits, the error window, the token expiry and the re-push run on it, and
:class:`WakeAt` is in it). Wall-clock datetimes come from the injected :class:`Clock` only for
what is compared with timestamps: the token's expiry and the store catch-up's window.

The rules (contract §3):

* Reply order. ``sendMessage`` and ``ackMessages`` are pipelined: up to ``max_pipelined`` writes
  run at once (sharing transactions) and are answered in the order read. A frame that finds the
  pipeline full waits (no further frame is read); any other frame, and the error for a bad,
  binary, oversized or rate-limited frame, waits until every pipelined frame before it is
  answered. A write dropped at shutdown is answered ``internal`` (send it again).
* Outbox. Frames published before ``ready`` and the first ``offlineMessages`` went out are held
  until then. Beyond ``max_queued_frames`` queued, typing frames are dropped first (the new one,
  or every queued one for another frame); if that frees nothing the connection closes 4008.
* Limits. Per-frame buckets (messages; typing and search a quarter each): a refused frame is
  answered ``rate_limited``, and refusals that have gone on for ``rate_close_after_s`` seconds
  without a second's pause close 4429 (:class:`~domain.limits.RefusalStreak`). More than 20
  errors within 10 s close 1008 — those the client caused: ``rate_limited`` and ``internal``
  (the server or its database failed; a database outage must not close every sending socket)
  aside.
* Auth. A re-auth with a token of another user closes 4401, so does the token's expiry and any
  frame whose use case says the caller is unauthenticated; a revocation of our login
  (:class:`LoginsRevoked`, broadcast by the logout, or delivered by the process's login sweep that
  reads the store every ``CHAT_SESSION_CHECK_S``: :mod:`application.live.revocation`) closes 4403.
  The session keeps no login-check timer of its own. The first close request wins.
* Delivery. Everything pushed is in flight until acknowledged (here or, as the store tells at the
  re-push, by another device) and pushed again when ``redelivery_s`` have passed since its push:
  the session asks to be woken (one :class:`WakeAt`, shared with the token's expiry) when the
  oldest push comes due, and a re-push round then pushes again everything due by then (rounds
  start at least a tenth of ``redelivery_s`` apart, so a push may wait that much more). Offline
  messages come in batches; the batch after the current one is read ahead, so the
  acknowledgement of its last id sends the next one at once, without what this connection
  acknowledged meanwhile. With ``repush_from_store`` (several processes) the process's sweep
  (:meth:`LiveSession.catch_up`) also pushes pending messages that arrived while connected but
  never came through pub/sub.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, NamedTuple

from application.errors import WsErrorCode, wire_error
from application.events import LoginsRevoked, MessageReceived, Typing
from application.live.actions import (
    Acked,
    Action,
    CatchUpCall,
    CloseCode,
    CloseRequest,
    ErrorReply,
    FrameCall,
    FrameKind,
    MarkReadCall,
    OnlineCall,
    OnlineNow,
    Outgoing,
    Pipelined,
    PipelinedAck,
    PipelinedSend,
    Pong,
    ReadBatch,
    Ready,
    Reauthenticate,
    SearchCall,
    StillPendingCall,
    TypingCall,
    UsersFound,
    WakeAt,
    WriteDroppedError,
)
from application.messaging import Acknowledge, Batch, PendingCheck, PendingQuery, Read, Send, SendResult
from application.presence import OnlineQuery
from application.social import TypingNotice
from application.users import SearchQuery
from domain.delivery import InFlight
from domain.errors import AuthenticationError, BusyError, DomainError
from domain.limits import ErrorWindow, RefusalStreak, TokenBucket, quarter_of

if TYPE_CHECKING:
    from collections.abc import Iterable

    from application.common import Principal
    from application.events import Event
    from application.live.actions import Encoder, Reply, SessionObserver
    from application.ports import Clock
    from domain.messages import Message
    from domain.users import UserCard

# Errors that do not count toward the 1008 flood: a limit answered, or the server's own failure.
NOT_THE_CLIENTS = frozenset({WsErrorCode.RATE_LIMITED, WsErrorCode.INTERNAL})
log = logging.getLogger("p2p_chat.ws")

OTHER, EPHEMERAL, MESSAGE = FrameKind.OTHER, FrameKind.EPHEMERAL, FrameKind.MESSAGE


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionLimits:
    """The settings a session obeys."""

    redelivery_s: float
    rate_msg_per_s: float
    rate_msg_burst: int
    rate_close_after_s: int
    max_queued_frames: int
    max_frame_bytes: int
    max_pipelined: int = 16
    repush_from_store: bool = False


class EncodedBatch(NamedTuple):
    """An offline batch and its encoded ``offlineMessages`` frame."""

    batch: Batch
    text: str


@dataclass(frozen=True, slots=True)
class _Refusal:
    """A frame over its rate limit, answered in its turn (a ``sendMessage``'s with its ``clientMsgId``)."""

    ref: str | None
    bucket: str
    at_ms: float
    client_msg_id: str | None = None


_PIPELINED = (PipelinedSend, PipelinedAck)

# What waits for its turn: a pipelined frame for a free slot, anything else for an empty pipeline.
_Turn = PipelinedSend | PipelinedAck | FrameCall | Pong | ErrorReply | _Refusal


class LiveSession:
    """The state of one authenticated connection. Inputs are methods; outputs are
    :attr:`actions` (drained by the driver in order), the outbox (:meth:`next_frame`) and
    :attr:`closing`. Implements the fan-out's view of a connection through the driver."""

    # Slotted: a connection's state stays small while it idles (scenario (b)).
    __slots__ = (
        "_ahead",
        "_ahead_ready",
        "_awaited",
        "_awaited_for",
        "_busy",
        "_clock",
        "_connected_at",
        "_encode",
        "_errors",
        "_expires_ms",
        "_held",
        "_leave_out",
        "_limits",
        "_messages",
        "_observer",
        "_outbox",
        "_pipeline",
        "_refusals",
        "_repush_due",
        "_repushing",
        "_search",
        "_settled_meanwhile",
        "_typing",
        "_unacked",
        "_waiting",
        "_wake",
        "actions",
        "closing",
        "connection_id",
        "inflight",
        "principal",
    )

    def __init__(
        self,
        *,
        principal: Principal,
        connection_id: str,
        limits: SessionLimits,
        clock: Clock,
        encode: Encoder,
        observer: SessionObserver,
    ) -> None:
        self.principal = principal
        self.connection_id = connection_id
        self.actions: list[Action] = []  # short: a list is smaller than an empty deque (docs/performance.md, item 7)
        self.closing: CloseRequest | None = None
        self.inflight = InFlight(redelivery_ms=limits.redelivery_s * 1000)
        self._limits = limits
        self._clock, self._encode, self._observer = clock, encode, observer
        self._unacked: dict[str, Message] = {}  # what ``inflight`` tracks, to re-push without a read
        self._connected_at = clock.now()
        # A list, not a deque: an empty deque costs more than a short list (scenario (b)), and
        # the outbox is short but for a slow consumer (at most max_queued_frames).
        self._outbox: list[Outgoing] = []
        self._held: list[Outgoing] | None = []  # None once ``ready`` and the first batch are queued
        self._pipeline: list[Pipelined] = []  # oldest first, until answered (at most max_pipelined)
        self._waiting: _Turn | None = None  # the frame waiting for its turn (no frame is read meanwhile)
        self._busy: FrameCall | None = None  # a frame's call running (no frame is read meanwhile)
        self._messages = TokenBucket(rate=limits.rate_msg_per_s, burst=limits.rate_msg_burst)
        self._typing = quarter_of(self._messages)
        self._search = quarter_of(self._messages)
        self._refusals = RefusalStreak(seconds=limits.rate_close_after_s)
        self._errors = ErrorWindow()
        self._expires_ms: float | None = None
        # One wake at a time (the driver keeps one timer): the earlier of the token's expiry and
        # the next re-push round. ``_repush_due`` is never later than the oldest push's due time
        # but for the spacing of rounds (None: nothing pushed since the last round); an early wake
        # just asks again.
        self._wake: float | None = None  # the WakeAt asked for and not come yet
        self._repush_due: float | None = None
        # Offline batches: the read of the batch after the current one, or that batch once read;
        # the read the next batch waits for (answers wait too) and the acknowledgement it answers.
        self._ahead: ReadBatch | None = None
        self._ahead_ready: EncodedBatch | None = None
        self._settled_meanwhile: set[str] | None = None  # acknowledged here while the next is read
        self._awaited: ReadBatch | None = None
        self._awaited_for: PipelinedAck | None = None
        self._leave_out: set[str] | None = None  # what the awaited read ahead must leave out
        self._repushing: float | None = None  # when the re-push round running started (one at a time)

    # -- what the driver reads ------------------------------------------------------------------

    @property
    def user_id(self) -> int:
        return self.principal.user_id

    @property
    def reading(self) -> bool:
        """Whether the driver may read the next frame."""
        return self._held is None and self.closing is None and self._waiting is None and self._busy is None

    @property
    def has_frames(self) -> bool:
        return self._held is None and bool(self._outbox)

    def next_frame(self) -> Outgoing | None:
        """The next frame to write (the driver writes them one after another), or None."""
        return self._outbox.pop(0) if self._held is None and self._outbox else None

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self, now_ms: float, ref: str | None = None) -> None:
        """The connection is attached and listening: queue ``ready`` (with the ``ref`` of the
        ``auth`` frame that authenticated the socket, if any), read the first batch."""
        self._outbox.append(Outgoing(self._encode(Ready(ref, self.user_id, self.connection_id)), OTHER, None))
        self._schedule_expiry(now_ms)
        self._read_now(None)

    def close(self, code: CloseCode, reason: str) -> None:
        """Ask to close with ``code``; the first request wins."""
        if self.closing is None:
            self.closing = CloseRequest(code, reason)
            self.actions.append(self.closing)

    def socket_failed(self) -> None:
        """Writing to the socket failed (the peer is gone or the socket broke)."""
        self.close(CloseCode.INTERNAL, "could not write to the socket")

    def time_passed(self, now_ms: float) -> None:
        """A :class:`WakeAt` came due (or any time): close 4401 once the token expired; start a
        re-push round once the oldest push is due; ask to be woken for what is still to come."""
        self._wake = None
        if self.closing is not None:
            return
        if self._expires_ms is not None and now_ms >= self._expires_ms:
            self._expires_ms = None
            self.close(CloseCode.UNAUTHENTICATED, "token expired")
            return
        if self._repush_due is not None and now_ms >= self._repush_due:
            self._repush_due = None  # the end of this round (or of the one running) asks again
            self._repush(now_ms)
        self._ask_wake()

    def _schedule_expiry(self, now_ms: float) -> None:
        expires_at = self.principal.expires_at
        if expires_at is None:
            self._expires_ms = None
        else:
            self._expires_ms = now_ms + max(0.0, (expires_at - self._clock.now()).total_seconds() * 1000)
        self._ask_wake()

    def _ask_wake(self) -> None:
        """Ask the driver for one wake at the earlier of the expiry and the next re-push (a new
        WakeAt replaces the one asked for before)."""
        at, repush = self._expires_ms, self._repush_due
        if repush is not None and (at is None or repush < at):
            at = repush
        if at is not None and at != self._wake and self.closing is None:
            self._wake = at
            self.actions.append(WakeAt(at))

    def _repush_by(self, at: float) -> None:
        """A re-push may come due at ``at``: make sure a wake comes by then."""
        if self._repush_due is None or at < self._repush_due:
            self._repush_due = at
            self._ask_wake()

    # -- frames read ------------------------------------------------------------------------------

    def send_message(self, ref: str | None, to: int, body: str, client_msg_id: str, now_ms: float) -> None:
        if not self._messages.take(now_ms / 1000):
            self._turn(_Refusal(ref, "message", now_ms, client_msg_id), now_ms)
            return
        send = Send(to=to, body=body, client_msg_id=client_msg_id, connection_id=self.connection_id)
        self._turn(PipelinedSend(ref, self.principal, send), now_ms)

    def ack_messages(self, ref: str | None, ids: list[str], now_ms: float) -> None:
        self._turn(PipelinedAck(ref, self.principal, Acknowledge(ids=ids)), now_ms)

    def mark_read(self, ref: str | None, peer_id: int, up_to_seq: int, now_ms: float) -> None:
        read = Read(peer_id=peer_id, up_to_seq=up_to_seq, connection_id=self.connection_id)
        self._turn(MarkReadCall(ref, read), now_ms)

    def typing(self, ref: str | None, to: int, is_typing: bool, now_ms: float) -> None:
        if self._typing.take(now_ms / 1000):
            self._turn(TypingCall(ref, TypingNotice(to=to, is_typing=is_typing)), now_ms)
        else:
            self._turn(_Refusal(ref, "typing", now_ms), now_ms)

    def search_users(self, ref: str | None, query: str, limit: int | None, now_ms: float) -> None:
        if self._search.take(now_ms / 1000):
            self._turn(SearchCall(ref, SearchQuery(query=query, limit=limit)), now_ms)
        else:
            self._turn(_Refusal(ref, "search", now_ms), now_ms)

    def get_online_users(self, ref: str | None, user_ids: list[int] | None, now_ms: float) -> None:
        self._turn(OnlineCall(ref, OnlineQuery(user_ids=user_ids)), now_ms)

    def ping(self, ref: str | None, now_ms: float) -> None:
        self._turn(Pong(ref), now_ms)

    def auth(self, ref: str | None, token: str, now_ms: float) -> None:
        self._turn(Reauthenticate(ref, token), now_ms)

    def bad_frame(
        self, ref: str | None, code: WsErrorCode, message: str, now_ms: float, client_msg_id: str | None = None
    ) -> None:
        """A frame that could not be decoded (answered in its turn); ``ref`` and ``client_msg_id``
        (of a ``sendMessage``) as far as they could be read."""
        self._turn(ErrorReply(ref, code, message, client_msg_id), now_ms)

    def binary_frame(self, now_ms: float) -> None:
        self.bad_frame(None, WsErrorCode.BAD_REQUEST, "binary frames are not supported; send JSON text frames", now_ms)

    def oversized_frame(self, ref: str | None, client_msg_id: str | None, now_ms: float) -> None:
        """A frame over ``max_frame_bytes``, with its ``ref`` and ``client_msg_id`` as far as readable."""
        message = f"frame larger than {self._limits.max_frame_bytes} bytes"
        self.bad_frame(ref, WsErrorCode.TOO_LARGE, message, now_ms, client_msg_id)

    def _turn(self, item: _Turn, now_ms: float) -> None:
        """Start ``item`` if its turn has come, else keep it waiting (and read nothing more)."""
        if isinstance(item, _PIPELINED):
            if len(self._pipeline) >= self._limits.max_pipelined:
                self._waiting = item
            else:  # queued for writing in the order read, so seqs keep that order
                self._pipeline.append(item)
                self.actions.append(item)
        elif self._pipeline:
            self._waiting = item
        elif isinstance(item, Pong):
            self._reply(item)
        elif isinstance(item, ErrorReply):
            self._error(item.ref, item.code, item.message, now_ms, item.client_msg_id)
        elif isinstance(item, _Refusal):
            self._refuse(item, now_ms)
        else:
            self._busy = item
            self.actions.append(item)

    def _next_turn(self, now_ms: float) -> None:
        item = self._waiting
        if item is not None and self.closing is None:  # a close ends the wait: the frame is dropped
            self._waiting = None
            self._turn(item, now_ms)

    def _refuse(self, refusal: _Refusal, now_ms: float) -> None:
        self._observer.rate_limited(refusal.bucket)
        message = f"too many {refusal.bucket} frames; slow down"
        self._error(refusal.ref, WsErrorCode.RATE_LIMITED, message, now_ms, refusal.client_msg_id)
        if self._refusals.refused(refusal.at_ms / 1000):
            self.close(CloseCode.RATE_LIMITED, "rate limited for too long")

    # -- pipelined writes -------------------------------------------------------------------------

    def write_committed(self, entry: Pipelined, result: SendResult | None, now_ms: float) -> None:
        """The write started for ``entry`` committed (``result``: a send's; None for an ack)."""
        entry.done, entry.outcome = True, result
        self._answer_ready(now_ms)

    def write_failed(self, entry: Pipelined, exc: Exception, now_ms: float) -> None:
        """``entry``'s write (or its ``begin``) raised ``exc``."""
        entry.done, entry.outcome = True, exc
        self._answer_ready(now_ms)

    def write_dropped(self, entry: Pipelined, now_ms: float) -> None:
        """``entry``'s write was dropped before it ran (the server is shutting down)."""
        self.write_failed(entry, WriteDroppedError(), now_ms)

    def _answer_ready(self, now_ms: float) -> None:
        """Answer the pipeline's head while its outcome is known and no batch must go first: a
        failure with its error, a send with ``messageAck``, an acknowledgement by settling its
        ids (and sending the next offline batch when it completed the current one)."""
        pipeline = self._pipeline
        while pipeline and pipeline[0].done and self._awaited is None:
            entry = pipeline.pop(0)
            outcome = entry.outcome
            if isinstance(outcome, Exception):
                self._answer_failed(entry, outcome, now_ms)
            elif isinstance(entry, PipelinedAck):
                self._settled(entry.ack.ids)
                if self.inflight.next_batch_due():
                    self._next_batch(entry, now_ms)
            elif outcome is not None:
                if not outcome.duplicate:
                    self._observer.message_in()
                self._reply(Acked(entry.ref, outcome.message))
        if self._waiting is not None:
            self._next_turn(now_ms)

    def _answer_failed(self, entry: Pipelined, exc: Exception, now_ms: float) -> None:
        """A pipelined write failed: its error, a send's with its ``clientMsgId``."""
        client_msg_id = entry.send.client_msg_id if isinstance(entry, PipelinedSend) else None
        if isinstance(exc, WriteDroppedError):
            message = "the server is shutting down; send it again"
            self._error(entry.ref, WsErrorCode.INTERNAL, message, now_ms, client_msg_id)
        else:
            what = "ackMessages" if client_msg_id is None else "sendMessage"
            self._failed(entry.ref, exc, what, now_ms, client_msg_id)

    # -- calls ------------------------------------------------------------------------------------

    def call_finished(self, call: MarkReadCall | TypingCall, now_ms: float) -> None:
        """A call without a reply finished."""
        self._busy = None

    def users_found(self, call: SearchCall, users: list[UserCard], now_ms: float) -> None:
        self._reply(UsersFound(call.ref, call.query.query, users))
        self._busy = None

    def online_found(self, call: OnlineCall, user_ids: list[int], now_ms: float) -> None:
        self._reply(OnlineNow(call.ref, user_ids))
        self._busy = None

    def reauthenticated(self, call: Reauthenticate, principal: Principal, now_ms: float) -> None:
        if principal.user_id != self.user_id:
            self.close(CloseCode.UNAUTHENTICATED, "a token of another user")
        else:
            self.principal = principal
            self._schedule_expiry(now_ms)
            self._reply(Ready(call.ref, self.user_id, self.connection_id))
        self._busy = None

    def call_failed(self, call: FrameCall | StillPendingCall | CatchUpCall, exc: Exception, now_ms: float) -> None:
        """A call raised: a frame's is answered with its error (an unauthenticated caller is
        closed 4401); a failed re-push round ends and the next one tries again."""
        if isinstance(call, StillPendingCall | CatchUpCall):
            if isinstance(exc, BusyError):  # the database is unavailable: one line per connection and round
                log.debug("re-push failed for connection %s: %s", self.connection_id, exc.message)
            else:
                log.warning("re-push failed for connection %s", self.connection_id, exc_info=exc)
            self._repushing = None
            self._repush_by(now_ms + self.inflight.redelivery_ms)  # tried again (at the latest) then
            return
        if isinstance(exc, AuthenticationError):
            self.close(CloseCode.UNAUTHENTICATED, "authentication failed")
        else:
            self._failed(call.ref, exc, type(call).__name__, now_ms)
        self._busy = None

    # -- replies and the outbox -------------------------------------------------------------------

    def event_published(self, event: Event, now_ms: float) -> None:
        """An event for this user (fan-out): a revocation of our login closes 4403; anything else
        is queued, a message to us in flight until acknowledged."""
        if isinstance(event, LoginsRevoked):
            if self.principal.sid in event.sids:
                self.close(CloseCode.REVOKED, "login revoked")
            return
        if isinstance(event, MessageReceived) and event.message.recipient_id == self.principal.user_id:
            message = event.message
            self.inflight.record_push((message.id,), now_ms)
            if self._repush_due is None:  # the oldest push in flight
                self._repush_by(now_ms + self.inflight.redelivery_ms)
            self._unacked[message.id] = message
            self._enqueue(Outgoing(self._encode(event), MESSAGE, message.created_at))
        else:
            self._enqueue(Outgoing(self._encode(event), EPHEMERAL if isinstance(event, Typing) else OTHER, None))

    def _reply(self, reply: Reply) -> None:
        self._enqueue(Outgoing(self._encode(reply), OTHER, None))

    def _error(
        self, ref: str | None, code: WsErrorCode, message: str, now_ms: float, client_msg_id: str | None = None
    ) -> None:
        """Answer with an ``error`` frame (one answering a ``sendMessage`` carries its
        ``clientMsgId``); over 20 the client caused (:data:`NOT_THE_CLIENTS`) in 10 s closes 1008."""
        self._observer.rejected(code)
        self._reply(ErrorReply(ref, code, message, client_msg_id))
        if code not in NOT_THE_CLIENTS and self._errors.record(now_ms / 1000):
            self.close(CloseCode.POLICY, "too many errors")

    def _failed(
        self, ref: str | None, exc: Exception, what: str, now_ms: float, client_msg_id: str | None = None
    ) -> None:
        """Answer a frame whose handling raised: its domain error's code, else ``internal``."""
        if isinstance(exc, DomainError):
            self._error(ref, wire_error(exc).ws_code, exc.message, now_ms, client_msg_id)
            return
        log.error("frame %s failed on connection %s", what, self.connection_id, exc_info=exc)
        self._error(ref, WsErrorCode.INTERNAL, "unexpected server error", now_ms, client_msg_id)

    def _enqueue(self, item: Outgoing) -> None:
        """Queue a frame; over the bound drop ephemeral frames first, then close 4008."""
        if self._held is not None:
            self._held.append(item)
            return
        outbox, bound = self._outbox, self._limits.max_queued_frames
        if len(outbox) >= bound:
            if item.kind is EPHEMERAL:
                self._observer.dropped_ephemeral(1)
                return
            kept = [queued for queued in outbox if queued.kind is not EPHEMERAL]
            if len(kept) < len(outbox):
                self._observer.dropped_ephemeral(len(outbox) - len(kept))
            self._outbox = outbox = kept
            if len(outbox) >= bound:
                if self.closing is None:
                    self._observer.slow_consumer()
                self.close(CloseCode.SLOW_CONSUMER, "slow consumer: outbound queue full")
                return
        outbox.append(item)

    # -- offline batches --------------------------------------------------------------------------

    def batch_read(self, read: ReadBatch, batch: Batch, now_ms: float) -> None:
        """The batch ``read`` asked for."""
        if read is self._ahead:
            self._ahead = None
            encoded = EncodedBatch(batch, self._encode(batch))
            if read is self._awaited:
                leave_out, self._leave_out = self._leave_out, None
                self._send_batch(self._without(encoded, leave_out), now_ms, answer=True)
            else:
                self._ahead_ready = encoded
        elif read is self._awaited:
            self._send_batch(EncodedBatch(batch, self._encode(batch)), now_ms, answer=True)

    def batch_failed(self, read: ReadBatch, exc: Exception, now_ms: float) -> None:
        """Reading ``read`` raised. A batch read ahead is read again when it is needed; the first
        batch closes the connection (1011); the next batch answers the acknowledgement that
        asked for it with the error."""
        if read is self._ahead:
            self._ahead = None
            log.warning("prefetching the next offline batch failed", exc_info=exc)
            if read is self._awaited:
                self._leave_out = None
                self._read_now(self._awaited_for)
            return
        if read is not self._awaited:
            return
        self._awaited, ack = None, self._awaited_for
        self._awaited_for = None
        if self._held is not None:
            if isinstance(exc, BusyError):  # the database is unavailable: nothing is wrong with the client
                log.warning("the first offline batch of connection %s failed: %s", self.connection_id, exc.message)
                self.close(CloseCode.TRY_AGAIN_LATER, "cannot read pending messages now; try again later")
                return
            log.error("the first offline batch of connection %s failed", self.connection_id, exc_info=exc)
            self.close(CloseCode.INTERNAL, "unexpected server error")
            return
        if ack is not None:
            self._failed(ack.ref, exc, "ackMessages", now_ms)
        else:
            log.warning("reading the next offline batch failed", exc_info=exc)
        self._answer_ready(now_ms)

    def _settled(self, ids: Iterable[str]) -> None:
        ids = list(ids)
        if self._settled_meanwhile is not None:  # a batch is being read ahead: leave these out of it
            self._settled_meanwhile.update(ids)
        self.inflight.settle(ids)
        for message_id in ids:
            self._unacked.pop(message_id, None)

    def _next_batch(self, ack: PipelinedAck | None, now_ms: float) -> None:
        """The current batch is acknowledged and more are pending: send the batch read ahead (at
        once if it is there), else wait for it. Answers wait until it went out."""
        settled, self._settled_meanwhile = self._settled_meanwhile, None
        ready, self._ahead_ready = self._ahead_ready, None
        if ready is not None:
            self._send_batch(self._without(ready, settled), now_ms, answer=False)
        elif self._ahead is not None:
            self._awaited, self._awaited_for, self._leave_out = self._ahead, ack, settled
        else:
            self._read_now(ack)

    def _read_now(self, ack: PipelinedAck | None) -> None:
        read = ReadBatch(PendingQuery(), ahead=False)
        self._awaited, self._awaited_for = read, ack
        self.actions.append(read)

    def _without(self, encoded: EncodedBatch, settled: set[str] | None) -> EncodedBatch:
        """The batch without what this connection acknowledged while it was read ahead (another
        device's acknowledgements may still be in it: clients dedupe by id, contract §3.1)."""
        messages = encoded.batch.messages
        if not settled or not any(m.id in settled for m in messages):
            return encoded
        batch = Batch(messages=[m for m in messages if m.id not in settled], more=encoded.batch.more)
        return EncodedBatch(batch, self._encode(batch))

    def _send_batch(self, encoded: EncodedBatch, now_ms: float, *, answer: bool) -> None:
        """Queue ``offlineMessages`` (past the bound, like ``ready``); read the one after it ahead
        (a batch left empty by what was acknowledged meanwhile needs no acknowledgement: the next
        is read at once). The first batch opens the outbox; with ``answer`` a later one lets the
        waiting answers go."""
        batch = encoded.batch
        self._awaited = self._awaited_for = None
        ids = [m.id for m in batch.messages]
        self.inflight.start_batch(ids, batch.more, now_ms)
        if ids:
            self._repush_by(now_ms + self.inflight.redelivery_ms)
            self._observer.drained(len(ids))
        for message in batch.messages:
            self._unacked[message.id] = message
        self._outbox.append(Outgoing(encoded.text, OTHER, None))
        if batch.more and ids:
            self._settled_meanwhile = set()
            self._ahead = ReadBatch(PendingQuery(excluding=ids), ahead=True)
            self.actions.append(self._ahead)
        held, self._held = self._held, None
        for item in held or ():
            self._enqueue(item)
        if self.inflight.next_batch_due():  # nothing in it to acknowledge
            self._next_batch(None, now_ms)
        if answer:
            self._answer_ready(now_ms)

    # -- re-push ----------------------------------------------------------------------------------

    def catch_up(self, now_ms: float) -> None:
        """The process's sweep (several processes, ``repush_from_store``): a round that pushes what
        the store holds for this user, created since we connected and at least ``redelivery_s``
        ago, that never came through pub/sub. One round (of either kind) at a time."""
        if self._repushing is not None:
            return
        self._repushing = now_ms
        self.actions.append(CatchUpCall(self._clock.now() - timedelta(seconds=self._limits.redelivery_s)))

    def _repush(self, now_ms: float) -> None:
        """A re-push round: push again what was pushed ``redelivery_s`` ago and not acknowledged,
        if still pending; send the next batch when one is due. One round at a time."""
        if self._repushing is not None:
            return
        due = self.inflight.due_for_repush(now_ms)
        if due:
            self._repushing = now_ms
            self.actions.append(StillPendingCall(PendingCheck(ids=due)))
        else:
            self._end_repush(now_ms)

    def still_pending_found(self, call: StillPendingCall, still: set[str], now_ms: float) -> None:
        """Of ``call.check.ids``, ``still`` are pending: forget the others, push these again (plain
        ``messageReceived`` frames; clients dedupe by id)."""
        ids = call.check.ids
        self._settled(set(ids) - still)
        again = [self._unacked[i] for i in ids if i in still and i in self._unacked]
        self._push(again, now_ms)
        self._end_repush(now_ms)

    def caught_up(self, call: CatchUpCall, batch: Batch, now_ms: float) -> None:
        """The oldest pending messages: push those created since we connected, at least one
        redelivery interval ago, that never reached us."""
        pushed, since = self.inflight.pushed, self._connected_at
        self._push([m for m in batch.messages if m.id not in pushed and since <= m.created_at <= call.cutoff], now_ms)
        self._end_repush(now_ms)

    def _end_repush(self, now_ms: float) -> None:
        """The round is over: ask to be woken when the oldest push left comes due, but not within
        a tenth of the redelivery interval of this round's start (pushes a moment apart that are
        not acknowledged, as into a dead socket, make one store read per tenth, not one each)."""
        started, self._repushing = self._repushing, None
        due = self.inflight.next_due()
        if due is not None and started is not None:
            due = max(due, started + self.inflight.redelivery_ms / 10)
        self._repush_due = due
        self._ask_wake()
        if self.inflight.next_batch_due():
            self._next_batch(None, now_ms)

    def _push(self, messages: list[Message], now_ms: float) -> None:
        if messages:
            self._observer.repushed(len(messages))
        self.inflight.record_push([m.id for m in messages], now_ms)
        for message in messages:
            self._unacked[message.id] = message
            self._enqueue(Outgoing(self._encode(MessageReceived(message=message)), MESSAGE, message.created_at))
