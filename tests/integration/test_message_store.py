"""The message store's contract (messages, conversations, contacts, blocks), the same test bodies on
the SQLAlchemy store (SQLite through both drivers, PostgreSQL) and on the unit tests' fake store
(:class:`tests.unit.fakes.InMemoryStore`), so that unit tests on the fake rely on what the real
store does.

Concurrent writers each have their own unit of work (their own connection and transaction), the
way concurrent ``sendMessage`` batches of different processes do. Those cases, and the ones about
tables, statements or the schema, run on the SQL store only (:data:`SQL_ONLY`): the fake publishes
a whole snapshot on commit and does not model concurrent transactions.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import event, func, insert, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from adapters.memory.presence import InMemoryPresenceRegistry
from adapters.sqlalchemy.fastpath import hot_sql
from adapters.sqlalchemy.fastpath.memo import StoreMemo
from adapters.sqlalchemy.orm import contacts, conversation_members, conversations, messages
from adapters.sqlalchemy.uow import SqlAlchemyUnitOfWork
from application.common import Principal
from application.events import Event
from application.group_commit import GroupCommit
from application.messaging import Send, SendMessage
from application.ports import Appended, ConversationState, DuplicateMessageError, UnitOfWork
from domain.delivery import Delivered
from domain.errors import InvalidInputError
from domain.messages import Message, NewMessage, Pair
from domain.users import User, email_key, name_key
from tests.integration.conftest import BACKENDS, sql_unit_of_work_factory
from tests.unit.fakes import InMemoryStore

UowFactory = Callable[[], UnitOfWork]
Sessions = async_sessionmaker[AsyncSession]


FAKE = "fake"
SQL_BACKENDS = [*BACKENDS, "sqlite-thread"]


@pytest.fixture(params=[*SQL_BACKENDS, FAKE])
def backend(request: pytest.FixtureRequest) -> str:
    """The store on every backend, SQLite through both drivers (``CHAT_SQLITE_DRIVER``: the hot
    statements run on the ``sqlite3`` connection inline and through aiosqlite otherwise), and the fake."""
    name: str = request.param
    return name


SQL_ONLY = pytest.mark.parametrize("backend", SQL_BACKENDS, indirect=True)
"""For a case the fake cannot or need not keep: concurrent transactions, tables and statements."""


@pytest.fixture
def uow_factory(backend: str, request: pytest.FixtureRequest) -> UowFactory:
    """Units of work of the store under test (the SQL ones share one memo, as in the container)."""
    if backend == FAKE:
        return InMemoryStore().unit_of_work
    sessions: Sessions = request.getfixturevalue("session_factory")
    return sql_unit_of_work_factory(sessions)


@pytest.fixture
def sql_sessions(backend: str, request: pytest.FixtureRequest) -> Sessions | None:
    """The SQL store's sessions, to look at its tables; None for the fake."""
    if backend == FAKE:
        return None
    sessions: Sessions = request.getfixturevalue("session_factory")
    return sessions


NOW = datetime(2026, 11, 24, 5, 20, 21, 89_000, tzinfo=UTC)
LATER = NOW + timedelta(minutes=5)
_numbers = itertools.count(14155550100)


async def add_users(uow_factory: UowFactory, *names: str) -> list[int]:
    """Store one user per name in one transaction; their ids in the same order."""
    stored: list[User] = []
    async with uow_factory() as uow:
        for name in names:
            number = next(_numbers)
            email = f"{name.casefold()}.{number}@example.com"
            user = User(
                name=name,
                name_key=name_key(name),
                email=email,
                email_key=email_key(email),
                phone_number=f"+{number}",
                password_hash="$argon2id$not-a-real-hash",
                created_at=NOW,
            )
            await uow.users.add(user)
            stored.append(user)
        await uow.commit()
    return [user.uid for user in stored]


def draft(
    sender: int, to: int, body: str = "hi", *, client_msg_id: str | None = None, withheld: bool = False
) -> NewMessage:
    return NewMessage(
        id=str(uuid.uuid4()),
        sender_id=sender,
        recipient_id=to,
        body=body,
        client_msg_id=client_msg_id or uuid.uuid4().hex,
        created_at=NOW,
        withheld=withheld,
    )


async def send(
    uow_factory: UowFactory,
    sender: int,
    to: int,
    body: str = "hi",
    *,
    client_msg_id: str | None = None,
    withheld: bool | None = None,
    hold_s: float = 0.0,
) -> tuple[Message, bool]:
    """What ``SendMessage`` does in its transaction, for one message; the stored message and whether
    the two just became contacts. ``withheld=None`` asks the store whether ``to`` blocked ``sender``."""
    key = (sender, client_msg_id or uuid.uuid4().hex)
    async with uow_factory() as uow:
        existing = await uow.messages.by_client_ids([key])
        if key in existing:
            return existing[key], False
        if withheld is None:
            withheld = (to, sender) in await uow.blocks.among([(to, sender)])
        (appended,) = await uow.conversations.append([draft(sender, to, body, client_msg_id=key[1], withheld=withheld)])
        if appended.became_contacts:
            await uow.contacts.add_pairs([(sender, to)])
        await asyncio.sleep(hold_s)  # keep the transaction open while the others try
        await uow.commit()
    return appended.message, appended.became_contacts


async def append(uow_factory: UowFactory, *drafts: NewMessage) -> list[Appended]:
    """Append the drafts in one call and commit."""
    async with uow_factory() as uow:
        appended = await uow.conversations.append(drafts)
        await uow.commit()
    return appended


async def history(
    uow_factory: UowFactory,
    viewer: int,
    peer: int,
    *,
    before: int | None = None,
    after: int | None = None,
    limit: int = 100,
) -> list[Message]:
    async with uow_factory() as uow:
        return await uow.messages.history(viewer, Pair.of(viewer, peer), before=before, after=after, limit=limit)


async def seqs(uow_factory: UowFactory, viewer: int, peer: int, **window: int) -> list[int]:
    return [m.seq for m in await history(uow_factory, viewer, peer, **window)]


async def pending(uow_factory: UowFactory, recipient: int, limit: int = 100) -> list[Message]:
    async with uow_factory() as uow:
        return await uow.messages.pending_for(recipient, limit=limit)


async def block(uow_factory: UowFactory, blocker_id: int, blocked_id: int) -> None:
    async with uow_factory() as uow:
        await uow.blocks.block(blocker_id, blocked_id, now=NOW)
        await uow.commit()


async def count(session_factory: Sessions, table: object, *where: object) -> int:
    async with session_factory() as session:
        stmt = select(func.count()).select_from(table).where(*where)  # type: ignore[arg-type]
        return int((await session.execute(stmt)).scalar_one())


async def state(uow_factory: UowFactory, user_id: int, peer_id: int) -> ConversationState | None:
    async with uow_factory() as uow:
        return await uow.conversations.state(user_id, peer_id)


# --- sequence numbers and storage ---------------------------------------------------------------


async def test_seq_counts_from_one_per_conversation_and_the_message_reads_back(uow_factory: UowFactory) -> None:
    ann, bob, cid = await add_users(uow_factory, "Ann", "Bob", "Cid")
    sent = [
        (await send(uow_factory, s, t, f"m{i}", client_msg_id=f"c{i}"))[0]
        for i, (s, t) in enumerate([(ann, bob), (bob, ann), (ann, cid), (ann, bob), (cid, ann), (bob, ann)])
    ]
    assert [m.seq for m in sent] == [1, 2, 1, 3, 2, 4]
    assert await seqs(uow_factory, ann, bob) == [4, 3, 2, 1]
    assert await seqs(uow_factory, cid, ann) == [2, 1]
    assert await state(uow_factory, ann, bob) == ConversationState(peer_id=bob, last_seq=4, read_seq=0, peer_read_seq=0)
    assert await state(uow_factory, bob, cid) is None

    async with uow_factory() as uow:
        found = await uow.messages.by_client_ids([(ann, "c3"), (bob, "c3"), (ann, "nope")])
        assert await uow.messages.by_client_ids([]) == {}
    assert list(found) == [(ann, "c3")]
    loaded = found[(ann, "c3")]
    assert loaded == sent[3]
    assert loaded == Message(
        id=sent[3].id,
        seq=3,
        sender_id=ann,
        recipient_id=bob,
        body="m3",
        client_msg_id="c3",
        created_at=NOW,
        delivered_at=None,
        read_at=None,
        withheld=False,
    )
    assert loaded.created_at.tzinfo is not None


async def test_bodies_are_stored_as_sent(uow_factory: UowFactory) -> None:
    ann, bob = await add_users(uow_factory, "Ann", "Bob")
    body = "  Grüße 👋🏽\n\tzweite Zeile \u200b" + "x" * 4000
    message, _ = await send(uow_factory, ann, bob, body)
    (loaded,) = await history(uow_factory, bob, ann)
    assert loaded.body == body
    assert loaded == message


# SQL only: concurrent transactions (the fake does not model them).
@SQL_ONLY
async def test_twenty_concurrent_senders_get_seqs_one_to_twenty(uow_factory: UowFactory) -> None:
    ann, bob = await add_users(uow_factory, "Ann", "Bob")
    results = await asyncio.gather(
        *(send(uow_factory, *((ann, bob) if i % 2 else (bob, ann)), f"m{i}", hold_s=0.02) for i in range(20))
    )

    assert sorted(m.seq for m, _ in results) == list(range(1, 21))
    assert await seqs(uow_factory, ann, bob, after=0) == list(range(1, 21))
    assert sum(became for _, became in results) == 1
    assert await state(uow_factory, bob, ann) == ConversationState(
        peer_id=ann, last_seq=20, read_seq=0, peer_read_seq=0
    )
    # Storage order follows seq within the conversation: pending messages come out in seq order.
    for recipient in (ann, bob):
        got = [m.seq for m in await pending(uow_factory, recipient)]
        assert got == sorted(got)
        assert len(got) == 10


# SQL only: concurrent transactions (the fake does not model them).
@SQL_ONLY
async def test_concurrent_senders_in_several_conversations_count_independently(uow_factory: UowFactory) -> None:
    hub, *others = await add_users(uow_factory, "Hub", "A", "B", "C", "D")
    results = await asyncio.gather(
        *(send(uow_factory, hub, others[i % 4], f"m{i}", hold_s=0.01) for i in range(20)),
        *(send(uow_factory, others[i % 4], hub, f"r{i}", hold_s=0.01) for i in range(8)),
    )
    by_peer: dict[int, list[int]] = {}
    for message, _ in results:
        by_peer.setdefault(message.pair.other(hub), []).append(message.seq)
    assert {peer: sorted(s) for peer, s in by_peer.items()} == {peer: list(range(1, 8)) for peer in others}
    assert sum(became for _, became in results) == 4


async def test_append_refuses_a_second_message_with_the_same_sender_and_client_id(
    uow_factory: UowFactory, sql_sessions: Sessions | None
) -> None:
    ann, bob, cid = await add_users(uow_factory, "Ann", "Bob", "Cid")
    first, _ = await send(uow_factory, ann, bob, client_msg_id="same")
    await send(uow_factory, bob, ann, client_msg_id="same")  # another sender: fine
    await send(uow_factory, ann, cid, client_msg_id="other")

    async with uow_factory() as uow:
        with pytest.raises(DuplicateMessageError):
            await uow.conversations.append([draft(ann, cid, "again", client_msg_id="same")])
    assert await state(uow_factory, ann, cid) == ConversationState(peer_id=cid, last_seq=1, read_seq=0, peer_read_seq=0)
    assert [m.body for m in await history(uow_factory, cid, ann)] == ["hi"]
    if sql_sessions is not None:  # the tables, and the foreign keys the fake does not check
        assert await count(sql_sessions, messages, messages.c.client_msg_id == "same") == 2
        # Other integrity problems are not reported as duplicates.
        async with uow_factory() as uow:
            with pytest.raises(IntegrityError):
                await uow.conversations.append([draft(ann, bob + 1000, "x", client_msg_id="x")])
    async with uow_factory() as uow:
        assert await uow.messages.by_client_ids([(ann, "same")]) == {(ann, "same"): first}


# SQL only: concurrent transactions (the fake does not model them).
@SQL_ONLY
async def test_a_raced_client_msg_id_is_stored_once_and_its_seq_is_not_lost(
    uow_factory: UowFactory, session_factory: Sessions
) -> None:
    ann, bob = await add_users(uow_factory, "Ann", "Bob")

    async def store_once() -> Message | None:
        """Both writers skip the ``by_client_ids`` check, so both reach the insert."""
        async with uow_factory() as uow:
            try:
                (appended,) = await uow.conversations.append([draft(ann, bob, "hello", client_msg_id="raced")])
            except DuplicateMessageError:
                return None
            await asyncio.sleep(0.1)
            await uow.commit()
        return appended.message

    outcomes = await asyncio.gather(store_once(), store_once())
    stored = [m for m in outcomes if m is not None]
    assert len(stored) == 1
    assert stored[0].seq == 1
    assert await count(session_factory, messages) == 1
    # The loser's transaction was rolled back, its seq with it: no gap.
    nxt, _ = await send(uow_factory, bob, ann)
    assert nxt.seq == 2


# SQL only: concurrent transactions (the fake does not model them).
@pytest.mark.parametrize("processes", [1, 4], ids=["one-group-commit", "four-group-commits"])
@SQL_ONLY
async def test_the_send_use_case_raced_with_one_client_id_stores_once(uow_factory: UowFactory, processes: int) -> None:
    """Four sends of one ``clientMsgId`` at once: sharing one batch (one process), or each in its
    own transaction racing the others (one :class:`GroupCommit` each, like four processes)."""
    ann, bob = await add_users(uow_factory, "Ann", "Bob")
    published: list[tuple[int, Event]] = []

    class Notifier:
        def publish(self, user_id: int, event: Event, *, skip_connection: str | None = None) -> None:
            published.append((user_id, event))

    class Clock:
        def now(self) -> datetime:
            return NOW

    class Ids:
        def new_id(self) -> str:
            return str(uuid.uuid4())

    writes = [GroupCommit(uow_factory) for _ in range(processes)]
    senders = [
        SendMessage(
            writes=group,
            notifier=Notifier(),
            presence=InMemoryPresenceRegistry(),
            clock=Clock(),
            ids=Ids(),
            max_body_chars=4000,
        )
        for group in writes
    ]
    actor, cmd = Principal(user_id=ann, sid="sid-ann"), Send(to=bob, body="once", client_msg_id="cm-1")
    results = await asyncio.gather(*(senders[i % processes](actor, cmd) for i in range(4)))

    assert sorted(r.duplicate for r in results) == [False, True, True, True]
    assert len({r.message.id for r in results}) == 1
    assert results[0].message.seq == 1
    assert len(published) == 2  # the recipient and the sender's other connections, once
    assert [m.body for m in await history(uow_factory, bob, ann)] == ["once"]
    assert await state(uow_factory, ann, bob) == ConversationState(peer_id=bob, last_seq=1, read_seq=0, peer_read_seq=0)


# --- one append, many messages ------------------------------------------------------------------


async def test_one_append_numbers_each_conversation_in_order_and_makes_contacts_once(uow_factory: UowFactory) -> None:
    ann, bob, cid = await add_users(uow_factory, "Ann", "Bob", "Cid")
    earlier, _ = await send(uow_factory, ann, bob, "earlier")  # Ann-Bob starts at seq 1
    async with uow_factory() as uow:
        assert await uow.conversations.append([]) == []
    batch = [
        draft(ann, bob, "b2"),
        draft(ann, cid, "c1"),
        draft(bob, ann, "b3"),  # Bob's first reply: contacts
        draft(cid, ann, "c2", withheld=True),  # withheld: never makes contacts
        draft(ann, bob, "b4"),
        draft(bob, ann, "b5"),  # not again
        draft(ann, cid, "c3"),
    ]
    appended = await append(uow_factory, *batch)

    assert [a.message.id for a in appended] == [d.id for d in batch]
    assert [(a.message.body, a.message.seq) for a in appended] == [
        ("b2", 2),
        ("c1", 1),
        ("b3", 3),
        ("c2", 2),
        ("b4", 4),
        ("b5", 5),
        ("c3", 3),
    ]
    assert [a.became_contacts for a in appended] == [False, False, True, False, False, False, False]
    assert [a.message for a in appended] == [d.stored(a.message.seq) for d, a in zip(batch, appended, strict=True)]
    # What was returned is what is stored, and storage order is batch order.
    assert await history(uow_factory, ann, bob, after=0) == [
        earlier,
        *(a.message for a in appended if a.message.pair == Pair.of(ann, bob)),
    ]
    ann_cid = [a.message for a in appended if a.message.pair == Pair.of(ann, cid)]
    assert await history(uow_factory, cid, ann, after=0) == ann_cid  # Cid sees his withheld message
    assert await history(uow_factory, ann, cid, after=0) == [m for m in ann_cid if not m.withheld]
    assert [m.body for m in await pending(uow_factory, ann)] == ["b3", "b5"]
    assert [m.body for m in await pending(uow_factory, bob)] == ["earlier", "b2", "b4"]
    assert [m.body for m in await pending(uow_factory, cid)] == ["c1", "c3"]
    # Both members' state follows the last message each may see.
    assert await state(uow_factory, bob, ann) == ConversationState(peer_id=ann, last_seq=5, read_seq=0, peer_read_seq=0)
    assert await state(uow_factory, cid, ann) == ConversationState(peer_id=ann, last_seq=3, read_seq=0, peer_read_seq=0)
    async with uow_factory() as uow:
        anns = await uow.conversations.summaries(ann, before=None, limit=10)
        cids = await uow.conversations.summaries(cid, before=None, limit=10)
    assert [(r.state.peer_id, r.last_message.body, r.unread_count) for r in anns] == [(cid, "c3", 0), (bob, "b5", 2)]
    assert [(r.state.peer_id, r.last_message.body, r.unread_count) for r in cids] == [(ann, "c3", 2)]

    # Whether an earlier message counted is remembered across appends.
    (cid_again,) = await append(uow_factory, draft(cid, ann, "c4"))
    assert (cid_again.message.seq, cid_again.became_contacts) == (4, True)
    (bob_again,) = await append(uow_factory, draft(bob, ann, "b6"))
    assert (bob_again.message.seq, bob_again.became_contacts) == (6, False)


async def test_a_duplicate_client_msg_id_within_one_append_stores_nothing(
    uow_factory: UowFactory, sql_sessions: Sessions | None
) -> None:
    ann, bob, cid = await add_users(uow_factory, "Ann", "Bob", "Cid")
    async with uow_factory() as uow:
        with pytest.raises(DuplicateMessageError):
            await uow.conversations.append(
                [
                    draft(ann, bob, client_msg_id="dup"),
                    draft(ann, cid, client_msg_id="other"),
                    draft(ann, cid, client_msg_id="dup"),
                ]
            )
    assert await state(uow_factory, ann, bob) is None
    assert await state(uow_factory, ann, cid) is None
    async with uow_factory() as uow:
        assert await uow.messages.by_client_ids([(ann, "dup"), (ann, "other")]) == {}
    if sql_sessions is not None:
        for table in (messages, conversations, conversation_members, contacts):
            assert await count(sql_sessions, table) == 0

    # The same client id from two senders in one append is no duplicate; seqs start over at 1.
    appended = await append(
        uow_factory, draft(ann, bob, client_msg_id="dup"), draft(bob, ann, client_msg_id="dup"), draft(ann, cid)
    )
    assert [(a.message.seq, a.became_contacts) for a in appended] == [(1, False), (2, True), (1, False)]
    async with uow_factory() as uow:
        found = await uow.messages.by_client_ids([(ann, "dup"), (bob, "dup")])
    assert found == {(ann, "dup"): appended[0].message, (bob, "dup"): appended[1].message}


async def test_by_client_ids_returns_only_exact_key_matches(uow_factory: UowFactory) -> None:
    ann, bob, cid = await add_users(uow_factory, "Ann", "Bob", "Cid")
    appended = await append(
        uow_factory,
        draft(ann, bob, client_msg_id="a1"),
        draft(ann, cid, client_msg_id="a2"),
        draft(bob, ann, client_msg_id="b1"),
        draft(cid, bob, client_msg_id="c1"),
    )
    a1, a2, b1, _ = (a.message for a in appended)
    async with uow_factory() as uow:
        # Every stored key not asked for below pairs the sender of one key asked for with the
        # client id of another: (ann, "a2") here; (ann, "a1"), (bob, "b1") and (cid, "c1") in ``missing``.
        crossed = await uow.messages.by_client_ids([(ann, "a1"), (bob, "b1"), (bob, "a2")])
        exact = await uow.messages.by_client_ids(iter([(ann, "a2"), (ann, "a2"), (ann, "a1"), (cid, "a1")]))
        missing = await uow.messages.by_client_ids([(ann, "c1"), (cid, "b1"), (bob, "a1")])
    assert crossed == {(ann, "a1"): a1, (bob, "b1"): b1}
    assert exact == {(ann, "a2"): a2, (ann, "a1"): a1}
    assert missing == {}


# --- withheld messages ----------------------------------------------------------------------------


async def test_withheld_messages_reach_only_their_sender(uow_factory: UowFactory) -> None:
    ann, bob = await add_users(uow_factory, "Ann", "Bob")
    await send(uow_factory, ann, bob, "before the block")
    await block(uow_factory, bob, ann)  # Bob blocked Ann: her messages to him are withheld
    withheld, became = await send(uow_factory, ann, bob, "withheld")
    assert withheld.withheld
    assert not became
    assert withheld.seq == 2
    allowed, _ = await send(uow_factory, bob, ann, "Bob may still write")
    assert not allowed.withheld

    assert [m.body for m in await pending(uow_factory, bob)] == ["before the block"]
    assert [m.seq for m in await history(uow_factory, bob, ann)] == [3, 1]
    assert [m.seq for m in await history(uow_factory, ann, bob)] == [3, 2, 1]
    first = (await history(uow_factory, bob, ann))[1]
    async with uow_factory() as uow:
        assert await uow.messages.still_pending(bob, [withheld.id]) == set()
        assert (await uow.messages.mark_delivered([(bob, [withheld.id])], now=LATER))[0] == []
        assert await uow.messages.mark_read(bob, Pair.of(ann, bob), 3, now=LATER) == [
            Delivered(id=first.id, sender_id=ann, recipient_id=bob)
        ]
        await uow.commit()
    (stored,) = [m for m in await history(uow_factory, ann, bob) if m.id == withheld.id]
    assert (stored.delivered_at, stored.read_at) == (None, None)
    # Not unread for Bob, and the withheld message is not his last message.
    async with uow_factory() as uow:
        (bobs,) = await uow.conversations.summaries(bob, before=None, limit=10)
        (anns,) = await uow.conversations.summaries(ann, before=None, limit=10)
    assert bobs.last_message.id == allowed.id
    assert bobs.unread_count == 1  # "before the block" only (the read pointer has not moved)
    assert anns.last_message.id == allowed.id
    assert anns.state.last_seq == bobs.state.last_seq == 3


async def test_a_conversation_of_only_withheld_messages_is_not_listed_for_the_recipient(
    uow_factory: UowFactory,
) -> None:
    ann, bob = await add_users(uow_factory, "Ann", "Bob")
    message, _ = await send(uow_factory, ann, bob, withheld=True)
    async with uow_factory() as uow:
        assert await uow.conversations.summaries(bob, before=None, limit=10) == []
        (summary,) = await uow.conversations.summaries(ann, before=None, limit=10)
    assert summary.last_message == message
    assert summary.unread_count == 0
    assert await pending(uow_factory, bob) == []
    assert await history(uow_factory, bob, ann) == []


async def test_each_member_sees_the_later_of_the_shared_and_its_own_withheld_message(uow_factory: UowFactory) -> None:
    ann, bob = await add_users(uow_factory, "Ann", "Bob")

    async def last_seen() -> tuple[str, str]:
        async with uow_factory() as uow:
            (anns,) = await uow.conversations.summaries(ann, before=None, limit=10)
            (bobs,) = await uow.conversations.summaries(bob, before=None, limit=10)
        assert anns.cursor == bobs.cursor or anns.last_message.id != bobs.last_message.id
        return anns.last_message.body, bobs.last_message.body

    await send(uow_factory, ann, bob, "shared 1")
    await block(uow_factory, bob, ann)
    await send(uow_factory, ann, bob, "withheld 1")
    assert await last_seen() == ("withheld 1", "shared 1")
    await send(uow_factory, bob, ann, "shared 2")  # later than Ann's withheld message
    assert await last_seen() == ("shared 2", "shared 2")
    await send(uow_factory, ann, bob, "withheld 2")
    await send(uow_factory, ann, bob, "withheld 3")
    assert await last_seen() == ("withheld 3", "shared 2")


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_a_steady_conversation_writes_no_member_rows(uow_factory: UowFactory, session_factory: Sessions) -> None:
    """Member rows are written when new, when ``has_sent`` turns true or for a withheld message:
    once both have written, a message touches the conversation's row, not the members'."""
    ann, bob = await add_users(uow_factory, "Ann", "Bob")
    await send(uow_factory, ann, bob, "first")
    await send(uow_factory, bob, ann, "reply")  # both have sent: nothing left to change
    statements: list[str] = []

    def trace(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        dbapi_connection.driver_connection.raw.set_trace_callback(statements.append)

    engine = session_factory.kw["bind"]
    restarted = StoreMemo()  # a process that knows nothing yet reads the member rows: no writes either
    event.listen(engine.sync_engine.pool, "checkout", trace)
    try:
        await append(uow_factory, draft(ann, bob, "a"), draft(bob, ann, "b"), draft(ann, bob, "c"))
        await append(lambda: SqlAlchemyUnitOfWork(session_factory, restarted), draft(bob, ann, "d"))
    finally:
        event.remove(engine.sync_engine.pool, "checkout", trace)
        async with engine.connect() as conn:  # leave the pooled connection untraced
            (await conn.get_raw_connection()).driver_connection.raw.set_trace_callback(None)
    writes = [s for s in statements if s.lstrip().upper().startswith(("INSERT", "UPDATE"))]
    assert sum("INTO messages" in s for s in writes) == 4
    assert any(s.startswith("UPDATE conversations SET last_pos") for s in writes)
    assert not [s for s in writes if "conversation_members" in s]
    assert any(s.lstrip().upper().startswith("SELECT") and "conversation_members" in s for s in statements)
    async with uow_factory() as uow:
        (anns,) = await uow.conversations.summaries(ann, before=None, limit=10)
    assert anns.last_message.body == "d"
    assert anns.state.last_seq == 6


# --- contacts through append -------------------------------------------------------------------


async def test_append_reports_new_contacts_exactly_once(uow_factory: UowFactory, sql_sessions: Sessions | None) -> None:
    ann, bob, cid = await add_users(uow_factory, "Ann", "Bob", "Cid")

    async def contacts_of(user_id: int) -> list[int]:
        async with uow_factory() as uow:
            return [u.uid for u in await uow.contacts.list_contacts(user_id, after_id=None, limit=10)]

    flow = [(ann, bob), (ann, bob), (bob, ann), (bob, ann), (ann, bob)]
    assert [(await send(uow_factory, s, t))[1] for s, t in flow] == [False, False, True, False, False]
    assert (await contacts_of(ann), await contacts_of(bob)) == ([bob], [ann])
    if sql_sessions is not None:
        assert await count(sql_sessions, contacts) == 2

    # Withheld messages never count: Cid's message to Ann is withheld, so Ann answering is not enough.
    assert (await send(uow_factory, cid, ann, withheld=True))[1] is False
    assert (await send(uow_factory, ann, cid))[1] is False
    assert (await send(uow_factory, ann, cid))[1] is False
    assert (await send(uow_factory, cid, ann, withheld=True))[1] is False
    assert (await send(uow_factory, cid, ann))[1] is True
    assert (await send(uow_factory, cid, ann))[1] is False
    assert (await contacts_of(ann), await contacts_of(cid)) == ([bob, cid], [ann])
    if sql_sessions is not None:
        assert await count(sql_sessions, contacts) == 4


# SQL only: concurrent transactions (the fake does not model them).
@SQL_ONLY
async def test_first_messages_in_both_directions_at_once_make_contacts_once(uow_factory: UowFactory) -> None:
    pairs = await add_users(uow_factory, *(f"U{i}" for i in range(10)))
    # Five pairs in turn, each pair's two first messages at the same time.
    for a, b in zip(pairs[::2], pairs[1::2], strict=True):
        results = await asyncio.gather(send(uow_factory, a, b, hold_s=0.05), send(uow_factory, b, a, hold_s=0.05))
        assert sorted(became for _, became in results) == [False, True]
        assert sorted(m.seq for m, _ in results) == [1, 2]
        # The second to reserve a seq waited for the first, saw its message and made the contacts.
        assert max(results, key=lambda r: r[0].seq)[1]


# SQL only: concurrent transactions (the fake does not model them).
@pytest.mark.parametrize("member_rows", [False, True], ids=["new-pair", "member-rows-exist"])
@SQL_ONLY
async def test_appends_racing_in_both_directions_make_contacts_once(uow_factory: UowFactory, member_rows: bool) -> None:
    """Two units of work append at the same time a first message in each direction of a pair:
    a new pair, or one whose member rows already exist (from a withheld message), so that neither
    append creates them. The second to reserve a seq waits for the first, so it sees the other side."""
    users = await add_users(uow_factory, *(f"U{i}" for i in range(6)))

    async def racing(sender: int, to: int) -> Appended:
        async with uow_factory() as uow:
            (appended,) = await uow.conversations.append([draft(sender, to)])
            await asyncio.sleep(0.05)
            await uow.commit()
        return appended

    for a, b in zip(users[::2], users[1::2], strict=True):
        before = 0
        if member_rows:
            await append(uow_factory, draft(a, b, withheld=True))
            before = 1
        results = await asyncio.gather(racing(a, b), racing(b, a))
        assert sorted(r.became_contacts for r in results) == [False, True]
        assert sorted(r.message.seq for r in results) == [before + 1, before + 2]
        assert max(results, key=lambda r: r.message.seq).became_contacts


# --- pending, delivery and read -----------------------------------------------------------------


async def test_pending_is_in_storage_order_and_limited(uow_factory: UowFactory) -> None:
    ann, bob, cid = await add_users(uow_factory, "Ann", "Bob", "Cid")
    order = [(ann, "a1"), (cid, "c1"), (ann, "a2"), (cid, "c2"), (cid, "c3"), (ann, "a3")]
    for sender, body in order:
        await send(uow_factory, sender, bob, body)
    await send(uow_factory, bob, ann, "to ann")

    assert [m.body for m in await pending(uow_factory, bob)] == [body for _, body in order]
    assert [m.body for m in await pending(uow_factory, bob, limit=4)] == ["a1", "c1", "a2", "c2"]
    assert [m.body for m in await pending(uow_factory, ann)] == ["to ann"]
    assert await pending(uow_factory, cid) == []

    first_two = await pending(uow_factory, bob, limit=2)
    async with uow_factory() as uow:
        (await uow.messages.mark_delivered([(bob, [m.id for m in first_two])], now=LATER))[0]
        await uow.commit()
    assert [m.body for m in await pending(uow_factory, bob, limit=2)] == ["a2", "c2"]

    current = await pending(uow_factory, bob, limit=2)
    async with uow_factory() as uow:  # reading the next batch ahead, before the current one is acked
        ahead = await uow.messages.pending_for(bob, limit=2, excluding=[m.id for m in current])
        everything = await uow.messages.pending_for(bob, limit=9, excluding=[])
    assert [m.body for m in ahead] == ["c3", "a3"]  # storage order, the current batch left out
    assert [m.body for m in everything] == ["a2", "c2", "c3", "a3"]


async def test_mark_delivered_returns_only_the_newly_delivered_in_the_given_order(
    uow_factory: UowFactory,
) -> None:
    ann, bob, cid = await add_users(uow_factory, "Ann", "Bob", "Cid")
    to_bob = [(await send(uow_factory, s, bob, f"m{i}"))[0] for i, s in enumerate([ann, cid, ann, cid])]
    to_cid, _ = await send(uow_factory, ann, cid)
    withheld, _ = await send(uow_factory, ann, bob, withheld=True)
    ids = [m.id for m in to_bob]

    async with uow_factory() as uow:
        assert await uow.messages.still_pending(bob, [*ids, to_cid.id, "unknown"]) == set(ids)
        (first,) = await uow.messages.mark_delivered([(bob, [ids[2], ids[0]])], now=NOW)
        await uow.commit()
    assert first == [
        Delivered(id=ids[2], sender_id=ann, recipient_id=bob),
        Delivered(id=ids[0], sender_id=ann, recipient_id=bob),
    ]

    async with uow_factory() as uow:
        (again,) = await uow.messages.mark_delivered(
            [(bob, [ids[3], ids[0], to_cid.id, withheld.id, "unknown", ids[1], ids[3]])], now=LATER
        )
        assert (await uow.messages.mark_delivered([(bob, [])], now=LATER))[0] == []
        await uow.commit()
    assert again == [
        Delivered(id=ids[3], sender_id=cid, recipient_id=bob),
        Delivered(id=ids[1], sender_id=cid, recipient_id=bob),
    ]

    async with uow_factory() as uow:
        assert (await uow.messages.mark_delivered([(bob, ids)], now=LATER))[0] == []
        assert await uow.messages.still_pending(bob, ids) == set()
        assert await uow.messages.still_pending(cid, [to_cid.id]) == {to_cid.id}
        assert await uow.messages.still_pending(cid, []) == set()
    delivered_at = {m.id: m.delivered_at for m in await history(uow_factory, bob, ann)}
    assert delivered_at == {ids[0]: NOW, ids[2]: NOW}
    assert {m.id: m.delivered_at for m in await history(uow_factory, bob, cid)} == {ids[1]: LATER, ids[3]: LATER}


# SQL only: concurrent transactions (the fake does not model them).
@SQL_ONLY
async def test_concurrent_acknowledgements_deliver_each_message_once(uow_factory: UowFactory) -> None:
    ann, bob = await add_users(uow_factory, "Ann", "Bob")
    ids = [(await send(uow_factory, ann, bob))[0].id for _ in range(5)]

    async def ack() -> list[Delivered]:
        async with uow_factory() as uow:
            delivered = (await uow.messages.mark_delivered([(bob, ids)], now=NOW))[0]
            await asyncio.sleep(0.05)
            await uow.commit()
        return delivered

    results = await asyncio.gather(*(ack() for _ in range(4)))
    assert sorted(len(r) for r in results) == [0, 0, 0, 5]


# SQL only: concurrent transactions (the fake does not model them).
@SQL_ONLY
async def test_acknowledgements_and_reads_racing_deliver_each_message_once(uow_factory: UowFactory) -> None:
    """Two devices: one acknowledges (ids in any order), the other reads, at the same time."""
    ann, bob = await add_users(uow_factory, "Ann", "Bob")
    sent = [(await send(uow_factory, ann, bob))[0] for _ in range(30)]
    ids = [m.id for m in sent]

    async def ack(order: list[str]) -> list[Delivered]:
        async with uow_factory() as uow:
            delivered = (await uow.messages.mark_delivered([(bob, order)], now=NOW))[0]
            await asyncio.sleep(0.02)
            await uow.commit()
        return delivered

    async def read(up_to_seq: int) -> list[Delivered]:
        async with uow_factory() as uow:
            delivered = await uow.messages.mark_read(bob, Pair.of(ann, bob), up_to_seq, now=LATER)
            await asyncio.sleep(0.02)
            await uow.commit()
        return delivered

    results = await asyncio.gather(
        ack(list(reversed(ids))), read(30), ack(ids[::2] + ids[1::2]), read(15), ack(sorted(ids))
    )
    delivered = [d.id for result in results for d in result]
    assert sorted(delivered) == sorted(ids)
    assert await pending(uow_factory, bob) == []
    assert all(m.read_at is None or m.read_at == LATER for m in await history(uow_factory, bob, ann))


async def test_mark_read_reads_and_delivers_up_to_seq_and_returns_the_newly_delivered(
    uow_factory: UowFactory,
) -> None:
    ann, bob = await add_users(uow_factory, "Ann", "Bob")
    flow = [(ann, bob), (ann, bob), (bob, ann), (ann, bob), (ann, bob), (ann, bob)]  # seqs 1..6
    sent = [(await send(uow_factory, s, t))[0] for s, t in flow]
    async with uow_factory() as uow:
        await uow.messages.mark_delivered([(bob, [sent[0].id])], now=NOW)  # seq 1 acknowledged earlier
        await uow.commit()

    async with uow_factory() as uow:
        delivered = await uow.messages.mark_read(bob, Pair.of(ann, bob), 4, now=LATER)
        await uow.commit()
    assert delivered == [Delivered(id=sent[i].id, sender_id=ann, recipient_id=bob) for i in (1, 3)]

    by_seq = {m.seq: m for m in await history(uow_factory, ann, bob)}
    assert [(by_seq[s].delivered_at, by_seq[s].read_at) for s in range(1, 7)] == [
        (NOW, LATER),
        (LATER, LATER),
        (None, None),  # Bob's own message: Ann has not read it
        (LATER, LATER),
        (None, None),
        (None, None),
    ]
    async with uow_factory() as uow:
        assert await uow.messages.mark_read(bob, Pair.of(ann, bob), 4, now=LATER + timedelta(hours=1)) == []
        assert await uow.messages.mark_read(ann, Pair.of(ann, bob), 6, now=LATER) == [
            Delivered(id=sent[2].id, sender_id=bob, recipient_id=ann)
        ]
        await uow.commit()
    assert (await history(uow_factory, bob, ann, after=1, limit=1))[0].read_at == LATER
    assert [m.seq for m in await pending(uow_factory, bob)] == [5, 6]


# --- history ------------------------------------------------------------------------------------


async def test_history_pages_newest_first_below_before_and_oldest_first_above_after(uow_factory: UowFactory) -> None:
    ann, bob, cid = await add_users(uow_factory, "Ann", "Bob", "Cid")
    for i in range(7):
        await send(uow_factory, *((ann, bob) if i % 3 else (bob, ann)), f"m{i + 1}")
    await send(uow_factory, ann, cid)

    assert await seqs(uow_factory, ann, bob, limit=3) == [7, 6, 5]
    assert await seqs(uow_factory, bob, ann, before=5, limit=3) == [4, 3, 2]
    assert await seqs(uow_factory, ann, bob, before=2, limit=3) == [1]
    assert await seqs(uow_factory, ann, bob, before=1, limit=3) == []
    assert await seqs(uow_factory, ann, bob, after=0, limit=3) == [1, 2, 3]
    assert await seqs(uow_factory, ann, bob, after=2, limit=3) == [3, 4, 5]
    assert await seqs(uow_factory, ann, bob, after=6, limit=3) == [7]
    assert await seqs(uow_factory, ann, bob, after=7, limit=3) == []
    assert [m.body for m in await history(uow_factory, bob, ann, after=5)] == ["m6", "m7"]
    assert await seqs(uow_factory, bob, cid) == []


async def test_history_skips_withheld_messages_only_for_the_recipient(uow_factory: UowFactory) -> None:
    ann, bob = await add_users(uow_factory, "Ann", "Bob")
    for withheld in [False, True, True, False, True, False]:
        await send(uow_factory, ann, bob, withheld=withheld)
    assert await seqs(uow_factory, bob, ann, limit=2) == [6, 4]
    assert await seqs(uow_factory, bob, ann, before=4, limit=2) == [1]
    assert await seqs(uow_factory, bob, ann, after=1, limit=2) == [4, 6]
    assert await seqs(uow_factory, ann, bob, limit=2) == [6, 5]
    assert await seqs(uow_factory, ann, bob, after=1, limit=2) == [2, 3]


# --- conversation state and the conversation list ----------------------------------------------


async def test_read_seq_only_moves_forward_and_both_sides_see_it(uow_factory: UowFactory) -> None:
    ann, bob = await add_users(uow_factory, "Ann", "Bob")
    for _ in range(5):
        await send(uow_factory, ann, bob)

    async with uow_factory() as uow:
        await uow.conversations.set_read_seq(bob, ann, 3)
        await uow.commit()
    async with uow_factory() as uow:
        await uow.conversations.set_read_seq(bob, ann, 2)  # never backwards
        await uow.conversations.set_read_seq(ann, bob, 5)
        await uow.commit()

    assert await state(uow_factory, bob, ann) == ConversationState(peer_id=ann, last_seq=5, read_seq=3, peer_read_seq=5)
    assert await state(uow_factory, ann, bob) == ConversationState(peer_id=bob, last_seq=5, read_seq=5, peer_read_seq=3)


# SQL only: a conversation row without member rows is a state of the tables.
@SQL_ONLY
async def test_set_read_seq_creates_the_members_row_when_missing(
    uow_factory: UowFactory, session_factory: Sessions
) -> None:
    ann, bob = await add_users(uow_factory, "Ann", "Bob")
    pair = Pair.of(ann, bob)
    async with session_factory() as session:  # a conversation without member rows
        await session.execute(insert(conversations).values(low_id=pair.low, high_id=pair.high, last_seq=1))
        await session.commit()
    assert await count(session_factory, conversation_members) == 0
    async with uow_factory() as uow:
        await uow.conversations.set_read_seq(bob, ann, 1)
        await uow.commit()
    assert await state(uow_factory, bob, ann) == ConversationState(peer_id=ann, last_seq=1, read_seq=1, peer_read_seq=0)
    assert await state(uow_factory, ann, bob) == ConversationState(peer_id=bob, last_seq=1, read_seq=0, peer_read_seq=1)


async def test_summaries_list_the_most_recent_conversations_first_with_unread_counts(
    uow_factory: UowFactory,
) -> None:
    me, ann, bob, cid, dan = await add_users(uow_factory, "Me", "Ann", "Bob", "Cid", "Dan")
    await send(uow_factory, ann, me, "ann 1")
    await send(uow_factory, bob, me, "bob 1")
    await send(uow_factory, me, cid, "to cid")
    await send(uow_factory, ann, me, "ann 2")
    await send(uow_factory, ann, me, "ann 3")
    await send(uow_factory, me, bob, "to bob")
    await send(uow_factory, dan, ann, "not mine")
    await send(uow_factory, dan, me, "dan withheld", withheld=True)
    async with uow_factory() as uow:
        await uow.conversations.set_read_seq(me, ann, 1)
        await uow.conversations.set_read_seq(cid, me, 1)
        await uow.commit()

    async with uow_factory() as uow:
        rows = await uow.conversations.summaries(me, before=None, limit=10)
    assert [(r.state.peer_id, r.last_message.body, r.unread_count) for r in rows] == [
        (bob, "to bob", 1),
        (ann, "ann 3", 2),
        (cid, "to cid", 0),
    ]
    assert [r.state for r in rows] == [
        ConversationState(peer_id=bob, last_seq=2, read_seq=0, peer_read_seq=0),
        ConversationState(peer_id=ann, last_seq=3, read_seq=1, peer_read_seq=0),
        ConversationState(peer_id=cid, last_seq=1, read_seq=0, peer_read_seq=1),
    ]
    assert rows[1].last_message == (await history(uow_factory, me, ann, limit=1))[0]

    # Pages by cursor.
    async with uow_factory() as uow:
        first = await uow.conversations.summaries(me, before=None, limit=2)
        second = await uow.conversations.summaries(me, before=first[-1].cursor, limit=2)
        third = await uow.conversations.summaries(me, before=second[-1].cursor, limit=2)
    assert [r.state.peer_id for r in first] == [bob, ann]
    assert [r.state.peer_id for r in second] == [cid]
    assert third == []
    assert [r.cursor for r in first + second] == [r.cursor for r in rows]

    # Reading and new messages move things.
    async with uow_factory() as uow:
        await uow.conversations.set_read_seq(me, ann, 3)
        await uow.conversations.set_read_seq(me, bob, 1)
        await uow.commit()
    await send(uow_factory, cid, me, "cid answers")
    async with uow_factory() as uow:
        rows = await uow.conversations.summaries(me, before=None, limit=10)
        dans = await uow.conversations.summaries(dan, before=None, limit=10)
    assert [(r.state.peer_id, r.unread_count) for r in rows] == [(cid, 1), (bob, 0), (ann, 0)]
    # Dan sees his withheld message to me; I never see that conversation.
    assert [(r.state.peer_id, r.last_message.body) for r in dans] == [(me, "dan withheld"), (ann, "not mine")]


async def test_summaries_reject_a_malformed_cursor(uow_factory: UowFactory) -> None:
    (me,) = await add_users(uow_factory, "Me")
    async with uow_factory() as uow:
        for cursor in ["", "abc", "-1", "1.5", " 1", "١٢", "9" * 20, str(2**63)]:
            with pytest.raises(InvalidInputError) as caught:
                await uow.conversations.summaries(me, before=cursor, limit=10)
            assert caught.value.problems[0].field == "cursor"


# SQL only: what a cursor holds is the adapter's own (the fake issues other cursors on purpose).
@SQL_ONLY
async def test_summaries_take_any_storage_position_as_a_cursor(uow_factory: UowFactory) -> None:
    (me,) = await add_users(uow_factory, "Me")
    async with uow_factory() as uow:
        assert await uow.conversations.summaries(me, before="0", limit=10) == []
        assert await uow.conversations.summaries(me, before=str(2**63 - 1), limit=10) == []


# --- users and blocks ---------------------------------------------------------------------------


async def test_get_many_returns_the_known_users_by_id(uow_factory: UowFactory) -> None:
    ann, bob, cid = await add_users(uow_factory, "Ann", "Bob", "Cid")
    async with uow_factory() as uow:
        found = await uow.users.get_many(iter([cid, ann, ann, cid + 1000]))
        assert await uow.users.get_many([]) == {}
    assert {uid: u.name for uid, u in found.items()} == {ann: "Ann", cid: "Cid"}
    assert bob not in found


async def test_existing_ids_are_the_accounts_among_the_ids(uow_factory: UowFactory) -> None:
    ann, bob, cid = await add_users(uow_factory, "Ann", "Bob", "Cid")
    async with uow_factory() as uow:
        assert await uow.users.existing_ids(iter([cid, ann, ann, cid + 1000, 0])) == {ann, cid}
        assert await uow.users.existing_ids([bob]) == {bob}
        assert await uow.users.existing_ids([cid + 1000]) == set()
        assert await uow.users.existing_ids([]) == set()


async def test_blocks_among_are_directional(uow_factory: UowFactory) -> None:
    ann, bob, cid, dan = await add_users(uow_factory, "Ann", "Bob", "Cid", "Dan")
    await block(uow_factory, ann, bob)
    await block(uow_factory, cid, dan)
    async with uow_factory() as uow:
        assert await uow.blocks.among([(ann, bob)]) == {(ann, bob)}
        assert await uow.blocks.among([(bob, ann)]) == set()
        # Either way is asking both directions.
        assert await uow.blocks.among(iter([(ann, bob), (bob, ann), (ann, bob)])) == {(ann, bob)}
        assert await uow.blocks.among([(ann, cid), (cid, ann)]) == set()
        assert await uow.blocks.among([(ann, bob), (dan, cid), (cid, dan), (cid, ann)]) == {(ann, bob), (cid, dan)}
        # Only exact pairs: (ann, dan) and (cid, bob) cross the blocker of one block with the blocked of the other.
        assert await uow.blocks.among([(ann, dan), (cid, bob)]) == set()
        assert await uow.blocks.among([]) == set()


async def test_block_is_idempotent_unblock_removes_it_and_blocked_by_lists_by_id(uow_factory: UowFactory) -> None:
    ann, bob, cid, dan = await add_users(uow_factory, "Ann", "Bob", "Cid", "Dan")
    async with uow_factory() as uow:
        await uow.blocks.block(ann, dan, now=NOW)
        await uow.blocks.block(ann, bob, now=NOW)
        await uow.blocks.block(cid, ann, now=NOW)
        await uow.commit()
    async with uow_factory() as uow:
        await uow.blocks.block(ann, bob, now=LATER)  # kept as is
        with pytest.raises(ValueError, match="themself"):
            await uow.blocks.block(ann, ann, now=NOW)
        await uow.commit()
    async with uow_factory() as uow:
        assert [u.uid for u in await uow.blocks.blocked_by(ann)] == [bob, dan]
        assert [u.uid for u in await uow.blocks.blocked_by(bob)] == []
        await uow.blocks.unblock(ann, dan)
        await uow.blocks.unblock(ann, dan)
        await uow.blocks.unblock(dan, ann)
        await uow.commit()
    async with uow_factory() as uow:
        assert [u.name for u in await uow.blocks.blocked_by(ann)] == ["Bob"]
        assert await uow.blocks.among([(ann, dan), (ann, bob)]) == {(ann, bob)}
        assert await uow.blocks.among([(ann, cid), (cid, ann)]) == {(cid, ann)}


async def test_visible_contact_ids_are_contacts_without_a_block_by_id(uow_factory: UowFactory) -> None:
    me, ann, bob, cid, dan = await add_users(uow_factory, "Me", "Ann", "Bob", "Cid", "Dan")
    async with uow_factory() as uow:
        for other in (dan, bob, ann, cid):
            await uow.contacts.add_pairs([(me, other)])
        await uow.blocks.block(me, bob, now=NOW)
        await uow.blocks.block(cid, me, now=NOW)
        await uow.commit()
    async with uow_factory() as uow:
        assert await uow.contacts.visible_contact_ids(me) == [ann, dan]
        assert await uow.contacts.visible_contact_ids(ann) == [me]
        assert await uow.contacts.visible_contact_ids(bob) == []


async def test_set_last_seen_updates_the_user_and_ignores_unknown_ids(uow_factory: UowFactory) -> None:
    ann, bob = await add_users(uow_factory, "Ann", "Bob")
    async with uow_factory() as uow:
        await uow.users.set_last_seen(ann, LATER)
        await uow.users.set_last_seen(bob + 1000, LATER)
        await uow.commit()
    async with uow_factory() as uow:
        found = await uow.users.get_many([ann, bob])
    assert (found[ann].last_seen_at, found[bob].last_seen_at) == (LATER, None)


# --- the schema serves the queries --------------------------------------------------------------


# SQL only: the schema and the statements.
@SQL_ONLY
async def test_the_pending_query_uses_the_partial_index(backend: str, session_factory: Sessions) -> None:
    """The offline-batch query, as the store runs it (:data:`adapters.sqlalchemy.fastpath.hot_sql.PENDING_FOR`)."""
    async with session_factory() as session:
        conn = await session.connection()
        if backend.startswith("sqlite"):
            explain = "EXPLAIN QUERY PLAN " + hot_sql.PENDING_FOR.sqlite
            plan = (await conn.exec_driver_sql(explain, (1, '[["a"]]', 10))).all()
        else:
            await conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
            plan = (await conn.exec_driver_sql("EXPLAIN " + hot_sql.PENDING_FOR.postgresql, (1, ["a"], 10))).all()
    assert "ix_messages_recipient_id_pos" in " ".join(str(row) for row in plan)


@SQL_ONLY
async def test_timestamps_written_at_the_driver_level_read_back_alike(
    backend: str, uow_factory: UowFactory, session_factory: Sessions
) -> None:
    """The hot statements store timestamps exactly as SQLAlchemy's ``UtcDateTime`` does: UTC,
    with microseconds, readable by the Core queries (history) and the driver-level ones (pending)."""
    ann, bob = await add_users(uow_factory, "Ann", "Bob")
    at = datetime(2026, 11, 24, 7, 20, 21, tzinfo=timezone(timedelta(hours=2)))  # 05:20:21 UTC, no µs
    await append(uow_factory, dataclasses.replace(draft(ann, bob), created_at=at))

    (via_core,) = await history(uow_factory, ann, bob)
    (via_driver,) = await pending(uow_factory, bob)

    assert via_core.created_at == via_driver.created_at == at
    assert via_core.created_at.tzinfo == via_driver.created_at.tzinfo == UTC
    if backend.startswith("sqlite"):
        async with session_factory() as session:
            stored = (await session.execute(text("SELECT created_at FROM messages"))).scalar_one()
        assert stored == "2026-11-24 05:20:21.000000"  # what SQLAlchemy writes for a DATETIME on SQLite
