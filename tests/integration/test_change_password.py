"""ChangePassword on the real store (SQLite and PostgreSQL): the new hash and the revocation of
the other logins are one transaction, so a failure anywhere before the commit undoes both."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from adapters.auth.passwords import Argon2PasswordHasher
from adapters.memory.counters import InMemoryAttemptCounter
from adapters.sqlalchemy.orm import users
from adapters.sqlalchemy.repositories import SqlAlchemyLoginRepository
from adapters.sqlalchemy.uow import SqlAlchemyUnitOfWork
from adapters.system.clock import SystemClock
from application.accounts import ChangePassword, PasswordChange, PasswordConfirmation
from application.common import Principal
from application.events import Event
from application.ports import Notifier
from domain.auth import Login, LoginThrottle
from domain.users import Registration, User
from tests.integration.support import CHEAP_ARGON2

UowFactory = Callable[[], SqlAlchemyUnitOfWork]
NOW = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
OLD, NEW = "correct horse", "battery staple"


class RecordingNotifier(Notifier):
    def __init__(self) -> None:
        self.published: list[tuple[int, Event]] = []

    def publish(self, user_id: int, event: Event, *, skip_connection: str | None = None) -> None:
        self.published.append((user_id, event))


class Account:
    """A user with three logins, and ChangePassword over the real unit of work."""

    def __init__(self, uow_factory: UowFactory) -> None:
        self.uow_factory = uow_factory
        self.hasher = Argon2PasswordHasher(concurrency=1, hasher=CHEAP_ARGON2)
        self.notifier = RecordingNotifier()
        self.sids = ["login-current", "login-phone", "login-laptop"]
        self.user_id = 0

    async def create(self) -> None:
        data = Registration.parse(name="Ada", email="ada@example.com", phone_number="+14155550123", password=OLD)
        user = User.register(data, password_hash=await self.hasher.hash(OLD), now=NOW)
        async with self.uow_factory() as uow:
            await uow.users.add(user)
            for sid in self.sids:
                await uow.logins.add(Login(id=sid, user_id=user.uid, created_at=NOW))
            await uow.commit()
        self.user_id = user.uid

    async def change_password(self) -> list[str]:
        clock = SystemClock()
        throttle = LoginThrottle(max_failures=5, window_s=900)
        confirm = PasswordConfirmation(self.uow_factory, self.hasher, InMemoryAttemptCounter(), clock, throttle)
        change = ChangePassword(self.uow_factory, self.hasher, confirm, clock, self.notifier)
        principal = Principal(user_id=self.user_id, sid=self.sids[0])
        return await change(principal, PasswordChange(current_password=OLD, new_password=NEW))

    async def stored(self) -> tuple[str, list[str]]:
        """The password that verifies against the stored hash, and the active logins."""
        async with self.uow_factory() as uow:
            user = await uow.users.get(self.user_id)
            active = sorted(await uow.logins.active_ids_of(self.user_id))
        assert user is not None
        password = NEW if await self.hasher.verify(NEW, user.password_hash) else OLD
        assert await self.hasher.verify(password, user.password_hash)
        return password, active


@pytest.fixture
async def account(uow_factory: UowFactory) -> Account:
    account = Account(uow_factory)
    await account.create()
    return account


async def test_the_new_hash_and_the_revocations_land_together(account: Account) -> None:
    revoked = await account.change_password()

    assert sorted(revoked) == sorted(account.sids[1:])
    assert await account.stored() == (NEW, [account.sids[0]])
    assert len(account.notifier.published) == 1


async def test_a_failure_after_the_hash_reached_the_database_rolls_it_back(
    account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    in_transaction: list[str] = []

    async def fail_after_reading(self: SqlAlchemyLoginRepository, user_id: int) -> list[str]:
        # The SELECT flushes the pending update: the new hash is in the database's transaction.
        query = select(users.c.password_hash).where(users.c.id == user_id)
        in_transaction.append((await self._session.execute(query)).scalar_one())
        raise RuntimeError("injected failure")

    monkeypatch.setattr(SqlAlchemyLoginRepository, "active_ids_of", fail_after_reading)
    with pytest.raises(RuntimeError):
        await account.change_password()
    monkeypatch.undo()

    assert await account.hasher.verify(NEW, in_transaction[0])
    assert await account.stored() == (OLD, sorted(account.sids))
    assert account.notifier.published == []


async def test_a_failure_after_everything_was_written_rolls_both_back(
    account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def fail_instead_of_committing(self: SqlAlchemyUnitOfWork) -> None:
        # This query flushes the hash and the revocations into the transaction, and sees them.
        written = await self.logins.active_ids_of(account.user_id)
        assert written == [account.sids[0]]
        raise RuntimeError("injected failure instead of the commit")

    monkeypatch.setattr(SqlAlchemyUnitOfWork, "commit", fail_instead_of_committing)
    with pytest.raises(RuntimeError):
        await account.change_password()
    monkeypatch.undo()

    assert await account.stored() == (OLD, sorted(account.sids))
    assert account.notifier.published == []
