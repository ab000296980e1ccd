"""The keepalive wheel (entrypoints/keepalive.py) on a fake loop: each connection's deadline is
served once, in its slot, never early and at most one slot late; one timer serves them all."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from entrypoints.keepalive import KeepaliveProtocol, Wheel


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
