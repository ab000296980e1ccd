"""The ceiling: the frames of the real protocol from an in-memory relay on the same stack.

Litestar + uvicorn with the server's own uvicorn options, one outbound queue and writer task per
connection like the real server, and nothing else: the first frame's token is read for its
``sub`` claim without verifying it, frames are decoded but not validated, nothing is stored. It
answers ``ready``, an ``offlineMessages`` batch (empty unless ``BENCH_CEILING_PENDING`` seeds one
user's backlog), ``messageAck`` plus ``messageReceived`` to the recipient's (and the sender's other)
connections for ``sendMessage``, ``messageDelivered`` to the sender for ``ackMessages``, and
``pong`` for ``ping``. Whatever the real server does beyond this is the cost of its features.

``python -m bench.ceiling --port 8123`` (with ``BENCH_CEILING_PENDING=<user id>:<count>:<body
bytes>`` for the offline-drain scenario).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import itertools
import os
from collections import deque
from datetime import UTC, datetime
from typing import Any

import msgspec
import uvicorn
from litestar import Litestar, WebSocket, get, websocket

from entrypoints.server import uvicorn_options
from entrypoints.settings import Settings
from entrypoints.wire import iso_ms

BATCH_MAX = 100
_encoder = msgspec.json.Encoder()
_decode = msgspec.json.decode


def _now() -> str:
    return iso_ms(datetime.now(UTC))


def token_subject(token: str) -> int:
    """The ``sub`` claim of a JWT, read without checking the signature (this is the ceiling)."""
    payload = token.split(".")[1]
    claims = _decode(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return int(claims["sub"])


class Peer:
    """One connection: an outbound queue drained by its own writer task, and the offline batch."""

    def __init__(self, socket: WebSocket[Any, Any, Any], user_id: int, connection_id: int) -> None:
        self.socket = socket
        self.user_id = user_id
        self.connection_id = connection_id
        self.outbox: deque[str] = deque()
        self.wakeup = asyncio.Event()
        self.batch: set[str] = set()

    def push(self, frame: dict[str, Any]) -> None:
        self.outbox.append(_encoder.encode(frame).decode())
        self.wakeup.set()

    async def write_loop(self) -> None:
        while True:
            while not self.outbox:
                self.wakeup.clear()
                await self.wakeup.wait()
            await self.socket.send_text(self.outbox.popleft())


class Backlog:
    """A seeded backlog of pending messages for one user, produced batch by batch."""

    def __init__(self, spec: str) -> None:
        user, count, body_bytes = (int(part) for part in spec.split(":"))
        self.user_id, self.left, self.body_bytes = user, count, body_bytes
        self.sent = 0

    def next_batch(self) -> tuple[list[dict[str, Any]], bool]:
        size = min(BATCH_MAX, self.left)
        batch = []
        for _ in range(size):
            self.sent += 1
            batch.append(
                {
                    "id": f"backlog-{self.sent}",
                    "seq": self.sent,
                    "from": 0,
                    "to": self.user_id,
                    "message": f"pending {self.sent} ".ljust(self.body_bytes, "x"),
                    "clientMsgId": f"seed-{self.sent}",
                    "timestamp": _now(),
                    "deliveredAt": None,
                    "readAt": None,
                }
            )
        self.left -= size
        return batch, self.left > 0


class Relay:
    def __init__(self, backlog: Backlog | None) -> None:
        self.by_user: dict[int, dict[int, Peer]] = {}
        self.routes: dict[str, tuple[int, int]] = {}  # message id → (sender, recipient), until acked
        self.seqs: dict[tuple[int, int], int] = {}
        self.message_ids = itertools.count(1)
        self.connection_ids = itertools.count(1)
        self.backlog = backlog

    def attach(self, peer: Peer) -> None:
        self.by_user.setdefault(peer.user_id, {})[peer.connection_id] = peer

    def detach(self, peer: Peer) -> None:
        peers = self.by_user.get(peer.user_id, {})
        peers.pop(peer.connection_id, None)
        if not peers:
            self.by_user.pop(peer.user_id, None)

    def send_batch(self, peer: Peer) -> None:
        messages: list[dict[str, Any]] = []
        more = False
        if self.backlog is not None and self.backlog.user_id == peer.user_id:
            messages, more = self.backlog.next_batch()
        peer.batch = {m["id"] for m in messages}
        peer.push({"type": "offlineMessages", "messages": messages, "more": more})

    def handle(self, peer: Peer, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        if kind == "sendMessage":
            self._send(peer, frame)
        elif kind == "ackMessages":
            self._ack(peer, frame.get("ids") or [])
        elif kind == "ping":
            peer.push(_with_ref({"type": "pong"}, frame))

    def _send(self, peer: Peer, frame: dict[str, Any]) -> None:
        sender, to = peer.user_id, int(frame["to"])
        pair = (sender, to) if sender < to else (to, sender)
        seq = self.seqs[pair] = self.seqs.get(pair, 0) + 1
        message_id = f"m{next(self.message_ids)}"
        timestamp = _now()
        self.routes[message_id] = (sender, to)
        peer.push(
            _with_ref(
                {
                    "type": "messageAck",
                    "clientMsgId": frame["clientMsgId"],
                    "id": message_id,
                    "seq": seq,
                    "to": to,
                    "timestamp": timestamp,
                },
                frame,
            )
        )
        received = {
            "type": "messageReceived",
            "id": message_id,
            "seq": seq,
            "from": sender,
            "to": to,
            "message": frame["message"],
            "clientMsgId": frame["clientMsgId"],
            "timestamp": timestamp,
        }
        for other in list(self.by_user.get(to, {}).values()):
            other.push(received)
        for other in list(self.by_user.get(sender, {}).values()):
            if other is not peer:
                other.push(received)

    def _ack(self, peer: Peer, ids: list[str]) -> None:
        by_sender: dict[int, list[str]] = {}
        for message_id in ids:
            peer.batch.discard(message_id)
            route = self.routes.get(message_id)
            if route is not None and route[1] == peer.user_id:
                del self.routes[message_id]
                by_sender.setdefault(route[0], []).append(message_id)
        now = _now()
        for sender, delivered in by_sender.items():
            frame = {"type": "messageDelivered", "ids": delivered, "to": peer.user_id, "deliveredAt": now}
            for other in list(self.by_user.get(sender, {}).values()):
                other.push(frame)
        backlog = self.backlog
        if ids and not peer.batch and backlog is not None and backlog.user_id == peer.user_id and backlog.left > 0:
            self.send_batch(peer)


def _with_ref(reply: dict[str, Any], frame: dict[str, Any]) -> dict[str, Any]:
    ref = frame.get("ref")
    if ref is not None:
        reply["ref"] = ref
    return reply


def create_app(backlog: Backlog | None = None) -> Litestar:
    relay = Relay(backlog)
    heartbeat_s = Settings().heartbeat_s

    @get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @websocket("/ws")
    async def ws(socket: WebSocket[Any, Any, Any]) -> None:
        await socket.accept()
        first: dict[str, Any] = dict(await socket.receive())
        try:
            user_id = token_subject(_decode(first.get("text") or "")["token"])
        except (KeyError, ValueError, IndexError, TypeError, msgspec.DecodeError):
            await socket.close(code=4401)
            return
        peer = Peer(socket, user_id, next(relay.connection_ids))
        relay.attach(peer)
        peer.push(
            {
                "type": "ready",
                "userId": user_id,
                "connectionId": str(peer.connection_id),
                "serverTime": _now(),
                "heartbeatS": heartbeat_s,
            }
        )
        relay.send_batch(peer)
        writer = asyncio.ensure_future(peer.write_loop())
        try:
            while True:
                message = await socket.receive()
                if message["type"] == "websocket.disconnect":
                    break
                text = message.get("text")
                if isinstance(text, str):
                    relay.handle(peer, _decode(text))
        finally:
            relay.detach(peer)
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)

    return Litestar(route_handlers=[health, ws], logging_config=None, openapi_config=None)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ceiling", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8123)
    args = parser.parse_args()
    pending = os.environ.get("BENCH_CEILING_PENDING")
    app = create_app(Backlog(pending) if pending else None)
    uvicorn.run(app, host=args.host, port=args.port, **uvicorn_options(Settings(log_level="warning")))


if __name__ == "__main__":
    main()
