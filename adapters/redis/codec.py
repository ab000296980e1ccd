"""The bytes that cross Redis pub/sub for the fan-out: every :data:`application.events.Event`, in an
envelope, as msgspec JSON.

Layout (version 1; field names camelCase, ``kind`` tags the event)::

    {"v": 1, "origin": "<process id>", "skip": "<connection id>" | null,
     "event": {"kind": "messageReceived", "message": {"id": …, "seq": …, "createdAt": "…Z", …}}}

``kind`` is one of ``messageReceived``, ``messageDelivered``, ``messagesRead``, ``loginsRevoked``,
``userOnline``, ``userOffline``, ``typing``. Datetimes travel as RFC 3339 in UTC (``…Z``, microsecond
precision) and come back aware UTC; a naive datetime is taken to be UTC already. ``sids`` travel as a
JSON array and come back as a ``frozenset``. The wire structs mirror the dataclasses on purpose: the
format stays stable when a dataclass gains a field, and the core stays free of msgspec.

Errors::

    ValueError
     └── PayloadError   anything :func:`decode` cannot turn into an :class:`Envelope`
                        (not JSON, nested too deeply, unknown ``kind`` or version, missing or
                        mistyped field); its message names the payload's size and what was wrong
                        and where, never a value from it (it may hold a message's body)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Literal, assert_never

import msgspec

from application.events import (
    Event,
    LoginsRevoked,
    MessageDelivered,
    MessageReceived,
    MessagesRead,
    Typing,
    UserOffline,
    UserOnline,
)
from domain.messages import Message

VERSION: Literal[1] = 1

AwareDatetime = Annotated[datetime, msgspec.Meta(tz=True)]


class PayloadError(ValueError):
    """A fan-out payload that is not a valid version-1 envelope; the listener logs and skips it."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Envelope:
    """One published event: ``origin`` identifies the publishing process (which delivered it to its
    own connections already); ``skip_connection`` is the connection that must not get it."""

    event: Event
    origin: str
    skip_connection: str | None = None


class _Message(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    id: str
    seq: int
    sender_id: int
    recipient_id: int
    body: str
    client_msg_id: str
    created_at: AwareDatetime
    delivered_at: AwareDatetime | None = None
    read_at: AwareDatetime | None = None
    withheld: bool = False


class _Event(msgspec.Struct, frozen=True, kw_only=True, rename="camel", tag_field="kind"):
    pass


class _MessageReceived(_Event, frozen=True, tag="messageReceived"):
    message: _Message


class _MessageDelivered(_Event, frozen=True, tag="messageDelivered"):
    ids: tuple[str, ...]
    to: int
    delivered_at: AwareDatetime


class _MessagesRead(_Event, frozen=True, tag="messagesRead"):
    by: int
    peer_id: int
    up_to_seq: int
    read_at: AwareDatetime


class _LoginsRevoked(_Event, frozen=True, tag="loginsRevoked"):
    sids: frozenset[str]


class _UserOnline(_Event, frozen=True, tag="userOnline"):
    user_id: int


class _UserOffline(_Event, frozen=True, tag="userOffline"):
    user_id: int
    last_seen_at: AwareDatetime


class _Typing(_Event, frozen=True, tag="typing"):
    from_id: int
    is_typing: bool


_WireEvent = (
    _MessageReceived | _MessageDelivered | _MessagesRead | _LoginsRevoked | _UserOnline | _UserOffline | _Typing
)


class _Envelope(msgspec.Struct, frozen=True, kw_only=True):
    v: Literal[1]
    origin: str
    skip: str | None
    event: _WireEvent


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(_Envelope)


def encode(envelope: Envelope) -> bytes:
    """The wire form of ``envelope``. Raises only for a value no :data:`Event` can hold."""
    return _encoder.encode(
        _Envelope(v=VERSION, origin=envelope.origin, skip=envelope.skip_connection, event=_to_wire(envelope.event))
    )


def decode(payload: bytes | str) -> Envelope:
    """The envelope in ``payload``; raises :class:`PayloadError` for anything else."""
    try:
        wire = _decoder.decode(payload)
    except (msgspec.DecodeError, RecursionError) as exc:  # also ValidationError: unknown kind/version, bad fields
        raise PayloadError(f"undecodable fan-out payload of {len(payload)} bytes: {_what(exc)}") from None
    return Envelope(event=_from_wire(wire.event), origin=wire.origin, skip_connection=wire.skip)


def _what(exc: Exception) -> str:
    """What was wrong, without any of the payload's values (a payload can hold a message's body, and
    msgspec quotes a bad value, e.g. an unknown ``kind``): the error's class and where it was."""
    _, at, where = str(exc).rpartition(" - at ")
    return f"{type(exc).__name__} at {where}" if at else type(exc).__name__


def _utc(at: datetime) -> datetime:
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def _utc_or_none(at: datetime | None) -> datetime | None:
    return None if at is None else _utc(at)


def _to_wire(event: Event) -> _WireEvent:
    match event:
        case MessageReceived(message=m):
            return _MessageReceived(
                message=_Message(
                    id=m.id,
                    seq=m.seq,
                    sender_id=m.sender_id,
                    recipient_id=m.recipient_id,
                    body=m.body,
                    client_msg_id=m.client_msg_id,
                    created_at=_utc(m.created_at),
                    delivered_at=_utc_or_none(m.delivered_at),
                    read_at=_utc_or_none(m.read_at),
                    withheld=m.withheld,
                )
            )
        case MessageDelivered():
            return _MessageDelivered(ids=event.ids, to=event.to, delivered_at=_utc(event.delivered_at))
        case MessagesRead():
            return _MessagesRead(
                by=event.by, peer_id=event.peer_id, up_to_seq=event.up_to_seq, read_at=_utc(event.read_at)
            )
        case LoginsRevoked():
            return _LoginsRevoked(sids=event.sids)
        case UserOnline():
            return _UserOnline(user_id=event.user_id)
        case UserOffline():
            return _UserOffline(user_id=event.user_id, last_seen_at=_utc(event.last_seen_at))
        case Typing():
            return _Typing(from_id=event.from_id, is_typing=event.is_typing)
        case _:
            assert_never(event)


def _from_wire(wire: _WireEvent) -> Event:
    match wire:
        case _MessageReceived(message=m):
            return MessageReceived(
                message=Message(
                    id=m.id,
                    seq=m.seq,
                    sender_id=m.sender_id,
                    recipient_id=m.recipient_id,
                    body=m.body,
                    client_msg_id=m.client_msg_id,
                    created_at=m.created_at,
                    delivered_at=m.delivered_at,
                    read_at=m.read_at,
                    withheld=m.withheld,
                )
            )
        case _MessageDelivered():
            return MessageDelivered(ids=wire.ids, to=wire.to, delivered_at=wire.delivered_at)
        case _MessagesRead():
            return MessagesRead(by=wire.by, peer_id=wire.peer_id, up_to_seq=wire.up_to_seq, read_at=wire.read_at)
        case _LoginsRevoked():
            return LoginsRevoked(sids=wire.sids)
        case _UserOnline():
            return UserOnline(user_id=wire.user_id)
        case _UserOffline():
            return UserOffline(user_id=wire.user_id, last_seen_at=wire.last_seen_at)
        case _Typing():
            return Typing(from_id=wire.from_id, is_typing=wire.is_typing)
        case _:
            assert_never(wire)
