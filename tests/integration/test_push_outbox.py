"""The push outbox's leases on the real store (SQLite and PostgreSQL): a process whose lease ran
out — another one claimed the push since — settles nothing, so it can neither reschedule, drop nor
delete what the new holder is sending."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from adapters.sqlalchemy.orm import push_jobs
from adapters.sqlalchemy.push import SqlAlchemyPushOutbox
from domain.auth import Login
from domain.push import PushTarget
from tests.integration.conftest import sql_unit_of_work_factory
from tests.integration.test_message_store import NOW, add_users, draft


async def test_a_push_whose_lease_ran_out_is_settled_only_by_its_new_holder(
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    uow_factory = sql_unit_of_work_factory(session_factory)
    ann, bob = await add_users(uow_factory, "Ann", "Bob")
    async with uow_factory() as uow:
        await uow.logins.add(Login(id="bob-1", user_id=bob, created_at=NOW))
        target = PushTarget(
            id="t1", user_id=bob, login_id="bob-1", kind="fcm", token="tok", app_id="app", label=None, created_at=NOW
        )
        await uow.push.add(target)
        [stored] = await uow.conversations.append([draft(ann, bob, "hi")])
        await uow.push.queue_pushes([(stored.message.id, bob)], now=NOW, due=NOW)
        await uow.commit()
    outbox = SqlAlchemyPushOutbox(session_factory)

    def ids() -> str:
        return "push-1"

    [first] = await outbox.claim(fresh=[bob], retry=[], now=NOW, lease_until=NOW + timedelta(seconds=60), new_id=ids)
    later = NOW + timedelta(seconds=61)  # the first holder stalled past its lease: another process takes it up
    [second] = await outbox.claim(
        fresh=[], retry=[bob], now=later, lease_until=later + timedelta(seconds=60), new_id=ids
    )
    assert (first.id, second.id) == ("push-1", "push-1")  # the same push, the same idempotency key

    async def jobs() -> list[tuple[object, int]]:
        async with session_factory() as session:
            rows = await session.execute(select(push_jobs.c.lease_until, push_jobs.c.attempts))
            return [(lease, attempts) for lease, attempts in rows.all()]

    held = await jobs()
    await outbox.retry(first.id, lease_until=first.lease_until, at=later + timedelta(seconds=1))
    await outbox.drop(first.id, lease_until=first.lease_until)
    assert await outbox.sent(first.id, lease_until=first.lease_until, rejected=[]) == 0
    assert await jobs() == held  # the stale holder changed nothing
    await outbox.sent(second.id, lease_until=second.lease_until, rejected=[])
    assert await jobs() == []
