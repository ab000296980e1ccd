"""The rules the OpenAPI document publishes are the rules the code checks: for generated strings, a
JSON Schema validator's verdict on the published field schema equals the domain's (no framework,
no network: msgspec writes the schemas, jsonschema-rs reads them)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jsonschema_rs
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from application.users import SEARCH_QUERY_MAX, SEARCH_QUERY_MIN, SEARCH_QUERY_PATTERN
from domain.errors import InvalidInputError
from domain.messages import check_storable
from domain.users import check_password, normalise_email, normalise_name, normalise_phone
from entrypoints.http.schemas import PasswordIn, RegisterIn

# Characters each rule is about, and some that no rule mentions.
INTERESTING = (
    " \t\n\r\x0b\x0c\x1c\x1f\x85\xa0\u1680\u2000\u2028\u202f\u3000"  # white space (str.isspace)
    "\x00\x01\x7f\x9f"  # other controls
    "\u202a\u202e\u2066\u2069\u200b"  # text direction; a zero-width space (not white space)
    "@.+-()0123456789aZé字😀"
)
strings = st.text(alphabet=st.sampled_from(INTERESTING), max_size=40) | st.text(max_size=300)
SCHEMAS = msgspec.json.schema_components([RegisterIn, PasswordIn])[1]


def accepts(check: Callable[[str], Any], value: str, max_length: int | None = None) -> bool:
    """Whether the edge (its decoder checks ``max_length``) and the domain take ``value``."""
    if max_length is not None and len(value) > max_length:
        return False
    try:
        check(value)
    except InvalidInputError:
        return False
    return True


def search_rule(query: str) -> None:
    """What SearchUsers checks of a query (before it searches)."""
    if not SEARCH_QUERY_MIN <= len(query.strip()) <= SEARCH_QUERY_MAX:
        raise InvalidInputError.of("query", "length")
    check_storable(query, "query")


RULES: dict[str, tuple[dict[str, Any], Callable[[str], Any]]] = {
    "name": (SCHEMAS["RegisterIn"]["properties"]["name"], normalise_name),
    "email": (SCHEMAS["RegisterIn"]["properties"]["email"], normalise_email),
    "phoneNumber": (SCHEMAS["RegisterIn"]["properties"]["phoneNumber"], normalise_phone),
    "password": (SCHEMAS["RegisterIn"]["properties"]["password"], check_password),
    "newPassword": (SCHEMAS["PasswordIn"]["properties"]["newPassword"], check_password),
    "q": ({"type": "string", "pattern": SEARCH_QUERY_PATTERN}, search_rule),
}


@pytest.mark.parametrize("field", list(RULES))
def test_the_published_schema_and_the_domain_agree(field: str) -> None:
    schema, check = RULES[field]
    validator = jsonschema_rs.validator_for(schema)
    from_pattern = st.from_regex(schema["pattern"], fullmatch=True) if "^" in schema["pattern"] else st.nothing()

    @settings(max_examples=200, derandomize=True, database=None, deadline=None, suppress_health_check=list(HealthCheck))
    @given(value=strings | from_pattern)
    def agree(value: str) -> None:
        assert validator.is_valid(value) == accepts(check, value, schema.get("maxLength")), repr(value)

    agree()


@pytest.mark.parametrize(
    ("field", "value", "valid"),
    [
        ("name", "  Ann  ", True),
        ("name", "\u202eAnn", False),
        ("name", " \t ", False),
        ("email", " Ann@Example.com ", True),
        ("email", "a\x00b@example.com", False),
        ("phoneNumber", "0044 (20) 7946-0000", True),
        ("phoneNumber", "+1234567", False),
        ("password", "        ", False),
        ("q", "  ab ", True),
        ("q", " a ", False),
    ],
)
def test_known_values(field: str, value: str, valid: bool) -> None:
    schema, check = RULES[field]
    assert jsonschema_rs.validator_for(schema).is_valid(value) is valid
    assert accepts(check, value, schema.get("maxLength")) is valid
