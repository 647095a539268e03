"""`/api/v1/tokens`: API tokens for programs; each user manages their own (admins: anyone's)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from litestar import Request, Router, delete, get, post
from litestar.params import FromPath, FromQuery, JSONBody

from appliance.api.openapi import problems
from appliance.api.problems import ApiError
from appliance.audit.context import note
from appliance.auth.accounts import AccountService
from appliance.auth.permissions import Permission, requires
from appliance.auth.principal import Principal
from appliance.auth.token_use import TokenUse
from appliance.auth.types import Token, TokenCreated, TokenRecord, TokensPost


def tokens_routes(accounts: AccountService, use: TokenUse, clock: Callable[[], float]) -> Router:
    def to_token(record: TokenRecord) -> Token:
        return Token(
            id=record.id,
            name=record.name,
            owner=record.owner,
            role=record.role,
            created_at=record.created_at,
            expires_at=record.expires_at,
            last_used=use.last_used(record.id),
        )

    @get("/", opt=requires(Permission.SELF), summary="The caller's API tokens (all=true: everyone's, admin)")
    async def list_tokens(request: Request[Principal, Any, Any], all: FromQuery[bool] = False) -> list[Token]:
        principal = request.user
        if all and not principal.can(Permission.TOKENS_MANAGE):
            raise ApiError(403, "listing everyone's tokens needs permission tokens:manage")
        return [to_token(t) for t in accounts.tokens(owner=None if all else principal.name)]

    @post(
        "/",
        opt=requires(Permission.SELF, action="token.create"),
        summary="Create an API token; its secret is shown only in this answer",
    )
    async def create_token(request: Request[Principal, Any, Any], data: JSONBody[TokensPost]) -> TokenCreated:
        principal = request.user
        if principal.via == "token":
            raise ApiError(403, "log in with a password to create API tokens")
        expires_at = None if data.expires_in_seconds is None else clock() + data.expires_in_seconds
        record, secret = accounts.create_token(
            owner=principal.name, name=data.name, role=data.role, expires_at=expires_at
        )
        note(request, target=f"token {record.id}", detail=f"name {record.name!r}, role {record.role}")
        return TokenCreated(token=to_token(record), secret=secret)

    @delete(
        "/{token_id:str}",
        opt=requires(Permission.SELF, action="token.revoke") | problems(404),
        summary="Revoke a token",
        status_code=204,
    )
    async def revoke_token(request: Request[Principal, Any, Any], token_id: FromPath[str]) -> None:
        note(request, target=f"token {token_id}")
        record = accounts.token(token_id)
        principal = request.user
        if record is None or (record.owner != principal.name and not principal.can(Permission.TOKENS_MANAGE)):
            raise ApiError(404, f"no token {token_id!r} of yours")
        accounts.revoke_token(token_id)

    return Router("/api/v1/tokens", route_handlers=[list_tokens, create_token, revoke_token], tags=["tokens"])
