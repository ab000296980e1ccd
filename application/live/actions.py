"""What the live session asks its driver to do, what it says to the client, and its codes.

Actions (the driver performs them, in order, and feeds the outcome back):

* :class:`PipelinedSend` / :class:`PipelinedAck` — start this write now (``begin`` of the use
  case with the action's ``actor`` and command); answer
  :meth:`~application.live.session.LiveSession.write_committed`, ``write_failed`` or
  ``write_dropped`` once it is known, in the order the writes were started.
* :class:`ReadBatch` — read the user's next offline batch (its ``query``); answer ``batch_read`` /
  ``batch_failed``.
* a :data:`Call` — run one use case for a frame or the re-push, as the session's ``principal``,
  with the call's command; answer ``call_finished`` / ``call_failed``. The session reads no
  further frame while a frame's call runs.
* :class:`CloseRequest` — the connection must close with this code (stop reading now).
* :class:`WakeAt` — feed ``time_passed`` at this time (milliseconds of the driver's clock).

Replies (:data:`Reply`, plus the :mod:`application.events` the session forwards) are turned into
text by the :data:`Encoder` the driver gives the session; queued text waits in the session's
outbox as :class:`Outgoing` until the driver takes it with ``next_frame``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING, NamedTuple, Protocol

from application.events import Event
from application.messaging import Acknowledge, Batch, PendingCheck, PendingQuery, Send, SendResult

if TYPE_CHECKING:
    from datetime import datetime

    from application.common import Principal
    from application.errors import WsErrorCode
    from application.messaging import Read
    from application.presence import OnlineQuery
    from application.social import TypingNotice
    from application.users import SearchQuery
    from domain.messages import Message
    from domain.users import UserCard


class CloseCode(IntEnum):
    """WebSocket close codes (contract §3.4)."""

    GOING_AWAY = 1001
    POLICY = 1008
    INTERNAL = 1011
    TRY_AGAIN_LATER = 1013
    SLOW_CONSUMER = 4008
    UNAUTHENTICATED = 4401
    REVOKED = 4403
    AUTH_TIMEOUT = 4408
    RATE_LIMITED = 4429
    TOO_MANY_CONNECTIONS = 4430


class FrameKind(IntEnum):
    """What an outbound frame is, for the outbox bound: ephemeral frames (typing) are dropped
    first; messages are counted and their delivery latency measured once written."""

    OTHER = 0
    EPHEMERAL = 1
    MESSAGE = 2


class Outgoing(NamedTuple):
    """An encoded frame waiting in the outbox; ``stamp`` is a message's creation time."""

    text: str
    kind: FrameKind
    stamp: datetime | None


# ---- actions -------------------------------------------------------------------------------


class WriteDroppedError(Exception):
    """A pipelined write dropped before it ran (the server is shutting down)."""


@dataclass(slots=True, eq=False)
class PipelinedSend:
    """A ``sendMessage`` frame whose write the driver starts with ``SendMessage.begin(actor, send)``.
    ``done`` and ``outcome`` are the session's, once the driver fed the write's outcome back."""

    ref: str | None
    actor: Principal
    send: Send
    done: bool = False
    outcome: SendResult | Exception | None = None


@dataclass(slots=True, eq=False)
class PipelinedAck:
    """An ``ackMessages`` frame whose write the driver starts with ``AcknowledgeDelivery.begin(actor, ack)``."""

    ref: str | None
    actor: Principal
    ack: Acknowledge
    done: bool = False
    outcome: SendResult | Exception | None = None  # only an exception, if anything


Pipelined = PipelinedSend | PipelinedAck


@dataclass(frozen=True, slots=True)
class ReadBatch:
    """Read the oldest pending messages (``PendingFor``); ``ahead``: the batch after the one being
    drained (``query`` leaves that one out), read while the client works through that one."""

    query: PendingQuery
    ahead: bool


@dataclass(frozen=True, slots=True)
class CloseRequest:
    code: CloseCode
    reason: str


@dataclass(frozen=True, slots=True)
class WakeAt:
    at_ms: float


# Calls: one use case each. ``ref`` is the frame's (None for the re-push's own calls).


@dataclass(frozen=True, slots=True)
class Reauthenticate:
    ref: str | None
    token: str


@dataclass(frozen=True, slots=True)
class MarkReadCall:
    ref: str | None
    read: Read


@dataclass(frozen=True, slots=True)
class SearchCall:
    ref: str | None
    query: SearchQuery


@dataclass(frozen=True, slots=True)
class TypingCall:
    ref: str | None
    typing: TypingNotice


@dataclass(frozen=True, slots=True)
class OnlineCall:
    ref: str | None
    query: OnlineQuery


@dataclass(frozen=True, slots=True)
class StillPendingCall:
    """Which of ``check.ids`` (due for a re-push) no device has acknowledged yet."""

    check: PendingCheck
    ref: str | None = None


@dataclass(frozen=True, slots=True)
class CatchUpCall:
    """The user's oldest pending messages, to push what pub/sub lost (several processes)."""

    cutoff: datetime
    ref: str | None = None


FrameCall = Reauthenticate | MarkReadCall | SearchCall | TypingCall | OnlineCall
Call = FrameCall | StillPendingCall | CatchUpCall
Action = PipelinedSend | PipelinedAck | ReadBatch | CloseRequest | WakeAt | Call


# ---- replies -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ready:
    """``ready``: sent first, and again after a re-auth (with its ``ref``)."""

    ref: str | None
    user_id: int
    connection_id: str


@dataclass(frozen=True, slots=True)
class Acked:
    """``messageAck`` of a committed send."""

    ref: str | None
    message: Message


@dataclass(frozen=True, slots=True)
class ErrorReply:
    """``error``; one answering a ``sendMessage`` carries its ``clientMsgId`` (when readable)."""

    ref: str | None
    code: WsErrorCode
    message: str
    client_msg_id: str | None = None


@dataclass(frozen=True, slots=True)
class Pong:
    ref: str | None


@dataclass(frozen=True, slots=True)
class UsersFound:
    ref: str | None
    query: str
    users: list[UserCard]


@dataclass(frozen=True, slots=True)
class OnlineNow:
    ref: str | None
    user_ids: list[int]


Reply = Ready | Batch | Acked | ErrorReply | Pong | UsersFound | OnlineNow | Event
Encoder = Callable[[Reply], str]
"""Turns a reply or a forwarded event into the text frame the client gets (the wire edge's)."""


class SessionObserver(Protocol):
    """Counters of what the session decided (the driver's metrics). Must not block or raise."""

    def message_in(self) -> None: ...

    def rejected(self, code: WsErrorCode) -> None: ...

    def rate_limited(self, bucket: str) -> None: ...

    def dropped_ephemeral(self, count: int) -> None: ...

    def slow_consumer(self) -> None: ...

    def drained(self, count: int) -> None:
        """``count`` stored messages went into an ``offlineMessages`` batch."""

    def repushed(self, count: int) -> None:
        """``count`` messages were pushed again (not acknowledged in time, or caught up from the store)."""
