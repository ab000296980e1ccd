"""A :class:`LiveSession` under test: a fake clock in milliseconds, an encoder that keeps the
replies, counters, and helpers that play the driver's part by hand."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TypeVar

from application.common import Principal
from application.errors import WsErrorCode
from application.live.actions import (
    Acked,
    Action,
    CloseRequest,
    ErrorReply,
    Outgoing,
    Pipelined,
    PipelinedAck,
    PipelinedSend,
    ReadBatch,
    Reply,
)
from application.live.session import LiveSession, SessionLimits
from application.messaging import Batch, PendingQuery, SendResult
from domain.messages import Message
from tests.unit.fakes import EPOCH, FixedClock

USER, PEER = 1, 2
A = TypeVar("A")


def message(n: int, *, to: int = USER, at: datetime = EPOCH) -> Message:
    return Message(id=f"m{n}", seq=n, sender_id=PEER if to == USER else USER, recipient_id=to, body="x",
                   client_msg_id=f"c{n}", created_at=at)  # fmt: skip


def batch(first: int, last: int, *, more: bool) -> Batch:
    return Batch(messages=[message(n) for n in range(first, last + 1)], more=more)


class KeptReplies:
    """The encoder: the text of a frame is the index of its reply in :attr:`replies`."""

    def __init__(self) -> None:
        self.replies: list[Reply] = []

    def __call__(self, reply: Reply) -> str:
        self.replies.append(reply)
        return str(len(self.replies) - 1)


@dataclass
class Counts:
    """The session's observer: what it counted."""

    messages_in: int = 0
    rejections: Counter[str] = field(default_factory=Counter)
    limited: Counter[str] = field(default_factory=Counter)
    dropped: int = 0
    slow_consumers: int = 0
    drained_count: int = 0
    repushed_count: int = 0

    def message_in(self) -> None:
        self.messages_in += 1

    def rejected(self, code: WsErrorCode) -> None:
        self.rejections[code] += 1

    def rate_limited(self, bucket: str) -> None:
        self.limited[bucket] += 1

    def dropped_ephemeral(self, count: int) -> None:
        self.dropped += count

    def slow_consumer(self) -> None:
        self.slow_consumers += 1

    def drained(self, count: int) -> None:
        self.drained_count += count

    def repushed(self, count: int) -> None:
        self.repushed_count += count


class Driver:
    """A session and the driver's side of it, by hand: ``now`` is the clock in milliseconds."""

    def __init__(
        self,
        *,
        max_queued: int = 50,
        redelivery_s: float = 10,
        rate: float = 1000,
        burst: int = 1000,
        close_after_s: int = 3,
        max_pipelined: int = 16,
        repush_from_store: bool = False,
        expires_in_s: float | None = None,
        sid: str = "sid-1",
    ) -> None:
        self.clock = FixedClock()
        self.now = 0.0
        self.encoder = KeptReplies()
        self.counts = Counts()
        expires_at = None if expires_in_s is None else EPOCH + timedelta(seconds=expires_in_s)
        self.session = LiveSession(
            principal=Principal(user_id=USER, sid=sid, expires_at=expires_at),
            connection_id="conn-1",
            limits=SessionLimits(
                redelivery_s=redelivery_s,
                rate_msg_per_s=rate,
                rate_msg_burst=burst,
                rate_close_after_s=close_after_s,
                max_queued_frames=max_queued,
                max_frame_bytes=1024,
                max_pipelined=max_pipelined,
                repush_from_store=repush_from_store,
            ),
            clock=self.clock,
            encode=self.encoder,
            observer=self.counts,
        )
        self._sends = 0

    # -- time ---------------------------------------------------------------------------------

    def advance(self, ms: float) -> None:
        """Move both clocks: the session's milliseconds and the wall clock."""
        self.now += ms
        self.clock.advance(ms / 1000)

    # -- actions and frames -------------------------------------------------------------------

    def actions(self) -> list[Action]:
        """Take every queued action, in order."""
        taken = list(self.session.actions)
        self.session.actions.clear()
        return taken

    def one(self, kind: type[A]) -> A:
        """Take every queued action: exactly one, of ``kind``."""
        (action,) = self.actions()
        assert isinstance(action, kind), action
        return action

    def outgoing(self) -> list[Outgoing]:
        taken = []
        while (item := self.session.next_frame()) is not None:
            taken.append(item)
        return taken

    def frames(self) -> list[Reply]:
        """The replies written since the last call, in the order the driver writes them."""
        return [self.encoder.replies[int(item.text)] for item in self.outgoing()]

    def kinds(self) -> list[str]:
        """Short names of :meth:`frames`: ``ack:<ref>``, ``error:<ref>:<code>``, a class name."""
        names = []
        for reply in self.frames():
            match reply:
                case ErrorReply(ref=ref, code=code):
                    names.append(f"error:{ref}:{code}")
                case Acked(ref=ref):
                    names.append(f"ack:{ref}")
                case _:
                    names.append(type(reply).__name__)
        return names

    def reading(self) -> bool:
        return self.session.reading

    def closed(self) -> CloseRequest | None:
        return self.session.closing

    # -- the session's life -------------------------------------------------------------------

    def start(self, first: Batch | None = None) -> list[Action]:
        """Start and answer the first batch read (empty unless given); the other actions."""
        self.session.start(self.now)
        taken = self.actions()
        (read,) = [x for x in taken if isinstance(x, ReadBatch)]
        assert read.query == PendingQuery()
        assert not read.ahead
        self.session.batch_read(read, first or Batch(messages=[], more=False), self.now)
        return [x for x in taken if not isinstance(x, ReadBatch)]

    def send(self, ref: str) -> None:
        self._sends += 1
        self.session.send_message(ref, PEER, "hi", f"cid-{ref}", self.now)

    def begun(self) -> list[Pipelined]:
        """The pipelined writes the session asked to start since the last look."""
        return [x for x in self.actions() if isinstance(x, PipelinedSend | PipelinedAck)]

    def commit(self, entry: Pipelined, *, duplicate: bool = False) -> None:
        if isinstance(entry, PipelinedAck):
            self.session.write_committed(entry, None, self.now)
            return
        stored = Message(
            id=f"id-{entry.ref}", seq=1, sender_id=USER, recipient_id=PEER, body="hi",
            client_msg_id=entry.send.client_msg_id, created_at=self.clock.now(),
        )  # fmt: skip
        self.session.write_committed(entry, SendResult(message=stored, duplicate=duplicate), self.now)
