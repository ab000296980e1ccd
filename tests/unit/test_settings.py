"""The settings as read from the environment: every invalid value is one line naming the variable
and what is valid; unknown ``CHAT_*`` variables are refused in prod and reported in dev; reading
has no side effect; README's configuration table says what the code does."""

from __future__ import annotations

import re
from pathlib import Path

import msgspec
import pytest

from entrypoints.settings import (
    FIELDS,
    Settings,
    SettingsError,
    load_settings,
    read_settings,
    valid_values,
    variable,
)

SECRET = "unit-test-secret-0123456789abcdef0123"
README = Path(__file__).resolve().parents[2] / "README.md"


def refusal(**env: str) -> str:
    with pytest.raises(SettingsError) as caught:
        read_settings(env)
    message = str(caught.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (
            {"CHAT_PORT": "eighty"},
            "CHAT_PORT='eighty' is not valid: expected a whole number from 0 to 65535",
        ),
        (
            {"CHAT_WORKERS": "0"},
            "CHAT_WORKERS='0' is not valid: expected a whole number of at least 1",
        ),
        (
            {"CHAT_OFFLINE_GRACE_S": "-1"},
            "CHAT_OFFLINE_GRACE_S='-1' is not valid: expected a number greater than 0",
        ),
        (
            {"CHAT_OFFLINE_GRACE_S": "inf"},
            "CHAT_OFFLINE_GRACE_S='inf' is not finite: expected a number greater than 0",
        ),
        (
            {"CHAT_ENV": "production"},
            "CHAT_ENV='production' is not valid: expected one of dev, prod",
        ),
        (
            {"CHAT_REDIS_PREFIX": "a b"},
            "CHAT_REDIS_PREFIX='a b' is not valid: expected 1 to 40 of A-Z a-z 0-9 _ . -",
        ),
        (
            {"CHAT_TRUSTED_PROXIES": "10.0.0.1, proxy.internal"},
            "CHAT_TRUSTED_PROXIES='proxy.internal' is not an IP address or CIDR range: "
            "expected comma-separated IP addresses or CIDR ranges (10.0.0.1,192.168.0.0/16)",
        ),
        (
            {"CHAT_CORS_ORIGINS": "https://app.example.com/"},
            "CHAT_CORS_ORIGINS='https://app.example.com/' is not an origin: expected comma-separated origins "
            "scheme://host[:port] (no path, no trailing slash), or *",
        ),
        (
            {"CHAT_DATABASE_URL": "sqlite:///chat.db"},
            "CHAT_DATABASE_URL='sqlite:///chat.db' names sqlite, not an async driver p2p-chat supports: "
            "expected sqlite+aiosqlite:///path/to/chat.db or postgresql+asyncpg://user:password@host:5432/db",
        ),
        (
            {"CHAT_DATABASE_URL": "postgresql://chat:hunter2@db/chat"},
            "CHAT_DATABASE_URL='postgresql://chat:***@db/chat' names postgresql, not an async driver",
        ),
        ({"CHAT_DATABASE_URL": "chat.db"}, "CHAT_DATABASE_URL='chat.db' is not a database URL: expected"),
        (
            {"CHAT_REDIS_URL": "localhost:6379", "CHAT_JWT_SECRET": SECRET},
            "CHAT_REDIS_URL='localhost:6379' is not a Redis URL (Redis URL must specify one of the following "
            "schemes (redis://, rediss://, unix://)): expected redis://[:password@]host[:port][/db]",
        ),
        (
            {"CHAT_REDIS_URL": "redis://:hunter2@redis:port/0", "CHAT_JWT_SECRET": SECRET},
            "CHAT_REDIS_URL='redis://:***@redis:port/0' is not a Redis URL",
        ),
        ({"CHAT_JWT_SECRET": "short"}, "CHAT_JWT_SECRET is too short: expected any string of at least 32 bytes"),
        ({"CHAT_ENV": "prod"}, "CHAT_ENV=prod needs CHAT_JWT_SECRET: set it to at least 32 random bytes"),
        ({"CHAT_WORKERS": "2", "CHAT_JWT_SECRET": SECRET}, "CHAT_WORKERS > 1 needs CHAT_REDIS_URL"),
        (
            {"CHAT_PUSH_GATEWAY_URL": "gateway.internal:8080"},
            "CHAT_PUSH_GATEWAY_URL='gateway.internal:8080' is not an http(s) URL: expected an http:// or https:// URL",
        ),
        ({"CHAT_PUSH_GATEWAY_URL": "https://push.internal/notify"}, "CHAT_PUSH_GATEWAY_URL needs CHAT_PUSH_SECRET"),
        ({"CHAT_PUSH_SECRET": "short"}, "CHAT_PUSH_SECRET is too short: expected any string of at least 32 bytes"),
        ({"CHAT_PUSH_INCLUDE_BODY": "maybe"}, "CHAT_PUSH_INCLUDE_BODY='maybe' is not valid: expected true or false"),
        (
            {"CHAT_PUSH_LEASE_S": "5", "CHAT_PUSH_TIMEOUT_S": "5"},
            "CHAT_PUSH_LEASE_S must be longer than CHAT_PUSH_TIMEOUT_S",
        ),
    ],
)
def test_an_invalid_value_is_one_line_naming_the_variable_and_what_is_valid(env: dict[str, str], expected: str) -> None:
    message = refusal(**env)
    assert message.startswith(expected)
    assert "hunter2" not in message


def test_secrets_are_never_repeated_in_a_message() -> None:
    assert "tiny-secret" not in refusal(CHAT_JWT_SECRET="tiny-secret")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("CHAT_TRUSTED_PROXIES", "10.0.0.1,192.168.0.0/16,::1,fd00::/8"),
        ("CHAT_CORS_ORIGINS", "https://app.example.com,http://localhost:5173,capacitor://localhost,*"),
        ("CHAT_DATABASE_URL", "postgresql+asyncpg://chat:pw@db.internal:5432/chat"),
        ("CHAT_REDIS_URL", "rediss://:pw@redis.internal:6380/2"),
        ("CHAT_REDIS_URL", "unix:///run/redis.sock"),
    ],
)
def test_valid_values_pass(name: str, value: str) -> None:
    read_settings({name: value, "CHAT_JWT_SECRET": SECRET})


def test_an_unknown_variable_is_refused_in_prod_with_the_closest_names() -> None:
    message = refusal(CHAT_ENV="prod", CHAT_JWT_SECRET=SECRET, CHAT_PROT="80", CHAT_DB_URL="x", CHAT_ZZZZ="1")
    assert message == (
        "CHAT_DB_URL is not a p2p-chat setting (did you mean CHAT_DATABASE_URL or CHAT_REDIS_URL?); "
        "CHAT_PROT is not a p2p-chat setting (did you mean CHAT_PORT?); "
        "CHAT_ZZZZ is not a p2p-chat setting: "
        "CHAT_ENV=prod refuses unknown CHAT_* variables, correct the name or remove it"
    )


def test_an_unknown_variable_is_a_warning_in_dev_and_changes_nothing() -> None:
    warnings: list[str] = []
    settings = read_settings({"CHAT_TRUSTED_PROXY": "10.0.0.1"}, warn=warnings.append)
    assert warnings == [
        "CHAT_TRUSTED_PROXY is not a p2p-chat setting (did you mean CHAT_TRUSTED_PROXIES?); "
        "it is ignored (CHAT_ENV=prod would refuse to start)"
    ]
    assert settings == read_settings({})


def test_the_test_suites_variables_and_other_prefixes_are_not_settings_nor_typos() -> None:
    warnings: list[str] = []
    env = {"CHAT_TEST_POSTGRES_URL": "x", "CHATTY": "1", "P2P_CHAT_PORT": "1", "CHAT_ENV": "prod"}
    read_settings({**env, "CHAT_JWT_SECRET": SECRET}, warn=warnings.append)
    assert warnings == []


def test_an_empty_value_counts_as_unset() -> None:
    assert read_settings({"CHAT_PORT": "", "CHAT_REDIS_URL": " "}) == read_settings({})


def test_reading_writes_nothing_and_loading_completes_the_dev_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert read_settings({}).jwt_secret is None
    assert list(tmp_path.iterdir()) == []
    secret_file = tmp_path / "data" / "jwt_secret"
    loaded = load_settings({}, secret_file=secret_file)
    assert loaded.secret == secret_file.read_text().strip()


def test_a_dev_secret_that_cannot_be_written_is_one_line_with_the_fix(tmp_path: Path) -> None:
    blocker = tmp_path / "data"
    blocker.write_text("a file where the directory should be")
    with pytest.raises(SettingsError, match=r"^cannot keep the development JWT secret in .*: set CHAT_JWT_SECRET"):
        load_settings({}, secret_file=blocker / "jwt_secret")


def _readme_rows() -> dict[str, list[str]]:
    """README's configuration table: ``CHAT_X`` → its cells (default, valid values, meaning)."""
    section = README.read_text().split("## Configuration", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, list[str]] = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split(" | ")]
        if name := re.fullmatch(r"`(CHAT_\w+)`", cells[0]):
            assert name.group(1) not in rows, f"{name.group(1)} is listed twice"
            rows[name.group(1)] = cells[1:]
    return rows


def _shown(default: object) -> str:
    if default in (None, ()):
        return "unset"
    if isinstance(default, float):
        return f"`{default:g}`"
    return f"`{default}`"


def test_readme_lists_every_setting_with_its_default_and_valid_values() -> None:
    rows = _readme_rows()
    assert sorted(rows) == sorted(variable(name) for name in FIELDS)
    for name, field in FIELDS.items():
        default, valid, _meaning = rows[variable(name)]
        assert default.startswith(_shown(field.default)), f"{variable(name)}: README says {default}"
        assert valid.replace("`", "") == valid_values(name), f"{variable(name)}: README says {valid}"


def test_every_default_is_valid() -> None:
    env = {variable(name): str(field.default) for name, field in FIELDS.items() if field.default not in (None, ())}
    assert read_settings(env) == msgspec.convert({}, Settings)


@pytest.mark.parametrize(
    ("env", "served"),
    [
        ({}, True),
        ({"CHAT_WEB_APP": "off"}, False),
        ({"CHAT_ENV": "prod", "CHAT_JWT_SECRET": SECRET}, False),
        ({"CHAT_ENV": "prod", "CHAT_JWT_SECRET": SECRET, "CHAT_WEB_APP": "on"}, True),
    ],
)
def test_the_web_app_is_served_in_dev_and_in_prod_only_when_asked(env: dict[str, str], served: bool) -> None:
    assert read_settings(env).serves_web_app is served


def test_chat_web_app_takes_on_or_off() -> None:
    with pytest.raises(SettingsError, match=r"^CHAT_WEB_APP='yes' is not valid: expected one of on, off$"):
        read_settings({"CHAT_WEB_APP": "yes"})
