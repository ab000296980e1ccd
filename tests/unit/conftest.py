"""Fixtures of the unit tests: a fresh, fake-backed core per test."""

from __future__ import annotations

import pytest

from tests.unit.harness import World


@pytest.fixture
def world() -> World:
    return World()
