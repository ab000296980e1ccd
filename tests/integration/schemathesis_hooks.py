"""Hooks for the schemathesis run of ``test_conformance.py`` (loaded through ``SCHEMATHESIS_HOOKS``).

Every generated request acts as a user registered for it (logout, logout-all and a password
change would otherwise take the one shared token away from every later request), except the
devices' operations, which share one account (so that a device registered by one request can be
deleted by the next, as the stateful phase expects; they revoke nothing). With that
account at hand, the few rules that the OpenAPI document states in words because JSON Schema
cannot express them are kept in *positive* cases — the cases schemathesis promises the server will
accept — while negative cases stay as generated:

- a password change's ``currentPassword`` and an account deletion's ``password`` are the
  account's password;
- nobody blocks or unblocks themselves, or reads a conversation with themselves;
- a ``cursor`` is one the server issued (none is generated), and not given with a search ``q``;
- history takes ``before`` or ``after``, not both.
"""

from __future__ import annotations

import itertools
import os
import uuid
from dataclasses import dataclass
from typing import Any

import requests
import schemathesis

Case = schemathesis.Case[schemathesis.APIOperation[Any, Any, Any, Any]]

BASE_URL_VARIABLE = "CHAT_CONFORMANCE_BASE_URL"
PASSWORD = "conformance password 1"
_numbers = itertools.count(1)
DEVICE_OPERATIONS = ("registerDevice", "listDevices", "deleteDevice")
_devices_account: Account | None = None


@dataclass(frozen=True)
class Account:
    user_id: int
    token: str


def _register() -> Account:
    number = next(_numbers)
    response = requests.post(
        f"{os.environ[BASE_URL_VARIABLE]}/auth/register",
        json={
            "name": f"Conformance {number}",
            "email": f"conformance-{uuid.uuid4().hex}@example.test",
            "phoneNumber": f"+1999{os.getpid() % 1000:03d}{number:06d}",
            "password": PASSWORD,
        },
        timeout=10,
    )
    response.raise_for_status()
    body = response.json()
    return Account(user_id=body["id"], token=body["access_token"])


@schemathesis.auth(refresh_interval=None)
class FreshAccount:
    """A new account for every request."""

    def get(self, case: Case, context: schemathesis.AuthContext) -> Account:
        global _devices_account
        if case.operation.definition.raw.get("operationId") in DEVICE_OPERATIONS:
            if _devices_account is None:
                _devices_account = _register()
            return _devices_account
        return _register()

    def set(self, case: Case, data: Account, context: schemathesis.AuthContext) -> None:
        case.headers["Authorization"] = f"Bearer {data.token}"
        if case.meta is not None and case.meta.generation.mode.is_positive:
            _keep_unstated_rules(case, data)


def _keep_unstated_rules(case: Case, account: Account) -> None:
    operation = case.operation.definition.raw.get("operationId")
    query = case.query
    if operation == "changePassword" and isinstance(case.body, dict):
        case.body = {**case.body, "currentPassword": PASSWORD}
    elif operation == "deleteAccount" and isinstance(case.body, dict):
        case.body = {**case.body, "password": PASSWORD}
    elif operation in ("listUsers", "listConversations"):
        query.pop("cursor", None)
    elif operation == "listMessages" and "before" in query:
        query.pop("after", None)
    for name in ("user_id", "peer_id"):  # blocking, or a conversation with, yourself
        if case.path_parameters and case.path_parameters.get(name) == account.user_id:
            case.path_parameters = {**case.path_parameters, name: account.user_id + 1}
