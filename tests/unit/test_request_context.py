"""The request id and the HTTP metrics of :class:`entrypoints.http.context.RequestContext`, on a
fake ASGI app."""

from __future__ import annotations

from typing import Any

from entrypoints import logs
from entrypoints.http.context import RequestContext, incoming_request_id


def _scope(kind: str = "http", request_id: bytes | None = None, **extra: Any) -> dict[str, Any]:
    headers = [(b"x-request-id", request_id)] if request_id is not None else []
    return {"type": kind, "method": "GET", "path": "/users/7", "headers": headers, **extra}


def test_a_sane_request_id_is_kept_and_anything_else_replaced() -> None:
    assert incoming_request_id(_scope(request_id=b"abc-123.x:y/z+=")) == "abc-123.x:y/z+="  # type: ignore[arg-type]
    for insane in (b"", b"a" * 65, b"two words", b'quote"', b"\xc3\xa9", b"line\r\nbreak"):
        assert incoming_request_id(_scope(request_id=insane)) is None  # type: ignore[arg-type]


async def test_the_id_is_set_while_serving_sent_back_and_the_request_counted_by_its_template() -> None:
    seen: dict[str, Any] = {}
    sent: list[dict[str, Any]] = []
    observed: list[tuple[str, str, int, float]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen["id"] = logs.request_id.get()
        scope["path_template"] = "/users/{user_id:int}"  # as the router sets it
        await send({"type": "http.response.start", "status": 404, "headers": [(b"content-type", b"x")]})
        await send({"type": "http.response.body", "body": b""})

    async def send(message: Any) -> None:
        sent.append(message)

    wrapped = RequestContext(app, lambda *args: observed.append(args))
    await wrapped(_scope(request_id=b"from-proxy"), None, send)  # type: ignore[arg-type]

    assert seen["id"] == "from-proxy"
    assert logs.request_id.get() is None  # reset after the request
    assert sent[0]["headers"] == [(b"content-type", b"x"), (b"x-request-id", b"from-proxy")]
    [(method, route, status, seconds)] = observed
    assert (method, route, status) == ("GET", "/users/{user_id:int}", 404)
    assert seconds >= 0


async def test_an_unrouted_request_is_counted_as_unmatched_and_gets_a_made_id() -> None:
    sent: list[dict[str, Any]] = []
    observed: list[tuple[str, str, int, float]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 404, "headers": []})

    async def send(message: Any) -> None:
        sent.append(message)

    await RequestContext(app, lambda *args: observed.append(args))(_scope(request_id=b"bad id"), None, send)  # type: ignore[arg-type]

    [(name, value)] = sent[0]["headers"]
    assert name == b"x-request-id"
    assert len(value) == 16
    assert value != b"bad id"
    assert observed[0][1:3] == ("unmatched", 404)


async def test_a_websocket_handshake_gets_an_id_but_no_http_count() -> None:
    observed: list[Any] = []
    seen: list[str | None] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(logs.request_id.get())

    async def send(message: Any) -> None:
        pass

    await RequestContext(app, lambda *args: observed.append(args))(_scope("websocket"), None, send)  # type: ignore[arg-type]
    assert seen[0] is not None
    assert observed == []
