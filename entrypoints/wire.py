"""Wire formats shared by the HTTP and WebSocket edges."""

from __future__ import annotations

from datetime import UTC, datetime


def iso_ms(moment: datetime) -> str:
    """ISO-8601 UTC with exactly three fractional digits and ``Z`` (``2026-11-24T05:20:21.089Z``)."""
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def iso_ms_or_none(moment: datetime | None) -> str | None:
    return None if moment is None else iso_ms(moment)
