"""ChangePassword: the current password guards it, failures count, other logins end."""

from __future__ import annotations

import pytest

from application.accounts import PasswordChange, Refresh, SignedIn
from domain.auth import account_key
from domain.errors import (
    AuthenticationError,
    BusyError,
    FieldProblem,
    InvalidCredentialsError,
    InvalidInputError,
    LoginRevokedError,
    RateLimitedError,
    UserNotFoundError,
)
from tests.unit.fakes import FakePasswordHasher, InMemoryLoginRepository
from tests.unit.harness import PASSWORD, World, login_of, principal_of

NEW_PASSWORD = "battery staple"


def change(current: str = PASSWORD, new: str = NEW_PASSWORD) -> PasswordChange:
    return PasswordChange(current_password=current, new_password=new)


def stored_password(world: World, session: SignedIn) -> str:
    return FakePasswordHasher.reveal(world.store.user(session.user.uid).password_hash)


async def test_wrong_current_password_is_invalid_input_and_changes_nothing(world: World) -> None:
    session = await world.sign_up("Ada")
    commits = world.store.commits

    with pytest.raises(InvalidInputError) as caught:
        await world.change_password(principal_of(session), change(current="not my password"))

    assert [p.field for p in caught.value.problems] == ["currentPassword"]
    assert stored_password(world, session) == PASSWORD
    assert world.store.commits == commits


async def test_wrong_current_passwords_lock_password_changes_from_that_login_only() -> None:
    world = World(max_failures=3)
    session = await world.sign_up("Ada", email="ada@example.com")
    for _ in range(3):
        with pytest.raises(InvalidInputError):
            await world.change_password(principal_of(session), change(current="guess"))

    with pytest.raises(RateLimitedError):
        await world.change_password(principal_of(session), change())
    assert stored_password(world, session) == PASSWORD
    assert world.counter.windows[account_key("ada@example.com")].count == 3  # toward the account's 20·N
    other = await world.signed_in("ada@example.com")  # the owner is not locked out by a stolen token
    await world.change_password(principal_of(other), change())


async def test_too_short_new_password_is_invalid_input_on_new_password(world: World) -> None:
    session = await world.sign_up("Ada")

    with pytest.raises(InvalidInputError) as caught:
        await world.change_password(principal_of(session), change(new="short"))

    assert [p.field for p in caught.value.problems] == ["newPassword"]
    assert stored_password(world, session) == PASSWORD


async def test_whitespace_only_new_password_is_refused(world: World) -> None:
    session = await world.sign_up("Ada")

    with pytest.raises(InvalidInputError) as caught:
        await world.change_password(principal_of(session), change(new=" " * 10))

    assert caught.value.problems == (FieldProblem("newPassword", "must not be only whitespace"),)


async def test_change_replaces_the_password_and_revokes_every_other_login(world: World) -> None:
    current = await world.sign_up("Ada", email="ada@example.com")
    others = [await world.signed_in("ada@example.com") for _ in range(2)]

    revoked = await world.change_password(principal_of(current), change())

    assert sorted(revoked) == sorted(s.sid for s in others)
    assert stored_password(world, current) == NEW_PASSWORD
    assert login_of(await world.authenticate(current.access_token)) == login_of(current)
    await world.refresh(Refresh(refresh_token=current.refresh_token))
    for other in others:
        with pytest.raises(LoginRevokedError):
            await world.authenticate(other.access_token)
        with pytest.raises(AuthenticationError):
            await world.refresh(Refresh(refresh_token=other.refresh_token))


async def test_after_a_change_only_the_new_password_logs_in(world: World) -> None:
    session = await world.sign_up("Ada", email="ada@example.com")
    await world.change_password(principal_of(session), change())

    with pytest.raises(InvalidCredentialsError):
        await world.signed_in("ada@example.com", PASSWORD)
    assert (await world.signed_in("ada@example.com", NEW_PASSWORD)).user.uid == session.user.uid


async def test_change_leaves_other_users_logins_alone(world: World) -> None:
    ada = await world.sign_up("Ada")
    bob = await world.sign_up("Bob")

    await world.change_password(principal_of(ada), change())

    assert login_of(await world.authenticate(bob.access_token)) == login_of(bob)


async def test_busy_hasher_propagates_and_changes_nothing(world: World) -> None:
    current = await world.sign_up("Ada", email="ada@example.com")
    other = await world.signed_in("ada@example.com")
    world.hasher.busy = True

    with pytest.raises(BusyError):
        await world.change_password(principal_of(current), change())

    world.hasher.busy = False
    assert stored_password(world, current) == PASSWORD
    assert login_of(await world.authenticate(other.access_token)) == login_of(other)


async def test_change_for_a_vanished_user_is_not_found(world: World) -> None:
    session = await world.sign_up("Ada")
    del world.store.data.users[session.user.uid]

    with pytest.raises(UserNotFoundError):
        await world.change_password(principal_of(session), change())


async def test_the_new_hash_and_the_revocations_commit_together(world: World) -> None:
    current = await world.sign_up("Ada", email="ada@example.com")
    other = await world.signed_in("ada@example.com")
    commits = world.store.commits

    await world.change_password(principal_of(current), change())

    assert world.store.commits == commits + 1
    assert stored_password(world, current) == NEW_PASSWORD
    assert not world.store.data.logins[other.sid].active


async def test_a_failing_revocation_leaves_the_old_password_and_every_login(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    current = await world.sign_up("Ada", email="ada@example.com")
    other = await world.signed_in("ada@example.com")

    async def lost(self: InMemoryLoginRepository, user_id: int) -> list[str]:
        raise ConnectionError("the store went away")

    monkeypatch.setattr(InMemoryLoginRepository, "active_ids_of", lost)
    with pytest.raises(ConnectionError):
        await world.change_password(principal_of(current), change())

    assert stored_password(world, current) == PASSWORD
    assert login_of(await world.authenticate(other.access_token)) == login_of(other)
    assert world.notifier.published == []


async def test_a_failing_commit_leaves_the_old_password_and_every_login(world: World) -> None:
    current = await world.sign_up("Ada", email="ada@example.com")
    other = await world.signed_in("ada@example.com")
    world.store.fail_commit = ConnectionError("the commit was lost")

    with pytest.raises(ConnectionError):
        await world.change_password(principal_of(current), change())

    world.store.fail_commit = None
    assert stored_password(world, current) == PASSWORD
    assert login_of(await world.authenticate(other.access_token)) == login_of(other)
    assert world.notifier.published == []
