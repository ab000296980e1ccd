"""The delivery rules: what is pending, when a re-push is due, who gets which event.

Pure decisions; the use cases and the WebSocket edge perform them.

* **Pending** = addressed to the user, not withheld, not yet acknowledged by any of their devices.
* A connection that was pushed a pending message and has not acknowledged it within the
  redelivery interval gets it pushed again, when that interval has passed (:class:`InFlight`).
* On a send, the recipient's connections get the message unless it is withheld; the sender's
  *other* connections always get it (it is in the sender's history).
* Acknowledgements and reads produce ``messageDelivered`` for the newly delivered ids only,
  grouped by sender.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable

    from domain.messages import Message


@dataclass(frozen=True, slots=True, kw_only=True)
class Delivered:
    """A message that just became delivered: who sent it and to whom."""

    id: str
    sender_id: int
    recipient_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class SendFanout:
    """Who gets a freshly stored message: ``recipient`` (None when withheld) and the sender's
    connections other than ``skip_connection``."""

    recipient: int | None
    sender: int
    skip_connection: str | None


def fanout_of(message: Message, sending_connection: str | None) -> SendFanout:
    return SendFanout(
        recipient=None if message.withheld else message.recipient_id,
        sender=message.sender_id,
        skip_connection=sending_connection,
    )


def receipts_by_sender(delivered: Iterable[Delivered]) -> dict[int, list[str]]:
    """Newly delivered ids grouped by the sender who should hear of them, in the given order."""
    grouped: dict[int, list[str]] = {}
    for item in delivered:
        grouped.setdefault(item.sender_id, []).append(item.id)
    return grouped


@dataclass(kw_only=True, slots=True)
class InFlight:
    """What one connection was pushed and has not acknowledged, with when it was pushed (in
    milliseconds of the connection's monotonic clock).

    Also tracks the offline batch being drained: the next batch is due once every id of the
    current batch was acknowledged (by this device or, as the store tells, by another one).
    """

    redelivery_ms: float
    pushed: dict[str, float] = field(default_factory=dict)
    batch: set[str] = field(default_factory=set)
    more_after_batch: bool = False

    def record_push(self, ids: Iterable[str], now: float) -> None:
        for message_id in ids:
            self.pushed[message_id] = now

    def start_batch(self, ids: Iterable[str], more: bool, now: float) -> None:
        self.batch = set(ids)
        self.more_after_batch = more
        self.record_push(self.batch, now)

    def settle(self, ids: Iterable[str]) -> None:
        """Forget ids that are no longer pending (acknowledged here or elsewhere)."""
        for message_id in ids:
            self.pushed.pop(message_id, None)
            self.batch.discard(message_id)

    def next_batch_due(self) -> bool:
        """True once, when the current batch is fully acknowledged and more were pending."""
        if self.more_after_batch and not self.batch:
            self.more_after_batch = False
            return True
        return False

    def due_for_repush(self, now: float) -> list[str]:
        """Ids pushed at least one redelivery interval ago, oldest first."""
        cutoff = now - self.redelivery_ms
        return [mid for mid, at in sorted(self.pushed.items(), key=lambda kv: kv[1]) if at <= cutoff]

    def next_due(self) -> float | None:
        """When the oldest push becomes due for a re-push; None when nothing is in flight."""
        return min(self.pushed.values()) + self.redelivery_ms if self.pushed else None
