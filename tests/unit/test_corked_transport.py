"""The corked transport (entrypoints/corked.py) over a fake transport that records what reaches it:
the writes of one turn of the loop leave in one call, in order; a large write leaves at once with
what is pending before it; the transport never has more than ``CORK_BYTES`` kept from it (so its
flow control sees the bytes); ``writelines``, ``write_eof`` and ``close`` keep the order; written
buffers are copied; everything else is the real transport's."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from entrypoints.corked import CORK_BYTES, CorkedTransport


class TurnLoop:
    """A fake loop whose ``call_soon`` callbacks run when the test ends the turn."""

    def __init__(self) -> None:
        self.soon: list[Callable[[], None]] = []

    def call_soon(self, callback: Callable[[], None]) -> object:
        self.soon.append(callback)
        return object()

    def end_turn(self) -> None:
        callbacks, self.soon = self.soon, []
        for callback in callbacks:
            callback()


class RecordingTransport:
    """Records every call that reaches it, in order: ``("write", data)``, ``("write_eof",)``,
    ``("close",)``, ``("abort",)``."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.closed = False

    @property
    def written(self) -> list[bytes]:
        return [call[1] for call in self.calls if call[0] == "write"]

    def write(self, data: bytes) -> None:
        assert type(data) is bytes
        self.calls.append(("write", data))

    def write_eof(self) -> None:
        self.calls.append(("write_eof",))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.calls.append(("close",))
        self.closed = True

    def abort(self) -> None:
        self.calls.append(("abort",))
        self.closed = True

    def get_write_buffer_size(self) -> int:
        return sum(len(data) for data in self.written)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 50000)}.get(name, default)


def corked() -> tuple[CorkedTransport, RecordingTransport, TurnLoop]:
    loop, transport = TurnLoop(), RecordingTransport()
    return CorkedTransport(transport, cast("Any", loop)), transport, loop


def test_writes_within_one_turn_leave_in_one_write_in_order() -> None:
    cork, transport, loop = corked()
    cork.write(b"a")
    cork.write(b"b")
    cork.write(b"c")
    assert transport.calls == []
    assert len(loop.soon) == 1  # one flush per turn, however many writes
    loop.end_turn()
    assert transport.calls == [("write", b"abc")]
    cork.write(b"d")
    loop.end_turn()
    assert transport.written == [b"abc", b"d"]
    loop.end_turn()
    assert transport.written == [b"abc", b"d"]  # nothing pending, nothing written


def test_a_large_write_leaves_at_once_after_what_is_pending() -> None:
    """An offline batch is not held back behind the rest of the turn (reading the next batch)."""
    cork, transport, loop = corked()
    large = b"x" * CORK_BYTES
    cork.write(large)
    assert transport.written == [large]
    assert loop.soon == []  # nothing held: no flush to come
    cork.write(b"ack")
    cork.write(large)
    assert transport.written == [large, b"ack" + large]
    cork.write(b"later")
    loop.end_turn()  # the flush of the earlier turn's write finds nothing; this one goes out
    assert transport.written == [large, b"ack" + large, b"later"]


def test_the_transport_never_has_more_than_cork_bytes_kept_from_it() -> None:
    """A writer that queues frames faster than one turn (a whole outbox) hands them to the
    transport every ``CORK_BYTES``, so the transport's buffer fills and it can pause the protocol
    as it would without the cork."""
    cork, transport, loop = corked()
    total = 0
    for size in (1000, 3000, 700, 5000, 1, 8000, 200, 4096, 4096, 999):
        cork.write(b"f" * size)
        total += size
        held = total - transport.get_write_buffer_size()
        assert 0 <= held < CORK_BYTES
    assert [len(data) for data in transport.written] == [9700, 8201, 8192]  # each as it passed CORK_BYTES
    loop.end_turn()
    assert transport.get_write_buffer_size() == total


def test_written_buffers_are_copied() -> None:
    cork, transport, loop = corked()
    buffer = bytearray(b"one")
    cork.write(buffer)
    buffer[:] = b"two"  # asyncio's transports copy; so must this one
    view_of = bytearray(b"three")
    cork.write(memoryview(view_of))
    view_of[:] = b"xxxxx"
    loop.end_turn()
    assert transport.written == [b"onethree"]


def test_writelines_keeps_its_place_among_the_writes() -> None:
    cork, transport, loop = corked()
    cork.write(b"1")
    cork.writelines([b"2", bytearray(b"3"), memoryview(b"4")])
    cork.write(b"5")
    loop.end_turn()
    assert transport.written == [b"12345"]


def test_write_eof_sends_what_is_pending_first() -> None:
    cork, transport, loop = corked()
    cork.write(b"last frame")
    cork.write_eof()
    assert transport.calls == [("write", b"last frame"), ("write_eof",)]
    loop.end_turn()
    assert transport.calls == [("write", b"last frame"), ("write_eof",)]


def test_closing_sends_what_is_pending_first_and_nothing_after() -> None:
    cork, transport, loop = corked()
    cork.write(b"last message")
    cork.write(b"close frame")
    cork.close()
    assert transport.calls == [("write", b"last messageclose frame"), ("close",)]
    assert cork.is_closing()
    cork.write(b"too late")
    loop.end_turn()
    assert transport.calls == [("write", b"last messageclose frame"), ("close",)]


def test_aborting_drops_what_is_pending() -> None:
    cork, transport, loop = corked()
    cork.write(b"never sent")
    cork.abort()
    loop.end_turn()
    assert transport.calls == [("abort",)]


def test_everything_else_is_the_real_transports() -> None:
    cork, transport, _ = corked()
    cork.write(b"x" * CORK_BYTES)
    assert cork.get_extra_info("peername") == ("127.0.0.1", 50000)
    assert cork.get_write_buffer_size() == CORK_BYTES
    transport.closed = True
    assert cork.is_closing()
