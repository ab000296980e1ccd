"""SQLAlchemy implementations of the messaging repositories (conversations, messages), in Core.

:class:`domain.messages.Message` is a frozen snapshot, so messages are not mapped: rows become
``Message``\\ s by hand (:func:`_message`).

Concurrency. :meth:`SqlAlchemyConversationRepository.next_seq` increments the conversation's row
with ``UPDATE … RETURNING``; on PostgreSQL that row stays locked until the transaction ends, so
the sends of one conversation queue behind each other from ``next_seq`` on and ``seq`` order is
commit order (a rolled-back send gives its ``seq`` back). On SQLite every transaction starts with
``BEGIN IMMEDIATE`` (see :mod:`adapters.sqlalchemy.engine`), which serialises all writers.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, case, func, insert, literal, or_, select, update
from sqlalchemy.exc import IntegrityError

from adapters.sqlalchemy.orm import UtcDateTime, conversation_members, conversations, messages
from adapters.sqlalchemy.upsert import upsert
from application.ports import (
    ConversationRepository,
    ConversationState,
    ConversationSummary,
    DuplicateMessageError,
    MessageRepository,
)
from domain.delivery import Delivered
from domain.errors import InvalidInputError
from domain.messages import Message, Pair

if TYPE_CHECKING:
    from collections.abc import Iterable
    from datetime import datetime

    from sqlalchemy import Row, Table
    from sqlalchemy.ext.asyncio import AsyncSession

MESSAGE_COLUMNS = (
    messages.c.id,
    messages.c.seq,
    messages.c.sender_id,
    messages.c.recipient_id,
    messages.c.body,
    messages.c.client_msg_id,
    messages.c.created_at,
    messages.c.delivered_at,
    messages.c.read_at,
    messages.c.withheld,
)

# A conversation cursor is the storage position of its last visible message, in decimal.
_CURSOR = re.compile(r"[0-9]{1,19}")
_POS_MAX = 2**63 - 1


def _message(row: Row[*tuple[Any, ...]]) -> Message:
    return Message(
        id=row.id,
        seq=row.seq,
        sender_id=row.sender_id,
        recipient_id=row.recipient_id,
        body=row.body,
        client_msg_id=row.client_msg_id,
        created_at=row.created_at,
        delivered_at=row.delivered_at,
        read_at=row.read_at,
        withheld=bool(row.withheld),
    )


def _in_pair(table: Table, pair: Pair) -> Any:
    return and_(table.c.low_id == pair.low, table.c.high_id == pair.high)


def _pending() -> Any:
    """Not delivered and not withheld; rendered like the predicate of ``ix_messages_recipient_id_pos``."""
    return and_(messages.c.delivered_at.is_(None), ~messages.c.withheld)


def _cursor_pos(cursor: str) -> int:
    if _CURSOR.fullmatch(cursor) is None or int(cursor) > _POS_MAX:
        raise InvalidInputError.of("cursor", "is not a valid cursor")
    return int(cursor)


def _is_duplicate_client_msg_id(exc: IntegrityError) -> bool:
    text = str(exc.orig)
    # PostgreSQL names the constraint; SQLite names its columns.
    return "uq_messages_sender_id" in text or "messages.sender_id, messages.client_msg_id" in text


class SqlAlchemyConversationRepository(ConversationRepository):
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def next_seq(self, pair: Pair) -> int:
        bump = (
            update(conversations)
            .where(_in_pair(conversations, pair))
            .values(last_seq=conversations.c.last_seq + 1)
            .returning(conversations.c.last_seq)
        )
        seq = (await self._session.execute(bump)).scalar_one_or_none()
        if seq is not None:
            return int(seq)
        # The first message: create the row unless a concurrent first message just did (then this
        # waits for that transaction), and increment whichever row is there.
        create = (
            upsert(self._session, conversations)
            .values(low_id=pair.low, high_id=pair.high, last_seq=0)
            .on_conflict_do_nothing(index_elements=["low_id", "high_id"])
        )
        await self._session.execute(create)
        return int((await self._session.execute(bump)).scalar_one())

    async def record_message(self, message: Message) -> bool:
        members = conversation_members
        sender, recipient = message.sender_id, message.recipient_id
        visible = not message.withheld
        low, high = sorted((sender, recipient))
        in_conversation = or_(
            and_(members.c.user_id == sender, members.c.peer_id == recipient),
            and_(members.c.user_id == recipient, members.c.peer_id == sender),
        )
        # Both rows exist, then both are locked, always in user id order: concurrent sends in the
        # two directions queue instead of deadlocking, and each sees the other's ``has_sent``.
        await self._session.execute(
            upsert(self._session, members)
            .values([{"user_id": low, "peer_id": high}, {"user_id": high, "peer_id": low}])
            .on_conflict_do_nothing(index_elements=["user_id", "peer_id"])
        )
        locked = await self._session.execute(
            select(members.c.user_id, members.c.has_sent)
            .where(in_conversation)
            .order_by(members.c.user_id)
            .with_for_update()
        )
        has_sent = {row.user_id: bool(row.has_sent) for row in locked}

        pos = select(messages.c.pos).where(messages.c.id == message.id).scalar_subquery()
        sender_values: dict[str, Any] = {"last_message_pos": pos}
        if visible:
            sender_values["has_sent"] = True
        await self._session.execute(
            update(members).where(members.c.user_id == sender, members.c.peer_id == recipient).values(**sender_values)
        )
        if visible:
            await self._session.execute(
                update(members)
                .where(members.c.user_id == recipient, members.c.peer_id == sender)
                .values(last_message_pos=pos)
            )
        return visible and not has_sent[sender] and has_sent[recipient]

    async def state(self, user_id: int, peer_id: int) -> ConversationState | None:
        pair = Pair.of(user_id, peer_id)
        stmt = select(
            conversations.c.last_seq,
            func.coalesce(self._read_seq(user_id, peer_id), 0).label("read_seq"),
            func.coalesce(self._read_seq(peer_id, user_id), 0).label("peer_read_seq"),
        ).where(_in_pair(conversations, pair))
        row = (await self._session.execute(stmt)).one_or_none()
        if row is None:
            return None
        return ConversationState(
            peer_id=peer_id, last_seq=row.last_seq, read_seq=row.read_seq, peer_read_seq=row.peer_read_seq
        )

    @staticmethod
    def _read_seq(user_id: int, peer_id: int) -> Any:
        members = conversation_members
        return (
            select(members.c.read_seq)
            .where(members.c.user_id == user_id, members.c.peer_id == peer_id)
            .scalar_subquery()
        )

    async def set_read_seq(self, user_id: int, peer_id: int, seq: int) -> None:
        members = conversation_members
        stmt = upsert(self._session, members).values(user_id=user_id, peer_id=peer_id, read_seq=seq)
        # Never backwards, even if two readers race.
        stmt = stmt.on_conflict_do_update(
            index_elements=["user_id", "peer_id"],
            set_={
                "read_seq": case(
                    (stmt.excluded.read_seq > members.c.read_seq, stmt.excluded.read_seq), else_=members.c.read_seq
                )
            },
        )
        await self._session.execute(stmt)

    async def summaries(self, user_id: int, *, before: str | None, limit: int) -> list[ConversationSummary]:
        me = conversation_members
        peer = conversation_members.alias("peer")
        other = messages.alias("other")
        # Both subqueries correlate with the outer row (``me`` and the last message).
        peer_read_seq = (
            select(peer.c.read_seq).where(peer.c.user_id == me.c.peer_id, peer.c.peer_id == me.c.user_id)
        ).scalar_subquery()
        unread = (
            select(func.count())
            .select_from(other)
            .where(
                other.c.low_id == messages.c.low_id,
                other.c.high_id == messages.c.high_id,
                other.c.recipient_id == me.c.user_id,
                ~other.c.withheld,
                other.c.seq > me.c.read_seq,
            )
        ).scalar_subquery()
        stmt = (
            select(
                *MESSAGE_COLUMNS,
                me.c.peer_id,
                me.c.read_seq,
                me.c.last_message_pos,
                conversations.c.last_seq,
                func.coalesce(peer_read_seq, 0).label("peer_read_seq"),
                unread.label("unread_count"),
            )
            .select_from(
                me.join(messages, messages.c.pos == me.c.last_message_pos).join(
                    conversations,
                    and_(conversations.c.low_id == messages.c.low_id, conversations.c.high_id == messages.c.high_id),
                )
            )
            .where(me.c.user_id == user_id, me.c.last_message_pos.is_not(None))
            .order_by(me.c.last_message_pos.desc())
            .limit(limit)
        )
        if before is not None:
            stmt = stmt.where(me.c.last_message_pos < _cursor_pos(before))
        rows = (await self._session.execute(stmt)).all()
        return [
            ConversationSummary(
                state=ConversationState(
                    peer_id=row.peer_id,
                    last_seq=row.last_seq,
                    read_seq=row.read_seq,
                    peer_read_seq=row.peer_read_seq,
                ),
                last_message=_message(row),
                unread_count=row.unread_count,
                cursor=str(row.last_message_pos),
            )
            for row in rows
        ]


class SqlAlchemyMessageRepository(MessageRepository):
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def by_client_id(self, sender_id: int, client_msg_id: str) -> Message | None:
        stmt = select(*MESSAGE_COLUMNS).where(
            messages.c.sender_id == sender_id, messages.c.client_msg_id == client_msg_id
        )
        row = (await self._session.execute(stmt)).one_or_none()
        return None if row is None else _message(row)

    async def add(self, message: Message) -> None:
        pair = message.pair
        stmt = insert(messages).values(
            id=message.id,
            low_id=pair.low,
            high_id=pair.high,
            seq=message.seq,
            sender_id=message.sender_id,
            recipient_id=message.recipient_id,
            body=message.body,
            client_msg_id=message.client_msg_id,
            created_at=message.created_at,
            delivered_at=message.delivered_at,
            read_at=message.read_at,
            withheld=message.withheld,
        )
        try:
            await self._session.execute(stmt)
        except IntegrityError as exc:
            # On PostgreSQL the transaction is aborted now; the caller starts a new one.
            if _is_duplicate_client_msg_id(exc):
                raise DuplicateMessageError(message.client_msg_id) from exc
            raise

    async def pending_for(self, recipient_id: int, *, limit: int) -> list[Message]:
        stmt = (
            select(*MESSAGE_COLUMNS)
            .where(messages.c.recipient_id == recipient_id, _pending())
            .order_by(messages.c.pos)
            .limit(limit)
        )
        return [_message(row) for row in await self._session.execute(stmt)]

    async def still_pending(self, recipient_id: int, ids: Iterable[str]) -> set[str]:
        wanted = list(dict.fromkeys(ids))
        if not wanted:
            return set()
        stmt = select(messages.c.id).where(
            messages.c.id.in_(wanted), messages.c.recipient_id == recipient_id, _pending()
        )
        return set((await self._session.execute(stmt)).scalars())

    async def mark_delivered(self, recipient_id: int, ids: Iterable[str], *, now: datetime) -> list[Delivered]:
        wanted = list(dict.fromkeys(ids))
        if not wanted:
            return []
        # The rows are locked in storage order (as mark_read locks them, so the two never
        # deadlock) and the condition is re-checked on each locked row: of two concurrent
        # acknowledgements of one message only one returns it.
        targets = (
            select(messages.c.pos)
            .where(messages.c.id.in_(wanted), messages.c.recipient_id == recipient_id, _pending())
            .order_by(messages.c.pos)
            .with_for_update()
        )
        stmt = (
            update(messages)
            .where(messages.c.pos.in_(targets))
            .values(delivered_at=now)
            .returning(messages.c.id, messages.c.sender_id, messages.c.recipient_id)
        )
        found = {
            row.id: Delivered(id=row.id, sender_id=row.sender_id, recipient_id=row.recipient_id)
            for row in await self._session.execute(stmt)
        }
        return [found[message_id] for message_id in wanted if message_id in found]

    async def mark_read(self, recipient_id: int, pair: Pair, up_to_seq: int, *, now: datetime) -> list[Delivered]:
        changing = and_(
            _in_pair(messages, pair),
            messages.c.recipient_id == recipient_id,
            ~messages.c.withheld,
            messages.c.seq <= up_to_seq,
            or_(messages.c.read_at.is_(None), messages.c.delivered_at.is_(None)),
        )
        # Lock what changes, in storage order, and learn which of it was not delivered yet.
        locked = await self._session.execute(
            select(messages.c.id, messages.c.sender_id, messages.c.recipient_id, messages.c.delivered_at)
            .where(changing)
            .order_by(messages.c.pos)
            .with_for_update()
        )
        newly = [
            Delivered(id=row.id, sender_id=row.sender_id, recipient_id=row.recipient_id)
            for row in locked
            if row.delivered_at is None
        ]
        at = literal(now, UtcDateTime())
        await self._session.execute(
            update(messages)
            .where(changing)
            .values(
                read_at=func.coalesce(messages.c.read_at, at), delivered_at=func.coalesce(messages.c.delivered_at, at)
            )
        )
        return newly

    async def history(
        self, viewer_id: int, pair: Pair, *, before: int | None, after: int | None, limit: int
    ) -> list[Message]:
        stmt = select(*MESSAGE_COLUMNS).where(
            _in_pair(messages, pair), or_(~messages.c.withheld, messages.c.sender_id == viewer_id)
        )
        if after is not None:
            stmt = stmt.where(messages.c.seq > after).order_by(messages.c.seq)
        else:
            if before is not None:
                stmt = stmt.where(messages.c.seq < before)
            stmt = stmt.order_by(messages.c.seq.desc())
        return [_message(row) for row in await self._session.execute(stmt.limit(limit))]
