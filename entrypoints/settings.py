"""Configuration: one typed, frozen settings object read once from ``CHAT_*`` environment variables.

Nothing else in the code reads the environment. An invalid value stops the start with a
:class:`SettingsError` of one line that names the variable and says what is valid; the valid
values of each variable are written once (:func:`valid_values`) and serve both that message and
README's configuration table (a test compares them). A ``CHAT_*`` variable that is not a setting
is a typo until proven otherwise: ``CHAT_ENV=prod`` refuses to start, ``dev`` warns (decision 33);
``CHAT_TEST_*`` belongs to the test suite and is left alone. An empty value counts as unset.

:func:`read_settings` has no side effect. :func:`load_settings` also completes the development
secret: in ``dev`` without ``CHAT_JWT_SECRET`` one is generated once into ``./data/jwt_secret``
(mode 0600), so a restarted dev server keeps accepting its tokens.
"""

from __future__ import annotations

import difflib
import ipaddress
import math
import os
import re
import secrets
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Literal, get_args, get_type_hints
from urllib.parse import urlsplit, urlunsplit

import msgspec
import msgspec.inspect as mi
from redis.connection import parse_url as parse_redis_url
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

PREFIX = "CHAT_"
TEST_PREFIX = "CHAT_TEST_"  # the test suite's own variables (tests/integration/conftest.py)
DEV_SECRET_FILE = Path("data") / "jwt_secret"
MIN_SECRET_BYTES = 32
CLOSE_ENOUGH = 0.6  # difflib's ratio from which a setting's name is suggested for an unknown one
# One SQL text per dialect on the hot path (adapters/sqlalchemy/fastpath/): these two only.
DATABASE_DRIVERS = ("sqlite+aiosqlite", "postgresql+asyncpg")

Positive = Annotated[int, msgspec.Meta(ge=1)]
PositiveFloat = Annotated[float, msgspec.Meta(gt=0)]

Warn = Callable[[str], object]


class SettingsError(Exception):
    """The configuration is invalid; the message (one line) names the variable and the fix."""


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
    session_check_s: PositiveFloat = 30.0  # each process re-reads its open sockets' logins this often
    redis_timeout_s: PositiveFloat = 0.5  # connect and command timeout of the Redis client
    db_timeout_s: PositiveFloat = 5.0  # PostgreSQL: connect, statement and pool-wait timeout
    auth_timeout_s: PositiveFloat = 5.0
    rate_msg_per_s: PositiveFloat = 20.0
    rate_msg_burst: Positive = 50
    rate_close_after_s: Positive = 10  # seconds of refusals in a row before 4429 (tests shorten it)
    login_max_failures: Positive = 5
    login_window_s: Positive = 900
    max_logins_per_user: Positive = 20  # live logins (devices); a new one beyond revokes the oldest
    register_per_hour: Positive = 20
    hash_concurrency: Positive = 2
    max_connections_per_user: Positive = 10
    max_connections: Positive = 15_000
    max_frame_bytes: Annotated[int, msgspec.Meta(ge=1024, le=1_048_576)] = 65_536
    max_body_chars: Positive = 4000
    max_queued_frames: Annotated[int, msgspec.Meta(ge=10)] = 1000  # per connection, before 4008
    max_http_body_bytes: Annotated[int, msgspec.Meta(ge=1024)] = 65_536
    request_timeout_s: PositiveFloat = 10.0  # to read a whole HTTP request, headers and body
    max_connections_per_address: Positive = 256
    cors_origins: tuple[str, ...] = ()
    trusted_proxies: tuple[str, ...] = ()
    metrics_token: str | None = None
    push_gateway_url: str | None = None  # unset: no push outbox, no dispatcher
    push_secret: str | None = None
    push_after_s: PositiveFloat = 15.0
    push_coalesce_s: Annotated[float, msgspec.Meta(ge=0)] = 2.0
    push_include_body: bool = False
    push_timeout_s: PositiveFloat = 10.0
    push_lease_s: PositiveFloat = 60.0
    push_max_attempts: Positive = 8
    push_retry_base_s: PositiveFloat = 2.0
    push_retry_max_s: PositiveFloat = 600.0
    push_poll_s: PositiveFloat = 0.5
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    web_app: Literal["on", "off"] | None = None  # unset: on in dev, off in prod (serves_web_app)
    log_format: Literal["text", "json"] = "text"

    @property
    def mode(self) -> str:
        """``redis`` when presence, fan-out and counters are shared through Redis, else ``memory``."""
        return "redis" if self.redis_url else "memory"

    @property
    def serves_web_app(self) -> bool:
        """Whether ``/app/`` (the web app) is served: ``CHAT_WEB_APP``, else only in ``dev``."""
        return self.web_app == "on" if self.web_app is not None else self.env == "dev"

    @property
    def secret(self) -> str:
        """The JWT secret; :func:`load_settings` guarantees it is set."""
        if self.jwt_secret is None:
            raise SettingsError("CHAT_JWT_SECRET is not resolved")
        return self.jwt_secret


def _fields() -> dict[str, mi.Field]:
    info = mi.type_info(Settings)
    if not isinstance(info, mi.StructType):  # pragma: no cover - Settings is a Struct
        raise TypeError(info)
    return {field.name: field for field in info.fields}


FIELDS = _fields()  # setting name → its msgspec description (type, default)
_LIST_FIELDS = {"cors_origins", "trusted_proxies"}
_SECRET_FIELDS = {"jwt_secret", "metrics_token", "push_secret"}
_URL_FIELDS = {"database_url", "redis_url", "push_gateway_url"}
_PATH = re.compile(r"\$\.(\w+)")
_ORIGIN = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://[^/?#\s]+$")

# What is valid, where the type alone does not say it (the values are checked below).
_VALID = {
    "host": "an IP address or host name of this machine",
    "database_url": "sqlite+aiosqlite:///path/to/chat.db or postgresql+asyncpg://user:password@host:5432/db",
    "redis_url": "redis://[:password@]host[:port][/db], rediss://… (TLS) or unix:///path/to/redis.sock",
    "redis_prefix": "1 to 40 of A-Z a-z 0-9 _ . -",
    "jwt_secret": f"any string of at least {MIN_SECRET_BYTES} bytes",
    "cors_origins": "comma-separated origins scheme://host[:port] (no path, no trailing slash), or *",
    "trusted_proxies": "comma-separated IP addresses or CIDR ranges (10.0.0.1,192.168.0.0/16)",
    "metrics_token": "any string",
    "web_app": "one of on, off",
    "push_gateway_url": "an http:// or https:// URL",
    "push_secret": f"any string of at least {MIN_SECRET_BYTES} bytes",
    "push_include_body": "true or false",
}


def variable(name: str) -> str:
    """The environment variable of the setting ``name``."""
    return PREFIX + name.upper()


def valid_values(name: str) -> str:
    """What the setting ``name`` accepts, in words: error messages and README say the same."""
    if name in _VALID:
        return _VALID[name]
    info = FIELDS[name].type
    if isinstance(info, mi.LiteralType):  # in the order declared, not msgspec's sorted one
        return "one of " + ", ".join(map(str, get_args(get_type_hints(Settings, include_extras=True)[name])))
    if isinstance(info, mi.IntType | mi.FloatType):
        kind = "a whole number" if isinstance(info, mi.IntType) else "a number"
        if info.ge is not None and info.le is not None:
            return f"{kind} from {info.ge} to {info.le}"
        if info.ge is not None:
            return f"{kind} of at least {info.ge}"
        return f"{kind} greater than {info.gt}"
    raise TypeError(f"say what {variable(name)} accepts in _VALID")


def read_settings(environ: Mapping[str, str] | None = None, *, warn: Warn | None = None) -> Settings:
    """Read and validate the settings, without side effects (in ``dev`` the JWT secret may be
    left unset). Raises :class:`SettingsError`; ``warn`` gets the lines about ignored variables."""
    env = os.environ if environ is None else environ
    raw = _raw(env)
    try:
        settings = msgspec.convert(raw, Settings, strict=False)
    except msgspec.ValidationError as exc:
        name = _PATH.search(str(exc))
        if name is None:  # pragma: no cover - every field error carries its path
            raise SettingsError(f"invalid configuration: {exc}") from None
        raise _invalid(name.group(1), raw[name.group(1)]) from None
    _check_unknown(env, settings, warn)
    _check_values(settings)
    _check_combination(settings)
    return settings


def load_settings(
    environ: Mapping[str, str] | None = None, *, secret_file: Path = DEV_SECRET_FILE, warn: Warn | None = None
) -> Settings:
    """:func:`read_settings`, then the development JWT secret when none was set. Raises
    :class:`SettingsError`."""
    return with_dev_secret(read_settings(environ, warn=warn), secret_file)


def with_dev_secret(settings: Settings, secret_file: Path = DEV_SECRET_FILE) -> Settings:
    """``settings`` with a JWT secret: the configured one, or (dev, one process) the generated one."""
    if settings.jwt_secret is not None:
        return settings
    try:
        secret = _dev_secret(secret_file)
    except OSError as exc:
        raise SettingsError(
            f"cannot keep the development JWT secret in {secret_file} ({exc.strerror or exc}): "
            f"set CHAT_JWT_SECRET or run where ./{secret_file.parent} is writable"
        ) from None
    return msgspec.structs.replace(settings, jwt_secret=secret)


def _raw(env: Mapping[str, str]) -> dict[str, object]:
    raw: dict[str, object] = {}
    for key, value in env.items():
        name = key.removeprefix(PREFIX).lower()
        if not key.startswith(PREFIX) or name not in FIELDS:
            continue
        if name in _LIST_FIELDS:
            raw[name] = tuple(part.strip() for part in value.split(",") if part.strip())
        elif value.strip() != "":
            raw[name] = value.strip()
    return raw


def _invalid(name: str, value: object, problem: str = "is not valid") -> SettingsError:
    """``CHAT_X='value' <problem>: expected <valid values>`` (secrets not shown, URL passwords hidden)."""
    if name in _SECRET_FIELDS:
        shown = variable(name)
    elif name in _URL_FIELDS:
        shown = f"{variable(name)}={hide_password(str(value))!r}"
    elif isinstance(value, tuple):
        shown = f"{variable(name)}={','.join(value)!r}"
    else:
        shown = f"{variable(name)}={value!r}"
    return SettingsError(f"{shown} {problem}: expected {valid_values(name)}")


def hide_password(url: str) -> str:
    """``url`` with its password, if any, shown as ``***`` (for messages and logs)."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
    except ValueError:
        return url.split("@")[-1]
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


def _check_unknown(env: Mapping[str, str], settings: Settings, warn: Warn | None) -> None:
    """A ``CHAT_*`` variable that is no setting: refused in ``prod``, a warning in ``dev``."""
    unknown = [
        _unknown(key)
        for key in sorted(env)
        if key.startswith(PREFIX) and not key.startswith(TEST_PREFIX) and key.removeprefix(PREFIX).lower() not in FIELDS
    ]
    if not unknown:
        return
    if settings.env == "prod":
        raise SettingsError(
            f"{'; '.join(unknown)}: CHAT_ENV=prod refuses unknown CHAT_* variables, correct the name or remove it"
        )
    if warn is not None:
        for line in unknown:
            warn(f"{line}; it is ignored (CHAT_ENV=prod would refuse to start)")


def _unknown(key: str) -> str:
    """``CHAT_X is not a p2p-chat setting``, with the closest settings' names when some are close."""
    name = key.removeprefix(PREFIX).lower()
    scores = {field: difflib.SequenceMatcher(None, name, field).ratio() for field in FIELDS}
    best = max(scores.values())
    close = [variable(field) for field, score in scores.items() if score == best >= CLOSE_ENOUGH]
    hint = f" (did you mean {' or '.join(close)}?)" if close else ""
    return f"{key} is not a p2p-chat setting{hint}"


def _check_values(settings: Settings) -> None:
    """What the types cannot say: finite numbers, URLs p2p-chat can use, origins, networks."""
    for name, field in FIELDS.items():
        value = getattr(settings, name)
        if isinstance(field.type, mi.FloatType) and not math.isfinite(value):
            raise _invalid(name, str(value), "is not finite")
    if problem := _database_url_problem(settings.database_url):
        raise _invalid("database_url", settings.database_url, problem)
    if settings.redis_url is not None and (problem := _redis_url_problem(settings.redis_url)):
        raise _invalid("redis_url", settings.redis_url, problem)
    for origin in settings.cors_origins:
        if origin != "*" and not _ORIGIN.match(origin):
            raise _invalid("cors_origins", origin, "is not an origin")
    for proxy in settings.trusted_proxies:
        try:
            ipaddress.ip_network(proxy, strict=False)
        except ValueError:
            raise _invalid("trusted_proxies", proxy, "is not an IP address or CIDR range") from None
    if settings.jwt_secret is not None and len(settings.jwt_secret.encode()) < MIN_SECRET_BYTES:
        raise _invalid("jwt_secret", settings.jwt_secret, "is too short")
    if settings.push_secret is not None and len(settings.push_secret.encode()) < MIN_SECRET_BYTES:
        raise _invalid("push_secret", settings.push_secret, "is too short")
    if settings.push_gateway_url is not None:
        try:
            parts = urlsplit(settings.push_gateway_url)
            ok = parts.scheme in ("http", "https") and bool(parts.hostname)
        except ValueError:
            ok = False
        if not ok:
            raise _invalid("push_gateway_url", settings.push_gateway_url, "is not an http(s) URL")


def _database_url_problem(url: str) -> str | None:
    try:
        driver = make_url(url).drivername
    except ArgumentError:
        return "is not a database URL"
    if driver not in DATABASE_DRIVERS:
        return f"names {driver}, not an async driver p2p-chat supports"
    return None


def _redis_url_problem(url: str) -> str | None:
    try:
        parse_redis_url(url)  # type: ignore[no-untyped-call]  # what Redis.from_url parses
    except ValueError as exc:
        return f"is not a Redis URL ({' '.join(str(exc).split())})"
    return None


def _check_combination(settings: Settings) -> None:
    if settings.jwt_secret is None:
        if settings.env == "prod":
            raise SettingsError(
                f"CHAT_ENV=prod needs CHAT_JWT_SECRET: set it to at least {MIN_SECRET_BYTES} random bytes, e.g. "
                "python3 -c 'import secrets;print(secrets.token_urlsafe(48))'"
            )
        if settings.workers > 1 or settings.redis_url:
            raise SettingsError(
                "several processes (CHAT_WORKERS > 1 or CHAT_REDIS_URL) must share an explicit CHAT_JWT_SECRET: set it"
            )
    if settings.push_gateway_url is not None and settings.push_secret is None:
        raise SettingsError(
            "CHAT_PUSH_GATEWAY_URL needs CHAT_PUSH_SECRET (the gateway checks each request's signature): set it"
        )
    if settings.push_lease_s <= settings.push_timeout_s:
        raise SettingsError("CHAT_PUSH_LEASE_S must be longer than CHAT_PUSH_TIMEOUT_S (a claim outlives its request)")
    if settings.workers > 1 and not settings.redis_url:
        raise SettingsError(
            "CHAT_WORKERS > 1 needs CHAT_REDIS_URL (presence and fan-out across processes): set it or CHAT_WORKERS=1"
        )


def _dev_secret(path: Path) -> str:
    """The development secret: read from ``path``, or generated there once with mode 0600."""
    if path.exists():
        secret = path.read_text().strip()
        if len(secret.encode()) >= MIN_SECRET_BYTES:
            return secret
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secret + "\n")
    path.chmod(0o600)
    return secret
