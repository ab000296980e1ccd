"""Page sizes: a default when absent, an error when out of bounds."""

from __future__ import annotations

import pytest

from application.common import PAGE_DEFAULT, PAGE_MAX, page_limit
from domain.errors import FieldProblem, InvalidInputError


def test_missing_limit_gives_the_default() -> None:
    assert page_limit(None) == PAGE_DEFAULT == 50
    assert page_limit(None, default=20, maximum=50) == 20


@pytest.mark.parametrize("limit", [1, 42, PAGE_MAX])
def test_limit_within_bounds_is_kept(limit: int) -> None:
    assert page_limit(limit) == limit


@pytest.mark.parametrize("limit", [-1, 0, PAGE_MAX + 1])
def test_limit_outside_one_to_maximum_is_invalid_input_on_limit(limit: int) -> None:
    with pytest.raises(InvalidInputError) as caught:
        page_limit(limit)

    assert caught.value.problems == (FieldProblem("limit", "must be between 1 and 100"),)


def test_limit_respects_a_smaller_maximum() -> None:
    assert page_limit(50, maximum=50) == 50
    with pytest.raises(InvalidInputError):
        page_limit(51, maximum=50)
