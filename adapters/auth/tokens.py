"""Access tokens as JWT HS256 with pyjwt (algorithm pinned, ``exp`` and ``sub`` required) and
opaque refresh secrets stored as SHA-256 digests."""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt

from application.common import MAX_ID
from application.ports import AccessClaims, IdGenerator, IssuedAccess, TokenService
from domain.errors import InvalidTokenError

ALGORITHM = "HS256"


class PyJwtTokenService(TokenService):
    def __init__(self, secret: str, access_ttl_s: int, ids: IdGenerator) -> None:
        if len(secret.encode()) < 32:
            raise ValueError("the JWT secret must be at least 32 bytes")
        self._secret = secret
        self._ttl_s = access_ttl_s
        self._ids = ids

    def issue_access(self, *, user_id: int, sid: str, now: datetime) -> IssuedAccess:
        expires_at = now + timedelta(seconds=self._ttl_s)
        claims = {
            "sub": str(user_id),
            "sid": sid,
            "jti": self._ids.new_id(),
            "iat": int(now.timestamp()),
            "exp": int(expires_at.timestamp()),
        }
        token = jwt.encode(claims, self._secret, algorithm=ALGORITHM)
        return IssuedAccess(token=token, expires_at=expires_at, expires_in=self._ttl_s)

    def verify_access(self, token: str, *, now: datetime) -> AccessClaims:
        try:
            # Expiry is checked below against the injected clock, not pyjwt's own time.time().
            data: dict[str, Any] = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                options={"require": ["exp", "sub", "sid"], "verify_exp": False, "verify_iat": False},
            )
        except jwt.PyJWTError as exc:
            raise InvalidTokenError() from exc
        exp, sub, sid, jti = data.get("exp"), data.get("sub"), data.get("sid"), data.get("jti", "")
        user_id = _user_id(sub)
        if not isinstance(exp, int) or user_id is None or not isinstance(sid, str):
            raise InvalidTokenError()
        try:
            expires_at = datetime.fromtimestamp(exp, UTC)
        except (OverflowError, OSError, ValueError):  # beyond the years a datetime holds: signed, still absurd
            raise InvalidTokenError() from None
        if now >= expires_at:
            raise InvalidTokenError("token expired")
        return AccessClaims(user_id=user_id, sid=sid, jti=str(jti), expires_at=expires_at)

    def new_refresh_secret(self) -> str:
        return secrets.token_urlsafe(32)

    def refresh_digest(self, raw: str) -> str:
        return hashlib.sha256(raw.encode()).hexdigest()


def _user_id(sub: object) -> int | None:
    """The user id a ``sub`` claim names, as this service writes it: ASCII digits without a leading
    zero, within signed 64 bits (``str.isdigit`` alone also takes "١" or "¹", which ``int`` reads as 1)."""
    if not isinstance(sub, str) or not (sub.isascii() and sub.isdigit()) or sub.startswith("0") or len(sub) > 19:
        return None
    user_id = int(sub)
    return user_id if user_id <= MAX_ID else None
