"""The refusal streak behind 4429, on its exact boundaries (times in seconds, exact in binary)."""

from __future__ import annotations

from domain.limits import BucketsByKey, RefusalStreak


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


def test_buckets_by_key_limit_each_key_on_its_own() -> None:
    buckets = BucketsByKey(rate=1.0, burst=2)

    assert [buckets.take(1, 0.0) for _ in range(3)] == [0.0, 0.0, 1.0]
    assert buckets.take(2, 0.0) == 0.0  # another key has its own full bucket
    assert buckets.take(1, 0.5) == 0.5  # half a token back: half a second to the next
    assert buckets.take(1, 1.0) == 0.0


def test_buckets_by_key_forget_refilled_buckets_when_the_map_doubles() -> None:
    buckets = BucketsByKey(rate=1.0, burst=2, sweep_at=4)
    for key in range(4):
        buckets.take(key, 0.0)
    buckets.take(0, 0.0)  # key 0 is empty now
    buckets.take(0, 0.0)

    buckets.take(99, 1.5)  # the fifth key sweeps: 1..3 refilled (1 + 1.5 ≥ 2), 0 has 1.5 < 2

    assert sorted(buckets.buckets) == [0, 99]
    assert buckets.sweep_at == 1024
