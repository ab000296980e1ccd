"""A WebSocket connection's writes of one turn of the event loop, sent in one system call.

A write to a socket costs a system call whatever its size, and under load a connection is written
several frames in one turn of the loop: the acknowledgements of a committed batch, messages,
receipts. :class:`CorkedTransport` stands between uvicorn's WebSocket protocol and the socket's
transport and holds those frames until the loop's next iteration, then hands them over together.
The keepalive protocol (:mod:`entrypoints.keepalive`) installs it in ``connection_made``, so the
real, bare and ceiling servers of the benchmark all write through it (docs/performance.md, round 4;
docs/decisions.md, decision 25).

Three rules keep it invisible to the protocol:

* Order. Everything the protocol writes goes through here, so frames keep their order;
  ``writelines``, ``write_eof`` and ``close`` send what is pending first.
* Flow control. Pending bytes leave at once when ``CORK_BYTES`` are held, so the transport's own
  buffer (which pauses the protocol when full) sees them at most that many bytes late, and a large
  frame (an offline batch) is never held behind the rest of the turn.
* Ownership. A written buffer is copied (as asyncio's transports do): the caller may reuse it.

Upgrade checklist (uvicorn, ``websockets``). Nothing private of either is touched; what this relies
on is how uvicorn's sans-I/O protocol (``uvicorn.protocols.websockets.websockets_sansio_impl``) uses
its transport:

* it keeps the transport it is given in ``connection_made`` as ``self.transport`` and writes every
  frame through ``self.transport.write`` — a write that bypassed it (another attribute, the raw
  socket, ``sendfile``) could overtake pending frames;
* it reads the peer and local addresses and the TLS context through ``get_extra_info``, and pauses
  and resumes reading through the transport: anything not written here is passed to the real
  transport (``__getattr__``).

``tests/unit/test_keepalive_wheel.py::test_the_protocol_writes_through_a_corked_transport`` (the
protocol installs it, addresses still read through it) and the WebSocket integration tests (every
frame of a real session goes through it) are what an upgrade must keep green.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Iterable

CORK_BYTES = 8192  # pending writes leave at once when they reach this size


class CorkedTransport:
    """A connection's transport whose small writes within one turn of the event loop leave
    together: at the loop's next iteration, or at once when ``CORK_BYTES`` are pending. Closing
    sends what is pending first; aborting drops it."""

    __slots__ = ("_loop", "_pending", "_size", "_transport")

    def __init__(self, transport: Any, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] | None = None
        self._size = 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        chunk = data if type(data) is bytes else bytes(data)  # the caller may reuse its buffer
        pending = self._pending
        if pending is None:
            if len(chunk) >= CORK_BYTES:
                self._transport.write(chunk)
                return
            self._pending, self._size = [chunk], len(chunk)
            self._loop.call_soon(self.flush)
            return
        pending.append(chunk)
        self._size += len(chunk)
        if self._size >= CORK_BYTES:
            self.flush()

    def writelines(self, lines: Iterable[bytes | bytearray | memoryview]) -> None:
        self.write(b"".join(lines))

    def flush(self) -> None:
        """Hand what is pending to the transport (called at the loop's next iteration)."""
        pending, self._pending, self._size = self._pending, None, 0
        if pending and not self._transport.is_closing():
            self._transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def is_closing(self) -> bool:
        return self._transport.is_closing()  # type: ignore[no-any-return]

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self._transport.close()

    def abort(self) -> None:
        self._pending, self._size = None, 0
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)
