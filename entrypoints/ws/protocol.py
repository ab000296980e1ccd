"""WebSocket frames: one tagged union for client frames (one decoder), typed server frames (one
encoder). Keys and ``type`` values are camelCase. Every client frame may carry ``ref``."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from application.common import MAX_ID
from application.events import (
    Event,
    LoginsRevoked,
    MessageDelivered,
    MessageReceived,
    MessagesRead,
    UserOffline,
    UserOnline,
)
from application.events import (
    Typing as TypingEvent,
)
from domain.messages import Message
from entrypoints.wire import UserPublic, WireMessage, iso_ms, message_values

Ref = Annotated[str, msgspec.Meta(max_length=64)]
UserId = Annotated[int, msgspec.Meta(ge=1, le=MAX_ID)]
MessageId = Annotated[str, msgspec.Meta(max_length=64)]


class ClientFrame(
    msgspec.Struct, tag_field="type", rename="camel", forbid_unknown_fields=True, frozen=True, kw_only=True
):
    ref: Ref | None = None


class Auth(ClientFrame, frozen=True, kw_only=True, tag="auth"):
    token: Annotated[str, msgspec.Meta(max_length=4096)]


class SendMessage(ClientFrame, frozen=True, kw_only=True, tag="sendMessage"):
    to: UserId
    message: str
    client_msg_id: str
    from_: Any = msgspec.field(default=None, name="from")  # sent by the original's clients; ignored


class AckMessages(ClientFrame, frozen=True, kw_only=True, tag="ackMessages"):
    ids: list[MessageId]


class MarkRead(ClientFrame, frozen=True, kw_only=True, tag="markRead"):
    peer_id: UserId
    up_to_seq: Annotated[int, msgspec.Meta(ge=0, le=MAX_ID)]


class Typing(ClientFrame, frozen=True, kw_only=True, tag="typing"):
    to: UserId
    is_typing: bool


class SearchUsers(ClientFrame, frozen=True, kw_only=True, tag="searchUsers"):
    query: Annotated[str, msgspec.Meta(max_length=1000)]
    limit: int | None = None


class GetOnlineUsers(ClientFrame, frozen=True, kw_only=True, tag="getOnlineUsers"):
    user_ids: Annotated[list[UserId], msgspec.Meta(max_length=100)] | None = None


class Ping(ClientFrame, frozen=True, kw_only=True, tag="ping"):
    pass


ClientMessage = Auth | SendMessage | AckMessages | MarkRead | Typing | SearchUsers | GetOnlineUsers | Ping
CLIENT_TYPES = frozenset(
    cls.__struct_config__.tag
    for cls in (Auth, SendMessage, AckMessages, MarkRead, Typing, SearchUsers, GetOnlineUsers, Ping)
)


class _Envelope(msgspec.Struct):
    """What is still readable of a frame that failed validation (to answer with its ``ref``)."""

    type: Any = None
    ref: Any = None


class FrameError(Exception):
    """A client frame that cannot be used; ``code`` is ``bad_request`` or ``unknown_type``."""

    def __init__(self, code: str, message: str, ref: str | None) -> None:
        super().__init__(message)
        self.code, self.message, self.ref = code, message, ref


_decoder: msgspec.json.Decoder[ClientMessage] = msgspec.json.Decoder(ClientMessage)
_envelope = msgspec.json.Decoder(_Envelope)


def decode_client(data: str | bytes) -> ClientMessage:
    """Decode one client frame or raise :class:`FrameError` (with the frame's ``ref`` if readable)."""
    try:
        return _decoder.decode(data)
    except msgspec.DecodeError as exc:
        try:
            envelope = _envelope.decode(data)
        except msgspec.DecodeError:
            raise FrameError("bad_request", f"not a JSON object: {exc}", None) from None
        ref = envelope.ref if isinstance(envelope.ref, str) and len(envelope.ref) <= 64 else None
        if isinstance(envelope.type, str) and envelope.type not in CLIENT_TYPES:
            raise FrameError("unknown_type", f"unknown frame type {envelope.type[:64]!r}", ref) from None
        raise FrameError("bad_request", str(exc), ref) from None


# ---- server frames -------------------------------------------------------------------------


class ServerFrame(msgspec.Struct, tag_field="type", rename="camel", omit_defaults=True, frozen=True, kw_only=True):
    pass


class Ready(ServerFrame, frozen=True, kw_only=True, tag="ready"):
    ref: str | None = None
    user_id: int
    connection_id: str
    server_time: str
    heartbeat_s: float


class OfflineMessages(ServerFrame, frozen=True, kw_only=True, tag="offlineMessages"):
    messages: list[WireMessage]
    more: bool


class MessageAck(ServerFrame, frozen=True, kw_only=True, tag="messageAck"):
    ref: str | None = None
    client_msg_id: str
    id: str
    seq: int
    to: int
    timestamp: str


class MessageReceivedFrame(ServerFrame, frozen=True, tag="messageReceived"):  # positional: message_values
    id: str
    seq: int
    from_: int = msgspec.field(name="from")
    to: int
    message: str
    client_msg_id: str
    timestamp: str

    @classmethod
    def of(cls, m: Message) -> MessageReceivedFrame:
        return cls(*message_values(m))


class MessageDeliveredFrame(ServerFrame, frozen=True, kw_only=True, tag="messageDelivered"):
    ids: list[str]
    to: int
    delivered_at: str


class MessagesReadFrame(ServerFrame, frozen=True, kw_only=True, tag="messagesRead"):
    by: int
    peer_id: int
    up_to_seq: int
    read_at: str


class SearchResults(ServerFrame, frozen=True, kw_only=True, tag="searchResults"):
    ref: str | None = None
    query: str
    users: list[UserPublic]


class OnlineUsers(ServerFrame, frozen=True, kw_only=True, tag="onlineUsers"):
    ref: str | None = None
    user_ids: list[int]


class Pong(ServerFrame, frozen=True, kw_only=True, tag="pong"):
    ref: str | None = None


class UserOnlineFrame(ServerFrame, frozen=True, kw_only=True, tag="userOnline"):
    user_id: int


class UserOfflineFrame(ServerFrame, frozen=True, kw_only=True, tag="userOffline"):
    user_id: int
    last_seen_at: str


class TypingFrame(ServerFrame, frozen=True, kw_only=True, tag="typing"):
    from_: int = msgspec.field(name="from")
    is_typing: bool


class ErrorFrame(ServerFrame, frozen=True, kw_only=True, tag="error"):
    ref: str | None = None
    code: str
    message: str


_encoder = msgspec.json.Encoder()


def encode(frame: ServerFrame) -> str:
    return _encoder.encode(frame).decode()


def frame_of(event: Event) -> ServerFrame | None:
    """The frame that carries an event to a client (None for control events)."""
    match event:
        case MessageReceived(message=message):
            return MessageReceivedFrame.of(message)
        case MessageDelivered(ids=ids, to=to, delivered_at=at):
            return MessageDeliveredFrame(ids=list(ids), to=to, delivered_at=iso_ms(at))
        case MessagesRead(by=by, peer_id=peer_id, up_to_seq=seq, read_at=at):
            return MessagesReadFrame(by=by, peer_id=peer_id, up_to_seq=seq, read_at=iso_ms(at))
        case UserOnline(user_id=user_id):
            return UserOnlineFrame(user_id=user_id)
        case UserOffline(user_id=user_id, last_seen_at=at):
            return UserOfflineFrame(user_id=user_id, last_seen_at=iso_ms(at))
        case TypingEvent(from_id=from_id, is_typing=is_typing):
            return TypingFrame(from_=from_id, is_typing=is_typing)
        case LoginsRevoked():
            return None
