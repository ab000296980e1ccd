"""The account export as JSON bytes, written part by part as :class:`~application.account_life.ExportAccount`
reads them: one chunk per page, so the response's memory does not grow with the account.

The document is :class:`~entrypoints.http.schemas.AccountExport`; its lists are written element
by element (``logins``, ``devices``, ``contacts``, ``blocks``, ``conversations``, and each conversation's
``messages``), never built whole.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec

from application.account_life import (
    ConversationEnd,
    ConversationStart,
    DevicePart,
    ListEnd,
    ListStart,
    LoginPart,
    MessagesPart,
    PersonPart,
    ProfilePart,
)
from entrypoints.http.schemas import ExportDevice, ExportLogin, ExportPerson, ExportProfile
from entrypoints.wire import WireMessage, iso_ms, iso_ms_or_none

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from application.account_life import ExportPart
    from domain.users import User

FORMAT = "p2p-chat-export/1"
_encode = msgspec.json.Encoder().encode


def _element(first: bool, value: msgspec.Struct) -> bytes:
    """A list element, after a comma unless it is the list's first."""
    return (b"" if first else b",") + _encode(value)


def _person(user: User) -> ExportPerson:
    return ExportPerson(id=user.uid, name=user.name)


async def export_json(parts: AsyncIterator[ExportPart]) -> AsyncIterator[bytes]:
    """The document's bytes; a chunk per part (a page of messages is one part)."""
    first = True  # no comma before the first element of the current list
    in_messages = False  # True until a conversation's first page of messages is written
    async for part in parts:
        match part:
            case ProfilePart(user=user, exported_at=now):
                profile = ExportProfile(
                    id=user.uid,
                    name=user.name,
                    email=user.email,
                    phone_number=user.phone_number,
                    created_at=iso_ms(user.created_at),
                    last_seen_at=iso_ms_or_none(user.last_seen_at),
                )
                yield b'{"format":%b,"exportedAt":%b,"profile":%b' % (
                    _encode(FORMAT),
                    _encode(iso_ms(now)),
                    _encode(profile),
                )
            case ListStart(name=name):
                first = True
                yield b"," + _encode(name) + b":["
            case ListEnd():
                yield b"]"
            case LoginPart(login=login):
                item = ExportLogin(
                    id=login.id,
                    created_at=iso_ms(login.created_at),
                    last_used_at=iso_ms_or_none(login.last_used_at),
                    revoked_at=iso_ms_or_none(login.revoked_at),
                    client=login.client,
                )
                yield _element(first, item)
                first = False
            case DevicePart(target=target):
                device = ExportDevice(
                    id=target.id,
                    kind=target.kind,
                    app_id=target.app_id,
                    label=target.label,
                    login_id=target.login_id,
                    created_at=iso_ms(target.created_at),
                )
                yield _element(first, device)
                first = False
            case PersonPart(user=user):
                yield _element(first, _person(user))
                first = False
            case ConversationStart(peer=peer, state=state):
                opening = (
                    b'{"peer":'
                    + _encode(_person(peer))
                    + b',"lastSeq":%d,"readSeq":%d,"peerReadSeq":%d,"messages":['
                    % (state.last_seq, state.read_seq, state.peer_read_seq)
                )
                yield (b"" if first else b",") + opening
                first, in_messages = False, True
            case MessagesPart(messages=messages):
                body = b",".join(_encode(WireMessage.of(m)) for m in messages)
                yield (b"" if in_messages else b",") + body
                in_messages = False
            case ConversationEnd():
                yield b"]}"
    yield b"}"
