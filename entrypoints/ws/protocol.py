"""WebSocket frames: one tagged union for client frames (one decoder), typed server frames (one
encoder), and the live session's replies turned into them. Keys and ``type`` values are camelCase;
every client frame may carry ``ref``. Every wire struct's name ends in ``Frame``."""

from __future__ import annotations

from typing import Annotated, Any, cast, get_args

import msgspec

from application.common import MAX_ID
from application.errors import WsErrorCode
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
from application.live.actions import Acked, ErrorReply, OnlineNow, Pong, Ready, Reply, UsersFound
from application.live.session import LiveSession
from application.messaging import Batch
from application.ports import Clock
from domain.messages import Message
from entrypoints.wire import UserPublic, WireMessage, iso_ms, message_values

Ref = Annotated[str, msgspec.Meta(max_length=64)]
UserId = Annotated[int, msgspec.Meta(ge=1, le=MAX_ID)]
MessageId = Annotated[str, msgspec.Meta(max_length=64)]


class ClientFrame(
    msgspec.Struct, tag_field="type", rename="camel", forbid_unknown_fields=True, frozen=True, kw_only=True
):
    ref: Ref | None = None


class AuthFrame(ClientFrame, frozen=True, kw_only=True, tag="auth"):
    token: Annotated[str, msgspec.Meta(max_length=4096)]


class SendMessageFrame(ClientFrame, frozen=True, kw_only=True, tag="sendMessage"):
    to: UserId
    message: str
    client_msg_id: str
    from_: Any = msgspec.field(default=None, name="from")  # sent by the original's clients; ignored


class AckMessagesFrame(ClientFrame, frozen=True, kw_only=True, tag="ackMessages"):
    ids: list[MessageId]


class MarkReadFrame(ClientFrame, frozen=True, kw_only=True, tag="markRead"):
    peer_id: UserId
    up_to_seq: Annotated[int, msgspec.Meta(ge=0, le=MAX_ID)]


class TypingFrame(ClientFrame, frozen=True, kw_only=True, tag="typing"):
    to: UserId
    is_typing: bool


class SearchUsersFrame(ClientFrame, frozen=True, kw_only=True, tag="searchUsers"):
    query: Annotated[str, msgspec.Meta(max_length=1000)]
    limit: int | None = None


class GetOnlineUsersFrame(ClientFrame, frozen=True, kw_only=True, tag="getOnlineUsers"):
    user_ids: Annotated[list[UserId], msgspec.Meta(max_length=100)] | None = None


class PingFrame(ClientFrame, frozen=True, kw_only=True, tag="ping"):
    pass


ClientMessage = (
    AuthFrame
    | SendMessageFrame
    | AckMessagesFrame
    | MarkReadFrame
    | TypingFrame
    | SearchUsersFrame
    | GetOnlineUsersFrame
    | PingFrame
)
CLIENT_TYPES = frozenset(
    cls.__struct_config__.tag
    for cls in (
        AuthFrame,
        SendMessageFrame,
        AckMessagesFrame,
        MarkReadFrame,
        TypingFrame,
        SearchUsersFrame,
        GetOnlineUsersFrame,
        PingFrame,
    )
)


class _Envelope(msgspec.Struct, rename="camel"):
    """What is still readable of a frame that cannot be used, to answer it with its ``ref`` (and a
    ``sendMessage``'s ``clientMsgId``)."""

    type: Any = None
    ref: Any = None
    client_msg_id: Any = None

    @property
    def readable_ref(self) -> str | None:
        return _short(self.ref)

    @property
    def readable_client_msg_id(self) -> str | None:
        return _short(self.client_msg_id) if self.type == SEND_MESSAGE else None


def _short(value: Any) -> str | None:
    """``value`` if it is a string short enough to echo (a ``ref``'s bound, which is also a
    ``clientMsgId``'s), else None."""
    return value if isinstance(value, str) and len(value) <= 64 else None


class FrameError(Exception):
    """A client frame that cannot be used; ``code`` is ``bad_request`` or ``unknown_type``."""

    def __init__(self, code: WsErrorCode, message: str, ref: str | None, client_msg_id: str | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.ref, self.client_msg_id = code, message, ref, client_msg_id


SEND_MESSAGE = SendMessageFrame.__struct_config__.tag
_decoder: msgspec.json.Decoder[ClientMessage] = msgspec.json.Decoder(ClientMessage)
_envelope = msgspec.json.Decoder(_Envelope)


def decode_client(data: str | bytes) -> ClientMessage:
    """Decode one client frame or raise :class:`FrameError` (with the frame's ``ref`` and a
    ``sendMessage``'s ``clientMsgId`` if readable)."""
    try:
        return _decoder.decode(data)
    except msgspec.DecodeError as exc:
        try:
            envelope = _envelope.decode(data)
        except msgspec.DecodeError:
            raise FrameError(WsErrorCode.BAD_REQUEST, f"not a JSON object: {exc}", None) from None
        ref = envelope.readable_ref
        if isinstance(envelope.type, str) and envelope.type not in CLIENT_TYPES:
            raise FrameError(WsErrorCode.UNKNOWN_TYPE, f"unknown frame type {envelope.type[:64]!r}", ref) from None
        raise FrameError(WsErrorCode.BAD_REQUEST, str(exc), ref, envelope.readable_client_msg_id) from None


# ---- server frames -------------------------------------------------------------------------


class ServerFrame(msgspec.Struct, tag_field="type", rename="camel", omit_defaults=True, frozen=True, kw_only=True):
    pass


class ReadyFrame(ServerFrame, frozen=True, kw_only=True, tag="ready"):
    ref: str | None = None
    user_id: int
    connection_id: str
    server_time: str
    heartbeat_s: int  # whole seconds (CHAT_HEARTBEAT_S)


class OfflineMessagesFrame(ServerFrame, frozen=True, kw_only=True, tag="offlineMessages"):
    messages: list[WireMessage]
    more: bool


class MessageAckFrame(ServerFrame, frozen=True, kw_only=True, tag="messageAck"):
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


class SearchResultsFrame(ServerFrame, frozen=True, kw_only=True, tag="searchResults"):
    ref: str | None = None
    query: str
    users: list[UserPublic]


class OnlineUsersFrame(ServerFrame, frozen=True, kw_only=True, tag="onlineUsers"):
    ref: str | None = None
    user_ids: list[int]


class PongFrame(ServerFrame, frozen=True, kw_only=True, tag="pong"):
    ref: str | None = None


class UserOnlineFrame(ServerFrame, frozen=True, kw_only=True, tag="userOnline"):
    user_id: int


class UserOfflineFrame(ServerFrame, frozen=True, kw_only=True, tag="userOffline"):
    user_id: int
    last_seen_at: str


class PeerTypingFrame(ServerFrame, frozen=True, kw_only=True, tag="typing"):
    from_: int = msgspec.field(name="from")
    is_typing: bool


class ErrorFrame(ServerFrame, frozen=True, kw_only=True, tag="error"):
    ref: str | None = None
    code: WsErrorCode
    message: str
    client_msg_id: str | None = None  # when it answers a sendMessage (as far as the frame was readable)


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
            return PeerTypingFrame(from_=from_id, is_typing=is_typing)
        case LoginsRevoked():
            return None


_EVENT_TYPES = frozenset(get_args(Event))  # what the session forwards from the fan-out


class ReplyEncoder:
    """The live session's :data:`~application.live.actions.Encoder`: a reply or a forwarded event
    as the text of its server frame. ``ready`` carries the server's time and heartbeat."""

    __slots__ = ("_clock", "_heartbeat_s")

    def __init__(self, clock: Clock, heartbeat_s: int) -> None:
        self._clock, self._heartbeat_s = clock, heartbeat_s

    def __call__(self, reply: Reply) -> str:
        return _encoder.encode(self.frame(reply)).decode()

    def frame(self, reply: Reply) -> ServerFrame:
        if type(reply) in _EVENT_TYPES:  # a forwarded event (most frames: messages, receipts)
            frame = frame_of(cast("Event", reply))
            if frame is None:
                raise ValueError(f"{type(reply).__name__} has no frame")
            return frame
        match reply:
            case Acked(ref=ref, message=m):
                return MessageAckFrame(
                    ref=ref,
                    client_msg_id=m.client_msg_id,
                    id=m.id,
                    seq=m.seq,
                    to=m.recipient_id,
                    timestamp=iso_ms(m.created_at),
                )
            case Batch(messages=messages, more=more):
                return OfflineMessagesFrame(messages=[WireMessage.of(m) for m in messages], more=more)
            case ErrorReply(ref=ref, code=code, message=message, client_msg_id=client_msg_id):
                return ErrorFrame(ref=ref, code=code, message=message, client_msg_id=client_msg_id)
            case Ready(ref=ref, user_id=user_id, connection_id=connection_id):
                return ReadyFrame(
                    ref=ref,
                    user_id=user_id,
                    connection_id=connection_id,
                    server_time=iso_ms(self._clock.now()),
                    heartbeat_s=self._heartbeat_s,
                )
            case Pong(ref=ref):
                return PongFrame(ref=ref)
            case UsersFound(ref=ref, query=query, users=users):
                return SearchResultsFrame(ref=ref, query=query, users=[UserPublic.of(c) for c in users])
            case OnlineNow(ref=ref, user_ids=user_ids):
                return OnlineUsersFrame(ref=ref, user_ids=user_ids)
        raise ValueError(f"{type(reply).__name__} has no frame")


def feed(session: LiveSession, text: str, now_ms: float) -> None:
    """Decode one text frame into the session's input for it."""
    try:
        frame = decode_client(text)
    except FrameError as exc:
        session.bad_frame(exc.ref, exc.code, exc.message, now_ms, exc.client_msg_id)
        return
    match frame:
        case SendMessageFrame():
            session.send_message(frame.ref, frame.to, frame.message, frame.client_msg_id, now_ms)
        case AckMessagesFrame():
            session.ack_messages(frame.ref, frame.ids, now_ms)
        case MarkReadFrame():
            session.mark_read(frame.ref, frame.peer_id, frame.up_to_seq, now_ms)
        case TypingFrame():
            session.typing(frame.ref, frame.to, frame.is_typing, now_ms)
        case SearchUsersFrame():
            session.search_users(frame.ref, frame.query, frame.limit, now_ms)
        case GetOnlineUsersFrame():
            session.get_online_users(frame.ref, frame.user_ids, now_ms)
        case PingFrame():
            session.ping(frame.ref, now_ms)
        case AuthFrame():
            session.auth(frame.ref, frame.token, now_ms)


def feed_oversized(session: LiveSession, text: str, now_ms: float) -> None:
    """A text frame over ``CHAT_MAX_FRAME_BYTES`` (at most 1 MiB: larger ones close 1009): refused
    unread but for its ``ref`` and a ``sendMessage``'s ``clientMsgId``, so its error can carry them."""
    try:
        envelope = _envelope.decode(text)
    except msgspec.DecodeError:
        envelope = _Envelope()
    session.oversized_frame(envelope.readable_ref, envelope.readable_client_msg_id, now_ms)
