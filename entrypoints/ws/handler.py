"""``GET /ws``: handshake checks, first-frame (or subprotocol) authentication, caps, then one
:class:`Connection` per socket. Also the process-wide sweeps (store catch-up, revoked logins,
presence) and shutdown."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, NamedTuple

from litestar import WebSocket, websocket
from litestar.handlers import WebsocketRouteHandler
from litestar.types import WebSocketResponseBodyEvent, WebSocketResponseStartEvent

from application.common import Principal
from application.live.actions import CloseCode
from application.live.revocation import RevocationSweep
from application.ports import IdGenerator
from application.presence import SettlePresence
from domain.errors import AuthenticationError, BusyError
from entrypoints.http.client import client_address, parse_networks
from entrypoints.http.errors import problem_bytes
from entrypoints.keepalive import SHUTDOWN_EXTENSION
from entrypoints.ws import protocol as p
from entrypoints.ws.connection import NO_STATUS, Connection, close_quietly, ended_by, log_close
from entrypoints.ws.services import Services

log = logging.getLogger("p2p_chat.ws")

BEARER = "bearer"
SHUTTING_DOWN = "server shutting down"


class LiveConnections:
    """This process's connections, for its cap, the catch-up and login sweeps and shutdown. (The per-user cap
    holds deployment-wide: the presence registry checks it, see :class:`Connection`.)"""

    def __init__(self) -> None:
        self._all: set[Connection] = set()

    def __len__(self) -> int:
        return len(self._all)

    def add(self, connection: Connection) -> None:
        self._all.add(connection)

    def remove(self, connection: Connection) -> None:
        self._all.discard(connection)

    def snapshot(self) -> list[Connection]:
        return list(self._all)


def bearer_subprotocol_token(socket: WebSocket[Any, Any, Any]) -> str | None:
    """The token offered as subprotocols ``bearer, <token>`` (browsers cannot set headers)."""
    offered = [s.strip() for s in socket.scope.get("subprotocols") or []]
    if BEARER not in offered:
        return None
    others = [s for s in offered if s != BEARER]
    return others[0] if others else ""


class Gone(NamedTuple):
    """The socket ended before its first frame: the code and reason it ended with (1009 for a
    frame over 1 MiB, the client's own close …)."""

    code: int
    reason: str


async def first_frame_auth(socket: WebSocket[Any, Any, Any], timeout_s: float) -> p.AuthFrame | CloseCode | Gone:
    """The first frame, an ``auth`` (its ``ref`` is echoed by ``ready``), the close code to use
    instead, or how the socket ended before it."""
    try:
        message = await asyncio.wait_for(socket.receive(), timeout=timeout_s)
    except TimeoutError:
        return CloseCode.AUTH_TIMEOUT
    if message["type"] == "websocket.disconnect":
        return Gone(message.get("code") or NO_STATUS, str(message.get("reason") or ""))
    text = message.get("text") if message["type"] == "websocket.receive" else None
    if text is None:
        return CloseCode.UNAUTHENTICATED
    try:
        frame = p.decode_client(text)
    except p.FrameError:
        return CloseCode.UNAUTHENTICATED
    return frame if isinstance(frame, p.AuthFrame) else CloseCode.UNAUTHENTICATED


async def refuse_handshake(socket: WebSocket[Any, Any, Any], detail: str) -> None:
    """Refuse the upgrade with a 403 ``forbidden`` problem, where the server can send an HTTP
    answer to a handshake (the ASGI ``websocket.http.response`` extension, as uvicorn has);
    elsewhere by closing before accepting, which servers answer with a bare 403."""
    if "websocket.http.response" not in (socket.scope.get("extensions") or {}):
        await socket.close(code=CloseCode.REVOKED, reason="origin not allowed")
        return
    body, headers = problem_bytes(403, detail)
    start: WebSocketResponseStartEvent = {"type": "websocket.http.response.start", "status": 403, "headers": headers}
    await socket.send(start)
    end: WebSocketResponseBodyEvent = {"type": "websocket.http.response.body", "body": body, "more_body": False}
    await socket.send(end)


def make_ws_handler(
    services: Services, live: LiveConnections, ids: IdGenerator, origin_allowed: Callable[[str | None], bool]
) -> WebsocketRouteHandler:
    settings = services.settings
    trusted = parse_networks(settings.trusted_proxies)

    @websocket("/ws")
    async def ws(socket: WebSocket[Any, Any, Any]) -> None:
        """Whatever escapes (a bug) closes 1011, never the framework's undocumented 4500."""
        try:
            await serve(socket)
        except Exception:
            log.exception("WebSocket handler failed")
            await close_quietly(socket, CloseCode.INTERNAL, "unexpected server error")

    async def serve(socket: WebSocket[Any, Any, Any]) -> None:
        if not origin_allowed(socket.headers.get("origin")):
            origin = socket.headers.get("origin")
            await refuse_handshake(socket, f"origin {origin!r} is not allowed (CHAT_CORS_ORIGINS)")
            return
        offered = bearer_subprotocol_token(socket)
        await socket.accept(subprotocols=BEARER if offered is not None else None)
        if offered is not None:
            auth: p.AuthFrame | CloseCode | Gone = p.AuthFrame(token=offered)
        else:
            auth = await first_frame_auth(socket, settings.auth_timeout_s)
        if isinstance(auth, Gone):
            services.metrics.socket_closed(auth.code)
            log_close(auth.code, auth.reason, by=ended_by(auth.code), client=client_address(socket, trusted))
            return
        if isinstance(auth, CloseCode):
            await refuse(socket, auth, "authentication required")
            return
        try:
            principal: Principal = await services.authenticate(auth.token)
        except AuthenticationError:
            await refuse(socket, CloseCode.UNAUTHENTICATED, "invalid, expired or revoked token")
            return
        except BusyError:  # the store is unavailable or saturated: nothing is wrong with the client
            await refuse(socket, CloseCode.TRY_AGAIN_LATER, "cannot check logins now; try again later")
            return
        if len(live) >= settings.max_connections:  # this process's cap; the user's is checked by run()
            await refuse(socket, CloseCode.TOO_MANY_CONNECTIONS, "too many connections", principal.user_id)
            return
        connection = Connection(socket, services, principal, ids.new_id())
        live.add(connection)
        listen: Any = (socket.scope.get("extensions") or {}).get(SHUTDOWN_EXTENSION)  # uvicorn's: keepalive.py
        if callable(listen):  # at server shutdown: send what is queued, then close 1001
            listen(lambda: connection.close_soon(CloseCode.GOING_AWAY, SHUTTING_DOWN))
        try:
            await connection.run(auth.ref)
        finally:
            live.remove(connection)

    async def refuse(socket: WebSocket[Any, Any, Any], code: CloseCode, reason: str, user: int | None = None) -> None:
        """Close a socket that does not become a connection, with its line and its count (the
        client's address and the user if known; never the token)."""
        await close_quietly(socket, code, reason)
        services.metrics.socket_closed(code)
        client = client_address(socket, trusted)
        log_close(code, reason, by="server", client=client, **({"refusedUser": user} if user is not None else {}))

    return ws


async def catch_up_sweep(live: LiveConnections, interval_s: float) -> None:
    """Forever, with several processes: give every connection a round that pushes what the store
    holds for it and pub/sub lost, ``interval_s`` apart. (Re-pushes of what was pushed are timed
    by each connection itself.)"""
    while True:
        await asyncio.sleep(interval_s)
        for connection in live.snapshot():
            try:
                await connection.catch_up()
            except Exception:  # one failing connection must not stop the sweep for the others
                log.exception("catching up failed for connection %s", connection.connection_id)


async def login_sweep(live: LiveConnections, sweep: RevocationSweep, interval_s: float) -> None:
    """Forever: every ``interval_s`` (``CHAT_SESSION_CHECK_S``) close the connections whose login
    was revoked, read from the store for all of this process's connections at once (a failed read
    is retried on the next tick, see :class:`RevocationSweep`)."""
    while True:
        await asyncio.sleep(interval_s)
        await sweep(live.snapshot())


async def presence_sweep(settle: SettlePresence, interval_s: float) -> None:
    """Forever: settle users whose grace period after their last connection has passed (and heal
    presence after a Redis outage). A failure is logged with its trace once, then one line per
    tick until a round succeeds (Redis down fails every tick)."""
    failing = False
    while True:
        await asyncio.sleep(interval_s)
        try:
            await settle()
        except Exception as exc:  # a failed round (database or Redis hiccup) is retried on the next tick
            if failing:
                log.debug("presence settling still failing: %s", type(exc).__name__)
            elif isinstance(exc, BusyError):  # the database is unavailable: nothing to trace
                log.warning("presence settling failed (%s); retried every %.2fs", exc.message, interval_s)
            else:
                log.exception("presence settling failed; retried every %.2fs", interval_s)
            failing = True
        else:
            failing = False
