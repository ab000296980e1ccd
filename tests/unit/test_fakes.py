"""The fakes keep the promises of the ports, so the use-case tests above them mean something.

The message store's contract also runs on the fake store, with the same test bodies as on the SQL
store, in ``tests/integration/test_message_store.py``; the cases here look at the fake's own
mechanics too (snapshots, rollback, its test hooks).
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from application.events import LoginsRevoked
from application.ports import ConversationState, DuplicateMessageError, TokenService
from domain.auth import AttemptWindow, Login, RefreshToken
from domain.delivery import Delivered
from domain.errors import BusyError, EmailTakenError, InvalidInputError, InvalidTokenError, PhoneTakenError
from domain.messages import Message, NewMessage, Pair
from domain.social import Relation
from domain.users import Registration, User
from tests.unit.fakes import (
    EPOCH,
    FakePasswordHasher,
    FakePresence,
    FakeTokenService,
    FakeUnitOfWork,
    FixedClock,
    InMemoryAttemptCounter,
    InMemoryStore,
    RecordingNotifier,
    SequentialIds,
)


def msg(
    mid: str, seq: int, sender: int, recipient: int, *, client_msg_id: str | None = None, withheld: bool = False
) -> Message:
    return Message(
        id=mid,
        seq=seq,
        sender_id=sender,
        recipient_id=recipient,
        body="b",
        client_msg_id=client_msg_id if client_msg_id is not None else "c-" + mid,
        created_at=EPOCH,
        withheld=withheld,
    )


def draft_of(message: Message) -> NewMessage:
    """The draft ``message`` is stored from (everything but its seq)."""
    return NewMessage(
        id=message.id,
        sender_id=message.sender_id,
        recipient_id=message.recipient_id,
        body=message.body,
        client_msg_id=message.client_msg_id,
        created_at=message.created_at,
        withheld=message.withheld,
    )


def draft(mid: str, sender: int, recipient: int, *, client_msg_id: str | None = None) -> NewMessage:
    return draft_of(msg(mid, 0, sender, recipient, client_msg_id=client_msg_id))


async def store_messages(store: InMemoryStore, *messages: Message) -> list[bool]:
    """Append the drafts of ``messages`` in one call as the use case does, check that each was stored
    as given (its seq included), commit; ``became_contacts`` of each."""
    async with store.unit_of_work() as uow:
        appended = await uow.conversations.append([draft_of(m) for m in messages])
        assert [a.message for a in appended] == list(messages)
        await uow.commit()
    return [a.became_contacts for a in appended]


async def store_message(store: InMemoryStore, message: Message) -> bool:
    """:func:`store_messages` of one message."""
    (became,) = await store_messages(store, message)
    return became


def new_user(name: str, email: str, phone: str) -> User:
    data = Registration.parse(name=name, email=email, phone_number=phone, password="password1")
    return User.register(data, password_hash="h", now=EPOCH)


# --- unit of work -----------------------------------------------------------------------------


async def test_committed_changes_are_visible_to_the_next_unit_of_work() -> None:
    store = InMemoryStore()
    async with store.unit_of_work() as uow:
        await uow.users.add(new_user("Ada", "ada@example.com", "+14155550100"))
        await uow.commit()

    async with store.unit_of_work() as uow:
        assert (await uow.users.get(1)) is not None
    assert store.commits == 1


async def test_changes_without_commit_are_discarded() -> None:
    store = InMemoryStore()
    ada = store.seed_user("Ada")
    async with store.unit_of_work() as uow:
        await uow.users.add(new_user("Bob", "bob@example.com", "+14155550100"))
        user = await uow.users.get(ada.uid)
        assert user is not None
        user.rename("Changed")

    assert [u.name for u in store.data.users.values()] == ["Ada"]
    assert store.commits == 0


async def test_changes_after_a_commit_are_discarded_unless_committed_again() -> None:
    store = InMemoryStore()
    ada = store.seed_user("Ada")
    async with store.unit_of_work() as uow:
        user = await uow.users.get(ada.uid)
        assert user is not None
        user.rename("First")
        await uow.commit()
        user.rename("Second")

    assert store.user(ada.uid).name == "First"


async def test_an_error_inside_the_block_rolls_back() -> None:
    store = InMemoryStore()
    uow = FakeUnitOfWork(store)

    async def pair_then_fail() -> None:
        async with uow:
            await uow.contacts.add_pairs([(1, 2)])
            raise LookupError("boom")

    with pytest.raises(LookupError, match="boom"):
        await pair_then_fail()

    assert store.data.contacts == set()
    assert uow.commits == 0


async def test_repositories_refuse_use_outside_an_open_unit_of_work() -> None:
    uow = InMemoryStore().unit_of_work()
    with pytest.raises(RuntimeError):
        await uow.users.get(1)
    async with uow:
        pass
    with pytest.raises(RuntimeError):
        await uow.logins.get("s")


async def test_a_unit_of_work_may_be_reused_but_not_nested() -> None:
    uow = InMemoryStore().unit_of_work()
    async with uow:
        with pytest.raises(RuntimeError):
            await uow.__aenter__()
    async with uow:
        await uow.commit()
    assert uow.commits == 1


# --- users ------------------------------------------------------------------------------------


async def test_user_ids_are_assigned_and_emails_and_phones_are_unique() -> None:
    store = InMemoryStore()
    async with store.unit_of_work() as uow:
        ada = new_user("Ada", "ada@example.com", "+14155550100")
        await uow.users.add(ada)
        assert ada.id == 1
        with pytest.raises(EmailTakenError):
            await uow.users.add(new_user("Ada2", "ADA@example.com", "+14155550101"))
        with pytest.raises(PhoneTakenError):
            await uow.users.add(new_user("Ada3", "ada3@example.com", "+14155550100"))
        assert await uow.users.get_by_email_key("ada@example.com") is ada
        assert await uow.users.get_by_phone("+14155550100") is ada


async def test_user_search_follows_the_documented_semantics() -> None:
    store = InMemoryStore()
    viewer = store.seed_user("Viewer")
    exact = store.seed_user("Zed", email="zed@example.com")
    b = store.seed_user("b_x%")
    a = store.seed_user("a_x%")
    store.seed_user("abx%")
    blocker = store.seed_user("c_x%")
    store.block(blocker.uid, viewer.uid)
    async with store.unit_of_work() as uow:
        found = await uow.users.search(
            viewer_id=viewer.uid, name_key="_x%", email_key="zed@example.com", phone_number=None, limit=10
        )
        limited = await uow.users.search(
            viewer_id=viewer.uid, name_key="_x%", email_key="zed@example.com", phone_number=None, limit=2
        )

    assert [u.uid for u in found] == [exact.uid, a.uid, b.uid]
    assert [u.uid for u in limited] == [exact.uid, a.uid]


# --- logins -----------------------------------------------------------------------------------


async def test_refresh_tokens_can_be_spent_only_once() -> None:
    store = InMemoryStore()
    async with store.unit_of_work() as uow:
        await uow.logins.add(Login(id="s1", user_id=1, created_at=EPOCH))
        await uow.logins.add_refresh(RefreshToken.issue(digest="d", login_id="s1", now=EPOCH, ttl_s=60))
        assert await uow.logins.spend_refresh("d", now=EPOCH)
        assert not await uow.logins.spend_refresh("d", now=EPOCH)
        assert not await uow.logins.spend_refresh("unknown", now=EPOCH)
        assert await uow.logins.active_ids_of(1) == ["s1"]


# --- contacts ---------------------------------------------------------------------------------


async def test_contacts_are_symmetric_and_relations_are_the_facts_seen_from_the_user() -> None:
    store = InMemoryStore()
    me, friend, blocked, blocker, stranger = (store.seed_user(n).uid for n in ["Me", "F", "Bd", "Br", "S"])
    async with store.unit_of_work() as uow:
        for other in (friend, blocked, blocker):
            await uow.contacts.add_pairs([(other, me)])
        await uow.contacts.add_pairs([(me, friend)])  # idempotent
        await uow.commit()
    store.block(me, blocked)
    store.block(blocker, me)

    async with store.unit_of_work() as uow:
        listed = [u.uid for u in await uow.contacts.list_contacts(me, after_id=None, limit=10)]
        mine = await uow.contacts.relations(me, [friend, blocked, blocker, stranger, me])
        of_blocked = await uow.contacts.relations(blocked, iter([me, friend]))

    assert listed == [friend, blocked, blocker]
    assert mine == {
        friend: Relation(contacts=True),
        blocked: Relation(contacts=True, i_block=True),
        blocker: Relation(contacts=True, blocks_me=True),
    }
    assert of_blocked == {me: Relation(contacts=True, blocks_me=True)}


async def test_visible_contact_ids_are_the_contacts_without_a_block_by_id() -> None:
    store = InMemoryStore()
    me, a, blocked, blocker, b, stranger = (store.seed_user(n).uid for n in ["Me", "A", "Bd", "Br", "B", "S"])
    for other in (b, blocked, blocker, a):
        store.connect(me, other)
    store.block(me, blocked)
    store.block(blocker, me)

    async with store.unit_of_work() as uow:
        mine = await uow.contacts.visible_contact_ids(me)
        of_blocked = await uow.contacts.visible_contact_ids(blocked)
        of_stranger = await uow.contacts.visible_contact_ids(stranger)

    assert mine == [a, b]
    assert (of_blocked, of_stranger) == ([], [])


# --- the small fakes --------------------------------------------------------------------------


def test_fixed_clock_moves_only_when_told() -> None:
    clock = FixedClock()
    assert clock.now() == clock.now() == EPOCH
    assert clock.advance(1.5) == clock.now()
    clock.set(EPOCH)
    assert clock.now() == EPOCH


def test_sequential_ids_are_unique_and_ordered() -> None:
    ids = SequentialIds()
    made = [ids.new_id() for _ in range(3)]
    assert made == sorted(made)
    assert len(set(made)) == 3


async def test_fake_hasher_verifies_its_own_hashes_and_records_dummy_checks() -> None:
    hasher = FakePasswordHasher()
    hashed = await hasher.hash("secret pw")

    assert await hasher.verify("secret pw", hashed)
    assert not await hasher.verify("other pw", hashed)
    assert not await hasher.verify("secret pw", None)
    assert (hasher.hash_calls, hasher.verify_calls, hasher.dummy_verifications) == (1, 3, 1)
    hasher.busy = True
    with pytest.raises(BusyError):
        await hasher.hash("x")
    with pytest.raises(BusyError):
        await hasher.verify("x", hashed)


def test_fake_tokens_verify_only_their_own_unexpired_tokens() -> None:
    tokens: TokenService = FakeTokenService(access_ttl_s=60)
    issued = tokens.issue_access(user_id=1, sid="s", now=EPOCH)

    claims = tokens.verify_access(issued.token, now=EPOCH)
    assert (claims.user_id, claims.sid, claims.expires_at) == (1, "s", issued.expires_at)
    with pytest.raises(InvalidTokenError):
        tokens.verify_access(issued.token, now=issued.expires_at)
    with pytest.raises(InvalidTokenError):
        tokens.verify_access("access-999", now=EPOCH)
    raw = tokens.new_refresh_secret()
    assert raw != tokens.new_refresh_secret()
    assert tokens.refresh_digest(raw) != raw


async def test_attempt_counter_keeps_fixed_windows() -> None:
    counter = InMemoryAttemptCounter()
    first = await counter.hit("k", now=EPOCH, window_s=60)
    assert await counter.hit("k", now=EPOCH, window_s=60) == AttemptWindow(count=2, started_at=EPOCH)
    assert await counter.get("k", now=EPOCH, window_s=60) == AttemptWindow(count=2, started_at=EPOCH)

    later = FixedClock(EPOCH)
    later.advance(60)
    assert await counter.get("k", now=later.now(), window_s=60) is None
    assert await counter.hit("k", now=later.now(), window_s=60) == AttemptWindow(count=1, started_at=later.now())
    await counter.reset("k")
    assert await counter.get("k", now=later.now(), window_s=60) is None
    assert first.count == 1


async def test_fake_presence_answers_only_about_the_ids_asked() -> None:
    presence = FakePresence(online={1, 2})

    assert await presence.online_among([2, 3]) == {2}
    assert presence.asked == [{2, 3}]


async def test_fake_presence_follows_the_domain_rules() -> None:
    presence = FakePresence()
    later = EPOCH + timedelta(seconds=10)

    assert await presence.connect(1, "a", now=EPOCH) is True
    assert await presence.connect(1, "b", now=EPOCH) is False
    await presence.disconnect(1, "a", now=EPOCH)
    await presence.disconnect(1, "b", now=later)
    await presence.disconnect(2, "x", now=later)  # unknown user: ignored
    assert await presence.settle(now=later + timedelta(seconds=2), grace_s=3) == []
    assert await presence.online_among([1]) == {1}
    assert await presence.settle(now=later + timedelta(seconds=3), grace_s=3) == [(1, later)]
    assert await presence.settle(now=later + timedelta(seconds=9), grace_s=3) == []
    assert await presence.online_among([1]) == set()


# --- users, blocks ----------------------------------------------------------------------------


async def test_get_many_returns_the_users_found_by_id() -> None:
    store = InMemoryStore()
    ada, bob = store.seed_user("Ada"), store.seed_user("Bob")
    async with store.unit_of_work() as uow:
        found = await uow.users.get_many([bob.uid, 404, ada.uid])
        none = await uow.users.get_many([])

    assert {uid: user.name for uid, user in found.items()} == {ada.uid: "Ada", bob.uid: "Bob"}
    assert none == {}


async def test_existing_ids_are_the_users_among_the_ids() -> None:
    store = InMemoryStore()
    ada, bob = store.seed_user("Ada").uid, store.seed_user("Bob").uid
    async with store.unit_of_work() as uow:
        assert await uow.users.existing_ids(iter([bob, 404, bob, ada])) == {ada, bob}
        assert await uow.users.existing_ids([404]) == set()
        assert await uow.users.existing_ids([]) == set()
        cleo = new_user("Cleo", "cleo@example.com", "+14155550199")
        await uow.users.add(cleo)
        assert await uow.users.existing_ids([cleo.uid]) == {cleo.uid}  # this transaction's own
    async with store.unit_of_work() as uow:
        assert await uow.users.existing_ids([cleo.uid]) == set()  # rolled back


async def test_blocks_among_are_directional() -> None:
    store = InMemoryStore()
    store.block(1, 2)
    store.block(3, 4)
    async with store.unit_of_work() as uow:
        assert await uow.blocks.among([(1, 2)]) == {(1, 2)}
        assert await uow.blocks.among([(2, 1)]) == set()
        assert await uow.blocks.among(iter([(1, 2), (2, 1), (1, 2)])) == {(1, 2)}  # either way
        assert await uow.blocks.among([(1, 3), (3, 1)]) == set()
        assert await uow.blocks.among([(1, 4), (3, 2)]) == set()  # crossed pairs are no blocks
        assert await uow.blocks.among([(4, 3), (3, 4), (1, 2)]) == {(3, 4), (1, 2)}
        assert await uow.blocks.among([]) == set()
        await uow.blocks.block(2, 1, now=EPOCH)
        assert await uow.blocks.among([(1, 2), (2, 1)]) == {(1, 2), (2, 1)}  # this transaction's own
    store.unblock(1, 2)
    async with store.unit_of_work() as uow:
        assert await uow.blocks.among([(1, 2), (2, 1)]) == set()


async def test_block_and_unblock_are_idempotent_and_rolled_back_without_commit() -> None:
    store = InMemoryStore()
    ada, bob, cleo = (store.seed_user(n).uid for n in ["Ada", "Bob", "Cleo"])
    async with store.unit_of_work() as uow:
        await uow.blocks.block(ada, cleo, now=EPOCH)
        await uow.blocks.block(ada, bob, now=EPOCH)
        await uow.blocks.block(ada, bob, now=EPOCH)
        await uow.blocks.block(cleo, ada, now=EPOCH)
        listed = [u.uid for u in await uow.blocks.blocked_by(ada)]
    assert listed == [bob, cleo]
    assert store.data.blocks == set()  # not committed

    async with store.unit_of_work() as uow:
        await uow.blocks.block(ada, bob, now=EPOCH)
        await uow.blocks.unblock(ada, cleo)  # no such block
        await uow.commit()
    async with store.unit_of_work() as uow:
        await uow.blocks.unblock(ada, bob)
        await uow.blocks.unblock(ada, bob)
        await uow.commit()

    assert store.data.blocks == set()
    async with store.unit_of_work() as uow:
        assert await uow.blocks.blocked_by(ada) == []


async def test_set_last_seen_updates_a_user_and_ignores_unknown_ones() -> None:
    store = InMemoryStore()
    ada = store.seed_user("Ada").uid
    async with store.unit_of_work() as uow:
        await uow.users.set_last_seen(ada, EPOCH)
        await uow.users.set_last_seen(404, EPOCH)
        await uow.commit()

    assert store.user(ada).last_seen_at == EPOCH


# --- messages and conversations ---------------------------------------------------------------


async def test_seqs_are_per_conversation_and_rolled_back_with_the_transaction() -> None:
    store = InMemoryStore()
    async with store.unit_of_work() as uow:
        appended = await uow.conversations.append([draft("m1", 1, 2), draft("m2", 2, 1), draft("m3", 3, 1)])
        assert [a.message.seq for a in appended] == [1, 2, 1]
        assert [a.message.seq for a in await uow.conversations.append([draft("m4", 1, 2)])] == [3]
        assert await uow.conversations.append([]) == []

    assert (store.data.seqs, store.data.messages) == ({}, [])
    assert await store_message(store, msg("m1", 1, 2, 1)) is False
    assert store.data.seqs == {Pair(1, 2): 1}


async def test_one_append_numbers_each_conversation_in_order_and_stores_in_that_order() -> None:
    store = InMemoryStore()
    await store_message(store, msg("a1", 1, 1, 2))
    batch = [
        msg("a2", 2, 1, 2),
        msg("c1", 1, 1, 3),
        msg("a3", 3, 2, 1),
        msg("c2", 2, 3, 1, withheld=True),
        msg("a4", 4, 1, 2),
        msg("c3", 3, 1, 3),
    ]

    assert await store_messages(store, *batch) == [False, False, True, False, False, False]
    assert [m.id for m in store.data.messages] == ["a1", *(m.id for m in batch)]
    assert store.data.seqs == {Pair(1, 2): 4, Pair(1, 3): 3}
    async with store.unit_of_work() as uow:
        rows = await uow.conversations.summaries(1, before=None, limit=10)
        of_three = await uow.conversations.summaries(3, before=None, limit=10)
    assert [(r.state.peer_id, r.last_message.id, r.state.last_seq) for r in rows] == [(3, "c3", 3), (2, "a4", 4)]
    assert [(r.last_message.id, r.unread_count) for r in of_three] == [("c3", 2)]


async def test_a_client_msg_id_is_unique_per_sender_also_against_concurrent_commits() -> None:
    store = InMemoryStore()
    await store_message(store, msg("m1", 1, 1, 2, client_msg_id="c"))

    async with store.unit_of_work() as uow:
        await uow.conversations.append([draft("m2", 2, 1, client_msg_id="c")])  # another sender
        with pytest.raises(DuplicateMessageError):
            await uow.conversations.append([draft("m3", 1, 2, client_msg_id="c")])

    async with store.unit_of_work() as uow:
        assert await uow.messages.by_client_ids([(1, "c")]) == {(1, "c"): store.message("m1")}
        # a concurrent transaction commits the same (sender, clientMsgId) after this one opened
        await store_message(store, msg("m4", 1, 5, 6, client_msg_id="x"))
        assert await uow.messages.by_client_ids([(5, "x")]) == {}
        with pytest.raises(DuplicateMessageError):
            await uow.conversations.append([draft("m5", 5, 7, client_msg_id="x")])

    assert [m.id for m in store.data.messages] == ["m1", "m4"]


async def test_a_duplicate_within_one_append_is_refused_and_rolled_back() -> None:
    store = InMemoryStore()
    async with store.unit_of_work() as uow:
        with pytest.raises(DuplicateMessageError):
            await uow.conversations.append(
                [draft("m1", 1, 2, client_msg_id="d"), draft("m2", 1, 3), draft("m3", 1, 3, client_msg_id="d")]
            )
        with pytest.raises(ValueError, match="duplicate message id"):
            await uow.conversations.append([draft("m4", 1, 2), draft("m4", 2, 1)])
    assert (store.data.seqs, store.data.messages, store.data.conversations) == ({}, [], {})

    # One client id from two senders in one append is no duplicate.
    assert await store_messages(
        store, msg("m1", 1, 1, 2, client_msg_id="d"), msg("m2", 2, 2, 1, client_msg_id="d")
    ) == [False, True]
    assert [m.id for m in store.data.messages] == ["m1", "m2"]


async def test_by_client_ids_returns_only_exact_key_matches() -> None:
    store = InMemoryStore()
    await store_messages(
        store,
        msg("a1", 1, 1, 2, client_msg_id="a1"),
        msg("a2", 1, 1, 3, client_msg_id="a2"),
        msg("b1", 2, 2, 1, client_msg_id="b1"),
    )
    async with store.unit_of_work() as uow:
        found = await uow.messages.by_client_ids(iter([(1, "a1"), (2, "b1"), (2, "a2"), (1, "a1")]))
        crossed = await uow.messages.by_client_ids([(1, "b1"), (2, "a1"), (3, "a2")])
        await uow.conversations.append([draft("x1", 3, 1, client_msg_id="x1")])
        own = await uow.messages.by_client_ids([(3, "x1")])

    assert found == {(1, "a1"): store.message("a1"), (2, "b1"): store.message("b1")}
    assert crossed == {}
    assert list(own) == [(3, "x1")]  # this transaction's own messages count


async def test_the_before_append_hook_runs_once() -> None:
    store = InMemoryStore()
    calls: list[int] = []

    async def hook() -> None:
        calls.append(store.open_units)

    store.before_append = hook
    await store_message(store, msg("m1", 1, 1, 2))
    await store_message(store, msg("m2", 2, 1, 2))

    assert calls == [1]
    assert store.before_append is None


async def test_the_before_append_hook_runs_before_the_duplicate_check() -> None:
    store = InMemoryStore()
    await store_messages(store, msg("m1", 1, 1, 2), msg("m2", 2, 1, 2))

    async def concurrent_resend() -> None:
        await store_message(store, msg("r1", 3, 1, 2, client_msg_id="resent"))

    store.before_append = concurrent_resend
    async with store.unit_of_work() as uow:
        assert await uow.messages.by_client_ids([(1, "resent")]) == {}
        with pytest.raises(DuplicateMessageError):
            await uow.conversations.append([draft("r2", 1, 2, client_msg_id="resent")])
    assert [m.id for m in store.messages_between(1, 2)] == ["m1", "m2", "r1"]


async def test_append_says_when_two_users_first_became_contacts() -> None:
    flow = [
        msg("m1", 1, 1, 2),
        msg("m2", 2, 2, 1, withheld=True),
        msg("m3", 3, 1, 2),
        msg("m4", 4, 2, 1),
        msg("m5", 5, 2, 1),
        msg("m6", 6, 1, 2),
    ]
    expected = [False, False, False, True, False, False]
    one_by_one = InMemoryStore()
    assert [await store_message(one_by_one, m) for m in flow] == expected
    # The same in one append, and in two appends split anywhere.
    for split in range(len(flow) + 1):
        store = InMemoryStore()
        assert await store_messages(store, *flow[:split]) + await store_messages(store, *flow[split:]) == expected
        assert store.data.sent_visible == {(1, 2), (2, 1)}


async def test_conversation_state_exists_for_both_users_once_the_conversation_has_a_message() -> None:
    store = InMemoryStore()
    await store_message(store, msg("m1", 1, 1, 2, withheld=True))
    async with store.unit_of_work() as uow:
        sender = await uow.conversations.state(1, 2)
        recipient = await uow.conversations.state(2, 1)
        stranger = await uow.conversations.state(1, 3)
        await uow.conversations.set_read_seq(2, 1, 1)
        after_read = await uow.conversations.state(1, 2)
        listed = await uow.conversations.summaries(2, before=None, limit=10)

    assert sender == ConversationState(peer_id=2, last_seq=1, read_seq=0, peer_read_seq=0)
    assert recipient == ConversationState(peer_id=1, last_seq=1, read_seq=0, peer_read_seq=0)
    assert stranger is None
    assert after_read == ConversationState(peer_id=2, last_seq=1, read_seq=0, peer_read_seq=1)
    assert listed == []  # nothing visible to the recipient


async def test_summaries_follow_the_last_visible_message_and_reject_foreign_cursors() -> None:
    store = InMemoryStore()
    await store_message(store, msg("a", 1, 1, 2))
    await store_message(store, msg("b", 1, 3, 1))
    await store_message(store, msg("c", 2, 2, 1))
    async with store.unit_of_work() as uow:
        rows = await uow.conversations.summaries(1, before=None, limit=10)
        after_first = await uow.conversations.summaries(1, before=rows[0].cursor, limit=10)
        for cursor in ("", "2", "at-", "at-x", "at-1 "):
            with pytest.raises(InvalidInputError):
                await uow.conversations.summaries(1, before=cursor, limit=10)

    assert [(r.state.peer_id, r.last_message.id, r.unread_count) for r in rows] == [(2, "c", 1), (3, "b", 1)]
    assert [r.state.peer_id for r in after_first] == [3]


async def test_message_queries_follow_the_port() -> None:
    store = InMemoryStore()
    for message in (
        msg("a1", 1, 1, 2),
        msg("w2", 2, 1, 2, withheld=True),
        msg("b3", 3, 2, 1),
        msg("c1", 1, 3, 2),
        msg("a4", 4, 1, 2),
    ):
        await store_message(store, message)
    later = EPOCH.replace(minute=5)
    async with store.unit_of_work() as uow:
        pending = [m.id for m in await uow.messages.pending_for(2, limit=10)]
        first_two = [m.id for m in await uow.messages.pending_for(2, limit=2)]
        still = await uow.messages.still_pending(2, ["a1", "w2", "b3", "c1", "zz"])
        delivered = (await uow.messages.mark_delivered([(2, ["c1", "w2", "b3", "c1"])], now=later))[0]
        again = (await uow.messages.mark_delivered([(2, ["c1"])], now=later))[0]
        read = await uow.messages.mark_read(2, Pair.of(1, 2), 3, now=later)
        newest = [m.seq for m in await uow.messages.history(2, Pair.of(1, 2), before=None, after=None, limit=2)]
        older = [m.seq for m in await uow.messages.history(1, Pair.of(1, 2), before=3, after=None, limit=5)]
        newer = [m.seq for m in await uow.messages.history(1, Pair.of(1, 2), before=None, after=1, limit=2)]

    assert pending == ["a1", "c1", "a4"]
    assert first_two == ["a1", "c1"]
    assert still == {"a1", "c1"}
    assert delivered == [Delivered(id="c1", sender_id=3, recipient_id=2)]
    assert again == []
    assert read == [Delivered(id="a1", sender_id=1, recipient_id=2)]
    assert (newest, older, newer) == ([4, 3], [2, 1], [2, 3])
    assert store.data.messages[0].read_at is None  # not committed


async def test_a_failing_commit_publishes_nothing_and_the_unit_of_work_closes() -> None:
    store = InMemoryStore()
    store.fail_commit = OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        await store_message(store, msg("m1", 1, 1, 2))

    assert (store.data.messages, store.commits, store.open_units) == ([], 0, 0)


# --- notifier ---------------------------------------------------------------------------------


async def test_recording_notifier_keeps_order_skip_and_the_moment_of_publication() -> None:
    store = InMemoryStore()
    notifier = RecordingNotifier(store)
    first, second = LoginsRevoked(sids=frozenset({"s1"})), LoginsRevoked(sids=frozenset({"s2"}))

    async with store.unit_of_work() as uow:
        notifier.publish(1, first)
        await uow.commit()
    notifier.publish(2, second, skip_connection="conn")

    assert notifier.calls == [(1, first, None), (2, second, "conn")]
    assert [(p.commits, p.in_transaction) for p in notifier.published] == [(0, True), (1, False)]
    assert notifier.events_to(2) == [second]
    notifier.clear()
    assert notifier.published == []
