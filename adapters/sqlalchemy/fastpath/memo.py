"""What the units of work of one database remember between transactions to skip reads.

Only facts that can never stop being true are kept: a member row's ``has_sent`` only ever turns
TRUE (an account's deletion keeps its member rows). Each is learned from a transaction only once it
committed. Bounded: forgotten wholesale when full (the next transactions read them again). Shared
by every unit of work of one process; another process's writes only ever add to what is true.

Account ids are not remembered: an account can be deleted (decision 48), and a process would go on
accepting messages to it from its memo while another process deleted it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable


class StoreMemo:
    def __init__(self, limit: int = 200_000) -> None:
        self.sent: set[tuple[int, int]] = set()  # (user, peer) member rows with has_sent TRUE
        self._limit = limit

    def learn(self, *, sent: Iterable[tuple[int, int]] = ()) -> None:
        if len(self.sent) >= self._limit:
            self.sent.clear()
        self.sent.update(sent)
