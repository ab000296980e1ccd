"""Events the use cases publish to live connections (after commit). The edges encode them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from datetime import datetime

    from domain.messages import Message


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageReceived:
    message: Message


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageDelivered:
    """To a sender: these of their messages to ``to`` were delivered."""

    ids: tuple[str, ...]
    to: int
    delivered_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class MessagesRead:
    """``by`` read the conversation with ``peer_id`` (as the receiver sees it) up to ``up_to_seq``."""

    by: int
    peer_id: int
    up_to_seq: int
    read_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class LoginsRevoked:
    """Connections of these logins must close (4403)."""

    sids: frozenset[str]


Event = MessageReceived | MessageDelivered | MessagesRead | LoginsRevoked
