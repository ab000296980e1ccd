"""In-process fan-out: events go straight to this process's live connections (one-process mode)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from application.connections import ConnectionTable
from application.ports import ConnectionHub, Notifier

if TYPE_CHECKING:
    from application.events import Event
    from application.ports import Subscriber


class InMemoryFanout(Notifier, ConnectionHub):
    """A :class:`ConnectionTable` behind the two ports. ``publish`` calls ``deliver`` synchronously;
    the subscribers queue without blocking, so publishing never waits for a slow socket."""

    def __init__(self) -> None:
        self._table = ConnectionTable()

    def attach(self, subscriber: Subscriber) -> None:
        self._table.attach(subscriber)

    def detach(self, subscriber: Subscriber) -> None:
        self._table.detach(subscriber)

    def publish(self, user_id: int, event: Event, *, skip_connection: str | None = None) -> None:
        self._table.deliver(user_id, event, skip_connection)

    async def synced(self) -> None:
        """In one process a publish reaches attached subscribers directly: nothing to wait for."""
