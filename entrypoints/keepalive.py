"""WebSocket keepalive for many idle connections: one timer per server instead of two per
connection.

uvicorn's sans-I/O WebSocket protocol arms a ``call_later`` per connection for its next ping and
another for the pong deadline, and builds each ping frame through ``websockets``. With 15,000 idle
connections and a 20 s heartbeat that is 750 separate loop wake-ups a second, and it was most of
an idle server's CPU (docs/performance.md, scenario (b)). Here the connections' deadlines sit in
slots of a wheel that one timer per server (per uvicorn ``ServerState``, so per event loop) turns;
a slot's pings go out in one pass as a constant frame (a server's empty ping is the two bytes
``89 00``). The behaviour is uvicorn's: a ping every ``ws_ping_interval`` after the last one, at
once if a late pong comes after that time, and a connection that has not answered within
``ws_ping_timeout`` is failed with 1011 — each late by at most one slot (a tenth of the interval,
at most a quarter of a second, so that 15,000 connections' pings go out in bursts of ~190 rather
than ~750).

The same protocol writes through a :class:`entrypoints.corked.CorkedTransport`: a connection's
frames of one turn of the loop leave in one system call.

It also lets a server shutdown close a connection in order (issue 15, finding 11): uvicorn's
protocol answers ``shutdown()`` (SIGTERM) by writing a 1012 close at once, under the frames the
app still had to send — the ``messageAck`` of sends already committed among them. The protocol
offers the app the ASGI scope extension :data:`SHUTDOWN_EXTENSION`, a function to register a
callback; on shutdown a connection that registered one is asked through it to close (the app
sends what it queued, then 1001), and only if it has not closed within
:data:`SHUTDOWN_GRACE_S` does uvicorn's own shutdown follow.

Upgrade checklist (uvicorn, ``websockets``). This subclasses a class of uvicorn's that is not
documented as public, ``uvicorn.protocols.websockets.websockets_sansio_impl.WebSocketsSansIOProtocol``,
and relies on:

* its constructor ``(config, server_state, app_state, _loop)`` and the attributes it sets:
  ``loop``, ``transport``, ``conn`` (the ``websockets`` ``ServerProtocol``), ``close_sent``,
  ``ping_interval``, ``ping_timeout`` (from ``ws_ping_interval`` / ``ws_ping_timeout``) and
  ``last_ping_rtt``;
* its keepalive hooks, replaced or called here: ``start_keepalive`` (called once the handshake is
  accepted), ``stop_keepalive`` (called when the connection is lost or shut down),
  ``handle_pong`` (called for every pong frame, given the ``websockets`` ``Frame``) and
  ``keepalive_timeout`` (fails the connection with 1011 and closes it);
* ``connection_made(transport)``, which keeps the transport as ``self.transport``;
* ``handle_connect(event)``, which sets ``self.scope`` (with an ``extensions`` dict) before the
  app's task runs, and ``shutdown()``, ``handshake_complete`` and ``connection_lost``;
* one ``ServerState`` per uvicorn server, shared by its connections (the wheel's key).

It also replaces ``handle_parser_exception`` (called from ``data_received`` when ``websockets``
fails the connection: 1009 over ``ws_max_size``, 1007 bad UTF-8) to close without a reset (read
on, dropping data, until the client's EOF), relying on ``queue``, ``close_sent``, ``close_timer``,
``read_paused`` and ``conn.close_sent``; ``tests/integration/test_hostile_input.py`` checks it.

If one of these is renamed or no longer called, the keepalive silently stops (no pings, or pings
and no 1011). ``tests/unit/test_keepalive_wheel.py`` (the hooks exist; the wheel and the protocol on
a fake loop: pings, re-arming, late pongs, 1011 on a missed pong, never early) and
``tests/integration/test_ws_heartbeat.py`` (over real sockets: a silent client is closed 1011, not
before two heartbeats; an answering one is pinged again and again and stays) must stay green.
"""

from __future__ import annotations

import asyncio
import logging
import math
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from entrypoints.corked import CorkedTransport

if TYPE_CHECKING:
    from uvicorn.config import Config
    from uvicorn.server import ServerState
    from websockets.frames import Frame
    from websockets.http11 import Request

    from entrypoints.guard import Lease

LINGER_S = 5.0  # after a 1009/1007: how long the rest of a refused frame is read and dropped
PING_FRAME = b"\x89\x00"  # FIN + ping opcode, unmasked, no payload
SHUTDOWN_EXTENSION = "p2p-chat.shutdown"  # scope["extensions"][...]: register(callback) for shutdown
SHUTDOWN_GRACE_S = 9.0  # for the app to close after a shutdown request; within uvicorn's 10 s

log = logging.getLogger(__name__)


class Wheel:
    """The keepalive deadlines of one server's connections, in slots of ``resolution`` seconds,
    served by one timer that is armed while any connection waits."""

    def __init__(self, loop: asyncio.AbstractEventLoop, resolution: float):
        self._loop = loop
        self._resolution = resolution
        self._slots: dict[int, set[KeepaliveProtocol]] = {}
        self._next = 0  # the first slot not served yet
        self._timer: asyncio.TimerHandle | None = None

    def slot_of(self, when: float) -> int:
        return math.ceil(when / self._resolution)

    def add(self, protocol: KeepaliveProtocol, when: float) -> None:
        """Serve ``protocol`` at ``when`` (in the slot after it), or at the next turn if that slot
        has already been served."""
        if self._timer is None:
            self._next = self.slot_of(self._loop.time())
            self._timer = self._loop.call_at(self._next * self._resolution, self.turn)
        slot = max(self.slot_of(when), self._next)
        if protocol.slot == slot:
            return
        self.discard(protocol)
        self._slots.setdefault(slot, set()).add(protocol)
        protocol.slot = slot

    def discard(self, protocol: KeepaliveProtocol) -> None:
        if protocol.slot is None:
            return
        slot = self._slots.get(protocol.slot)
        if slot is not None:
            slot.discard(protocol)
            if not slot:
                del self._slots[protocol.slot]
        protocol.slot = None

    def turn(self) -> None:
        """The timer's callback: serve every slot due by now — at least the one the timer was
        armed for, whatever the float arithmetic of ``now / resolution`` says."""
        now = self._loop.time()
        last = max(math.floor(now / self._resolution), self._next)
        try:
            while self._next <= last:
                due = self._slots.pop(self._next, None)
                self._next += 1
                for protocol in due or ():
                    protocol.slot = None
                    try:
                        protocol.keepalive_due(now)
                    except Exception:  # one connection's failure must not stop the others' keepalive
                        log.exception("keepalive of a WebSocket connection failed")
        finally:
            self._timer = self._loop.call_at(self._next * self._resolution, self.turn) if self._slots else None


_wheels: weakref.WeakKeyDictionary[ServerState, Wheel] = weakref.WeakKeyDictionary()


class KeepaliveProtocol(WebSocketsSansIOProtocol):
    """uvicorn's sans-I/O WebSocket protocol with its keepalive timers replaced by a shared wheel."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.slot: int | None = None  # the wheel's slot this connection waits in
        self.lease: Lease | None = None  # its place in its client address's count (entrypoints/guard.py)
        self._on_shutdown: Callable[[], None] | None = None  # the app's, by SHUTDOWN_EXTENSION
        self._shutdown_timer: asyncio.TimerHandle | None = None
        self._ping_sent_at: float | None = None  # a ping not answered yet
        self._interval = self.ping_interval or 0.0  # 0: no keepalive
        self._wheel: Wheel | None = None
        self.lingering = False  # closed by the protocol layer: reading only to drop what comes
        if self._interval > 0:
            wheel = _wheels.get(server_state)
            if wheel is None:  # a server's protocols all run on its loop, with its one interval
                wheel = _wheels[server_state] = Wheel(self.loop, min(0.25, self._interval / 10))
            self._wheel = wheel

    def connection_made(self, transport: Any) -> None:
        super().connection_made(cast("asyncio.Transport", CorkedTransport(transport, self.loop)))

    def connection_lost(self, exc: Exception | None) -> None:
        if self.lease is not None:
            self.lease.release()
        if self._shutdown_timer is not None:
            self._shutdown_timer.cancel()
        super().connection_lost(exc)

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)  # set once the handshake is passed to the app
        if scope is not None:
            scope["extensions"][SHUTDOWN_EXTENSION] = self._listen_for_shutdown

    def _listen_for_shutdown(self, callback: Callable[[], None]) -> None:
        self._on_shutdown = callback

    def shutdown(self) -> None:
        """The server stops: ask the app to close (it flushes, then closes 1001), or, when it
        registered no callback or does not close in time, uvicorn's immediate 1012."""
        callback, self._on_shutdown = self._on_shutdown, None
        if callback is None or self.close_sent or not self.handshake_complete:
            super().shutdown()
            return
        callback()
        self._shutdown_timer = self.loop.call_later(SHUTDOWN_GRACE_S, self._shutdown_now)

    def _shutdown_now(self) -> None:
        self._shutdown_timer = None
        if not self.transport.is_closing():
            super().shutdown()

    def start_keepalive(self) -> None:
        if self._wheel is not None:
            self._wheel.add(self, self.loop.time() + self._interval)

    def stop_keepalive(self) -> None:
        super().stop_keepalive()  # uvicorn's own timers are never armed; this keeps its bookkeeping
        if self._wheel is not None:
            self._wheel.discard(self)
        self._ping_sent_at = None

    def keepalive_due(self, now: float) -> None:
        """The wheel reached this connection's deadline: ping it, or fail it for a missed pong."""
        if self._wheel is None or self.close_sent or self.transport.is_closing():
            return
        if self._ping_sent_at is not None:
            self._ping_sent_at = None
            self.keepalive_timeout()
            return
        self.transport.write(PING_FRAME)
        if self.ping_timeout is None:
            self._wheel.add(self, now + self._interval)
        else:
            self._ping_sent_at = now
            self._wheel.add(self, now + self.ping_timeout)

    # -- a close the protocol layer decides (1009 frame too large, 1007 bad UTF-8) ----------------

    def handle_parser_exception(self) -> None:
        """uvicorn's, but the socket is not closed at once: the rest of the refused frame may still
        be arriving (a 4 MiB frame is refused at its header), and closing a socket with unread data
        makes the kernel answer it with a reset, which can destroy the close frame before the
        client reads it (a 1006 instead of the documented 1009, issue 15 finding 8). Instead: the
        close frame, then our end of the stream, then everything that comes is read and dropped
        until the client closes its end, or ``LINGER_S`` at most."""
        sent = self.conn.close_sent  # set by the failure that called this
        code, reason = (sent.code, sent.reason) if sent is not None else (1011, "")
        self.queue.put_nowait({"type": "websocket.disconnect", "code": code, "reason": reason})
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.close_sent = self.lingering = True
        if self.close_timer is None:
            self.close_timer = self.loop.call_later(LINGER_S, self.transport.close)
        if self.transport.can_write_eof():
            self.transport.write_eof()
        if self.read_paused:
            self.read_paused = False
            self.transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        if self.lingering:  # the rest of a refused frame, or whatever follows: dropped unread
            return
        super().data_received(data)

    def handle_pong(self, event: Frame) -> None:
        sent = self._ping_sent_at
        if sent is None or self._wheel is None or event.data:  # unsolicited, or not for our empty ping
            return
        self._ping_sent_at = None
        self.last_ping_rtt = self.loop.time() - sent
        # The next ping one interval after this one; at once if that time has passed (a pong that
        # came later than an interval, when the timeout is longer than the interval).
        self._wheel.add(self, sent + self._interval)
