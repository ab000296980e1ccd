"""Typed values of the p2p-chat protocol as the SDK hands them out (decoded from its JSON), and the
events :meth:`ChatClient.events` yields.

Errors::

    ChatError
    ├── ApiError        an HTTP problem answer (``status``, ``type``, ``detail``, ``errors``)
    ├── SignedOutError       the login is gone (4403, a refused refresh, logout): log in again
    └── SendRefusedError     the server refused a send for good (``bad_request``, ``not_found``, …)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

T = TypeVar("T")

State = Literal["online", "connecting", "offline", "signed_out"]


class ChatError(Exception):
    """Base of the SDK's errors."""


class ApiError(ChatError):
    """An RFC 9457 problem the HTTP API answered with."""

    def __init__(self, status: int, type_: str, detail: str, errors: list[dict[str, str]] | None = None) -> None:
        super().__init__(f"{status} {type_}: {detail}")
        self.status = status
        self.type = type_
        self.detail = detail
        self.errors = errors or []


class SignedOutError(ChatError):
    """The login was revoked or never existed: call ``login`` (or ``register``) again."""


class SendRefusedError(ChatError):
    """The server refused a send for a reason resending cannot fix; it left the outbox."""

    def __init__(self, client_msg_id: str, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.client_msg_id = client_msg_id
        self.code = code
        self.message = message


def parse_time(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def required_time(value: str) -> datetime:
    return datetime.fromisoformat(value)


@dataclass(frozen=True, slots=True)
class Profile:
    """The signed-in user (the token response's profile part)."""

    id: int
    name: str
    email: str
    phone_number: str


@dataclass(frozen=True, slots=True)
class UserPublic:
    id: int
    name: str
    online: bool | None
    last_seen_at: datetime | None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> UserPublic:
        return cls(data["id"], data["name"], data.get("online"), parse_time(data.get("lastSeenAt")))


@dataclass(frozen=True, slots=True)
class Message:
    id: str
    seq: int
    sender: int  # the wire's ``from``
    to: int
    text: str  # the wire's ``message``
    client_msg_id: str
    timestamp: datetime
    delivered_at: datetime | None = None
    read_at: datetime | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Message:
        return cls(
            id=data["id"],
            seq=data["seq"],
            sender=data["from"],
            to=data["to"],
            text=data["message"],
            client_msg_id=data["clientMsgId"],
            timestamp=required_time(data["timestamp"]),
            delivered_at=parse_time(data.get("deliveredAt")),
            read_at=parse_time(data.get("readAt")),
        )


@dataclass(frozen=True, slots=True)
class Ack:
    """The server stored a send: its ``id``, ``seq`` and ``timestamp`` (the same for every resend)."""

    client_msg_id: str
    id: str
    seq: int
    to: int
    timestamp: datetime

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Ack:
        return cls(data["clientMsgId"], data["id"], data["seq"], data["to"], required_time(data["timestamp"]))


@dataclass(frozen=True, slots=True)
class Conversation:
    peer: UserPublic
    last_message: Message
    unread_count: int
    last_read_seq: int
    peer_last_read_seq: int

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Conversation:
        return cls(
            UserPublic.from_json(data["peer"]),
            Message.from_json(data["lastMessage"]),
            data["unreadCount"],
            data["lastReadSeq"],
            data["peerLastReadSeq"],
        )


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a list; pass ``next_cursor`` back for the next one (``None``: the last page)."""

    items: list[T]
    next_cursor: str | None = None


@dataclass(frozen=True, slots=True)
class HistoryPage:
    """Messages ascending by ``seq``; ``has_more``: more exist in the direction asked for."""

    items: list[Message]
    has_more: bool


# --- events ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ready:
    """The socket is authenticated (``reauthenticated``: again, after a token refresh)."""

    user_id: int
    connection_id: str
    server_time: datetime
    heartbeat_s: int
    reauthenticated: bool = False


@dataclass(frozen=True, slots=True)
class StateChanged:
    state: State
    close_code: int | None = None  # the close that caused it, when one did


@dataclass(frozen=True, slots=True)
class MessageReceived:
    """A message seen for the first time (live or from an offline batch); repeats are dropped."""

    message: Message
    offline: bool = False


@dataclass(frozen=True, slots=True)
class Sent:
    """A send from the outbox was acknowledged (stored once, whatever the resends)."""

    ack: Ack


@dataclass(frozen=True, slots=True)
class Delivered:
    ids: list[str]
    to: int
    delivered_at: datetime


@dataclass(frozen=True, slots=True)
class Read:
    by: int
    peer_id: int
    up_to_seq: int
    read_at: datetime


@dataclass(frozen=True, slots=True)
class Presence:
    user_id: int
    online: bool
    last_seen_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Typing:
    user_id: int
    is_typing: bool


@dataclass(frozen=True, slots=True)
class Error:
    """An ``error`` frame (the socket stays usable)."""

    code: str
    message: str
    ref: str | None = None
    client_msg_id: str | None = None


Event = Ready | StateChanged | MessageReceived | Sent | Delivered | Read | Presence | Typing | Error


@dataclass(slots=True)
class Tokens:
    access_token: str
    refresh_token: str
    expires_at: float  # on the client's clock
    profile: Profile | None = field(default=None)
