"""The delivery rules: send fan-out, receipts grouped by sender, and what one connection has in flight."""

from __future__ import annotations

from domain.delivery import Delivered, InFlight, SendFanout, fanout_of, receipts_by_sender
from domain.messages import Message
from tests.unit.fakes import EPOCH

REDELIVERY_MS = 10_000.0
T0 = 5_000.0  # the connection's monotonic clock, in milliseconds


def at(seconds: float) -> float:
    return T0 + seconds * 1000


def message(*, withheld: bool = False) -> Message:
    return Message(
        id="m1", seq=1, sender_id=1, recipient_id=2, body="hi", client_msg_id="c1", created_at=EPOCH, withheld=withheld
    )


# --- fan-out of a send ------------------------------------------------------------------------


def test_a_message_goes_to_the_recipient_and_the_senders_other_connections() -> None:
    assert fanout_of(message(), "conn-a") == SendFanout(recipient=2, sender=1, skip_connection="conn-a")


def test_a_withheld_message_goes_only_to_the_senders_other_connections() -> None:
    assert fanout_of(message(withheld=True), "conn-a") == SendFanout(recipient=None, sender=1, skip_connection="conn-a")


def test_a_send_from_no_connection_reaches_every_connection_of_the_sender() -> None:
    assert fanout_of(message(), None).skip_connection is None


# --- receipts ---------------------------------------------------------------------------------


def test_receipts_are_grouped_by_sender_in_the_given_order() -> None:
    delivered = [
        Delivered(id="a", sender_id=1, recipient_id=9),
        Delivered(id="b", sender_id=2, recipient_id=9),
        Delivered(id="c", sender_id=1, recipient_id=9),
    ]

    grouped = receipts_by_sender(delivered)

    assert grouped == {1: ["a", "c"], 2: ["b"]}
    assert list(grouped) == [1, 2]


def test_nothing_delivered_gives_no_receipts() -> None:
    assert receipts_by_sender([]) == {}


# --- in flight: re-push -----------------------------------------------------------------------


def test_nothing_pushed_is_never_due() -> None:
    assert InFlight(redelivery_ms=REDELIVERY_MS).due_for_repush(at(3600)) == []


def test_a_push_is_due_again_from_one_redelivery_interval_on() -> None:
    inflight = InFlight(redelivery_ms=REDELIVERY_MS)
    inflight.record_push(["a"], T0)

    assert inflight.due_for_repush(at(9.999)) == []
    assert inflight.due_for_repush(at(10)) == ["a"]
    assert inflight.due_for_repush(at(60)) == ["a"]


def test_due_pushes_come_oldest_first() -> None:
    inflight = InFlight(redelivery_ms=REDELIVERY_MS)
    inflight.record_push(["late"], at(5))
    inflight.record_push(["early-1", "early-2"], T0)
    inflight.record_push(["fresh"], at(30))

    assert inflight.due_for_repush(at(15)) == ["early-1", "early-2", "late"]


def test_pushing_again_restarts_the_interval() -> None:
    inflight = InFlight(redelivery_ms=REDELIVERY_MS)
    inflight.record_push(["a"], T0)
    inflight.record_push(["a"], at(10))  # the re-push

    assert inflight.due_for_repush(at(15)) == []
    assert inflight.due_for_repush(at(20)) == ["a"]


def test_settled_ids_are_no_longer_due_and_unknown_ids_are_ignored() -> None:
    inflight = InFlight(redelivery_ms=REDELIVERY_MS)
    inflight.record_push(["a", "b"], T0)

    inflight.settle(["a", "never-pushed"])

    assert inflight.due_for_repush(at(10)) == ["b"]
    assert inflight.pushed == {"b": T0}


def test_the_next_push_due_is_the_oldest_one_a_redelivery_interval_on() -> None:
    inflight = InFlight(redelivery_ms=REDELIVERY_MS)
    assert inflight.next_due() is None
    inflight.record_push(["late"], at(5))
    inflight.record_push(["early"], at(1))
    assert inflight.next_due() == at(11)
    inflight.record_push(["early"], at(20))  # pushed again
    assert inflight.next_due() == at(15)
    inflight.settle(["late", "early"])
    assert inflight.next_due() is None


def test_asking_what_is_due_changes_nothing() -> None:
    inflight = InFlight(redelivery_ms=REDELIVERY_MS)
    inflight.record_push(["a"], T0)

    assert inflight.due_for_repush(at(10)) == inflight.due_for_repush(at(10)) == ["a"]


# --- in flight: offline batches ---------------------------------------------------------------


def test_a_batch_is_pushed_and_the_next_is_due_once_every_id_of_it_is_settled() -> None:
    inflight = InFlight(redelivery_ms=REDELIVERY_MS)
    inflight.start_batch(["a", "b"], more=True, now=T0)

    assert inflight.pushed == {"a": T0, "b": T0}
    assert not inflight.next_batch_due()
    inflight.settle(["a"])
    assert not inflight.next_batch_due()
    inflight.settle(["b"])
    assert inflight.next_batch_due()
    assert not inflight.next_batch_due()  # true once


def test_no_next_batch_when_nothing_more_was_pending() -> None:
    inflight = InFlight(redelivery_ms=REDELIVERY_MS)
    inflight.start_batch(["a"], more=False, now=T0)

    inflight.settle(["a"])

    assert not inflight.next_batch_due()


def test_live_pushes_do_not_hold_back_the_next_batch() -> None:
    inflight = InFlight(redelivery_ms=REDELIVERY_MS)
    inflight.start_batch(["a"], more=True, now=T0)
    inflight.record_push(["live"], at(1))

    inflight.settle(["a"])

    assert inflight.next_batch_due()
    assert inflight.due_for_repush(at(11)) == ["live"]


def test_a_new_batch_replaces_the_previous_one() -> None:
    inflight = InFlight(redelivery_ms=REDELIVERY_MS)
    inflight.start_batch(["a"], more=True, now=T0)
    inflight.settle(["a"])
    assert inflight.next_batch_due()

    inflight.start_batch(["b", "c"], more=False, now=at(1))
    inflight.settle(["b", "c"])

    assert not inflight.next_batch_due()
    assert inflight.batch == set()


def test_an_empty_batch_with_more_pending_makes_the_next_one_due_at_once() -> None:
    inflight = InFlight(redelivery_ms=REDELIVERY_MS)

    inflight.start_batch([], more=True, now=T0)

    assert inflight.next_batch_due()
