"""``iso_ms``: the wire's timestamps, whatever the cache of formatted seconds holds."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone

from entrypoints import wire


def plain(moment: datetime) -> str:
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"


def test_matches_plain_formatting_across_seconds_offsets_and_cache_resets() -> None:
    rng = random.Random(7)  # noqa: S311 - test data, not secrets
    start = datetime(2026, 11, 24, 5, 20, 21, 89_999, tzinfo=UTC)
    assert wire.iso_ms(start) == "2026-11-24T05:20:21.089Z"  # truncated, not rounded
    plus_five = timezone(timedelta(hours=5))
    for i in range(10_000):  # more distinct seconds than the cache keeps: it is cleared on the way
        moment = start + timedelta(seconds=i, microseconds=rng.randrange(1_000_000))
        if i % 3 == 0:
            moment = moment.astimezone(plus_five)
        assert wire.iso_ms(moment) == plain(moment)
    assert len(wire._SECONDS) <= 4096


def test_the_same_second_is_formatted_once_then_only_its_milliseconds_change() -> None:
    wire.iso_ms.cache_clear()  # the exact-time cache in front, or a rerun would never reach _SECONDS
    wire._SECONDS.clear()
    base = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    stamps = [wire.iso_ms(base + timedelta(milliseconds=n)) for n in range(0, 1000, 7)]
    assert stamps[0] == "2030-01-02T03:04:05.000Z"
    assert stamps[-1] == "2030-01-02T03:04:05.994Z"
    assert list(wire._SECONDS.values()) == ["2030-01-02T03:04:05."]
