"""The hot path's counts reach Prometheus exactly as per-message ``inc``/``observe`` calls would."""

from __future__ import annotations

import asyncio

import pytest

from entrypoints import metrics as m
from entrypoints.metrics import LATENCY_BUCKETS, Metrics

# On a bound, just over it, in the middle, over every bound, and zero.
LATENCIES = [0.0, 0.001, 0.0011, 0.3, 0.5, 29.0, 31.0, 120.0, *LATENCY_BUCKETS]


def _exposition(metrics: Metrics) -> list[str]:
    return [
        line
        for line in metrics.render().decode().splitlines()
        if line.startswith(("chat_messages_", "chat_delivery_latency_seconds_")) and "_created" not in line
    ]


def test_flushed_counts_render_as_per_message_calls_would() -> None:
    """Fails if prometheus_client's histogram internals (``_buckets``, ``_sum``) change meaning."""
    reference, hot = Metrics(), Metrics()
    for latency in LATENCIES:
        reference.messages_out.inc()
        reference.delivery_latency.observe(latency)
        hot.hot.delivered(latency)
    for _ in range(3):
        reference.messages_in.inc()
        hot.hot.messages_in += 1
    assert _exposition(hot) == _exposition(reference)
    assert any(line.startswith('chat_delivery_latency_seconds_bucket{le="+Inf"} ') for line in _exposition(hot))


def test_a_flush_adds_only_what_came_since_the_last_one() -> None:
    metrics = Metrics()
    metrics.hot.delivered(0.002)
    metrics.hot.messages_in += 1
    metrics.flush()
    metrics.flush()  # nothing new: adds nothing
    metrics.hot.delivered(0.002)
    text = "\n".join(_exposition(metrics))
    assert "chat_messages_in_total 1.0" in text
    assert "chat_messages_out_total 2.0" in text
    assert 'chat_delivery_latency_seconds_bucket{le="0.0025"} 2.0' in text
    assert "chat_delivery_latency_seconds_count 2.0" in text


async def test_flush_every_flushes_after_each_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    metrics, waits = Metrics(), []

    async def one_interval(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 3:
            raise asyncio.CancelledError

    monkeypatch.setattr(asyncio, "sleep", one_interval)
    metrics.hot.messages_in += 1
    with pytest.raises(asyncio.CancelledError):
        await m.flush_every(metrics, 1.5)
    assert waits == [1.5, 1.5, 1.5]
    assert metrics.hot.messages_in == 0
    assert metrics.messages_in._value.get() == 1
