"""Browser origins (``CHAT_CORS_ORIGINS``): CORS for HTTP, and the same rule for the WebSocket
handshake's ``Origin``.

Our own middleware rather than the framework's, for what it did not do: a refused preflight is a
403 ``forbidden`` problem (not ``text/plain``), and ``Retry-After`` and ``WWW-Authenticate`` are
exposed to browser scripts, which need them to honour 429/503 and 401.
"""

from __future__ import annotations

from collections.abc import Iterable

from litestar.enums import ScopeType
from litestar.types import ASGIApp, HTTPResponseBodyEvent, HTTPResponseStartEvent, Message, Receive, Scope, Send

from entrypoints.http.errors import problem_bytes

ALLOWED_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
EXPOSED_HEADERS = b"Retry-After, WWW-Authenticate, X-Request-ID"
PREFLIGHT_MAX_AGE_S = 600


class Origins:
    """The allowed browser origins: listed ones, ``*`` for any, or nothing configured (no CORS,
    and no check of the WebSocket ``Origin``)."""

    def __init__(self, configured: Iterable[str]) -> None:
        origins = {o.strip() for o in configured if o.strip()}
        self.any = "*" in origins
        self.listed = frozenset(origins - {"*"})

    @property
    def configured(self) -> bool:
        return self.any or bool(self.listed)

    def allows(self, origin: str | None) -> bool:
        """Whether a request from ``origin`` (None: not from a browser) may be answered."""
        return origin is None or not self.configured or self.any or origin in self.listed

    def allow_origin(self, origin: str) -> bytes:
        """The ``Access-Control-Allow-Origin`` value for an allowed ``origin``."""
        return b"*" if self.any else origin.encode()


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


class CorsMiddleware:
    """Answers preflights itself and adds the CORS headers to the answers to allowed origins."""

    def __init__(self, app: ASGIApp, origins: Origins) -> None:
        self.app, self.origins = app, origins

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        origin = _header(scope, b"origin") if scope["type"] == ScopeType.HTTP else None
        if origin is None:
            await self.app(scope, receive, send)
        elif scope.get("method") == "OPTIONS" and _header(scope, b"access-control-request-method") is not None:
            await self._preflight(scope, origin, send)
        elif self.origins.allows(origin):
            await self.app(scope, receive, self._with_cors_headers(origin, send))
        else:  # answered, but without CORS headers the browser keeps the answer from the page
            await self.app(scope, receive, send)

    def _with_cors_headers(self, origin: str, send: Send) -> Send:
        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *self._cors_headers(origin)]
            await send(message)

        return wrapped

    def _cors_headers(self, origin: str) -> list[tuple[bytes, bytes]]:
        headers = [
            (b"access-control-allow-origin", self.origins.allow_origin(origin)),
            (b"access-control-expose-headers", EXPOSED_HEADERS),
        ]
        if not self.origins.any:
            headers.append((b"vary", b"Origin"))
        return headers

    async def _preflight(self, scope: Scope, origin: str, send: Send) -> None:
        method = (_header(scope, b"access-control-request-method") or "").strip().upper()
        if not self.origins.allows(origin):
            await _send_problem(send, 403, f"origin {origin!r} is not allowed (CHAT_CORS_ORIGINS)")
            return
        if method not in ALLOWED_METHODS:
            await _send_problem(send, 403, f"method {method!r} is not allowed")
            return
        headers = [
            *self._cors_headers(origin),
            (b"access-control-allow-methods", ", ".join(ALLOWED_METHODS).encode()),
            (b"access-control-max-age", str(PREFLIGHT_MAX_AGE_S).encode()),
        ]
        if requested := _header(scope, b"access-control-request-headers"):
            headers.append((b"access-control-allow-headers", requested.encode("latin-1")))
        await _send(send, 204, headers, b"")


async def _send_problem(send: Send, status: int, detail: str) -> None:
    body, headers = problem_bytes(status, detail)
    await _send(send, status, headers, body)


async def _send(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    start: HTTPResponseStartEvent = {"type": "http.response.start", "status": status, "headers": headers}
    await send(start)
    end: HTTPResponseBodyEvent = {"type": "http.response.body", "body": body, "more_body": False}
    await send(end)
