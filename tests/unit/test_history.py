"""History: one page of a conversation, ascending by seq, windows before/after a seq (contract §2)."""

from __future__ import annotations

import pytest

from application.messaging import HistoryPage, HistoryQuery
from domain.errors import FieldProblem, InvalidInputError, UserNotFoundError
from tests.unit.harness import World, principal_of


async def seqs(
    world: World,
    viewer: int,
    peer: int,
    *,
    before: int | None = None,
    after: int | None = None,
    limit: int | None = None,
) -> tuple[list[int], bool]:
    query = HistoryQuery(peer_id=peer, before=before, after=after, limit=limit)
    page = await world.history(principal_of(viewer), query)
    return [m.seq for m in page.items], page.has_more


async def test_without_a_window_the_newest_page_comes_ascending(world: World) -> None:
    ada, bob = world.seed_users("Ada", "Bob")
    await world.exchange(ada, bob, 5)

    assert await seqs(world, ada, bob, limit=2) == ([4, 5], True)
    assert await seqs(world, bob, ada) == ([1, 2, 3, 4, 5], False)
    assert await seqs(world, ada, bob, limit=5) == ([1, 2, 3, 4, 5], False)


async def test_before_gives_the_page_just_below_with_has_more_towards_older(world: World) -> None:
    ada, bob = world.seed_users("Ada", "Bob")
    await world.exchange(ada, bob, 5)

    assert await seqs(world, ada, bob, before=4, limit=2) == ([2, 3], True)
    assert await seqs(world, ada, bob, before=3, limit=2) == ([1, 2], False)
    assert await seqs(world, ada, bob, before=1, limit=2) == ([], False)
    assert await seqs(world, ada, bob, before=99, limit=2) == ([4, 5], True)


async def test_after_gives_the_page_just_above_with_has_more_towards_newer(world: World) -> None:
    ada, bob = world.seed_users("Ada", "Bob")
    await world.exchange(ada, bob, 5)

    assert await seqs(world, ada, bob, after=0, limit=2) == ([1, 2], True)
    assert await seqs(world, ada, bob, after=1, limit=2) == ([2, 3], True)
    assert await seqs(world, ada, bob, after=3, limit=2) == ([4, 5], False)
    assert await seqs(world, ada, bob, after=5, limit=2) == ([], False)


async def test_paging_backwards_and_forwards_covers_the_conversation_once(world: World) -> None:
    ada, bob = world.seed_users("Ada", "Bob")
    await world.exchange(ada, bob, 7)

    backwards: list[int] = []
    page, more = await seqs(world, ada, bob, limit=3)
    backwards = page + backwards
    while more:
        page, more = await seqs(world, ada, bob, before=backwards[0], limit=3)
        backwards = page + backwards
    forwards: list[int] = []
    more = True
    while more:
        page, more = await seqs(world, bob, ada, after=forwards[-1] if forwards else 0, limit=3)
        forwards += page

    assert backwards == forwards == [1, 2, 3, 4, 5, 6, 7]


async def test_items_are_the_stored_messages_with_their_current_receipts(world: World) -> None:
    ada, bob = world.seed_users("Ada", "Bob")
    sent = (await world.send(ada, bob)).message
    now = world.clock.advance(3)
    await world.read(bob, ada, 1)

    page = await world.history(principal_of(ada), HistoryQuery(peer_id=bob))

    assert page == HistoryPage(items=[world.store.message(sent.id)], has_more=False)
    assert (page.items[0].delivered_at, page.items[0].read_at) == (now, now)


async def test_only_the_two_users_messages_are_in_their_conversation(world: World) -> None:
    ada, bob, cleo = world.seed_users("Ada", "Bob", "Cleo")
    await world.send(ada, bob, "to bob")
    await world.send(ada, cleo, "to cleo")
    await world.send(cleo, bob, "cleo to bob")

    page = await world.history(principal_of(bob), HistoryQuery(peer_id=ada))

    assert [m.body for m in page.items] == ["to bob"]


async def test_a_conversation_without_messages_is_an_empty_page(world: World) -> None:
    ada, bob = world.seed_users("Ada", "Bob")

    assert await world.history(principal_of(ada), HistoryQuery(peer_id=bob)) == HistoryPage(items=[], has_more=False)


async def test_withheld_messages_appear_only_in_the_senders_history(world: World) -> None:
    ada, bob = world.seed_users("Ada", "Bob")
    await world.send(ada, bob)
    world.store.block(bob, ada)
    await world.send(ada, bob, "withheld")
    await world.send(bob, ada)

    assert await seqs(world, ada, bob) == ([1, 2, 3], False)
    assert await seqs(world, bob, ada) == ([1, 3], False)  # a seq gap, not a loss
    assert await seqs(world, bob, ada, limit=1) == ([3], True)
    assert await seqs(world, bob, ada, before=3, limit=1) == ([1], False)
    assert await seqs(world, bob, ada, after=1, limit=1) == ([3], False)


async def test_before_and_after_together_are_invalid_input(world: World) -> None:
    ada, bob = world.seed_users("Ada", "Bob")

    with pytest.raises(InvalidInputError) as caught:
        await seqs(world, ada, bob, before=5, after=1)

    assert caught.value.problems == (FieldProblem("before", "give before or after, not both"),)


@pytest.mark.parametrize(("before", "after", "field"), [(0, None, "before"), (-1, None, "before"), (None, -1, "after")])
async def test_a_seq_window_below_its_range_is_invalid_input(
    world: World, before: int | None, after: int | None, field: str
) -> None:
    ada, bob = world.seed_users("Ada", "Bob")

    with pytest.raises(InvalidInputError) as caught:
        await seqs(world, ada, bob, before=before, after=after)

    assert [p.field for p in caught.value.problems] == [field]


async def test_the_history_with_an_unknown_user_is_user_not_found(world: World) -> None:
    (ada,) = world.seed_users("Ada")

    with pytest.raises(UserNotFoundError) as caught:
        await seqs(world, ada, 404)

    assert caught.value.user_id == 404


async def test_the_history_with_yourself_is_invalid_input(world: World) -> None:
    (ada,) = world.seed_users("Ada")

    with pytest.raises(InvalidInputError):
        await seqs(world, ada, ada)


async def test_the_page_size_defaults_to_50(world: World) -> None:
    ada, bob = world.seed_users("Ada", "Bob")
    for _ in range(51):
        await world.send(ada, bob)

    items, more = await seqs(world, ada, bob)

    assert (items, more) == (list(range(2, 52)), True)


@pytest.mark.parametrize("limit", [1, 100])
async def test_the_page_size_may_be_1_to_100(world: World, limit: int) -> None:
    ada, bob = world.seed_users("Ada", "Bob")
    await world.exchange(ada, bob, 2)

    items, _ = await seqs(world, ada, bob, limit=limit)

    assert len(items) == min(limit, 2)


@pytest.mark.parametrize("limit", [-1, 0, 101])
async def test_a_page_size_outside_1_to_100_is_invalid_input(world: World, limit: int) -> None:
    ada, bob = world.seed_users("Ada", "Bob")

    with pytest.raises(InvalidInputError) as caught:
        await seqs(world, ada, bob, limit=limit)

    assert caught.value.problems == (FieldProblem("limit", "must be between 1 and 100"),)
