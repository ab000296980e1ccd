"""Group commit: writes from concurrent tasks share one transaction.

A caller hands a *step* (what to write) and its item to :meth:`GroupCommit.enqueue` and waits
for the future it gets. One worker task takes everything that queued up meanwhile, runs each step once over all of its
items in a single transaction, commits, and only then answers each caller — with its own result
or its own domain error (an unknown recipient fails that send, not the batch). While the
transaction runs, the next batch queues up, so under load a transaction carries many writes and
at rest a lone write goes through at once (no timer, no added latency).

Failures. A :class:`ConcurrentWriteError` (a concurrent transaction, e.g. in another process, committed
the same key) re-runs the batch, which then sees that commit. A :class:`StoreUnavailableError`
(the database unreachable or locked) fails every caller of the batch at once. Any other failure,
including the commit itself, rolls everything back; the batch is then tried item by item, each
alone in its own transaction, so one bad write (data the database refuses) cannot fail the
others. A caller is never answered before its write is committed, and nothing is
answered as written that was rolled back.

Lifetime. A group commit belongs to one running event loop: the composition root makes one per
app lifespan and :meth:`GroupCommit.close` ends it with that lifespan, so no worker or waiting
caller of a loop that is gone is ever carried into the next one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from application.ports import ConcurrentWriteError, StoreUnavailableError

if TYPE_CHECKING:
    from collections.abc import Callable

    from application.common import UnitOfWorkFactory
    from application.ports import UnitOfWork
    from domain.errors import DomainError

log = logging.getLogger("p2p_chat.group_commit")

I = TypeVar("I")  # noqa: E741 - an item
R = TypeVar("R")

CONFLICT_RETRIES = 3
MAX_BATCH = 256


class Step(Protocol[I, R]):
    """One kind of write. ``write`` runs inside the batch's transaction, over the items of every
    caller in submission order, and returns one outcome per item: a result, or a DomainError that
    fails that caller alone (raise it before writing anything for that item). Anything it raises
    fails the whole transaction. Steps run in ascending ``order`` (a fixed lock order).

    ``committed`` runs once the transaction committed, for each item written, in submission
    order, before its caller is answered and whether or not that caller still waits: what must
    follow a write (publishing it) belongs there, so that a caller that went away cannot leave
    a committed write unpublished, and publications keep commit order."""

    order: int

    async def write(self, uow: UnitOfWork, items: list[I]) -> list[R | DomainError]: ...

    def committed(self, item: I, result: R) -> None: ...


@dataclass(slots=True)
class _Entry(Generic[I, R]):
    step: Step[I, R]
    item: I
    future: asyncio.Future[R]


class GroupCommit:
    """Runs submitted writes in shared transactions, one transaction at a time, for the event loop
    it is first used on, until :meth:`close`."""

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        *,
        max_batch: int = MAX_BATCH,
        observe: Callable[[int, float], None] | None = None,
    ) -> None:
        """``observe(size, seconds)`` is told of each committed transaction: how many writes it
        carried and how long it took, its statements and its commit (the metrics)."""
        self._uow = uow
        self._max_batch = max_batch
        self._observe = observe
        self._queue: deque[_Entry[Any, Any]] = deque()
        self._worker: asyncio.Task[None] | None = None
        self._closed = False
        # The loop of the first write, asked for once: on Python 3.11 get_running_loop() makes a
        # getpid() system call (docs/performance.md, item 19). A batcher serves one app lifespan.
        self._loop: asyncio.AbstractEventLoop | None = None

    def enqueue(self, step: Step[I, R], item: I) -> asyncio.Future[R]:
        """Queue ``item`` for the next transaction: a future of its result once committed (or of
        its error). Cancelling the future before its batch starts leaves the item unwritten.
        Raises RuntimeError once closed."""
        if self._closed:
            raise RuntimeError("the group commit is closed (its app stopped serving)")
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        self._queue.append(_Entry(step, item, future))
        if self._worker is None or self._worker.done():
            self._worker = loop.create_task(self._work(), name="group-commit")
        return future

    async def close(self) -> None:
        """Take no more writes and end the worker: whoever still waits learns it was not written
        (the future is cancelled). Called once the app stopped serving; idempotent."""
        self._closed = True
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.cancel()
            await asyncio.gather(worker, return_exceptions=True)
        for entry in self._queue:  # queued after the worker's last look (or no worker ran)
            entry.future.cancel()
        self._queue.clear()

    async def _work(self) -> None:
        batch: list[_Entry[Any, Any]] = []
        try:
            while self._queue:
                batch = [self._queue.popleft() for _ in range(min(self._max_batch, len(self._queue)))]
                live = [entry for entry in batch if not entry.future.done()]  # cancelled callers drop out
                if live:
                    await self._run(live)
        finally:  # cancelled (shutdown): whoever still waits learns it was not written
            for entry in (*batch, *self._queue):
                if not entry.future.done():
                    entry.future.cancel()

    async def _run(self, batch: list[_Entry[Any, Any]]) -> None:
        started = time.perf_counter()
        try:
            outcomes = await self._transaction(batch)
        except Exception as exc:
            if len(batch) == 1 or isinstance(exc, StoreUnavailableError):
                # Nothing to isolate: the database itself is failing (each write alone would
                # only wait for it again). Every caller gets the error at once.
                for entry in batch:
                    _answer(entry, exc)
                return
            log.warning("a batch of %d writes failed (%r); writing them one by one", len(batch), exc)
            for entry in batch:
                await self._run([entry])
            return
        if self._observe is not None:
            self._observe(len(batch), time.perf_counter() - started)
        for entry, outcome in zip(batch, outcomes, strict=True):
            if not isinstance(outcome, BaseException):
                try:
                    entry.step.committed(entry.item, outcome)
                except Exception:  # publishing failed; the write stands and its caller is answered
                    log.exception("after the commit of %s", type(entry.step).__name__)
            _answer(entry, outcome)

    async def _transaction(self, batch: list[_Entry[Any, Any]]) -> list[Any]:
        groups: dict[Step[Any, Any], list[int]] = {}
        for index, entry in enumerate(batch):
            groups.setdefault(entry.step, []).append(index)
        for attempt in range(1, CONFLICT_RETRIES + 1):
            outcomes: list[Any] = [None] * len(batch)
            try:
                async with self._uow() as uow:
                    for step, indexes in sorted(groups.items(), key=lambda group: group[0].order):
                        results = await step.write(uow, [batch[i].item for i in indexes])
                        if len(results) != len(indexes):
                            raise RuntimeError(f"{type(step).__name__} answered {len(results)} of {len(indexes)}")
                        for i, result in zip(indexes, results, strict=True):
                            outcomes[i] = result
                    await uow.commit()
            except ConcurrentWriteError:
                if attempt == CONFLICT_RETRIES:
                    raise
                continue
            return outcomes
        raise AssertionError("unreachable")  # pragma: no cover


def _answer(entry: _Entry[Any, Any], outcome: Any) -> None:
    if entry.future.done():  # the caller was cancelled meanwhile
        return
    if isinstance(outcome, BaseException):
        entry.future.set_exception(outcome)
    else:
        entry.future.set_result(outcome)
