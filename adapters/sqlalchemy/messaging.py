"""SQLAlchemy implementations of the messaging repositories (conversations, messages), in Core.

:class:`domain.messages.Message` is a frozen snapshot, so messages are not mapped: rows become
``Message``\\ s by hand (:func:`_message`).

The statements that run for every message (the send batch, acknowledgements, offline batches)
are plain SQL per dialect (:mod:`adapters.sqlalchemy.fastpath.hot_sql`) run at the driver level
(:class:`adapters.sqlalchemy.fastpath.driver.Driver`); the rest is Core.

Concurrency. :meth:`SqlAlchemyConversationRepository.append` reserves seqs by incrementing the
conversations' rows with one ``INSERT … ON CONFLICT DO UPDATE … RETURNING``; on PostgreSQL those
rows stay locked until the transaction ends, so the writers of one conversation queue behind each
other from there on and ``seq`` order is commit order (a rolled-back batch gives its seqs back).
On SQLite every transaction starts with ``BEGIN IMMEDIATE`` (see :mod:`adapters.sqlalchemy.engine`),
which serialises all writers. A batch touches few statements whatever its size: one upsert for the
seqs, one read of the members' state (none once they are known), one multi-row insert, one update
of the conversations' last visible message, and an upsert of the member rows that are new or
change (none in a steady conversation).
"""

from __future__ import annotations

import re
from collections import Counter
from typing import TYPE_CHECKING, Any

from sqlalchemy import BigInteger, and_, case, func, literal, or_, select, update
from sqlalchemy.exc import IntegrityError

from adapters.sqlalchemy.fastpath import hot_sql
from adapters.sqlalchemy.fastpath.driver import Driver
from adapters.sqlalchemy.orm import UtcDateTime, conversation_members, conversations, messages
from adapters.sqlalchemy.upsert import upsert
from application.ports import (
    Appended,
    ConversationRepository,
    ConversationState,
    ConversationSummary,
    DuplicateMessageError,
    MessageRepository,
)
from domain.delivery import Delivered
from domain.errors import InvalidInputError
from domain.messages import Message, NewMessage, Pair, contacts_made

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
    from datetime import datetime

    from sqlalchemy import Table
    from sqlalchemy.ext.asyncio import AsyncSession

    from adapters.sqlalchemy.fastpath.memo import StoreMemo

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


def _message(row: Sequence[Any], when: Callable[[Any], Any] | None = None) -> Message:
    """A row that starts with the message columns (:data:`MESSAGE_COLUMNS`, or the hot statements'
    ``m.id, m.seq, …``) as a Message, unpacked by position (a Row's attribute access costs a key
    lookup per column, on the drain's hot path). ``when`` converts the timestamps of driver-level
    rows (:meth:`Driver.when`); Core rows come converted."""
    message_id, seq, sender_id, recipient_id, body, client_msg_id, created_at, delivered_at, read_at, withheld = row[
        :10
    ]
    if when is not None:
        created_at, delivered_at, read_at = when(created_at), when(delivered_at), when(read_at)
    return Message(
        id=message_id,
        seq=seq,
        sender_id=sender_id,
        recipient_id=recipient_id,
        body=body,
        client_msg_id=client_msg_id,
        created_at=created_at,
        delivered_at=delivered_at,
        read_at=read_at,
        withheld=bool(withheld),
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


def _pair_key(pair: Pair) -> tuple[int, int]:
    return (pair.low, pair.high)


def _is_duplicate_client_msg_id(exc: IntegrityError) -> bool:
    text = str(exc.orig)
    # PostgreSQL names the constraint; SQLite names its columns.
    return "uq_messages_sender_id" in text or "messages.sender_id, messages.client_msg_id" in text


class SqlAlchemyConversationRepository(ConversationRepository):
    def __init__(self, session: AsyncSession, memo: StoreMemo) -> None:
        self._session = session
        self._memo = memo
        self.learned: set[tuple[int, int]] = set()  # for the memo once this transaction commits

    async def append(self, drafts: Sequence[NewMessage]) -> list[Appended]:
        if not drafts:
            return []
        driver = await Driver.of(self._session)
        pairs = [draft.pair for draft in drafts]
        seqs = await self._reserve_seqs(driver, pairs)
        stored = [draft.stored(next(seqs[pair])) for draft, pair in zip(drafts, pairs, strict=True)]
        keys = sorted({key for m in stored for key in ((m.sender_id, m.recipient_id), (m.recipient_id, m.sender_id))})
        has_sent = await self._has_sent(driver, keys)
        existing = dict(has_sent)  # the member rows that exist, as they were
        made = contacts_made(stored, has_sent)
        self.learned.update(key for key, sent in has_sent.items() if sent)
        stamps = {at: driver.stamp(at) for at in {m.created_at for m in stored}}  # a batch shares its time
        rows = [
            (
                m.id,
                pair.low,
                pair.high,
                m.seq,
                m.sender_id,
                m.recipient_id,
                m.body,
                m.client_msg_id,
                stamps[m.created_at],
                m.withheld,
            )
            for m, pair in zip(stored, pairs, strict=True)
        ]
        try:
            positions = await self._insert(driver, rows)
        except IntegrityError as exc:
            # On PostgreSQL the transaction is aborted now; the caller starts a new one.
            if _is_duplicate_client_msg_id(exc):
                raise DuplicateMessageError(str(exc.orig)) from exc
            raise
        last_visible: dict[Pair, int] = {}  # per conversation, the last message both see
        withheld: dict[tuple[int, int], int] = {}  # per (sender, recipient), the last one withheld
        for m, pair in zip(stored, pairs, strict=True):
            pos = positions[m.id]
            if m.withheld:
                key = (m.sender_id, m.recipient_id)
                withheld[key] = max(pos, withheld.get(key, 0))
            else:
                last_visible[pair] = max(pos, last_visible.get(pair, 0))
        if last_visible:
            await driver.many(hot_sql.SET_LAST_POS, [(pos, p.low, p.high) for p, pos in last_visible.items()], 3)
        # Only the member rows that are new (``existing`` has no entry: None) or change: in a
        # steady conversation, none.
        members = [
            (u, p, has_sent.get((u, p), False), withheld.get((u, p)))
            for u, p in keys
            if existing.get((u, p)) != has_sent.get((u, p), False) or (u, p) in withheld
        ]
        if members:
            await driver.many(hot_sql.UPSERT_MEMBERS, members, 4)
        return [Appended(message=m, became_contacts=b) for m, b in zip(stored, made, strict=True)]

    @staticmethod
    async def _insert(driver: Driver, rows: list[tuple[Any, ...]]) -> dict[str, int]:
        """Insert the message rows (id first); their storage positions by id, in the rows' order."""
        if driver.pg:
            return dict(await driver.rows(hot_sql.INSERT_MESSAGES, driver.table(rows, 10)))
        ((top,),) = await driver.rows(hot_sql.LAST_POSITION, ())
        positioned = [(top + i, *row) for i, row in enumerate(rows, 1)]
        await driver.many(hot_sql.INSERT_MESSAGES_AT, positioned, 11)
        return {row[1]: row[0] for row in positioned}

    async def _has_sent(self, driver: Driver, keys: list[tuple[int, int]]) -> dict[tuple[int, int], bool]:
        """``has_sent`` of these member rows (missing: False). ``has_sent`` never goes back to
        False, so keys known to be True (:class:`StoreMemo`) need no query; in a steady state none
        does. The conversations' rows are locked (PostgreSQL) until the end of the transaction, so
        no other writer changes these rows' ``has_sent`` meanwhile."""
        known = self._memo.sent
        found = dict.fromkeys((key for key in keys if key in known), True)
        unknown = [key for key in keys if key not in known]
        if unknown:
            rows = await driver.rows(hot_sql.MEMBERS_HAS_SENT, driver.table(unknown, 2))
            found.update(((user_id, peer_id), bool(sent)) for user_id, peer_id, sent in rows)
        return found

    @staticmethod
    async def _reserve_seqs(driver: Driver, pairs: list[Pair]) -> dict[Pair, Iterator[int]]:
        """Reserve a seq for each of ``pairs`` (the drafts' conversations), in one upsert; the rows
        are locked in pair order, so concurrent batches queue instead of deadlocking."""
        counts = Counter(pairs)
        params = [(p.low, p.high, counts[p]) for p in sorted(counts, key=_pair_key)]
        reserved: dict[Pair, Iterator[int]] = {}
        for low_id, high_id, last_seq in await driver.rows(hot_sql.RESERVE_SEQS, driver.table(params, 3)):
            pair = Pair(low_id, high_id)
            reserved[pair] = iter(range(last_seq - counts[pair] + 1, last_seq + 1))
        return reserved

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

    async def peers_of(self, user_id: int, *, after_id: int | None, limit: int) -> list[int]:
        members = conversation_members
        stmt = select(members.c.peer_id).where(members.c.user_id == user_id)
        if after_id is not None:
            stmt = stmt.where(members.c.peer_id > after_id)
        stmt = stmt.order_by(members.c.peer_id).limit(limit)
        return list((await self._session.execute(stmt)).scalars())

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
        # The last message the user sees: the conversation's last visible one, or the user's own
        # withheld one if later. Sorted by it; a conversation of withheld messages only is listed
        # to its sender alone.
        shared, own = func.coalesce(conversations.c.last_pos, 0), func.coalesce(me.c.last_withheld_pos, 0)
        last_pos = case((own > shared, own), else_=shared)
        low = case((me.c.user_id < me.c.peer_id, me.c.user_id), else_=me.c.peer_id)
        high = case((me.c.user_id < me.c.peer_id, me.c.peer_id), else_=me.c.user_id)
        # First the page (the user's conversations sorted by that position, cut at ``limit``),
        # then the per-conversation counts for that page only: computed before the cut they would
        # cost the user's whole inbox on every page.
        page = (
            select(me.c.peer_id, me.c.read_seq, conversations.c.last_seq, last_pos.label("pos"))
            .select_from(me.join(conversations, and_(conversations.c.low_id == low, conversations.c.high_id == high)))
            .where(me.c.user_id == user_id, last_pos > 0)
            .order_by(last_pos.desc())
            .limit(limit)
        )
        if before is not None:
            page = page.where(last_pos < _cursor_pos(before))
        latest = page.subquery("latest")
        peer_read_seq = (
            select(peer.c.read_seq).where(peer.c.user_id == latest.c.peer_id, peer.c.peer_id == user_id)
        ).scalar_subquery()
        unread = (
            select(func.count())
            .select_from(other)
            .where(
                other.c.low_id == messages.c.low_id,
                other.c.high_id == messages.c.high_id,
                other.c.recipient_id == user_id,
                ~other.c.withheld,
                other.c.seq > latest.c.read_seq,
            )
        ).scalar_subquery()
        stmt = (
            select(
                *MESSAGE_COLUMNS,
                latest.c.peer_id,
                latest.c.read_seq,
                messages.c.pos,
                latest.c.last_seq,
                func.coalesce(peer_read_seq, 0).label("peer_read_seq"),
                unread.label("unread_count"),
            )
            .select_from(latest.join(messages, messages.c.pos == latest.c.pos))
            .order_by(messages.c.pos.desc())
        )
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
                cursor=str(row.pos),
            )
            for row in rows
        ]


class SqlAlchemyMessageRepository(MessageRepository):
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def by_client_ids(self, keys: Iterable[tuple[int, str]]) -> dict[tuple[int, str], Message]:
        wanted = sorted(set(keys))
        if not wanted:
            return {}
        driver = await Driver.of(self._session)
        found = [
            _message(row, driver.when) for row in await driver.rows(hot_sql.BY_CLIENT_IDS, driver.table(wanted, 2))
        ]
        return {(m.sender_id, m.client_msg_id): m for m in found}

    async def pending_for(self, recipient_id: int, *, limit: int, excluding: Collection[str] = ()) -> list[Message]:
        driver = await Driver.of(self._session)
        left_out = driver.table([(message_id,) for message_id in excluding], 1)
        rows = await driver.rows(hot_sql.PENDING_FOR, (recipient_id, *left_out, limit))
        return [_message(row, driver.when) for row in rows]

    async def still_pending(self, recipient_id: int, ids: Iterable[str]) -> set[str]:
        wanted = list(dict.fromkeys(ids))
        if not wanted:
            return set()
        stmt = select(messages.c.id).where(
            messages.c.id.in_(wanted), messages.c.recipient_id == recipient_id, _pending()
        )
        return set((await self._session.execute(stmt)).scalars())

    async def mark_delivered(
        self, acks: Sequence[tuple[int, Iterable[str]]], *, now: datetime
    ) -> list[list[Delivered]]:
        wanted = [[(recipient, message_id) for message_id in dict.fromkeys(ids)] for recipient, ids in acks]
        keys = [(message_id, recipient) for ack in wanted for recipient, message_id in ack]
        if not keys:
            return [[] for _ in acks]
        driver = await Driver.of(self._session)
        rows = await driver.rows(hot_sql.MARK_DELIVERED, (driver.stamp(now), *driver.table(keys, 2)))
        found = {
            (recipient_id, message_id): Delivered(id=message_id, sender_id=sender_id, recipient_id=recipient_id)
            for message_id, sender_id, recipient_id in rows
        }
        # An id acknowledged twice in one call is newly delivered to the first acknowledgement only.
        return [[d for key in ack if (d := found.pop(key, None)) is not None] for ack in wanted]

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
        # ``seq`` is a 32-bit INTEGER column, while a client may name any seq up to 2^63-1: the
        # bound travels as a BIGINT (PostgreSQL refuses a larger value bound as the column's type).
        if after is not None:
            stmt = stmt.where(messages.c.seq > literal(after, BigInteger())).order_by(messages.c.seq)
        else:
            if before is not None:
                stmt = stmt.where(messages.c.seq < literal(before, BigInteger()))
            stmt = stmt.order_by(messages.c.seq.desc())
        return [_message(row) for row in await self._session.execute(stmt.limit(limit))]
