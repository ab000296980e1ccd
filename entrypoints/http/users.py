"""``/users``: own profile, one user, contacts and search."""

from __future__ import annotations

from litestar import Controller, get, patch
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody

from application.common import Principal
from application.users import GetProfile, GetUser, ListContacts, RenameUser, SearchQuery, SearchUsers
from domain.errors import InvalidInputError
from entrypoints.http.schemas import ProfileOut, RenameIn, UserPage, UserPublic


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
        return ProfileOut.of(await rename_user(principal, data.name))

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
            found = await search_users(SearchQuery(viewer=principal, query=q, limit=limit))
            return UserPage(items=[UserPublic.of(c) for c in found], next_cursor=None)
        page = await list_contacts(principal, limit=limit, cursor=cursor)
        return UserPage(items=[UserPublic.of(c) for c in page.items], next_cursor=page.next_cursor)

    @get("/{user_id:int}", summary="One user as you may see them")
    async def one(
        self,
        user_id: FromPath[int],
        principal: NamedDependency[Principal],
        get_user: NamedDependency[GetUser],
    ) -> UserPublic:
        return UserPublic.of(await get_user(principal, user_id))
