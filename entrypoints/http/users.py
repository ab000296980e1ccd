"""``/users``: own profile, one user, contacts and search, blocking."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, delete, get, patch, put
from litestar.di import NamedDependency
from litestar.openapi import ResponseSpec
from litestar.params import FromPath, FromQuery, JSONBody, Parameter
from litestar.response import Stream
from litestar.status_codes import HTTP_204_NO_CONTENT

from application.account_life import AccountDeletion, DeleteAccount, ExportAccount
from application.common import PAGE_MAX, PageRequest, Principal
from application.social import Block, BlockUser, ListBlocked, Unblock, UnblockUser
from application.users import (
    SEARCH_QUERY_MAX,
    SEARCH_QUERY_MIN,
    SEARCH_QUERY_PATTERN,
    GetProfile,
    GetUser,
    ListContacts,
    LookupLimit,
    Rename,
    RenameUser,
    SearchQuery,
    SearchUsers,
    UserLookup,
)
from domain.errors import InvalidInputError, RateLimitedError
from entrypoints.http.export import export_json
from entrypoints.http.refusals import (
    BAD_CURSOR,
    BAD_LIMIT,
    BAD_TOKEN,
    HASHING_BUSY,
    INT64_ID,
    JSON_BODY,
    STORE_DOWN,
    UNKNOWN_USER,
    answers,
    http_refusal,
    invalid,
    refusal,
)
from entrypoints.http.schemas import AccountExport, BlockedPage, DeleteAccountIn, ProfileOut, RenameIn, UserPage
from entrypoints.wire import UserPublic

UserId = Annotated[
    int,
    Parameter(ge=1, description="a user's id (no user has one above 2^63-1: 404)", schema_extra=INT64_ID),
]
Limit = Annotated[
    int | None,
    Parameter(ge=1, le=PAGE_MAX, description="page size: default 50 for contacts, 20 for a search"),
]
Cursor = Annotated[str | None, Parameter(description="`nextCursor` of the previous page (contacts only)")]
Query = Annotated[
    str | None,
    Parameter(
        description=f"search: a name substring (case-insensitive), an exact email or an exact phone number; "
        f"{SEARCH_QUERY_MIN}–{SEARCH_QUERY_MAX} characters after trimming",
        schema_extra={"pattern": SEARCH_QUERY_PATTERN},
    ),
]
BAD_ID = http_refusal(400, "the id is not a positive integer", field="user_id")
SELF = invalid("id", "you cannot block or unblock yourself")
TOO_MANY_LOOKUPS = refusal(
    RateLimitedError, "over your user lookups and searches: a quarter of CHAT_RATE_MSG_PER_S and of its burst"
)


class UsersController(Controller):
    path = "/users"
    tags = ["users"]
    security = [{"bearer": []}]

    @get(
        "/me",
        operation_id="getProfile",
        response_description="Your profile",
        summary="Your own profile, including email and phone number",
        responses=answers(BAD_TOKEN, STORE_DOWN),
    )
    async def me(self, principal: NamedDependency[Principal], get_profile: NamedDependency[GetProfile]) -> ProfileOut:
        return ProfileOut.of(await get_profile(principal))

    @patch(
        "/me",
        operation_id="rename",
        response_description="The updated profile",
        summary="Change your display name",
        description='The name "Deleted account" (in any case) is reserved: it is how a deleted account is shown.',
        responses=answers(JSON_BODY, invalid("name", "must be 1–100 characters after trimming"), BAD_TOKEN, STORE_DOWN),
    )
    async def rename(
        self,
        data: JSONBody[RenameIn],
        principal: NamedDependency[Principal],
        rename_user: NamedDependency[RenameUser],
    ) -> ProfileOut:
        return ProfileOut.of(await rename_user(principal, Rename(name=data.name)))

    @delete(
        "/me",
        operation_id="deleteAccount",
        response_description="Deleted; every login of the account is ended",
        status_code=HTTP_204_NO_CONTENT,
        summary="Delete your account",
        description="Needs your password (a wrong one is 400 on `password` and counts as a failed login of the "
        "account: 429 beyond the login limit). Every login ends and every socket closes 4403; the pending "
        "deliveries to you are dropped; your profile is erased: the email and phone number are free for a new "
        'account, others see your name as "Deleted account", search never finds you and `GET /users/{id}` is '
        "404. Your peers keep their conversations with you. With `erase: true` the messages you sent keep "
        'their place but their `message` becomes "" for everyone. See docs/protocol.md.',
        responses=answers(
            JSON_BODY,
            invalid("password", "is not your password"),
            BAD_TOKEN,
            refusal(RateLimitedError, "too many wrong passwords for this account or from this login"),
            HASHING_BUSY,
            STORE_DOWN,
        ),
    )
    async def delete_account(
        self,
        data: JSONBody[DeleteAccountIn],
        principal: NamedDependency[Principal],
        delete_account: NamedDependency[DeleteAccount],
    ) -> None:
        await delete_account(principal, AccountDeletion(password=data.password, erase=data.erase))

    @get(
        "/me/export",
        operation_id="exportAccount",
        summary="Export everything your account holds, as one JSON document",
        description="Your profile, every login, your devices (push targets, without their tokens), your "
        "contacts, your blocks and every conversation with every "
        "message you sent or received (as your history shows them), streamed as it is read, a page at a time: "
        "the server's memory does not grow with the account. Not one snapshot: a message sent while the export "
        "runs may be missing. Arrives as a download (`Content-Disposition: attachment`).",
        responses={
            200: ResponseSpec(
                data_container=AccountExport,
                description="The export (streamed)",
                media_type="application/json",
            ),
            **answers(BAD_TOKEN, STORE_DOWN),
        },
    )
    async def export(
        self,
        principal: NamedDependency[Principal],
        export_account: NamedDependency[ExportAccount],
    ) -> Stream:
        parts = await export_account.start(principal)
        return Stream(
            export_json(parts),
            media_type="application/json",
            headers={"Content-Disposition": 'attachment; filename="p2p-chat-export.json"'},
        )

    @get(
        "/",
        operation_id="listUsers",
        response_description="A page of users",
        summary="Your contacts, or with q a search by name, exact email or exact phone number",
        description="Without `q`: your contacts (users who each sent the other a message), by id, a page at a "
        "time. With `q`: one page of matches (exact email or phone matches first, then by name); `cursor` is "
        "not accepted with `q` (400). Searches count against your lookups (429 beyond a quarter of "
        "`CHAT_RATE_MSG_PER_S` per second). Other users never show email or phone; `online`/`lastSeenAt` are null "
        "unless their presence is visible to you.",
        responses=answers(
            BAD_LIMIT,
            BAD_CURSOR,
            invalid("cursor", "search results come in one page; cursor is not supported"),
            invalid("query", f"must be {SEARCH_QUERY_MIN}–{SEARCH_QUERY_MAX} characters after trimming"),
            BAD_TOKEN,
            TOO_MANY_LOOKUPS,
            STORE_DOWN,
        ),
    )
    async def list_users(
        self,
        principal: NamedDependency[Principal],
        list_contacts: NamedDependency[ListContacts],
        search_users: NamedDependency[SearchUsers],
        lookup_limit: NamedDependency[LookupLimit],
        q: FromQuery[Query] = None,
        limit: FromQuery[Limit] = None,
        cursor: FromQuery[Cursor] = None,
    ) -> UserPage:
        if q is not None:
            if cursor is not None:
                raise InvalidInputError.of("cursor", "search results come in one page; cursor is not supported")
            lookup_limit(principal)
            found = await search_users(principal, SearchQuery(query=q, limit=limit))
            return UserPage(items=[UserPublic.of(c) for c in found], next_cursor=None)
        page = await list_contacts(principal, PageRequest(limit=limit, cursor=cursor))
        return UserPage(items=[UserPublic.of(c) for c in page.items], next_cursor=page.next_cursor)

    @get(
        "/{user_id:int}",
        operation_id="getUser",
        response_description="The user as you may see them",
        summary="One user as you may see them",
        responses=answers(BAD_ID, BAD_TOKEN, UNKNOWN_USER, TOO_MANY_LOOKUPS, STORE_DOWN),
    )
    async def one(
        self,
        user_id: FromPath[UserId],
        principal: NamedDependency[Principal],
        get_user: NamedDependency[GetUser],
        lookup_limit: NamedDependency[LookupLimit],
    ) -> UserPublic:
        lookup_limit(principal)
        return UserPublic.of(await get_user(principal, UserLookup(user_id=user_id)))

    @put(
        "/{user_id:int}/block",
        operation_id="blockUser",
        response_description="Blocked (also when already blocked)",
        status_code=HTTP_204_NO_CONTENT,
        summary="Block a user (idempotent)",
        description="Hides presence and typing both ways; messages from the blocked user are withheld. "
        "Nothing is sent to the blocked user.",
        responses=answers(BAD_ID, SELF, BAD_TOKEN, UNKNOWN_USER, STORE_DOWN),
    )
    async def block(
        self, user_id: FromPath[UserId], principal: NamedDependency[Principal], block_user: NamedDependency[BlockUser]
    ) -> None:
        await block_user(principal, Block(user_id=user_id))

    @delete(
        "/{user_id:int}/block",
        operation_id="unblockUser",
        response_description="Not blocked (also when it was not)",
        status_code=HTTP_204_NO_CONTENT,
        summary="Unblock a user (idempotent)",
        responses=answers(BAD_ID, SELF, BAD_TOKEN, UNKNOWN_USER, STORE_DOWN),
    )
    async def unblock(
        self,
        user_id: FromPath[UserId],
        principal: NamedDependency[Principal],
        unblock_user: NamedDependency[UnblockUser],
    ) -> None:
        await unblock_user(principal, Unblock(user_id=user_id))

    @get(
        "/me/blocked",
        operation_id="listBlocked",
        response_description="The users you blocked",
        summary="The users you blocked",
        responses=answers(BAD_TOKEN, STORE_DOWN),
    )
    async def blocked(
        self, principal: NamedDependency[Principal], list_blocked: NamedDependency[ListBlocked]
    ) -> BlockedPage:
        return BlockedPage(items=[UserPublic.of(c) for c in await list_blocked(principal)])
