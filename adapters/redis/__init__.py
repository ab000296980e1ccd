"""Redis adapters for scaled-out deployments: presence, attempt counters, cross-process fan-out.

Times cross into Redis as integer microseconds since the Unix epoch, taken from the injected
clock (never Redis ``TIME``), so a stored instant comes back as exactly the ``datetime`` it was.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def epoch_us(at: datetime) -> int:
    """``at`` (aware) as whole microseconds since the epoch; exact in a Lua double until 2255."""
    return (at - EPOCH) // _MICROSECOND


def from_epoch_us(value: int) -> datetime:
    """The aware UTC ``datetime`` of :func:`epoch_us`."""
    return EPOCH + timedelta(microseconds=value)


def text(value: bytes | str) -> str:
    """A reply as ``str``, whether or not the client decodes responses."""
    return value.decode() if isinstance(value, bytes) else value
