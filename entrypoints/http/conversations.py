"""``/conversations``: the conversation list and one conversation's history."""

from __future__ import annotations

import msgspec
from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery

from application.common import PageRequest, Principal
from application.messaging import History, HistoryQuery, ListConversations
from entrypoints.wire import UserPublic, WireMessage


class ConversationOut(msgspec.Struct, frozen=True, rename="camel"):
    peer: UserPublic
    last_message: WireMessage
    unread_count: int
    last_read_seq: int
    peer_last_read_seq: int


class ConversationPage(msgspec.Struct, frozen=True, rename="camel"):
    items: list[ConversationOut]
    next_cursor: str | None


class MessagePage(msgspec.Struct, frozen=True, rename="camel"):
    items: list[WireMessage]
    has_more: bool


class ConversationsController(Controller):
    path = "/conversations"
    tags = ["conversations"]
    security = [{"bearer": []}]

    @get("/", summary="Your conversations, most recent first")
    async def list_conversations(
        self,
        principal: NamedDependency[Principal],
        list_conversations: NamedDependency[ListConversations],
        limit: FromQuery[int | None] = None,
        cursor: FromQuery[str | None] = None,
    ) -> ConversationPage:
        page = await list_conversations(principal, PageRequest(limit=limit, cursor=cursor))
        return ConversationPage(
            items=[
                ConversationOut(
                    peer=UserPublic.of(v.peer),
                    last_message=WireMessage.of(v.last_message),
                    unread_count=v.unread_count,
                    last_read_seq=v.state.read_seq,
                    peer_last_read_seq=v.state.peer_read_seq,
                )
                for v in page.items
            ],
            next_cursor=page.next_cursor,
        )

    @get("/{peer_id:int}/messages", summary="One conversation's messages, ascending by seq")
    async def messages(
        self,
        peer_id: FromPath[int],
        principal: NamedDependency[Principal],
        history: NamedDependency[History],
        before: FromQuery[int | None] = None,
        after: FromQuery[int | None] = None,
        limit: FromQuery[int | None] = None,
    ) -> MessagePage:
        page = await history(principal, HistoryQuery(peer_id=peer_id, before=before, after=after, limit=limit))
        return MessagePage(items=[WireMessage.of(m) for m in page.items], has_more=page.has_more)
