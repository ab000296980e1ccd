"""What a WebSocket connection runs on: the use cases, clocks and settings (:class:`Services`), and
how the live session's calls and reads map onto them — a session per connection, a call's use
case, an offline batch — with the session's counters on the metrics."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from application.accounts import Authenticate
from application.common import Principal
from application.live import actions as a
from application.live.session import LiveSession, SessionLimits
from application.messaging import (
    AcknowledgeDelivery,
    MarkRead,
    PendingFor,
    PendingQuery,
    SendMessage,
    StillPending,
)
from application.ports import Clock, ConnectionHub
from application.presence import Connect, Disconnect, VisibleOnline
from application.social import RelayTyping
from application.users import SearchUsers
from entrypoints.metrics import Metrics
from entrypoints.settings import Settings
from entrypoints.ws.protocol import ReplyEncoder


@dataclass(frozen=True, slots=True, kw_only=True)
class Services:
    """What a connection needs: the use cases, the hub, the clocks and the settings."""

    settings: Settings
    clock: Clock
    monotonic: Callable[[], float]  # seconds: the session's time (rate limits, error window, expiry)
    hub: ConnectionHub
    authenticate: Authenticate
    send_message: SendMessage
    acknowledge: AcknowledgeDelivery
    mark_read: MarkRead
    pending_for: PendingFor
    still_pending: StillPending
    search_users: SearchUsers
    connect: Connect
    disconnect: Disconnect
    visible_online: VisibleOnline
    relay_typing: RelayTyping
    metrics: Metrics
    repush_from_store: bool = False
    # What every session of this app shares, made once (a connection idles on little memory).
    limits: SessionLimits = field(init=False)
    encoder: ReplyEncoder = field(init=False)
    observer: MetricsObserver = field(init=False)

    def __post_init__(self) -> None:
        s = self.settings
        limits = SessionLimits(
            redelivery_s=s.redelivery_s,
            rate_msg_per_s=s.rate_msg_per_s,
            rate_msg_burst=s.rate_msg_burst,
            rate_close_after_s=s.rate_close_after_s,
            max_queued_frames=s.max_queued_frames,
            max_frame_bytes=s.max_frame_bytes,
            repush_from_store=self.repush_from_store,
        )
        object.__setattr__(self, "limits", limits)
        object.__setattr__(self, "encoder", ReplyEncoder(self.clock, s.heartbeat_s))
        object.__setattr__(self, "observer", MetricsObserver(self.metrics))


def session_for(services: Services, principal: Principal, connection_id: str) -> LiveSession:
    """A new connection's session, with the settings' limits, the wire's encoder and the metrics."""
    return LiveSession(
        principal=principal,
        connection_id=connection_id,
        limits=services.limits,
        clock=services.clock,
        encode=services.encoder,
        observer=services.observer,
    )


_OLDEST_PENDING = PendingQuery()


async def run_call(services: Services, session: LiveSession, call: a.Call, now: Callable[[], float]) -> None:
    """Run ``call``'s use case as the session's principal and feed its outcome to ``session`` (at
    ``now()`` once it is known)."""
    s, actor = services, session.principal
    try:
        match call:
            case a.MarkReadCall(read=read):
                await s.mark_read(actor, read)
                session.call_finished(call, now())
            case a.TypingCall(typing=typing):
                await s.relay_typing(actor, typing)
                session.call_finished(call, now())
            case a.SearchCall(query=query):
                session.users_found(call, await s.search_users(actor, query), now())
            case a.OnlineCall(query=online):
                session.online_found(call, await s.visible_online(actor, online), now())
            case a.Reauthenticate(token=token):
                session.reauthenticated(call, await s.authenticate(token), now())
            case a.StillPendingCall(check=check):
                session.still_pending_found(call, await s.still_pending(actor, check), now())
            case a.CatchUpCall():
                session.caught_up(call, await s.pending_for(actor, _OLDEST_PENDING), now())
    except Exception as exc:
        session.call_failed(call, exc, now())


async def read_batch(services: Services, session: LiveSession, read: a.ReadBatch, now: Callable[[], float]) -> None:
    """Read the offline batch ``read`` asks for and feed it (or the error) to ``session``."""
    try:
        batch = await services.pending_for(session.principal, read.query)
    except Exception as exc:
        session.batch_failed(read, exc, now())
    else:
        session.batch_read(read, batch, now())


class MetricsObserver:
    """The session's :class:`~application.live.actions.SessionObserver` on the metrics."""

    __slots__ = ("_metrics",)

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def message_in(self) -> None:
        self._metrics.hot.messages_in += 1

    def rejected(self, code: str) -> None:
        self._metrics.rejected_frames.labels(code).inc()

    def rate_limited(self, bucket: str) -> None:
        self._metrics.rate_limited.labels(bucket).inc()

    def dropped_ephemeral(self, count: int) -> None:
        self._metrics.dropped_ephemeral.inc(count)

    def slow_consumer(self) -> None:
        self._metrics.slow_consumer_closes.inc()

    def drained(self, count: int) -> None:
        self._metrics.hot.drained += count

    def repushed(self, count: int) -> None:
        self._metrics.hot.repushed += count
