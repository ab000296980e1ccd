"""SignIn: credentials, the same answer for unknown emails, the login limits and the cap on live logins."""

from __future__ import annotations

import asyncio

import pytest

from application.events import LoginsRevoked
from domain.auth import account_key, address_key, pair_key
from domain.errors import BusyError, InvalidCredentialsError, LoginRevokedError, RateLimitedError
from tests.unit.harness import ADDRESS, OTHER_ADDRESS, PASSWORD, World, hashing, login_of


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


async def test_a_stranger_failing_from_another_address_does_not_lock_the_owner_out() -> None:
    world = World(max_failures=2)
    await world.sign_up("Ada", email="ada@example.com")
    for _ in range(5):  # locked after 2: the rest are refused
        with pytest.raises((InvalidCredentialsError, RateLimitedError)):
            await world.signed_in("ada@example.com", "wrong password", address=OTHER_ADDRESS)

    with pytest.raises(RateLimitedError):
        await world.signed_in("ada@example.com", address=OTHER_ADDRESS)
    assert (await world.signed_in("ada@example.com", address=ADDRESS)).user.name == "Ada"


async def test_the_account_as_a_whole_locks_at_twenty_times_n_failures_from_many_addresses() -> None:
    world = World(max_failures=2)
    await world.sign_up("Ada", email="ada@example.com")
    for i in range(40):  # 20 addresses, 2 failures each: no pair over its limit
        with pytest.raises(InvalidCredentialsError):
            await world.signed_in("ada@example.com", "wrong password", address=f"192.0.2.{i // 2}")

    with pytest.raises(RateLimitedError):
        await world.signed_in("ada@example.com", address=ADDRESS)
    assert world.counter.windows[account_key("ada@example.com")].count == 40


async def test_success_clears_the_pairs_failures_but_not_the_accounts(world: World) -> None:
    await world.sign_up("Ada", email="ada@example.com")

    for _ in range(3):  # 2 failures then a success, three times: 6 failures in one window
        for _ in range(2):
            with pytest.raises(InvalidCredentialsError):
                await world.signed_in("ada@example.com", "wrong password")
        await world.signed_in("ada@example.com")

    assert pair_key("ada@example.com", ADDRESS) not in world.counter.windows
    assert world.counter.windows[account_key("ada@example.com")].count == 6


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


async def test_users_behind_one_address_are_not_locked_out_by_one_users_failures() -> None:
    world = World(max_failures=2)
    await world.sign_up("Bob", email="bob@example.com")
    for _ in range(20):  # one user behind the NAT keeps failing: their pair locks at 2
        with pytest.raises((InvalidCredentialsError, RateLimitedError)):
            await world.signed_in("carol@example.com", "wrong password", address=ADDRESS)
    for i in range(8):  # and a few more forget theirs: 4·N = 8 failures in all, once locked 4× N before
        with pytest.raises(InvalidCredentialsError):
            await world.signed_in(f"user{i}@example.com", address=ADDRESS)

    assert (await world.signed_in("bob@example.com", address=ADDRESS)).user.name == "Bob"


async def test_address_is_locked_after_twenty_times_n_failures_across_accounts() -> None:
    world = World(max_failures=2)
    await world.sign_up("Bob", email="bob@example.com")
    for i in range(40):  # 40 = 20·N failures from ADDRESS, no account over its own limit
        with pytest.raises(InvalidCredentialsError):
            await world.signed_in(f"ghost{i // 2}@example.com", address=ADDRESS)

    with pytest.raises(RateLimitedError):
        await world.signed_in("bob@example.com", address=ADDRESS)
    assert (await world.signed_in("bob@example.com", address=OTHER_ADDRESS)).user.name == "Bob"
    assert world.counter.windows[address_key(ADDRESS)].count == 40


async def test_successful_logins_count_too_at_four_times_n_per_account_and_address() -> None:
    world = World(max_failures=2, login_window_s=900)
    await world.sign_up("Ada", email="ada@example.com")
    for _ in range(8):
        await world.signed_in("ada@example.com")
        world.clock.advance(10)
    verifications = world.hasher.verify_calls

    with pytest.raises(RateLimitedError) as caught:
        await world.signed_in("ada@example.com")

    assert caught.value.retry_after_s == 820  # the window opened 80 s ago
    assert world.hasher.verify_calls == verifications  # refused before any hashing
    assert (await world.signed_in("ada@example.com", address=OTHER_ADDRESS)).user.name == "Ada"


async def test_a_second_concurrent_login_of_one_account_is_busy_without_hashing(world: World) -> None:
    await world.sign_up("Ada", email="ada@example.com")
    await world.sign_up("Bob", email="bob@example.com")
    world.hasher.gate = asyncio.Event()
    first = asyncio.create_task(world.signed_in("ada@example.com"))
    await hashing(world, 1)

    with pytest.raises(BusyError):
        await asyncio.wait_for(world.signed_in("ada@example.com", address=OTHER_ADDRESS), 1)
    assert world.hasher.verify_calls == 1
    bob = asyncio.create_task(world.signed_in("bob@example.com"))  # another account is not held up
    await hashing(world, 2)
    world.hasher.gate.set()
    assert (await first).user.name == "Ada"
    assert (await bob).user.name == "Bob"
    assert (await world.signed_in("ada@example.com")).user.name == "Ada"  # the slot is free again


async def test_a_login_beyond_the_cap_revokes_the_oldest_and_closes_its_connections() -> None:
    world = World(max_logins=3)
    registered = await world.sign_up("Ada", email="ada@example.com")  # login 1
    world.clock.advance(1)
    second = await world.signed_in("ada@example.com")
    world.clock.advance(1)
    third = await world.signed_in("ada@example.com")
    world.clock.advance(1)

    fourth = await world.signed_in("ada@example.com")

    logins = world.store.data.logins
    assert [sid for sid in logins if logins[sid].active] == [second.sid, third.sid, fourth.sid]
    assert world.notifier.published[-1].event == LoginsRevoked(sids=frozenset({registered.sid}))
    assert world.notifier.published[-1].commits == world.store.commits  # after the commit
    with pytest.raises(LoginRevokedError):
        await world.authenticate(registered.access_token)


async def test_busy_hasher_propagates_without_counting_a_failure(world: World) -> None:
    await world.sign_up("Ada", email="ada@example.com")
    world.hasher.busy = True

    with pytest.raises(BusyError):
        await world.signed_in("ada@example.com")

    assert account_key("ada@example.com") not in world.counter.windows
    assert pair_key("ada@example.com", ADDRESS) not in world.counter.windows
    assert address_key(ADDRESS) not in world.counter.windows
