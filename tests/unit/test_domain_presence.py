"""The presence state machine (``domain.presence``): one event per transition, no flapping."""

from __future__ import annotations

from datetime import timedelta

import pytest

from domain.presence import TooManyConnectionsError, UserPresence, presence_visible
from tests.unit.fakes import EPOCH

GRACE = timedelta(seconds=3)


def at(seconds: float) -> timedelta:
    return timedelta(seconds=seconds)


def online_user(*connections: str) -> UserPresence:
    user = UserPresence(user_id=1)
    for connection in connections:
        user.connect(connection, now=EPOCH)
    return user


def test_a_fresh_user_is_offline_and_idle() -> None:
    user = UserPresence(user_id=1)

    assert (user.online, user.leaving, user.idle) == (False, False, True)


def test_over_the_limit_a_connection_is_refused_and_changes_nothing() -> None:
    user = online_user("a", "b")

    with pytest.raises(TooManyConnectionsError):
        user.connect("c", now=EPOCH + at(1), limit=2)

    assert user.connections == {"a", "b"}
    assert user.connect("a", now=EPOCH + at(2), limit=2) is False  # one it holds: not a new one
    user.disconnect("b", now=EPOCH + at(3))
    assert user.connect("c", now=EPOCH + at(4), limit=2) is False  # room again
    assert user.connections == {"a", "c"}


def test_the_first_connection_brings_the_user_online_exactly_once() -> None:
    user = UserPresence(user_id=1)

    assert user.connect("a", now=EPOCH) is True
    assert user.connect("b", now=EPOCH + at(1)) is False  # a second device
    assert user.connect("a", now=EPOCH + at(2)) is False  # the same connection again
    assert (user.online, user.connections) == (True, {"a", "b"})


def test_closing_one_of_several_connections_changes_nothing() -> None:
    user = online_user("a", "b")

    user.disconnect("a", now=EPOCH + at(1))

    assert (user.online, user.leaving, user.left_at) == (True, False, None)
    assert user.settle(now=EPOCH + at(100), grace=GRACE) is None


def test_closing_the_last_connection_starts_the_grace_period_but_the_user_stays_online() -> None:
    user = online_user("a", "b")

    user.disconnect("a", now=EPOCH + at(1))
    user.disconnect("b", now=EPOCH + at(2))

    assert (user.online, user.leaving, user.left_at) == (True, True, EPOCH + at(2))


def test_settling_inside_the_grace_period_reports_nothing() -> None:
    user = online_user("a")
    user.disconnect("a", now=EPOCH + at(10))

    assert user.settle(now=EPOCH + at(12.999), grace=GRACE) is None
    assert (user.online, user.leaving) == (True, True)


def test_a_reconnect_inside_the_grace_period_cancels_the_leave_without_any_event() -> None:
    user = online_user("a")
    user.disconnect("a", now=EPOCH + at(10))

    assert user.connect("b", now=EPOCH + at(11)) is False

    assert (user.online, user.leaving) == (True, False)
    assert user.settle(now=EPOCH + at(60), grace=GRACE) is None


def test_a_reconnect_after_the_grace_but_before_settling_also_cancels_the_leave() -> None:
    user = online_user("a")
    user.disconnect("a", now=EPOCH + at(10))

    assert user.connect("b", now=EPOCH + at(30)) is False  # nobody was told the user left

    assert user.settle(now=EPOCH + at(60), grace=GRACE) is None
    assert user.online is True


def test_once_the_grace_has_passed_settling_goes_offline_exactly_once_with_last_seen() -> None:
    user = online_user("a")
    user.disconnect("a", now=EPOCH + at(10))

    assert user.settle(now=EPOCH + at(13), grace=GRACE) == EPOCH + at(10)  # now == left_at + grace
    assert user.settle(now=EPOCH + at(14), grace=GRACE) is None
    assert (user.online, user.leaving, user.idle) == (False, False, True)


def test_last_seen_is_when_the_last_connection_closed() -> None:
    user = online_user("a", "b")
    user.disconnect("a", now=EPOCH + at(1))
    user.disconnect("b", now=EPOCH + at(7))

    assert user.settle(now=EPOCH + at(100), grace=GRACE) == EPOCH + at(7)


def test_a_user_who_went_offline_comes_online_again_on_the_next_connection() -> None:
    user = online_user("a")
    user.disconnect("a", now=EPOCH + at(1))
    user.settle(now=EPOCH + at(10), grace=GRACE)

    assert user.connect("b", now=EPOCH + at(20)) is True


def test_unknown_and_repeated_disconnects_are_ignored() -> None:
    user = online_user("a")

    user.disconnect("nope", now=EPOCH + at(1))
    assert (user.online, user.leaving) == (True, False)
    user.disconnect("a", now=EPOCH + at(2))
    user.disconnect("a", now=EPOCH + at(5))  # a second close does not move left_at

    assert user.left_at == EPOCH + at(2)


def test_a_connection_opened_twice_closes_once() -> None:
    user = online_user("a", "a")

    user.disconnect("a", now=EPOCH + at(1))

    assert user.leaving is True


@pytest.mark.parametrize(
    ("contacts", "blocked", "visible"),
    [(True, False, True), (True, True, False), (False, False, False), (False, True, False)],
)
def test_presence_is_visible_only_between_contacts_without_a_block(
    contacts: bool, blocked: bool, visible: bool
) -> None:
    assert presence_visible(contacts=contacts, blocked_either_way=blocked) is visible
