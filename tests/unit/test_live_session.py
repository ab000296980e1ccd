"""The live session's rules, driven by hand: no socket, no event loop, time in milliseconds."""

from __future__ import annotations

from datetime import timedelta

from application.common import Principal
from application.errors import WsErrorCode
from application.events import LoginsRevoked, MessageReceived, Typing, UserOnline
from application.live.actions import (
    Acked,
    CatchUpCall,
    CloseCode,
    CloseRequest,
    ErrorReply,
    FrameKind,
    MarkReadCall,
    OnlineCall,
    OnlineNow,
    PipelinedAck,
    PipelinedSend,
    Pong,
    ReadBatch,
    Ready,
    Reauthenticate,
    SearchCall,
    StillPendingCall,
    TypingCall,
    UsersFound,
    WakeAt,
)
from application.messaging import Acknowledge, Batch, PendingCheck, PendingQuery, Read
from application.ports import StoreUnavailableError
from application.presence import OnlineQuery
from application.social import TypingNotice
from application.users import SearchQuery
from domain.errors import BusyError, InvalidTokenError, NotFoundError, RateLimitedError, UserNotFoundError
from domain.users import UserCard
from tests.unit.fakes import EPOCH
from tests.unit.live_session_support import PEER, USER, Driver, batch, message

# -- start-up -----------------------------------------------------------------------------------


def test_ready_then_the_first_batch_then_what_was_published_meanwhile() -> None:
    d = Driver()
    d.session.start(d.now)
    read = d.one(ReadBatch)
    d.session.event_published(UserOnline(user_id=PEER), d.now)
    d.session.event_published(MessageReceived(message=message(7)), d.now)
    assert not d.reading()
    assert d.frames() == []  # nothing is written before the first batch is there
    d.session.batch_read(read, batch(1, 2, more=False), d.now)
    frames = d.frames()
    assert [type(f).__name__ for f in frames] == ["Ready", "Batch", "UserOnline", "MessageReceived"]
    assert frames[0] == Ready(None, USER, "conn-1")
    assert d.reading()
    assert set(d.session.inflight.pushed) == {"m1", "m2", "m7"}
    assert (d.counts.drained_count, d.counts.repushed_count) == (2, 0)  # m7 was pushed live


def test_ready_echoes_the_ref_of_the_auth_frame_that_authenticated_the_socket() -> None:
    d = Driver()
    d.session.start(d.now, "hello")
    d.session.batch_read(d.one(ReadBatch), batch(1, 1, more=False), d.now)
    assert d.frames()[0] == Ready("hello", USER, "conn-1")


def test_a_failed_first_batch_closes_1011() -> None:
    d = Driver()
    d.session.start(d.now)
    read = d.one(ReadBatch)
    d.session.batch_failed(read, RuntimeError("database down"), d.now)
    assert d.closed() == CloseRequest(CloseCode.INTERNAL, "unexpected server error")
    assert d.actions() == [d.closed()]


def test_a_first_batch_the_unavailable_database_failed_closes_1013() -> None:
    d = Driver()
    d.session.start(d.now)
    d.session.batch_failed(d.one(ReadBatch), BusyError(1, "the database is unavailable, retry shortly"), d.now)
    assert d.closed() == CloseRequest(CloseCode.TRY_AGAIN_LATER, "cannot read pending messages now; try again later")
    assert d.actions() == [d.closed()]


# -- reply order ---------------------------------------------------------------------------------


def test_pipelined_sends_start_in_order_and_are_answered_in_order() -> None:
    d = Driver()
    d.start()
    d.frames()
    for ref in ("a", "b", "c"):
        d.send(ref)
    first, second, third = d.begun()
    assert [e.ref for e in (first, second, third)] == ["a", "b", "c"]
    assert isinstance(first, PipelinedSend)
    assert (first.actor.user_id, first.send.to, first.send.connection_id) == (USER, PEER, "conn-1")
    d.commit(third)
    d.commit(second)
    assert d.frames() == []  # the first is not answered yet
    d.session.write_failed(first, UserNotFoundError(PEER), d.now)
    assert d.kinds() == ["error:a:not_found", "ack:b", "ack:c"]
    assert d.counts.messages_in == 2


def test_a_duplicate_send_is_acknowledged_but_not_counted() -> None:
    d = Driver()
    d.start()
    d.send("a")
    (entry,) = d.begun()
    d.commit(entry, duplicate=True)
    assert [type(f) for f in d.frames()[2:]] == [Acked]
    assert d.counts.messages_in == 0


def test_acks_are_pipelined_with_sends_and_an_unexpected_failure_is_internal() -> None:
    d = Driver()
    d.start()
    d.frames()
    d.send("s")
    d.session.ack_messages("k", ["x"], d.now)
    d.session.ack_messages("bad", [], d.now)
    send, ack, bad = d.begun()
    assert isinstance(ack, PipelinedAck)
    assert (ack.actor.user_id, ack.ack) == (USER, Acknowledge(ids=["x"]))
    d.session.write_failed(bad, ValueError("boom"), d.now)
    d.commit(ack)
    d.commit(send)
    assert d.kinds() == ["ack:s", "error:bad:internal"]  # a committed ack has no reply


def test_a_full_pipeline_stops_reading_until_its_head_is_answered() -> None:
    d = Driver(max_pipelined=2)
    d.start()
    d.frames()
    for ref in ("a", "b", "c"):
        d.send(ref)
    a, b = d.begun()
    assert not d.reading()  # "c" waits for a slot
    d.commit(b)
    assert not d.reading()
    assert d.begun() == []
    d.commit(a)
    (c,) = d.begun()
    assert c.ref == "c"
    assert d.reading()
    d.commit(c)
    assert d.kinds() == ["ack:a", "ack:b", "ack:c"]


def test_a_close_interrupts_a_frame_waiting_for_a_pipeline_slot() -> None:
    d = Driver(max_pipelined=1)
    d.start()
    d.send("a")
    d.send("b")
    (a,) = d.begun()
    d.session.close(CloseCode.GOING_AWAY, "server shutting down")
    assert d.actions() == [CloseRequest(CloseCode.GOING_AWAY, "server shutting down")]
    d.commit(a)
    assert d.begun() == []  # "b" never starts
    assert not d.reading()


def test_other_frames_wait_until_the_pipelined_ones_before_them_are_answered() -> None:
    d = Driver()
    d.start()
    d.frames()
    d.send("a")
    (a,) = d.begun()
    d.session.search_users("s", "bo", None, d.now)
    assert d.actions() == []
    assert not d.reading()
    d.commit(a)
    call = d.one(SearchCall)
    assert call == SearchCall("s", SearchQuery(query="bo", limit=None))
    assert not d.reading()  # until the search is answered
    d.session.users_found(call, [UserCard(id=PEER, name="Bob")], d.now)
    assert d.reading()
    frames = d.frames()
    assert [type(f) for f in frames] == [Acked, UsersFound]
    assert frames[1] == UsersFound("s", "bo", [UserCard(id=PEER, name="Bob")])


def test_errors_for_binary_oversized_and_bad_frames_wait_their_turn() -> None:
    d = Driver()
    d.start()
    d.frames()
    d.send("a")
    (a,) = d.begun()
    d.session.binary_frame(d.now)
    assert not d.reading()
    d.commit(a)
    d.session.oversized_frame(None, None, d.now)
    d.session.bad_frame("r", WsErrorCode.UNKNOWN_TYPE, "unknown frame type 'x'", d.now)
    frames = d.frames()
    assert [type(f) for f in frames] == [Acked, ErrorReply, ErrorReply, ErrorReply]
    assert frames[1:] == [
        ErrorReply(None, WsErrorCode.BAD_REQUEST, "binary frames are not supported; send JSON text frames"),
        ErrorReply(None, WsErrorCode.TOO_LARGE, "frame larger than 1024 bytes"),
        ErrorReply("r", WsErrorCode.UNKNOWN_TYPE, "unknown frame type 'x'"),
    ]
    assert d.counts.rejections == {"bad_request": 1, "too_large": 1, "unknown_type": 1}


def test_every_error_answering_a_send_carries_its_client_msg_id_and_others_none() -> None:
    d = Driver(rate=0.001, burst=2)
    d.start()
    d.frames()
    d.send("a")
    d.send("b")
    d.session.ack_messages("k", ["x"], d.now)
    a, b, k = d.begun()
    d.session.write_failed(a, UserNotFoundError(PEER), d.now)  # the use case refused it
    d.session.write_failed(b, ValueError("boom"), d.now)  # a server bug
    d.session.write_failed(k, ValueError("boom"), d.now)
    d.send("c")  # over the rate
    d.session.bad_frame("d", WsErrorCode.BAD_REQUEST, "Expected `int`", d.now, "cid-d")  # undecodable
    d.session.oversized_frame("e", "cid-e", d.now)
    d.session.bad_frame(None, WsErrorCode.BAD_REQUEST, "not a JSON object", d.now)
    assert [(f.ref, f.code, f.client_msg_id) for f in d.frames() if isinstance(f, ErrorReply)] == [
        ("a", WsErrorCode.NOT_FOUND, "cid-a"),
        ("b", WsErrorCode.INTERNAL, "cid-b"),
        ("k", WsErrorCode.INTERNAL, None),
        ("c", WsErrorCode.RATE_LIMITED, "cid-c"),
        ("d", WsErrorCode.BAD_REQUEST, "cid-d"),
        ("e", WsErrorCode.TOO_LARGE, "cid-e"),
        (None, WsErrorCode.BAD_REQUEST, None),
    ]


def test_a_ping_waits_its_turn_too() -> None:
    d = Driver()
    d.start()
    d.frames()
    d.send("a")
    (a,) = d.begun()
    d.session.ping("p", d.now)
    d.commit(a)
    assert d.frames()[1] == Pong("p")


def test_a_write_dropped_at_shutdown_is_answered_send_it_again() -> None:
    d = Driver()
    d.start()
    d.frames()
    d.send("a")
    d.send("b")
    a, b = d.begun()
    d.session.write_dropped(a, d.now)
    d.commit(b)
    frames = d.frames()
    assert frames[0] == ErrorReply("a", WsErrorCode.INTERNAL, "the server is shutting down; send it again", "cid-a")
    assert [type(f) for f in frames] == [ErrorReply, Acked]


def test_unanswered_writes_keep_later_answers_back() -> None:
    d = Driver()
    d.start()
    d.frames()
    d.send("a")
    d.send("b")
    _, b = d.begun()
    d.commit(b)
    assert d.frames() == []


# -- calls ---------------------------------------------------------------------------------------


def test_calls_for_mark_read_typing_and_online_users() -> None:
    d = Driver()
    d.start()
    d.frames()
    d.session.mark_read("m", PEER, 3, d.now)
    mark = d.one(MarkReadCall)
    assert mark == MarkReadCall("m", Read(peer_id=PEER, up_to_seq=3, connection_id="conn-1"))
    d.session.call_finished(mark, d.now)
    d.session.typing("t", PEER, True, d.now)
    typing = d.one(TypingCall)
    assert typing == TypingCall("t", TypingNotice(to=PEER, is_typing=True))
    d.session.call_finished(typing, d.now)
    d.session.get_online_users("o", [PEER], d.now)
    online = d.one(OnlineCall)
    assert online == OnlineCall("o", OnlineQuery(user_ids=[PEER]))
    d.session.online_found(online, [PEER], d.now)
    assert d.frames() == [OnlineNow("o", [PEER])]
    assert d.reading()


def test_a_failed_call_is_answered_with_its_code_and_an_unauthenticated_one_closes_4401() -> None:
    d = Driver()
    d.start()
    d.frames()
    d.session.mark_read("m", PEER, 3, d.now)
    mark = d.one(MarkReadCall)
    d.session.call_failed(mark, NotFoundError("no conversation"), d.now)
    assert d.frames() == [ErrorReply("m", WsErrorCode.NOT_FOUND, "no conversation")]
    d.session.auth("again", "bad-token", d.now)
    auth = d.one(Reauthenticate)
    d.session.call_failed(auth, InvalidTokenError(), d.now)
    assert d.closed() == CloseRequest(CloseCode.UNAUTHENTICATED, "authentication failed")


# -- auth, expiry, revocation, closing ------------------------------------------------------------


def test_the_token_expiry_closes_4401_at_its_time() -> None:
    d = Driver(expires_in_s=60)
    assert d.start() == [WakeAt(60_000)]
    d.advance(59_999)
    d.session.time_passed(d.now)
    assert d.closed() is None
    assert d.actions() == [WakeAt(60_000)]  # woken early: wake me again
    d.advance(1)
    d.session.time_passed(d.now)
    assert d.closed() == CloseRequest(CloseCode.UNAUTHENTICATED, "token expired")


def test_a_re_auth_moves_the_expiry_and_answers_ready_with_its_ref() -> None:
    d = Driver(expires_in_s=60)
    d.start()
    d.frames()
    d.advance(30_000)
    d.session.auth("re", "token", d.now)
    auth = d.one(Reauthenticate)
    assert auth == Reauthenticate("re", "token")
    renewed = Principal(user_id=USER, sid="sid-1", expires_at=d.clock.now() + timedelta(seconds=100))
    d.session.reauthenticated(auth, renewed, d.now)
    assert d.actions() == [WakeAt(130_000)]
    assert d.frames() == [Ready("re", USER, "conn-1")]
    d.advance(30_000)  # the old expiry
    d.session.time_passed(d.now)
    assert d.closed() is None


def test_a_re_auth_with_a_token_of_another_user_closes_4401() -> None:
    d = Driver()
    d.start()
    d.session.auth("re", "token", d.now)
    auth = d.one(Reauthenticate)
    d.session.reauthenticated(auth, Principal(user_id=PEER, sid="other"), d.now)
    assert d.closed() == CloseRequest(CloseCode.UNAUTHENTICATED, "a token of another user")
    assert d.session.principal.user_id == USER


def test_a_revocation_of_our_login_closes_4403_and_of_another_does_nothing() -> None:
    d = Driver(sid="mine")
    d.start()
    d.frames()
    d.session.event_published(LoginsRevoked(sids=frozenset({"other"})), d.now)
    assert d.closed() is None
    assert d.frames() == []
    d.session.event_published(LoginsRevoked(sids=frozenset({"other", "mine"})), d.now)
    assert d.closed() == CloseRequest(CloseCode.REVOKED, "login revoked")


def test_the_first_close_request_wins() -> None:
    d = Driver()
    d.start()
    d.session.close(CloseCode.REVOKED, "login revoked")
    d.session.close(CloseCode.GOING_AWAY, "server shutting down")
    d.session.socket_failed()
    assert d.actions() == [CloseRequest(CloseCode.REVOKED, "login revoked")]
    assert d.closed() == CloseRequest(CloseCode.REVOKED, "login revoked")
    assert not d.reading()


# -- limits --------------------------------------------------------------------------------------


def test_refusals_lasting_the_streak_s_seconds_close_4429() -> None:
    d = Driver(rate=0.001, burst=2, close_after_s=3)
    d.start()
    d.frames()
    d.now = 1000.0  # the buckets' and the streak's clock
    for ref in ("a", "b", "c"):
        d.send(ref)
    a, b = d.begun()  # "c" is refused: its error waits for a and b
    d.commit(a)
    d.commit(b)
    assert d.kinds() == ["ack:a", "ack:b", "error:c:rate_limited"]
    for now, ref in ((1900, "d"), (2800, "e"), (3700, "f"), (3999, "g")):  # never a second's pause
        d.now = now
        d.send(ref)
    assert d.closed() is None  # refused for 2.999 s
    d.now = 4000.0
    d.send("h")
    assert d.closed() == CloseRequest(CloseCode.RATE_LIMITED, "rate limited for too long")
    assert d.counts.limited == {"message": 6}


def test_a_sustained_flood_closes_4429_exactly_when_the_refusals_have_lasted_ten_seconds() -> None:
    d = Driver(rate=1, burst=1, close_after_s=10)
    d.start()
    d.frames()
    d.now, first_refusal, closed_at = 750.0, None, None
    for n in range(200):  # a frame every 125 ms; one in eight finds a token
        d.send(f"s{n}")
        for entry in d.begun():
            d.commit(entry)
        d.outgoing()
        if first_refusal is None and d.counts.limited:
            first_refusal = d.now
        if d.closed() is not None:
            closed_at = d.now
            break
        d.now += 125
    # Not after refusals in ten calendar seconds (0.875 s … 9.0 s: 8.1 s), but after ten seconds.
    assert (first_refusal, closed_at) == (875.0, 10_875.0)


def test_a_refused_send_is_answered_in_its_turn_and_a_second_without_refusals_ends_the_streak() -> None:
    d = Driver(rate=1, burst=1, close_after_s=2)
    d.start()
    d.frames()
    d.now = 1000.0
    d.send("a")
    d.send("b")
    (a,) = d.begun()
    assert d.frames() == []  # b's refusal waits for a's answer
    d.commit(a)
    frames = d.frames()
    assert [type(f) for f in frames] == [Acked, ErrorReply]
    assert frames[1] == ErrorReply("b", WsErrorCode.RATE_LIMITED, "too many message frames; slow down", "cid-b")
    d.now = 2000.0  # a second without a refusal: a new streak starts
    d.send("c")
    d.send("d")
    d.commit(d.begun()[0])
    d.now = 2750.0
    d.send("e")  # refused for 0.75 s since 2.0 (1.75 s since the first refusal)
    assert d.closed() is None
    d.now = 4000.0  # two seconds since the streak began, but 1.25 s since its last refusal
    d.send("f")
    d.send("g")
    d.commit(d.begun()[0])
    assert d.closed() is None


def test_typing_and_search_have_their_own_quarter_sized_buckets() -> None:
    d = Driver(rate=4, burst=4)
    d.start()
    d.frames()
    d.session.typing(None, PEER, True, d.now)
    typing = d.one(TypingCall)
    d.session.call_finished(typing, d.now)
    d.session.typing("t2", PEER, True, d.now)
    d.session.search_users("s1", "x", None, d.now)
    search = d.one(SearchCall)
    d.session.users_found(search, [], d.now)
    d.session.search_users("s2", "x", None, d.now)
    assert d.actions() == []
    assert d.kinds() == ["error:t2:rate_limited", "UsersFound", "error:s2:rate_limited"]
    assert d.counts.limited == {"typing": 1, "search": 1}


def test_more_than_twenty_errors_in_ten_seconds_close_1008_but_rate_limits_do_not_count() -> None:
    d = Driver(rate=0.001, burst=1, max_queued=100)
    d.start()
    d.send("ok")
    d.commit(d.begun()[0])
    for _ in range(30):  # refused: not counted
        d.send("x")
    assert d.closed() is None
    for n in range(20):
        d.advance(100)
        d.session.bad_frame(None, WsErrorCode.BAD_REQUEST, f"bad {n}", d.now)
    assert d.closed() is None
    d.session.bad_frame(None, WsErrorCode.BAD_REQUEST, "one too many", d.now)
    assert d.closed() == CloseRequest(CloseCode.POLICY, "too many errors")


def test_the_servers_own_failures_do_not_count_toward_1008() -> None:
    """A database outage answers every send ``internal`` (resend); it is not the client's doing,
    so it must not close the socket 1008 (issue 15: backends terminated under load)."""
    d = Driver(rate=1000, burst=100, max_queued=100)
    d.start()
    for n in range(30):
        d.send(f"s{n}")
        (entry,) = d.begun()
        d.session.write_failed(entry, StoreUnavailableError("connection lost"), d.now)
    assert d.kinds().count("error:s29:internal") == 1
    assert d.closed() is None


def test_errors_older_than_ten_seconds_leave_the_window() -> None:
    d = Driver()
    d.start()
    for n in range(20):
        d.session.bad_frame(None, WsErrorCode.BAD_REQUEST, f"bad {n}", d.now)
    d.advance(10_000)
    d.session.bad_frame(None, WsErrorCode.BAD_REQUEST, "later", d.now)
    assert d.closed() is None


# -- outbox --------------------------------------------------------------------------------------


def test_typing_is_dropped_first_then_a_full_outbox_of_messages_closes_4008_counted_once() -> None:
    d = Driver(max_queued=10)
    d.start()
    d.session.next_frame()  # ``ready`` is being written; offlineMessages waits
    for _ in range(30):
        d.session.event_published(Typing(from_id=PEER, is_typing=True), d.now)
    assert d.counts.dropped == 30 - 9
    d.session.event_published(MessageReceived(message=message(1)), d.now)  # typing goes, the message stays
    assert d.counts.dropped == 30
    assert d.closed() is None
    for n in range(2, 10):  # only messages left
        d.session.event_published(MessageReceived(message=message(n)), d.now)
    assert d.closed() is None
    d.session.event_published(MessageReceived(message=message(10)), d.now)  # over the bound
    d.session.event_published(MessageReceived(message=message(11)), d.now)
    assert d.closed() == CloseRequest(CloseCode.SLOW_CONSUMER, "slow consumer: outbound queue full")
    assert d.counts.slow_consumers == 1
    queued = d.outgoing()
    assert [q.kind for q in queued] == [FrameKind.OTHER] + [FrameKind.MESSAGE] * 9


def test_a_message_to_us_is_in_flight_and_stamped_one_of_ours_from_another_device_is_not() -> None:
    d = Driver()
    d.start()
    d.outgoing()
    to_us, ours = message(1), message(2, to=PEER, at=EPOCH + timedelta(seconds=1))
    d.session.event_published(MessageReceived(message=to_us), d.now)
    d.session.event_published(MessageReceived(message=ours), d.now)
    d.session.event_published(Typing(from_id=PEER, is_typing=False), d.now)
    first, second, third = d.outgoing()
    assert (first.kind, first.stamp) == (FrameKind.MESSAGE, EPOCH)
    assert (second.kind, second.stamp) == (FrameKind.OTHER, None)
    assert third.kind is FrameKind.EPHEMERAL
    assert set(d.session.inflight.pushed) == {"m1"}


# -- offline batches -----------------------------------------------------------------------------


def _drain_start(d: Driver, first: Batch) -> ReadBatch:
    """Start with ``first`` (more to come); the read-ahead it asks for."""
    d.session.start(d.now)
    read = d.one(ReadBatch)
    d.session.batch_read(read, first, d.now)
    wake, ahead = d.actions()
    assert wake == WakeAt(d.now + d.session.inflight.redelivery_ms)  # to re-push the batch if unacknowledged
    assert isinstance(ahead, ReadBatch)
    assert ahead.ahead
    assert ahead.query == PendingQuery(excluding=[m.id for m in first.messages])
    d.frames()
    return ahead


def test_the_ack_of_the_last_id_sends_the_batch_read_ahead_at_once_and_reads_the_next() -> None:
    d = Driver()
    ahead = _drain_start(d, batch(1, 3, more=True))
    d.session.batch_read(ahead, batch(4, 6, more=True), d.now)
    assert d.frames() == []  # not before the current batch is acknowledged
    d.session.ack_messages("k1", ["m1", "m2"], d.now)
    d.commit(d.begun()[0])
    assert d.frames() == []
    d.session.ack_messages("k2", ["m3"], d.now)
    d.commit(d.begun()[0])
    assert d.frames() == [batch(4, 6, more=True)]
    following = d.one(ReadBatch)
    assert following == ReadBatch(PendingQuery(excluding=["m4", "m5", "m6"]), ahead=True)
    assert d.session.inflight.batch == {"m4", "m5", "m6"}


def test_what_was_acknowledged_while_the_next_batch_was_read_ahead_is_left_out() -> None:
    d = Driver()
    ahead = _drain_start(d, batch(1, 2, more=True))
    d.session.event_published(MessageReceived(message=message(3)), d.now)  # pushed live meanwhile
    d.session.ack_messages("k", ["m1", "m2", "m3"], d.now)
    d.commit(d.begun()[0])
    d.frames()
    d.session.batch_read(ahead, batch(3, 4, more=False), d.now)  # read before m3's ack committed
    assert d.frames() == [batch(4, 4, more=False)]
    assert d.actions() == []  # no more: nothing read ahead


def test_answers_after_the_last_ack_wait_for_the_batch_still_being_read() -> None:
    d = Driver()
    ahead = _drain_start(d, batch(1, 1, more=True))
    d.session.ack_messages("k", ["m1"], d.now)
    d.send("s")
    ack, send = d.begun()
    d.commit(ack)
    d.commit(send)
    assert d.frames() == []  # the messageAck waits for offlineMessages
    d.session.batch_read(ahead, batch(2, 2, more=False), d.now)
    assert [type(f) for f in d.frames()] == [Batch, Acked]


def test_a_failed_read_ahead_is_read_again_when_the_batch_is_due() -> None:
    d = Driver()
    ahead = _drain_start(d, batch(1, 1, more=True))
    d.session.ack_messages("k", ["m1"], d.now)
    d.commit(d.begun()[0])
    d.session.batch_failed(ahead, RuntimeError("lost connection"), d.now)
    again = d.one(ReadBatch)
    assert again == ReadBatch(PendingQuery(), ahead=False)
    d.session.batch_read(again, batch(2, 2, more=False), d.now)
    assert d.frames() == [batch(2, 2, more=False)]


def test_a_failed_next_batch_answers_the_acknowledgement_that_asked_for_it() -> None:
    d = Driver()
    ahead = _drain_start(d, batch(1, 1, more=True))
    d.session.batch_failed(ahead, RuntimeError("lost connection"), d.now)  # before it is due
    d.session.ack_messages("k", ["m1"], d.now)
    d.commit(d.begun()[0])
    read = d.one(ReadBatch)
    assert read == ReadBatch(PendingQuery(), ahead=False)
    d.session.batch_failed(read, NotFoundError("gone"), d.now)
    assert d.frames() == [ErrorReply("k", WsErrorCode.NOT_FOUND, "gone")]


# -- re-push -------------------------------------------------------------------------------------


def test_a_message_not_acknowledged_is_pushed_again_exactly_redelivery_s_after_its_push() -> None:
    d = Driver(redelivery_s=10)
    d.start()
    d.outgoing()
    d.session.event_published(MessageReceived(message=message(1)), d.now)
    assert d.actions() == [WakeAt(10_000)]  # one wake, when the oldest push comes due
    d.advance(3_000)
    d.session.event_published(MessageReceived(message=message(2)), d.now)
    assert d.actions() == []  # per message: nothing more
    d.outgoing()
    d.advance(6_999)
    d.session.time_passed(d.now)  # woken early: nothing is due yet
    assert d.actions() == [WakeAt(10_000)]
    d.advance(1)
    d.session.time_passed(d.now)
    check = d.one(StillPendingCall)
    assert check == StillPendingCall(PendingCheck(ids=["m1"]))  # m2 is not due before 13 s
    d.session.still_pending_found(check, {"m1"}, d.now)
    assert d.frames() == [MessageReceived(message=message(1))]
    assert d.actions() == [WakeAt(13_000)]
    d.advance(3_000)
    d.session.time_passed(d.now)
    check = d.one(StillPendingCall)
    assert check == StillPendingCall(PendingCheck(ids=["m2"]))
    d.session.still_pending_found(check, set(), d.now)  # another device acknowledged m2
    assert d.frames() == []
    assert set(d.session.inflight.pushed) == {"m1"}
    assert d.counts.repushed_count == 1
    assert d.actions() == [WakeAt(20_000)]  # m1 again, a redelivery interval after its re-push


def test_re_push_rounds_start_at_least_a_tenth_of_the_interval_apart() -> None:
    d = Driver(redelivery_s=10)
    d.start()
    for n in range(1, 4):  # into a socket that never acknowledges: 0 s, 0.5 s, 1.5 s
        d.session.event_published(MessageReceived(message=message(n)), d.now)
        d.advance(500 * n)
    d.actions()
    d.advance(10_000 - d.now)
    d.session.time_passed(d.now)
    check = d.one(StillPendingCall)
    assert check.check.ids == ["m1"]
    d.session.still_pending_found(check, {"m1"}, d.now)
    assert d.actions() == [WakeAt(11_000)]  # m2 is due at 10.5 s: it waits for 11 s
    d.advance(1_000)
    d.session.time_passed(d.now)
    check = d.one(StillPendingCall)
    assert check.check.ids == ["m2"]
    d.session.still_pending_found(check, {"m2"}, d.now)
    assert d.actions() == [WakeAt(12_000)]  # m3 is due at 11.5 s: it waits for 12 s


def test_an_acknowledged_message_is_not_pushed_again_and_nothing_in_flight_needs_no_wake() -> None:
    d = Driver()
    d.start()
    d.session.event_published(MessageReceived(message=message(1)), d.now)
    assert d.actions() == [WakeAt(10_000)]
    d.session.ack_messages("k", ["m1"], d.now)
    d.commit(d.begun()[0])
    d.advance(10_000)
    d.session.time_passed(d.now)
    assert d.actions() == []  # no round, and no further wake


def test_the_token_expiry_and_the_re_push_share_one_wake() -> None:
    d = Driver(expires_in_s=60)
    assert d.start() == [WakeAt(60_000)]
    d.session.event_published(MessageReceived(message=message(1)), d.now)
    assert d.actions() == [WakeAt(10_000)]  # replaces the wake at 60 s
    d.advance(10_000)
    d.session.time_passed(d.now)
    check, wake = d.actions()
    assert isinstance(check, StillPendingCall)
    assert wake == WakeAt(60_000)  # the expiry again, while the round runs
    d.session.still_pending_found(check, set(), d.now)
    assert d.actions() == []  # nothing left in flight: no earlier wake
    d.advance(50_000)
    d.session.time_passed(d.now)
    assert d.closed() == CloseRequest(CloseCode.UNAUTHENTICATED, "token expired")
    assert d.actions() == [d.closed()]


def test_one_re_push_round_at_a_time_and_a_failed_round_is_tried_again_redelivery_s_later() -> None:
    d = Driver(redelivery_s=1, repush_from_store=True)
    d.start()
    d.session.event_published(MessageReceived(message=message(1)), d.now)
    assert d.actions() == [WakeAt(1_000)]
    d.advance(1_000)
    d.session.time_passed(d.now)
    check = d.one(StillPendingCall)
    d.session.catch_up(d.now)  # the sweep's round waits for this one
    assert d.actions() == []
    d.session.call_failed(check, RuntimeError("database down"), d.now)
    assert d.actions() == [WakeAt(2_000)]
    d.advance(1_000)
    d.session.time_passed(d.now)
    assert d.actions() == [StillPendingCall(PendingCheck(ids=["m1"]))]


def test_catch_up_from_the_store_pushes_what_pub_sub_lost_since_connecting() -> None:
    d = Driver(redelivery_s=10, repush_from_store=True)
    d.advance(1_000)  # connected at EPOCH
    d.start()
    d.outgoing()
    d.advance(20_000)
    d.session.catch_up(d.now)
    catch_up = d.one(CatchUpCall)
    assert catch_up == CatchUpCall(EPOCH + timedelta(seconds=11))
    before = message(1, at=EPOCH - timedelta(seconds=1))
    lost = message(2, at=EPOCH + timedelta(seconds=5))
    too_new = message(3, at=EPOCH + timedelta(seconds=15))
    d.session.caught_up(catch_up, Batch(messages=[before, lost, too_new], more=False), d.now)
    assert d.frames() == [MessageReceived(message=lost)]
    assert d.actions() == [WakeAt(31_000)]  # pushed: re-pushed a redelivery interval later if unacknowledged


def test_a_re_push_round_sends_the_next_batch_when_another_device_acknowledged_the_current_one() -> None:
    d = Driver(redelivery_s=1)
    ahead = _drain_start(d, batch(1, 1, more=True))
    d.session.batch_read(ahead, batch(2, 2, more=False), d.now)
    d.advance(1_000)
    d.session.time_passed(d.now)
    check = d.one(StillPendingCall)
    d.session.still_pending_found(check, set(), d.now)  # m1 was acknowledged elsewhere
    assert d.frames() == [batch(2, 2, more=False)]
    assert d.actions() == [WakeAt(2_000)]  # m2's re-push


def test_a_batch_read_ahead_left_empty_by_what_was_acknowledged_meanwhile_reads_the_next_at_once() -> None:
    d = Driver()
    ahead = _drain_start(d, batch(1, 1, more=True))
    d.session.event_published(MessageReceived(message=message(2)), d.now)  # pushed live meanwhile
    d.session.ack_messages("k", ["m1", "m2"], d.now)
    d.commit(d.begun()[0])
    d.frames()
    d.session.batch_read(ahead, batch(2, 2, more=True), d.now)  # read before m2's ack committed
    assert d.frames() == [Batch(messages=[], more=True)]
    assert d.one(ReadBatch) == ReadBatch(PendingQuery(), ahead=False)  # nothing to acknowledge: no wait


def test_a_use_case_refusing_for_rate_is_answered_rate_limited_and_not_counted_as_an_error() -> None:
    d = Driver()
    d.start()
    d.frames()
    for _ in range(25):
        d.session.mark_read("m", PEER, 1, d.now)
        call = d.one(MarkReadCall)
        d.session.call_failed(call, RateLimitedError(1, "slow down"), d.now)
    assert d.closed() is None
    assert d.frames()[0] == ErrorReply("m", WsErrorCode.RATE_LIMITED, "slow down")
