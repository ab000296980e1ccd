"""A minimal p2p-chat push gateway (docs/push-gateway.md): checks the signature and the timestamp,
drops repeats by Idempotency-Key, answers which tokens it rejects. ``PUSH_SECRET=… python
push_receiver.py``, then CHAT_PUSH_GATEWAY_URL=http://this-host:8080/ and the same CHAT_PUSH_SECRET."""

import hashlib
import hmac
import json
import os
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

SECRET = os.environ.get("PUSH_SECRET", "").encode()
seen: dict[str, float] = {}  # idempotency key → first seen (in production: shared, kept a day)


def verify(secret: bytes, timestamp: str, signature: str, body: bytes, now: float) -> bool:
    mac = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    fresh = timestamp.isdigit() and abs(now - int(timestamp)) <= 300  # refuse replays of old requests
    return fresh and hmac.compare_digest(signature, "v1=" + mac)


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        stamp, signature = self.headers.get("X-Chat-Timestamp", ""), self.headers.get("X-Chat-Signature", "")
        if not verify(SECRET, stamp, signature, body, time.time()):
            return self.answer(401, {})  # not from p2p-chat: it gives the push up (a 4xx is final)
        rejected: list[str] = []  # the tokens APNs/FCM answer are gone; p2p-chat deletes them
        key = self.headers["Idempotency-Key"]
        if key not in seen:  # a repeat (our earlier answer was lost) is answered, not pushed again
            seen[key] = time.time()
            for device in json.loads(body)["notification"]["devices"]:
                print("push to", device["kind"], device["appId"], device["pushkey"][:12])  # APNs/FCM here
        return self.answer(200, {"rejected": rejected})

    def answer(self, status: int, payload: dict[str, object]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


if __name__ == "__main__":
    HTTPServer(("0.0.0.0", 8080), Receiver).serve_forever()  # noqa: S104 - a gateway listens for p2p-chat
