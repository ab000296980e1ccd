"""ListConversations: most recent first, unread counts, read pointers, cursor paging, safe peer cards."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest

from application.common import Page, PageRequest
from application.messaging import Acknowledge, ConversationView
from application.ports import ConversationState
from domain.errors import FieldProblem, InvalidInputError
from domain.users import UserCard
from tests.unit.fakes import EPOCH
from tests.unit.harness import World, principal_of

LAST_SEEN = EPOCH - timedelta(hours=1)


async def peers(world: World, viewer: int, *, limit: int | None = None, cursor: str | None = None) -> list[int]:
    page = await world.list_conversations(principal_of(viewer), PageRequest(limit=limit, cursor=cursor))
    return [view.peer.id for view in page.items]


async def test_conversations_come_most_recent_first(world: World) -> None:
    ada, bob, cleo, dan = world.seed_users("Ada", "Bob", "Cleo", "Dan")
    await world.send(ada, bob)
    await world.send(cleo, ada)
    await world.send(ada, dan)
    await world.send(bob, ada)  # Bob's conversation is the most recent again

    assert await peers(world, ada) == [bob, dan, cleo]
    assert await peers(world, bob) == [ada]
    assert await peers(world, cleo) == [ada]


async def test_a_conversation_shows_its_last_message_counters_and_pointers(world: World) -> None:
    ada, bob = world.seed_users("Ada", "Bob")
    await world.exchange(ada, bob, 5)  # Ada sent 1, 3, 5; Bob sent 2, 4
    await world.read(ada, bob, 2)
    await world.read(bob, ada, 3)
    last = world.store.messages_between(ada, bob)[-1]

    page = await world.list_conversations(principal_of(ada), PageRequest())

    assert page == Page(
        items=[
            ConversationView(
                peer=UserCard(id=bob, name="Bob", online=False, last_seen_at=None),  # contacts now
                last_message=last,
                unread_count=1,  # Bob's 4; Ada's own messages never count
                state=ConversationState(peer_id=bob, last_seq=5, read_seq=2, peer_read_seq=3),
                cursor=page.items[0].cursor,
            )
        ],
        next_cursor=None,
    )
    (bobs_view,) = (await world.list_conversations(principal_of(bob), PageRequest())).items
    assert (bobs_view.unread_count, bobs_view.state) == (
        1,  # Ada's 5
        ConversationState(peer_id=ada, last_seq=5, read_seq=3, peer_read_seq=2),
    )


async def test_pointers_are_zero_before_any_read(world: World) -> None:
    ada, bob = world.seed_users("Ada", "Bob")
    await world.exchange(ada, bob, 3)

    (view,) = (await world.list_conversations(principal_of(bob), PageRequest())).items

    assert view.state == ConversationState(peer_id=ada, last_seq=3, read_seq=0, peer_read_seq=0)
    assert view.unread_count == 2


async def test_the_last_message_carries_its_current_receipts(world: World) -> None:
    ada, bob = world.seed_users("Ada", "Bob")
    sent = (await world.send(ada, bob)).message
    now = world.clock.advance(9)
    await world.acknowledge(principal_of(bob), Acknowledge(ids=[sent.id]))

    (view,) = (await world.list_conversations(principal_of(ada), PageRequest())).items

    assert view.last_message.delivered_at == now


async def test_a_sender_sees_a_withheld_message_and_its_recipient_does_not(world: World) -> None:
    ada, bob = world.seed_users("Ada", "Bob")
    first = (await world.send(ada, bob)).message
    world.store.block(bob, ada)
    withheld = (await world.send(ada, bob)).message

    (adas,) = (await world.list_conversations(principal_of(ada), PageRequest())).items
    (bobs,) = (await world.list_conversations(principal_of(bob), PageRequest())).items

    assert adas.last_message == withheld
    assert bobs.last_message == first
    assert bobs.unread_count == 1  # the withheld message is never unread


async def test_a_conversation_of_only_withheld_messages_is_not_listed_for_the_recipient(world: World) -> None:
    ada, bob = world.seed_users("Ada", "Bob")
    world.store.block(bob, ada)
    await world.send(ada, bob)

    assert await peers(world, ada) == [bob]
    assert await peers(world, bob) == []


async def test_a_withheld_message_does_not_make_the_conversation_recent_for_the_recipient(world: World) -> None:
    ada, bob, cleo = world.seed_users("Ada", "Bob", "Cleo")
    await world.send(ada, bob)
    await world.send(cleo, bob)
    world.store.block(bob, ada)
    await world.send(ada, bob)  # withheld

    assert await peers(world, bob) == [cleo, ada]


async def test_reading_brings_the_unread_count_down(world: World) -> None:
    ada, bob = world.seed_users("Ada", "Bob")
    for _ in range(3):
        await world.send(ada, bob)

    counts = [(await world.list_conversations(principal_of(bob), PageRequest())).items[0].unread_count]
    await world.read(bob, ada, 2)
    counts.append((await world.list_conversations(principal_of(bob), PageRequest())).items[0].unread_count)
    await world.read(bob, ada, 3)
    counts.append((await world.list_conversations(principal_of(bob), PageRequest())).items[0].unread_count)

    assert counts == [3, 1, 0]


async def test_acknowledging_does_not_count_as_reading(world: World) -> None:
    ada, bob = world.seed_users("Ada", "Bob")
    sent = (await world.send(ada, bob)).message
    await world.acknowledge(principal_of(bob), Acknowledge(ids=[sent.id]))

    (view,) = (await world.list_conversations(principal_of(bob), PageRequest())).items

    assert view.unread_count == 1


async def test_conversations_are_paginated_by_cursor(world: World) -> None:
    viewer, *others = world.seed_users("Viewer", "P1", "P2", "P3", "P4", "P5")
    for other in others:
        await world.send(other, viewer)
    newest_first = list(reversed(others))

    first = await world.list_conversations(principal_of(viewer), PageRequest(limit=2, cursor=None))
    second = await world.list_conversations(principal_of(viewer), PageRequest(limit=2, cursor=first.next_cursor))
    third = await world.list_conversations(principal_of(viewer), PageRequest(limit=2, cursor=second.next_cursor))

    assert [v.peer.id for v in first.items] == newest_first[:2]
    assert [v.peer.id for v in second.items] == newest_first[2:4]
    assert ([v.peer.id for v in third.items], third.next_cursor) == (newest_first[4:], None)
    assert first.next_cursor == first.items[-1].cursor
    assert second.next_cursor == second.items[-1].cursor


async def test_an_exactly_full_last_page_has_no_next_cursor(world: World) -> None:
    viewer, *others = world.seed_users("Viewer", "P1", "P2")
    for other in others:
        await world.send(other, viewer)

    page = await world.list_conversations(principal_of(viewer), PageRequest(limit=2, cursor=None))

    assert (len(page.items), page.next_cursor) == (2, None)


async def test_paging_goes_on_below_the_cursor_when_a_conversation_moves_to_the_top(world: World) -> None:
    viewer, p1, p2, p3 = world.seed_users("Viewer", "P1", "P2", "P3")
    for other in (p1, p2, p3):
        await world.send(other, viewer)
    first = await world.list_conversations(principal_of(viewer), PageRequest(limit=1, cursor=None))
    await world.send(p3, viewer)  # the conversation already shown gets newer

    assert await peers(world, viewer, limit=5, cursor=first.next_cursor) == [p2, p1]
    assert await peers(world, viewer) == [p3, p2, p1]


async def test_peer_cards_never_carry_email_or_phone_and_show_presence_only_to_contacts(world: World) -> None:
    me = world.store.seed_user("Me").uid
    friend = world.store.seed_user("Friend", email="friend@example.com", last_seen_at=LAST_SEEN).uid
    stranger = world.store.seed_user("Stranger", phone_number="+14155550199", last_seen_at=LAST_SEEN).uid
    world.presence.online |= {friend, stranger}
    await world.send(me, friend)
    await world.send(friend, me)  # contacts now
    await world.send(stranger, me)  # one-way: not a contact

    page = await world.list_conversations(principal_of(me), PageRequest())

    assert [view.peer for view in page.items] == [
        UserCard(id=stranger, name="Stranger", online=None, last_seen_at=None),
        UserCard(id=friend, name="Friend", online=True, last_seen_at=None),
    ]
    for view in page.items:
        assert {f.name for f in dataclasses.fields(view.peer)} == {"id", "name", "online", "last_seen_at"}
        assert "@" not in repr(view.peer)
        assert "+1415" not in repr(view.peer)


async def test_a_block_hides_a_contacts_presence_in_the_list(world: World) -> None:
    me, friend = world.seed_users("Me", "Friend")
    await world.exchange(me, friend, 2)
    world.presence.online.add(friend)
    world.store.block(me, friend)

    (view,) = (await world.list_conversations(principal_of(me), PageRequest())).items

    assert view.peer == UserCard(id=friend, name="Friend", online=None, last_seen_at=None)


async def test_a_contact_who_blocked_the_caller_appears_offline_in_the_list(world: World) -> None:
    me, friend = world.seed_users("Me", "Friend")
    await world.exchange(me, friend, 2)
    world.presence.online.add(friend)
    world.store.block(friend, me)

    (view,) = (await world.list_conversations(principal_of(me), PageRequest())).items

    assert view.peer == UserCard(id=friend, name="Friend", online=False, last_seen_at=None)


async def test_no_conversations_gives_an_empty_page(world: World) -> None:
    (ada,) = world.seed_users("Ada")

    assert await world.list_conversations(principal_of(ada), PageRequest()) == Page(items=[], next_cursor=None)


async def test_the_page_size_defaults_to_50(world: World) -> None:
    viewer, *others = world.seed_users("Viewer", *(f"P{i}" for i in range(51)))
    for other in others:
        await world.send(viewer, other)

    page = await world.list_conversations(principal_of(viewer), PageRequest())

    assert len(page.items) == 50
    assert page.next_cursor is not None


@pytest.mark.parametrize("limit", [-1, 0, 101])
async def test_a_page_size_outside_1_to_100_is_invalid_input(world: World, limit: int) -> None:
    (ada,) = world.seed_users("Ada")

    with pytest.raises(InvalidInputError) as caught:
        await world.list_conversations(principal_of(ada), PageRequest(limit=limit, cursor=None))

    assert caught.value.problems == (FieldProblem("limit", "must be between 1 and 100"),)
