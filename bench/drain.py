"""Scenario (c): one user with a backlog reconnects and drains it.

The client authenticates, takes each ``offlineMessages`` batch, acknowledges all of its ids in one
``ackMessages`` (the server sends the next batch once the previous one is acknowledged), and when
a batch says ``more: false`` sends a ``ping``: the server reads a connection's frames in order, so
the ``pong`` means the last acknowledgement was processed. Drain rate = unique messages / time
from the ``auth`` frame to that ``pong``.
"""

from __future__ import annotations

import asyncio
import resource
import time
from typing import TYPE_CHECKING, Any

import msgspec
from websockets.asyncio.client import connect

from bench import procstat
from bench.common import latency_summary, say
from bench.loadgen import MAX_FRAME_BYTES

if TYPE_CHECKING:
    from bench.servers import Server

MIB = 1024 * 1024
_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.decode


async def drain(server: Server, token: str, expected: int, label: str, timeout_s: float = 600.0) -> dict[str, Any]:
    seen: set[str] = set()
    duplicates = batches = repushes = 0
    gaps_us: list[int] = []  # ack sent → next batch received
    state = {"received": 0}

    async def progress() -> None:
        before = server.stats()
        last, at = 0, time.monotonic()
        while True:
            await asyncio.sleep(1.0)
            now, sample = time.monotonic(), server.stats()
            rate = (state["received"] - last) / (now - at)
            cpu = (sample.cpu_s - before.cpu_s) / (now - at) * 100
            say(
                f"[{label}] drained {state['received']:>6}/{expected} · {rate:8.1f} msg/s · "
                f"server cpu {cpu:5.1f}% · {sample.rss_bytes / MIB:6.1f} MiB"
            )
            last, at, before = state["received"], now, sample

    reporter = asyncio.ensure_future(progress())
    server.profile_window(timeout_s)  # stopped by finish_profile() when the drain is over
    cpu_before, machine_before = server.stats().cpu_s, procstat.machine_busy_s()
    started = time.monotonic()
    finished: float | None = None
    try:
        async with connect(
            server.ws_url, compression=None, ping_interval=None, proxy=None, max_size=MAX_FRAME_BYTES, close_timeout=5
        ) as ws:
            await ws.send(_encode({"type": "auth", "token": token}).decode())
            acked_at: int | None = None
            deadline = started + timeout_s
            while time.monotonic() < deadline:
                frame = _decode(await asyncio.wait_for(ws.recv(), timeout=max(0.1, deadline - time.monotonic())))
                kind = frame.get("type")
                if kind == "offlineMessages":
                    if acked_at is not None:
                        gaps_us.append((time.monotonic_ns() - acked_at) // 1000)
                    batches += 1
                    ids = [m["id"] for m in frame["messages"]]
                    duplicates += sum(1 for i in ids if i in seen)
                    seen.update(ids)
                    state["received"] = len(seen)
                    if ids:
                        await ws.send(_encode({"type": "ackMessages", "ids": ids}).decode())
                        acked_at = time.monotonic_ns()
                    if not frame["more"]:
                        await ws.send(_encode({"type": "ping", "ref": "drained"}).decode())
                elif kind == "messageReceived":  # a re-push of a batch message not yet acknowledged
                    repushes += 1
                    await ws.send(_encode({"type": "ackMessages", "ids": [frame["id"]]}).decode())
                elif kind == "pong" and frame.get("ref") == "drained":
                    finished = time.monotonic()
                    break
    finally:
        end = finished or time.monotonic()
        sample, machine = server.stats(), procstat.machine_busy_s() - machine_before
        reporter.cancel()
        await asyncio.gather(reporter, return_exceptions=True)
        server.finish_profile()
    elapsed = end - started
    own = resource.getrusage(resource.RUSAGE_SELF)
    busy = machine - (sample.cpu_s - cpu_before)
    return {
        "label": label,
        "expected": expected,
        "received": len(seen),
        "lost": expected - len(seen),
        "duplicates_raw": duplicates,
        "repushes": repushes,
        "batches": batches,
        "completed": finished is not None,
        "elapsed_s": elapsed,
        "drained_per_s": len(seen) / elapsed if elapsed > 0 else None,
        "batch_gap": latency_summary(gaps_us),
        "server_cpu_percent": (sample.cpu_s - cpu_before) / elapsed * 100 if elapsed > 0 else None,
        "server_rss_end_bytes": sample.rss_bytes,
        # Everything but the server meanwhile, this client included.
        "other_cpu_percent": max(0.0, busy / elapsed * 100) if elapsed > 0 else None,
        "client_cpu_s": own.ru_utime + own.ru_stime,
    }
