"""Logins, refresh-token verdicts and the fixed-window attempt arithmetic."""

from __future__ import annotations

from datetime import timedelta

import pytest

from domain.auth import (
    AttemptLimit,
    AttemptWindow,
    Login,
    LoginThrottle,
    RefreshToken,
    RefreshVerdict,
    account_key,
    address_key,
    attempts_key,
    first_attempt,
    pair_key,
    registration_key,
)
from domain.errors import InvalidTokenError, LoginRevokedError, RateLimitedError
from tests.unit.fakes import EPOCH

T0 = EPOCH


def at(seconds: float) -> timedelta:
    return timedelta(seconds=seconds)


# --- logins -----------------------------------------------------------------------------------


def test_new_login_is_active() -> None:
    login = Login(id="s1", user_id=1, created_at=T0)

    assert login.active
    login.ensure_active()


def test_revoked_login_is_inactive_and_refuses_use() -> None:
    login = Login(id="s1", user_id=1, created_at=T0)

    login.revoke(T0 + at(5))

    assert not login.active
    with pytest.raises(LoginRevokedError):
        login.ensure_active()


def test_revoking_twice_keeps_the_first_revocation_time() -> None:
    login = Login(id="s1", user_id=1, created_at=T0)

    login.revoke(T0 + at(5))
    login.revoke(T0 + at(60))

    assert login.revoked_at == T0 + at(5)


# --- refresh tokens ---------------------------------------------------------------------------


def fresh_token(ttl_s: int = 100) -> RefreshToken:
    return RefreshToken.issue(digest="d", login_id="s1", now=T0, ttl_s=ttl_s)


def active_login() -> Login:
    return Login(id="s1", user_id=1, created_at=T0)


def test_issued_refresh_token_expires_after_its_ttl_and_is_unspent() -> None:
    token = fresh_token(ttl_s=100)

    assert token.issued_at == T0
    assert token.expires_at == T0 + at(100)
    assert token.spent_at is None


def test_unspent_unexpired_token_of_an_active_login_rotates() -> None:
    assert fresh_token().judge(active_login(), T0 + at(99.999)) is RefreshVerdict.ROTATE


def test_token_is_rejected_from_the_moment_it_expires() -> None:
    assert fresh_token(ttl_s=100).judge(active_login(), T0 + at(100)) is RefreshVerdict.REJECT


def test_token_without_its_login_is_rejected() -> None:
    assert fresh_token().judge(None, T0) is RefreshVerdict.REJECT


def test_token_of_a_revoked_login_is_rejected_even_when_spent() -> None:
    login = active_login()
    login.revoke(T0)
    token = fresh_token()
    token.spent_at = T0

    assert token.judge(login, T0 + at(1)) is RefreshVerdict.REJECT


def test_spent_token_presented_again_revokes_the_login() -> None:
    token = fresh_token()
    token.spent_at = T0 + at(1)

    assert token.judge(active_login(), T0 + at(2)) is RefreshVerdict.REVOKE_LOGIN


def test_spent_token_presented_after_expiry_still_revokes_the_login() -> None:
    token = fresh_token(ttl_s=100)
    token.spent_at = T0 + at(1)

    assert token.judge(active_login(), T0 + at(500)) is RefreshVerdict.REVOKE_LOGIN


def test_rejection_is_an_invalid_token_error() -> None:
    assert isinstance(RefreshToken.rejected(), InvalidTokenError)


# --- attempt windows --------------------------------------------------------------------------


def test_first_attempt_opens_a_window_of_one() -> None:
    assert first_attempt(T0) == AttemptWindow(count=1, started_at=T0)


def test_window_is_open_until_exactly_its_end() -> None:
    window = first_attempt(T0)

    assert window.ends_at(60) == T0 + at(60)
    assert window.is_open(T0 + at(59.999), 60)
    assert not window.is_open(T0 + at(60), 60)


def test_attempt_in_an_open_window_increments_and_keeps_its_start() -> None:
    window = first_attempt(T0).after_one_more(T0 + at(30), 60)

    assert window == AttemptWindow(count=2, started_at=T0)


def test_attempt_after_the_window_closed_starts_a_new_window() -> None:
    window = AttemptWindow(count=9, started_at=T0).after_one_more(T0 + at(60), 60)

    assert window == AttemptWindow(count=1, started_at=T0 + at(60))


@pytest.mark.parametrize(
    ("elapsed", "retry_after"),
    [(0, 60), (0.001, 60), (0.999, 60), (1, 59), (30.5, 30), (59.9, 1), (60, 1), (500, 1)],
)
def test_retry_after_is_the_rest_of_the_window_rounded_up_and_at_least_one(elapsed: float, retry_after: int) -> None:
    assert first_attempt(T0).retry_after_s(T0 + at(elapsed), 60) == retry_after


# --- attempt limits ---------------------------------------------------------------------------


LIMIT = AttemptLimit(max_attempts=3, window_s=60)


def test_limit_allows_when_nothing_was_counted() -> None:
    LIMIT.check(None, T0)


def test_limit_allows_while_the_window_is_below_the_maximum() -> None:
    LIMIT.check(AttemptWindow(count=2, started_at=T0), T0 + at(10))


def test_limit_refuses_a_full_open_window_with_the_time_left() -> None:
    with pytest.raises(RateLimitedError) as caught:
        LIMIT.check(AttemptWindow(count=3, started_at=T0), T0 + at(10.5))

    assert caught.value.retry_after_s == 50


def test_limit_allows_again_once_the_full_window_has_closed() -> None:
    LIMIT.check(AttemptWindow(count=30, started_at=T0), T0 + at(60))


def test_window_that_includes_the_current_attempt_exceeds_only_past_the_maximum() -> None:
    assert not LIMIT.exceeded_by(AttemptWindow(count=3, started_at=T0), T0)
    assert LIMIT.exceeded_by(AttemptWindow(count=4, started_at=T0), T0)
    assert not LIMIT.exceeded_by(AttemptWindow(count=4, started_at=T0), T0 + at(60))


def test_login_throttle_locks_a_pair_first_and_an_account_or_address_at_twenty_times_that() -> None:
    throttle = LoginThrottle(max_failures=5, window_s=900)

    assert throttle.per_pair == AttemptLimit(max_attempts=5, window_s=900)
    assert throttle.per_account == AttemptLimit(max_attempts=100, window_s=900)
    assert throttle.per_address == AttemptLimit(max_attempts=100, window_s=900)
    assert throttle.attempts_per_pair == AttemptLimit(max_attempts=20, window_s=900)


def test_counter_keys_of_accounts_addresses_and_registrations_never_collide() -> None:
    keys = {account_key("x"), address_key("x"), registration_key("x"), pair_key("x", "x"), attempts_key("x", "x")}

    assert len(keys) == 5
    assert pair_key("b:c", "a") != pair_key("c", "a:b")  # the source's length keeps pairs apart
