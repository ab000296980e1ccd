"""The WebSocket wire: client frames decoded (wire tags unchanged), errors with the frame's ``ref``,
replies encoded, and a decoded frame fed to the live session as its input."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from application.errors import WsErrorCode
from application.events import MessageReceived, Typing, UserOffline
from application.live.actions import (
    Acked,
    Call,
    ErrorReply,
    MarkReadCall,
    OnlineCall,
    OnlineNow,
    PipelinedAck,
    PipelinedSend,
    Pong,
    Ready,
    Reauthenticate,
    SearchCall,
    TypingCall,
    UsersFound,
)
from application.messaging import Batch
from domain.users import UserCard
from entrypoints.settings import Settings, SettingsError, load_settings
from entrypoints.ws import protocol as p
from tests.unit.fakes import EPOCH, FixedClock
from tests.unit.live_session_support import PEER, USER, Driver, message


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        ({"type": "auth", "token": "t"}, p.AuthFrame(token="t")),
        (
            {"type": "sendMessage", "to": 2, "message": "hi", "clientMsgId": "c", "ref": "r"},
            p.SendMessageFrame(ref="r", to=2, message="hi", client_msg_id="c"),
        ),
        ({"type": "ackMessages", "ids": ["a"]}, p.AckMessagesFrame(ids=["a"])),
        ({"type": "markRead", "peerId": 2, "upToSeq": 3}, p.MarkReadFrame(peer_id=2, up_to_seq=3)),
        ({"type": "typing", "to": 2, "isTyping": True}, p.TypingFrame(to=2, is_typing=True)),
        ({"type": "searchUsers", "query": "bo"}, p.SearchUsersFrame(query="bo")),
        ({"type": "getOnlineUsers", "userIds": [2]}, p.GetOnlineUsersFrame(user_ids=[2])),
        ({"type": "ping"}, p.PingFrame()),
    ],
)
def test_client_frames_decode_by_their_wire_tag(frame: dict[str, object], expected: p.ClientMessage) -> None:
    assert p.decode_client(json.dumps(frame)) == expected


@pytest.mark.parametrize(
    ("text", "code", "ref"),
    [
        ("not json", WsErrorCode.BAD_REQUEST, None),
        ('{"type": "fly", "ref": "r1"}', WsErrorCode.UNKNOWN_TYPE, "r1"),
        (
            '{"type": "sendMessage", "to": 0, "message": "x", "clientMsgId": "c", "ref": "r2"}',
            WsErrorCode.BAD_REQUEST,
            "r2",
        ),
        ('{"type": "ping", "extra": 1}', WsErrorCode.BAD_REQUEST, None),
    ],
)
def test_unusable_frames_raise_with_their_code_and_readable_ref(text: str, code: WsErrorCode, ref: str | None) -> None:
    with pytest.raises(p.FrameError) as caught:
        p.decode_client(text)
    assert (caught.value.code, caught.value.ref) == (code, ref)


@pytest.mark.parametrize(
    ("frame", "client_msg_id"),
    [
        ({"type": "sendMessage", "to": "2", "message": "x", "clientMsgId": "c-1"}, "c-1"),
        ({"type": "sendMessage", "to": 2, "clientMsgId": "c-2"}, "c-2"),  # no message
        ({"type": "sendMessage", "to": "2", "message": "x", "clientMsgId": "c" * 65}, None),  # too long to echo
        ({"type": "sendMessage", "to": 2, "message": "x", "clientMsgId": 7}, None),
        ({"type": "ping", "clientMsgId": "c-3"}, None),  # not a sendMessage: an unknown field
        ({"type": "sendmessage", "clientMsgId": "c-4"}, None),  # unknown_type
    ],
)
def test_a_bad_send_message_frame_raises_with_its_client_msg_id_if_readable(
    frame: dict[str, object], client_msg_id: str | None
) -> None:
    with pytest.raises(p.FrameError) as caught:
        p.decode_client(json.dumps(frame))
    assert caught.value.client_msg_id == client_msg_id


def test_the_error_of_a_bad_or_oversized_send_message_carries_its_ref_and_client_msg_id() -> None:
    d = Driver()
    d.start()
    d.frames()
    p.feed(d.session, json.dumps({"type": "sendMessage", "to": 0, "message": "x", "clientMsgId": "c", "ref": "r"}), 0)
    big = {"type": "sendMessage", "to": PEER, "message": "x" * 2000, "clientMsgId": "big", "ref": "b"}
    p.feed_oversized(d.session, json.dumps(big), d.now)
    p.feed_oversized(d.session, "x" * 2000, d.now)
    assert [(f.ref, f.code, f.client_msg_id) for f in d.frames() if isinstance(f, ErrorReply)] == [
        ("r", WsErrorCode.BAD_REQUEST, "c"),
        ("b", WsErrorCode.TOO_LARGE, "big"),
        (None, WsErrorCode.TOO_LARGE, None),
    ]


DEEP = "[" * 1000 + "]" * 1000


@pytest.mark.parametrize(
    "text",
    [
        '{"type": "ping", "ref": "r", "x": ' + DEEP + "}",
        '{"type": "sendMessage", "ref": "r", "clientMsgId": "c", "from": ' + DEEP + "}",
        '{"type": "sendMessage", "ref": ' + DEEP + "}",
        '{"type": ' + DEEP + "}",
    ],
)
def test_json_nested_too_deeply_is_a_bad_request(text: str) -> None:
    """Not a RecursionError (a 1011 close before): nothing of such a frame is read, not even its ``ref``."""
    with pytest.raises(p.FrameError) as caught:
        p.decode_client(text)
    error = caught.value
    assert (error.code, error.ref, error.client_msg_id, error.message) == (
        WsErrorCode.BAD_REQUEST,
        None,
        None,
        "JSON nested too deeply",
    )


def test_heartbeat_s_is_an_integer_on_the_wire_and_a_whole_number_of_seconds_in_the_settings() -> None:
    text = p.ReplyEncoder(FixedClock(), Settings().heartbeat_s)(Ready(None, 1, "c"))
    assert text.endswith('"heartbeatS":20}')  # not 20.0: typed clients expect an integer
    assert type(json.loads(text)["heartbeatS"]) is int
    secret = {"CHAT_JWT_SECRET": "s" * 32}
    assert load_settings({**secret, "CHAT_HEARTBEAT_S": "5"}).heartbeat_s == 5
    with pytest.raises(SettingsError, match="CHAT_HEARTBEAT_S"):
        load_settings({**secret, "CHAT_HEARTBEAT_S": "0.5"})


def test_replies_and_events_encode_as_their_server_frames() -> None:
    clock = FixedClock()
    encode = p.ReplyEncoder(clock, heartbeat_s=20)
    m = message(1)
    ready = {"type": "ready", "ref": "r", "userId": 1, "connectionId": "c", "serverTime": "2026-01-01T12:00:00.000Z"}
    assert json.loads(encode(Ready("r", 1, "c"))) == {**ready, "heartbeatS": 20}
    assert json.loads(encode(Acked("r", m))) == {
        "type": "messageAck",
        "ref": "r",
        "clientMsgId": "c1",
        "id": "m1",
        "seq": 1,
        "to": USER,
        "timestamp": "2026-01-01T12:00:00.000Z",
    }
    received = json.loads(encode(MessageReceived(message=m)))
    assert (received["type"], received["from"], received["id"]) == ("messageReceived", PEER, "m1")
    batch = json.loads(encode(Batch(messages=[m], more=True)))
    assert (batch["type"], batch["more"], [x["id"] for x in batch["messages"]]) == ("offlineMessages", True, ["m1"])
    assert json.loads(encode(ErrorReply(None, WsErrorCode.TOO_LARGE, "big"))) == {
        "type": "error",
        "code": "too_large",
        "message": "big",
    }
    assert json.loads(encode(ErrorReply("r", WsErrorCode.RATE_LIMITED, "slow", "c-1"))) == {
        "type": "error",
        "ref": "r",
        "code": "rate_limited",
        "message": "slow",
        "clientMsgId": "c-1",
    }
    assert json.loads(encode(Pong("p"))) == {"type": "pong", "ref": "p"}
    found = json.loads(encode(UsersFound("s", "bo", [UserCard(id=2, name="Bob")])))
    assert found == {
        "type": "searchResults",
        "ref": "s",
        "query": "bo",
        "users": [{"id": 2, "name": "Bob", "online": None, "lastSeenAt": None}],
    }
    assert json.loads(encode(OnlineNow("o", [2]))) == {"type": "onlineUsers", "ref": "o", "userIds": [2]}
    assert json.loads(encode(Typing(from_id=2, is_typing=True))) == {"type": "typing", "from": 2, "isTyping": True}
    offline = json.loads(encode(UserOffline(user_id=2, last_seen_at=EPOCH + timedelta(milliseconds=5))))
    assert offline == {"type": "userOffline", "userId": 2, "lastSeenAt": "2026-01-01T12:00:00.005Z"}


def test_each_decoded_frame_is_fed_to_the_session_as_its_input() -> None:
    d = Driver()
    d.start()
    d.frames()
    p.feed(d.session, json.dumps({"type": "sendMessage", "to": PEER, "message": "hi", "clientMsgId": "c"}), d.now)
    p.feed(d.session, json.dumps({"type": "ackMessages", "ids": ["x"], "ref": "k"}), d.now)
    send, ack = d.begun()
    assert isinstance(send, PipelinedSend)
    assert (send.send.to, send.send.body, send.send.client_msg_id) == (PEER, "hi", "c")
    assert isinstance(ack, PipelinedAck)
    assert (ack.ref, ack.ack.ids) == ("k", ["x"])
    d.commit(send)
    d.commit(ack)
    d.frames()
    fed: list[tuple[dict[str, object], type[Call]]] = [
        ({"type": "markRead", "peerId": PEER, "upToSeq": 4}, MarkReadCall),
        ({"type": "typing", "to": PEER, "isTyping": False}, TypingCall),
        ({"type": "searchUsers", "query": "bo", "limit": 5}, SearchCall),
        ({"type": "getOnlineUsers"}, OnlineCall),
        ({"type": "auth", "token": "t"}, Reauthenticate),
    ]
    for frame, kind in fed:
        p.feed(d.session, json.dumps(frame), d.now)
        call = d.one(kind)
        d.session.call_failed(call, RuntimeError("stop here"), d.now)  # frees the session for the next
    p.feed(d.session, json.dumps({"type": "ping", "ref": "p"}), d.now)
    p.feed(d.session, "nope", d.now)
    kinds = d.kinds()
    assert kinds[-2:] == ["Pong", "error:None:bad_request"]
