"""SignIn: credentials, the same answer for unknown emails, and the failure limits."""

from __future__ import annotations

import pytest

from domain.auth import account_key, address_key
from domain.errors import BusyError, InvalidCredentialsError, RateLimitedError
from tests.unit.harness import ADDRESS, OTHER_ADDRESS, PASSWORD, World, login_of


async def test_right_password_starts_a_new_login(world: World) -> None:
    registered = await world.sign_up("Ada", email="ada@example.com")

    session = await world.signed_in("ada@example.com")

    assert session.user.uid == registered.user.uid
    assert session.sid != registered.sid
    assert login_of(await world.authenticate(session.access_token)) == login_of(session)
    assert world.store.data.logins[session.sid].active


async def test_email_is_matched_ignoring_case_and_surrounding_spaces(world: World) -> None:
    registered = await world.sign_up("Ada", email="ada@example.com")

    session = await world.signed_in("  ADA@Example.com ")

    assert session.user.uid == registered.user.uid


async def test_wrong_password_is_refused_after_one_verification_and_stores_nothing(world: World) -> None:
    registered = await world.sign_up("Ada", email="ada@example.com")
    commits, logins = world.store.commits, dict(world.store.data.logins)

    with pytest.raises(InvalidCredentialsError):
        await world.signed_in("ada@example.com", "wrong password")

    assert world.hasher.verifications == [world.store.user(registered.user.uid).password_hash]
    assert world.store.commits == commits
    assert world.store.data.logins.keys() == logins.keys()


async def test_unknown_email_is_refused_after_one_dummy_verification(world: World) -> None:
    with pytest.raises(InvalidCredentialsError):
        await world.signed_in("ghost@example.com")

    assert world.hasher.verifications == [None]
    assert world.store.commits == 0


async def test_unknown_email_and_wrong_password_are_indistinguishable(world: World) -> None:
    await world.sign_up("Ada", email="ada@example.com")

    with pytest.raises(InvalidCredentialsError) as unknown:
        await world.signed_in("ghost@example.com")
    with pytest.raises(InvalidCredentialsError) as wrong:
        await world.signed_in("ada@example.com", "wrong password")

    assert type(unknown.value) is type(wrong.value)
    assert unknown.value.message == wrong.value.message
    assert unknown.value.code == wrong.value.code
    assert world.hasher.verify_calls == 2


async def test_account_is_locked_after_n_failures_even_for_the_right_password() -> None:
    world = World(max_failures=3, login_window_s=900)
    await world.sign_up("Ada", email="ada@example.com")
    for _ in range(3):
        with pytest.raises(InvalidCredentialsError):
            await world.signed_in("ada@example.com", "wrong password")
        world.clock.advance(10)
    world.clock.advance(70.5)  # 100.5 s after the first failure

    with pytest.raises(RateLimitedError) as caught:
        await world.signed_in("ada@example.com", PASSWORD)

    assert caught.value.retry_after_s == 800  # 900 - 100.5, rounded up


async def test_locked_account_can_log_in_again_once_the_window_has_passed() -> None:
    world = World(max_failures=3, login_window_s=900)
    await world.sign_up("Ada", email="ada@example.com")
    for _ in range(3):
        with pytest.raises(InvalidCredentialsError):
            await world.signed_in("ada@example.com", "wrong password")
    world.clock.advance(899)
    with pytest.raises(RateLimitedError):
        await world.signed_in("ada@example.com")

    world.clock.advance(1)

    assert (await world.signed_in("ada@example.com")).user.name == "Ada"


async def test_lock_applies_from_any_address() -> None:
    world = World(max_failures=2)
    await world.sign_up("Ada", email="ada@example.com")
    for _ in range(2):
        with pytest.raises(InvalidCredentialsError):
            await world.signed_in("ada@example.com", "wrong password", address=ADDRESS)

    with pytest.raises(RateLimitedError):
        await world.signed_in("ada@example.com", address=OTHER_ADDRESS)


async def test_fewer_than_n_failures_do_not_lock_and_success_resets_the_account_count() -> None:
    world = World(max_failures=3)
    await world.sign_up("Ada", email="ada@example.com")

    for _ in range(3):  # 2 failures then a success, three times: 6 failures in one window
        for _ in range(2):
            with pytest.raises(InvalidCredentialsError):
                await world.signed_in("ada@example.com", "wrong password")
        await world.signed_in("ada@example.com")

    assert account_key("ada@example.com") not in world.counter.windows


async def test_failures_on_one_account_do_not_lock_another(world: World) -> None:
    await world.sign_up("Ada", email="ada@example.com")
    await world.sign_up("Bob", email="bob@example.com")
    for _ in range(3):
        with pytest.raises(InvalidCredentialsError):
            await world.signed_in("ada@example.com", "wrong password", address=OTHER_ADDRESS)

    assert (await world.signed_in("bob@example.com")).user.name == "Bob"


async def test_unknown_emails_count_as_failures_of_that_account(world: World) -> None:
    for _ in range(3):
        with pytest.raises(InvalidCredentialsError):
            await world.signed_in("ghost@example.com")

    with pytest.raises(RateLimitedError):
        await world.signed_in("ghost@example.com")


async def test_address_is_locked_after_four_times_n_failures_across_accounts() -> None:
    world = World(max_failures=2)
    await world.sign_up("Bob", email="bob@example.com")
    for i in range(7):  # 7 failures from ADDRESS, no account over its own limit of 2
        with pytest.raises(InvalidCredentialsError):
            await world.signed_in(f"ghost{i}@example.com", address=ADDRESS)

    await world.signed_in("bob@example.com", address=ADDRESS)  # 7 < 8: still allowed, resets only Bob
    with pytest.raises(InvalidCredentialsError):
        await world.signed_in("ghost7@example.com", address=ADDRESS)

    with pytest.raises(RateLimitedError):
        await world.signed_in("bob@example.com", address=ADDRESS)
    assert (await world.signed_in("bob@example.com", address=OTHER_ADDRESS)).user.name == "Bob"
    assert world.counter.windows[address_key(ADDRESS)].count == 8


async def test_busy_hasher_propagates_without_counting_a_failure(world: World) -> None:
    await world.sign_up("Ada", email="ada@example.com")
    world.hasher.busy = True

    with pytest.raises(BusyError):
        await world.signed_in("ada@example.com")

    assert account_key("ada@example.com") not in world.counter.windows
    assert address_key(ADDRESS) not in world.counter.windows
