"""Connect, Disconnect, SettlePresence and VisibleOnline (contract §6, §3.2 ``getOnlineUsers``)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from application.common import MAX_ID
from application.events import UserOffline, UserOnline
from application.ports import PresenceRepair
from application.presence import ONLINE_QUERY_MAX, Connect, LiveConnection, OnlineQuery
from application.users import UserLookup
from domain.errors import InvalidInputError
from domain.presence import TooManyConnectionsError
from domain.users import UserCard
from tests.unit.fakes import EPOCH
from tests.unit.harness import World, principal_of


def circle(world: World) -> tuple[int, int, int, int, int]:
    """Ada and her acquaintances: Bob (contact), Cleo (contact Ada blocked), Dan (contact who
    blocked Ada), Eve (no contact)."""
    ada, bob, cleo, dan, eve = world.seed_users("Ada", "Bob", "Cleo", "Dan", "Eve")
    for other in (bob, cleo, dan):
        world.store.connect(ada, other)
    world.store.block(ada, cleo)
    world.store.block(dan, ada)
    return ada, bob, cleo, dan, eve


def assert_published_outside_transactions(world: World) -> None:
    for published in world.notifier.published:
        assert not published.in_transaction
        assert published.commits == world.store.commits


# --- Connect ----------------------------------------------------------------------------------


async def test_the_first_connection_announces_the_user_to_visible_contacts_only(world: World) -> None:
    ada, bob, _cleo, _dan, _eve = circle(world)

    assert await world.connect(principal_of(ada), LiveConnection(connection_id="conn-1")) is True

    assert world.notifier.calls == [(bob, UserOnline(user_id=ada), None)]
    assert world.presence.online == {ada}
    assert_published_outside_transactions(world)
    assert world.store.commits == 0  # reads only


async def test_a_second_device_announces_nothing(world: World) -> None:
    ada, bob = world.seed_users("Ada", "Bob")
    world.store.connect(ada, bob)
    await world.connect(principal_of(ada), LiveConnection(connection_id="conn-1"))
    world.notifier.clear()

    assert await world.connect(principal_of(ada), LiveConnection(connection_id="conn-2")) is False

    assert world.notifier.published == []


async def test_a_connection_over_the_per_user_cap_is_refused_unregistered(world: World) -> None:
    ada, bob = world.seed_users("Ada", "Bob")
    world.store.connect(ada, bob)
    connect = Connect(world.store.unit_of_work, world.presence, world.notifier, world.clock, max_per_user=2)
    await connect(principal_of(ada), LiveConnection(connection_id="conn-1"))
    await connect(principal_of(ada), LiveConnection(connection_id="conn-2"))
    world.notifier.clear()

    with pytest.raises(TooManyConnectionsError):
        await connect(principal_of(ada), LiveConnection(connection_id="conn-3"))

    assert world.presence.states[ada].connections == {"conn-1", "conn-2"}
    assert world.notifier.published == []


async def test_a_user_without_visible_contacts_comes_online_silently(world: World) -> None:
    (ada,) = world.seed_users("Ada")

    assert await world.connect(principal_of(ada), LiveConnection(connection_id="conn-1")) is True

    assert world.notifier.published == []


async def test_a_contact_hears_of_every_user_who_comes_online(world: World) -> None:
    ada, bob, cleo = world.seed_users("Ada", "Bob", "Cleo")
    world.store.connect(ada, bob)
    world.store.connect(ada, cleo)

    await world.connect(principal_of(bob), LiveConnection(connection_id="b-1"))
    await world.connect(principal_of(cleo), LiveConnection(connection_id="c-1"))

    assert world.notifier.calls == [(ada, UserOnline(user_id=bob), None), (ada, UserOnline(user_id=cleo), None)]


# --- Disconnect and SettlePresence ------------------------------------------------------------


async def test_closing_the_last_connection_publishes_nothing_until_settled(world: World) -> None:
    ada, bob = world.seed_users("Ada", "Bob")
    world.store.connect(ada, bob)
    await world.connect(principal_of(ada), LiveConnection(connection_id="conn-1"))
    world.notifier.clear()

    await world.disconnect(principal_of(ada), LiveConnection(connection_id="conn-1"))

    assert world.notifier.published == []
    assert world.presence.online == {ada}  # online during the grace period


async def test_a_reload_inside_the_grace_period_produces_no_events_at_all(world: World) -> None:
    ada, bob = world.seed_users("Ada", "Bob")
    world.store.connect(ada, bob)
    await world.connect(principal_of(ada), LiveConnection(connection_id="conn-1"))
    world.notifier.clear()

    await world.disconnect(principal_of(ada), LiveConnection(connection_id="conn-1"))
    world.clock.advance(world.grace_s - 1)
    assert await world.settle_presence() == []
    assert await world.connect(principal_of(ada), LiveConnection(connection_id="conn-2")) is False
    world.clock.advance(60)
    assert await world.settle_presence() == []

    assert world.notifier.published == []
    assert world.store.user(ada).last_seen_at is None
    assert world.store.commits == 0


async def test_after_the_grace_period_visible_contacts_hear_offline_exactly_once(world: World) -> None:
    ada, bob, _cleo, _dan, _eve = circle(world)
    await world.connect(principal_of(ada), LiveConnection(connection_id="conn-1"))
    world.clock.advance(10)
    left_at = world.clock.now()
    await world.disconnect(principal_of(ada), LiveConnection(connection_id="conn-1"))
    world.notifier.clear()
    world.clock.advance(world.grace_s)

    assert await world.settle_presence() == [(ada, left_at)]
    world.clock.advance(60)
    assert await world.settle_presence() == []

    assert world.notifier.calls == [(bob, UserOffline(user_id=ada, last_seen_at=left_at), None)]
    assert world.presence.online == set()
    assert_published_outside_transactions(world)


async def test_a_heal_announces_who_came_back_online_and_who_left_during_the_outage(world: World) -> None:
    """Issue 15, finding 3: after Redis comes back, contacts get the transitions they missed."""
    ada, bob, cleo, _dan, _eve = circle(world)
    left_at = world.clock.advance(10)
    world.presence.repair = PresenceRepair(came_online=[ada], went_offline=[(bob, left_at)])

    assert await world.settle_presence() == [(bob, left_at)]

    assert sorted(world.notifier.calls, key=lambda call: call[0]) == [
        (ada, UserOffline(user_id=bob, last_seen_at=left_at), None),  # Bob's contact: Ada
        (bob, UserOnline(user_id=ada), None),  # Ada's visible contacts: Bob (not blocked Cleo, Dan)
    ]
    assert world.store.user(bob).last_seen_at == left_at
    assert cleo not in [call[0] for call in world.notifier.calls]
    assert not [published for published in world.notifier.published if published.in_transaction]


async def test_settling_stores_last_seen_before_telling_anyone(world: World) -> None:
    ada, bob = world.seed_users("Ada", "Bob")
    world.store.connect(ada, bob)
    await world.connect(principal_of(ada), LiveConnection(connection_id="conn-1"))
    left_at = world.clock.advance(10)
    await world.disconnect(principal_of(ada), LiveConnection(connection_id="conn-1"))
    world.clock.advance(world.grace_s + 5)
    world.notifier.clear()

    await world.settle_presence()

    assert world.store.user(ada).last_seen_at == left_at
    assert world.store.commits == 1
    assert [p.commits for p in world.notifier.published] == [1]
    card = await world.get_user(principal_of(bob), UserLookup(user_id=ada))
    assert card == UserCard(id=ada, name="Ada", online=False, last_seen_at=left_at)


async def test_settling_handles_several_users_at_once(world: World) -> None:
    ada, bob, cleo = world.seed_users("Ada", "Bob", "Cleo")
    world.store.connect(ada, bob)
    world.store.connect(ada, cleo)
    for user in (ada, bob, cleo):
        await world.connect(principal_of(user), LiveConnection(connection_id=f"conn-{user}"))
    await world.disconnect(principal_of(bob), LiveConnection(connection_id=f"conn-{bob}"))
    bob_left = world.clock.now()
    cleo_left = world.clock.advance(1)
    await world.disconnect(principal_of(cleo), LiveConnection(connection_id=f"conn-{cleo}"))
    world.notifier.clear()
    world.clock.advance(world.grace_s)

    gone = await world.settle_presence()

    assert gone == [(bob, bob_left), (cleo, cleo_left)]  # the fake reports by user id
    assert world.notifier.calls == [
        (ada, UserOffline(user_id=bob, last_seen_at=bob_left), None),
        (ada, UserOffline(user_id=cleo, last_seen_at=cleo_left), None),
    ]
    assert (world.store.user(bob).last_seen_at, world.store.user(cleo).last_seen_at) == (bob_left, cleo_left)
    assert world.store.commits == 1


async def test_a_failed_commit_while_settling_publishes_nothing(world: World) -> None:
    ada, bob = world.seed_users("Ada", "Bob")
    world.store.connect(ada, bob)
    await world.connect(principal_of(ada), LiveConnection(connection_id="conn-1"))
    await world.disconnect(principal_of(ada), LiveConnection(connection_id="conn-1"))
    world.clock.advance(world.grace_s)
    world.notifier.clear()
    world.store.fail_commit = OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        await world.settle_presence()

    assert world.notifier.published == []
    assert world.store.user(ada).last_seen_at is None


async def test_a_user_who_went_offline_is_announced_again_on_the_next_connection(world: World) -> None:
    ada, bob = world.seed_users("Ada", "Bob")
    world.store.connect(ada, bob)
    await world.connect(principal_of(ada), LiveConnection(connection_id="conn-1"))
    await world.disconnect(principal_of(ada), LiveConnection(connection_id="conn-1"))
    world.clock.advance(world.grace_s)
    await world.settle_presence()
    world.notifier.clear()

    assert await world.connect(principal_of(ada), LiveConnection(connection_id="conn-2")) is True

    assert world.notifier.calls == [(bob, UserOnline(user_id=ada), None)]


# --- VisibleOnline ----------------------------------------------------------------------------


async def test_online_users_among_given_ids_are_only_visible_online_ones_in_the_given_order(world: World) -> None:
    ada, bob, cleo, dan, eve = circle(world)
    (fay,) = world.seed_users("Fay")  # a contact, offline
    world.store.connect(ada, fay)
    world.presence.online |= {ada, bob, cleo, dan, eve}
    (gus,) = world.seed_users("Gus")
    world.store.connect(ada, gus)
    world.presence.online.add(gus)

    found = await world.visible_online(
        principal_of(ada), OnlineQuery(user_ids=[gus, eve, dan, cleo, fay, ada, bob, gus, 404])
    )

    assert found == [gus, bob]


async def test_online_users_default_to_the_viewers_visible_contacts_by_id(world: World) -> None:
    ada, bob, cleo, dan, eve = circle(world)
    (fay,) = world.seed_users("Fay")
    world.store.connect(ada, fay)
    world.presence.online |= {bob, cleo, dan, eve, fay}

    assert await world.visible_online(principal_of(ada), OnlineQuery(user_ids=None)) == [bob, fay]
    assert world.presence.asked == [{bob, fay}]  # presence of others is not even looked up


async def test_the_block_hides_presence_from_the_blocked_side_too(world: World) -> None:
    ada, _bob, cleo, dan, _eve = circle(world)
    world.presence.online.add(ada)

    assert await world.visible_online(principal_of(cleo), OnlineQuery(user_ids=[ada])) == []  # Ada blocked Cleo
    assert await world.visible_online(principal_of(dan), OnlineQuery(user_ids=None)) == []  # Dan blocked Ada


async def test_an_empty_list_or_only_yourself_is_answered_without_lookups(world: World) -> None:
    (ada,) = world.seed_users("Ada")
    world.presence.online.add(ada)

    assert await world.visible_online(principal_of(ada), OnlineQuery(user_ids=[])) == []
    assert await world.visible_online(principal_of(ada), OnlineQuery(user_ids=[ada])) == []
    assert world.presence.asked == []


async def test_up_to_the_maximum_number_of_ids_is_accepted(world: World) -> None:
    ada, bob = world.seed_users("Ada", "Bob")
    world.store.connect(ada, bob)
    world.presence.online.add(bob)

    ids = [bob, *range(1000, 1000 + ONLINE_QUERY_MAX - 1)]

    assert await world.visible_online(principal_of(ada), OnlineQuery(user_ids=ids)) == [bob]


@pytest.mark.parametrize(
    "user_ids",
    [list(range(1, ONLINE_QUERY_MAX + 2)), [0], [-1], [MAX_ID + 1]],
    ids=["too many", "zero", "negative", "too large"],
)
async def test_bad_id_lists_are_invalid_input_on_user_ids(world: World, user_ids: list[int]) -> None:
    (ada,) = world.seed_users("Ada")

    with pytest.raises(InvalidInputError) as caught:
        await world.visible_online(principal_of(ada), OnlineQuery(user_ids=user_ids))

    assert [p.field for p in caught.value.problems] == ["userIds"]


# --- SendMessage introduces new contacts ------------------------------------------------------


async def test_becoming_contacts_announces_each_online_user_to_the_other(world: World) -> None:
    ada, bob = world.seed_users("Ada", "Bob")
    world.presence.online |= {ada, bob}
    await world.send(ada, bob)
    world.notifier.clear()

    result = await world.send(bob, ada)

    assert result.became_contacts is True
    events = [(user, type(event).__name__) for user, event, _ in world.notifier.calls]
    assert events == [(ada, "MessageReceived"), (bob, "MessageReceived"), (ada, "UserOnline"), (bob, "UserOnline")]
    assert world.notifier.events_to(ada)[1:] == [UserOnline(user_id=bob)]
    assert world.notifier.events_to(bob)[1:] == [UserOnline(user_id=ada)]
    assert_published_outside_transactions(world)


@pytest.mark.parametrize("online_one", ["sender", "recipient"])
async def test_only_the_online_one_is_announced(world: World, online_one: str) -> None:
    ada, bob = world.seed_users("Ada", "Bob")
    await world.send(ada, bob)
    online, other = (bob, ada) if online_one == "sender" else (ada, bob)
    world.presence.online.add(online)
    world.notifier.clear()

    await world.send(bob, ada)

    assert [e for e in world.notifier.events_to(other) if isinstance(e, UserOnline)] == [UserOnline(user_id=online)]
    assert not any(isinstance(e, UserOnline) for e in world.notifier.events_to(online))


async def test_nobody_online_means_no_announcement(world: World) -> None:
    ada, bob = world.seed_users("Ada", "Bob")

    await world.send(ada, bob)
    await world.send(bob, ada)

    assert not any(isinstance(p.event, UserOnline) for p in world.notifier.published)


async def test_the_announcement_happens_only_when_they_become_contacts(world: World) -> None:
    ada, bob = world.seed_users("Ada", "Bob")
    world.presence.online |= {ada, bob}

    await world.send(ada, bob)  # not contacts yet
    first = [p for p in world.notifier.published if isinstance(p.event, UserOnline)]
    making = await world.send(bob, ada, client_msg_id="make")
    world.notifier.clear()
    await world.send(ada, bob)
    await world.send(bob, ada)
    resend = await world.send(bob, ada, client_msg_id="make")

    assert first == []
    assert making.became_contacts
    assert resend.duplicate
    assert not any(isinstance(p.event, UserOnline) for p in world.notifier.published)


async def test_withheld_messages_make_no_contacts_and_announce_nothing(world: World) -> None:
    ada, bob = world.seed_users("Ada", "Bob")
    world.presence.online |= {ada, bob}
    world.store.block(ada, bob)

    await world.send(ada, bob)
    result = await world.send(bob, ada)  # withheld: Ada blocked Bob

    assert result.message.withheld
    assert not result.became_contacts
    assert not any(isinstance(p.event, UserOnline) for p in world.notifier.published)


async def test_contacts_made_across_a_block_are_not_announced(world: World) -> None:
    ada, bob = world.seed_users("Ada", "Bob")
    world.presence.online |= {ada, bob}
    await world.send(bob, ada)
    world.store.block(ada, bob)  # Ada blocks Bob, then writes to him (not withheld: he did not block her)

    result = await world.send(ada, bob)

    assert result.became_contacts is True
    assert not any(isinstance(p.event, UserOnline) for p in world.notifier.published)


async def test_connect_after_becoming_contacts_reaches_the_new_contact(world: World) -> None:
    ada, bob = world.seed_users("Ada", "Bob")
    await world.send(ada, bob)
    await world.send(bob, ada)
    world.notifier.clear()

    await world.connect(principal_of(ada), LiveConnection(connection_id="conn-1"))

    assert world.notifier.calls == [(bob, UserOnline(user_id=ada), None)]


async def test_settle_uses_the_fixed_clock_only(world: World) -> None:
    (ada,) = world.seed_users("Ada")
    await world.connect(principal_of(ada), LiveConnection(connection_id="conn-1"))
    await world.disconnect(principal_of(ada), LiveConnection(connection_id="conn-1"))

    world.clock.set(EPOCH + timedelta(seconds=world.grace_s) - timedelta(microseconds=1))
    assert await world.settle_presence() == []
    world.clock.set(EPOCH + timedelta(seconds=world.grace_s))
    assert await world.settle_presence() == [(ada, EPOCH)]
