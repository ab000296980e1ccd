"""Messages and conversations: the pair, the per-conversation sequence, body rules, withholding.

A conversation is the unordered pair of its two users, stored as ``(low, high)``. Messages get a
per-conversation ``seq`` (1, 2, 3 …) when they are stored; within a conversation ``seq`` order is
commit order. A message to a user who blocked the sender is stored *withheld*
(:attr:`domain.social.Relation.withholds_sent`): only its sender ever sees it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from domain.errors import InvalidInputError

if TYPE_CHECKING:
    from collections.abc import MutableMapping, Sequence
    from datetime import datetime

CLIENT_MSG_ID_MAX = 64
BATCH_MAX = 100


@dataclass(frozen=True, slots=True)
class Pair:
    """The unordered pair of a conversation's users, as ``(low, high)``."""

    low: int
    high: int

    @classmethod
    def of(cls, a: int, b: int) -> Pair:
        if a == b:
            raise InvalidInputError.of("to", "you cannot send messages to yourself")
        return cls(a, b) if a < b else cls(b, a)

    def other(self, user_id: int) -> int:
        return self.high if user_id == self.low else self.low


# NUL and lone surrogates (JSON allows "\u0000" and "\ud800") cannot be stored as text: PostgreSQL
# refuses NUL and neither database takes a string that is not valid Unicode.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def is_storable(value: str) -> bool:
    """Whether every database can store ``value`` as text (no NUL, no lone surrogate)."""
    return _UNSTORABLE.search(value) is None


def check_storable(value: str, field: str) -> str:
    if not is_storable(value):
        raise InvalidInputError.of(field, "must not contain NUL characters or lone surrogates")
    return value


def check_body(body: str, max_chars: int) -> str:
    """1–``max_chars`` code points with at least one non-white-space character; stored as sent."""
    if not 1 <= len(body) <= max_chars:
        raise InvalidInputError.of("message", f"must be 1–{max_chars} characters")
    if not body.strip():
        raise InvalidInputError.of("message", "must contain a non-white-space character")
    return check_storable(body, "message")


def check_client_msg_id(client_msg_id: str) -> str:
    if not 1 <= len(client_msg_id) <= CLIENT_MSG_ID_MAX:
        raise InvalidInputError.of("clientMsgId", f"must be 1–{CLIENT_MSG_ID_MAX} characters")
    return check_storable(client_msg_id, "clientMsgId")


def check_batch(ids: list[str], field: str = "ids") -> list[str]:
    if not 1 <= len(ids) <= BATCH_MAX:
        raise InvalidInputError.of(field, f"must hold 1–{BATCH_MAX} ids")
    check_storable("".join(ids), field)  # one scan for the whole batch
    return ids


@dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    """A stored message as the store returns it (immutable snapshot)."""

    id: str
    seq: int
    sender_id: int
    recipient_id: int
    body: str
    client_msg_id: str
    created_at: datetime
    delivered_at: datetime | None = None
    read_at: datetime | None = None
    withheld: bool = False

    @property
    def pair(self) -> Pair:
        return Pair.of(self.sender_id, self.recipient_id)

    def visible_to(self, user_id: int) -> bool:
        if user_id == self.sender_id:
            return True
        return user_id == self.recipient_id and not self.withheld


@dataclass(frozen=True, slots=True, kw_only=True)
class NewMessage:
    """A message about to be stored; the store assigns ``seq``."""

    id: str
    sender_id: int
    recipient_id: int
    body: str
    client_msg_id: str
    created_at: datetime
    withheld: bool

    @property
    def pair(self) -> Pair:
        return Pair.of(self.sender_id, self.recipient_id)

    def stored(self, seq: int) -> Message:
        return Message(
            id=self.id,
            seq=seq,
            sender_id=self.sender_id,
            recipient_id=self.recipient_id,
            body=self.body,
            client_msg_id=self.client_msg_id,
            created_at=self.created_at,
            withheld=self.withheld,
        )


def contacts_made(messages: Sequence[Message], has_sent: MutableMapping[tuple[int, int], bool]) -> list[bool]:
    """For messages stored in this order: whether each one made its two users contacts.

    Two users become contacts when each has sent the other a message that was not withheld; the
    message completing that makes them contacts, once. ``has_sent`` maps ``(sender, recipient)``
    to whether ``sender`` had sent ``recipient`` such a message before these (missing: no); it is
    updated in place, so afterwards it holds the state to store.
    """
    made: list[bool] = []
    for message in messages:
        forward = (message.sender_id, message.recipient_id)
        backward = (message.recipient_id, message.sender_id)
        first = not message.withheld and not has_sent.get(forward, False)
        if first:
            has_sent[forward] = True
        made.append(first and has_sent.get(backward, False))
    return made


@dataclass(frozen=True, slots=True, kw_only=True)
class ReadPointer:
    """How far a user has read one conversation; it only moves forward and never past the end."""

    seq: int = 0

    def advance(self, up_to_seq: int, last_seq: int) -> ReadPointer | None:
        """The new pointer, or None when ``up_to_seq`` would not move it forward."""
        target = min(max(up_to_seq, 0), last_seq)
        return ReadPointer(seq=target) if target > self.seq else None
