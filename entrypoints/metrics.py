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
from collections.abc import Mapping
from typing import Protocol

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)

from application.push import PushCounts

# The framework adds "; charset=utf-8" to a text/* media type: written here, it came twice.
MEDIA_TYPE = "text/plain; version=0.0.4"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)  # up to application.group_commit.MAX_BATCH
DEFAULT_COLLECTORS = (PROCESS_COLLECTOR, GC_COLLECTOR, PLATFORM_COLLECTOR)  # process_*, python_gc_*, python_info


# No ``*_created`` series (a timestamp per counter and histogram, doubling the series to scrape):
# Prometheus needs none of them.
disable_created_metrics()  # type: ignore[no-untyped-call]


class Tally(Protocol):
    """A process-wide count of errors kept by an adapter (``count`` only grows)."""

    count: int


class HotCounts:
    """What the WebSocket hot path counts per message, as plain numbers until the next flush."""

    __slots__ = ("drained", "latency_buckets", "latency_sum", "messages_in", "messages_out", "repushed")

    BOUNDS = (*LATENCY_BUCKETS, math.inf)  # the histogram's buckets, ``+Inf`` last

    def __init__(self) -> None:
        self.messages_in = 0
        self.messages_out = 0
        self.latency_buckets = [0] * len(self.BOUNDS)  # per bucket, not cumulative (as prometheus_client)
        self.latency_sum = 0.0
        self.drained = 0  # messages queued in offlineMessages batches
        self.repushed = 0  # messageReceived frames queued again (re-push, store catch-up)

    def delivered(self, latency_s: float) -> None:
        """A ``messageReceived`` frame was written, ``latency_s`` after the message's timestamp."""
        self.messages_out += 1
        self.latency_sum += latency_s
        self.latency_buckets[bisect_left(self.BOUNDS, latency_s)] += 1


class Metrics:
    """Every series of the server (docs/operations.md lists them). ``error_tallies`` are the
    adapters' process-wide error counts by store (``database``, ``redis``), added to
    ``chat_<store>_errors_total`` at each flush."""

    def __init__(self, *, multiprocess_mode: bool = False, error_tallies: Mapping[str, Tally] | None = None) -> None:
        self.multiprocess = multiprocess_mode
        self.hot = HotCounts()
        self.registry = CollectorRegistry()
        if not multiprocess_mode:
            for collector in DEFAULT_COLLECTORS:
                self.registry.register(collector)
        self._tallies = dict(error_tallies or {})
        self._tallied = {store: tally.count for store, tally in self._tallies.items()}  # counted already
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
        self.messages_drained = Counter(
            "chat_messages_drained", "Messages sent in offlineMessages batches (stored while offline)", registry=r
        )
        self.messages_repushed = Counter(
            "chat_messages_repushed",
            "messageReceived frames queued again: unacknowledged re-pushes and the store catch-up",
            registry=r,
        )
        self.http_requests = Counter(
            "chat_http_requests",
            "HTTP requests answered, by route template and status",
            ["method", "route", "status"],
            registry=r,
        )
        self.http_duration = Histogram(
            "chat_http_request_duration_seconds",
            "From an HTTP request reaching the app to its answer sent, by route template",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.ws_opens = Counter("chat_ws_opens", "WebSocket connections authenticated and opened", registry=r)
        self.ws_closes = Counter(
            "chat_ws_closes",
            "WebSocket connections closed, by close code (also those refused before opening)",
            ["code"],
            registry=r,
        )
        self.write_batch_size = Histogram(
            "chat_write_batch_size",
            "Writes (sends, acknowledgements) per group-commit transaction",
            buckets=BATCH_SIZE_BUCKETS,
            registry=r,
        )
        self.write_batch_seconds = Histogram(
            "chat_write_batch_seconds",
            "Duration of a group-commit transaction: its statements and its commit",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.database_errors = Counter(
            "chat_database_errors", "Units of work that failed with a database error (not a domain refusal)", registry=r
        )
        self.redis_errors = Counter("chat_redis_errors", "Redis commands or connections that failed", registry=r)
        self.fanout_lag = Histogram(
            "chat_fanout_lag_seconds",
            "Several processes: from a message's timestamp to its pub/sub event reaching another process",
            buckets=LATENCY_BUCKETS,
            registry=r,
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

    # -- what is counted off the hot path (per request, per socket, per batch) --------------------

    def http_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.http_requests.labels(method, route, str(status)).inc()
        self.http_duration.labels(method, route).observe(seconds)

    def write_batch(self, size: int, seconds: float) -> None:
        self.write_batch_size.observe(size)
        self.write_batch_seconds.observe(seconds)

    def socket_closed(self, code: int) -> None:
        self.ws_closes.labels(str(code)).inc()

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
        if hot.drained:
            self.messages_drained.inc(hot.drained)
            hot.drained = 0
        if hot.repushed:
            self.messages_repushed.inc(hot.repushed)
            hot.repushed = 0
        for store, tally in self._tallies.items():
            if (new := tally.count - self._tallied[store]) > 0:
                (self.database_errors if store == "database" else self.redis_errors).inc(new)
                self._tallied[store] = tally.count
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
        for collector in DEFAULT_COLLECTORS:  # of the worker answering this scrape (docs/operations.md)
            registry.register(collector)
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
