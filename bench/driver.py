"""``python -m bench driver``: the cost of one message through a live connection's own code — the
driver (:class:`~entrypoints.ws.connection.Connection`, :class:`~entrypoints.ws.work.SessionWork`)
and the :class:`~application.live.session.LiveSession` — with the use cases, the socket and the
client faked in the same process.

User 1 sends ``count`` messages to user 2 (``window`` in flight), user 2 acknowledges each one: per
message a ``sendMessage`` read and answered, a ``messageReceived`` pushed, an ``ackMessages``
read and answered. Writes "commit" one loop turn after they are begun, all those of a turn at
once, as the group commit does. What it prints is CPU per message on this process; for a figure
that does not move with the machine's load, count instructions (docs/performance.md, issue 13)::

    valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        .venv/bin/python -m bench driver --count 500    # and --count 2500: the difference / 2000
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from application.common import Principal
from application.events import MessageReceived
from application.messaging import Batch, SendResult, StoredSend
from domain.messages import Message
from entrypoints.metrics import Metrics
from entrypoints.settings import Settings
from entrypoints.ws.connection import Connection
from entrypoints.ws.services import Services

if TYPE_CHECKING:
    from collections.abc import Callable

SENDER, RECIPIENT = 1, 2
NOW = datetime.now(UTC)


class _Commits:
    """Resolves the writes begun in a loop turn together, on the next turn (a group commit)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop, self._due, self._armed = loop, [], False
        self._due: list[tuple[asyncio.Future[Any], Any, Callable[[], None] | None]]

    def add(self, value: Any, after: Callable[[], None] | None = None) -> asyncio.Future[Any]:
        written = self.loop.create_future()
        self._due.append((written, value, after))
        if not self._armed:
            self._armed = True
            self.loop.call_soon(self._commit)
        return written

    def _commit(self) -> None:
        self._armed = False
        due, self._due = self._due, []
        for written, value, after in due:
            written.set_result(value)
            if after is not None:
                after()  # the fan-out, right after the commit


class _SendMessage:
    def __init__(self, commits: _Commits, connections: dict[int, Connection]) -> None:
        self._commits, self._connections, self._seq = commits, connections, 0

    def begin(self, actor: Principal, send: Any) -> asyncio.Future[Any]:
        self._seq += 1
        message = Message(
            id=f"m{self._seq}",
            seq=self._seq,
            sender_id=actor.user_id,
            recipient_id=send.to,
            body=send.body,
            client_msg_id=send.client_msg_id,
            created_at=NOW,
        )
        stored = StoredSend(result=SendResult(message=message, duplicate=False), introduce=False)
        recipient = self._connections[send.to]
        return self._commits.add(stored, lambda: recipient.deliver(MessageReceived(message=message)))

    async def finish(self, stored: StoredSend) -> SendResult:
        return stored.result


class _Acknowledge:
    def __init__(self, commits: _Commits) -> None:
        self._commits = commits

    def begin(self, actor: Principal, ack: Any) -> asyncio.Future[Any]:
        return self._commits.add(([], NOW))


class _Client:
    """One user's socket, as the load generator of scenario (a) uses it."""

    def __init__(self, loop: asyncio.AbstractEventLoop, user_id: int, count: int, window: int) -> None:
        self.loop, self.user_id, self.count, self.window = loop, user_id, count, window
        self.inbox: list[str] = []
        self.sent = self.in_flight = self.received = 0
        self.done: asyncio.Future[None] = loop.create_future()
        self._waiter: asyncio.Future[None] | None = None

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def receive(self) -> dict[str, Any]:
        while True:
            if self.user_id == SENDER and self.in_flight < self.window and self.sent < self.count:
                self.sent += 1
                self.in_flight += 1
                text = f'{{"type":"sendMessage","to":{RECIPIENT},"message":"hello there","clientMsgId":"c{self.sent}"}}'
                return {"type": "websocket.receive", "text": text}
            if self.inbox:
                return {"type": "websocket.receive", "text": self.inbox.pop(0)}
            self._waiter = self.loop.create_future()
            await self._waiter

    async def send_text(self, text: str) -> None:
        if '"messageAck"' in text:
            self.in_flight -= 1
            self._wake()
        elif '"messageReceived"' in text:
            start = text.index('"id":"') + 6
            self.inbox.append(f'{{"type":"ackMessages","ids":["{text[start : text.index(chr(34), start)]}"]}}')
            self._wake()
            self.received += 1
            if self.received == self.count:
                self.done.set_result(None)

    async def close(self, **_: Any) -> None:
        return None


async def _unused(*_: Any) -> Any:
    raise AssertionError("not on the measured path")


async def _no_batch(*_: Any) -> Batch:
    return Batch(messages=[], more=False)


async def _nothing(*_: Any) -> None:
    return None


async def _measure(count: int, window: int) -> tuple[float, float]:
    loop = asyncio.get_running_loop()
    commits, connections = _Commits(loop), {}
    settings = Settings(rate_msg_per_s=1e9, rate_msg_burst=10**9)  # the limits are not measured here

    class _Hub:
        def attach(self, _: Any) -> None: ...
        def detach(self, _: Any) -> None: ...
        async def synced(self) -> None: ...

    services = Services(
        settings=settings,
        clock=type("Clock", (), {"now": staticmethod(lambda: datetime.now(UTC))})(),
        monotonic=time.monotonic,
        hub=_Hub(),
        authenticate=_unused,
        send_message=_SendMessage(commits, connections),
        acknowledge=_Acknowledge(commits),
        mark_read=_unused,
        pending_for=_no_batch,
        still_pending=_unused,
        search_users=_unused,
        connect=_nothing,
        disconnect=_nothing,
        visible_online=_unused,
        relay_typing=_unused,
        metrics=Metrics(),
    )  # type: ignore[arg-type]
    sender, recipient = _Client(loop, SENDER, count, window), _Client(loop, RECIPIENT, count, window)
    for client in (sender, recipient):
        principal = Principal(user_id=client.user_id, sid=f"s{client.user_id}")
        connections[client.user_id] = Connection(client, services, principal, f"c{client.user_id}")  # type: ignore[arg-type]
    tasks = [loop.create_task(c.run()) for c in connections.values()]
    wall, cpu = time.perf_counter(), time.process_time()
    await recipient.done
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return wall / count * 1e6, cpu / count * 1e6


def run(count: int, window: int) -> None:
    wall_us, cpu_us = asyncio.run(_measure(count, window))
    print(f"{count} messages, window {window}: {cpu_us:.2f} µs CPU per message ({wall_us:.2f} µs wall)")
