"""The table of this process's connections that every fan-out adapter delivers from."""

from __future__ import annotations

import logging

import pytest

from application.connections import ConnectionTable
from application.events import Event, Typing, UserOnline
from application.ports import Subscriber

HELLO = UserOnline(user_id=99)


class RecordingSubscriber(Subscriber):
    """Remembers what it was handed."""

    def __init__(self, user_id: int, connection_id: str, *, sid: str = "sid-1") -> None:
        self._user_id = user_id
        self._connection_id = connection_id
        self._sid = sid
        self.events: list[Event] = []

    @property
    def connection_id(self) -> str:
        return self._connection_id

    @property
    def user_id(self) -> int:
        return self._user_id

    @property
    def sid(self) -> str:
        return self._sid

    def deliver(self, event: Event) -> None:
        self.events.append(event)


class RaisingSubscriber(RecordingSubscriber):
    def deliver(self, event: Event) -> None:
        raise RuntimeError("broken socket")


class OrderedSubscriber(RecordingSubscriber):
    """Writes its connection id into a list shared with other subscribers when delivered to."""

    def __init__(self, order: list[str], user_id: int, connection_id: str) -> None:
        super().__init__(user_id, connection_id)
        self._order = order

    def deliver(self, event: Event) -> None:
        super().deliver(event)
        self._order.append(self.connection_id)


class SelfDetachingSubscriber(RecordingSubscriber):
    """Leaves the table while being delivered to, like a connection that closes on an event."""

    def __init__(self, table: ConnectionTable, user_id: int, connection_id: str) -> None:
        super().__init__(user_id, connection_id)
        self._table = table

    def deliver(self, event: Event) -> None:
        super().deliver(event)
        self._table.detach(self)


def test_attach_reports_only_the_users_first_connection() -> None:
    table = ConnectionTable()
    assert table.attach(RecordingSubscriber(1, "a"))
    assert not table.attach(RecordingSubscriber(1, "b"))
    assert table.attach(RecordingSubscriber(2, "c"))
    assert table.users() == {1, 2}


def test_detach_reports_only_the_users_last_connection() -> None:
    table = ConnectionTable()
    a, b = RecordingSubscriber(1, "a"), RecordingSubscriber(1, "b")
    table.attach(a)
    table.attach(b)
    assert not table.detach(a)
    assert table.users() == {1}
    assert table.detach(b)
    assert table.users() == set()
    assert table.deliver(1, HELLO) == 0
    assert (a.events, b.events) == ([], [])


def test_detaching_an_unknown_connection_is_ignored() -> None:
    table = ConnectionTable()
    a = RecordingSubscriber(1, "a")
    assert not table.detach(a)
    table.attach(a)
    assert not table.detach(RecordingSubscriber(1, "other"))
    assert not table.detach(RecordingSubscriber(2, "a"))
    assert table.deliver(1, HELLO) == 1
    assert a.events == [HELLO]
    assert table.detach(a)
    assert not table.detach(a)


def test_reattaching_a_connection_id_replaces_the_subscriber() -> None:
    table = ConnectionTable()
    old, new = RecordingSubscriber(1, "a"), RecordingSubscriber(1, "a")
    table.attach(old)
    assert not table.attach(new)
    assert table.deliver(1, HELLO) == 1
    assert (old.events, new.events) == ([], [HELLO])


def test_a_users_connections_are_delivered_to_in_attach_order() -> None:
    table = ConnectionTable()
    order: list[str] = []
    a, b, c = (OrderedSubscriber(order, user_id, name) for user_id, name in ((1, "a"), (2, "b"), (1, "c")))
    for subscriber in (a, b, c):
        table.attach(subscriber)
    assert table.deliver(1, HELLO) == 2
    assert table.deliver(3, HELLO) == 0
    assert order == ["a", "c"]


def test_the_users_listing_is_a_copy() -> None:
    table = ConnectionTable()
    table.attach(RecordingSubscriber(1, "a"))
    table.users().clear()
    assert table.users() == {1}


def test_deliver_reaches_every_connection_of_the_user_and_no_one_else() -> None:
    table = ConnectionTable()
    a, b, other = RecordingSubscriber(1, "a"), RecordingSubscriber(1, "b"), RecordingSubscriber(2, "c")
    for subscriber in (a, b, other):
        table.attach(subscriber)
    assert table.deliver(1, HELLO) == 2
    assert (a.events, b.events, other.events) == ([HELLO], [HELLO], [])


def test_deliver_skips_the_given_connection() -> None:
    table = ConnectionTable()
    a, b = RecordingSubscriber(1, "a"), RecordingSubscriber(1, "b")
    table.attach(a)
    table.attach(b)
    assert table.deliver(1, HELLO, skip_connection="a") == 1
    assert (a.events, b.events) == ([], [HELLO])


def test_deliver_to_a_user_without_connections_is_a_no_op() -> None:
    assert ConnectionTable().deliver(7, HELLO) == 0


def test_events_arrive_in_delivery_order() -> None:
    table = ConnectionTable()
    a = RecordingSubscriber(1, "a")
    table.attach(a)
    events = [Typing(from_id=2, is_typing=i % 2 == 0) for i in range(5)]
    for event in events:
        table.deliver(1, event)
    assert a.events == events


def test_a_raising_subscriber_is_logged_and_does_not_stop_the_others(caplog: pytest.LogCaptureFixture) -> None:
    table = ConnectionTable()
    broken, fine = RaisingSubscriber(1, "broken"), RecordingSubscriber(1, "fine")
    table.attach(broken)
    table.attach(fine)
    with caplog.at_level(logging.ERROR, logger="application.connections"):
        assert table.deliver(1, HELLO) == 1
    assert fine.events == [HELLO]
    assert "broken" in caplog.text


def test_a_subscriber_may_detach_while_being_delivered_to() -> None:
    table = ConnectionTable()
    leaving = SelfDetachingSubscriber(table, 1, "leaving")
    staying = RecordingSubscriber(1, "staying")
    table.attach(leaving)
    table.attach(staying)
    assert table.deliver(1, HELLO) == 2
    assert (leaving.events, staying.events) == ([HELLO], [HELLO])
    assert table.deliver(1, HELLO) == 1
    assert (leaving.events, staying.events) == ([HELLO], [HELLO, HELLO])
