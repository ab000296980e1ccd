"""Where the store applies a rule of :mod:`domain.social` itself, it agrees with the rule.

Random small social graphs (contacts, blocks either way) are stored on SQLite and PostgreSQL; for
every ordered pair of users the store's answers are compared with what the domain rules decide
from the graph: the facts (``relations``), the presence audience (``visible_contact_ids``), who
may be found (``search``) and which messages each side sees once withholding applied
(``history``, against :meth:`domain.messages.Message.visible_to`).
"""

from __future__ import annotations

import itertools
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from adapters.sqlalchemy.uow import SqlAlchemyUnitOfWork
from domain.messages import NewMessage, Pair
from domain.social import Relation
from tests.integration.test_repositories import new_user, store

UowFactory = Callable[[], SqlAlchemyUnitOfWork]
NOW = datetime(2026, 5, 4, 3, 2, 1, tzinfo=UTC)
USERS_PER_GRAPH = 6
SEEDS = range(6)  # together they hold every combination of contact and blocks


@dataclass(frozen=True, slots=True)
class Graph:
    """Users, contacts (unordered pairs) and blocks ``(blocker, blocked)``."""

    users: list[int]
    contacts: set[frozenset[int]]
    blocks: set[tuple[int, int]]

    def relation(self, me: int, other: int) -> Relation:
        return Relation.between(me, other, self.blocks, contacts=frozenset((me, other)) in self.contacts)

    def pairs(self) -> list[tuple[int, int]]:
        return [(a, b) for a in self.users for b in self.users if a != b]


async def random_graph(uow_factory: UowFactory, rng: random.Random) -> Graph:
    """A stored graph: every pair is a contact with probability ½, every direction blocked with ¼."""
    ids = await store(uow_factory, *(new_user(f"Member {i}") for i in range(USERS_PER_GRAPH)))
    graph = Graph(
        users=ids,
        contacts={frozenset(pair) for pair in itertools.combinations(ids, 2) if rng.random() < 0.5},
        blocks={(a, b) for a in ids for b in ids if a != b and rng.random() < 0.25},
    )
    async with uow_factory() as uow:
        await uow.contacts.add_pairs(tuple(pair) for pair in graph.contacts)  # type: ignore[misc]
        for blocker, blocked in sorted(graph.blocks):
            await uow.blocks.block(blocker, blocked, now=NOW)
        await uow.commit()
    return graph


async def test_the_store_agrees_with_the_domain_rules_for_every_pair(uow_factory: UowFactory) -> None:
    graphs = [await random_graph(uow_factory, random.Random(seed)) for seed in SEEDS]  # noqa: S311 - test data
    seen = {graph.relation(a, b) for graph in graphs for a, b in graph.pairs()}
    assert len(seen) == 8  # every combination of contact and block in each direction occurs

    async with uow_factory() as uow:
        for graph in graphs:
            for me in graph.users:
                others = [uid for uid in graph.users if uid != me]
                expected = {uid: graph.relation(me, uid) for uid in others}

                # The facts: the domain rules decide from them in the application.
                facts = await uow.contacts.relations(me, graph.users)
                assert {uid: facts.get(uid, Relation()) for uid in others} == expected

                # The presence audience, which the store filters itself.
                audience = await uow.contacts.visible_contact_ids(me)
                assert audience == sorted(uid for uid, r in expected.items() if r.presence_visible)

                # Search, which the store filters itself ("member" matches every name of the graph).
                found = await uow.users.search(
                    viewer_id=me, name_key="member", email_key="", phone_number=None, limit=50
                )
                found_here = {u.uid for u in found if u.uid in graph.users}
                assert found_here == {uid for uid, r in expected.items() if r.may_find}


async def test_withheld_messages_are_seen_as_the_domain_rules_say(uow_factory: UowFactory) -> None:
    graph = await random_graph(uow_factory, random.Random(7))  # noqa: S311 - test data, not secrets
    assert any(graph.relation(a, b).withholds_sent for a, b in graph.pairs())
    assert not all(graph.relation(a, b).withholds_sent for a, b in graph.pairs())
    drafts = [
        NewMessage(
            id=str(uuid.uuid4()),
            sender_id=a,
            recipient_id=b,
            body=f"{a} to {b}",
            client_msg_id=uuid.uuid4().hex,
            created_at=NOW,
            withheld=graph.relation(a, b).withholds_sent,
        )
        for a, b in graph.pairs()
    ]
    async with uow_factory() as uow:
        stored = [appended.message for appended in await uow.conversations.append(drafts)]
        await uow.commit()

    async with uow_factory() as uow:
        for viewer, peer in graph.pairs():
            pair = Pair.of(viewer, peer)
            shown = await uow.messages.history(viewer, pair, before=None, after=None, limit=10)
            expected = [m.id for m in stored if m.pair == pair and m.visible_to(viewer)]
            assert sorted(m.id for m in shown) == sorted(expected)
