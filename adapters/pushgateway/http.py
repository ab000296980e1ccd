"""The operator's push gateway over HTTP (httpx), as ``docs/push-gateway.md`` describes it.

One POST per notification: a JSON body listing the recipient's devices, signed with
HMAC-SHA256 over ``<timestamp>.<body>`` (``X-Chat-Signature: v1=<hex>``, ``X-Chat-Timestamp``:
Unix seconds), with the notification's id as ``Idempotency-Key`` (the same on every attempt,
so the gateway drops repeats). A 2xx answer may name tokens to forget: ``{"rejected": [...]}``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from typing import TYPE_CHECKING, Any

import httpx
import msgspec

from application.ports import GatewayAnswer, Notification, PushGateway

if TYPE_CHECKING:
    from datetime import datetime

    from application.ports import Clock

SIGNATURE_HEADER = "X-Chat-Signature"
TIMESTAMP_HEADER = "X-Chat-Timestamp"
IDEMPOTENCY_HEADER = "Idempotency-Key"
ATTEMPT_HEADER = "X-Chat-Attempt"


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The signature header's value: ``v1=`` and the hex HMAC-SHA256 of ``<timestamp>.<body>``."""
    mac = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256)
    return "v1=" + mac.hexdigest()


def _iso(at: datetime) -> str:
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def payload(n: Notification, *, include_body: bool) -> dict[str, Any]:
    """The request body of ``n`` (``docs/push-gateway.md``)."""
    messages: list[dict[str, Any]] = []
    for m in n.messages:
        item: dict[str, Any] = {
            "id": m.id,
            "conversation": {"peerId": m.sender_id},
            "sender": {"id": m.sender_id, "name": m.sender_name},
            "createdAt": _iso(m.created_at),
        }
        if include_body:
            item["body"] = m.body
        messages.append(item)
    return {
        "notification": {
            "id": n.id,
            "type": "messages",
            "recipientId": n.user_id,
            "prio": "high",
            "counts": {"unread": n.unread, "messages": len(n.messages)},
            "messages": messages,
            "devices": [
                {"id": t.id, "kind": t.kind, "appId": t.app_id, "pushkey": t.token, "label": t.label} for t in n.targets
            ],
        }
    }


class _Answer(msgspec.Struct):
    rejected: list[str] = []


class HttpPushGateway(PushGateway):
    """``client``: the tests' own; otherwise one is made on first use and closed by :meth:`aclose`
    (each app lifespan closes it, the next makes a new one)."""

    def __init__(
        self,
        url: str,
        secret: str,
        clock: Clock,
        *,
        include_body: bool,
        timeout_s: float,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self._url, self._secret, self._clock = url, secret, clock
        self._include_body, self._timeout_s = include_body, timeout_s
        self._client = client

    async def send(self, notification: Notification) -> GatewayAnswer:
        body = msgspec.json.encode(payload(notification, include_body=self._include_body))
        timestamp = int(self._clock.now().timestamp())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "p2p-chat",
            TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: sign(self._secret, timestamp, body),
            IDEMPOTENCY_HEADER: notification.id,
            ATTEMPT_HEADER: str(notification.attempts + 1),
        }
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self._timeout_s, follow_redirects=False)
        try:
            # httpx bounds each phase (connect, write, read) by the timeout; the whole request is
            # bounded too, so a round of sends ends within it, well inside the claims' lease.
            async with asyncio.timeout(self._timeout_s):
                response = await self._client.post(self._url, content=body, headers=headers)
        except (httpx.HTTPError, TimeoutError):
            return GatewayAnswer(status=None, rejected=[])
        rejected: list[str] = []
        if response.is_success and response.content:
            try:
                rejected = msgspec.json.decode(response.content, type=_Answer).rejected
            except msgspec.DecodeError:  # not the JSON described: nothing rejected
                rejected = []
        return GatewayAnswer(status=response.status_code, rejected=rejected)

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()
