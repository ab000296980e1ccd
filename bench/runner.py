"""The coordinator: starts the load-generator workers against one server, paces the run (connect,
start, measurement window, drain, finish), prints a progress line per second and merges the
workers' results with the server's CPU and memory."""

from __future__ import annotations

import multiprocessing
import queue
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bench import procstat
from bench.common import latency_summary, say
from bench.loadgen import IDLE, LOAD, Control, WorkerSpec, worker_main

if TYPE_CHECKING:
    from bench.fixture import BenchUser
    from bench.servers import Server

MIB = 1024 * 1024
RESULT_TIMEOUT_S = 120.0


@dataclass(kw_only=True)
class LoadConfig:
    mode: str = LOAD
    window: int = 8
    body_bytes: int = 64
    duration_s: float = 20.0
    warmup_s: float = 2.0
    drain_s: float = 12.0  # after sending stops: give up once nothing moved for this long
    drain_max_s: float = 120.0  # and in any case after this long
    workers: int = 2
    ack_interval_s: float = 0.05
    ack_batch: int = 100
    redelivery_s: float = 10.0
    idle_s: float = 10.0
    settle_s: float = 5.0
    connect_concurrency: int = 100
    connect_timeout_s: float = 600.0
    expect_ready: bool = True
    seed: int = 7


@dataclass
class _Run:
    label: str
    server: Server
    workers: list[multiprocessing.process.BaseProcess]
    control: Control
    latest: dict[int, dict[str, Any]] = field(default_factory=dict)
    results: dict[int, dict[str, Any]] = field(default_factory=dict)
    connected: set[int] = field(default_factory=set)
    connect_s: dict[int, float] = field(default_factory=dict)
    server_rss_peak: int = 0

    def pump(self, until: float) -> None:
        """Take worker events until ``until`` (monotonic seconds)."""
        while True:
            left = until - time.monotonic()
            if left <= 0:
                return
            try:
                kind, index, payload = self.control.events.get(timeout=min(left, 0.1))
            except queue.Empty:
                continue
            if kind == "result":
                self.results[index] = payload
            else:
                self.latest[index] = payload
                if kind == "connected":
                    self.connected.add(index)
                    self.connect_s[index] = float(payload.get("connect_s", 0.0))

    def total(self, key: str) -> int:
        return sum(int(t.get(key, 0)) for t in self.latest.values())

    def undelivered(self) -> int:
        """Messages acked to users whose connection is still open, not yet received by them
        (messages to a connection the server closed stay pending until a reconnect)."""
        closed = {u for t in self.latest.values() for u in t.get("closed_users", [])}
        expected = sum(n for t in self.latest.values() for u, n in t.get("acked_to", {}).items() if u not in closed)
        received = sum(n for t in self.latest.values() for u, n in t.get("received_by", {}).items() if u not in closed)
        return int(expected - received)

    def server_sample(self) -> procstat.Sample:
        sample = self.server.stats()
        self.server_rss_peak = max(self.server_rss_peak, sample.rss_bytes)
        return sample

    def workers_sample(self) -> procstat.Sample:
        return procstat.sample_many([p.pid for p in self.workers if p.pid is not None])


def run_clients(server: Server, users: list[BenchUser], cfg: LoadConfig, label: str) -> dict[str, Any]:
    """Run the clients of ``users`` against ``server``; return the merged measurements."""
    ctx = multiprocessing.get_context("spawn")
    control = Control(events=ctx.Queue(), start=ctx.Event(), t0=ctx.Value("d", 0.0), finish=ctx.Event())
    peers = [u.id for u in users]
    shares = [users[i :: cfg.workers] for i in range(cfg.workers)]
    workers: list[multiprocessing.process.BaseProcess] = []
    for index, share in enumerate(shares):
        spec = WorkerSpec(
            index=index,
            url=server.ws_url,
            users=[(u.id, u.token) for u in share],
            peers=peers,
            mode=cfg.mode,
            window=cfg.window,
            body_bytes=cfg.body_bytes,
            duration_s=cfg.duration_s,
            warmup_s=cfg.warmup_s,
            ack_interval_s=cfg.ack_interval_s,
            ack_batch=cfg.ack_batch,
            redelivery_s=cfg.redelivery_s,
            expect_ready=cfg.expect_ready,
            connect_concurrency=max(1, cfg.connect_concurrency // cfg.workers),
            connect_timeout_s=cfg.connect_timeout_s,
            seed=cfg.seed + index,
        )
        process = ctx.Process(target=worker_main, args=(spec, control), name=f"bench-worker-{index}", daemon=True)
        process.start()
        workers.append(process)
    run = _Run(label=label, server=server, workers=workers, control=control)
    try:
        return _coordinate(run, cfg, len(users))
    finally:
        control.finish.set()
        for worker in workers:
            worker.join(timeout=10)
            if worker.is_alive():
                worker.kill()
                worker.join(timeout=5)


def _coordinate(run: _Run, cfg: LoadConfig, user_count: int) -> dict[str, Any]:
    label = run.label
    connect_started = time.monotonic()
    server_before_connect = run.server_sample()
    deadline = connect_started + cfg.connect_timeout_s + 60
    while len(run.connected) < cfg.workers and time.monotonic() < deadline:
        run.pump(time.monotonic() + 1.0)
        if any(not p.is_alive() for p in run.workers) and len(run.results) + len(run.connected) < cfg.workers:
            raise RuntimeError(f"[{label}] a load-generator worker died while connecting")
        sample = run.server_sample()
        say(
            f"[{label}] connecting {run.total('connected'):>6}/{user_count} "
            f"(failed {run.total('failed')}) · server {sample.rss_bytes / MIB:7.1f} MiB"
        )
    # The workers' own connect phases (the coordinator's clock would add process start-up).
    connect_s = max(run.connect_s.values(), default=0.0)
    connected, failed = run.total("connected"), run.total("failed")
    say(f"[{label}] {connected} connected, {failed} failed in {connect_s:.1f} s")
    measured: dict[str, Any] = {
        "label": label,
        "connect_s": connect_s,
        "connections": connected,
        "connection_failures": failed,
        "connections_per_s": connected / connect_s if connect_s > 0 else None,
    }
    if cfg.mode == IDLE:
        measured |= _idle_phase(run, cfg, server_before_connect)
    else:
        measured |= _load_phase(run, cfg)
    run.control.finish.set()
    deadline = time.monotonic() + RESULT_TIMEOUT_S
    while len(run.results) < cfg.workers and time.monotonic() < deadline:
        run.pump(time.monotonic() + 0.5)
        if all(not p.is_alive() for p in run.workers) and len(run.results) < cfg.workers:
            run.pump(time.monotonic() + 1.0)
            break
    if len(run.results) < cfg.workers:
        raise RuntimeError(f"[{label}] only {len(run.results)} of {cfg.workers} workers reported")
    return _merge(run, cfg, measured)


def _idle_phase(run: _Run, cfg: LoadConfig, before: procstat.Sample) -> dict[str, Any]:
    label = run.label
    run.control.t0.value = time.monotonic()
    run.control.start.set()
    run.pump(time.monotonic() + cfg.settle_s)
    start = previous = run.server_sample()
    gen_start, machine_start = run.workers_sample(), procstat.machine_busy_s()
    started_at = previous_at = time.monotonic()
    run.server.profile_window(cfg.idle_s)
    end = started_at + cfg.idle_s
    timeline: list[float] = []
    while time.monotonic() < end:
        run.pump(min(end, time.monotonic() + 1.0))
        sample, now = run.server_sample(), time.monotonic()
        cpu = (sample.cpu_s - previous.cpu_s) / max(1e-9, now - previous_at) * 100
        timeline.append(round(cpu, 1))
        previous, previous_at = sample, now
        say(f"[{label}] idle {now - started_at:4.1f} s · server cpu {cpu:5.1f}% · {sample.rss_bytes / MIB:7.1f} MiB")
    finish = run.server_sample()
    gen_cpu = run.workers_sample().cpu_s - gen_start.cpu_s
    machine_cpu = procstat.machine_busy_s() - machine_start
    elapsed = time.monotonic() - started_at
    connected = run.total("connected")
    growth = finish.rss_bytes - before.rss_bytes
    return {
        "server_rss_before_bytes": before.rss_bytes,
        "server_rss_connected_bytes": finish.rss_bytes,
        "server_rss_per_connection_bytes": growth / connected if connected else None,
        "server_idle_cpu_percent": (finish.cpu_s - start.cpu_s) / elapsed * 100,
        "server_idle_cpu_timeline": timeline,  # per second
        "loadgen_cpu_percent": gen_cpu / elapsed * 100,
        "other_cpu_percent": max(0.0, (machine_cpu - gen_cpu - (finish.cpu_s - start.cpu_s)) / elapsed * 100),
        "server_idle_cpu_median_percent": sorted(timeline)[len(timeline) // 2] if timeline else None,
        "idle_s": elapsed,
        "server_processes": finish.processes,
    }


def _load_phase(run: _Run, cfg: LoadConfig) -> dict[str, Any]:
    label = run.label
    t0 = time.monotonic() + 0.5
    run.control.t0.value = t0
    run.control.start.set()
    window_start, window_end = t0 + cfg.warmup_s, t0 + cfg.duration_s
    server_at: dict[str, procstat.Sample] = {}
    gen_at: dict[str, procstat.Sample] = {}
    sampled_at: dict[str, float] = {}
    machine_at: dict[str, float] = {}
    previous = dict.fromkeys(("sent", "acked", "received"), 0)
    next_line = t0 + 1.2  # workers report on the whole seconds after t0
    drain_cap = window_end + cfg.drain_max_s
    drained_at: float | None = None
    progress = (-1, -1)
    moved_at = window_end
    while True:
        now = time.monotonic()
        for point, at in (("start", window_start), ("end", window_end)):
            if point not in server_at and now >= at:
                server_at[point], gen_at[point] = run.server_sample(), run.workers_sample()
                sampled_at[point], machine_at[point] = time.monotonic(), procstat.machine_busy_s()
                if point == "start":
                    run.server.profile_window(window_end - now)
        if now >= window_end and run.total("inflight") == 0 and run.undelivered() <= 0:
            drained_at = now
            break
        if now >= window_end:
            current = (run.total("acked"), run.total("received"))
            if current != progress:
                progress, moved_at = current, now
            if now >= min(drain_cap, max(moved_at, window_end) + cfg.drain_s):
                break
        if now >= next_line:
            sample = run.server_sample()
            rates = {k: run.total(k) - v for k, v in previous.items()}
            previous = {k: run.total(k) for k in previous}
            phase = "send" if now < window_end else "drain"
            say(
                f"[{label}] {phase} t={int(now - t0):3d}s · sent {rates['sent']:>6}/s acked {rates['acked']:>6}/s "
                f"recv {rates['received']:>6}/s · in flight {run.total('inflight'):>5} · "
                f"errors {run.total('errors')} dup {run.total('duplicates_raw')} · "
                f"server {sample.rss_bytes / MIB:6.1f} MiB"
            )
            next_line += 1.0
        run.pump(min(next_line, time.monotonic() + 0.1))
    sampled = sampled_at["end"] - sampled_at["start"]
    cpu = (server_at["end"].cpu_s - server_at["start"].cpu_s) / sampled * 100
    gen_cpu = (gen_at["end"].cpu_s - gen_at["start"].cpu_s) / sampled * 100
    machine_cpu = (machine_at["end"] - machine_at["start"]) / sampled * 100
    return {
        "window_s": cfg.duration_s - cfg.warmup_s,
        "drain_s": (drained_at or time.monotonic()) - window_end,
        "drained": drained_at is not None,
        "server_cpu_percent": cpu,
        "server_cpu_s": server_at["end"].cpu_s - server_at["start"].cpu_s,
        "server_system_cpu_percent": (server_at["end"].system_s - server_at["start"].system_s) / sampled * 100,
        "server_rss_end_bytes": server_at["end"].rss_bytes,
        "server_processes": server_at["end"].processes,
        "loadgen_cpu_percent": gen_cpu,
        # Everything else on the machine meanwhile (other jobs share these cores).
        "other_cpu_percent": max(0.0, machine_cpu - cpu - gen_cpu),
    }


def _merge(run: _Run, cfg: LoadConfig, measured: dict[str, Any]) -> dict[str, Any]:
    results = list(run.results.values())

    def total(key: str) -> int:
        return sum(int(r[key]) for r in results)

    def merged(key: str) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in results:
            for k, v in r[key].items():
                out[k] = out.get(k, 0) + int(v)
        return out

    measured["server_rss_peak_bytes"] = run.server_rss_peak
    measured["open_at_end"] = total("open_at_end")
    measured["closed_by_server"] = merged("closed")
    measured["connect_failure_reasons"] = merged("connect_failures")
    measured["loadgen_max_rss_bytes"] = max(int(r["max_rss_bytes"]) for r in results)
    if cfg.mode == IDLE:
        return measured
    closed_users = {u for r in results for u in r["closed_users"]}
    received_ids = {mid for r in results for mid in r["received_ids"]}
    missing = [(mid, to) for r in results for mid, to in r["acked_pairs"] if mid not in received_ids]
    to_closed = sum(1 for _, to in missing if to in closed_users)
    window = measured["window_s"]
    delivered_per_s = total("received_in_window") / window
    measured |= {
        "sent": total("sent"),
        "acked": total("acked"),
        "received": total("received"),
        "unacked": total("unacked"),
        "lost": len(missing) - to_closed,
        "undelivered_to_closed": to_closed,
        "unacked_closed": total("unacked_closed"),
        "duplicates_raw": total("duplicates_raw"),
        "duplicates_unexpected": total("duplicates_unexpected"),
        "receipts": total("receipts"),
        "ack_frames": total("ack_frames"),
        "errors": merged("errors"),
        "other_frames": merged("other_frames"),
        "delivered_per_s": delivered_per_s,
        "acked_per_s": total("acked_in_window") / window,
        "latency": latency_summary([v for r in results for v in r["latencies_us"]]),
        "acked_per_connection": _spread([n for r in results for n in r["acked_per_connection"]]),
        "ack_latency": latency_summary([v for r in results for v in r["ack_latencies_us"]]),
        "server_cpu_us_per_message": (
            measured["server_cpu_s"] / (delivered_per_s * window) * 1e6 if delivered_per_s > 0 else None
        ),
    }
    return measured


def _spread(counts: list[int]) -> dict[str, float]:
    """How evenly the server served the connections: min, median, max of acks per connection."""
    ordered = sorted(counts)
    if not ordered:
        return {}
    return {"min": ordered[0], "median": ordered[len(ordered) // 2], "max": ordered[-1]}
