"""Prometheus metrics of the server.

One process: a registry of its own per app instance (so several apps in one test process do not
collide). Several worker processes (``CHAT_WORKERS`` > 1): prometheus_client's multiprocess mode
— the CLI points ``PROMETHEUS_MULTIPROC_DIR`` at a fresh directory before the workers start, every
worker writes its values there, and whichever worker answers ``/metrics`` aggregates them all.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    def __init__(self, *, multiprocess_mode: bool = False) -> None:
        self._multiprocess = multiprocess_mode
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

    def render(self) -> bytes:
        if not self._multiprocess:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)

    def process_exited(self) -> None:
        """Drop this worker's live gauges from the aggregate (multiprocess mode)."""
        if self._multiprocess:
            multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]
