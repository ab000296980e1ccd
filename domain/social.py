"""What two users are to each other — contacts, blocks — and the rules that follow from it.

The store returns the facts (:class:`Relation`); these rules decide. Each rule is written here once:

* Two users become **contacts** when each has sent the other a message that was not withheld
  (:func:`domain.messages.contacts_made`); that is never undone.
* A **block** is directional (blocker → blocked) and never revealed to the blocked user.
* A message to a user who blocked its sender is **withheld** (:attr:`Relation.withholds_sent`).
* **Presence** (and ``typing``) is visible both ways only between contacts with no block either
  way (:attr:`Relation.presence_visible`, which is :func:`domain.presence.presence_visible`).
* A user who blocked the viewer does not appear in the viewer's **search** nor answers the viewer's
  lookup by id (:attr:`Relation.may_find`): to the blocked user they are an unknown user.
* Where the blocked user must still see a contact who blocked them (their contacts and conversations
  lists), that contact **appears offline** (:attr:`Relation.appears_offline`): ``online: false``, never
  the ``null`` that would tell the block from an absence.

Where a query must apply a rule itself (the presence audience of a user, the search page), the
store mirrors it in SQL and ``tests/integration/test_rules_agree.py`` proves both agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from domain.presence import presence_visible

if TYPE_CHECKING:
    from collections.abc import Collection, Iterable, Mapping


@dataclass(frozen=True, slots=True, kw_only=True)
class Relation:
    """The facts between one user ("me") and another, seen from me. Strangers: all False."""

    contacts: bool = False
    i_block: bool = False  # I blocked the other
    blocks_me: bool = False  # the other blocked me

    @classmethod
    def between(cls, me: int, other: int, blocks: Collection[tuple[int, int]], *, contacts: bool = False) -> Relation:
        """From a set of ``(blocker, blocked)`` blocks that holds every block between the two."""
        return cls(contacts=contacts, i_block=(me, other) in blocks, blocks_me=(other, me) in blocks)

    @property
    def blocked_either_way(self) -> bool:
        return self.i_block or self.blocks_me

    @property
    def presence_visible(self) -> bool:
        """Whether the two see each other's presence and typing (symmetric)."""
        return presence_visible(contacts=self.contacts, blocked_either_way=self.blocked_either_way)

    @property
    def withholds_sent(self) -> bool:
        """Whether a message I send the other is stored withheld: the other blocked me."""
        return self.blocks_me

    @property
    def may_find(self) -> bool:
        """Whether I may find the other in a search: not when the other blocked me."""
        return not self.blocks_me

    @property
    def appears_offline(self) -> bool:
        """Whether I am shown the other as an offline contact rather than with hidden presence: the
        other is my contact and blocked me (while I did not block them, which I know anyway)."""
        return self.contacts and self.blocks_me and not self.i_block


STRANGERS = Relation()
"""No contact, no block either way."""


def presence_visible_among(relations: Mapping[int, Relation], user_ids: Iterable[int]) -> list[int]:
    """Those of ``user_ids`` (in their order) whose presence "me" may see, ``relations`` being
    what the store knows between me and them (a missing id is a stranger)."""
    return [uid for uid in user_ids if relations.get(uid, STRANGERS).presence_visible]
