"""The use-case side of one WebSocket connection: :class:`SessionWork` performs what its
:class:`~application.live.session.LiveSession` asks for, in order, and feeds every outcome back."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable
from typing import Any, NamedTuple, cast, get_args

from application.live import actions as a
from application.live.session import LiveSession
from entrypoints.ws.services import Services, read_batch, run_call

# The actions that run a use case (:data:`~application.live.actions.Call`), looked up by exact type.
_CALLS = frozenset(get_args(a.Call))
_PIPELINED = get_args(a.Pipelined)


class _Write(NamedTuple):
    """A pipelined write in progress: the session's entry and the write's future."""

    entry: a.Pipelined
    written: asyncio.Future[Any]


class SessionWork:
    """Takes the session's :attr:`~LiveSession.actions` from the front, one at a time, and performs
    them: starts pipelined writes and answers them in the order started (the answerer task), reads
    offline batches (a task each) and runs calls (awaited by :meth:`drain`; from :meth:`pump` they
    go to the caller task). The socket's actions (:class:`~application.live.actions.CloseRequest`,
    :class:`~application.live.actions.WakeAt`) go to the connection's ``on_socket`` in their turn.
    Whenever a task of ours fed an outcome, and at the end of :meth:`drain`, it calls
    ``fed``: the connection performs what that queued, writes and resumes reading.

    Several take from the same list, each the head in its turn: the reader's drain, the caller
    task, the re-push sweep's drain, a pump from a callback. So it is consumed with ``pop(0)`` (it
    holds a handful of actions at most): swapping it out would hide what waits behind an awaited
    call from the others and change the order the actions are performed in."""

    __slots__ = (
        "_answerer",
        "_caller",
        "_context",
        "_fed",
        "_loop",
        "_now",
        "_on_socket",
        "_reads",
        "_services",
        "_session",
        "_writes",
    )

    def __init__(
        self,
        services: Services,
        session: LiveSession,
        now: Callable[[], float],
        loop: asyncio.AbstractEventLoop,
        on_socket: Callable[[a.Action], None],
        fed: Callable[[], None],
        context: contextvars.Context | None = None,
    ) -> None:
        """``context``: what the tasks started here run in (the connection's, for its log lines)."""
        self._services, self._session, self._now, self._loop = services, session, now, loop
        self._context = context
        self._on_socket, self._fed = on_socket, fed
        self._writes: list[_Write] = []  # started, oldest first, until their outcome is fed
        self._answerer: asyncio.Task[None] | None = None  # exists only while writes run
        self._caller: asyncio.Task[None] | None = None  # runs calls asked for outside a task of ours
        self._reads: list[asyncio.Task[None]] = []  # offline batches being read (two at most)

    async def drain(self) -> None:
        """Perform the session's actions in order, awaiting the calls among them, then ``fed``."""
        actions = self._session.actions
        while self.perform_until_call():
            call = cast("a.Call", actions.pop(0))  # perform_until_call stopped at it
            await run_call(self._services, self._session, call, self._now)
        self._fed()

    def pump(self) -> None:
        """Perform the session's actions up to the first call, which goes to the caller task (for
        a caller that must not await)."""
        if self.perform_until_call() and (self._caller is None or self._caller.done()):
            self._caller = self._loop.create_task(self.drain(), context=self._context)

    def perform_until_call(self) -> bool:
        """Perform the session's actions up to the first call; whether a call waits at the head
        (the caller then awaits :meth:`drain`, or lets :meth:`pump` hand it to a task)."""
        actions = self._session.actions
        while actions:
            action = actions[0]
            if type(action) in _CALLS:
                return True
            del actions[0]
            if isinstance(action, _PIPELINED):  # most actions: one call less
                self._begin(action)
            else:
                self._perform(action)
        return False

    async def settle(self, timeout_s: float) -> None:
        """Let the writes already started be answered (or fail), for at most ``timeout_s``."""
        if self._answerer is not None:
            await asyncio.wait([self._answerer], timeout=timeout_s)

    def cancel(self) -> None:
        """Stop answering, calling and reading (the connection is going away). Writes already
        queued still commit and are published."""
        for task in (self._answerer, self._caller, *self._reads):
            if task is not None:
                task.cancel()

    def _perform(self, action: a.Action) -> None:
        """Any action but a call or a pipelined write (those :meth:`perform_until_call` handles)."""
        if isinstance(action, a.ReadBatch):
            task = self._loop.create_task(
                read_batch(self._services, self._session, action, self._now), context=self._context
            )
            task.add_done_callback(self._batch_done)
            self._reads.append(task)
        else:
            self._on_socket(action)

    def _begin(self, entry: a.Pipelined) -> None:
        """Queue ``entry``'s write as its actor (what validation raises is answered in its turn)
        and let the answerer wait for it."""
        s = self._services
        written: asyncio.Future[Any]
        try:
            if isinstance(entry, a.PipelinedSend):
                written = s.send_message.begin(entry.actor, entry.send)
            else:
                written = s.acknowledge.begin(entry.actor, entry.ack)
        except Exception as exc:
            self._session.write_failed(entry, exc, self._now())
            return
        self._writes.append(_Write(entry, written))
        if self._answerer is None or self._answerer.done():
            self._answerer = self._loop.create_task(self._answer(), context=self._context)

    def _batch_done(self, task: asyncio.Task[None]) -> None:
        if task in self._reads:
            self._reads.remove(task)
        if not task.cancelled():
            self._fed()

    async def _answer(self) -> None:
        """Feed the started writes' outcomes in the order started; ends when none is left. The
        writes themselves are never cancelled from here: once queued, a write commits and is
        published (Step.committed) even if this connection goes away before its answer."""
        writes, session, send_message = self._writes, self._session, self._services.send_message
        now: float | None = None  # the clock, read once per run of finished writes
        try:
            while writes:
                entry, written = writes[0]
                try:  # a send's result once committed (an acknowledgement has none to give)
                    stored = await written
                    result = await send_message.finish(stored) if isinstance(entry, a.PipelinedSend) else None
                except asyncio.CancelledError:
                    current = asyncio.current_task()
                    if not written.cancelled() or (current is not None and current.cancelling()):
                        raise  # this task is cancelled: the connection is going away
                    writes.pop(0)
                    session.write_dropped(entry, self._now())  # dropped before it ran (shutdown)
                except Exception as exc:
                    writes.pop(0)
                    session.write_failed(entry, exc, self._now())
                else:
                    writes.pop(0)
                    if now is None:
                        now = self._now()
                    session.write_committed(entry, result, now)
                if not writes or not writes[0].written.done():  # once per run of finished writes
                    self._fed()
                    now = None
        except asyncio.CancelledError:
            for _, written in writes:  # nobody answers these any more
                written.add_done_callback(_unanswered)
            writes.clear()
            raise


def _unanswered(written: asyncio.Future[Any]) -> None:
    """Mark a write's outcome as seen when its connection went away before answering it."""
    if not written.cancelled():
        _ = written.exception()
