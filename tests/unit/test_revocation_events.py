"""Revoking logins tells their connections (``LoginsRevoked`` → close 4403), after the commit."""

from __future__ import annotations

import pytest

from application.accounts import PasswordChange, Refresh
from application.events import LoginsRevoked
from domain.errors import InvalidInputError, InvalidTokenError
from tests.unit.harness import PASSWORD, World, principal_of


def assert_after_commit(world: World) -> None:
    for published in world.notifier.published:
        assert not published.in_transaction
        assert published.commits == world.store.commits


async def test_log_out_tells_the_connections_of_that_login(world: World) -> None:
    phone = await world.sign_up("Ada", email="ada@example.com")
    await world.signed_in("ada@example.com")

    await world.sign_out(principal_of(phone))

    assert world.notifier.calls == [(phone.user.uid, LoginsRevoked(sids=frozenset({phone.sid})), None)]
    assert_after_commit(world)


async def test_logging_out_an_already_revoked_login_tells_nobody_again(world: World) -> None:
    session = await world.sign_up("Ada")
    await world.sign_out(principal_of(session))
    world.notifier.clear()

    await world.sign_out(principal_of(session))

    assert world.notifier.published == []


async def test_a_failed_commit_on_log_out_tells_nobody(world: World) -> None:
    session = await world.sign_up("Ada")
    world.store.fail_commit = OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        await world.sign_out(principal_of(session))

    assert world.notifier.published == []


async def test_log_out_everywhere_tells_every_revoked_login_in_one_event(world: World) -> None:
    sessions = [await world.sign_up("Ada", email="ada@example.com")]
    sessions += [await world.signed_in("ada@example.com") for _ in range(2)]
    await world.sign_up("Bob")

    await world.sign_out_everywhere(principal_of(sessions[0]))

    assert world.notifier.calls == [
        (sessions[0].user.uid, LoginsRevoked(sids=frozenset(s.sid for s in sessions)), None)
    ]
    assert_after_commit(world)


async def test_log_out_everywhere_with_nothing_left_to_revoke_tells_nobody(world: World) -> None:
    session = await world.sign_up("Ada")
    await world.sign_out_everywhere(principal_of(session))
    world.notifier.clear()

    assert await world.sign_out_everywhere(principal_of(session)) == []

    assert world.notifier.published == []


async def test_a_password_change_tells_the_other_logins_only(world: World) -> None:
    current = await world.sign_up("Ada", email="ada@example.com")
    others = [await world.signed_in("ada@example.com") for _ in range(2)]

    await world.change_password(
        principal_of(current), PasswordChange(current_password=PASSWORD, new_password="battery staple")
    )

    assert world.notifier.calls == [(current.user.uid, LoginsRevoked(sids=frozenset(s.sid for s in others)), None)]
    assert_after_commit(world)


async def test_a_password_change_with_no_other_login_tells_nobody(world: World) -> None:
    current = await world.sign_up("Ada")

    await world.change_password(
        principal_of(current), PasswordChange(current_password=PASSWORD, new_password="battery staple")
    )

    assert world.notifier.published == []


async def test_a_refused_password_change_tells_nobody(world: World) -> None:
    current = await world.sign_up("Ada", email="ada@example.com")
    await world.signed_in("ada@example.com")

    with pytest.raises(InvalidInputError):
        await world.change_password(
            principal_of(current), PasswordChange(current_password="wrong one", new_password="battery staple")
        )

    assert world.notifier.published == []


async def test_a_normal_refresh_tells_nobody(world: World) -> None:
    session = await world.sign_up("Ada")

    await world.refresh(Refresh(refresh_token=session.refresh_token))

    assert world.notifier.published == []


async def test_reusing_a_refresh_token_tells_the_connections_of_that_login_once(world: World) -> None:
    session = await world.sign_up("Ada", email="ada@example.com")
    await world.signed_in("ada@example.com")
    await world.refresh(Refresh(refresh_token=session.refresh_token))

    with pytest.raises(InvalidTokenError):
        await world.refresh(Refresh(refresh_token=session.refresh_token))
    assert world.notifier.calls == [(session.user.uid, LoginsRevoked(sids=frozenset({session.sid})), None)]
    assert_after_commit(world)
    world.notifier.clear()
    with pytest.raises(InvalidTokenError):  # the login is already revoked: a plain refusal
        await world.refresh(Refresh(refresh_token=session.refresh_token))

    assert world.notifier.published == []


async def test_an_unknown_refresh_token_tells_nobody(world: World) -> None:
    await world.sign_up("Ada")

    with pytest.raises(InvalidTokenError):
        await world.refresh(Refresh(refresh_token="refresh-999"))

    assert world.notifier.published == []
