"""Push notifications, with fakes and a clock the tests move: the coalescing and backoff rules,
the gateway request's signature, the dispatcher's settling of each answer, the devices use cases
and the outbox jobs the send path writes."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import msgspec
import pytest

from adapters.pushgateway.http import payload, sign
from application.common import Principal
from application.group_commit import GroupCommit
from application.messaging import Send, SendMessage
from application.ports import GatewayAnswer, Notification, PushMessage, PushOutbox
from application.push import DeleteDevice, ListDevices, PushDispatcher, PushPolicy, RegisterDevice
from domain.auth import Login
from domain.errors import ConflictError, InvalidInputError, LoginRevokedError, NotFoundError
from domain.push import (
    TARGETS_PER_LOGIN_MAX,
    NewTarget,
    Outcome,
    PushTarget,
    Waiting,
    backoff_s,
    fresh_due,
    needs_presence,
    outcome_of,
)
from tests.unit.fakes import EPOCH, FakePresence, FixedClock, InMemoryStore, RecordingNotifier, SequentialIds

T0 = EPOCH


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


# -- coalescing ---------------------------------------------------------------------------------


def waiting(user_id: int, oldest: float | None, due: float | None, *, retry: bool = False) -> Waiting:
    return Waiting(
        user_id=user_id,
        oldest=at(oldest) if oldest is not None else None,
        earliest_due=at(due) if due is not None else None,
        retry=retry,
    )


def test_an_offline_recipient_is_pushed_once_the_coalescing_window_of_the_first_job_ends() -> None:
    jobs = [waiting(1, oldest=0, due=15)]
    assert fresh_due(jobs, online=set(), now=at(1.9), coalesce_s=2) == []
    assert needs_presence(jobs, now=at(1.9), coalesce_s=2) == []  # presence is not asked before
    assert needs_presence(jobs, now=at(2), coalesce_s=2) == [1]
    assert fresh_due(jobs, online=set(), now=at(2), coalesce_s=2) == [1]


def test_an_online_recipient_is_pushed_only_when_a_job_is_due() -> None:
    jobs = [waiting(1, oldest=0, due=15)]
    assert fresh_due(jobs, online={1}, now=at(14.9), coalesce_s=2) == []
    assert fresh_due(jobs, online={1}, now=at(15), coalesce_s=2) == [1]
    assert needs_presence(jobs, now=at(15), coalesce_s=2) == []  # due: presence does not matter


def test_a_retry_is_no_fresh_push() -> None:
    jobs = [waiting(1, oldest=None, due=None, retry=True)]
    assert fresh_due(jobs, online=set(), now=at(100), coalesce_s=2) == []
    assert needs_presence(jobs, now=at(100), coalesce_s=2) == []


# -- backoff and answers --------------------------------------------------------------------------


def test_backoff_doubles_up_to_the_cap_with_full_jitter() -> None:
    def top(attempt: int) -> float:
        return backoff_s(attempt, base_s=2, max_s=60, random=lambda: 0.999999)

    assert [round(top(n)) for n in range(1, 8)] == [2, 4, 8, 16, 32, 60, 60]
    assert backoff_s(3, base_s=2, max_s=60, random=lambda: 0.5) == 4
    assert backoff_s(3, base_s=2, max_s=60, random=lambda: 0.0) == pytest.approx(0.8)  # a floor: never spins


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (200, Outcome.SENT),
        (204, Outcome.SENT),
        (None, Outcome.RETRY),
        (408, Outcome.RETRY),
        (429, Outcome.RETRY),
        (500, Outcome.RETRY),
        (503, Outcome.RETRY),
        (400, Outcome.REFUSED),
        (401, Outcome.REFUSED),
        (404, Outcome.REFUSED),
    ],
)
def test_what_a_gateway_status_means(status: int | None, outcome: Outcome) -> None:
    assert outcome_of(status) is outcome


# -- the request ----------------------------------------------------------------------------------


def target(n: int = 1, user_id: int = 2, login: str = "login-1", token: str | None = None) -> PushTarget:
    return PushTarget(
        id=f"t{n}",
        user_id=user_id,
        login_id=login,
        kind="fcm",
        token=token or f"token-{n}",
        app_id="com.example.chat",
        label=None,
        created_at=T0,
    )


LEASE = at(70)  # the lease the fake outbox's claims carry


def notification(push_id: str = "p1", *, attempts: int = 0, messages: int = 2) -> Notification:
    return Notification(
        id=push_id,
        user_id=2,
        attempts=attempts,
        lease_until=LEASE,
        messages=[
            PushMessage(id=f"m{i}", sender_id=1, sender_name="Ann", created_at=at(i), body=f"secret {i}")
            for i in range(messages)
        ],
        targets=[target(1), target(2)],
        unread=5,
    )


def test_the_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    body = b'{"notification":{}}'
    expected = hmac.new(b"k" * 32, b"1700000000." + body, hashlib.sha256).hexdigest()
    assert sign("k" * 32, 1_700_000_000, body) == f"v1={expected}"
    assert sign("k" * 32, 1_700_000_001, body) != f"v1={expected}"  # the timestamp is signed too


def test_the_body_is_left_out_unless_asked_for() -> None:
    private = payload(notification(), include_body=False)["notification"]
    assert [m.get("body") for m in private["messages"]] == [None, None]
    assert private["messages"][0] == {
        "id": "m0",
        "conversation": {"peerId": 1},
        "sender": {"id": 1, "name": "Ann"},
        "createdAt": "2026-01-01T12:00:00.000Z",
    }
    assert private["counts"] == {"unread": 5, "messages": 2}
    assert [d["pushkey"] for d in private["devices"]] == ["token-1", "token-2"]
    assert "secret" not in msgspec.json.encode(private).decode()
    shared = payload(notification(), include_body=True)["notification"]
    assert [m["body"] for m in shared["messages"]] == ["secret 0", "secret 1"]


# -- the dispatcher -------------------------------------------------------------------------------


@dataclass
class FakeOutbox(PushOutbox):
    """Records what the dispatcher settles; ``pending`` are the notifications ``claim`` hands out."""

    waiting_now: list[Waiting] = field(default_factory=list)
    pending: list[Notification] = field(default_factory=list)
    claims: list[tuple[list[int], list[int], datetime]] = field(default_factory=list)
    settled: list[tuple[str, str, object]] = field(default_factory=list)

    async def waiting(self, *, now: datetime, fresh_before: datetime, limit: int) -> list[Waiting]:
        return self.waiting_now

    async def claim(
        self,
        *,
        fresh: Collection[int],
        retry: Collection[int],
        now: datetime,
        lease_until: datetime,
        new_id: Callable[[], str],
    ) -> list[Notification]:
        self.claims.append((list(fresh), list(retry), lease_until))
        claimed, self.pending = self.pending, []
        return claimed

    async def sent(self, push_id: str, *, lease_until: datetime, rejected: Collection[str]) -> int:
        assert lease_until == LEASE, "settled with the claim's lease"
        self.settled.append(("sent", push_id, sorted(rejected)))
        return len(rejected)

    async def retry(self, push_id: str, *, lease_until: datetime, at: datetime) -> None:
        assert lease_until == LEASE, "settled with the claim's lease"
        self.settled.append(("retry", push_id, at))

    async def drop(self, push_id: str, *, lease_until: datetime) -> None:
        assert lease_until == LEASE, "settled with the claim's lease"
        self.settled.append(("drop", push_id, None))


@dataclass
class FakeGateway:
    answers: list[GatewayAnswer]
    seen: list[Notification] = field(default_factory=list)

    async def send(self, notification: Notification) -> GatewayAnswer:
        self.seen.append(notification)
        return self.answers.pop(0)


POLICY = PushPolicy(coalesce_s=2, lease_s=60, max_attempts=3, retry_base_s=2, retry_max_s=60)


def dispatcher(outbox: FakeOutbox, gateway: FakeGateway, online: Collection[int] = ()) -> PushDispatcher:
    return PushDispatcher(
        outbox, gateway, FakePresence(online), FixedClock(at(10)), SequentialIds("push-"), POLICY, lambda: 0.5
    )


async def test_a_round_claims_the_due_recipients_and_settles_each_answer() -> None:
    outbox = FakeOutbox(
        waiting_now=[waiting(1, oldest=5, due=20), waiting(2, oldest=5, due=20), waiting(3, None, None, retry=True)],
        pending=[notification("a"), notification("b"), notification("c", attempts=2)],
    )
    gateway = FakeGateway(
        [
            GatewayAnswer(status=200, rejected=["token-2"]),
            GatewayAnswer(status=503, rejected=[]),
            GatewayAnswer(status=None, rejected=[]),
        ]
    )
    d = dispatcher(outbox, gateway, online={2})
    assert await d.run_once() == 3
    # 1 is offline (pushed), 2 is online and not due (not claimed), 3 has a retry due.
    assert outbox.claims == [([1], [3], at(70))]
    assert outbox.settled == [
        ("sent", "a", ["token-2"]),
        ("retry", "b", at(10 + 1)),  # first retry: half of 2 s (random 0.5)
        ("drop", "c", None),  # the third failed attempt of 3: given up
    ]
    assert (d.counts.sent, d.counts.retried, d.counts.given_up, d.counts.rejected_targets) == (1, 1, 1, 1)


async def test_a_round_claims_no_more_recipients_than_requests_go_out_at_once() -> None:
    # 20 due recipients (the first 3 retries), 16 requests at a time: 16 claimed, retries first,
    # so no claim waits for a free slot while its lease runs out; the other 4 go next round.
    due = [waiting(u, None, None, retry=True) for u in (1, 2, 3)] + [waiting(u, oldest=0, due=1) for u in range(4, 21)]
    outbox = FakeOutbox(waiting_now=due)
    assert await dispatcher(outbox, FakeGateway([])).run_once() == 0  # the fake hands out nothing
    [(fresh, retry, _)] = outbox.claims
    assert (retry, fresh) == ([1, 2, 3], list(range(4, 17)))
    assert POLICY.concurrency == 16


async def test_a_refused_request_is_given_up_at_once() -> None:
    outbox = FakeOutbox(waiting_now=[waiting(1, oldest=0, due=1)], pending=[notification("a")])
    d = dispatcher(outbox, FakeGateway([GatewayAnswer(status=400, rejected=[])]))
    await d.run_once()
    assert outbox.settled == [("drop", "a", None)]
    assert d.counts.given_up == 1


async def test_nothing_waiting_claims_nothing() -> None:
    outbox = FakeOutbox(waiting_now=[waiting(1, oldest=9, due=20)])  # inside its coalescing window
    d = dispatcher(outbox, FakeGateway([]))
    assert await d.run_once() == 0
    assert outbox.claims == []


# -- devices --------------------------------------------------------------------------------------


class Devices:
    def __init__(self) -> None:
        self.store = InMemoryStore()
        self.clock = FixedClock()
        self.ids = SequentialIds("dev-")
        uow = self.store.unit_of_work
        self.register = RegisterDevice(uow, self.clock, self.ids)
        self.list = ListDevices(uow)
        self.delete = DeleteDevice(uow)
        self.user = self.store.seed_user("Ann").uid
        self.other = self.store.seed_user("Bob").uid
        for sid, user in (("s1", self.user), ("s2", self.user), ("s3", self.other)):
            self.store.data.logins[sid] = Login(id=sid, user_id=user, created_at=T0)

    def me(self, sid: str = "s1") -> Principal:
        return Principal(user_id=self.store.data.logins[sid].user_id, sid=sid)


def fcm(token: str, **extra: str) -> NewTarget:
    return NewTarget(kind="fcm", token=token, app_id=extra.get("app_id", "com.example.chat"), label=extra.get("label"))


async def test_devices_are_registered_listed_and_deleted_per_user() -> None:
    w = Devices()
    first = await w.register(w.me("s1"), fcm("a", label="  Phone "))
    assert (first.login_id, first.label) == ("s1", "Phone")
    await w.register(w.me("s2"), fcm("b"))
    assert [t.token for t in await w.list(w.me("s1"))] == ["a", "b"]  # every login of the user
    with pytest.raises(NotFoundError):
        await w.delete(w.me("s3"), first.id)  # not Bob's
    await w.delete(w.me("s2"), first.id)
    assert [t.token for t in await w.list(w.me("s1"))] == ["b"]


async def test_a_login_that_ended_after_its_request_was_authenticated_registers_no_target() -> None:
    w = Devices()
    me = w.me("s1")
    w.store.data.logins["s1"].revoke(T0)  # a logout committed between authentication and now
    with pytest.raises(LoginRevokedError):
        await w.register(me, fcm("a"))
    del w.store.data.logins["s1"]  # the account deleted: its logins are gone
    with pytest.raises(LoginRevokedError):
        await w.register(me, fcm("a"))
    assert w.store.data.push_targets == {}


async def test_a_token_registered_again_moves_to_the_new_login() -> None:
    w = Devices()
    first = await w.register(w.me("s1"), fcm("a"))
    again = await w.register(w.me("s3"), fcm("a"))
    assert (again.id, again.user_id, again.login_id) == (first.id, w.other, "s3")
    assert await w.list(w.me("s1")) == []


async def test_a_revoked_logins_targets_are_gone() -> None:
    w = Devices()
    await w.register(w.me("s1"), fcm("a"))
    w.store.data.logins["s1"].revoke(T0)
    assert await w.list(w.me("s2")) == []


async def test_bad_targets_and_too_many_are_refused() -> None:
    w = Devices()
    with pytest.raises(InvalidInputError) as caught:
        await w.register(w.me(), NewTarget(kind="apns", token="has space", app_id="bad id!", label="\x00"))
    assert {p.field for p in caught.value.problems} == {"token", "appId", "label"}
    for n in range(TARGETS_PER_LOGIN_MAX):
        await w.register(w.me(), fcm(f"t{n}"))
    with pytest.raises(ConflictError):
        await w.register(w.me(), fcm("one-more"))


# -- the send path's jobs -------------------------------------------------------------------------


async def test_a_send_queues_a_job_only_for_a_recipient_with_a_target_and_not_withheld() -> None:
    store = InMemoryStore()
    clock = FixedClock()
    ann, bob, cat = (store.seed_user(n).uid for n in ("Ann", "Bob", "Cat"))
    store.data.logins["s-bob"] = Login(id="s-bob", user_id=bob, created_at=T0)
    store.data.logins["s-cat"] = Login(id="s-cat", user_id=cat, created_at=T0)
    store.data.push_targets["t"] = target(user_id=bob, login="s-bob")
    store.data.push_targets["u"] = target(2, user_id=cat, login="s-cat")
    store.block(cat, ann)  # Ann's messages to Cat are withheld
    writes = GroupCommit(store.unit_of_work)
    send = SendMessage(writes, RecordingNotifier(store), FakePresence(), clock, SequentialIds(), 100, push_after_s=15)
    ann_p = Principal(user_id=ann, sid="s-ann")
    to_bob = await send(ann_p, Send(to=bob, body="hi", client_msg_id="1"))
    await send(ann_p, Send(to=cat, body="hi", client_msg_id="2"))  # withheld: no job
    await send(Principal(user_id=bob, sid="s-bob"), Send(to=ann, body="hi", client_msg_id="3"))  # no target
    assert store.data.push_jobs == [(to_bob.message.id, bob, T0, at(15))]
    await writes.close()


async def test_without_a_gateway_the_send_path_writes_no_job() -> None:
    store = InMemoryStore()
    ann, bob = (store.seed_user(n).uid for n in ("Ann", "Bob"))
    store.data.logins["s-bob"] = Login(id="s-bob", user_id=bob, created_at=T0)
    store.data.push_targets["t"] = target(user_id=bob, login="s-bob")
    writes = GroupCommit(store.unit_of_work)
    send = SendMessage(writes, RecordingNotifier(store), FakePresence(), FixedClock(), SequentialIds(), 100)
    await send(Principal(user_id=ann, sid="s"), Send(to=bob, body="hi", client_msg_id="1"))
    assert store.data.push_jobs == []
    await writes.close()


async def test_a_failure_to_settle_one_push_does_not_stop_the_others() -> None:
    class Failing(FakeOutbox):
        async def sent(self, push_id: str, *, lease_until: datetime, rejected: Collection[str]) -> int:
            if push_id == "a":
                raise ConnectionError("the store went away")
            return await super().sent(push_id, lease_until=lease_until, rejected=rejected)

    outbox = Failing(
        waiting_now=[waiting(1, oldest=0, due=1), waiting(2, oldest=0, due=1)],
        pending=[notification("a"), notification("b")],
    )
    d = dispatcher(outbox, FakeGateway([GatewayAnswer(status=200, rejected=[])] * 2))
    assert await d.run_once() == 2
    assert outbox.settled == [("sent", "b", [])]  # "a" stays claimed: its lease brings it back
