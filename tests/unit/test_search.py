"""SearchUsers (contract §5): name substring, exact email or phone, never a leak or a wildcard."""

from __future__ import annotations

import dataclasses

import pytest

from application.common import Principal
from application.users import SearchQuery
from domain.errors import InvalidInputError
from domain.users import UserCard
from tests.unit.harness import World


def viewer(world: World) -> Principal:
    user = world.store.seed_user("Viewer", email="viewer@example.com", phone_number="+15550000000")
    return Principal(user_id=user.uid, sid="s")


async def names(world: World, caller: Principal, query: str, limit: int | None = None) -> list[str]:
    return [card.name for card in await world.search(caller, SearchQuery(query=query, limit=limit))]


# --- query and limit bounds -------------------------------------------------------------------


@pytest.mark.parametrize("query", ["", "a", "  a  ", " " * 10, "x" * 101])
async def test_query_must_be_2_to_100_characters_after_trimming(world: World, query: str) -> None:
    caller = viewer(world)

    with pytest.raises(InvalidInputError) as caught:
        await world.search(caller, SearchQuery(query=query))

    assert [p.field for p in caught.value.problems] == ["query"]


@pytest.mark.parametrize("query", ["Al\x00ice", "Al\ud800"])
async def test_a_query_no_database_can_store_is_invalid_input(world: World, query: str) -> None:
    caller = viewer(world)

    with pytest.raises(InvalidInputError) as caught:
        await world.search(caller, SearchQuery(query=query))

    assert [p.field for p in caught.value.problems] == ["query"]


@pytest.mark.parametrize("query", ["Al", " Al ", "Al" * 50])
async def test_query_of_2_to_100_characters_is_accepted(world: World, query: str) -> None:
    caller = viewer(world)

    await world.search(caller, SearchQuery(query=query))


@pytest.mark.parametrize("limit", [0, 101])
async def test_limit_outside_1_to_100_is_invalid_input(world: World, limit: int) -> None:
    caller = viewer(world)

    with pytest.raises(InvalidInputError) as caught:
        await world.search(caller, SearchQuery(query="user", limit=limit))

    assert [p.field for p in caught.value.problems] == ["limit"]


async def test_results_default_to_20_and_never_exceed_the_limit(world: World) -> None:
    caller = viewer(world)
    for i in range(60):
        world.store.seed_user(f"User {i:02d}")

    assert len(await names(world, caller, "user")) == 20
    assert len(await names(world, caller, "user", limit=50)) == 50
    assert len(await names(world, caller, "user", limit=3)) == 3


# --- matching ---------------------------------------------------------------------------------


async def test_name_matches_case_insensitive_substring_ordered_by_name_then_id(world: World) -> None:
    caller = viewer(world)
    for name in ["Natalie", "ALIce", "Bob", "alice", "Straße"]:
        world.store.seed_user(name)

    assert await names(world, caller, "ALI") == ["ALIce", "alice", "Natalie"]
    assert await names(world, caller, "STRASSE") == ["Straße"]


@pytest.mark.parametrize(
    ("query", "expected"),
    [("0%", ["100% real"]), ("b_s", ["Bob_Smith"]), ("k\\s", ["back\\slash"]), ("%%", [])],
)
async def test_wildcards_in_the_query_are_literal(world: World, query: str, expected: list[str]) -> None:
    caller = viewer(world)
    for name in ["100% real", "1000 real", "Bob_Smith", "Bobs Smith", "back\\slash", "backs lash"]:
        world.store.seed_user(name)

    assert await names(world, caller, query) == expected


async def test_exact_email_matches_ignoring_case_and_comes_first(world: World) -> None:
    caller = viewer(world)
    world.store.seed_user("ann@example.com fan club")
    world.store.seed_user("Zoe", email="Ann@Example.com")

    assert await names(world, caller, "  ANN@example.COM ") == ["Zoe", "ann@example.com fan club"]


async def test_exact_phone_matches_after_normalisation_and_comes_first(world: World) -> None:
    caller = viewer(world)
    world.store.seed_user("Zed", phone_number="+14155550100")
    world.store.seed_user("+1 (415) 555-0100 hotline")

    assert await names(world, caller, "0014155550100") == ["Zed"]
    assert await names(world, caller, "+1 (415) 555-0100") == ["Zed", "+1 (415) 555-0100 hotline"]


@pytest.mark.parametrize("query", ["ann@example", "example.com", "ann@", "4155550100", "555-0100", "+1415555010"])
async def test_emails_and_phone_numbers_cannot_be_probed_by_substring(world: World, query: str) -> None:
    caller = viewer(world)
    world.store.seed_user("Zoe", email="ann@example.com", phone_number="+14155550100")

    assert await names(world, caller, query) == []


async def test_a_user_matching_several_ways_appears_once(world: World) -> None:
    caller = viewer(world)
    world.store.seed_user("zoe@example.com", email="zoe@example.com")

    assert await names(world, caller, "zoe@example.com") == ["zoe@example.com"]


# --- exclusions and what is shown -------------------------------------------------------------


async def test_search_never_finds_the_caller(world: World) -> None:
    caller = viewer(world)

    assert await names(world, caller, "viewer") == []
    assert await names(world, caller, "viewer@example.com") == []
    assert await names(world, caller, "+15550000000") == []


async def test_search_never_finds_users_who_blocked_the_caller(world: World) -> None:
    caller = viewer(world)
    blocker = world.store.seed_user("Blocker", email="blocker@example.com", phone_number="+14155550199")
    world.store.seed_user("Blocked by nobody")
    world.store.block(blocker.uid, caller.user_id)

    assert await names(world, caller, "block") == ["Blocked by nobody"]
    assert await names(world, caller, "blocker@example.com") == []
    assert await names(world, caller, "+14155550199") == []


async def test_results_are_cards_without_email_or_phone(world: World) -> None:
    caller = viewer(world)
    world.store.seed_user("Zoe", email="zoe@example.com", phone_number="+14155550100")

    (card,) = await world.search(caller, SearchQuery(query="zoe@example.com"))

    assert isinstance(card, UserCard)
    values = [str(value) for value in dataclasses.asdict(card).values()]
    assert not any("zoe@example.com" in v or "4155550100" in v for v in values)


async def test_results_show_presence_only_for_contacts(world: World) -> None:
    caller = viewer(world)
    friend = world.store.seed_user("Sam Friend")
    stranger = world.store.seed_user("Sam Stranger")
    world.store.connect(caller.user_id, friend.uid)
    world.presence.online |= {friend.uid, stranger.uid}

    cards = await world.search(caller, SearchQuery(query="sam"))

    assert [(c.name, c.online) for c in cards] == [("Sam Friend", True), ("Sam Stranger", None)]
    assert world.presence.asked == [{friend.uid}]
