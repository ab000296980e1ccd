"""``/users``: own profile, one user, contacts and search."""

from __future__ import annotations

from litestar import Controller, delete, get, patch, put
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody
from litestar.status_codes import HTTP_204_NO_CONTENT

from application.common import PageRequest, Principal
from application.social import Block, BlockUser, ListBlocked, Unblock, UnblockUser
from application.users import (
    GetProfile,
    GetUser,
    ListContacts,
    Rename,
    RenameUser,
    SearchQuery,
    SearchUsers,
    UserLookup,
)
from domain.errors import InvalidInputError
from entrypoints.http.schemas import BlockedPage, ProfileOut, RenameIn, UserPage
from entrypoints.wire import UserPublic


class UsersController(Controller):
    path = "/users"
    tags = ["users"]
    security = [{"bearer": []}]

    @get("/me", summary="Your own profile, including email and phone number")
    async def me(self, principal: NamedDependency[Principal], get_profile: NamedDependency[GetProfile]) -> ProfileOut:
        return ProfileOut.of(await get_profile(principal))

    @patch("/me", summary="Change your display name")
    async def rename(
        self,
        data: JSONBody[RenameIn],
        principal: NamedDependency[Principal],
        rename_user: NamedDependency[RenameUser],
    ) -> ProfileOut:
        return ProfileOut.of(await rename_user(principal, Rename(name=data.name)))

    @get("/", summary="Your contacts, or with q a search by name, exact email or exact phone number")
    async def list_users(
        self,
        principal: NamedDependency[Principal],
        list_contacts: NamedDependency[ListContacts],
        search_users: NamedDependency[SearchUsers],
        q: FromQuery[str | None] = None,
        limit: FromQuery[int | None] = None,
        cursor: FromQuery[str | None] = None,
    ) -> UserPage:
        if q is not None:
            if cursor is not None:
                raise InvalidInputError.of("cursor", "search results come in one page; cursor is not supported")
            found = await search_users(principal, SearchQuery(query=q, limit=limit))
            return UserPage(items=[UserPublic.of(c) for c in found], next_cursor=None)
        page = await list_contacts(principal, PageRequest(limit=limit, cursor=cursor))
        return UserPage(items=[UserPublic.of(c) for c in page.items], next_cursor=page.next_cursor)

    @get("/{user_id:int}", summary="One user as you may see them")
    async def one(
        self,
        user_id: FromPath[int],
        principal: NamedDependency[Principal],
        get_user: NamedDependency[GetUser],
    ) -> UserPublic:
        return UserPublic.of(await get_user(principal, UserLookup(user_id=user_id)))

    @put("/{user_id:int}/block", status_code=HTTP_204_NO_CONTENT, summary="Block a user (idempotent)")
    async def block(
        self, user_id: FromPath[int], principal: NamedDependency[Principal], block_user: NamedDependency[BlockUser]
    ) -> None:
        await block_user(principal, Block(user_id=user_id))

    @delete("/{user_id:int}/block", status_code=HTTP_204_NO_CONTENT, summary="Unblock a user (idempotent)")
    async def unblock(
        self, user_id: FromPath[int], principal: NamedDependency[Principal], unblock_user: NamedDependency[UnblockUser]
    ) -> None:
        await unblock_user(principal, Unblock(user_id=user_id))

    @get("/me/blocked", summary="The users you blocked")
    async def blocked(
        self, principal: NamedDependency[Principal], list_blocked: NamedDependency[ListBlocked]
    ) -> BlockedPage:
        return BlockedPage(items=[UserPublic.of(c) for c in await list_blocked(principal)])
