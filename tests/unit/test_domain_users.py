"""Rules for names, emails, phone numbers, passwords, registrations and user cards."""

from __future__ import annotations

import dataclasses

import pytest

from domain.errors import FieldProblem, InvalidInputError
from domain.users import (
    Registration,
    User,
    UserCard,
    check_password,
    email_key,
    name_key,
    normalise_email,
    normalise_name,
    normalise_phone,
    try_normalise_phone,
)
from tests.unit.fakes import EPOCH


def fields_of(error: InvalidInputError) -> list[str]:
    return [problem.field for problem in error.problems]


# --- names ------------------------------------------------------------------------------------


def test_name_is_trimmed() -> None:
    assert normalise_name("  Ada Lovelace \t") == "Ada Lovelace"


@pytest.mark.parametrize("raw", ["", "   ", "\t\n"])
def test_empty_name_after_trimming_is_rejected(raw: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        normalise_name(raw)
    assert fields_of(caught.value) == ["name"]


@pytest.mark.parametrize("raw", ["Deleted account", "deleted ACCOUNT", "  Deleted account  "])
def test_nobody_registers_as_a_deleted_account(raw: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        Registration.parse(name=raw, email="ada@example.com", phone_number="+14155550123", password="password123")
    assert fields_of(caught.value) == ["name"]
    assert normalise_name(raw) == raw.strip()  # a device label may say it: only account names are reserved


def test_name_length_is_counted_in_code_points() -> None:
    assert normalise_name("😀" * 100) == "😀" * 100
    assert normalise_name("x") == "x"
    with pytest.raises(InvalidInputError):
        normalise_name("😀" * 101)


def test_name_of_101_characters_is_rejected_even_if_padded_within_bounds_before_trimming() -> None:
    assert len(normalise_name(" " + "a" * 100 + " ")) == 100
    with pytest.raises(InvalidInputError):
        normalise_name("a" * 101)


@pytest.mark.parametrize("raw", ["Bob\x00", "Bo\nb", "Bo\tb", "Bob\x1b[31m", "Bo\x7fb"])
def test_name_with_control_characters_is_rejected(raw: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        normalise_name(raw)
    assert caught.value.problems == (FieldProblem("name", "must not contain control or text-direction characters"),)


@pytest.mark.parametrize("raw", ["Bob\x9b31m", "Bo\x80b", "evil\u202egnp.exe", "a\u2066b"])
def test_name_with_c1_controls_or_direction_overrides_is_rejected(raw: str) -> None:
    with pytest.raises(InvalidInputError):
        normalise_name(raw)


def test_name_with_emoji_joiners_is_accepted() -> None:
    assert (
        normalise_name("Fam \U0001f468\u200d\U0001f469\u200d\U0001f467")
        == "Fam \U0001f468\u200d\U0001f469\u200d\U0001f467"
    )


def test_phone_accepts_any_white_space_between_digits() -> None:
    assert normalise_phone("+1\t415\u00a0555 0100") == "+14155550100"


def test_name_error_uses_the_given_field_name() -> None:
    with pytest.raises(InvalidInputError) as caught:
        normalise_name("", field="displayName")
    assert fields_of(caught.value) == ["displayName"]


def test_name_key_is_the_casefold_of_the_name() -> None:
    assert name_key("Straße") == "strasse"
    assert name_key("ÉCOLE") == "école"


# --- emails -----------------------------------------------------------------------------------


def test_email_is_trimmed_and_keeps_its_case() -> None:
    assert normalise_email("  Ada@Example.COM ") == "Ada@Example.COM"


def test_email_key_is_trimmed_and_lower_case() -> None:
    assert email_key("  Ada@Example.COM ") == "ada@example.com"
    assert email_key("ada@example.com") == email_key("ADA@EXAMPLE.COM")


@pytest.mark.parametrize(
    "raw",
    ["", "plain", "@example.com", "ada@", "ada@example", "ada@@example.com", "a da@example.com", "ada@.com"],
)
def test_malformed_email_is_rejected(raw: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        normalise_email(raw)
    assert fields_of(caught.value) == ["email"]


def test_email_may_be_254_characters_but_not_255() -> None:
    domain = "@example.com"
    assert normalise_email("a" * (254 - len(domain)) + domain)
    with pytest.raises(InvalidInputError):
        normalise_email("a" * (255 - len(domain)) + domain)


# --- phone numbers ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [
        ("+1 (415) 555-0100", "+14155550100"),
        ("0014155550100", "+14155550100"),
        ("00 1 415.555.0100", "+14155550100"),
        ("+12345678", "+12345678"),
        ("+123456789012345", "+123456789012345"),
    ],
)
def test_phone_number_is_normalised(raw: str, normalised: str) -> None:
    assert normalise_phone(raw) == normalised


def test_international_prefix_00_and_plus_give_the_same_number() -> None:
    assert normalise_phone("+1 (415) 555-0100") == normalise_phone("0014155550100")


@pytest.mark.parametrize(
    "raw",
    [
        "+123",  # too short
        "+1234567",  # 7 digits
        "abc",
        "+1234567890123456",  # 16 digits
        "001234567890123456",  # 16 digits after 00
        "4155550100",  # no international prefix
        "",
        "+",
        "+1 415 555 0100 ext 12",
        "+1/415/555/0100",
        "+١٢٣٤٥٦٧٨٩",  # non-ASCII digits
    ],
)
def test_malformed_phone_number_is_rejected(raw: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        normalise_phone(raw)
    assert fields_of(caught.value) == ["phoneNumber"]


def test_try_normalise_phone_returns_none_for_what_is_not_a_number() -> None:
    assert try_normalise_phone("Ada") is None
    assert try_normalise_phone("+123") is None
    assert try_normalise_phone("0014155550100") == "+14155550100"


# --- passwords --------------------------------------------------------------------------------


def test_password_of_8_to_128_characters_is_returned_unchanged() -> None:
    assert check_password("  spaced  ") == "  spaced  "
    assert check_password("x" * 128) == "x" * 128


@pytest.mark.parametrize("raw", ["", "1234567", "x" * 129])
def test_password_outside_8_to_128_characters_is_rejected(raw: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        check_password(raw)
    assert fields_of(caught.value) == ["password"]


def test_password_of_only_whitespace_is_rejected() -> None:
    with pytest.raises(InvalidInputError) as caught:
        check_password(" " * 12, field="newPassword")
    assert fields_of(caught.value) == ["newPassword"]


# --- registrations ----------------------------------------------------------------------------


def test_registration_normalises_every_field() -> None:
    data = Registration.parse(
        name="  Ada ", email=" Ada@Example.com ", phone_number="+1 (415) 555-0100", password=" secret pw "
    )

    assert data == Registration(
        name="Ada", email="Ada@Example.com", phone_number="+14155550100", password=" secret pw "
    )


def test_registration_reports_every_invalid_field_at_once_with_wire_names() -> None:
    with pytest.raises(InvalidInputError) as caught:
        Registration.parse(name=" ", email="nope", phone_number="+123", password="short")

    assert fields_of(caught.value) == ["name", "email", "phoneNumber", "password"]


def test_registration_reports_only_the_invalid_fields() -> None:
    with pytest.raises(InvalidInputError) as caught:
        Registration.parse(name="Ada", email="nope", phone_number="+14155550100", password="short")

    assert fields_of(caught.value) == ["email", "password"]


# --- users and cards --------------------------------------------------------------------------


def make_user() -> User:
    data = Registration.parse(
        name="Ada Lovelace", email="Ada@Example.com", phone_number="+14155550100", password="password1"
    )
    return User.register(data, password_hash="hash", now=EPOCH)


def test_registered_user_gets_search_and_identity_keys() -> None:
    user = make_user()

    assert (user.name, user.name_key) == ("Ada Lovelace", "ada lovelace")
    assert (user.email, user.email_key) == ("Ada@Example.com", "ada@example.com")
    assert user.password_hash == "hash"
    assert user.created_at == EPOCH
    assert user.last_seen_at is None


def test_user_has_no_uid_before_it_is_stored() -> None:
    user = make_user()

    with pytest.raises(RuntimeError):
        _ = user.uid
    user.id = 5
    assert user.uid == 5


def test_rename_trims_and_updates_the_name_key() -> None:
    user = make_user()

    user.rename("  GRACE ")

    assert (user.name, user.name_key) == ("GRACE", "grace")


def test_invalid_rename_leaves_the_user_unchanged() -> None:
    user = make_user()

    with pytest.raises(InvalidInputError):
        user.rename("   ")

    assert (user.name, user.name_key) == ("Ada Lovelace", "ada lovelace")


def test_user_card_cannot_hold_email_phone_or_hash() -> None:
    assert [f.name for f in dataclasses.fields(UserCard)] == ["id", "name", "online", "last_seen_at"]


def test_user_card_hides_presence_by_default() -> None:
    card = UserCard(id=1, name="Ada")

    assert card.online is None
    assert card.last_seen_at is None
