"""The refusal streak behind 4429, on its exact boundaries (times in seconds, exact in binary)."""

from __future__ import annotations

from domain.limits import RefusalStreak


def flood(streak: RefusalStreak, start: float, until: float, every: float = 0.25) -> list[bool]:
    """Refusals from ``start`` to ``until`` (inclusive), ``every`` apart: what each returned."""
    results, now = [], start
    while now <= until:
        results.append(streak.refused(now))
        now += every
    return results


def test_a_streak_closes_only_once_it_has_lasted_its_seconds_from_the_first_refusal() -> None:
    streak = RefusalStreak(seconds=10)
    # First refusal late in a second: ten calendar seconds (0–9) are reached at 9.0, 8.25 s in.
    assert flood(streak, 0.75, 10.5) == [False] * 40  # up to 9.75 s into the streak
    assert streak.refused(10.75)  # exactly 10 s after the first refusal


def test_a_streak_of_one_second() -> None:
    streak = RefusalStreak(seconds=1)
    assert not streak.refused(5.5)
    assert not streak.refused(6.25)
    assert streak.refused(6.5)


def test_a_full_second_without_a_refusal_ends_the_streak_a_shorter_pause_does_not() -> None:
    streak = RefusalStreak(seconds=3)
    assert not streak.refused(0.0)
    assert not streak.refused(0.75)  # paused 0.75 s: the streak goes on
    assert not streak.refused(1.75)  # paused 1 s: a new streak starts here
    assert not streak.refused(2.5)
    assert not streak.refused(3.25)
    assert not streak.refused(4.0)
    assert not streak.refused(4.5)
    assert streak.refused(4.75)  # 3 s after 1.75
