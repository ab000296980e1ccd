"""Per-connection limits as pure arithmetic on a monotonic time in seconds passed in.

* :class:`TokenBucket` — ``rate`` tokens per second up to ``burst``; one frame costs one token.
* :class:`RefusalStreak` — a connection refused in every second of ``seconds`` consecutive
  seconds must be closed; one second without a refusal ends the streak. Measured from the first
  refusal, not in calendar seconds: refusals in 10 calendar seconds in a row span only 9 s and a
  little (the 4429 came after 8.5 s of a flood).
* :class:`ErrorWindow` — more than ``max_errors`` errors within ``window_s`` seconds is abuse.
* :class:`BucketsByKey` — one :class:`TokenBucket` per key (a user), for limits that outlive a
  connection (HTTP lookups); memory follows the keys active in the last few seconds.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field


@dataclass(kw_only=True, slots=True)
class TokenBucket:
    rate: float
    burst: int
    tokens: float = -1.0
    updated: float = 0.0

    def take(self, now: float) -> bool:
        """Spend one token if there is one; False means the frame is over the limit."""
        if self.tokens < 0:  # first use: a full bucket
            self.tokens, self.updated = float(self.burst), now
        self.tokens = min(float(self.burst), self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def wait_s(self) -> float:
        """Seconds until the next token, as of the last :meth:`take` (0 when one is there)."""
        return max(0.0, (1.0 - self.tokens) / self.rate)

    def full_at(self, now: float) -> bool:
        """Whether the bucket has refilled by ``now`` (then forgetting it changes nothing)."""
        return self.tokens < 0 or self.tokens + (now - self.updated) * self.rate >= self.burst


def quarter_of(bucket: TokenBucket) -> TokenBucket:
    """The bucket for ``typing`` and ``searchUsers``: rate and burst a quarter of the message bucket's, rounded up."""
    return TokenBucket(rate=math.ceil(bucket.rate / 4), burst=math.ceil(bucket.burst / 4))


@dataclass(kw_only=True, slots=True)
class RefusalStreak:
    """Refusals none of which came a second or more after the one before form a streak; a streak
    that has lasted ``seconds`` (from its first refusal to this one) means every second of it
    had a refusal."""

    seconds: int = 10
    started: float = 0.0  # the streak's first refusal
    last: float | None = None  # the latest refusal, None before the first

    def refused(self, now: float) -> bool:
        """Record a refusal at ``now``; True when the streak has now lasted ``seconds`` seconds."""
        if self.last is None or now - self.last >= 1.0:
            self.started = now  # a second without refusals ended the previous streak
        self.last = now
        return now - self.started >= self.seconds


@dataclass(kw_only=True, slots=True)
class ErrorWindow:
    max_errors: int = 20
    window_s: float = 10.0
    times: deque[float] | None = None  # made at the first error: most connections never err

    def record(self, now: float) -> bool:
        """Record an error; True when more than ``max_errors`` happened within the window."""
        if self.times is None:
            self.times = deque()
        self.times.append(now)
        while self.times and self.times[0] <= now - self.window_s:
            self.times.popleft()
        return len(self.times) > self.max_errors


@dataclass(kw_only=True, slots=True)
class BucketsByKey:
    """A :class:`TokenBucket` of ``rate`` and ``burst`` per key, made full on first use. Whenever
    the map has doubled since the last sweep, the buckets that have refilled are forgotten (a
    fresh one is the same), so it holds about the keys that spent tokens in the last few seconds."""

    rate: float
    burst: int
    buckets: dict[int, TokenBucket] = field(default_factory=dict)
    sweep_at: int = 1024

    def take(self, key: int, now: float) -> float:
        """Spend one token of ``key``'s bucket: 0.0, or the seconds to wait when it is empty."""
        bucket = self.buckets.get(key)
        if bucket is None:
            if len(self.buckets) >= self.sweep_at:
                self._sweep(now)
            bucket = self.buckets[key] = TokenBucket(rate=self.rate, burst=self.burst)
        return 0.0 if bucket.take(now) else bucket.wait_s()

    def _sweep(self, now: float) -> None:
        self.buckets = {key: b for key, b in self.buckets.items() if not b.full_at(now)}
        self.sweep_at = max(1024, 2 * len(self.buckets))
