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


@dataclass(frozen=True, slots=True, kw_only=True)
class UserOnline:
    """``user_id`` came online (sent only to users who may see their presence)."""

    user_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class UserOffline:
    """``user_id`` went offline; ``last_seen_at`` is when their last connection closed."""

    user_id: int
    last_seen_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class Typing:
    """``from_id`` started or stopped typing to the receiver. Ephemeral: never stored."""

    from_id: int
    is_typing: bool


Event = MessageReceived | MessageDelivered | MessagesRead | LoginsRevoked | UserOnline | UserOffline | Typing
