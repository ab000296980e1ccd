"""RegisterUser: validation, uniqueness, the per-address limit, and what gets stored."""

from __future__ import annotations

import pytest

from application.accounts import Refresh
from domain.errors import BusyError, EmailTakenError, InvalidInputError, PhoneTakenError, RateLimitedError
from tests.unit.fakes import FakePasswordHasher
from tests.unit.harness import ADDRESS, OTHER_ADDRESS, PASSWORD, World, login_of


async def test_registration_stores_the_normalised_account_and_signs_it_in(world: World) -> None:
    session = await world.register(
        world.registration(
            "  Ada Lovelace ", email="  Ada@Example.com ", phone_number="+1 (415) 555-0100", password=PASSWORD
        )
    )

    stored = world.store.user(session.user.uid)
    assert (stored.name, stored.email, stored.email_key) == ("Ada Lovelace", "Ada@Example.com", "ada@example.com")
    assert stored.phone_number == "+14155550100"
    assert stored.name_key == "ada lovelace"
    assert stored.created_at == world.clock.now()
    assert FakePasswordHasher.reveal(stored.password_hash) == PASSWORD
    assert world.store.commits == 1


async def test_registration_issues_working_access_and_refresh_tokens(world: World) -> None:
    session = await world.sign_up("Ada")

    assert session.expires_in == world.access_ttl_s
    assert login_of(await world.authenticate(session.access_token)) == login_of(session)
    assert world.store.data.logins[session.sid].user_id == session.user.uid
    refreshed = await world.refresh(Refresh(refresh_token=session.refresh_token))
    assert refreshed.sid == session.sid


async def test_refresh_tokens_are_stored_only_as_digests(world: World) -> None:
    session = await world.sign_up("Ada")

    stored = world.store.data.refresh_tokens
    assert session.refresh_token not in stored
    assert stored[world.tokens.refresh_digest(session.refresh_token)].login_id == session.sid


async def test_email_taken_ignoring_case_and_surrounding_spaces(world: World) -> None:
    await world.sign_up("Ada", email="ada@example.com")

    with pytest.raises(EmailTakenError):
        await world.register(world.registration("Other Ada", email="  ADA@Example.COM "))

    assert len(world.store.data.users) == 1
    assert world.hasher.hash_calls == 1  # the duplicate was refused before the costly hash
    assert world.store.commits == 1


async def test_phone_taken_after_normalisation(world: World) -> None:
    await world.register(world.registration("Ada", phone_number="+1 (415) 555-0100"))

    with pytest.raises(PhoneTakenError):
        await world.register(world.registration("Bob", phone_number="0014155550100"))

    assert [u.name for u in world.store.data.users.values()] == ["Ada"]


async def test_every_invalid_field_is_reported_together_and_nothing_is_stored(world: World) -> None:
    with pytest.raises(InvalidInputError) as caught:
        await world.register(world.registration(" ", email="nope", phone_number="+123", password="short"))

    assert [p.field for p in caught.value.problems] == ["name", "email", "phoneNumber", "password"]
    assert world.store.data.users == {}
    assert world.store.commits == 0
    assert world.hasher.hash_calls == 0


async def test_registration_limit_counts_every_attempt_from_an_address_including_invalid_ones() -> None:
    world = World(registrations_per_hour=3)
    with pytest.raises(InvalidInputError):
        await world.register(world.registration("Ada", email="not an email"))
    world.clock.advance(10)
    await world.sign_up("Ada")
    world.clock.advance(10)
    with pytest.raises(EmailTakenError):
        await world.sign_up("Ada")
    world.clock.advance(10.5)

    with pytest.raises(RateLimitedError) as caught:
        await world.sign_up("Bob")

    assert caught.value.retry_after_s == 3570  # 3600 - 30.5, rounded up
    assert [u.name for u in world.store.data.users.values()] == ["Ada"]


async def test_registration_limit_is_per_address_and_per_hour() -> None:
    world = World(registrations_per_hour=1)
    await world.sign_up("Ada", address=ADDRESS)
    with pytest.raises(RateLimitedError):
        await world.sign_up("Bob", address=ADDRESS)

    await world.sign_up("Bob", address=OTHER_ADDRESS)
    world.clock.advance(3600)
    await world.sign_up("Cid", address=ADDRESS)

    assert [u.name for u in world.store.data.users.values()] == ["Ada", "Bob", "Cid"]


async def test_registration_refused_by_the_limit_does_no_other_work() -> None:
    world = World(registrations_per_hour=1)
    await world.sign_up("Ada")
    commits, hashes = world.store.commits, world.hasher.hash_calls

    with pytest.raises(RateLimitedError):
        await world.sign_up("Ada")  # would be EmailTakenError if it were looked at

    assert (world.store.commits, world.hasher.hash_calls) == (commits, hashes)


async def test_busy_hasher_propagates_and_stores_nothing(world: World) -> None:
    world.hasher.busy = True

    with pytest.raises(BusyError):
        await world.sign_up("Ada")

    assert world.store.data.users == {}
    assert world.store.data.logins == {}
    assert world.store.commits == 0


async def test_email_taken_while_hashing_is_still_refused_by_the_store(world: World) -> None:
    world.hasher.before_hash = lambda: _seed_concurrent(world, email="ada@example.com")

    with pytest.raises(EmailTakenError):
        await world.sign_up("Ada", email="Ada@example.com")

    assert [u.name for u in world.store.data.users.values()] == ["Concurrent"]
    assert world.store.data.logins == {}


async def test_phone_taken_while_hashing_is_still_refused_by_the_store(world: World) -> None:
    world.hasher.before_hash = lambda: _seed_concurrent(world, phone_number="+14155550100")

    with pytest.raises(PhoneTakenError):
        await world.register(world.registration("Ada", phone_number="+1 415 555 0100"))

    assert world.store.data.logins == {}


def _seed_concurrent(world: World, *, email: str | None = None, phone_number: str | None = None) -> None:
    """Another request commits an account while this one is hashing."""
    world.store.seed_user("Concurrent", email=email, phone_number=phone_number)
