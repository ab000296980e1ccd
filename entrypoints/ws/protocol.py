"""WebSocket frames: one tagged union for client frames (one decoder), typed server frames (one
encoder), and the live session's replies turned into them. Keys and ``type`` values are camelCase;
every client frame may carry ``ref``. Every wire struct's name ends in ``Frame``."""

from __future__ import annotations

from typing import Annotated, Any

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
from application.users import SEARCH_DEFAULT, SEARCH_MAX, SEARCH_QUERY_MAX, SEARCH_QUERY_MIN
from domain.messages import BATCH_MAX, CLIENT_MSG_ID_MAX, Message
from entrypoints.settings import Settings
from entrypoints.wire import (
    TOO_DEEP,
    UNREADABLE_JSON,
    Body,
    Timestamp,
    UserPublic,
    WireMessage,
    iso_ms,
    message_values,
    unreadable_reason,
)

# The JSON Schema of every frame (entrypoints/ws/asyncapi.py) is generated from these types: class
# docstrings and ``description``s are its text. Bounds in ``extra_json_schema`` are documented only:
# the use cases enforce them, with their own messages (bounds in the ``Meta`` itself are decoded).
_DEFAULTS = Settings()

Ref = Annotated[
    str,
    msgspec.Meta(
        max_length=64,
        description="Any string; the frame's direct reply (``messageAck``, ``searchResults``, ``onlineUsers``, "
        "``pong``, ``ready``, ``error``) echoes it.",
    ),
]
EchoedRef = Annotated[
    str, msgspec.Meta(description="The ``ref`` of the client frame this answers; absent if it had none.")
]
UserId = Annotated[int, msgspec.Meta(ge=1, le=MAX_ID, description="A user's id.")]
MessageId = Annotated[str, msgspec.Meta(max_length=64)]
ClientMsgId = Annotated[
    str,
    msgspec.Meta(
        description="The sender's id of the message: unique per sender for ever (a UUID per message is a good "
        "choice). The same id again is answered with the original ``messageAck``; nothing is stored twice.",
        extra_json_schema={"minLength": 1, "maxLength": CLIENT_MSG_ID_MAX},
    ),
]


class ClientFrame(
    msgspec.Struct, tag_field="type", rename="camel", forbid_unknown_fields=True, frozen=True, kw_only=True
):
    ref: Ref | None = None


class AuthFrame(ClientFrame, frozen=True, kw_only=True, tag="auth"):
    """Authenticates the connection; answered with ``ready``. The first frame, within
    ``CHAT_AUTH_TIMEOUT_S``, unless the ``bearer`` subprotocol carried the token: any other first
    frame, or a bad, expired or revoked token, closes 4401; none in time closes 4408. Later, a fresh
    token of the same user before the current one expires re-authenticates: ``ready`` again (no
    offline replay); another user's token closes 4401."""

    token: Annotated[str, msgspec.Meta(max_length=4096, description="An access token (``POST /auth/login``).")]


class SendMessageFrame(ClientFrame, frozen=True, kw_only=True, tag="sendMessage"):
    """Sends a message. Once it is committed the sender gets ``messageAck``, and the recipient's
    connections and the sender's other connections get ``messageReceived``. To yourself:
    ``bad_request``; to an unknown user: ``not_found``; over the rate limit: ``rate_limited`` and
    nothing stored (send it again later with the same ``clientMsgId``)."""

    to: UserId
    message: Annotated[
        str,
        msgspec.Meta(
            description=f"1 to ``CHAT_MAX_BODY_CHARS`` ({_DEFAULTS.max_body_chars}) code points, at least one not "
            "white space; stored exactly as sent.",
            extra_json_schema={"minLength": 1, "maxLength": _DEFAULTS.max_body_chars},
        ),
    ]
    client_msg_id: ClientMsgId
    from_: Annotated[
        Any, msgspec.Meta(description="Ignored (the original's clients sent it): the sender is the socket's user.")
    ] = msgspec.field(default=None, name="from")


class AckMessagesFrame(ClientFrame, frozen=True, kw_only=True, tag="ackMessages"):
    """Marks received messages delivered. Idempotent; ids not addressed to you are ignored. Their
    senders get ``messageDelivered`` for the newly delivered ones. No reply unless it fails."""

    ids: Annotated[
        list[MessageId],
        msgspec.Meta(
            description="The ``id``s of received messages.", extra_json_schema={"minItems": 1, "maxItems": BATCH_MAX}
        ),
    ]


class MarkReadFrame(ClientFrame, frozen=True, kw_only=True, tag="markRead"):
    """Marks a conversation read. Your read pointer of the conversation with ``peerId`` moves
    forward to ``upToSeq`` (never back, never past its last ``seq``) and everything up to it is
    marked delivered and read; the peer and your other connections get ``messagesRead``. No reply;
    an unknown conversation is ``not_found``."""

    peer_id: UserId
    up_to_seq: Annotated[int, msgspec.Meta(ge=0, le=MAX_ID)]


class TypingFrame(ClientFrame, frozen=True, kw_only=True, tag="typing"):
    """Tells a user you are (not) typing. Relayed as ``typing`` if you are contacts and no block
    exists either way, otherwise dropped without an error. Never stored, no reply."""

    to: UserId
    is_typing: bool


class SearchUsersFrame(ClientFrame, frozen=True, kw_only=True, tag="searchUsers"):
    """Searches users as ``GET /users?q=`` does; answered with ``searchResults``."""

    query: Annotated[
        str,
        msgspec.Meta(
            max_length=1000,
            description=f"{SEARCH_QUERY_MIN}–{SEARCH_QUERY_MAX} characters after trimming: part of a name, or an exact "
            "email or phone number.",
        ),
    ]
    limit: (
        Annotated[
            int,
            msgspec.Meta(
                description=f"1–{SEARCH_MAX}; {SEARCH_DEFAULT} when absent.",
                extra_json_schema={"minimum": 1, "maximum": SEARCH_MAX},
            ),
        ]
        | None
    ) = None


class GetOnlineUsersFrame(ClientFrame, frozen=True, kw_only=True, tag="getOnlineUsers"):
    """Asks who is online; answered with ``onlineUsers``."""

    user_ids: (
        Annotated[
            list[UserId],
            msgspec.Meta(max_length=100, description="The users to ask about; your contacts when absent."),
        ]
        | None
    ) = None


class PingFrame(ClientFrame, frozen=True, kw_only=True, tag="ping"):
    """An application-level check, answered with ``pong`` once every frame sent before it was handled."""


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
    except UNREADABLE_JSON as exc:
        reason = unreadable_reason(exc)
        try:
            envelope = _envelope.decode(data)
        except RecursionError:  # nested too deeply to read even the ``ref``
            raise FrameError(WsErrorCode.BAD_REQUEST, TOO_DEEP, None) from None
        except msgspec.DecodeError:
            raise FrameError(WsErrorCode.BAD_REQUEST, f"not a JSON object: {reason}", None) from None
        ref = envelope.readable_ref
        if isinstance(envelope.type, str) and envelope.type not in CLIENT_TYPES:
            raise FrameError(WsErrorCode.UNKNOWN_TYPE, f"unknown frame type {envelope.type[:64]!r}", ref) from None
        raise FrameError(WsErrorCode.BAD_REQUEST, reason, ref, envelope.readable_client_msg_id) from None


# ---- server frames -------------------------------------------------------------------------


class ServerFrame(msgspec.Struct, tag_field="type", rename="camel", omit_defaults=True, frozen=True, kw_only=True):
    pass


class ReadyFrame(ServerFrame, frozen=True, kw_only=True, tag="ready"):
    """The connection is authenticated. The first frame the server sends (then one
    ``offlineMessages``), and the answer to a re-authentication."""

    ref: EchoedRef | None = None
    user_id: int
    connection_id: str
    server_time: Timestamp
    heartbeat_s: Annotated[
        int,
        msgspec.Meta(
            description="Whole seconds (CHAT_HEARTBEAT_S): the server pings every this many seconds "
            "and closes (1011) a connection that does not answer within as many more."
        ),
    ]


class OfflineMessagesFrame(ServerFrame, frozen=True, kw_only=True, tag="offlineMessages"):
    """A batch of pending messages. The oldest (at most 100) in the order they were stored: exactly
    one batch after ``ready``, and while ``more`` is true the next once every message of this one
    was acknowledged. A message may come again (live or in a later batch): dedupe by ``id``."""

    messages: list[WireMessage]
    more: bool


class MessageAckFrame(ServerFrame, frozen=True, kw_only=True, tag="messageAck"):
    """A ``sendMessage`` was committed. The same ``clientMsgId`` again gets the original ``id``,
    ``seq`` and ``timestamp``."""

    ref: EchoedRef | None = None
    client_msg_id: str
    id: str
    seq: int
    to: int
    timestamp: Timestamp


class MessageReceivedFrame(ServerFrame, frozen=True, tag="messageReceived"):  # positional: message_values
    """A message to you, or from you on another connection. New, or a re-push of a pending one
    this connection has not acknowledged in time. Acknowledge it with ``ackMessages``; dedupe by
    ``id``; order by ``seq``."""

    id: str
    seq: int
    from_: int = msgspec.field(name="from")
    to: int
    message: Body
    client_msg_id: str
    timestamp: Timestamp

    @classmethod
    def of(cls, m: Message) -> MessageReceivedFrame:
        return cls(*message_values(m))


class MessageDeliveredFrame(ServerFrame, frozen=True, kw_only=True, tag="messageDelivered"):
    """To the sender: these messages to ``to`` were acknowledged by a device of the recipient."""

    ids: list[str]
    to: int
    delivered_at: Timestamp


class MessagesReadFrame(ServerFrame, frozen=True, kw_only=True, tag="messagesRead"):
    """A conversation was read. ``by`` read it up to ``upToSeq``; ``peerId`` is the conversation's
    other user from your point of view (the reader for the peer, the peer for the reader's other
    devices)."""

    by: int
    peer_id: int
    up_to_seq: int
    read_at: Timestamp


class SearchResultsFrame(ServerFrame, frozen=True, kw_only=True, tag="searchResults"):
    """The answer to ``searchUsers``."""

    ref: EchoedRef | None = None
    query: str
    users: list[UserPublic]


class OnlineUsersFrame(ServerFrame, frozen=True, kw_only=True, tag="onlineUsers"):
    """The answer to ``getOnlineUsers``. Those online among the ids asked about (or among your
    contacts), only users whose presence is visible to you."""

    ref: EchoedRef | None = None
    user_ids: list[int]


class PongFrame(ServerFrame, frozen=True, kw_only=True, tag="pong"):
    """The answer to ``ping``."""

    ref: EchoedRef | None = None


class UserOnlineFrame(ServerFrame, frozen=True, kw_only=True, tag="userOnline"):
    """A contact is online: its first connection opened, or a message just made you contacts."""

    user_id: int


class UserOfflineFrame(ServerFrame, frozen=True, kw_only=True, tag="userOffline"):
    """A contact's last connection closed and ``CHAT_OFFLINE_GRACE_S`` passed without a reconnect."""

    user_id: int
    last_seen_at: Timestamp


class PeerTypingFrame(ServerFrame, frozen=True, kw_only=True, tag="typing"):
    """A contact is (not) typing to you. The first frames dropped when you read too slowly."""

    from_: int = msgspec.field(name="from")
    is_typing: bool


class ErrorFrame(ServerFrame, frozen=True, kw_only=True, tag="error"):
    """A frame was refused, or failed; the connection stays usable."""

    ref: EchoedRef | None = None
    code: WsErrorCode
    message: Annotated[str, msgspec.Meta(description="For people; match on ``code``.")]
    client_msg_id: Annotated[
        str | None,
        msgspec.Meta(description="The refused ``sendMessage``'s ``clientMsgId`` (as far as the frame was readable)."),
    ] = None


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


class ReplyEncoder:
    """The live session's :data:`~application.live.actions.Encoder`: a reply or a forwarded event
    as the text of its server frame. ``ready`` carries the server's time and heartbeat."""

    __slots__ = ("_clock", "_heartbeat_s")

    def __init__(self, clock: Clock, heartbeat_s: int) -> None:
        self._clock, self._heartbeat_s = clock, heartbeat_s

    def __call__(self, reply: Reply) -> str:
        if isinstance(reply, MessageReceived):  # the most frequent frame, without a call more
            return _encoder.encode(MessageReceivedFrame.of(reply.message)).decode()
        return _encoder.encode(self.frame(reply)).decode()

    def frame(self, reply: Reply) -> ServerFrame:
        if isinstance(reply, Event):  # another forwarded event
            frame = frame_of(reply)
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
    except UNREADABLE_JSON:
        envelope = _Envelope()
    session.oversized_frame(envelope.readable_ref, envelope.readable_client_msg_id, now_ms)
