"""Messaging use cases: send, acknowledge, read, drain pending, history, conversation list.

Each commits its own transaction and publishes events only after the commit.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, NamedTuple

from application.common import MAX_ID, Page, PageRequest, Principal, UnitOfWorkFactory, page_limit
from application.events import MessageDelivered, MessageReceived, MessagesRead, UserOnline
from domain.delivery import Delivered, fanout_of, receipts_by_sender
from domain.errors import DomainError, InvalidInputError, NotFoundError, UserNotFoundError
from domain.messages import (
    BATCH_MAX,
    Message,
    NewMessage,
    Pair,
    ReadPointer,
    check_batch,
    check_body,
    check_client_msg_id,
)
from domain.social import Relation

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Callable, Collection
    from datetime import datetime

    from application.group_commit import GroupCommit
    from application.ports import (
        Clock,
        ConversationState,
        IdGenerator,
        Notifier,
        PresenceRegistry,
        UnitOfWork,
    )
    from application.users import CardMaker
    from domain.users import UserCard


def publish_receipts(notifier: Notifier, delivered: list[Delivered], now: datetime) -> None:
    """``messageDelivered`` to each sender for their newly delivered messages."""
    for sender_id, ids in receipts_by_sender(delivered).items():
        recipient = next(d.recipient_id for d in delivered if d.sender_id == sender_id)
        notifier.publish(sender_id, MessageDelivered(ids=tuple(ids), to=recipient, delivered_at=now))


@dataclass(frozen=True, slots=True, kw_only=True)
class Send:
    """A message for ``to``; ``connection_id``: the sender's connection it came from, which the
    sender's other connections are told apart from (None: tell every one of them)."""

    to: int
    body: str
    client_msg_id: str
    connection_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SendResult:
    message: Message
    duplicate: bool
    became_contacts: bool = False


class SendMessage:
    """Store a message once per ``(sender, clientMsgId)`` and fan it out after the commit.

    A resend of a stored ``clientMsgId`` returns the stored message (``duplicate``) and delivers
    nothing. A message to a user who blocked the sender is stored withheld and reaches only the
    sender's other connections. When the message makes the two users contacts (and no block
    exists either way), each of them that is online is announced to the other with ``userOnline``
    (contract §2), after the message itself. Concurrent sends share a transaction
    (:class:`GroupCommit`); each is answered after that transaction committed. Raises
    InvalidInputError, UserNotFoundError.
    """

    def __init__(
        self,
        writes: GroupCommit,
        notifier: Notifier,
        presence: PresenceRegistry,
        clock: Clock,
        ids: IdGenerator,
        max_body_chars: int,
        push_after_s: float | None = None,
    ) -> None:
        self._writes, self._notifier, self._presence = writes, notifier, presence
        self._store = _StoreMessages(clock, ids, max_body_chars, committed=self._fan_out, push_after_s=push_after_s)

    async def __call__(self, actor: Principal, cmd: Send) -> SendResult:
        return await self.finish(await self.begin(actor, cmd))

    def begin(self, actor: Principal, cmd: Send) -> asyncio.Future[StoredSend]:
        """Validate ``cmd`` and queue its write: a future of the write once committed (and fanned
        out). Callers that pipeline sends (one WebSocket's frames) call :meth:`finish` with it."""
        check_client_msg_id(cmd.client_msg_id)
        return self._writes.enqueue(self._store, _Sending(actor.user_id, cmd))

    async def finish(self, stored: StoredSend) -> SendResult:
        """After the commit and the fan-out: introduce new contacts; the result."""
        if stored.introduce:
            message = stored.result.message
            await self._introduce(message.sender_id, message.recipient_id)
        return stored.result

    def _fan_out(self, sending: _Sending, stored: StoredSend) -> None:
        """Right after the commit, in commit order, whether or not the sender still waits."""
        result = stored.result
        if result.duplicate:
            return
        fanout = fanout_of(result.message, sending.send.connection_id)
        event = MessageReceived(message=result.message)
        if fanout.recipient is not None:
            self._notifier.publish(fanout.recipient, event)
        self._notifier.publish(fanout.sender, event, skip_connection=fanout.skip_connection)

    async def _introduce(self, a: int, b: int) -> None:
        """New contacts: each hears ``userOnline`` of the other if the other is online."""
        online = await self._presence.online_among((a, b))
        for user_id, audience in ((a, b), (b, a)):
            if user_id in online:
                self._notifier.publish(audience, UserOnline(user_id=user_id))


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredSend:
    """A committed send, before its fan-out."""

    result: SendResult
    introduce: bool  # they became contacts and may see each other's presence (Relation.presence_visible)


class _Sending(NamedTuple):
    """What :class:`_StoreMessages` writes: a send and who sent it."""

    sender_id: int
    send: Send


class _StoreMessages:
    """The write step of :class:`SendMessage`: a few statements per batch, whatever its size."""

    order = 0  # before acknowledgements: member rows are locked before message rows

    def __init__(
        self,
        clock: Clock,
        ids: IdGenerator,
        max_body_chars: int,
        committed: Callable[[_Sending, StoredSend], None],
        push_after_s: float | None = None,
    ) -> None:
        self._clock, self._ids = clock, ids
        self._max_body_chars = max_body_chars
        self.committed = committed  # the fan-out (Step.committed)
        # Push jobs (None: no push gateway, no outbox): due this long after the message unless a
        # device acknowledged it; the dispatcher sends them earlier to a recipient with no live
        # connection (application/push.py).
        self._push_after = timedelta(seconds=push_after_s) if push_after_s is not None else None

    async def write(self, uow: UnitOfWork, sends: list[_Sending]) -> list[StoredSend | DomainError]:
        stored = await uow.messages.by_client_ids((sender, s.client_msg_id) for sender, s in sends)
        users = await uow.users.existing_ids(s.send.to for s in sends)
        blocks = await uow.blocks.among(pair for sender, s in sends for pair in ((s.to, sender), (sender, s.to)))
        now = self._clock.now()
        outcomes: list[StoredSend | DomainError | NewMessage] = []
        drafts: dict[tuple[int, str], NewMessage] = {}  # a resend within the batch is its duplicate
        for sender_id, send in sends:
            key = (sender_id, send.client_msg_id)
            if key in stored:
                outcomes.append(StoredSend(result=SendResult(message=stored[key], duplicate=True), introduce=False))
            elif key in drafts:
                outcomes.append(drafts[key])
            else:
                try:
                    draft = self._draft(sender_id, send, users, blocks, now)
                except DomainError as exc:
                    outcomes.append(exc)
                    continue
                drafts[key] = draft
                outcomes.append(draft)
        appended = {a.message.id: a for a in await uow.conversations.append(list(drafts.values()))}
        await uow.contacts.add_pairs(
            (a.message.sender_id, a.message.recipient_id) for a in appended.values() if a.became_contacts
        )
        if self._push_after is not None:  # one statement; no job for a withheld message
            jobs = [(a.message.id, a.message.recipient_id) for a in appended.values() if not a.message.withheld]
            if jobs:
                await uow.push.queue_pushes(jobs, now=now, due=now + self._push_after)
        answered: set[str] = set()
        results: list[StoredSend | DomainError] = []
        for outcome in outcomes:
            if not isinstance(outcome, NewMessage):
                results.append(outcome)
                continue
            done = appended[outcome.id]
            first = outcome.id not in answered
            answered.add(outcome.id)
            m = done.message
            results.append(
                StoredSend(
                    result=SendResult(message=m, duplicate=not first, became_contacts=first and done.became_contacts),
                    introduce=first
                    and done.became_contacts
                    and Relation.between(m.sender_id, m.recipient_id, blocks, contacts=True).presence_visible,
                )
            )
        return results

    def _draft(
        self, sender_id: int, send: Send, users: set[int], blocks: set[tuple[int, int]], now: datetime
    ) -> NewMessage:
        body = check_body(send.body, self._max_body_chars)
        Pair.of(sender_id, send.to)  # not to oneself
        if send.to not in users:
            raise UserNotFoundError(send.to)
        return NewMessage(
            id=self._ids.new_id(),
            sender_id=sender_id,
            recipient_id=send.to,
            body=body,
            client_msg_id=send.client_msg_id,
            created_at=now,
            withheld=Relation.between(sender_id, send.to, blocks).withholds_sent,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Acknowledge:
    """The ids of messages the device has (at most 100)."""

    ids: list[str]


class _Ack(NamedTuple):
    """What :class:`_MarkDelivered` writes: an acknowledgement and whose it is (the store's
    ``(recipient_id, ids)``)."""

    user_id: int
    ids: list[str]


class _MarkDelivered:
    """The write step of :class:`AcknowledgeDelivery`: one statement for the whole batch. Each
    caller gets the ids newly delivered by its acknowledgement and the time they were."""

    order = 1  # after sends: member rows are locked before message rows

    def __init__(self, clock: Clock, notifier: Notifier) -> None:
        self._clock, self._notifier = clock, notifier

    def committed(self, ack: _Ack, written: tuple[list[Delivered], datetime]) -> None:
        """The receipts to the senders, right after the commit (Step.committed)."""
        delivered, now = written
        publish_receipts(self._notifier, delivered, now)

    async def write(self, uow: UnitOfWork, acks: list[_Ack]) -> list[tuple[list[Delivered], datetime] | DomainError]:
        now = self._clock.now()
        delivered = await uow.messages.mark_delivered(acks, now=now)
        return [(d, now) for d in delivered]


class AcknowledgeDelivery:
    """A device confirms it has these messages. Idempotent; ids not addressed to the user are
    ignored. The senders hear ``messageDelivered`` for the newly delivered ids only.
    Concurrent acknowledgements share a transaction (:class:`GroupCommit`)."""

    def __init__(self, writes: GroupCommit, notifier: Notifier, clock: Clock) -> None:
        self._writes = writes
        self._step = _MarkDelivered(clock, notifier)

    async def __call__(self, actor: Principal, cmd: Acknowledge) -> list[Delivered]:
        return self.finish(await self.begin(actor, cmd))

    def begin(self, actor: Principal, cmd: Acknowledge) -> asyncio.Future[tuple[list[Delivered], datetime]]:
        """Validate and queue the acknowledgement: a future of what it delivered, once committed
        (the receipts are published then, whether or not the caller still waits)."""
        check_batch(cmd.ids)
        return self._writes.enqueue(self._step, _Ack(actor.user_id, cmd.ids))

    @staticmethod
    def finish(written: tuple[list[Delivered], datetime]) -> list[Delivered]:
        """The newly delivered messages of a committed acknowledgement."""
        return written[0]


@dataclass(frozen=True, slots=True, kw_only=True)
class Read:
    """Read up to ``up_to_seq`` of the conversation with ``peer_id``; ``connection_id`` as in :class:`Send`."""

    peer_id: int
    up_to_seq: int
    connection_id: str | None = None


class MarkRead:
    """Move the reader's pointer forward (never back, never past the end), deliver and read every
    message up to it; tell the peer and the reader's other connections. Returns the new pointer,
    or None when nothing moved (no events then). Raises NotFoundError for an unknown conversation."""

    def __init__(self, uow: UnitOfWorkFactory, notifier: Notifier, clock: Clock) -> None:
        self._uow, self._notifier, self._clock = uow, notifier, clock

    async def __call__(self, actor: Principal, cmd: Read) -> int | None:
        if not 0 <= cmd.up_to_seq <= MAX_ID:
            raise InvalidInputError.of("upToSeq", "is not a valid seq")
        reader_id = actor.user_id
        pair = Pair.of(reader_id, cmd.peer_id)
        now = self._clock.now()
        async with self._uow() as uow:
            state = await uow.conversations.state(reader_id, cmd.peer_id)
            if state is None:
                raise NotFoundError(f"no conversation with user {cmd.peer_id}")
            moved = ReadPointer(seq=state.read_seq).advance(cmd.up_to_seq, state.last_seq)
            if moved is None:
                return None
            await uow.conversations.set_read_seq(reader_id, cmd.peer_id, moved.seq)
            delivered = await uow.messages.mark_read(reader_id, pair, moved.seq, now=now)
            await uow.commit()
        publish_receipts(self._notifier, delivered, now)
        self._notifier.publish(
            cmd.peer_id, MessagesRead(by=reader_id, peer_id=reader_id, up_to_seq=moved.seq, read_at=now)
        )
        self._notifier.publish(
            reader_id,
            MessagesRead(by=reader_id, peer_id=cmd.peer_id, up_to_seq=moved.seq, read_at=now),
            skip_connection=cmd.connection_id,
        )
        return moved.seq


@dataclass(frozen=True, slots=True, kw_only=True)
class Batch:
    messages: list[Message]
    more: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class PendingQuery:
    """At most ``limit`` pending messages, leaving out ``excluding`` (the batch being drained, to
    read the one after it ahead)."""

    limit: int = BATCH_MAX
    excluding: Collection[str] = ()


class PendingFor:
    """The caller's oldest pending messages, and whether more remain."""

    def __init__(self, uow: UnitOfWorkFactory) -> None:
        self._uow = uow

    async def __call__(self, actor: Principal, q: PendingQuery) -> Batch:
        async with self._uow() as uow:
            found = await uow.messages.pending_for(actor.user_id, limit=q.limit + 1, excluding=q.excluding)
        return Batch(messages=found[: q.limit], more=len(found) > q.limit)


@dataclass(frozen=True, slots=True, kw_only=True)
class PendingCheck:
    """Message ids to the caller, to see which are still pending."""

    ids: list[str]


class StillPending:
    """Which of these messages to the caller are still pending (no device acknowledged them)."""

    def __init__(self, uow: UnitOfWorkFactory) -> None:
        self._uow = uow

    async def __call__(self, actor: Principal, cmd: PendingCheck) -> set[str]:
        if not cmd.ids:
            return set()
        async with self._uow() as uow:
            return await uow.messages.still_pending(actor.user_id, cmd.ids)


@dataclass(frozen=True, slots=True, kw_only=True)
class HistoryQuery:
    peer_id: int
    before: int | None = None
    after: int | None = None
    limit: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class HistoryPage:
    items: list[Message]  # ascending by seq
    has_more: bool  # more exist in the direction of travel


class History:
    """One page of a conversation, ascending by ``seq``: the newest page, the page just below
    ``before`` or just above ``after``. Withheld messages only appear to their sender."""

    def __init__(self, uow: UnitOfWorkFactory) -> None:
        self._uow = uow

    async def __call__(self, actor: Principal, q: HistoryQuery) -> HistoryPage:
        if q.before is not None and q.after is not None:
            raise InvalidInputError.of("before", "give before or after, not both")
        for name, value, lowest in (("before", q.before, 1), ("after", q.after, 0)):
            if value is not None and not lowest <= value <= MAX_ID:
                raise InvalidInputError.of(name, "is not a valid seq")
        size = page_limit(q.limit)
        if q.peer_id == actor.user_id:
            raise InvalidInputError.of("peerId", "there is no conversation with yourself")
        if not 1 <= q.peer_id <= MAX_ID:  # no store holds such an id
            raise UserNotFoundError(q.peer_id)
        pair = Pair.of(actor.user_id, q.peer_id)
        async with self._uow() as uow:
            if await uow.users.get(q.peer_id) is None:
                raise UserNotFoundError(q.peer_id)
            found = await uow.messages.history(actor.user_id, pair, before=q.before, after=q.after, limit=size + 1)
        page = found[:size]
        items = page if q.after is not None else list(reversed(page))
        return HistoryPage(items=items, has_more=len(found) > size)


@dataclass(frozen=True, slots=True, kw_only=True)
class ConversationView:
    peer: UserCard
    last_message: Message
    unread_count: int
    state: ConversationState
    cursor: str


class ListConversations:
    """The caller's conversations, most recent visible message first, keyset-paginated."""

    def __init__(self, uow: UnitOfWorkFactory, cards: CardMaker) -> None:
        self._uow, self._cards = uow, cards

    async def __call__(self, actor: Principal, cmd: PageRequest) -> Page[ConversationView]:
        size = page_limit(cmd.limit)
        async with self._uow() as uow:
            rows = await uow.conversations.summaries(actor.user_id, before=cmd.cursor, limit=size + 1)
            page = rows[:size]
            users = await uow.users.get_many(r.state.peer_id for r in page)
            cards = {c.id: c for c in await self._cards.cards(uow, actor.user_id, list(users.values()))}
        views = [
            ConversationView(
                peer=cards[r.state.peer_id],
                last_message=r.last_message,
                unread_count=r.unread_count,
                state=r.state,
                cursor=r.cursor,
            )
            for r in page
            if r.state.peer_id in cards
        ]
        return Page(items=views, next_cursor=page[-1].cursor if len(rows) > size else None)
