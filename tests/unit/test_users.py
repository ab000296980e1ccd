"""GetProfile, RenameUser, GetUser and ListContacts: what a caller sees of themselves and others."""

from __future__ import annotations

from datetime import timedelta

import pytest

from application.common import PageRequest, Principal
from application.users import LookupLimit, Rename, UserLookup
from domain.errors import FieldProblem, InvalidInputError, RateLimitedError, UserNotFoundError
from domain.users import UserCard
from tests.unit.fakes import EPOCH
from tests.unit.harness import World

LAST_SEEN = EPOCH - timedelta(hours=3)


def me(world: World, name: str = "Me") -> Principal:
    user = world.store.seed_user(name)
    return Principal(user_id=user.uid, sid="sid-of-" + name)


# --- GetProfile -------------------------------------------------------------------------------


async def test_profile_is_the_callers_own_account_with_email_and_phone(world: World) -> None:
    ada = world.store.seed_user("Ada", email="Ada@Example.com", phone_number="+14155550100")

    profile = await world.get_profile(Principal(user_id=ada.uid, sid="s"))

    assert (profile.id, profile.name) == (ada.uid, "Ada")
    assert (profile.email, profile.phone_number) == ("Ada@Example.com", "+14155550100")


async def test_profile_of_a_vanished_user_is_not_found(world: World) -> None:
    with pytest.raises(UserNotFoundError):
        await world.get_profile(Principal(user_id=404, sid="s"))


# --- RenameUser -------------------------------------------------------------------------------


async def test_rename_trims_and_is_committed(world: World) -> None:
    caller = me(world, "Ada")

    renamed = await world.rename(caller, Rename(name="  Ada Lovelace  "))

    assert renamed.name == "Ada Lovelace"
    stored = world.store.user(caller.user_id)
    assert (stored.name, stored.name_key) == ("Ada Lovelace", "ada lovelace")
    assert world.store.commits == 1


@pytest.mark.parametrize(
    "name", ["", "   ", "x" * 101, "Ada\x00", "Ada\nLovelace", "Deleted account", " DELETED ACCOUNT "]
)
async def test_invalid_rename_is_invalid_input_on_name_and_changes_nothing(world: World, name: str) -> None:
    caller = me(world, "Ada")

    with pytest.raises(InvalidInputError) as caught:
        await world.rename(caller, Rename(name=name))

    assert [p.field for p in caught.value.problems] == ["name"]
    assert world.store.user(caller.user_id).name == "Ada"
    assert world.store.commits == 0


async def test_rename_accepts_100_characters(world: World) -> None:
    caller = me(world, "Ada")

    assert (await world.rename(caller, Rename(name="é" * 100))).name == "é" * 100


async def test_rename_of_a_vanished_user_is_not_found(world: World) -> None:
    with pytest.raises(UserNotFoundError):
        await world.rename(Principal(user_id=404, sid="s"), Rename(name="Ghost"))


# --- GetUser ----------------------------------------------------------------------------------


async def test_unknown_user_is_not_found(world: World) -> None:
    caller = me(world)

    with pytest.raises(UserNotFoundError) as caught:
        await world.get_user(caller, UserLookup(user_id=404))

    assert caught.value.user_id == 404


async def test_stranger_is_shown_without_presence_even_when_online(world: World) -> None:
    caller = me(world)
    stranger = world.store.seed_user("Stranger", last_seen_at=LAST_SEEN)
    world.presence.online.add(stranger.uid)

    card = await world.get_user(caller, UserLookup(user_id=stranger.uid))

    assert card == UserCard(id=stranger.uid, name="Stranger", online=None, last_seen_at=None)
    assert world.presence.asked == []  # presence of a non-contact is not even looked up


async def test_online_contact_is_shown_online_without_last_seen(world: World) -> None:
    caller = me(world)
    friend = world.store.seed_user("Friend", last_seen_at=LAST_SEEN)
    world.store.connect(caller.user_id, friend.uid)
    world.presence.online.add(friend.uid)

    card = await world.get_user(caller, UserLookup(user_id=friend.uid))

    assert card == UserCard(id=friend.uid, name="Friend", online=True, last_seen_at=None)


async def test_offline_contact_is_shown_offline_with_last_seen(world: World) -> None:
    caller = me(world)
    friend = world.store.seed_user("Friend", last_seen_at=LAST_SEEN)
    world.store.connect(caller.user_id, friend.uid)

    card = await world.get_user(caller, UserLookup(user_id=friend.uid))

    assert card == UserCard(id=friend.uid, name="Friend", online=False, last_seen_at=LAST_SEEN)


async def test_blocking_a_contact_hides_their_presence_from_the_blocker(world: World) -> None:
    caller = me(world)
    friend = world.store.seed_user("Friend", last_seen_at=LAST_SEEN)
    world.store.connect(caller.user_id, friend.uid)
    world.presence.online.add(friend.uid)
    world.store.block(caller.user_id, friend.uid)

    card = await world.get_user(caller, UserLookup(user_id=friend.uid))

    assert card == UserCard(id=friend.uid, name="Friend", online=None, last_seen_at=None)


@pytest.mark.parametrize("contacts", [True, False])
async def test_a_user_who_blocked_the_caller_is_not_found_like_an_unknown_one(world: World, contacts: bool) -> None:
    caller = me(world)
    blocker = world.store.seed_user("Blocker", last_seen_at=LAST_SEEN)
    if contacts:
        world.store.connect(caller.user_id, blocker.uid)
    world.store.block(blocker.uid, caller.user_id)

    with pytest.raises(UserNotFoundError) as caught:
        await world.get_user(caller, UserLookup(user_id=blocker.uid))

    assert caught.value.user_id == blocker.uid


# --- ListContacts -----------------------------------------------------------------------------


def seed_contacts(world: World, caller: Principal, count: int) -> list[int]:
    ids = [world.store.seed_user(f"Contact {i}").uid for i in range(count)]
    for uid in reversed(ids):  # insertion order must not matter
        world.store.connect(caller.user_id, uid)
    return ids


async def test_contacts_are_listed_by_id_and_strangers_are_not(world: World) -> None:
    caller = me(world)
    world.store.seed_user("Stranger")
    ids = seed_contacts(world, caller, 3)
    other = world.store.seed_user("Someone else's friend")
    world.store.connect(ids[0], other.uid)

    page = await world.list_contacts(caller, PageRequest())

    assert [card.id for card in page.items] == ids
    assert page.next_cursor is None


async def test_contacts_are_paginated_by_keyset(world: World) -> None:
    caller = me(world)
    ids = seed_contacts(world, caller, 5)

    first = await world.list_contacts(caller, PageRequest(limit=2, cursor=None))
    second = await world.list_contacts(caller, PageRequest(limit=2, cursor=first.next_cursor))
    third = await world.list_contacts(caller, PageRequest(limit=2, cursor=second.next_cursor))

    assert ([c.id for c in first.items], first.next_cursor) == (ids[:2], str(ids[1]))
    assert ([c.id for c in second.items], second.next_cursor) == (ids[2:4], str(ids[3]))
    assert ([c.id for c in third.items], third.next_cursor) == (ids[4:], None)


async def test_last_full_page_has_no_next_cursor(world: World) -> None:
    caller = me(world)
    ids = seed_contacts(world, caller, 4)

    page = await world.list_contacts(caller, PageRequest(limit=2, cursor=str(ids[1])))

    assert ([c.id for c in page.items], page.next_cursor) == (ids[2:], None)


async def test_a_contact_added_after_a_page_was_served_still_shows_on_a_later_page(world: World) -> None:
    caller = me(world)
    ids = seed_contacts(world, caller, 3)
    first = await world.list_contacts(caller, PageRequest(limit=2, cursor=None))
    late = world.store.seed_user("Late")
    world.store.connect(caller.user_id, late.uid)

    second = await world.list_contacts(caller, PageRequest(limit=2, cursor=first.next_cursor))

    assert [c.id for c in second.items] == [ids[2], late.uid]


async def test_contacts_page_defaults_to_50(world: World) -> None:
    caller = me(world)
    ids = seed_contacts(world, caller, 51)

    page = await world.list_contacts(caller, PageRequest())

    assert len(page.items) == 50
    assert page.next_cursor == str(ids[49])


@pytest.mark.parametrize("limit", [1, 100])
async def test_contacts_page_size_may_be_1_to_100(world: World, limit: int) -> None:
    caller = me(world)
    seed_contacts(world, caller, 2)

    page = await world.list_contacts(caller, PageRequest(limit=limit, cursor=None))

    assert len(page.items) == min(limit, 2)


@pytest.mark.parametrize("limit", [-1, 0, 101])
async def test_contacts_page_size_outside_1_to_100_is_invalid_input(world: World, limit: int) -> None:
    caller = me(world)

    with pytest.raises(InvalidInputError) as caught:
        await world.list_contacts(caller, PageRequest(limit=limit, cursor=None))

    assert caught.value.problems == (FieldProblem("limit", "must be between 1 and 100"),)


@pytest.mark.parametrize("cursor", ["", "abc", "-1", "1.5", " 7", "7 ", "1" * 20])
async def test_a_cursor_the_server_did_not_issue_is_invalid_input_on_cursor(world: World, cursor: str) -> None:
    caller = me(world)
    seed_contacts(world, caller, 2)

    with pytest.raises(InvalidInputError) as caught:
        await world.list_contacts(caller, PageRequest(limit=None, cursor=cursor))

    assert [p.field for p in caught.value.problems] == ["cursor"]


async def test_a_contact_who_blocked_the_caller_appears_offline_not_hidden(world: World) -> None:
    caller = me(world)
    online, offline, blocker, blocked = seed_contacts(world, caller, 4)
    world.presence.online |= {online, blocker, blocked}
    world.store.block(blocker, caller.user_id)
    world.store.block(caller.user_id, blocked)

    page = await world.list_contacts(caller, PageRequest())

    seen = [(c.id, c.online, c.last_seen_at) for c in page.items]
    assert seen == [(online, True, None), (offline, False, None), (blocker, False, None), (blocked, None, None)]


async def test_no_contacts_gives_an_empty_page(world: World) -> None:
    caller = me(world)

    page = await world.list_contacts(caller, PageRequest())

    assert (page.items, page.next_cursor) == ([], None)


# --- LookupLimit (HTTP lookups and searches) ----------------------------------------------------


def test_lookups_are_limited_per_user_like_the_sockets_search() -> None:
    now = [0.0]
    limit = LookupLimit(rate_per_s=20, burst=50, seconds=lambda: now[0])  # a quarter: 5/s, burst 13
    ann, bob = Principal(user_id=1, sid="a"), Principal(user_id=2, sid="b")
    for _ in range(13):
        limit(ann)

    with pytest.raises(RateLimitedError) as caught:
        limit(ann)

    assert caught.value.retry_after_s == 1
    limit(bob)  # another user's lookups are their own
    now[0] = 0.2  # one token back (5 per second)
    limit(ann)
    with pytest.raises(RateLimitedError):
        limit(ann)
