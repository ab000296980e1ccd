"""A push gateway for the tests: a real HTTP server on loopback (``http.server`` in a thread) that
checks each request's signature and records it. It can be stopped and started again on the same
port, answer a chosen status, or hold requests until released (a sender killed mid-send)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.integration.support import free_port

SECRET = "push-secret-for-the-tests-0123456789abcdef"


@dataclass(frozen=True)
class Received:
    key: str
    attempt: int
    notification: dict[str, Any]
    signed: bool  # the signature matched the body and timestamp
    status: int  # what the gateway answered

    @property
    def message_ids(self) -> list[str]:
        return [m["id"] for m in self.notification["messages"]]


class Gateway:
    def __init__(self, secret: str = SECRET) -> None:
        self.secret = secret
        self.port = free_port()
        self.received: list[Received] = []
        self.statuses: list[int] = []  # answers to give, first to last; then 200
        self.rejected: list[str] = []  # pushkeys to report rejected in a 200
        self.hold = threading.Event()  # while clear, requests wait (after being recorded)
        self.hold.set()
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/_matrix/push/v1/notify"

    def start(self) -> None:
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                timestamp = self.headers["X-Chat-Timestamp"]
                expected = hmac.new(gateway.secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
                signed = hmac.compare_digest(self.headers["X-Chat-Signature"], "v1=" + expected.hexdigest())
                with gateway._lock:
                    status = gateway.statuses.pop(0) if gateway.statuses else 200
                    gateway.received.append(
                        Received(
                            key=self.headers["Idempotency-Key"],
                            attempt=int(self.headers["X-Chat-Attempt"]),
                            notification=json.loads(body)["notification"],
                            signed=signed,
                            status=status,
                        )
                    )
                gateway.hold.wait(30)
                answer = json.dumps({"rejected": gateway.rejected}).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(answer)))
                    self.end_headers()
                    self.wfile.write(answer)
                except OSError:  # the sender went away (killed)
                    pass

            def log_message(self, format: str, *args: Any) -> None:
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    def accepted(self) -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.status == 200]

    def all(self) -> list[Received]:
        with self._lock:
            return list(self.received)

    async def wait_for(self, count: int, *, accepted: bool = True, within: float = 15) -> list[Received]:
        """At least ``count`` requests (accepted ones only, by default) have arrived."""
        deadline = time.monotonic() + within
        while True:
            got = self.accepted() if accepted else self.all()
            if len(got) >= count:
                return got
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(got)} of {count} pushes arrived: {got}")
            await asyncio.sleep(0.02)
