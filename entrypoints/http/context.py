"""The outermost layer of the app, for every HTTP request and WebSocket handshake: a request id and
the HTTP metrics.

The request id is the client's (or proxy's) ``X-Request-ID`` when it is a sane short token
(:data:`SANE_REQUEST_ID`), else one made here. It is set as :data:`entrypoints.logs.request_id`
for everything logged while the request is served (uvicorn's access line included), sent back as
the ``X-Request-ID`` response header, and written as ``requestId`` into problem documents
(:meth:`entrypoints.http.schemas.Problem.of`).

Each HTTP request is counted and timed by its route template (``/users/{user_id:int}``, never the
raw path: the number of series stays bounded; ``unmatched`` for a path no route serves) and status.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable
from typing import Any

from litestar.types import ASGIApp, Message, Receive, Scope, Send

from entrypoints.logs import connection_id, request_id, request_user, user_id

HEADER = b"x-request-id"
SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:+=/-]{1,64}")
UNMATCHED = "unmatched"

ObserveRequest = Callable[[str, str, int, float], None]  # method, route template, status, seconds


def incoming_request_id(scope: Scope) -> str | None:
    """The request's own ``X-Request-ID``, if it is a sane short token."""
    for name, value in scope.get("headers", ()):
        if name == HEADER:
            text = value.decode("latin-1")
            return text if SANE_REQUEST_ID.fullmatch(text) else None
    return None


def new_request_id() -> str:
    return secrets.token_hex(8)


class RequestContext:
    """Wraps the app's ASGI handler (see :func:`install`)."""

    def __init__(self, app: ASGIApp, observe: ObserveRequest) -> None:
        self.app, self.observe = app, observe

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind: str = scope["type"]
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        rid = incoming_request_id(scope) or new_request_id()
        tokens = (request_id.set(rid), user_id.set(None), connection_id.set(None), request_user.set([]))
        status = 500  # what the client sees when no answer was started (uvicorn answers 500)
        header = (HEADER, rid.encode())

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] in ("http.response.start", "websocket.http.response.start"):
                start: Any = message
                status = start["status"]
                start = {**start, "headers": [*start.get("headers", ()), header]}
                await send(start)
                return
            await send(message)

        started = time.perf_counter()
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            for var, token in zip((request_id, user_id, connection_id, request_user), tokens, strict=True):
                var.reset(token)  # type: ignore[attr-defined]
            if kind == "http":
                route: Any = scope.get("path_template") or UNMATCHED
                method: str = scope["method"]  # type: ignore[typeddict-item]
                self.observe(method, route, status, time.perf_counter() - started)
