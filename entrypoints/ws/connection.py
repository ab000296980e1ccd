"""One authenticated WebSocket: the asyncio driver of its :class:`LiveSession`. It feeds decoded frames
and the time to the session, writes its outbox, arms its one timer and closes; its
:class:`SessionWork` starts the writes, reads and calls the session asks for."""

from __future__ import annotations

import asyncio
import contextvars
import logging
from typing import Any

from litestar import WebSocket

from application.common import Principal
from application.events import Event
from application.live import actions as a
from application.presence import LiveConnection
from domain.presence import TooManyConnectionsError
from entrypoints import logs
from entrypoints.ws import protocol as p
from entrypoints.ws.services import Services, session_for
from entrypoints.ws.work import SessionWork

log = logging.getLogger("p2p_chat.ws")

SYNC_TIMEOUT_S = 1.0  # a hung Redis holds a new socket's ready this long at most (docs/operations.md)
SEND_DRAIN_TIMEOUT_S = 5.0  # within uvicorn's graceful-shutdown timeout (10 s)
FLUSH_TIMEOUT_S = 2.0  # for the queued frames before the close frame (also within it)
# Closes for a limit or a misbehaving client: logged at WARNING (the others at INFO).
LIMIT_CLOSES = frozenset({1008, 1009, 4008, 4429, 4430})
NO_STATUS = 1005  # the peer's close frame had no code (or the socket ended without one)
# Ends the server's protocol layer makes under the app (a frame over 1 MiB, bad UTF-8, no pong).
PROTOCOL_CLOSES = frozenset({1007, 1009, 1011})


def ended_by(code: int) -> str:
    """Who ended a socket the app learnt had ended (``websocket.disconnect``): the client, or
    the server's protocol layer for :data:`PROTOCOL_CLOSES`."""
    return "server" if code in PROTOCOL_CLOSES else "client"


def log_close(code: int, reason: str, **fields: Any) -> None:
    """The one line of a socket's close (with the ids of the context it is logged in)."""
    level = logging.WARNING if code in LIMIT_CLOSES else logging.INFO
    log.log(level, "socket closed %d %s", code, reason, extra={"ctx": {"code": code, "reason": reason, **fields}})


class Connection:
    """A live, authenticated connection. Implements :class:`application.ports.Subscriber`."""

    __slots__ = (
        "_broken",
        "_context",
        "_frames_in",
        "_frames_out",
        "_loop",
        "_peer_close",
        "_receiving",
        "_resume",
        "_services",
        "_socket",
        "_task",
        "_timer",
        "_work",
        "_writer",
        "session",
    )

    def __init__(self, socket: WebSocket[Any, Any, Any], services: Services, principal: Principal, connection_id: str):
        self._socket, self._services = socket, services
        # Once: on Python 3.11 get_running_loop() makes a getpid() call (docs/performance.md, item 19).
        self._loop = loop = asyncio.get_running_loop()
        self.session = session_for(services, principal, connection_id)
        # Every line logged for this socket names it and its user, also from the tasks it starts
        # when another connection's task delivers to it (they run in this context, not the caller's).
        logs.connection_id.set(connection_id)
        logs.user_id.set(principal.user_id)
        self._context = context = contextvars.copy_context()
        self._work = SessionWork(
            services, self.session, self._now, loop, on_socket=self._on_socket, fed=self._pump, context=context
        )
        self._task: asyncio.Task[Any] | None = None  # the task running ``run`` (it also reads)
        self._writer: asyncio.Task[None] | None = None  # exists only while frames wait
        self._resume: asyncio.Future[None] | None = None  # the reader waiting until the session reads
        self._receiving = False  # the reader waits for the socket or the session: a close cancels it
        self._timer: asyncio.TimerHandle | None = None
        self._broken = False  # a write failed: nothing more can be sent
        self._frames_in = self._frames_out = 0  # for the close line
        self._peer_close: tuple[int, str] = (NO_STATUS, "")  # the client's close, if it closed first

    # -- Subscriber and the process's calls -------------------------------------------------------

    @property
    def connection_id(self) -> str:
        return self.session.connection_id

    @property
    def user_id(self) -> int:
        return self.session.principal.user_id

    @property
    def sid(self) -> str:
        """The connection's current login (a re-auth may change it)."""
        return self.session.principal.sid

    def deliver(self, event: Event) -> None:
        self.session.event_published(event, self._now())
        self._pump()

    def close_soon(self, code: int, reason: str) -> None:
        """Ask the connection to close (the first request wins); a waiting reader is interrupted."""
        self.session.close(a.CloseCode(code), reason)
        self._pump()

    async def catch_up(self) -> None:
        """The store catch-up sweep's turn (see :meth:`LiveSession.catch_up`)."""
        self.session.catch_up(self._now())
        await self._work.drain()

    # -- lifecycle --------------------------------------------------------------------------------

    async def run(self, ready_ref: str | None = None) -> None:
        """Attach, register (4430 over the user's cap, deployment-wide), start the session
        (``ready`` echoes ``ready_ref``, the ``auth`` frame's ``ref``), read frames until the
        socket ends or a close is requested; always detach. An idle connection costs one task."""
        s, hub = self._services, self._services.hub
        hub.attach(self)
        s.metrics.connections.inc()
        s.metrics.ws_opens.inc()
        opened = self._loop.time()
        log.info("socket opened")
        self._task = asyncio.current_task()
        try:
            try:  # listening before reading pending messages, so none falls in between
                await asyncio.wait_for(hub.synced(), timeout=SYNC_TIMEOUT_S)
            except TimeoutError:
                log.warning("fan-out not confirmed for connection %s; re-pushes will cover it", self.connection_id)
            await s.connect(self.session.principal, LiveConnection(connection_id=self.connection_id))
            self.session.start(self._now(), ready_ref)
            self._pump()
            await self._read_loop()
        except TooManyConnectionsError:
            self.close_soon(a.CloseCode.TOO_MANY_CONNECTIONS, "too many connections")
        except asyncio.CancelledError:
            if self.session.closing is None or self._task is None:
                raise  # cancelled from outside (server shutdown): let it propagate
            self._task.uncancel()
        except Exception:
            log.exception("connection %s failed", self.connection_id)
            self.close_soon(a.CloseCode.INTERNAL, "unexpected server error")
        finally:
            self._task = None
            try:  # let frames already read be answered (or fail) first, and every answer be sent
                await self._work.settle(SEND_DRAIN_TIMEOUT_S)
                await self._flush(FLUSH_TIMEOUT_S)
            finally:  # also when shutdown cancels that wait: the connection must still go away
                hub.detach(self)
                s.metrics.connections.dec()
                if self._writer is not None:
                    self._writer.cancel()
                self._work.cancel()
                if self._timer is not None:
                    self._timer.cancel()
                await s.disconnect(self.session.principal, LiveConnection(connection_id=self.connection_id))
        if (closing := self.session.closing) is not None:
            await close_quietly(self._socket, closing.code, closing.reason)
            code, reason, by = int(closing.code), closing.reason, "server"
        else:
            code, reason = self._peer_close
            by = ended_by(code)
        s.metrics.socket_closed(code)
        log_close(
            code,
            reason,
            by=by,
            durationS=round(self._loop.time() - opened, 3),
            framesIn=self._frames_in,
            framesOut=self._frames_out,
        )

    async def _flush(self, timeout_s: float) -> None:
        """Let the writer send what is queued, for at most ``timeout_s``: the close frame comes
        after the frames queued before it. Not to a slow consumer (4008: its queue is full because
        it does not read) nor on a socket that failed."""
        closing, deadline = self.session.closing, self._loop.time() + timeout_s
        if closing is not None and closing.code == a.CloseCode.SLOW_CONSUMER:
            return
        self._pump()
        while (writer := self._writer) is not None and not writer.done() and not self._broken:
            if (left := deadline - self._loop.time()) <= 0:
                return
            await asyncio.wait([writer], timeout=left)
            self._pump()  # a writer ends when the outbox is empty; what came since needs another

    def _now(self) -> float:
        return self._services.monotonic() * 1000

    async def _read_loop(self) -> None:
        session, max_bytes = self.session, self._services.settings.max_frame_bytes
        while session.closing is None:
            self._receiving = True
            try:
                if not session.reading:
                    self._resume = self._loop.create_future()
                    await self._resume
                    continue
                message = await self._socket.receive()
            finally:
                self._receiving, self._resume = False, None
            if message["type"] == "websocket.disconnect":
                self._peer_close = (message.get("code") or NO_STATUS, str(message.get("reason") or ""))
                return
            self._frames_in += 1
            text, now = message.get("text"), self._now()
            if not isinstance(text, str):
                session.binary_frame(now)
            elif len(text) * 4 > max_bytes and len(text.encode()) > max_bytes:
                p.feed_oversized(session, text, now)
            else:
                p.feed(session, text, now)
            if self._work.perform_until_call():  # a frame's use case: awaited here, in its turn
                await self._work.drain()
            else:
                self._pump()

    # -- what the session asks of the socket ------------------------------------------------------

    def _pump(self) -> None:
        """After any input: perform what the session asks that needs no await (see
        :meth:`SessionWork.pump`), then let the writer and the reader go on if they may."""
        session = self.session
        if session.actions:
            self._work.pump()
        if (self._writer is None or self._writer.done()) and session.has_frames and not self._broken:
            self._writer = self._loop.create_task(self._write(), context=self._context)
        if self._resume is not None and session.reading and not self._resume.done():
            self._resume.set_result(None)

    def _on_socket(self, action: a.Action) -> None:
        """An action of the session that concerns the socket (a close, the timer), handed over by
        :class:`SessionWork` in its turn."""
        match action:
            case a.CloseRequest():
                if self._receiving and self._task is not None:
                    self._task.cancel()
            case a.WakeAt(at_ms=at_ms):
                if self._timer is not None:
                    self._timer.cancel()
                delay_s = max(0.0, (at_ms - self._now()) / 1000)
                self._timer = self._loop.call_later(delay_s, self._wake)

    def _wake(self) -> None:
        self.session.time_passed(self._now())
        self._pump()

    async def _write(self) -> None:
        """Write the outbox in order, then end (the next queued frame starts a new writer)."""
        session, hot, clock = self.session, self._services.metrics.hot, self._services.clock
        try:
            while (item := session.next_frame()) is not None:
                await self._socket.send_text(item.text)
                self._frames_out += 1
                if item.stamp is not None:  # a message: delivered
                    hot.delivered(max(0.0, (clock.now() - item.stamp).total_seconds()))
        except Exception:  # the peer is gone (the reader sees the disconnect) or the socket broke
            log.debug("writer of connection %s stopped", self.connection_id, exc_info=True)
            self._broken = True
            session.socket_failed()
            self._pump()


async def close_quietly(socket: WebSocket[Any, Any, Any], code: int, reason: str) -> None:
    try:
        await socket.close(code=code, reason=reason)
    except Exception:  # the peer may already be gone; closing is best effort
        log.debug("close %s on a finished socket", code)
