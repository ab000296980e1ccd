"""Group commit (application/group_commit.py) through SendMessage and AcknowledgeDelivery, and
on its own: concurrent writes share a transaction, each caller is answered only after that
transaction committed, and a failed transaction answers every caller with an error."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest

from application.events import MessageDelivered, MessageReceived
from application.group_commit import GroupCommit
from application.messaging import Acknowledge, Send
from application.ports import ConcurrentWriteError, StoreUnavailableError
from domain.errors import DomainError, InvalidInputError, UserNotFoundError
from tests.unit.fakes import EPOCH, InMemoryStore
from tests.unit.harness import principal_of

if TYPE_CHECKING:
    from application.messaging import SendResult
    from application.ports import UnitOfWork
    from tests.unit.harness import World


async def settle() -> None:
    """Let every ready task run until it waits on something outside the loop's ready queue."""
    for _ in range(20):
        await asyncio.sleep(0)


async def test_concurrent_sends_share_one_transaction_in_submission_order(world: World) -> None:
    ada, bob, cleo = world.seed_users("Ada", "Bob", "Cleo")
    sends = [(ada, bob), (bob, ada), (cleo, ada), (ada, bob), (ada, cleo)]

    results = await asyncio.gather(*(world.send(s, t, f"m{i}") for i, (s, t) in enumerate(sends)))

    assert world.store.commits == 1
    assert [r.message.seq for r in results] == [1, 2, 1, 3, 2]
    assert [r.message.body for r in results] == ["m0", "m1", "m2", "m3", "m4"]
    assert world.store.data.messages == [r.message for r in results]  # storage order = submission order
    to_bob = [e.message for e in world.notifier.events_to(bob) if isinstance(e, MessageReceived)]
    assert [m.body for m in to_bob if m.recipient_id == bob] == ["m0", "m3"]  # published in seq order


async def test_a_send_is_published_at_its_commit_even_if_its_sender_went_away(world: World) -> None:
    """The fan-out follows the commit, not the caller: a sender whose connection went away while
    its batch committed is not answered, but the recipient still gets the message."""
    ada, bob = world.seed_users("Ada", "Bob")
    gate = world.store.commit_gate = asyncio.Event()
    left = world.send_message.begin(principal_of(ada), Send(to=bob, body="left", client_msg_id="c-left"))
    await settle()  # written, waiting to commit

    left.cancel()  # its sender goes away meanwhile
    assert world.notifier.published == []
    gate.set()
    await settle()

    assert left.cancelled()
    received = [e.message.body for e in world.notifier.events_to(bob) if isinstance(e, MessageReceived)]
    assert received == ["left"]
    assert [m.body for m in world.store.data.messages] == ["left"]


async def test_no_send_is_answered_or_published_before_its_transaction_commits(world: World) -> None:
    ada, bob = world.seed_users("Ada", "Bob")
    gate = world.store.commit_gate = asyncio.Event()

    sends = [asyncio.create_task(world.send(ada, bob, f"m{i}")) for i in range(3)]
    await settle()

    assert not any(task.done() for task in sends)
    assert world.notifier.published == []
    assert world.store.data.messages == []  # nothing visible outside the transaction yet

    gate.set()
    results: list[SendResult] = await asyncio.gather(*sends)

    assert [r.message.seq for r in results] == [1, 2, 3]
    assert world.store.commits == 1
    for published in world.notifier.published:
        assert published.commits == 1
        assert not published.in_transaction


async def test_an_ack_is_answered_and_receipted_only_after_its_commit(world: World) -> None:
    ada, bob = world.seed_users("Ada", "Bob")
    sent = (await world.send(ada, bob)).message
    world.notifier.clear()
    gate = world.store.commit_gate = asyncio.Event()

    ack = asyncio.create_task(world.acknowledge(principal_of(bob), Acknowledge(ids=[sent.id])))
    await settle()

    assert not ack.done()
    assert world.notifier.published == []
    assert world.store.message(sent.id).delivered_at is None

    gate.set()
    delivered = await ack

    assert [d.id for d in delivered] == [sent.id]
    assert world.store.message(sent.id).delivered_at == EPOCH
    assert world.notifier.events_to(ada) == [MessageDelivered(ids=(sent.id,), to=bob, delivered_at=EPOCH)]


async def test_a_failed_commit_fails_every_send_of_the_batch_and_stores_nothing(world: World) -> None:
    ada, bob, cleo = world.seed_users("Ada", "Bob", "Cleo")
    world.store.fail_commit = RuntimeError("disk I/O error")

    outcomes = await asyncio.gather(
        world.send(ada, bob, "one"),
        world.send(bob, ada, "two"),
        world.send(cleo, ada, "three"),
        world.acknowledge(principal_of(bob), Acknowledge(ids=["whatever"])),
        return_exceptions=True,
    )

    assert [type(o) for o in outcomes] == [RuntimeError] * 4
    assert world.store.data.messages == []
    assert world.store.data.seqs == {}
    assert world.notifier.published == []
    assert world.store.commits == 0

    world.store.fail_commit = None  # the database is back: the clients resend with the same ids
    again = await world.send(ada, bob, "one")
    assert again.message.seq == 1
    assert world.store.data.messages == [again.message]


async def test_an_unknown_recipient_fails_only_its_own_send(world: World) -> None:
    ada, bob = world.seed_users("Ada", "Bob")

    outcomes = await asyncio.gather(
        world.send(ada, bob, "one"),
        world.send(ada, 404, "lost"),
        world.send(ada, ada, "self"),
        world.send(bob, ada, "two"),
        return_exceptions=True,
    )

    assert isinstance(outcomes[1], UserNotFoundError)
    assert isinstance(outcomes[2], InvalidInputError)
    stored = [o for o in outcomes if not isinstance(o, BaseException)]
    assert [r.message.body for r in stored] == ["one", "two"]
    assert [m.body for m in world.store.data.messages] == ["one", "two"]
    assert world.store.commits == 1


async def test_a_resend_within_one_batch_is_a_duplicate_of_the_first(world: World) -> None:
    ada, bob = world.seed_users("Ada", "Bob")

    first, second = await asyncio.gather(
        world.send(ada, bob, "hello", client_msg_id="c-1", connection="conn-a"),
        world.send(ada, bob, "hello", client_msg_id="c-1", connection="conn-b"),
    )

    assert (first.duplicate, second.duplicate) == (False, True)
    assert second.message == first.message
    assert world.store.data.messages == [first.message]
    assert world.notifier.calls == [
        (bob, MessageReceived(message=first.message), None),
        (ada, MessageReceived(message=first.message), "conn-a"),
    ]


async def test_a_reply_in_the_same_batch_makes_contacts_once(world: World) -> None:
    ada, bob = world.seed_users("Ada", "Bob")

    results = await asyncio.gather(world.send(ada, bob, "hi"), world.send(bob, ada, "hi back"), world.send(ada, bob))

    assert [r.became_contacts for r in results] == [False, True, False]
    assert world.store.data.contacts == {frozenset((ada, bob))}


async def test_a_cancelled_caller_is_not_written(world: World) -> None:
    ada, bob = world.seed_users("Ada", "Bob")
    kept = asyncio.create_task(world.send(ada, bob, "kept"))
    dropped = asyncio.create_task(world.send(ada, bob, "dropped"))
    await asyncio.sleep(0)  # both queued, the worker has not started
    dropped.cancel()

    result = await kept

    assert dropped.cancelled()
    assert [m.body for m in world.store.data.messages] == ["kept"]
    assert result.message.seq == 1


# --- GroupCommit on its own -------------------------------------------------------------------


class BlockStep:
    """A test step: each item ``(blocker, blocked)`` writes a block; a ``blocked`` of 0 is a domain
    error for that item; a ``blocker`` of -1 breaks the whole transaction."""

    order = 0

    def __init__(self) -> None:
        self.batches: list[list[tuple[int, int]]] = []
        self.followed: list[tuple[tuple[int, int], str]] = []  # what ``committed`` saw

    async def write(self, uow: UnitOfWork, items: list[tuple[int, int]]) -> list[str | DomainError]:
        self.batches.append(list(items))
        outcomes: list[str | DomainError] = []
        for blocker, blocked in items:
            if blocker == -1:
                raise RuntimeError("constraint violated")
            if blocked == 0:
                outcomes.append(InvalidInputError.of("blocked", "is zero"))
                continue
            await uow.blocks.block(blocker, blocked, now=EPOCH)
            outcomes.append(f"{blocker}->{blocked}")
        return outcomes

    def committed(self, item: tuple[int, int], result: str) -> None:
        self.followed.append((item, result))


async def test_what_follows_a_commit_runs_for_each_written_item_even_if_its_caller_left() -> None:
    """Publishing a write must not depend on its caller still waiting: a caller cancelled while
    its batch commits is not answered, but what follows its write still happens, in order."""
    store = InMemoryStore()
    gate = store.commit_gate = asyncio.Event()
    writes, step = GroupCommit(store.unit_of_work), BlockStep()
    left = writes.enqueue(step, (1, 2))
    refused = writes.enqueue(step, (3, 0))  # a domain error: nothing written, nothing follows
    stays = writes.enqueue(step, (4, 5))
    await settle()  # the batch is written and waits to commit

    left.cancel()
    assert step.followed == []  # nothing before the commit
    gate.set()

    assert await stays == "4->5"
    assert isinstance(refused.exception(), InvalidInputError)
    assert left.cancelled()
    assert step.followed == [((1, 2), "1->2"), ((4, 5), "4->5")]
    assert store.data.blocks == {(1, 2), (4, 5)}


async def test_a_failed_batch_is_followed_by_nothing() -> None:
    store = InMemoryStore()
    store.fail_commit = StoreUnavailableError("database is locked")
    writes, step = GroupCommit(store.unit_of_work), BlockStep()

    outcomes = await asyncio.gather(writes.enqueue(step, (1, 2)), writes.enqueue(step, (3, 4)), return_exceptions=True)

    assert all(isinstance(o, StoreUnavailableError) for o in outcomes)
    assert step.followed == []


async def test_a_failing_item_is_isolated_by_writing_the_batch_one_by_one() -> None:
    store = InMemoryStore()
    writes, step = GroupCommit(store.unit_of_work), BlockStep()

    outcomes = await asyncio.gather(
        writes.enqueue(step, (1, 2)),
        writes.enqueue(step, (-1, 3)),
        writes.enqueue(step, (4, 5)),
        return_exceptions=True,
    )

    assert outcomes[0] == "1->2"
    assert outcomes[2] == "4->5"
    assert isinstance(outcomes[1], RuntimeError)
    assert store.data.blocks == {(1, 2), (4, 5)}
    assert step.batches == [[(1, 2), (-1, 3), (4, 5)], [(1, 2)], [(-1, 3)], [(4, 5)]]
    assert store.commits == 2


async def test_a_domain_error_answers_its_caller_and_the_rest_commit_together() -> None:
    store = InMemoryStore()
    writes, step = GroupCommit(store.unit_of_work), BlockStep()

    outcomes = await asyncio.gather(
        writes.enqueue(step, (1, 2)), writes.enqueue(step, (3, 0)), writes.enqueue(step, (4, 5)), return_exceptions=True
    )

    assert outcomes[0] == "1->2"
    assert outcomes[2] == "4->5"
    assert isinstance(outcomes[1], InvalidInputError)
    assert store.data.blocks == {(1, 2), (4, 5)}
    assert store.commits == 1


async def test_batches_are_capped_and_the_rest_follow_in_order() -> None:
    store = InMemoryStore()
    writes, step = GroupCommit(store.unit_of_work, max_batch=2), BlockStep()

    await asyncio.gather(*(writes.enqueue(step, (i, i + 100)) for i in range(1, 6)))

    assert step.batches == [[(1, 101), (2, 102)], [(3, 103), (4, 104)], [(5, 105)]]
    assert store.commits == 3


async def test_a_lone_write_goes_through_at_once_and_the_worker_ends() -> None:
    store = InMemoryStore()
    writes, step = GroupCommit(store.unit_of_work), BlockStep()

    assert await writes.enqueue(step, (1, 2)) == "1->2"
    await settle()
    assert await writes.enqueue(step, (3, 4)) == "3->4"

    assert step.batches == [[(1, 2)], [(3, 4)]]


async def test_closing_cancels_the_batch_in_flight_and_what_queued_behind_it() -> None:
    """The end of a lifespan: callers of a batch hung in its commit and of the writes queued
    behind it learn they were not written (cancelled, never answered as written or as failed),
    nothing more is written, and a later write is refused rather than carried into another loop."""
    store = InMemoryStore()
    store.commit_gate = asyncio.Event()  # never set: the batch waits in its commit for ever
    writes, step = GroupCommit(store.unit_of_work), BlockStep()
    hung = writes.enqueue(step, (1, 2))
    await settle()
    behind = writes.enqueue(step, (3, 4))  # queued behind the hung batch

    await writes.close()

    assert hung.cancelled()
    assert behind.cancelled()
    assert step.batches == [[(1, 2)]]
    assert step.followed == []
    assert store.data.blocks == set()
    with pytest.raises(RuntimeError, match="closed"):
        _ = writes.enqueue(step, (5, 6))


async def test_closing_an_idle_group_commit_twice_is_harmless() -> None:
    store = InMemoryStore()
    writes, step = GroupCommit(store.unit_of_work), BlockStep()
    assert await writes.enqueue(step, (1, 2)) == "1->2"

    await writes.close()
    await writes.close()

    assert store.data.blocks == {(1, 2)}
    with pytest.raises(RuntimeError, match="closed"):
        _ = writes.enqueue(step, (3, 4))


async def test_a_cancelled_worker_cancels_whoever_still_waits() -> None:
    store = InMemoryStore()
    gate = store.commit_gate = asyncio.Event()
    writes, step = GroupCommit(store.unit_of_work), BlockStep()
    first = writes.enqueue(step, (1, 2))
    await settle()
    second = writes.enqueue(step, (3, 4))
    await settle()

    worker = writes._worker
    assert worker is not None
    worker.cancel()
    await settle()

    assert first.cancelled()
    assert second.cancelled()
    assert store.data.blocks == set()
    assert not gate.is_set()


@pytest.mark.parametrize("failures", [1, 2])
async def test_a_conflict_reruns_the_batch(failures: int) -> None:
    store = InMemoryStore()
    writes = GroupCommit(store.unit_of_work)
    left = [failures]

    class Conflicting(BlockStep):
        async def write(self, uow: UnitOfWork, items: list[tuple[int, int]]) -> list[str | DomainError]:
            outcomes = await super().write(uow, items)
            if left[0]:
                left[0] -= 1
                raise ConcurrentWriteError("another process committed the same key")
            return outcomes

    step = Conflicting()
    assert await writes.enqueue(step, (1, 2)) == "1->2"
    assert len(step.batches) == failures + 1
    assert store.data.blocks == {(1, 2)}
    assert store.commits == 1


async def test_an_unavailable_database_fails_the_whole_batch_at_once() -> None:
    """No item-by-item retry when the database itself fails: that would only wait for it again,
    once per write."""
    store = InMemoryStore()
    store.fail_commit = StoreUnavailableError("database is locked")
    writes, step = GroupCommit(store.unit_of_work), BlockStep()

    outcomes = await asyncio.gather(*(writes.enqueue(step, (i, i + 10)) for i in range(1, 4)), return_exceptions=True)

    assert all(isinstance(o, StoreUnavailableError) for o in outcomes)
    assert step.batches == [[(1, 11), (2, 12), (3, 13)]]  # one attempt, not four
    assert store.data.blocks == set()


@pytest.mark.parametrize("bad", ["nul\x00inside", "lone \ud800 surrogate"])
async def test_text_no_database_can_store_is_refused_before_the_batch(world: World, bad: str) -> None:
    """Refused as bad input up front, so it can never fail a shared transaction."""
    ada, bob = world.seed_users("Ada", "Bob")

    outcomes = await asyncio.gather(
        world.send(ada, bob, "fine"),
        world.send(ada, bob, bad),
        world.send(ada, bob, "fine", client_msg_id=bad),
        world.acknowledge(principal_of(bob), Acknowledge(ids=[bad])),
        return_exceptions=True,
    )

    assert [type(o).__name__ for o in outcomes[1:4]] == ["InvalidInputError"] * 3
    assert [m.body for m in world.store.data.messages] == ["fine"]
    assert world.store.commits == 1


async def test_each_committed_transaction_is_observed_with_its_size_and_duration() -> None:
    store, observed = InMemoryStore(), []
    writes = GroupCommit(store.unit_of_work, observe=lambda size, seconds: observed.append((size, seconds)))
    step = BlockStep()

    await asyncio.gather(*(writes.enqueue(step, (i, i + 100)) for i in range(1, 4)))
    await writes.enqueue(step, (7, 8))
    store.fail_commit = StoreUnavailableError("database is locked")
    with pytest.raises(StoreUnavailableError):
        await writes.enqueue(step, (9, 10))  # not committed: not observed

    assert [size for size, _ in observed] == [3, 1]
    assert all(seconds >= 0 for _, seconds in observed)
