"""The load generator's worker process: it owns a share of the users, one WebSocket each.

``load`` mode: every client keeps ``window`` ``sendMessage`` frames in flight to random peers (a
send is in flight until its ``messageAck``) and acknowledges what it receives the way a real
client does: ``ackMessages`` with up to 100 ids, at the latest every ``ack_interval_s``. The body
carries the send time (CLOCK_MONOTONIC, shared by every process of the machine), so the recipient
— maybe in the other worker — measures send → ``messageReceived`` latency.

``idle`` mode: the clients authenticate, then stay silent until told to finish (the WebSocket
library answers the server's pings by itself).

The worker reports to the coordinator (:mod:`bench.runner`) over a queue: ``progress`` while
connecting, ``connected`` once, ``tick`` every second (cumulative counters) and ``result`` at the
end (counters, acked and received ids, latencies).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import resource
import time
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from bench.common import monotonic_ns, raise_nofile_limit

if TYPE_CHECKING:
    from multiprocessing.queues import Queue
    from multiprocessing.sharedctypes import Synchronized
    from multiprocessing.synchronize import Event

LOAD, IDLE = "load", "idle"
MAX_FRAME_BYTES = 16 * 1024 * 1024  # an offline batch may be 100 × 4000 characters
FINISH_WAIT_S = 3600.0  # the coordinator always says when to finish; this only bounds a lost signal
CLOSE_WAIT_S = 15.0
REPUSH_MARGIN_NS = 50_000_000

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.decode


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerSpec:
    index: int
    url: str
    users: list[tuple[int, str]]  # (user id, access token) owned by this worker
    peers: list[int]  # every user id of the run: the random recipients
    mode: str = LOAD
    window: int = 8
    body_bytes: int = 64
    duration_s: float = 20.0
    warmup_s: float = 2.0
    ack_interval_s: float = 0.05
    ack_batch: int = 100
    redelivery_s: float = 10.0
    expect_ready: bool = True  # False for the bare server, which says nothing
    connect_concurrency: int = 100
    connect_timeout_s: float = 600.0
    seed: int = 0


@dataclass(frozen=True, slots=True)
class Control:
    """Coordinator ↔ workers: events out, and the start signal with the shared start time."""

    events: Queue[tuple[str, int, dict[str, Any]]]
    start: Event
    t0: Synchronized[float]  # time.monotonic() at which sending starts
    finish: Event


class Stats:
    """Counters of one worker (the clients share them: one event loop, no locks needed)."""

    def __init__(self) -> None:
        self.connected = 0
        self.connect_failures: Counter[str] = Counter()
        self.sent = 0
        self.acked = 0
        self.acked_in_window = 0
        self.received = 0
        self.received_in_window = 0
        self.duplicates_raw = 0
        self.duplicates_unexpected = 0
        self.receipts = 0
        self.ack_frames = 0
        self.errors: Counter[str] = Counter()
        self.other_frames: Counter[str] = Counter()
        self.closed: Counter[str] = Counter()
        # Send → messageReceived and send → messageAck of every message received (acked) after
        # the warm-up, the drain included: a closed loop only sends again when served, so keeping
        # only sends made inside the window would leave out the connections the server starves.
        self.latencies_us: list[int] = []
        self.ack_latencies_us: list[int] = []
        self.acked_pairs: list[tuple[str, int]] = []  # (message id, recipient)
        self.acked_to: Counter[int] = Counter()  # recipient → messages acked to them

    def tick(self, inflight: int) -> dict[str, Any]:
        return {
            "connected": self.connected,
            "failed": sum(self.connect_failures.values()),
            "sent": self.sent,
            "acked": self.acked,
            "received": self.received,
            "inflight": inflight,
            "errors": sum(self.errors.values()),
            "duplicates_raw": self.duplicates_raw,
            "closed": sum(self.closed.values()),
        }


class Client:
    """One user's connection."""

    def __init__(self, worker: Worker, user_id: int, token: str) -> None:
        self.worker = worker
        self.user_id = user_id
        self.token = token
        self.ws: ClientConnection | None = None
        self.seen: dict[str, int] = {}  # message id → first receipt (ns)
        self.to_ack: list[str] = []
        self.inflight: dict[str, int] = {}  # clientMsgId → send time (ns)
        self.count = 0
        self.closed = False  # closed by the server (or lost) before the end
        self.acked = 0  # this connection's sends acknowledged, over the whole run

    async def open(self) -> None:
        spec = self.worker.spec
        self.ws = await connect(
            spec.url,
            compression=None,  # measure the chat server, not zlib
            ping_interval=None,  # the server pings; the library answers
            proxy=None,
            max_size=MAX_FRAME_BYTES,
            max_queue=64,
            open_timeout=60,
            close_timeout=5,
        )
        await self.ws.send(_encode({"type": "auth", "token": self.token}).decode())
        if not spec.expect_ready:
            return
        ready = _decode(await asyncio.wait_for(self.ws.recv(), timeout=60))
        if ready.get("type") != "ready":
            raise RuntimeError(f"expected ready, got {ready.get('type')}")
        batch = _decode(await asyncio.wait_for(self.ws.recv(), timeout=60))
        if batch.get("type") != "offlineMessages":
            raise RuntimeError(f"expected offlineMessages, got {batch.get('type')}")
        for message in batch["messages"]:
            self._on_message(message, offline=True)

    # -- sending -----------------------------------------------------------------------------

    async def send_next(self) -> None:
        w, ws = self.worker, self.ws
        if ws is None:
            return
        self.count += 1
        client_msg_id = f"{self.user_id}-{self.count}"
        peer = self.user_id
        while peer == self.user_id:
            peer = w.rng.choice(w.spec.peers)
        now = monotonic_ns()
        body = f"{now:020d} {client_msg_id} ".ljust(w.spec.body_bytes, ".")
        self.inflight[client_msg_id] = now
        w.stats.sent += 1
        frame = {"type": "sendMessage", "to": peer, "message": body, "clientMsgId": client_msg_id, "ref": client_msg_id}
        await ws.send(_encode(frame).decode())

    async def flush_acks(self) -> None:
        ws = self.ws
        while self.to_ack and ws is not None:
            ids, self.to_ack = self.to_ack[: self.worker.spec.ack_batch], self.to_ack[self.worker.spec.ack_batch :]
            self.worker.stats.ack_frames += 1
            await ws.send(_encode({"type": "ackMessages", "ids": ids}).decode())

    # -- receiving ---------------------------------------------------------------------------

    async def read_loop(self) -> None:
        ws, w = self.ws, self.worker
        if ws is None:
            return
        stats = w.stats
        try:
            async for raw in ws:  # ends when the connection closes (finish closes it)
                frame = _decode(raw)
                kind = frame.get("type")
                if kind == "messageReceived":
                    if self._on_message(frame, offline=False):
                        await self.flush_acks()
                elif kind == "messageAck":
                    sent_at = self.inflight.pop(frame.get("clientMsgId"), None)
                    if sent_at is None:
                        continue
                    now = monotonic_ns()
                    stats.acked += 1
                    stats.acked_pairs.append((frame["id"], frame["to"]))
                    stats.acked_to[frame["to"]] += 1
                    self.acked += 1
                    if now >= w.window_start:
                        stats.ack_latencies_us.append((now - sent_at) // 1000)
                    if w.window_start <= now < w.window_end:
                        stats.acked_in_window += 1
                    if w.sending:
                        await self.send_next()
                elif kind == "offlineMessages":
                    for message in frame["messages"]:
                        self._on_message(message, offline=True)
                    await self.flush_acks()
                elif kind == "messageDelivered":
                    stats.receipts += len(frame.get("ids") or [])
                elif kind == "error":
                    stats.errors[str(frame.get("code"))] += 1
                    if self.inflight.pop(frame.get("ref"), None) is not None and w.sending:
                        await self.send_next()  # that send failed; keep the window full
                else:
                    stats.other_frames[str(kind)] += 1
        except ConnectionClosed as exc:
            if not w.finishing:
                stats.closed[_close_reason(exc)] += 1
                self.closed = True
            return
        if not w.finishing:
            stats.closed[_close_reason(None, ws)] += 1
            self.closed = True

    def _on_message(self, message: dict[str, Any], *, offline: bool) -> bool:
        """Count a message and queue its acknowledgement; True when a full ack batch is waiting."""
        w = self.worker
        stats = w.stats
        message_id = message["id"]
        now = monotonic_ns()
        sent_at = _sent_at(message.get("message", ""))
        first = self.seen.get(message_id)
        if first is not None:
            stats.duplicates_raw += 1
            # Allowed: a later offline batch repeating a live message, or a re-push, which the
            # server makes no earlier than CHAT_REDELIVERY_S after the push (hence after the send).
            basis = sent_at if sent_at is not None else first
            if not offline and now - basis < w.redelivery_ns - REPUSH_MARGIN_NS:
                stats.duplicates_unexpected += 1
            self.to_ack.append(message_id)  # the server re-pushed it: it has not seen our ack yet
            return len(self.to_ack) >= w.spec.ack_batch
        self.seen[message_id] = now
        stats.received += 1
        if sent_at is not None and now >= w.window_start:
            stats.latencies_us.append((now - sent_at) // 1000)
        if w.window_start <= now < w.window_end:
            stats.received_in_window += 1
        self.to_ack.append(message_id)
        return len(self.to_ack) >= w.spec.ack_batch


def _sent_at(body: str) -> int | None:
    head = body[:20]
    return int(head) if len(head) == 20 and head.isdigit() else None


def _close_reason(exc: ConnectionClosed | None, ws: ClientConnection | None = None) -> str:
    if exc is not None and exc.rcvd is not None:
        return f"close {exc.rcvd.code}"
    if ws is not None and ws.close_code is not None:
        return f"close {ws.close_code}"
    return "connection lost"


class Worker:
    def __init__(self, spec: WorkerSpec, control: Control) -> None:
        self.spec = spec
        self.control = control
        self.stats = Stats()
        self.rng = random.Random(spec.seed)  # noqa: S311 - picking peers, not secrets
        self.clients = [Client(self, user_id, token) for user_id, token in spec.users]
        self.sending = False
        self.finishing = False
        self.window_start = 0
        self.window_end = 0
        self.redelivery_ns = int(spec.redelivery_s * 1e9)
        self.connect_s = 0.0
        self.unconnected: list[int] = []  # users whose connection failed: nobody receives for them

    def inflight(self, *, closed: bool = False) -> int:
        """Sends not acknowledged yet, on open connections (or on those the server closed)."""
        return sum(len(c.inflight) for c in self.clients if c.closed is closed)

    def load_tick(self) -> dict[str, Any]:
        """The tick, plus what the coordinator needs to tell when every delivery that can still
        happen has happened: acks per recipient, receipts per user, the closed users."""
        return self.stats.tick(self.inflight()) | {
            "acked_to": dict(self.stats.acked_to),
            "received_by": {c.user_id: len(c.seen) for c in self.clients},
            "closed_users": [c.user_id for c in self.clients if c.closed] + self.unconnected,
        }

    def emit(self, kind: str, payload: dict[str, Any]) -> None:
        self.control.events.put((kind, self.spec.index, payload))

    async def connect_all(self) -> None:
        gate = asyncio.Semaphore(self.spec.connect_concurrency)

        async def one(client: Client) -> None:
            async with gate:
                try:
                    await client.open()
                    self.stats.connected += 1
                except (OSError, TimeoutError, RuntimeError, ConnectionClosed, InvalidStatus) as exc:
                    reason = _close_reason(exc) if isinstance(exc, ConnectionClosed) else type(exc).__name__
                    self.stats.connect_failures[reason] += 1
                    client.ws = None

        async def report() -> None:
            while True:
                await asyncio.sleep(1.0)
                self.emit("progress", self.stats.tick(0))

        reporter = asyncio.ensure_future(report())
        started = time.monotonic()
        try:
            await asyncio.wait_for(asyncio.gather(*(one(c) for c in self.clients)), timeout=self.spec.connect_timeout_s)
        except TimeoutError:
            self.stats.connect_failures["connect phase timed out"] += 1
        finally:
            reporter.cancel()
            self.connect_s = time.monotonic() - started
        self.unconnected = [c.user_id for c in self.clients if c.ws is None]
        self.clients = [c for c in self.clients if c.ws is not None]

    async def _ticker(self, t0: float) -> None:
        """Cumulative counters once a second, on the whole seconds after ``t0`` (every worker
        alike, so the coordinator's per-second rates add up)."""
        beat = 1
        while True:
            await asyncio.sleep(max(0.0, t0 + beat - time.monotonic()))
            self.emit("tick", self.load_tick() if self.spec.mode == LOAD else self.stats.tick(0))
            beat = max(beat + 1, int(time.monotonic() - t0) + 1)

    async def _ack_flusher(self) -> None:
        while True:
            await asyncio.sleep(self.spec.ack_interval_s)
            for client in self.clients:
                if client.to_ack:
                    try:
                        await client.flush_acks()
                    except ConnectionClosed:
                        client.to_ack.clear()

    async def _stop_sending_at(self, deadline: float) -> None:
        await asyncio.sleep(max(0.0, deadline - time.monotonic()))
        self.sending = False

    async def run(self) -> None:
        await self.connect_all()
        self.emit("connected", self.stats.tick(0) | {"connect_s": self.connect_s})
        started = await asyncio.to_thread(self.control.start.wait, FINISH_WAIT_S)
        t0 = self.control.t0.value
        spec = self.spec
        self.window_start = int((t0 + spec.warmup_s) * 1e9)
        self.window_end = int((t0 + spec.duration_s) * 1e9)
        background: list[asyncio.Future[Any]] = [asyncio.ensure_future(self._ticker(t0))]
        if started and spec.mode == LOAD:
            background.append(asyncio.ensure_future(self._ack_flusher()))
            readers = [asyncio.ensure_future(c.read_loop()) for c in self.clients]
            background.extend(readers)
            await asyncio.sleep(max(0.0, t0 - time.monotonic()))
            self.sending = True
            background.append(asyncio.ensure_future(self._stop_sending_at(t0 + spec.duration_s)))
            await asyncio.gather(*(self._open_window(c) for c in self.clients), return_exceptions=True)
        await asyncio.to_thread(self.control.finish.wait, FINISH_WAIT_S)
        self.sending = False
        self.finishing = True
        for client in self.clients:
            with contextlib.suppress(ConnectionClosed):
                await client.flush_acks()
        open_at_end = sum(1 for c in self.clients if c.ws is not None and c.ws.close_code is None)
        closes = [asyncio.ensure_future(c.ws.close()) for c in self.clients if c.ws is not None]
        if closes:
            await asyncio.wait(closes, timeout=CLOSE_WAIT_S)
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        self.emit("result", self._result(open_at_end))

    async def _open_window(self, client: Client) -> None:
        for _ in range(self.spec.window):
            await client.send_next()

    def _result(self, open_at_end: int) -> dict[str, Any]:
        s = self.stats
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return {
            "connected": s.connected,
            "connect_failures": dict(s.connect_failures),
            "open_at_end": open_at_end,
            "sent": s.sent,
            "acked": s.acked,
            "acked_in_window": s.acked_in_window,
            "received": s.received,
            "received_in_window": s.received_in_window,
            "unacked": self.inflight(),
            "unacked_closed": self.inflight(closed=True),
            "closed_users": [c.user_id for c in self.clients if c.closed] + self.unconnected,
            "duplicates_raw": s.duplicates_raw,
            "duplicates_unexpected": s.duplicates_unexpected,
            "receipts": s.receipts,
            "ack_frames": s.ack_frames,
            "errors": dict(s.errors),
            "other_frames": dict(s.other_frames),
            "closed": dict(s.closed),
            "latencies_us": s.latencies_us,
            "acked_per_connection": [c.acked for c in self.clients],
            "ack_latencies_us": s.ack_latencies_us,
            "acked_pairs": s.acked_pairs,
            "received_ids": [mid for c in self.clients for mid in c.seen],
            "cpu_s": usage.ru_utime + usage.ru_stime,
            "max_rss_bytes": usage.ru_maxrss * 1024,
        }


def worker_main(spec: WorkerSpec, control: Control) -> None:
    """The process target (module level, so the ``spawn`` start method can import it)."""
    raise_nofile_limit()
    asyncio.run(Worker(spec, control).run())
