"""`/api/v1/users`: local accounts (admin only), and changing a password (anyone, their own).

Changing one's own password needs the current one, and that check is a password guess like a
login: it shares the login back-off (same keys, same counts, 429 + Retry-After, audited as
`throttled`), so a stolen session cannot be turned into a password oracle. It also needs a
session logged in with the password: an API token (or a request forwarded by another node)
may not change its owner's password at all, just as it may not create tokens, so a leaked
token can neither guess nor replace the password. Admins setting someone else's password
(user management) need no current password and may use a token.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, Response, Router, delete, get, patch, post
from litestar.params import FromPath, JSONBody

from appliance.api.openapi import problems
from appliance.api.problems import ApiError
from appliance.audit.context import note
from appliance.auth.access import source_of
from appliance.auth.accounts import AccountService
from appliance.auth.controller import back_off_detail, created_body, session_cookie
from appliance.auth.permissions import Permission, requires
from appliance.auth.principal import Principal
from appliance.auth.sessions import SessionStore
from appliance.auth.throttle import LoginThrottle, retry_after_header
from appliance.auth.types import PasswordChange, SessionCreated, User, UserPatch, UserRecord, UsersPost


class PasswordChanged(msgspec.Struct, frozen=True, kw_only=True):
    """`session` is the caller's new session when they changed their own password in a browser."""

    user: str
    sessions_ended: int
    session: SessionCreated | None = None


def to_user(record: UserRecord) -> User:
    return User(
        name=record.name,
        role=record.role,
        enabled=record.enabled,
        must_change_password=record.must_change_password,
        created_at=record.created_at,
        updated_at=record.updated_at,
    )


async def check_current_password(
    request: Request[Principal, Any, Any], accounts: AccountService, throttle: LoginThrottle, name: str, password: str
) -> None:
    """403 unless `password` is `name`'s, under the login back-off (429 while it holds)."""
    source = source_of(request.scope)
    wait = throttle.login_begin(name, source)
    if wait > 0:
        note(request, detail=back_off_detail(throttle, name, source))
        raise ApiError(429, "too many wrong passwords; wait and try again", headers=retry_after_header(wait))
    try:
        checked = await accounts.check_password(name, password)
    except BaseException:
        throttle.login_release(name, source)
        raise
    if checked is None:
        delay = throttle.login_failed(name, source)
        note(request, detail=f"wrong current_password; next try allowed in {delay:g} s")
        raise ApiError(403, "current_password is wrong")
    throttle.login_succeeded(name, source)


def users_routes(accounts: AccountService, sessions: SessionStore, throttle: LoginThrottle) -> Router:
    def existing(name: str) -> UserRecord:
        record = accounts.user(name)
        if record is None:
            raise ApiError(404, f"no user {name!r}")
        return record

    @get("/", opt=requires(Permission.USERS_MANAGE), summary="List users")
    async def list_users() -> list[User]:
        return [to_user(u) for u in accounts.users()]

    @post("/", opt=requires(Permission.USERS_MANAGE, action="user.create") | problems(409), summary="Create a user")
    async def create_user(request: Request[Principal, Any, Any], data: JSONBody[UsersPost]) -> User:
        note(request, target=data.name, detail=f"role {data.role}")
        return to_user(accounts.create_user(data.name, data.role, data.password, enabled=data.enabled))

    @get("/{name:str}", opt=requires(Permission.USERS_MANAGE) | problems(404), summary="One user")
    async def get_user(name: FromPath[str]) -> User:
        return to_user(existing(name))

    @patch(
        "/{name:str}",
        opt=requires(Permission.USERS_MANAGE, action="user.update") | problems(404, 409),
        summary="Change role or enable",
    )
    async def update_user(
        request: Request[Principal, Any, Any], name: FromPath[str], data: JSONBody[UserPatch]
    ) -> User:
        changes = ", ".join(f"{k} {v}" for k, v in msgspec.structs.asdict(data).items() if v is not None)
        note(request, target=name, detail=changes)
        record = accounts.update_user(name, role=data.role, enabled=data.enabled)
        if not record.enabled:
            sessions.revoke_user(name)
        return to_user(record)

    @delete(
        "/{name:str}",
        opt=requires(Permission.USERS_MANAGE, action="user.delete") | problems(404, 409),
        summary="Delete a user, their tokens and sessions",
        status_code=204,
    )
    async def delete_user(request: Request[Principal, Any, Any], name: FromPath[str]) -> None:
        note(request, target=name)
        if name == request.user.name:
            raise ApiError(409, "you cannot delete yourself")
        accounts.delete_user(name)
        sessions.revoke_user(name)

    @post(
        "/{name:str}/password",
        opt=requires(Permission.SELF, action="user.password", before_password_change=True) | problems(404),
        summary="Change a password (one's own with the current one; anyone's as admin)",
        status_code=200,
    )
    async def change_password(
        request: Request[Principal, Any, Any], name: FromPath[str], data: JSONBody[PasswordChange]
    ) -> Response[PasswordChanged]:
        principal = request.user
        note(request, target=name)
        own = name == principal.name
        if not own and not principal.can(Permission.USERS_MANAGE):
            raise ApiError(403, "only an admin may set another user's password")
        existing(name)
        if own:
            if principal.via != "session":
                raise ApiError(403, "change your own password in a session logged in with it, not with an API token")
            if data.current_password is None:
                raise ApiError(422, "give current_password to change your own password")
            await check_current_password(request, accounts, throttle, name, data.current_password)
            if data.current_password == data.new_password:
                raise ApiError(422, "the new password must differ from the current one")
        record = accounts.set_password(name, data.new_password, must_change=not own)
        ended = sessions.revoke_user(name)
        if own and principal.session is not None:
            session, secret = sessions.create(
                name, source=principal.session.source, user_agent=principal.session.user_agent
            )
            body = PasswordChanged(user=name, sessions_ended=ended, session=created_body(sessions, session, record))
            return Response(body, cookies=[session_cookie(secret, int(sessions.lifetime))])
        return Response(PasswordChanged(user=name, sessions_ended=ended))

    return Router(
        "/api/v1/users",
        route_handlers=[list_users, create_user, get_user, update_user, delete_user, change_password],
        tags=["users"],
    )
