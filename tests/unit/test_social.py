"""BlockUser, UnblockUser, ListBlocked and RelayTyping (contract §2 blocking, §3.2 ``typing``, §4)."""

from __future__ import annotations

import pytest

from application.common import MAX_ID
from application.events import Typing
from application.messaging import PendingQuery
from application.presence import OnlineQuery
from application.social import Block, TypingNotice, Unblock
from domain.errors import InvalidInputError, UserNotFoundError
from domain.users import UserCard
from tests.unit.harness import World, principal_of

# --- BlockUser --------------------------------------------------------------------------------


async def test_blocking_stores_a_directional_block(world: World) -> None:
    ada, bob = world.seed_users("Ada", "Bob")

    await world.block_user(principal_of(ada), Block(user_id=bob))

    assert world.store.data.blocks == {(ada, bob)}
    assert world.store.commits == 1
    assert world.notifier.published == []  # nobody is told, the blocked user's connections are untouched


async def test_blocking_twice_is_the_same_as_once(world: World) -> None:
    ada, bob = world.seed_users("Ada", "Bob")

    await world.block_user(principal_of(ada), Block(user_id=bob))
    await world.block_user(principal_of(ada), Block(user_id=bob))

    assert world.store.data.blocks == {(ada, bob)}


async def test_blocking_back_adds_the_other_direction(world: World) -> None:
    ada, bob = world.seed_users("Ada", "Bob")

    await world.block_user(principal_of(ada), Block(user_id=bob))
    await world.block_user(principal_of(bob), Block(user_id=ada))

    assert world.store.data.blocks == {(ada, bob), (bob, ada)}


async def test_blocking_yourself_is_invalid_input_and_stores_nothing(world: World) -> None:
    (ada,) = world.seed_users("Ada")

    with pytest.raises(InvalidInputError) as caught:
        await world.block_user(principal_of(ada), Block(user_id=ada))

    assert [p.field for p in caught.value.problems] == ["id"]
    assert (world.store.data.blocks, world.store.commits) == (set(), 0)


@pytest.mark.parametrize("target", [404, 0, -1, MAX_ID + 1])
async def test_blocking_an_unknown_user_is_user_not_found(world: World, target: int) -> None:
    (ada,) = world.seed_users("Ada")

    with pytest.raises(UserNotFoundError) as caught:
        await world.block_user(principal_of(ada), Block(user_id=target))

    assert caught.value.user_id == target
    assert (world.store.data.blocks, world.store.commits) == (set(), 0)


async def test_a_block_hides_presence_between_contacts(world: World) -> None:
    ada, bob = world.seed_users("Ada", "Bob")
    world.store.connect(ada, bob)
    world.presence.online |= {ada, bob}

    await world.block_user(principal_of(ada), Block(user_id=bob))

    assert await world.visible_online(principal_of(ada), OnlineQuery(user_ids=None)) == []
    assert await world.visible_online(principal_of(bob), OnlineQuery(user_ids=[ada])) == []


# --- UnblockUser ------------------------------------------------------------------------------


async def test_unblocking_removes_only_your_own_block(world: World) -> None:
    ada, bob = world.seed_users("Ada", "Bob")
    world.store.block(ada, bob)
    world.store.block(bob, ada)

    await world.unblock_user(principal_of(ada), Unblock(user_id=bob))

    assert world.store.data.blocks == {(bob, ada)}
    assert world.store.commits == 1
    assert world.notifier.published == []


async def test_unblocking_without_a_block_is_fine(world: World) -> None:
    ada, bob = world.seed_users("Ada", "Bob")

    await world.unblock_user(principal_of(ada), Unblock(user_id=bob))
    await world.unblock_user(principal_of(ada), Unblock(user_id=bob))

    assert world.store.data.blocks == set()


async def test_unblocking_restores_presence_between_contacts(world: World) -> None:
    ada, bob = world.seed_users("Ada", "Bob")
    world.store.connect(ada, bob)
    world.presence.online |= {ada, bob}
    await world.block_user(principal_of(ada), Block(user_id=bob))

    await world.unblock_user(principal_of(ada), Unblock(user_id=bob))

    assert await world.visible_online(principal_of(bob), OnlineQuery(user_ids=None)) == [ada]


async def test_unblocking_keeps_withheld_messages_withheld(world: World) -> None:
    ada, bob = world.seed_users("Ada", "Bob")
    await world.block_user(principal_of(ada), Block(user_id=bob))
    withheld = (await world.send(bob, ada)).message

    await world.unblock_user(principal_of(ada), Unblock(user_id=bob))

    assert world.store.message(withheld.id).withheld
    assert (await world.pending_for(principal_of(ada), PendingQuery())).messages == []


async def test_unblocking_yourself_is_invalid_input(world: World) -> None:
    (ada,) = world.seed_users("Ada")

    with pytest.raises(InvalidInputError) as caught:
        await world.unblock_user(principal_of(ada), Unblock(user_id=ada))

    assert [p.field for p in caught.value.problems] == ["id"]


async def test_unblocking_an_unknown_user_is_user_not_found(world: World) -> None:
    (ada,) = world.seed_users("Ada")

    with pytest.raises(UserNotFoundError):
        await world.unblock_user(principal_of(ada), Unblock(user_id=404))


# --- ListBlocked ------------------------------------------------------------------------------


async def test_the_block_list_holds_your_blocks_by_id_without_presence(world: World) -> None:
    ada, bob, cleo, dan = world.seed_users("Ada", "Bob", "Cleo", "Dan")
    world.store.connect(ada, cleo)
    world.presence.online |= {bob, cleo, dan}
    await world.block_user(principal_of(ada), Block(user_id=cleo))
    await world.block_user(principal_of(ada), Block(user_id=bob))
    await world.block_user(principal_of(dan), Block(user_id=ada))  # blocks of others are not listed

    listed = await world.list_blocked(principal_of(ada))

    assert listed == [UserCard(id=bob, name="Bob"), UserCard(id=cleo, name="Cleo")]
    assert world.presence.asked == []


async def test_the_block_list_is_empty_without_blocks(world: World) -> None:
    (ada,) = world.seed_users("Ada")

    assert await world.list_blocked(principal_of(ada)) == []


# --- RelayTyping ------------------------------------------------------------------------------


@pytest.mark.parametrize("is_typing", [True, False])
async def test_typing_reaches_a_contact(world: World, is_typing: bool) -> None:
    ada, bob = world.seed_users("Ada", "Bob")
    world.store.connect(ada, bob)

    await world.relay_typing(principal_of(ada), TypingNotice(to=bob, is_typing=is_typing))

    assert world.notifier.calls == [(bob, Typing(from_id=ada, is_typing=is_typing), None)]
    assert world.store.commits == 0  # never stored
    assert not world.notifier.published[0].in_transaction


async def test_typing_to_a_non_contact_is_dropped_silently(world: World) -> None:
    ada, bob = world.seed_users("Ada", "Bob")
    await world.send(ada, bob)  # one-way messages do not make contacts
    world.notifier.clear()

    await world.relay_typing(principal_of(ada), TypingNotice(to=bob, is_typing=True))

    assert world.notifier.published == []


@pytest.mark.parametrize("direction", ["sender blocked recipient", "recipient blocked sender"])
async def test_typing_across_a_block_is_dropped_silently_either_way(world: World, direction: str) -> None:
    ada, bob = world.seed_users("Ada", "Bob")
    world.store.connect(ada, bob)
    if direction == "sender blocked recipient":
        world.store.block(ada, bob)
    else:
        world.store.block(bob, ada)

    await world.relay_typing(principal_of(ada), TypingNotice(to=bob, is_typing=True))
    await world.relay_typing(principal_of(bob), TypingNotice(to=ada, is_typing=True))

    assert world.notifier.published == []


@pytest.mark.parametrize("to", [404, 0, -1, MAX_ID + 1])
async def test_typing_to_an_unknown_user_is_dropped_silently(world: World, to: int) -> None:
    (ada,) = world.seed_users("Ada")

    await world.relay_typing(principal_of(ada), TypingNotice(to=to, is_typing=True))

    assert world.notifier.published == []


async def test_typing_to_yourself_is_dropped_silently(world: World) -> None:
    (ada,) = world.seed_users("Ada")

    await world.relay_typing(principal_of(ada), TypingNotice(to=ada, is_typing=True))

    assert world.notifier.published == []
