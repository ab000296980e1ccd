"""Push notifications: the targets a login registers, and the dispatcher's pure rules — which
recipients are due a push now (coalescing), how long to wait before a retry (backoff with
jitter), and what a gateway's answer means. No I/O, no clock read: times and randomness come in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from typing import TYPE_CHECKING, Literal

from domain.errors import FieldProblem, InvalidInputError
from domain.users import NAME_MAX, normalise_name

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Iterable

TargetKind = Literal["fcm", "apns", "webpush", "webhook"]
TARGET_KINDS: tuple[TargetKind, ...] = ("fcm", "apns", "webpush", "webhook")
TOKEN_MAX = 2048  # an FCM registration token is ~160 characters, a Web Push endpoint URL a few hundred
# Printable ASCII, no space (tokens and URLs are); at most 2048 bytes, so (app_id, token) fits an index entry.
TOKEN_PATTERN = r"^[!-~]{1,2048}$"  # noqa: S105 - a push token's pattern, not a password
_TOKEN = re.compile(TOKEN_PATTERN)
APP_ID_MAX = 200
LABEL_MAX = NAME_MAX
TARGETS_PER_LOGIN_MAX = 10
APP_ID_PATTERN = r"^[A-Za-z0-9._:-]{1,200}$"
_APP_ID = re.compile(APP_ID_PATTERN)


@dataclass(frozen=True, slots=True, kw_only=True)
class NewTarget:
    """What a login registers: where the gateway can reach one of its devices."""

    kind: TargetKind
    token: str
    app_id: str
    label: str | None = None

    def checked(self) -> NewTarget:
        """This target, trimmed, or InvalidInputError naming each problem."""
        token, app_id = self.token, self.app_id
        label = None
        problems: dict[str, str] = {}
        if self.label is not None:
            try:
                label = normalise_name(self.label, "label")  # a label is shown like a name
            except InvalidInputError as exc:
                problems.update((p.field, p.message) for p in exc.problems)
        if not _TOKEN.match(token):
            problems["token"] = f"must be 1–{TOKEN_MAX} printable ASCII characters without spaces"
        if not _APP_ID.match(app_id):
            problems["appId"] = "must be 1–200 of A-Z a-z 0-9 . _ : -"
        if problems:
            raise InvalidInputError(*(FieldProblem(f, m) for f, m in problems.items()))
        return NewTarget(kind=self.kind, token=token, app_id=app_id, label=label)


@dataclass(frozen=True, slots=True, kw_only=True)
class PushTarget:
    id: str
    user_id: int
    login_id: str
    kind: TargetKind
    token: str
    app_id: str
    label: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class Waiting:
    """What a recipient has in the outbox that no process has claimed: the oldest fresh job's
    creation and the earliest fresh job's due time (None: no fresh job), and whether a claimed
    push of theirs is waiting for its retry."""

    user_id: int
    oldest: datetime | None
    earliest_due: datetime | None
    retry: bool


def fresh_due(waiting: Iterable[Waiting], online: Collection[int], *, now: datetime, coalesce_s: float) -> list[int]:
    """The recipients whose fresh jobs go out now, as one push each: those whose oldest fresh job
    is ``coalesce_s`` old (so a burst of messages makes one push) and that are either offline (no
    live connection anywhere: not in ``online``) or have a job due (not acknowledged in time)."""
    window = timedelta(seconds=coalesce_s)
    return [
        w.user_id
        for w in waiting
        if w.oldest is not None
        and w.earliest_due is not None
        and w.oldest + window <= now
        and (w.earliest_due <= now or w.user_id not in online)
    ]


def needs_presence(waiting: Iterable[Waiting], *, now: datetime, coalesce_s: float) -> list[int]:
    """The recipients whose presence decides whether their push goes out now: a coalesced fresh
    job not yet due."""
    window = timedelta(seconds=coalesce_s)
    return [
        w.user_id
        for w in waiting
        if w.oldest is not None and w.earliest_due is not None and w.oldest + window <= now and w.earliest_due > now
    ]


def backoff_s(attempt: int, *, base_s: float, max_s: float, random: Callable[[], float]) -> float:
    """Seconds before retry number ``attempt`` (1 for the first retry): exponential, capped, with
    full jitter (``random()`` in [0, 1)), never under a tenth of the step so retries never spin."""
    step = min(max_s, base_s * 2.0 ** (attempt - 1))
    return float(max(step / 10, step * random()))


class Outcome(Enum):
    SENT = "sent"  # the gateway took it (some targets may be rejected)
    RETRY = "retry"  # the gateway or the network failed: try again later
    REFUSED = "refused"  # the gateway refused the request itself: retrying would not help


def outcome_of(status: int | None) -> Outcome:
    """What a gateway's HTTP status means (None: no answer — connection refused, timeout)."""
    if status is None or status == 429 or status >= 500 or status == 408:
        return Outcome.RETRY
    if 200 <= status < 300:
        return Outcome.SENT
    return Outcome.REFUSED
