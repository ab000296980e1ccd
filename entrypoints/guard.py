"""Slow and greedy HTTP clients: a deadline for reading each request, a cap on connections per
client address (issue 15, finding 7).

uvicorn times out only an idle keep-alive connection: a client that connects and sends nothing,
or half a request line, or headers a byte a minute, or a body that never ends, holds its socket
(and a file descriptor) for ever — 1,100 of them from one address made ``/health`` fail on the
usual limit of 1,024 open files. Below the ASGI app (which sees a request only once its headers
are complete) :class:`GuardedHttpProtocol`, uvicorn's httptools protocol, adds:

* **a request deadline** (``CHAT_REQUEST_TIMEOUT_S``): armed when the connection is made and when
  a request's first byte arrives, cleared once the whole request (headers and body) is read or
  the connection becomes a WebSocket (whose own deadlines are ``CHAT_AUTH_TIMEOUT_S`` and the
  heartbeat). When it passes, the client gets 408 ``request_timeout`` (a problem) if no answer
  was started, and the connection is closed.
* **a cap per client address** (``CHAT_MAX_CONNECTIONS_PER_ADDRESS``) on the open connections,
  HTTP and WebSocket alike. A connection over the cap is answered at once, before its request is
  read, with 429 ``rate_limited`` (``Retry-After: 1``, ``Connection: close``) and closed, so it
  holds its descriptor for no time. Behind a proxy of ``CHAT_TRUSTED_PROXIES`` the peer is the
  proxy: its connections count for the forwarded address of their current request, checked when
  the request's headers are complete (the same 429, then the connection is closed).

Upgrade checklist (uvicorn): this subclasses ``uvicorn.protocols.http.httptools_impl.
HttpToolsProtocol`` and relies on its ``connection_made`` / ``connection_lost``, the parser
callbacks ``on_message_begin``, ``on_headers_complete`` (which reads ``self.app`` to start the
request), ``on_message_complete``, on ``handle_websocket_upgrade`` (which hands the transport to
the WebSocket protocol with ``transport.set_protocol``) and on the attributes ``client``,
``headers``, ``cycle`` (``response_started``, ``disconnected``) and ``transport``.
``tests/integration/test_slow_clients.py`` must stay green.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import weakref
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from entrypoints.http.client import Network, forwarded_address, is_trusted, parse_networks
from entrypoints.http.errors import problem_bytes

if TYPE_CHECKING:
    from uvicorn.config import Config
    from uvicorn.server import ServerState

    from entrypoints.settings import Settings


class Lease:
    """One connection's place in its address's count; released once, whoever holds it then."""

    __slots__ = ("_addresses", "address")

    def __init__(self, addresses: AddressCount, address: str):
        self._addresses, self.address = addresses, address

    def release(self) -> None:
        if self.address:
            self._addresses.drop(self.address)
            self.address = ""


class AddressCount:
    """The open connections of one server (one uvicorn ``ServerState``) per client address."""

    def __init__(self, cap: int):
        self.cap = cap
        self._open: Counter[str] = Counter()

    def take(self, address: str) -> Lease | None:
        """A place for a connection from ``address``, or None when it has ``cap`` already."""
        if self._open[address] >= self.cap:
            return None
        self._open[address] += 1
        return Lease(self, address)

    def move(self, lease: Lease, address: str) -> bool:
        """Count ``lease``'s connection for ``address`` now (a proxy's next request); False (and
        released) when ``address`` has no room."""
        if lease.address == address:
            return True
        lease.release()
        if self._open[address] >= self.cap:
            return False
        self._open[address] += 1
        lease.address = address
        return True

    def drop(self, address: str) -> None:
        self._open[address] -= 1
        if self._open[address] <= 0:
            del self._open[address]

    def __getitem__(self, address: str) -> int:
        return self._open[address]


LINGER_S = 1.0  # a refused connection's longest wait for the client to close its side

log = logging.getLogger("p2p_chat.http")


def _log_refused(status: int, address: str) -> None:
    """One line per refused connection or request: the status and the client address only."""
    level, what = (logging.WARNING, "too many connections") if status == 429 else (logging.INFO, "request timed out")
    log.log(level, "refused a connection: %d %s", status, what, extra={"ctx": {"status": status, "client": address}})


_counts: weakref.WeakKeyDictionary[ServerState, AddressCount] = weakref.WeakKeyDictionary()


def _response(status: int, detail: str, extra: list[tuple[bytes, bytes]]) -> bytes:
    """A whole HTTP/1.1 problem response that closes the connection."""
    body, headers = problem_bytes(status, detail)
    reason = {408: b"Request Timeout", 429: b"Too Many Requests"}[status]
    lines = [b"HTTP/1.1 %d %s" % (status, reason)]
    lines += [name + b": " + value for name, value in [*headers, *extra, (b"connection", b"close")]]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


TOO_MANY_DETAIL = "too many connections from this address"
TOO_MANY_HEADERS = [(b"retry-after", b"1")]
TIMED_OUT = _response(408, "the request was not received in time", [])
TOO_MANY = _response(429, TOO_MANY_DETAIL, TOO_MANY_HEADERS)


async def _refused(scope: Any, receive: Any, send: Any) -> None:
    """The app a request over its address's cap is given instead of the real one."""
    body, headers = problem_bytes(429, TOO_MANY_DETAIL)
    start = {"type": "http.response.start", "status": 429, "headers": [*headers, *TOO_MANY_HEADERS]}
    await send(start)
    await send({"type": "http.response.body", "body": body})


@dataclass(frozen=True)
class Limits:
    """The configured limits (``CHAT_REQUEST_TIMEOUT_S``, ``CHAT_MAX_CONNECTIONS_PER_ADDRESS``,
    ``CHAT_TRUSTED_PROXIES``)."""

    request_timeout_s: float
    max_per_address: int
    trusted: tuple[Network, ...]


class GuardedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools HTTP protocol with a request deadline and a cap per client address;
    :func:`guarded_http` binds it to a configuration."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        *,
        limits: Limits,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.request_timeout_s, self.trusted = limits.request_timeout_s, limits.trusted
        self._real_app = self.app
        self._deadline: asyncio.TimerHandle | None = None
        self._lease: Lease | None = None
        self._proxied = False  # the peer is a trusted proxy: count the forwarded address
        self._refused = False  # answered 408 or 429: what comes is dropped until the close
        count = _counts.get(server_state)
        if count is None:
            count = _counts[server_state] = AddressCount(limits.max_per_address)
        self._count = count

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        peer = self.client[0] if self.client else "unknown"
        self._proxied = is_trusted(peer, self.trusted)
        if not self._proxied:
            self._lease = self._count.take(peer)
            if self._lease is None:
                _log_refused(429, peer)
                self._refuse(TOO_MANY)
                return
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self._lease is not None:
            self._lease.release()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()

    def on_headers_complete(self) -> None:
        self.app = self._real_app
        if self._proxied and not self._admit_forwarded():
            self.app = _refused
            self._disarm()
        super().on_headers_complete()
        if self.app is _refused and self.cycle is not None:
            self.cycle.keep_alive = False
        if self._proxied and self._lease is not None:
            # The request's client is the forwarded address: uvicorn's access log names it (the
            # app's client_address() gives the same answer for an untrusted peer).
            self.scope["client"] = (self._lease.address, 0)

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def handle_websocket_upgrade(self) -> None:
        """Upgrade (the WebSocket protocol then holds the connection's place in its count), or
        refuse when the forwarded address is over its cap."""
        self._disarm()
        if self.app is _refused:
            self._refuse(TOO_MANY)
            return
        lease, self._lease = self._lease, None
        super().handle_websocket_upgrade()
        successor = self.transport.get_protocol()
        if lease is not None:
            if hasattr(successor, "lease"):
                successor.lease = lease
            else:  # pragma: no cover - uvicorn_options always serves WebSockets with KeepaliveProtocol
                lease.release()

    def _admit_forwarded(self) -> bool:
        forwarded = ",".join(value.decode("latin-1") for name, value in self.headers if name == b"x-forwarded-for")
        address = forwarded_address(self.client[0] if self.client else "unknown", forwarded, self.trusted)
        if self._lease is None:
            self._lease = self._count.take(address)
            admitted = self._lease is not None
        else:
            admitted = self._count.move(self._lease, address)
        if not admitted:
            _log_refused(429, address)
        return admitted

    def _arm(self) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(self.request_timeout_s, self._timed_out)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _timed_out(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        cycle: RequestResponseCycle | None = self.cycle  # None before the first request
        if cycle is None or cycle.response_complete or not cycle.response_started:
            if cycle is not None:  # the app (waiting for the body) is told the client left
                cycle.disconnected = True
                cycle.message_event.set()
            _log_refused(408, self.client[0] if self.client else "unknown")
            self._refuse(TIMED_OUT)
        else:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        if not self._refused:
            super().data_received(data)

    def _refuse(self, response: bytes) -> None:
        """Answer ``response`` and close in the lingering way: the write side at once, the
        connection when the client closes its side, or after :data:`LINGER_S`. What the client
        still sends is read and dropped; closing with it unread would reset the connection, and
        the client would lose the answer."""
        self._disarm()
        self._refused = True
        self.transport.write(response)
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self._deadline = self.loop.call_later(LINGER_S, self.transport.close)


def guarded_http(settings: Settings) -> Callable[..., GuardedHttpProtocol]:
    """What uvicorn makes each connection's HTTP protocol with, for ``settings``: a partial (not a
    class made here) so that it pickles by reference into the worker processes of
    ``CHAT_WORKERS``."""
    limits = Limits(
        request_timeout_s=settings.request_timeout_s,
        max_per_address=settings.max_connections_per_address,
        trusted=parse_networks(settings.trusted_proxies),
    )
    return functools.partial(GuardedHttpProtocol, limits=limits)
