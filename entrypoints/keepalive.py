"""WebSocket keepalive for many idle connections: one timer per event loop instead of two per
connection.

uvicorn's sans-I/O WebSocket protocol arms a ``call_later`` per connection for its next ping and
another for the pong deadline, and builds each ping frame through ``websockets``. With 15,000 idle
connections and a 20 s heartbeat that is 750 separate loop wake-ups a second, and it was most of
an idle server's CPU (docs/performance.md, scenario (b)). Here the connections' deadlines sit in
slots of a wheel that one timer per loop turns; a slot's pings go out in one pass as a constant
frame (a server's empty ping is the two bytes ``89 00``). The behaviour is uvicorn's: a ping every
``ws_ping_interval``, and a connection that has not answered within ``ws_ping_timeout`` is failed
with 1011 — late by at most one slot (a tenth of the interval, at most a quarter of a second, so
that 15,000 connections' pings go out in bursts of ~190 rather than ~750).
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.frames import Frame

PING_FRAME = b"\x89\x00"  # FIN + ping opcode, unmasked, no payload


class Wheel:
    """The keepalive deadlines of one event loop's connections, in slots of ``resolution`` seconds."""

    def __init__(self, loop: asyncio.AbstractEventLoop, resolution: float):
        self._loop = loop
        self._resolution = resolution
        self._slots: dict[int, set[KeepaliveProtocol]] = {}
        self._next = 0  # the first slot not served yet
        self._timer: asyncio.TimerHandle | None = None

    def slot_of(self, when: float) -> int:
        return math.ceil(when / self._resolution)

    def add(self, protocol: KeepaliveProtocol, when: float) -> None:
        slot = self.slot_of(when)
        if protocol.slot == slot:
            return
        self.discard(protocol)
        self._slots.setdefault(slot, set()).add(protocol)
        protocol.slot = slot
        if self._timer is None:
            self._next = self.slot_of(self._loop.time())
            self._timer = self._loop.call_at(self._next * self._resolution, self.turn)

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
        now = self._loop.time()
        last = math.floor(now / self._resolution)
        while self._next <= last:
            due = self._slots.pop(self._next, None)
            self._next += 1
            for protocol in due or ():
                protocol.slot = None
                protocol.keepalive_due(now)
        self._timer = self._loop.call_at(self._next * self._resolution, self.turn) if self._slots else None


_wheels: dict[tuple[asyncio.AbstractEventLoop, float], Wheel] = {}


def _wheel(loop: asyncio.AbstractEventLoop, interval: float) -> Wheel:
    resolution = min(0.25, interval / 10)
    key = (loop, resolution)
    wheel = _wheels.get(key)
    if wheel is None:
        for other in [k for k in _wheels if k[0].is_closed()]:  # servers of finished test loops
            del _wheels[other]
        wheel = _wheels[key] = Wheel(loop, resolution)
    return wheel


class KeepaliveProtocol(WebSocketsSansIOProtocol):
    """uvicorn's sans-I/O WebSocket protocol with its keepalive timers replaced by a shared wheel."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.slot: int | None = None  # the wheel's slot this connection waits in
        self._ping_sent_at: float | None = None  # a ping not answered yet
        self._interval = self.ping_interval or 0.0  # 0: no keepalive
        self._wheel = _wheel(self.loop, self._interval) if self._interval > 0 else None

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

    def handle_pong(self, event: Frame) -> None:
        sent = self._ping_sent_at
        if sent is None or self._wheel is None or event.data:  # unsolicited, or not for our empty ping
            return
        self._ping_sent_at = None
        self.last_ping_rtt = self.loop.time() - sent
        self._wheel.add(self, sent + self._interval)
