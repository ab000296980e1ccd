"""SendMessage, AcknowledgeDelivery, MarkRead, PendingFor and StillPending (contract §3.2, §4)."""

from __future__ import annotations

import pytest

from application.events import MessageDelivered, MessageReceived, MessagesRead
from application.messaging import Acknowledge, Batch, PendingCheck, PendingQuery, SendResult, publish_receipts
from application.ports import DuplicateMessageError
from domain.delivery import Delivered
from domain.errors import FieldProblem, InvalidInputError, NotFoundError, UserNotFoundError
from domain.messages import Message, NewMessage, Pair
from tests.unit.fakes import EPOCH, RecordingNotifier
from tests.unit.harness import World, principal_of


def assert_published_after_commit(world: World) -> None:
    """Every publication happened outside any transaction and after the last commit."""
    assert world.notifier.published, "expected publications"
    for published in world.notifier.published:
        assert not published.in_transaction
        assert published.commits == world.store.commits


def ids(messages: list[Message]) -> list[str]:
    return [m.id for m in messages]


# --- SendMessage: storing ---------------------------------------------------------------------


async def test_a_message_is_stored_once_with_the_next_seq_of_its_conversation(world: World) -> None:
    ada, bob, cleo = world.seed_users("Ada", "Bob", "Cleo")

    seqs = [(await world.send(s, t)).message.seq for s, t in [(ada, bob), (bob, ada), (ada, bob), (ada, cleo)]]

    assert seqs == [1, 2, 3, 1]  # per conversation, whoever sends
    assert [m.seq for m in world.store.messages_between(ada, bob)] == [1, 2, 3]
    assert world.store.data.seqs == {Pair.of(ada, bob): 3, Pair.of(ada, cleo): 1}


async def test_the_stored_message_is_what_was_sent_with_server_id_and_time(world: World) -> None:
    ada, bob = world.seed_users("Ada", "Bob")
    world.clock.advance(5)

    result = await world.send(ada, bob, "  hello there ", client_msg_id="c-1", connection="conn-a")

    assert result == SendResult(message=result.message, duplicate=False, became_contacts=False)
    assert result.message == Message(
        id=result.message.id,
        seq=1,
        sender_id=ada,
        recipient_id=bob,
        body="  hello there ",  # stored as sent
        client_msg_id="c-1",
        created_at=EPOCH.replace(second=5),
        delivered_at=None,
        read_at=None,
        withheld=False,
    )
    assert world.store.data.messages == [result.message]
    assert world.store.commits == 1


async def test_a_body_of_exactly_the_maximum_length_is_accepted(world: World) -> None:
    ada, bob = world.seed_users("Ada", "Bob")

    result = await world.send(ada, bob, "x" * world.max_body_chars)

    assert result.message.body == "x" * 20


# --- SendMessage: fan-out ---------------------------------------------------------------------


async def test_a_message_goes_to_the_recipient_and_the_senders_other_connections(world: World) -> None:
    ada, bob = world.seed_users("Ada", "Bob")

    result = await world.send(ada, bob, connection="conn-a")

    received = MessageReceived(message=result.message)
    assert world.notifier.calls == [(bob, received, None), (ada, received, "conn-a")]
    assert_published_after_commit(world)


async def test_a_message_sent_from_no_connection_goes_to_every_connection_of_the_sender(world: World) -> None:
    ada, bob = world.seed_users("Ada", "Bob")

    result = await world.send(ada, bob)

    received = MessageReceived(message=result.message)
    assert world.notifier.calls == [(bob, received, None), (ada, received, None)]


async def test_a_failed_commit_stores_and_publishes_nothing(world: World) -> None:
    ada, bob = world.seed_users("Ada", "Bob")
    world.store.fail_commit = OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        await world.send(ada, bob, client_msg_id="c-1")

    assert world.store.data.messages == []
    assert world.notifier.published == []
    world.store.fail_commit = None
    retried = await world.send(ada, bob, client_msg_id="c-1")
    assert (retried.duplicate, retried.message.seq) == (False, 1)


# --- SendMessage: validation ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "client_msg_id", "field"),
    [
        ("", "c-1", "message"),
        ("   ", "c-1", "message"),
        ("\n\t", "c-1", "message"),
        ("x" * 21, "c-1", "message"),
        ("hi", "", "clientMsgId"),
        ("hi", "x" * 65, "clientMsgId"),
    ],
)
async def test_invalid_input_stores_and_publishes_nothing(
    world: World, body: str, client_msg_id: str, field: str
) -> None:
    ada, bob = world.seed_users("Ada", "Bob")

    with pytest.raises(InvalidInputError) as caught:
        await world.send(ada, bob, body, client_msg_id=client_msg_id)

    assert [p.field for p in caught.value.problems] == [field]
    assert (world.store.data.messages, world.store.data.seqs) == ([], {})
    assert world.notifier.published == []


async def test_a_message_to_an_unknown_user_is_user_not_found(world: World) -> None:
    (ada,) = world.seed_users("Ada")

    with pytest.raises(UserNotFoundError) as caught:
        await world.send(ada, 404)

    assert caught.value.user_id == 404
    assert (world.store.data.messages, world.store.data.seqs, world.notifier.published) == ([], {}, [])


async def test_messaging_yourself_is_invalid_input_on_to(world: World) -> None:
    (ada,) = world.seed_users("Ada")

    with pytest.raises(InvalidInputError) as caught:
        await world.send(ada, ada)

    assert caught.value.problems == (FieldProblem("to", "you cannot send messages to yourself"),)
    assert (world.store.data.messages, world.store.data.seqs, world.notifier.published) == ([], {}, [])


# --- SendMessage: duplicates ------------------------------------------------------------------


async def test_a_resent_client_msg_id_returns_the_stored_message_and_publishes_nothing(world: World) -> None:
    ada, bob = world.seed_users("Ada", "Bob")
    first = await world.send(ada, bob, "hello", client_msg_id="c-1", connection="conn-a")
    world.notifier.clear()
    world.clock.advance(60)

    again = await world.send(ada, bob, "hello", client_msg_id="c-1", connection="conn-b")

    assert again == SendResult(message=first.message, duplicate=True, became_contacts=False)
    assert world.store.data.messages == [first.message]
    assert world.notifier.published == []


async def test_a_resend_is_recognised_by_sender_and_client_msg_id_alone(world: World) -> None:
    ada, bob, cleo = world.seed_users("Ada", "Bob", "Cleo")
    first = await world.send(ada, bob, "hello", client_msg_id="c-1")

    again = await world.send(ada, cleo, "something else", client_msg_id="c-1")

    assert (again.duplicate, again.message) == (True, first.message)
    assert len(world.store.data.messages) == 1


async def test_the_same_client_msg_id_from_another_sender_is_another_message(world: World) -> None:
    ada, bob = world.seed_users("Ada", "Bob")
    first = await world.send(ada, bob, client_msg_id="c-1")

    other = await world.send(bob, ada, client_msg_id="c-1")

    assert not other.duplicate
    assert (first.message.seq, other.message.seq) == (1, 2)
    assert first.message.id != other.message.id


async def test_a_concurrent_resend_that_committed_first_is_answered_with_its_message(world: World) -> None:
    """Another process commits the same (sender, clientMsgId) while this batch is being written:
    the batch is rolled back and run again, and then answers with the other process's message."""
    ada, bob = world.seed_users("Ada", "Bob")
    winner = NewMessage(
        id="other-process-1",
        sender_id=ada,
        recipient_id=bob,
        body="hello",
        client_msg_id="c-1",
        created_at=EPOCH,
        withheld=False,
    )

    async def another_process_commits_the_same_message() -> None:
        async with world.store.unit_of_work() as uow:
            await uow.conversations.append([winner])
            await uow.commit()

    world.store.before_append = another_process_commits_the_same_message

    result = await world.send(ada, bob, "hello", client_msg_id="c-1", connection="conn-a")

    assert result == SendResult(message=winner.stored(1), duplicate=True)
    assert world.store.data.messages == [winner.stored(1)]
    assert world.notifier.published == []  # the winner's process published it, not this one
    assert (await world.send(ada, bob)).message.seq == 2  # the loser's seq was rolled back


async def test_a_conflict_with_nothing_to_find_is_retried_and_stores_the_message_once(world: World) -> None:
    ada, bob = world.seed_users("Ada", "Bob")

    async def the_store_claims_a_duplicate() -> None:
        raise DuplicateMessageError("c-1")

    world.store.before_append = the_store_claims_a_duplicate

    result = await world.send(ada, bob, client_msg_id="c-1")

    assert not result.duplicate
    assert world.store.data.messages == [result.message]
    assert world.store.commits == 1
    assert_published_after_commit(world)


# --- SendMessage: blocking and contacts -------------------------------------------------------


async def test_a_message_to_a_user_who_blocked_the_sender_is_stored_withheld(world: World) -> None:
    ada, bob = world.seed_users("Ada", "Bob")
    await world.send(bob, ada)
    world.store.block(bob, ada)
    world.notifier.clear()

    result = await world.send(ada, bob, "let me in", connection="conn-a")

    assert not result.duplicate  # an ordinary answer: the block is not revealed
    assert (result.message.withheld, result.message.seq) == (True, 2)
    assert world.store.message(result.message.id).withheld
    assert world.notifier.calls == [(ada, MessageReceived(message=result.message), "conn-a")]
    assert (await world.pending_for(principal_of(bob), PendingQuery())).messages == []
    assert await world.still_pending(principal_of(bob), PendingCheck(ids=[result.message.id])) == set()


async def test_a_withheld_message_stays_undeliverable_after_an_unblock(world: World) -> None:
    ada, bob = world.seed_users("Ada", "Bob")
    world.store.block(bob, ada)
    withheld = (await world.send(ada, bob)).message
    world.store.unblock(bob, ada)

    assert (await world.pending_for(principal_of(bob), PendingQuery())).messages == []
    assert await world.acknowledge(principal_of(bob), Acknowledge(ids=[withheld.id])) == []
    assert world.store.message(withheld.id).delivered_at is None


async def test_the_senders_own_block_does_not_withhold_their_message(world: World) -> None:
    ada, bob = world.seed_users("Ada", "Bob")
    world.store.block(ada, bob)

    result = await world.send(ada, bob)

    assert not result.message.withheld
    assert [user for user, _, _ in world.notifier.calls] == [bob, ada]


async def test_users_become_contacts_exactly_when_both_have_sent_one_message(world: World) -> None:
    ada, bob = world.seed_users("Ada", "Bob")

    became = [(await world.send(s, t)).became_contacts for s, t in [(ada, bob), (ada, bob), (bob, ada), (ada, bob)]]
    became.append((await world.send(bob, ada)).became_contacts)

    assert became == [False, False, True, False, False]
    assert world.store.data.contacts == {frozenset((ada, bob))}


async def test_a_withheld_message_does_not_make_contacts(world: World) -> None:
    ada, bob = world.seed_users("Ada", "Bob")
    world.store.block(bob, ada)

    first = await world.send(ada, bob)  # withheld
    reply = await world.send(bob, ada)  # Ada did not block Bob: delivered

    assert (first.became_contacts, reply.became_contacts) == (False, False)
    assert world.store.data.contacts == set()
    world.store.unblock(bob, ada)
    assert (await world.send(ada, bob)).became_contacts
    assert world.store.data.contacts == {frozenset((ada, bob))}


async def test_contacts_are_not_recorded_when_the_commit_fails(world: World) -> None:
    ada, bob = world.seed_users("Ada", "Bob")
    await world.send(ada, bob)
    world.store.fail_commit = OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        await world.send(bob, ada)

    assert world.store.data.contacts == set()
    world.store.fail_commit = None
    assert (await world.send(bob, ada)).became_contacts


# --- AcknowledgeDelivery ----------------------------------------------------------------------


async def test_an_ack_marks_delivered_and_tells_the_sender_with_to_the_acknowledging_user(world: World) -> None:
    ada, bob = world.seed_users("Ada", "Bob")
    sent = await world.exchange(ada, bob, 1) + [(await world.send(ada, bob)).message]
    world.notifier.clear()
    now = world.clock.advance(3)

    delivered = await world.acknowledge(principal_of(bob), Acknowledge(ids=ids(sent)))

    assert delivered == [Delivered(id=m.id, sender_id=ada, recipient_id=bob) for m in sent]
    assert [world.store.message(m.id).delivered_at for m in sent] == [now, now]
    assert world.notifier.calls == [(ada, MessageDelivered(ids=tuple(ids(sent)), to=bob, delivered_at=now), None)]
    assert_published_after_commit(world)


async def test_receipts_are_grouped_per_sender(world: World) -> None:
    ada, bob, cleo = world.seed_users("Ada", "Bob", "Cleo")
    a1 = (await world.send(ada, bob)).message
    c1 = (await world.send(cleo, bob)).message
    a2 = (await world.send(ada, bob)).message
    world.notifier.clear()

    await world.acknowledge(principal_of(bob), Acknowledge(ids=[a1.id, c1.id, a2.id]))

    now = world.clock.now()
    assert sorted(world.notifier.calls, key=lambda call: call[0]) == [
        (ada, MessageDelivered(ids=(a1.id, a2.id), to=bob, delivered_at=now), None),
        (cleo, MessageDelivered(ids=(c1.id,), to=bob, delivered_at=now), None),
    ]


async def test_a_second_ack_is_idempotent_and_publishes_nothing(world: World) -> None:
    ada, bob = world.seed_users("Ada", "Bob")
    sent = (await world.send(ada, bob)).message
    await world.acknowledge(principal_of(bob), Acknowledge(ids=[sent.id]))
    first_delivery = world.store.message(sent.id).delivered_at
    world.notifier.clear()
    world.clock.advance(60)

    assert await world.acknowledge(principal_of(bob), Acknowledge(ids=[sent.id])) == []

    assert world.notifier.published == []
    assert world.store.message(sent.id).delivered_at == first_delivery == EPOCH


async def test_only_newly_delivered_ids_are_in_the_receipt(world: World) -> None:
    ada, bob = world.seed_users("Ada", "Bob")
    old, new = (await world.send(ada, bob)).message, (await world.send(ada, bob)).message
    await world.acknowledge(principal_of(bob), Acknowledge(ids=[old.id]))
    world.notifier.clear()

    await world.acknowledge(principal_of(bob), Acknowledge(ids=[old.id, new.id, new.id]))

    assert world.notifier.calls == [(ada, MessageDelivered(ids=(new.id,), to=bob, delivered_at=EPOCH), None)]


async def test_ids_not_addressed_to_the_acknowledging_user_are_ignored(world: World) -> None:
    ada, bob, cleo = world.seed_users("Ada", "Bob", "Cleo")
    to_cleo = (await world.send(ada, cleo)).message
    own = (await world.send(bob, ada)).message
    world.notifier.clear()

    assert await world.acknowledge(principal_of(bob), Acknowledge(ids=[to_cleo.id, own.id, "no-such-id"])) == []

    assert world.notifier.published == []
    assert world.store.message(to_cleo.id).delivered_at is None
    assert world.store.message(own.id).delivered_at is None


@pytest.mark.parametrize("count", [0, 101])
async def test_an_ack_of_0_or_more_than_100_ids_is_invalid_input(world: World, count: int) -> None:
    ada, bob = world.seed_users("Ada", "Bob")
    await world.send(ada, bob)
    world.notifier.clear()
    commits = world.store.commits

    with pytest.raises(InvalidInputError) as caught:
        await world.acknowledge(principal_of(bob), Acknowledge(ids=[f"m{i}" for i in range(count)]))

    assert [p.field for p in caught.value.problems] == ["ids"]
    assert (world.store.commits, world.notifier.published) == (commits, [])


async def test_an_ack_of_100_ids_is_accepted(world: World) -> None:
    (bob,) = world.seed_users("Bob")

    assert await world.acknowledge(principal_of(bob), Acknowledge(ids=[f"m{i}" for i in range(100)])) == []


async def test_an_ack_whose_commit_fails_publishes_nothing(world: World) -> None:
    ada, bob = world.seed_users("Ada", "Bob")
    sent = (await world.send(ada, bob)).message
    world.notifier.clear()
    world.store.fail_commit = OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        await world.acknowledge(principal_of(bob), Acknowledge(ids=[sent.id]))

    assert world.notifier.published == []
    assert world.store.message(sent.id).delivered_at is None


def test_publish_receipts_sends_one_event_per_sender() -> None:
    notifier = RecordingNotifier()
    delivered = [
        Delivered(id="a1", sender_id=1, recipient_id=9),
        Delivered(id="b1", sender_id=2, recipient_id=9),
        Delivered(id="a2", sender_id=1, recipient_id=9),
    ]

    publish_receipts(notifier, delivered, EPOCH)

    assert notifier.calls == [
        (1, MessageDelivered(ids=("a1", "a2"), to=9, delivered_at=EPOCH), None),
        (2, MessageDelivered(ids=("b1",), to=9, delivered_at=EPOCH), None),
    ]


def test_publish_receipts_of_nothing_publishes_nothing() -> None:
    notifier = RecordingNotifier()

    publish_receipts(notifier, [], EPOCH)

    assert notifier.published == []


# --- MarkRead ---------------------------------------------------------------------------------


async def test_reading_moves_the_pointer_delivers_and_reads_and_tells_both_sides(world: World) -> None:
    ada, bob = world.seed_users("Ada", "Bob")
    sent = [(await world.send(ada, bob)).message for _ in range(3)]
    world.notifier.clear()
    now = world.clock.advance(7)

    assert await world.read(bob, ada, 2, connection="bob-phone") == 2

    first_two = [world.store.message(m.id) for m in sent[:2]]
    assert [(m.delivered_at, m.read_at) for m in first_two] == [(now, now), (now, now)]
    assert (world.store.message(sent[2].id).delivered_at, world.store.message(sent[2].id).read_at) == (None, None)
    assert world.store.data.conversations[(bob, ada)].read_seq == 2
    assert world.notifier.calls == [
        (ada, MessageDelivered(ids=tuple(ids(sent[:2])), to=bob, delivered_at=now), None),
        (ada, MessagesRead(by=bob, peer_id=bob, up_to_seq=2, read_at=now), None),
        (bob, MessagesRead(by=bob, peer_id=ada, up_to_seq=2, read_at=now), "bob-phone"),
    ]
    assert_published_after_commit(world)


async def test_reading_already_delivered_messages_sends_no_receipt(world: World) -> None:
    ada, bob = world.seed_users("Ada", "Bob")
    sent = (await world.send(ada, bob)).message
    await world.acknowledge(principal_of(bob), Acknowledge(ids=[sent.id]))
    world.notifier.clear()
    now = world.clock.advance(7)

    assert await world.read(bob, ada, 1) == 1

    assert world.store.message(sent.id).delivered_at == EPOCH  # kept
    assert world.store.message(sent.id).read_at == now
    assert [type(event) for _, event, _ in world.notifier.calls] == [MessagesRead, MessagesRead]


async def test_the_read_pointer_only_moves_forward(world: World) -> None:
    ada, bob = world.seed_users("Ada", "Bob")
    for _ in range(3):
        await world.send(ada, bob)
    await world.read(bob, ada, 2)
    world.notifier.clear()
    commits = world.store.commits

    assert await world.read(bob, ada, 2) is None
    assert await world.read(bob, ada, 1) is None
    assert await world.read(bob, ada, 0) is None

    assert world.notifier.published == []
    assert world.store.commits == commits
    assert world.store.data.conversations[(bob, ada)].read_seq == 2


async def test_reading_past_the_end_stops_at_the_last_seq(world: World) -> None:
    ada, bob = world.seed_users("Ada", "Bob")
    await world.exchange(ada, bob, 3)

    assert await world.read(bob, ada, 999) == 3

    read_events = [e for e in world.notifier.events_to(ada) if isinstance(e, MessagesRead)]
    assert [e.up_to_seq for e in read_events] == [3]
    assert await world.read(bob, ada, 999) is None


async def test_reading_touches_only_messages_to_the_reader(world: World) -> None:
    ada, bob = world.seed_users("Ada", "Bob")
    a1, b2, a3 = await world.exchange(ada, bob, 3)

    await world.read(bob, ada, 3)

    assert world.store.message(b2.id).read_at is None
    assert world.store.message(b2.id).delivered_at is None
    assert [world.store.message(m.id).read_at for m in (a1, a3)] == [EPOCH, EPOCH]


async def test_reading_never_delivers_or_reads_withheld_messages(world: World) -> None:
    ada, bob = world.seed_users("Ada", "Bob")
    visible = (await world.send(ada, bob)).message
    world.store.block(bob, ada)
    withheld = (await world.send(ada, bob)).message
    world.notifier.clear()

    assert await world.read(bob, ada, 2) == 2

    assert world.store.message(withheld.id).read_at is None
    assert world.store.message(withheld.id).delivered_at is None
    assert world.notifier.calls[0] == (ada, MessageDelivered(ids=(visible.id,), to=bob, delivered_at=EPOCH), None)


async def test_each_side_has_its_own_pointer(world: World) -> None:
    ada, bob = world.seed_users("Ada", "Bob")
    await world.exchange(ada, bob, 4)

    await world.read(bob, ada, 3)
    await world.read(ada, bob, 1)

    assert world.store.data.conversations[(bob, ada)].read_seq == 3
    assert world.store.data.conversations[(ada, bob)].read_seq == 1


async def test_reading_a_conversation_that_does_not_exist_is_not_found(world: World) -> None:
    ada, bob = world.seed_users("Ada", "Bob")

    with pytest.raises(NotFoundError):
        await world.read(bob, ada, 1)
    with pytest.raises(NotFoundError):
        await world.read(bob, 404, 1)

    assert world.notifier.published == []


async def test_a_negative_up_to_seq_is_invalid_input(world: World) -> None:
    ada, bob = world.seed_users("Ada", "Bob")
    await world.send(ada, bob)

    with pytest.raises(InvalidInputError) as caught:
        await world.read(bob, ada, -1)

    assert [p.field for p in caught.value.problems] == ["upToSeq"]


async def test_a_read_whose_commit_fails_publishes_nothing(world: World) -> None:
    ada, bob = world.seed_users("Ada", "Bob")
    sent = (await world.send(ada, bob)).message
    world.notifier.clear()
    world.store.fail_commit = OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        await world.read(bob, ada, 1)

    assert world.notifier.published == []
    assert world.store.message(sent.id).read_at is None
    assert world.store.data.conversations[(bob, ada)].read_seq == 0


# --- PendingFor and StillPending --------------------------------------------------------------


async def test_nothing_pending_is_an_empty_batch(world: World) -> None:
    (bob,) = world.seed_users("Bob")

    assert await world.pending_for(principal_of(bob), PendingQuery()) == Batch(messages=[], more=False)


async def test_pending_messages_come_in_storage_order_across_conversations(world: World) -> None:
    ada, bob, cleo = world.seed_users("Ada", "Bob", "Cleo")
    a1 = (await world.send(ada, bob)).message
    c1 = (await world.send(cleo, bob)).message
    await world.send(bob, ada)  # Bob's own: not pending for him
    a3 = (await world.send(ada, bob)).message

    batch = await world.pending_for(principal_of(bob), PendingQuery())

    assert batch == Batch(messages=[a1, c1, a3], more=False)


async def test_delivered_and_read_messages_are_no_longer_pending(world: World) -> None:
    ada, bob, cleo = world.seed_users("Ada", "Bob", "Cleo")
    a1 = (await world.send(ada, bob)).message
    c1 = (await world.send(cleo, bob)).message
    a2 = (await world.send(ada, bob)).message
    await world.acknowledge(principal_of(bob), Acknowledge(ids=[c1.id]))
    await world.read(bob, ada, a1.seq)

    assert ids((await world.pending_for(principal_of(bob), PendingQuery())).messages) == [a2.id]


async def test_pending_messages_come_in_batches_of_at_most_100_with_more(world: World) -> None:
    ada, bob = world.seed_users("Ada", "Bob")
    for _ in range(101):
        await world.send(ada, bob)

    first = await world.pending_for(principal_of(bob), PendingQuery())
    assert (len(first.messages), first.more) == (100, True)
    assert [m.seq for m in first.messages] == list(range(1, 101))
    await world.acknowledge(principal_of(bob), Acknowledge(ids=ids(first.messages)))
    second = await world.pending_for(principal_of(bob), PendingQuery())

    assert ([m.seq for m in second.messages], second.more) == ([101], False)


async def test_the_batch_after_one_being_drained_can_be_read_ahead(world: World) -> None:
    ada, bob = world.seed_users("Ada", "Bob")
    for _ in range(150):
        await world.send(ada, bob)
    first = await world.pending_for(principal_of(bob), PendingQuery())

    ahead = await world.pending_for(principal_of(bob), PendingQuery(excluding=ids(first.messages)))  # before the ack

    assert ([m.seq for m in ahead.messages], ahead.more) == (list(range(101, 151)), False)
    await world.acknowledge(principal_of(bob), Acknowledge(ids=ids(first.messages)))
    after = await world.pending_for(principal_of(bob), PendingQuery())
    assert after.messages == ahead.messages  # what reading after the ack gives


@pytest.mark.parametrize(("count", "more"), [(2, False), (3, True)])
async def test_a_smaller_batch_says_whether_more_remain(world: World, count: int, more: bool) -> None:
    ada, bob = world.seed_users("Ada", "Bob")
    for _ in range(count):
        await world.send(ada, bob)

    batch = await world.pending_for(principal_of(bob), PendingQuery(limit=2))

    assert ([m.seq for m in batch.messages], batch.more) == ([1, 2], more)


async def test_still_pending_keeps_only_unacknowledged_messages_to_the_user(world: World) -> None:
    ada, bob, cleo = world.seed_users("Ada", "Bob", "Cleo")
    pending = (await world.send(ada, bob)).message
    acked = (await world.send(ada, bob)).message
    to_cleo = (await world.send(ada, cleo)).message
    own = (await world.send(bob, ada)).message
    await world.acknowledge(principal_of(bob), Acknowledge(ids=[acked.id]))

    still = await world.still_pending(
        principal_of(bob), PendingCheck(ids=[pending.id, acked.id, to_cleo.id, own.id, "no-such-id"])
    )

    assert still == {pending.id}


async def test_still_pending_of_no_ids_is_empty(world: World) -> None:
    (bob,) = world.seed_users("Bob")

    assert await world.still_pending(principal_of(bob), PendingCheck(ids=[])) == set()
