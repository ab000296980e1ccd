"""``/auth``: register, log in, refresh, log out (this login or all), change password."""

from __future__ import annotations

from litestar import Controller, post
from litestar.di import NamedDependency
from litestar.params import JSONBody
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED, HTTP_204_NO_CONTENT

from application.accounts import (
    ChangePassword,
    Credentials,
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
from entrypoints.http.schemas import LoginIn, PasswordIn, RefreshIn, RegisterIn, TokenOut


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

    @post("/register", status_code=HTTP_201_CREATED, summary="Create an account and sign in")
    async def register(
        self,
        data: JSONBody[RegisterIn],
        register_user: NamedDependency[RegisterUser],
        client_ip: NamedDependency[str],
    ) -> TokenOut:
        session = await register_user(
            Register(
                name=data.name,
                email=data.email,
                phone_number=data.phone_number,
                password=data.password,
                client_address=client_ip,
            )
        )
        return token_out(session)

    @post("/login", status_code=HTTP_200_OK, summary="Sign in with email and password")
    async def login(
        self, data: JSONBody[LoginIn], sign_in: NamedDependency[SignIn], client_ip: NamedDependency[str]
    ) -> TokenOut:
        session = await sign_in(Credentials(email=data.email, password=data.password, client_address=client_ip))
        return token_out(session)

    @post("/refresh", status_code=HTTP_200_OK, summary="Exchange a refresh token for a new pair (rotation)")
    async def refresh(self, data: JSONBody[RefreshIn], refresh_login: NamedDependency[RefreshLogin]) -> TokenOut:
        return token_out(await refresh_login(Refresh(refresh_token=data.refresh_token)))

    @post("/logout", status_code=HTTP_204_NO_CONTENT, summary="Revoke this login", security=[{"bearer": []}])
    async def logout(self, principal: NamedDependency[Principal], sign_out: NamedDependency[SignOut]) -> None:
        await sign_out(principal)

    @post(
        "/logout-all",
        status_code=HTTP_204_NO_CONTENT,
        summary="Revoke every login",
        security=[{"bearer": []}],
    )
    async def logout_all(
        self, principal: NamedDependency[Principal], sign_out_everywhere: NamedDependency[SignOutEverywhere]
    ) -> None:
        await sign_out_everywhere(principal)

    @post(
        "/password",
        status_code=HTTP_204_NO_CONTENT,
        summary="Change the password; every other login is revoked",
        security=[{"bearer": []}],
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
