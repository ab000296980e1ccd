"""``/conversations``: the conversation list and one conversation's history."""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, Parameter

from application.common import MAX_ID, PAGE_MAX, PageRequest, Principal
from application.messaging import History, HistoryQuery, ListConversations
from entrypoints.http.refusals import (
    BAD_CURSOR,
    BAD_LIMIT,
    BAD_TOKEN,
    INT64_ID,
    STORE_DOWN,
    UNKNOWN_USER,
    answers,
    http_refusal,
    invalid,
)
from entrypoints.wire import UserPublic, WireMessage

Limit = Annotated[int | None, Parameter(ge=1, le=PAGE_MAX, description="page size (default 50)")]
PeerId = Annotated[
    int,
    Parameter(ge=1, description="the other user's id (no user has one above 2^63-1: 404)", schema_extra=INT64_ID),
]
Before = Annotated[int | None, Parameter(ge=1, le=MAX_ID, description="the page just below this seq")]
# Litestar leaves out a bound of 0 from the document (it tests the bound's truth): it is added back.
After = Annotated[
    int | None,
    Parameter(ge=0, le=MAX_ID, description="the page just above this seq", schema_extra={"minimum": 0}),
]


class ConversationOut(msgspec.Struct, frozen=True, rename="camel"):
    """A conversation: the peer, the last message you can see, and both read pointers (0 before any
    read)."""

    peer: UserPublic
    last_message: WireMessage
    unread_count: int
    last_read_seq: int
    peer_last_read_seq: int


class ConversationPage(msgspec.Struct, frozen=True, rename="camel"):
    """A page of conversations, most recent first; pass ``nextCursor`` back as ``cursor``."""

    items: list[ConversationOut]
    next_cursor: str | None


class MessagePage(msgspec.Struct, frozen=True, rename="camel"):
    """Messages ascending by ``seq``; ``hasMore``: more exist in the direction of travel."""

    items: list[WireMessage]
    has_more: bool


class ConversationsController(Controller):
    path = "/conversations"
    tags = ["conversations"]
    security = [{"bearer": []}]

    @get(
        "/",
        operation_id="listConversations",
        response_description="A page of conversations",
        summary="Your conversations, most recent first",
        responses=answers(BAD_LIMIT, BAD_CURSOR, BAD_TOKEN, STORE_DOWN),
    )
    async def list_conversations(
        self,
        principal: NamedDependency[Principal],
        list_conversations: NamedDependency[ListConversations],
        limit: FromQuery[Limit] = None,
        cursor: FromQuery[Annotated[str | None, Parameter(description="`nextCursor` of the previous page")]] = None,
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

    @get(
        "/{peer_id:int}/messages",
        operation_id="listMessages",
        response_description="A page of messages",
        summary="One conversation's messages, ascending by seq",
        description="No `before`/`after`: the newest page. `before=S`: the page just below `S`; `after=S`: the "
        "page just above `S`; both at once: 400. Messages you sent to a user who blocked you are only in your "
        "own history (the peer may see gaps in `seq`).",
        responses=answers(
            BAD_LIMIT,
            http_refusal(400, "the peer id is not a positive integer", field="peer_id"),
            invalid("before", "give before or after, not both"),
            invalid("peerId", "there is no conversation with yourself"),
            BAD_TOKEN,
            UNKNOWN_USER,
            STORE_DOWN,
        ),
    )
    async def messages(
        self,
        peer_id: FromPath[PeerId],
        principal: NamedDependency[Principal],
        history: NamedDependency[History],
        before: FromQuery[Before] = None,
        after: FromQuery[After] = None,
        limit: FromQuery[Limit] = None,
    ) -> MessagePage:
        page = await history(principal, HistoryQuery(peer_id=peer_id, before=before, after=after, limit=limit))
        return MessagePage(items=[WireMessage.of(m) for m in page.items], has_more=page.has_more)
