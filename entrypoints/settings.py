"""Configuration: one typed, frozen settings object read once from ``CHAT_*`` environment variables.

Nothing else in the code reads the environment. Invalid values stop the boot with a message that
names the variable. In ``dev`` without ``CHAT_JWT_SECRET`` a secret is generated once into
``./data/jwt_secret`` (mode 0600), so a restarted dev server keeps accepting its tokens.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal

import msgspec

PREFIX = "CHAT_"
DEV_SECRET_FILE = Path("data") / "jwt_secret"

Positive = Annotated[int, msgspec.Meta(ge=1)]
PositiveFloat = Annotated[float, msgspec.Meta(gt=0)]


class SettingsError(Exception):
    """The configuration is invalid; the message names the variable and what is wrong."""


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    host: str = "127.0.0.1"
    port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 8000
    database_url: str = "sqlite+aiosqlite:///./data/chat.db"
    sqlite_synchronous: Literal["NORMAL", "FULL"] = "NORMAL"
    sqlite_driver: Literal["inline", "thread"] = "inline"
    redis_url: str | None = None
    redis_prefix: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.-]{1,40}$")] = "chat"
    env: Literal["dev", "prod"] = "dev"
    jwt_secret: str | None = None
    workers: Positive = 1
    access_token_ttl_s: Positive = 900
    refresh_token_ttl_s: Positive = 2_592_000
    offline_grace_s: PositiveFloat = 3.0
    redelivery_s: PositiveFloat = 10.0
    heartbeat_s: Positive = 20  # whole seconds: ready's heartbeatS is an integer
    presence_ttl_s: PositiveFloat = 30.0
    auth_timeout_s: PositiveFloat = 5.0
    rate_msg_per_s: PositiveFloat = 20.0
    rate_msg_burst: Positive = 50
    rate_close_after_s: Positive = 10  # seconds of refusals in a row before 4429 (tests shorten it)
    login_max_failures: Positive = 5
    login_window_s: Positive = 900
    register_per_hour: Positive = 20
    hash_concurrency: Positive = 2
    max_connections_per_user: Positive = 10
    max_connections: Positive = 15_000
    max_frame_bytes: Annotated[int, msgspec.Meta(ge=1024, le=1_048_576)] = 65_536
    max_body_chars: Positive = 4000
    max_queued_frames: Annotated[int, msgspec.Meta(ge=10)] = 1000  # per connection, before 4008
    max_http_body_bytes: Annotated[int, msgspec.Meta(ge=1024)] = 65_536
    cors_origins: tuple[str, ...] = ()
    trusted_proxies: tuple[str, ...] = ()
    metrics_token: str | None = None
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    @property
    def mode(self) -> str:
        """``redis`` when presence, fan-out and counters are shared through Redis, else ``memory``."""
        return "redis" if self.redis_url else "memory"

    @property
    def secret(self) -> str:
        """The JWT secret; :func:`load_settings` guarantees it is set."""
        if self.jwt_secret is None:
            raise SettingsError("CHAT_JWT_SECRET is not resolved")
        return self.jwt_secret


_LIST_FIELDS = {"cors_origins", "trusted_proxies"}
_PATH = re.compile(r"\$\.(\w+)")


def load_settings(environ: Mapping[str, str] | None = None, *, secret_file: Path = DEV_SECRET_FILE) -> Settings:
    """Read, validate and complete the settings. Raises :class:`SettingsError`."""
    env = os.environ if environ is None else environ
    raw: dict[str, object] = {}
    for key, value in env.items():
        if not key.startswith(PREFIX):
            continue
        name = key.removeprefix(PREFIX).lower()
        if name in _LIST_FIELDS:
            raw[name] = tuple(part.strip() for part in value.split(",") if part.strip())
        elif value.strip() != "":
            raw[name] = value.strip()
    try:
        settings = msgspec.convert(raw, Settings, strict=False)
    except msgspec.ValidationError as exc:
        message = _PATH.sub(lambda m: PREFIX + m.group(1).upper(), str(exc))
        raise SettingsError(f"invalid configuration: {message}") from None
    return _complete(settings, secret_file)


def _complete(settings: Settings, secret_file: Path) -> Settings:
    if settings.jwt_secret is not None and len(settings.jwt_secret.encode()) < 32:
        raise SettingsError("CHAT_JWT_SECRET must be at least 32 bytes")
    if settings.jwt_secret is None:
        if settings.env == "prod":
            raise SettingsError("CHAT_ENV=prod needs CHAT_JWT_SECRET (at least 32 random bytes)")
        if settings.workers > 1 or settings.redis_url:
            raise SettingsError(
                "several processes (CHAT_WORKERS > 1 or CHAT_REDIS_URL) must share an explicit CHAT_JWT_SECRET"
            )
        settings = msgspec.structs.replace(settings, jwt_secret=_dev_secret(secret_file))
    if settings.workers > 1 and not settings.redis_url:
        raise SettingsError("CHAT_WORKERS > 1 needs CHAT_REDIS_URL (presence and fan-out across processes)")
    return settings


def _dev_secret(path: Path) -> str:
    """The development secret: read from ``path``, or generated there once with mode 0600."""
    if path.exists():
        secret = path.read_text().strip()
        if len(secret.encode()) >= 32:
            return secret
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secret + "\n")
    path.chmod(0o600)
    return secret
