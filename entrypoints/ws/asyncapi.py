"""The AsyncAPI 3.0 document of ``GET /ws``, generated from the frame types the server decodes and
encodes (:mod:`entrypoints.ws.protocol`), so the two cannot drift apart: every client frame of the
decoder's union and every :class:`~entrypoints.ws.protocol.ServerFrame` is a message, its payload
the JSON Schema msgspec derives from the type (docstrings and field descriptions included), its
example a frame built from the type. The close codes and error codes come from their enums; a
member without a meaning here stops the generation.

``docs/asyncapi.json`` is the document as generated, checked in; ``GET /schema/asyncapi.json``
serves the same bytes. After changing a frame run ``make asyncapi`` (``python -m
entrypoints.ws.asyncapi``); a test fails while the checked-in copy is stale.
"""

from __future__ import annotations

import functools
import inspect
import json
import re
import sys
from pathlib import Path
from typing import Any, NamedTuple, get_args

import msgspec

from application.errors import WsErrorCode
from application.live.actions import CloseCode
from domain.limits import ErrorWindow
from entrypoints.server import WS_MAX_FRAME_BYTES
from entrypoints.settings import Settings
from entrypoints.wire import UserPublic, WireMessage
from entrypoints.ws import protocol as p

DOCUMENT = Path(__file__).resolve().parents[2] / "docs" / "asyncapi.json"
REGENERATE = "make asyncapi  (or: python -m entrypoints.ws.asyncapi)"

_DEFAULTS = Settings()
_ERRORS = ErrorWindow()
_SCHEMAS = "#/components/schemas/"
_CHANNEL = "#/channels/ws"

Frame = p.ClientFrame | p.ServerFrame

CLIENT_FRAMES: tuple[type[p.ClientFrame], ...] = get_args(p.ClientMessage)
"""What the server decodes, in the decoder's order."""
SERVER_FRAMES: tuple[type[p.ServerFrame], ...] = tuple(p.ServerFrame.__subclasses__())
"""What the server encodes, in the order they are declared."""


class CloseCodeDoc(NamedTuple):
    code: int
    name: str
    meaning: str
    client_should: str


def _close_codes() -> list[CloseCodeDoc]:
    """Every :class:`CloseCode` with its meaning, and the two codes the WebSocket layer sends itself."""
    s = _DEFAULTS
    meanings: dict[CloseCode, tuple[str, str]] = {
        CloseCode.GOING_AWAY: (
            "the server is shutting down",
            "reconnect (elsewhere or later) and resend unacknowledged sends with the same `clientMsgId`",
        ),
        CloseCode.POLICY: (
            f"more than {_ERRORS.max_errors} `error` frames (`rate_limited` aside) within {_ERRORS.window_s:g} s",
            "not retry immediately",
        ),
        CloseCode.INTERNAL: (
            "unexpected server error, or a heartbeat ping not answered in time",
            "reconnect with back-off",
        ),
        CloseCode.TRY_AGAIN_LATER: (
            "the server cannot check the token or read the pending messages now "
            "(its database is unavailable, hung or saturated)",
            "reconnect after a few seconds, with back-off",
        ),
        CloseCode.SLOW_CONSUMER: (
            f"slow consumer: the outbound queue (`CHAT_MAX_QUEUED_FRAMES`, {s.max_queued_frames} frames) was full",
            "reconnect; nothing durable is lost",
        ),
        CloseCode.UNAUTHENTICATED: (
            "not authenticated: a first frame that is not `auth`, a bad, expired or revoked token, the token expired "
            "without a re-authentication, or another user's token on re-authentication",
            "refresh the token, reconnect",
        ),
        CloseCode.REVOKED: (
            "the login was revoked (logout, logout-all, password change, refresh-token reuse); also an `Origin` "
            "outside `CHAT_CORS_ORIGINS`, refused during the handshake (HTTP 403)",
            "log in again",
        ),
        CloseCode.AUTH_TIMEOUT: (
            f"no `auth` frame within `CHAT_AUTH_TIMEOUT_S` ({s.auth_timeout_s:g} s)",
            "reconnect and authenticate at once",
        ),
        CloseCode.RATE_LIMITED: (
            f"refused by a rate limit in every second of `CHAT_RATE_CLOSE_AFTER_S` ({s.rate_close_after_s}) "
            "consecutive seconds",
            "back off",
        ),
        CloseCode.TOO_MANY_CONNECTIONS: (
            "too many connections for this user (`CHAT_MAX_CONNECTIONS_PER_USER`) or this server "
            "(`CHAT_MAX_CONNECTIONS`)",
            "close another device",
        ),
    }
    missing = set(CloseCode) - set(meanings)
    if missing:
        raise LookupError(f"close codes without a meaning in {__name__}: {sorted(missing)}")
    codes = [CloseCodeDoc(int(c), c.name, *meanings[c]) for c in CloseCode]
    codes += [
        CloseCodeDoc(
            1009,
            "MESSAGE_TOO_BIG",
            f"a frame larger than {WS_MAX_FRAME_BYTES} bytes (closed by the WebSocket layer)",
            "fix the client",
        ),
        CloseCodeDoc(
            1012,
            "SERVICE_RESTART",
            "the server is restarting (sent by the WebSocket layer on shutdown)",
            "reconnect later and resend unacknowledged sends with the same `clientMsgId`",
        ),
    ]
    return sorted(codes)


def _error_codes() -> dict[WsErrorCode, str]:
    """Every :class:`WsErrorCode` with its meaning."""
    meanings = {
        WsErrorCode.BAD_REQUEST: "malformed JSON, a missing or unknown field, a wrong type, a rule broken (including "
        "text no database can store: NUL or lone surrogates), a binary frame",
        WsErrorCode.UNKNOWN_TYPE: "a `type` the server does not take (`userOnline`/`userOffline` only come from it)",
        WsErrorCode.TOO_LARGE: f"a frame over `CHAT_MAX_FRAME_BYTES` ({_DEFAULTS.max_frame_bytes} bytes); frames "
        f"over {WS_MAX_FRAME_BYTES} bytes close the connection with 1009",
        WsErrorCode.NOT_FOUND: "an unknown user or conversation",
        WsErrorCode.FORBIDDEN: "reserved by the contract: no frame of this version is refused with it",
        WsErrorCode.RATE_LIMITED: "over this frame's rate limit; the frame had no effect",
        WsErrorCode.INTERNAL: "a server error; with the message “the database is unavailable, retry shortly” "
        "nothing was stored: send it again",
    }
    missing = set(WsErrorCode) - set(meanings)
    if missing:
        raise LookupError(f"error codes without a meaning in {__name__}: {sorted(missing)}")
    return {code: meanings[code] for code in sorted(WsErrorCode)}


# ---- examples: frames built from the types ----------------------------------------------------

_ID = "0193a4f2-6b1c-7e3a-9d2f-5c8b1a0e4f71"
_ID2 = "0193a4f2-6b2d-7c11-8e40-2f9d3b7a1c05"
_AT = "2026-11-25T14:02:03.125Z"
_ANN = UserPublic(id=1, name="Ann", online=True, last_seen_at=None)


def _examples() -> dict[type[Frame], list[tuple[str, Frame]]]:
    """One or more named examples of every frame."""
    message = WireMessage(_ID, 7, 1, 2, "hi", "c-1", _AT, None, None)
    return {
        p.AuthFrame: [("first frame", p.AuthFrame(token="<access token>"))],  # noqa: S106 (an example, no secret)
        p.SendMessageFrame: [
            ("send", p.SendMessageFrame(ref="r1", to=2, message="hi", client_msg_id="c-1")),
        ],
        p.AckMessagesFrame: [("acknowledge", p.AckMessagesFrame(ids=[_ID, _ID2]))],
        p.MarkReadFrame: [("read up to 7", p.MarkReadFrame(peer_id=1, up_to_seq=7))],
        p.TypingFrame: [("typing", p.TypingFrame(to=2, is_typing=True))],
        p.SearchUsersFrame: [("search", p.SearchUsersFrame(ref="s", query="ann", limit=20))],
        p.GetOnlineUsersFrame: [
            ("among given users", p.GetOnlineUsersFrame(ref="o", user_ids=[2, 3])),
            ("among contacts", p.GetOnlineUsersFrame(ref="o2")),
        ],
        p.PingFrame: [("ping", p.PingFrame(ref="p"))],
        p.ReadyFrame: [
            (
                "after auth",
                p.ReadyFrame(user_id=2, connection_id=_ID2, server_time=_AT, heartbeat_s=round(_DEFAULTS.heartbeat_s)),
            )
        ],
        p.OfflineMessagesFrame: [("a batch", p.OfflineMessagesFrame(messages=[message], more=False))],
        p.MessageAckFrame: [
            ("ack", p.MessageAckFrame(ref="r1", client_msg_id="c-1", id=_ID, seq=7, to=2, timestamp=_AT)),
        ],
        p.MessageReceivedFrame: [("message", p.MessageReceivedFrame(_ID, 7, 1, 2, "hi", "c-1", _AT))],
        p.MessageDeliveredFrame: [("delivered", p.MessageDeliveredFrame(ids=[_ID], to=2, delivered_at=_AT))],
        p.MessagesReadFrame: [("read", p.MessagesReadFrame(by=2, peer_id=2, up_to_seq=7, read_at=_AT))],
        p.SearchResultsFrame: [("results", p.SearchResultsFrame(ref="s", query="ann", users=[_ANN]))],
        p.OnlineUsersFrame: [("online", p.OnlineUsersFrame(ref="o", user_ids=[2]))],
        p.PongFrame: [("pong", p.PongFrame(ref="p"))],
        p.UserOnlineFrame: [("online", p.UserOnlineFrame(user_id=1))],
        p.UserOfflineFrame: [("offline", p.UserOfflineFrame(user_id=1, last_seen_at=_AT))],
        p.PeerTypingFrame: [("typing", p.PeerTypingFrame(from_=1, is_typing=True))],
        p.ErrorFrame: [
            (
                "refused send",
                p.ErrorFrame(ref="r1", code=WsErrorCode.NOT_FOUND, message="to: no such user"),
            ),
            (
                "rate limited",
                p.ErrorFrame(code=WsErrorCode.RATE_LIMITED, message="too many typing frames; slow down"),
            ),
        ],
    }


def _payload(frame: Frame) -> Any:
    """The frame as JSON values; a client frame without its unset optional fields."""
    values = msgspec.to_builtins(frame)
    if isinstance(frame, p.ClientFrame):
        values = {k: v for k, v in values.items() if v is not None}
    return values


# ---- the document ---------------------------------------------------------------------------

# The direct answers to a client frame (besides `error`, which any of them may get).
_REPLIES: dict[type[p.ClientFrame], tuple[type[p.ServerFrame], ...]] = {
    p.AuthFrame: (p.ReadyFrame,),
    p.SendMessageFrame: (p.MessageAckFrame,),
    p.SearchUsersFrame: (p.SearchResultsFrame,),
    p.GetOnlineUsersFrame: (p.OnlineUsersFrame,),
    p.PingFrame: (p.PongFrame,),
}


def message_key(frame: type[Frame]) -> str:
    """``SendMessageFrame`` → ``sendMessage`` (the wire ``type``, but for ``peerTyping``)."""
    name = frame.__name__.removesuffix("Frame")
    return name[0].lower() + name[1:]


def frame_type(frame: type[Frame]) -> str:
    tag = frame.__struct_config__.tag
    if not isinstance(tag, str):
        raise TypeError(f"{frame.__name__} has no string tag")
    return tag


def _markdown(text: str) -> str:
    """A docstring as CommonMark: dedented, soft line breaks joined, ``code`` as `code`."""
    paragraphs = inspect.cleandoc(text).split("\n\n")
    joined = "\n\n".join(" ".join(line.strip() for line in para.splitlines()) for para in paragraphs)
    return re.sub(r"``(.+?)``", r"`\1`", joined)


def _tidy(node: Any) -> Any:
    """Every ``description`` in a schema as CommonMark (see :func:`_markdown`)."""
    if isinstance(node, dict):
        return {k: _markdown(v) if k == "description" and isinstance(v, str) else _tidy(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_tidy(v) for v in node]
    return node


def _summary(frame: type[Frame]) -> str:
    """The first sentence of the frame's docstring."""
    text = _markdown(frame.__doc__ or "")
    if not text:
        raise LookupError(f"{frame.__name__} has no docstring")
    return text.split(". ", 1)[0].removesuffix(".") + "."


def _schemas(error_codes: dict[WsErrorCode, str]) -> dict[str, Any]:
    _, generated = msgspec.json.schema_components((*CLIENT_FRAMES, *SERVER_FRAMES), ref_template=_SCHEMAS + "{name}")
    components: dict[str, Any] = {name: _tidy(generated[name]) for name in sorted(generated)}
    error_code = components["WsErrorCode"]
    error_code["description"] = "The `code` of an `error` frame:\n\n" + "\n".join(
        f"- `{code}`: {meaning}" for code, meaning in error_codes.items()
    )
    error_code["enum"] = list(error_codes)
    error_code["x-enum-descriptions"] = list(error_codes.values())
    return components


def _message(frame: type[Frame], examples: list[tuple[str, Frame]], direction: str) -> dict[str, Any]:
    tag = frame_type(frame)
    return {
        "name": message_key(frame),
        "title": f"{tag} ({direction})",
        "summary": _summary(frame),
        "contentType": "application/json",
        "payload": {"$ref": _SCHEMAS + frame.__name__},
        "examples": [{"name": name, "payload": _payload(example)} for name, example in examples],
    }


def _ref(frame: type[Frame]) -> dict[str, str]:
    return {"$ref": f"{_CHANNEL}/messages/{message_key(frame)}"}


def _operations() -> dict[str, Any]:
    operations: dict[str, Any] = {}
    for client in CLIENT_FRAMES:
        replies: tuple[type[Frame], ...] = (*_REPLIES.get(client, ()), p.ErrorFrame)
        operations[message_key(client)] = {
            "action": "send",
            "channel": {"$ref": _CHANNEL},
            "summary": _summary(client),
            "description": _markdown(client.__doc__ or ""),
            "messages": [_ref(client)],
            "reply": {"channel": {"$ref": _CHANNEL}, "messages": [_ref(r) for r in replies]},
        }
    for server in SERVER_FRAMES:
        key = message_key(server)
        operations["receive" + key[0].upper() + key[1:]] = {
            "action": "receive",
            "channel": {"$ref": _CHANNEL},
            "summary": _summary(server),
            "description": _markdown(server.__doc__ or ""),
            "messages": [_ref(server)],
        }
    return operations


def _close_code_table(codes: list[CloseCodeDoc]) -> str:
    rows = "\n".join(f"| {c.code} | {c.meaning} | {c.client_should} |" for c in codes)
    return "| code | meaning | the client should |\n|---|---|---|\n" + rows


_SESSION = f"""\
Text frames, one JSON object each, discriminated by `type`. Any client frame may carry `ref` (a string of \
at most 64 characters); every direct reply echoes it, or omits it when the frame had none. Unknown fields are \
`bad_request`, except `from` in `sendMessage` (ignored). Binary frames get `error bad_request`.

1. Connect with no query string. Either offer the access token as the subprotocols `bearer, <access token>` \
(the server selects `bearer`; no `auth` frame), or send `auth` as the first frame within \
`CHAT_AUTH_TIMEOUT_S` ({_DEFAULTS.auth_timeout_s:g} s).
2. The server answers `ready`, then exactly one `offlineMessages`; acknowledge messages with `ackMessages`.
3. Before the token expires send `auth` again with a fresh token of the same user.
4. The server sends WebSocket pings every `heartbeatS` seconds; standard clients answer them by themselves.

The full rules (limits, ordering, delivery guarantees) are in `docs/protocol.md`."""


def build() -> dict[str, Any]:
    """The AsyncAPI 3.0 document of ``GET /ws`` (plain JSON values)."""
    error_codes, close_codes, examples = _error_codes(), _close_codes(), _examples()
    if missing := {f.__name__ for f in (*CLIENT_FRAMES, *SERVER_FRAMES)} - {f.__name__ for f in examples}:
        raise LookupError(f"frames without an example in {__name__}: {sorted(missing)}")
    messages = {message_key(f): _message(f, examples[f], "client → server") for f in CLIENT_FRAMES}
    messages |= {message_key(f): _message(f, examples[f], "server → client") for f in SERVER_FRAMES}
    security = [
        {"$ref": "#/components/securitySchemes/bearerSubprotocol"},
        {"$ref": "#/components/securitySchemes/authFrame"},
    ]
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "p2p-chat WebSocket",
            "version": "1",
            "description": f"The realtime side of p2p-chat: `GET /ws`.\n\n{_SESSION}",
        },
        "defaultContentType": "application/json",
        "servers": {
            "local": {
                "host": f"{_DEFAULTS.host}:{_DEFAULTS.port}",
                "protocol": "ws",
                "description": "`make run` (`CHAT_HOST`:`CHAT_PORT`).",
                "security": security,
            },
            "tls": {
                "host": "{host}",
                "protocol": "wss",
                "description": "Behind a proxy that terminates TLS.",
                "variables": {"host": {"description": "The deployment's host name (and port)."}},
                "security": security,
            },
        },
        "channels": {
            "ws": {
                "address": "/ws",
                "title": "The chat socket",
                "description": "Every frame of the protocol, both ways. How the server closes the socket "
                f"(also in `x-close-codes`):\n\n{_close_code_table(close_codes)}",
                "messages": messages,
                "bindings": {
                    "ws": {
                        "method": "GET",
                        "headers": {
                            "type": "object",
                            "properties": {
                                "Sec-WebSocket-Protocol": {
                                    "type": "string",
                                    "description": "`bearer, <access token>` to authenticate without an `auth` frame "
                                    "(browsers cannot set an `Authorization` header).",
                                },
                                "Origin": {
                                    "type": "string",
                                    "description": "With `CHAT_CORS_ORIGINS` set, a handshake from another origin is "
                                    "refused (HTTP 403).",
                                },
                            },
                        },
                        "bindingVersion": "0.1.0",
                    }
                },
                "x-close-codes": [
                    {"code": c.code, "name": c.name, "meaning": c.meaning, "clientShould": c.client_should}
                    for c in close_codes
                ],
            }
        },
        "operations": _operations(),
        "components": {
            "schemas": _schemas(error_codes),
            "securitySchemes": {
                "bearerSubprotocol": {
                    "type": "httpApiKey",
                    "name": "Sec-WebSocket-Protocol",
                    "in": "header",
                    "description": "Offer the subprotocols `bearer, <access token>` (an access token from "
                    "`POST /auth/login`); the server selects `bearer` and no `auth` frame is needed.",
                },
                "authFrame": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "Not a header: the access token (`POST /auth/login`) sent in the first frame, "
                    f'`{{"type": "auth", "token": "<access token>"}}`, within `CHAT_AUTH_TIMEOUT_S` '
                    f"({_DEFAULTS.auth_timeout_s:g} s).",
                },
            },
        },
    }


@functools.cache
def document_bytes() -> bytes:
    """The document as ``docs/asyncapi.json`` holds it: indented, keys in build order, a final newline."""
    return (json.dumps(build(), indent=2, ensure_ascii=False) + "\n").encode()


def main(argv: list[str] | None = None) -> int:
    """Write the document to ``docs/asyncapi.json`` (or the path given)."""
    args = sys.argv[1:] if argv is None else argv
    target = Path(args[0]) if args else DOCUMENT
    target.write_bytes(document_bytes())
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
