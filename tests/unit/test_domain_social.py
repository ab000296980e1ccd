"""The rules that follow from contacts and blocks, decided from the facts between two users."""

from __future__ import annotations

import itertools

import pytest

from domain.social import STRANGERS, Relation, presence_visible_among

ALL = [Relation(contacts=c, i_block=i, blocks_me=m) for c, i, m in itertools.product((False, True), repeat=3)]


def mirrored(relation: Relation) -> Relation:
    """The same facts seen from the other user."""
    return Relation(contacts=relation.contacts, i_block=relation.blocks_me, blocks_me=relation.i_block)


@pytest.mark.parametrize("relation", ALL, ids=repr)
def test_presence_is_visible_only_between_contacts_with_no_block_either_way(relation: Relation) -> None:
    assert relation.presence_visible is (relation == Relation(contacts=True))  # one of the eight
    assert mirrored(relation).presence_visible is relation.presence_visible  # symmetric


@pytest.mark.parametrize("relation", ALL, ids=repr)
def test_a_message_is_withheld_exactly_when_its_recipient_blocked_its_sender(relation: Relation) -> None:
    assert relation.withholds_sent is relation.blocks_me
    assert mirrored(relation).withholds_sent is relation.i_block  # my block withholds only what they send


@pytest.mark.parametrize("relation", ALL, ids=repr)
def test_a_user_who_blocked_me_is_not_found_by_me_whatever_else_holds(relation: Relation) -> None:
    assert relation.may_find is not relation.blocks_me


def test_between_reads_the_blocks_from_my_side() -> None:
    blocks = {(1, 2), (3, 1), (4, 5)}

    assert Relation.between(1, 2, blocks) == Relation(i_block=True)
    assert Relation.between(2, 1, blocks, contacts=True) == Relation(contacts=True, blocks_me=True)
    assert Relation.between(1, 3, blocks) == Relation(blocks_me=True)
    assert Relation.between(1, 4, blocks) == STRANGERS
    assert Relation(contacts=False, i_block=False, blocks_me=False) == STRANGERS


def test_presence_visible_among_keeps_the_order_and_treats_missing_ids_as_strangers() -> None:
    relations = {
        5: Relation(contacts=True),
        3: Relation(contacts=True, i_block=True),
        9: Relation(contacts=True),
        7: Relation(blocks_me=True),
    }

    assert presence_visible_among(relations, [9, 3, 8, 7, 5]) == [9, 5]
    assert presence_visible_among(relations, []) == []
    assert presence_visible_among({}, [5, 9]) == []
