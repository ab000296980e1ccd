"""The keepalive (entrypoints/keepalive.py) on a fake loop: the wheel serves each deadline once, in
its slot, never early and at most one slot late, with one timer; the protocol pings, re-arms on a
pong and fails a connection that does not answer with 1011, as uvicorn's own keepalive does, and
writes through a corked transport (whose own tests are in test_corked_transport.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from uvicorn.config import Config
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn.server import ServerState
from websockets.frames import Frame, Opcode
from websockets.protocol import State

from entrypoints.corked import CorkedTransport
from entrypoints.keepalive import PING_FRAME, KeepaliveProtocol, Wheel


class Seen(list[tuple[str, float]]):
    """The deadlines served: (connection, loop time)."""


class FakeLoop:
    def __init__(self) -> None:
        self.now = 100.0
        self.timers: list[tuple[float, Callable[[], None]]] = []

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Callable[[], None]) -> object:
        self.timers.append((when, callback))
        return object()

    def run_until(self, until: float) -> None:
        """Fire the timers due by ``until`` in order, moving the clock to each."""
        while self.timers and min(t[0] for t in self.timers) <= until:
            self.timers.sort(key=lambda t: t[0])
            when, callback = self.timers.pop(0)
            self.now = max(self.now, when)
            callback()
        self.now = until


class FakeConnection:
    def __init__(self, name: str, seen: list[tuple[str, float]]) -> None:
        self.slot: int | None = None
        self.name = name
        self.seen = seen

    def keepalive_due(self, now: float) -> None:
        self.seen.append((self.name, now))


def wheel_of(loop: FakeLoop, resolution: float = 0.25) -> Wheel:
    return Wheel(cast("Any", loop), resolution)


def conn(name: str, seen: list[tuple[str, float]]) -> KeepaliveProtocol:
    return cast("KeepaliveProtocol", FakeConnection(name, seen))


def test_deadlines_are_served_in_their_slot_by_one_timer() -> None:
    loop, seen = FakeLoop(), Seen()
    wheel = wheel_of(loop)
    a, b, c = conn("a", seen), conn("b", seen), conn("c", seen)
    wheel.add(a, 101.1)
    wheel.add(b, 101.2)
    wheel.add(c, 102.0)
    assert len(loop.timers) == 1  # one timer, whatever the number of connections
    loop.run_until(101.2)
    assert seen == []  # 101.1 and 101.2 round up to the slot ending at 101.25: never early
    loop.run_until(101.25)
    assert sorted(seen) == [("a", 101.25), ("b", 101.25)]
    loop.run_until(103.0)
    assert sorted(seen)[-1] == ("c", 102.0)
    assert len(seen) == 3
    assert loop.timers == []  # an empty wheel keeps no timer


def test_moving_and_discarding_a_connection() -> None:
    loop, seen = FakeLoop(), Seen()
    wheel = wheel_of(loop)
    a, b = conn("a", seen), conn("b", seen)
    wheel.add(a, 101.0)
    wheel.add(b, 101.0)
    wheel.add(a, 105.0)  # moved (a pong re-arms the next ping)
    wheel.discard(b)  # closed
    assert b.slot is None
    loop.run_until(104.9)
    assert seen == []
    loop.run_until(105.0)
    assert seen == [("a", 105.0)]


def test_a_late_turn_serves_every_slot_it_missed() -> None:
    loop, seen = FakeLoop(), Seen()
    wheel = wheel_of(loop)
    wheel.add(conn("a", seen), 100.5)
    wheel.add(conn("b", seen), 101.0)
    loop.timers.clear()  # the loop was busy: the first turn only comes at 102.0
    loop.now = 102.0
    wheel.turn()
    assert sorted(seen) == [("a", 102.0), ("b", 102.0)]


def test_a_connection_re_added_from_its_own_deadline_waits_for_a_later_slot() -> None:
    loop, seen = FakeLoop(), Seen()
    wheel = wheel_of(loop)
    a = conn("a", seen)
    fake = cast("FakeConnection", a)

    def ping_again(now: float) -> None:
        seen.append(("a", now))
        wheel.add(a, now + 1.0)

    fake.keepalive_due = ping_again  # type: ignore[method-assign]
    wheel.add(a, 100.5)
    loop.run_until(103.0)
    assert seen == [("a", 100.5), ("a", 101.5), ("a", 102.5)]


def test_a_deadline_in_a_slot_already_served_is_served_at_the_next_turn() -> None:
    loop, seen = FakeLoop(), Seen()
    wheel = wheel_of(loop)
    wheel.add(conn("keeps the timer armed", seen), 200.0)
    loop.run_until(110.0)
    wheel.add(conn("late", seen), 105.0)  # e.g. the next ping after a pong later than the interval
    loop.run_until(110.25)
    assert seen == [("late", 110.25)]


def test_one_failing_connection_does_not_stop_the_others_or_the_timer() -> None:
    loop, seen = FakeLoop(), Seen()
    wheel = wheel_of(loop)
    broken = conn("broken", seen)

    def fail(now: float) -> None:
        raise RuntimeError("boom")

    cast("FakeConnection", broken).keepalive_due = fail  # type: ignore[method-assign]
    wheel.add(broken, 101.0)
    wheel.add(conn("same slot", seen), 101.0)
    wheel.add(conn("later", seen), 102.0)
    loop.run_until(103.0)
    assert seen == [("same slot", 101.0), ("later", 102.0)]


def test_inexact_slot_sizes_serve_each_slot_in_one_turn() -> None:
    for resolution in (0.05, 0.1, 0.3):
        loop, seen = FakeLoop(), Seen()
        wheel = wheel_of(loop, resolution)
        for n in range(200):
            wheel.add(conn(str(n), seen), 100.0 + n * resolution)
        turns = 0
        while loop.timers:
            turns += 1
            assert turns <= 250, "the wheel re-armed for a slot it had not served"
            loop.timers.sort(key=lambda t: t[0])
            when, callback = loop.timers.pop(0)
            loop.now = when  # the timer fires exactly on time
            callback()
        assert sorted(int(name) for name, _ in seen) == list(range(200))


# -- the protocol ---------------------------------------------------------------------------


class FakeTransport:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True


async def _no_app(scope: Any, receive: Any, send: Any) -> None:
    raise AssertionError("not called")


def protocol(loop: FakeLoop, interval: float, timeout: float | None) -> tuple[KeepaliveProtocol, FakeTransport]:
    config = Config(_no_app, ws=KeepaliveProtocol, ws_ping_interval=interval, ws_ping_timeout=timeout)
    config.load()
    made = KeepaliveProtocol(config, ServerState(), {}, _loop=cast("Any", loop))
    made.conn.state = State.OPEN  # as after the handshake
    transport = FakeTransport()
    made.transport = cast("Any", transport)
    return made, transport


PONG = Frame(Opcode.PONG, b"")


def test_a_connection_that_answers_is_pinged_once_per_interval() -> None:
    loop = FakeLoop()
    p, transport = protocol(loop, 20.0, 20.0)
    p.start_keepalive()
    for second in (120.0, 140.0, 160.0):
        loop.run_until(second)
        assert transport.written[-1] == PING_FRAME
        loop.run_until(second + 0.5)
        p.handle_pong(PONG)
    assert transport.written == [PING_FRAME] * 3
    assert not transport.is_closing()


def test_no_pong_within_the_timeout_closes_1011() -> None:
    loop = FakeLoop()
    p, transport = protocol(loop, 20.0, 20.0)
    p.start_keepalive()
    loop.run_until(139.9)
    assert transport.written == [PING_FRAME]
    assert not transport.is_closing()  # never early
    loop.run_until(140.0)
    assert transport.closed
    close = transport.written[-1]
    assert close[0] == 0x88  # a close frame
    assert int.from_bytes(close[2:4], "big") == 1011


def test_a_pong_later_than_the_interval_gets_the_next_ping_at_once() -> None:
    loop = FakeLoop()
    p, transport = protocol(loop, 5.0, 15.0)
    p.start_keepalive()
    loop.run_until(105.0)  # ping
    loop.run_until(111.0)
    p.handle_pong(PONG)  # 6 s later: in time for the timeout, late for the interval
    loop.run_until(111.25)
    assert transport.written == [PING_FRAME, PING_FRAME]
    loop.run_until(112.0)
    p.handle_pong(PONG)  # answered in time: the next ping one interval after this one's
    loop.run_until(116.25)
    assert transport.written == [PING_FRAME] * 3
    assert not transport.is_closing()
    loop.run_until(131.25)  # this one is never answered: closed a timeout after it
    assert transport.closed


def test_unsolicited_pongs_and_closing_connections() -> None:
    loop = FakeLoop()
    p, transport = protocol(loop, 20.0, 20.0)
    p.start_keepalive()
    p.handle_pong(PONG)  # nothing was sent: ignored
    p.close_sent = True  # the app closed it
    loop.run_until(200.0)
    assert transport.written == []
    q, other = protocol(loop, 20.0, 20.0)
    q.start_keepalive()
    q.stop_keepalive()  # connection lost
    assert q.slot is None
    loop.run_until(300.0)
    assert other.written == []


# -- what the protocol takes from uvicorn --------------------------------------------------------


def test_uvicorn_still_has_what_the_keepalive_relies_on() -> None:
    """The upgrade checklist of entrypoints/keepalive.py: if uvicorn renames a hook or an attribute,
    the keepalive would silently stop; this says which one is gone."""
    hooks = (
        *("start_keepalive", "stop_keepalive", "handle_pong", "keepalive_timeout", "connection_made"),
        *("handle_connect", "shutdown", "connection_lost"),  # the orderly shutdown, the address count
    )
    missing = [name for name in hooks if not callable(getattr(WebSocketsSansIOProtocol, name, None))]
    assert missing == [], f"uvicorn's WebSocketsSansIOProtocol no longer has {missing}"
    loop = FakeLoop()
    made, _ = protocol(loop, 20.0, 20.0)
    attributes = (
        *("loop", "transport", "conn", "close_sent", "ping_interval", "ping_timeout", "last_ping_rtt"),
        "handshake_complete",
    )
    gone = [name for name in attributes if not hasattr(made, name)]
    assert gone == [], f"uvicorn's WebSocketsSansIOProtocol no longer sets {gone}"
    assert (made.ping_interval, made.ping_timeout) == (20.0, 20.0)


def test_the_protocol_writes_through_a_corked_transport() -> None:
    loop = FakeLoop()
    config = Config(_no_app, ws=KeepaliveProtocol, ws_ping_interval=20.0, ws_ping_timeout=20.0)
    config.load()
    made = KeepaliveProtocol(config, ServerState(), {}, _loop=cast("Any", loop))
    made.connection_made(cast("Any", SocketTransport()))
    written_through: Any = made.transport
    assert isinstance(written_through, CorkedTransport)
    assert made.client == ("127.0.0.1", 50000)  # the rest of the transport is the real one's


class SocketTransport(FakeTransport):
    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8000)}.get(name, default)
