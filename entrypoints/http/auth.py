"""``/auth``: register, log in, refresh, log out (this login or all), change password."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, delete, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, Parameter
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED, HTTP_204_NO_CONTENT

from application.accounts import (
    ChangePassword,
    Credentials,
    EndLogin,
    EndSession,
    ListSessions,
    PasswordChange,
    Refresh,
    RefreshLogin,
    Register,
    RegisterUser,
    SignedIn,
    SignIn,
    SignOut,
    SignOutEverywhere,
)
from application.common import Principal
from domain.errors import (
    BusyError,
    EmailTakenError,
    InvalidCredentialsError,
    InvalidTokenError,
    PhoneTakenError,
    RateLimitedError,
    SessionNotFoundError,
)
from entrypoints.http.refusals import (
    BAD_TOKEN,
    HASHING_BUSY,
    JSON_BODY,
    STORE_DOWN,
    answers,
    http_refusal,
    invalid,
    refusal,
)
from entrypoints.http.schemas import LoginIn, PasswordIn, RefreshIn, RegisterIn, SessionOut, SessionPage, TokenOut
from entrypoints.wire import iso_ms

SessionId = Annotated[str, Parameter(description="a session's `id` from `GET /auth/sessions`")]
BAD_FIELD = invalid("phoneNumber", "a value breaks its rule (each such field is in errors, all at once)")


def token_out(session: SignedIn) -> TokenOut:
    user = session.user
    return TokenOut(
        access_token=session.access_token,
        refresh_token=session.refresh_token,
        expires_in=session.expires_in,
        id=user.uid,
        name=user.name,
        email=user.email,
        phone_number=user.phone_number,
    )


class AuthController(Controller):
    path = "/auth"
    tags = ["auth"]

    @post(
        "/register",
        operation_id="register",
        response_description="Registered and signed in",
        status_code=HTTP_201_CREATED,
        summary="Create an account and sign in",
        description="Every attempt with a well-formed body counts against the per-address hourly limit "
        "(`CHAT_REGISTER_PER_HOUR`), including ones refused for their values or a conflict. The name "
        '"Deleted account" (in any case) is reserved: it is how a deleted account is shown.',
        responses=answers(
            JSON_BODY,
            BAD_FIELD,
            refusal(EmailTakenError, "an account with this email exists (compared case-insensitively)"),
            refusal(PhoneTakenError, "an account with this phone number exists (after normalisation)"),
            refusal(RateLimitedError, "too many registrations from this client address this hour"),
            HASHING_BUSY,
            STORE_DOWN,
        ),
    )
    async def register(
        self,
        data: JSONBody[RegisterIn],
        register_user: NamedDependency[RegisterUser],
        client_ip: NamedDependency[str],
        user_agent: NamedDependency[str],
    ) -> TokenOut:
        session = await register_user(
            Register(
                name=data.name,
                email=data.email,
                phone_number=data.phone_number,
                password=data.password,
                client_address=client_ip,
                user_agent=user_agent,
            )
        )
        return token_out(session)

    @post(
        "/login",
        operation_id="login",
        response_description="Signed in",
        status_code=HTTP_200_OK,
        summary="Sign in with email and password",
        description="Within `CHAT_LOGIN_WINDOW_S`: N = `CHAT_LOGIN_MAX_FAILURES` failures of an account from "
        "one address, 20·N of an account from all addresses, 20·N from one address over all accounts, or "
        "4·N attempts (successes too) of an account from one address make every login they cover 429 until "
        "the window closes. Beyond `CHAT_MAX_LOGINS_PER_USER` live logins the oldest are revoked.",
        responses=answers(
            JSON_BODY,
            refusal(InvalidCredentialsError, "wrong email or password (one answer for both)"),
            refusal(RateLimitedError, "too many failed logins or logins for this account or from this address"),
            HASHING_BUSY,
            refusal(BusyError, "another login of this account is being checked; retry after Retry-After"),
            STORE_DOWN,
        ),
    )
    async def login(
        self,
        data: JSONBody[LoginIn],
        sign_in: NamedDependency[SignIn],
        client_ip: NamedDependency[str],
        user_agent: NamedDependency[str],
    ) -> TokenOut:
        session = await sign_in(
            Credentials(email=data.email, password=data.password, client_address=client_ip, user_agent=user_agent)
        )
        return token_out(session)

    @post(
        "/refresh",
        operation_id="refreshTokens",
        response_description="A new token pair; the presented refresh token is spent",
        status_code=HTTP_200_OK,
        summary="Exchange a refresh token for a new pair (rotation)",
        description="The presented token is spent. Presenting a spent one again revokes its whole login.",
        responses=answers(
            JSON_BODY,
            refusal(InvalidTokenError, "unknown, expired, spent or revoked refresh token"),
            STORE_DOWN,
        ),
    )
    async def refresh(self, data: JSONBody[RefreshIn], refresh_login: NamedDependency[RefreshLogin]) -> TokenOut:
        return token_out(await refresh_login(Refresh(refresh_token=data.refresh_token)))

    @post(
        "/logout",
        operation_id="logout",
        response_description="This login is revoked",
        status_code=HTTP_204_NO_CONTENT,
        summary="Revoke this login",
        description="Its refresh token and access tokens stop working; its WebSocket connections close 4403.",
        security=[{"bearer": []}],
        responses=answers(BAD_TOKEN, STORE_DOWN),
    )
    async def logout(self, principal: NamedDependency[Principal], sign_out: NamedDependency[SignOut]) -> None:
        await sign_out(principal)

    @post(
        "/logout-all",
        operation_id="logoutAll",
        response_description="Every login is revoked",
        status_code=HTTP_204_NO_CONTENT,
        summary="Revoke every login",
        description="Every login of the user, this one included.",
        security=[{"bearer": []}],
        responses=answers(BAD_TOKEN, STORE_DOWN),
    )
    async def logout_all(
        self, principal: NamedDependency[Principal], sign_out_everywhere: NamedDependency[SignOutEverywhere]
    ) -> None:
        await sign_out_everywhere(principal)

    @post(
        "/password",
        operation_id="changePassword",
        response_description="Changed; every other login is revoked",
        status_code=HTTP_204_NO_CONTENT,
        summary="Change the password; every other login is revoked",
        description="A wrong `currentPassword` is 400 on that field and counts as a failed login of the "
        "account (so the account's login limit applies: 429).",
        security=[{"bearer": []}],
        responses=answers(
            JSON_BODY,
            invalid("currentPassword", "is not your current password"),
            invalid("newPassword", "breaks the password rule"),
            BAD_TOKEN,
            refusal(RateLimitedError, "too many wrong current passwords from this login"),
            HASHING_BUSY,
            STORE_DOWN,
        ),
    )
    async def password(
        self,
        data: JSONBody[PasswordIn],
        principal: NamedDependency[Principal],
        change_password: NamedDependency[ChangePassword],
    ) -> None:
        await change_password(
            principal, PasswordChange(current_password=data.current_password, new_password=data.new_password)
        )

    @get(
        "/sessions",
        operation_id="listSessions",
        response_description="Your live logins, oldest first",
        summary="List your logins (sessions)",
        description="Every login that is not revoked: when it signed in, when it was last used (a request, a "
        "socket or a refresh; recorded at most once a minute, so up to a minute behind), its client (the "
        "User-Agent it signed in with) and whether it is the one of this request's token.",
        security=[{"bearer": []}],
        responses=answers(BAD_TOKEN, STORE_DOWN),
    )
    async def sessions(
        self, principal: NamedDependency[Principal], list_sessions: NamedDependency[ListSessions]
    ) -> SessionPage:
        return SessionPage(
            items=[
                SessionOut(
                    id=view.login.id,
                    created_at=iso_ms(view.login.created_at),
                    last_used_at=iso_ms(view.login.last_used_at or view.login.created_at),
                    client=view.login.client,
                    current=view.current,
                )
                for view in await list_sessions(principal)
            ]
        )

    @delete(
        "/sessions/{session_id:str}",
        operation_id="endSession",
        response_description="That login is revoked",
        status_code=HTTP_204_NO_CONTENT,
        summary="End one of your logins",
        description="As logout for that login: its refresh token and access tokens stop working and its "
        "WebSocket connections close 4403, on every server process. Ending the current one is a logout.",
        security=[{"bearer": []}],
        responses=answers(
            http_refusal(400, "the path parameter could not be read", field="session_id"),
            BAD_TOKEN,
            refusal(SessionNotFoundError, "none of your live logins has this id"),
            STORE_DOWN,
        ),
    )
    async def end_session(
        self,
        session_id: FromPath[SessionId],
        principal: NamedDependency[Principal],
        end_session: NamedDependency[EndSession],
    ) -> None:
        await end_session(principal, EndLogin(session_id=session_id))
