"""In-process fan-out: events go straight to this process's live connections (one-process mode)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from application.ports import ConnectionHub, Notifier

if TYPE_CHECKING:
    from application.events import Event
    from application.ports import Subscriber


class InMemoryFanout(Notifier, ConnectionHub):
    """user id → {connection id → subscriber}. ``publish`` calls ``deliver`` synchronously; the
    subscribers queue without blocking, so publishing never waits for a slow socket."""

    def __init__(self) -> None:
        self._by_user: dict[int, dict[str, Subscriber]] = {}

    def attach(self, subscriber: Subscriber) -> None:
        self._by_user.setdefault(subscriber.user_id, {})[subscriber.connection_id] = subscriber

    def detach(self, subscriber: Subscriber) -> None:
        connections = self._by_user.get(subscriber.user_id)
        if connections is None:
            return
        connections.pop(subscriber.connection_id, None)
        if not connections:
            del self._by_user[subscriber.user_id]

    def connections_of(self, user_id: int) -> list[Subscriber]:
        return list(self._by_user.get(user_id, {}).values())

    def all_connections(self) -> list[Subscriber]:
        return [s for connections in self._by_user.values() for s in connections.values()]

    def publish(self, user_id: int, event: Event, *, skip_connection: str | None = None) -> None:
        for connection_id, subscriber in list(self._by_user.get(user_id, {}).items()):
            if connection_id != skip_connection:
                subscriber.deliver(event)
