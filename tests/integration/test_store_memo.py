"""StoreMemo: what units of work of one database remember is learned only from committed
transactions, and skipping the reads it allows changes no answer (SQLite and PostgreSQL)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from adapters.sqlalchemy.fastpath.memo import StoreMemo
from adapters.sqlalchemy.uow import SqlAlchemyUnitOfWork
from tests.integration.test_message_store import add_users, draft

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker


async def test_has_sent_is_learned_only_from_committed_transactions(
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    memo = StoreMemo()

    def uow() -> SqlAlchemyUnitOfWork:
        return SqlAlchemyUnitOfWork(session_factory, memo)

    ann, bob = await add_users(uow, "Ann", "Bob")

    async with uow() as tx:  # rolled back: nothing learned
        assert await tx.users.existing_ids([ann, bob, 404]) == {ann, bob}
        await tx.conversations.append([draft(ann, bob)])
    assert memo.sent == set()

    async with uow() as tx:
        (first,) = await tx.conversations.append([draft(ann, bob)])
        assert await tx.users.existing_ids([ann, 404]) == {ann}
        await tx.commit()
    assert first.message.seq == 1  # the rolled-back seq was given back
    assert memo.sent == {(ann, bob)}  # bob has not sent ann anything yet

    async with uow() as tx:
        (reply,) = await tx.conversations.append([draft(bob, ann)])
        await tx.commit()
    assert reply.became_contacts
    assert memo.sent == {(ann, bob), (bob, ann)}

    async with uow() as tx:  # everything known now: the answers are the same without reading
        (again,) = await tx.conversations.append([draft(ann, bob)])
        assert await tx.users.existing_ids([ann, 404]) == {ann}
        await tx.commit()
    assert (again.message.seq, again.became_contacts) == (3, False)


async def test_a_full_memo_forgets_and_reads_again(session_factory: async_sessionmaker[AsyncSession]) -> None:
    memo = StoreMemo(limit=2)

    def uow() -> SqlAlchemyUnitOfWork:
        return SqlAlchemyUnitOfWork(session_factory, memo)

    ann, bob, cid = await add_users(uow, "Ann", "Bob", "Cid")
    for pair in ((ann, bob), (bob, cid), (cid, ann)):
        async with uow() as tx:
            await tx.conversations.append([draft(*pair)])
            await tx.commit()

    assert memo.sent == {(cid, ann)}  # full at two: forgotten, then the third learned


async def test_accounts_are_not_remembered_a_deleted_one_is_no_recipient(
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    memo = StoreMemo()

    def uow() -> SqlAlchemyUnitOfWork:
        return SqlAlchemyUnitOfWork(session_factory, memo)

    ann, bob = await add_users(uow, "Ann", "Bob")
    async with uow() as tx:
        assert await tx.users.existing_ids([ann, bob]) == {ann, bob}
        await tx.conversations.append([draft(ann, bob)])
        await tx.commit()

    async with SqlAlchemyUnitOfWork(session_factory) as other:  # another process deletes bob
        stored = await other.users.get(bob)
        assert stored is not None
        stored.erase(stored.created_at)
        await other.accounts.forget(bob, erase_bodies=False)
        await other.commit()

    async with uow() as tx:
        assert await tx.users.existing_ids([ann, bob]) == {ann}
