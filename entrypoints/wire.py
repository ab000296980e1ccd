"""Wire formats shared by the HTTP and WebSocket edges."""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from typing import Annotated

import msgspec

from domain.messages import Message
from domain.users import UserCard

Timestamp = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$",
        extra_json_schema={"format": "date-time"},
        description="ISO-8601 UTC with exactly three fractional digits and `Z`",
        examples=["2026-11-24T05:20:21.089Z"],
    ),
]
"""A moment on the wire, as :func:`iso_ms` writes it (documented as JSON Schema ``date-time``; the pattern
is never checked on encoding)."""

# JSON nested deeper than the decoder's recursion allows (a few hundred levels: msgspec counts
# against Python's recursion limit) raises RecursionError, not a DecodeError: it is bad input like
# any other. No valid request nests more than three levels, and the size limits (CHAT_MAX_HTTP_BODY_BYTES,
# CHAT_MAX_FRAME_BYTES) bound the work before the limit is hit. (docs/decisions.md, issue 15.)
UNREADABLE_JSON = (msgspec.DecodeError, RecursionError)
TOO_DEEP = "JSON nested too deeply"


def unreadable_reason(exc: BaseException) -> str:
    """Why a JSON input could not be read, for the client (never the input itself)."""
    return TOO_DEEP if isinstance(exc, RecursionError) else str(exc)


_SECONDS: dict[tuple[int, int, int, int, int, int], str] = {}  # "2026-11-24T05:20:21." by second


@functools.lru_cache(maxsize=4096)  # a batch's messages share one timestamp, formatted for each ack and push
def iso_ms(moment: datetime) -> str:
    """ISO-8601 UTC with exactly three fractional digits and ``Z`` (``2026-11-24T05:20:21.089Z``).

    Formatting a datetime is slow next to the rest of a frame (docs/performance.md). Beyond the
    exact times cached above, the part up to the second is kept for the seconds recently formatted (a backlog read
    for an offline batch is mostly dense), so most other calls only add the milliseconds."""
    utc = moment if moment.tzinfo is UTC else moment.astimezone(UTC)
    second = (utc.year, utc.month, utc.day, utc.hour, utc.minute, utc.second)
    prefix = _SECONDS.get(second)
    if prefix is None:
        if len(_SECONDS) >= 4096:
            _SECONDS.clear()
        prefix = _SECONDS[second] = utc.replace(microsecond=0, tzinfo=None).isoformat() + "."
    return f"{prefix}{utc.microsecond // 1000:03d}Z"


def iso_ms_or_none(moment: datetime | None) -> str | None:
    return None if moment is None else iso_ms(moment)


Body = Annotated[
    str,
    msgspec.Meta(
        description='the text as sent; `""` when its sender deleted their account with `erase` (no message '
        "can be sent empty)"
    ),
]
"""A message's body on the wire (an erased message's is empty: decision 50)."""


class UserPublic(msgspec.Struct, frozen=True, rename="camel"):
    """What anyone may see of another user. ``online``/``lastSeenAt`` are null unless visible."""

    id: int
    name: str
    online: bool | None
    last_seen_at: Timestamp | None

    @classmethod
    def of(cls, card: UserCard) -> UserPublic:
        return cls(id=card.id, name=card.name, online=card.online, last_seen_at=iso_ms_or_none(card.last_seen_at))


class WireMessage(msgspec.Struct, rename="camel", frozen=True):
    """A message as history, offline batches and the HTTP API show it."""

    # Fields are positional (:func:`message_values` first): building one by position is much
    # cheaper than by keywords, and an offline batch builds a hundred.
    id: str
    seq: int
    from_: int = msgspec.field(name="from")
    to: int
    message: Body
    client_msg_id: str
    timestamp: Timestamp
    delivered_at: Timestamp | None
    read_at: Timestamp | None

    @classmethod
    def of(cls, m: Message) -> WireMessage:
        return cls(*message_values(m), iso_ms_or_none(m.delivered_at), iso_ms_or_none(m.read_at))


def message_values(m: Message) -> tuple[str, int, int, int, str, str, str]:
    """The fields every wire form of a message shares, in their declared order: ``id, seq, from,
    to, message, clientMsgId, timestamp`` (``messageReceived`` has only these)."""
    return (m.id, m.seq, m.sender_id, m.recipient_id, m.body, m.client_msg_id, iso_ms(m.created_at))
