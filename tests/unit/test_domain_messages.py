"""Messages and conversations: the pair, body and clientMsgId rules, batches, visibility, read pointers."""

from __future__ import annotations

import dataclasses

import pytest

from domain.errors import FieldProblem, InvalidInputError
from domain.messages import (
    BATCH_MAX,
    CLIENT_MSG_ID_MAX,
    Message,
    NewMessage,
    Pair,
    ReadPointer,
    check_batch,
    check_body,
    check_client_msg_id,
)
from tests.unit.fakes import EPOCH


def message(sender: int = 1, recipient: int = 2, *, withheld: bool = False) -> Message:
    return Message(
        id="m1",
        seq=1,
        sender_id=sender,
        recipient_id=recipient,
        body="hi",
        client_msg_id="c1",
        created_at=EPOCH,
        withheld=withheld,
    )


# --- Pair -------------------------------------------------------------------------------------


def test_a_pair_is_unordered_and_stored_low_high() -> None:
    assert Pair.of(7, 3) == Pair.of(3, 7) == Pair(3, 7)
    assert (Pair.of(7, 3).low, Pair.of(7, 3).high) == (3, 7)
    assert hash(Pair.of(7, 3)) == hash(Pair.of(3, 7))


def test_the_other_user_of_a_pair() -> None:
    pair = Pair.of(3, 7)

    assert (pair.other(3), pair.other(7)) == (7, 3)


def test_a_user_cannot_converse_with_themselves() -> None:
    with pytest.raises(InvalidInputError) as caught:
        Pair.of(5, 5)

    assert [p.field for p in caught.value.problems] == ["to"]


# --- bodies -----------------------------------------------------------------------------------


@pytest.mark.parametrize("body", ["x", " x ", "x" * 20, "\n\tok", "é" * 20, "🙂" * 20])
def test_a_body_of_1_to_max_code_points_with_a_visible_character_is_kept_as_sent(body: str) -> None:
    assert check_body(body, 20) == body


@pytest.mark.parametrize("body", ["", "x" * 21, "🙂" * 21])
def test_a_body_outside_1_to_max_code_points_is_invalid_input_on_message(body: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        check_body(body, 20)

    assert caught.value.problems == (FieldProblem("message", "must be 1–20 characters"),)


@pytest.mark.parametrize("body", [" ", "   ", "\n\t", "\u3000", "\u00a0 "])
def test_a_body_of_only_white_space_is_invalid_input_on_message(body: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        check_body(body, 20)

    assert caught.value.problems == (FieldProblem("message", "must contain a non-white-space character"),)


def test_the_body_limit_is_a_parameter() -> None:
    assert check_body("x" * 4000, 4000) == "x" * 4000
    with pytest.raises(InvalidInputError):
        check_body("x" * 4001, 4000)


# --- clientMsgId and batches ------------------------------------------------------------------


@pytest.mark.parametrize("client_msg_id", ["a", "x" * CLIENT_MSG_ID_MAX, "550e8400-e29b-41d4-a716-446655440000"])
def test_a_client_msg_id_of_1_to_64_characters_is_kept(client_msg_id: str) -> None:
    assert check_client_msg_id(client_msg_id) == client_msg_id


@pytest.mark.parametrize("client_msg_id", ["", "x" * (CLIENT_MSG_ID_MAX + 1)])
def test_a_client_msg_id_outside_1_to_64_characters_is_invalid_input(client_msg_id: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        check_client_msg_id(client_msg_id)

    assert caught.value.problems == (FieldProblem("clientMsgId", "must be 1–64 characters"),)


@pytest.mark.parametrize("count", [1, BATCH_MAX])
def test_a_batch_of_1_to_100_ids_is_kept(count: int) -> None:
    ids = [f"m{i}" for i in range(count)]

    assert check_batch(ids) == ids


@pytest.mark.parametrize("count", [0, BATCH_MAX + 1])
def test_a_batch_outside_1_to_100_ids_is_invalid_input_on_its_field(count: int) -> None:
    ids = [f"m{i}" for i in range(count)]

    with pytest.raises(InvalidInputError) as caught:
        check_batch(ids)
    with pytest.raises(InvalidInputError) as named:
        check_batch(ids, "userIds")

    assert caught.value.problems == (FieldProblem("ids", "must hold 1–100 ids"),)
    assert [p.field for p in named.value.problems] == ["userIds"]


# --- visibility -------------------------------------------------------------------------------


def test_a_normal_message_is_visible_to_both_users_and_nobody_else() -> None:
    normal = message(1, 2)

    assert (normal.visible_to(1), normal.visible_to(2), normal.visible_to(3)) == (True, True, False)


def test_a_withheld_message_is_visible_to_its_sender_only() -> None:
    withheld = message(1, 2, withheld=True)

    assert (withheld.visible_to(1), withheld.visible_to(2), withheld.visible_to(3)) == (True, False, False)


def test_a_message_knows_its_pair() -> None:
    assert message(9, 4).pair == Pair(4, 9)


def test_a_new_message_stored_with_a_seq_keeps_everything_and_is_neither_delivered_nor_read() -> None:
    draft = NewMessage(
        id="m7",
        sender_id=1,
        recipient_id=2,
        body=" hello ",
        client_msg_id="c7",
        created_at=EPOCH,
        withheld=True,
    )

    stored = draft.stored(5)

    assert stored == Message(
        id="m7",
        seq=5,
        sender_id=1,
        recipient_id=2,
        body=" hello ",
        client_msg_id="c7",
        created_at=EPOCH,
        delivered_at=None,
        read_at=None,
        withheld=True,
    )


def test_messages_are_immutable_snapshots() -> None:
    stored = message()

    with pytest.raises(dataclasses.FrozenInstanceError):
        stored.seq = 2  # type: ignore[misc]


# --- read pointers ----------------------------------------------------------------------------


def test_a_read_pointer_starts_at_zero() -> None:
    assert ReadPointer().seq == 0


@pytest.mark.parametrize(
    ("current", "up_to", "last", "moved"),
    [
        (0, 3, 5, 3),
        (2, 3, 5, 3),
        (0, 5, 5, 5),
        (0, 99, 5, 5),  # never past the end
        (3, 99, 5, 5),
    ],
)
def test_a_read_pointer_moves_forward_up_to_the_last_seq(current: int, up_to: int, last: int, moved: int) -> None:
    assert ReadPointer(seq=current).advance(up_to, last) == ReadPointer(seq=moved)


@pytest.mark.parametrize(
    ("current", "up_to", "last"),
    [
        (3, 3, 5),  # not forward
        (3, 1, 5),  # backward
        (0, 0, 5),
        (0, -4, 5),
        (5, 99, 5),  # already at the end
        (0, 3, 0),  # nothing to read
    ],
)
def test_a_read_pointer_that_would_not_move_forward_gives_none(current: int, up_to: int, last: int) -> None:
    assert ReadPointer(seq=current).advance(up_to, last) is None
