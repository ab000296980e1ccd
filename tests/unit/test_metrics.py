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


def test_drained_and_repushed_messages_and_store_errors_are_added_at_a_flush() -> None:
    class Tally:
        count = 5  # errors before this app started are not its own

    database, redis = Tally(), Tally()
    metrics = Metrics(error_tallies={"database": database, "redis": redis})
    metrics.hot.drained += 3
    metrics.hot.repushed += 2
    database.count += 2
    metrics.flush()
    redis.count += 1
    metrics.flush()
    text = metrics.render().decode()
    assert "chat_messages_drained_total 3.0" in text
    assert "chat_messages_repushed_total 2.0" in text
    assert "chat_database_errors_total 2.0" in text
    assert "chat_redis_errors_total 1.0" in text
    assert metrics.hot.drained == metrics.hot.repushed == 0


def test_requests_batches_and_closes_are_counted_by_their_labels() -> None:
    metrics = Metrics()
    metrics.http_request("GET", "/users/{user_id:int}", 404, 0.003)
    metrics.write_batch(12, 0.004)
    metrics.socket_closed(4429)
    text = metrics.render().decode()
    assert 'chat_http_requests_total{method="GET",route="/users/{user_id:int}",status="404"} 1.0' in text
    assert 'chat_http_request_duration_seconds_bucket{le="0.005",method="GET",route="/users/{user_id:int}"} 1.0' in text
    assert 'chat_write_batch_size_bucket{le="16.0"} 1.0' in text
    assert "chat_write_batch_seconds_count 1.0" in text
    assert 'chat_ws_closes_total{code="4429"} 1.0' in text


def test_the_process_collectors_are_exported_and_no_created_series() -> None:
    text = Metrics().render().decode()
    for name in ("process_cpu_seconds_total", "process_resident_memory_bytes", "python_gc_collections_total"):
        assert f"\n{name}" in text
    assert "_created" not in text
