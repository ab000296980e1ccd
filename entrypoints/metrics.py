"""Prometheus metrics of the server.

One process: a registry of its own per app instance (so several apps in one test process do not
collide). Several worker processes (``CHAT_WORKERS`` > 1): prometheus_client's multiprocess mode
— the CLI points ``PROMETHEUS_MULTIPROC_DIR`` at a fresh directory before the workers start, every
worker writes its values there, and whichever worker answers ``/metrics`` aggregates them all.

The WebSocket hot path counts into :class:`HotCounts` (plain numbers) instead of calling
prometheus_client per message: its checks and locks cost about as much as the session's own
rules for a message (docs/performance.md, issue 13). :meth:`Metrics.flush` adds them to the
Prometheus metrics before every scrape and, with several workers, every second.
"""

from __future__ import annotations

import asyncio
import math
import os
from bisect import bisect_left

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess

from application.push import PushCounts

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class HotCounts:
    """What the WebSocket hot path counts per message, as plain numbers until the next flush."""

    __slots__ = ("latency_buckets", "latency_sum", "messages_in", "messages_out")

    BOUNDS = (*LATENCY_BUCKETS, math.inf)  # the histogram's buckets, ``+Inf`` last

    def __init__(self) -> None:
        self.messages_in = 0
        self.messages_out = 0
        self.latency_buckets = [0] * len(self.BOUNDS)  # per bucket, not cumulative (as prometheus_client)
        self.latency_sum = 0.0

    def delivered(self, latency_s: float) -> None:
        """A ``messageReceived`` frame was written, ``latency_s`` after the message's timestamp."""
        self.messages_out += 1
        self.latency_sum += latency_s
        self.latency_buckets[bisect_left(self.BOUNDS, latency_s)] += 1


class Metrics:
    def __init__(self, *, multiprocess_mode: bool = False) -> None:
        self.multiprocess = multiprocess_mode
        self.hot = HotCounts()
        self.registry = CollectorRegistry()
        # In multiprocess mode values live in files; the objects must not sit in a collected registry.
        r = None if multiprocess_mode else self.registry
        self.connections = Gauge(
            "chat_connections", "Live authenticated WebSocket connections", registry=r, multiprocess_mode="livesum"
        )
        self.messages_in = Counter("chat_messages_in", "Messages stored from sendMessage frames", registry=r)
        self.messages_out = Counter("chat_messages_out", "messageReceived frames written to sockets", registry=r)
        self.delivery_latency = Histogram(
            "chat_delivery_latency_seconds",
            "From a message's timestamp to its messageReceived frame being written to a recipient socket",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.pending = Gauge(
            "chat_pending_messages",
            "Messages not yet acknowledged by any device",
            registry=r,
            multiprocess_mode="mostrecent",
        )
        self.rejected_frames = Counter(
            "chat_rejected_frames", "Client frames answered with an error frame", ["code"], registry=r
        )
        self.rate_limited = Counter("chat_rate_limited", "Frames refused by a rate limit", ["bucket"], registry=r)
        self.slow_consumer_closes = Counter(
            "chat_slow_consumer_closes", "Connections closed 4008 for an overfull outbound queue", registry=r
        )
        self.dropped_ephemeral = Counter(
            "chat_dropped_ephemeral_frames", "typing frames dropped under back-pressure", registry=r
        )

        self.push = Counter(
            "chat_push_notifications",
            "Push notifications by outcome: sent (the gateway took it), retried (an attempt failed, "
            "tried again later), given_up (refused, or failed CHAT_PUSH_MAX_ATTEMPTS times)",
            ["outcome"],
            registry=r,
        )
        self.push_rejected_targets = Counter(
            "chat_push_rejected_targets", "Push targets deleted because the gateway rejected their token", registry=r
        )
        self._push: PushCounts | None = None
        self._push_seen = PushCounts()

    def watch_push(self, counts: PushCounts) -> None:
        """Report the push dispatcher's counts (added at each flush)."""
        self._push = counts

    def _flush_push(self) -> None:
        counts, seen = self._push, self._push_seen
        if counts is None:
            return
        for outcome in ("sent", "retried", "given_up"):
            delta = getattr(counts, outcome) - getattr(seen, outcome)
            if delta:
                self.push.labels(outcome).inc(delta)
                setattr(seen, outcome, getattr(counts, outcome))
        if delta := counts.rejected_targets - seen.rejected_targets:
            self.push_rejected_targets.inc(delta)
            seen.rejected_targets = counts.rejected_targets

    def flush(self) -> None:
        """Add the hot path's counts to the Prometheus metrics. The histogram takes whole bucket
        counts through prometheus_client's ``_buckets`` and ``_sum`` (0.26: the values ``observe``
        adds to; ``tests/unit/test_metrics.py`` fails if that changes)."""
        self._flush_push()
        hot = self.hot
        if hot.messages_in:
            self.messages_in.inc(hot.messages_in)
            hot.messages_in = 0
        if not hot.messages_out:
            return
        self.messages_out.inc(hot.messages_out)
        histogram, buckets = self.delivery_latency, hot.latency_buckets
        for value, count in zip(histogram._buckets, buckets, strict=True):
            if count:
                value.inc(count)
        histogram._sum.inc(hot.latency_sum)
        hot.messages_out, hot.latency_sum, buckets[:] = 0, 0.0, [0] * len(buckets)

    def render(self) -> bytes:
        self.flush()
        if not self.multiprocess:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)

    def process_exited(self) -> None:
        """Drop this worker's live gauges from the aggregate (multiprocess mode)."""
        if self.multiprocess:
            multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]


async def flush_every(metrics: Metrics, interval_s: float) -> None:
    """With several workers, a scrape reads every worker's files: each adds its counts on time."""
    while True:
        await asyncio.sleep(interval_s)
        metrics.flush()
