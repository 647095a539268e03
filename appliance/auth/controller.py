"""`/api/v1/auth`: log in and out, who am I, and one's own browser sessions.

Login is public and does its own throttling and auditing, since the caller is not known
until the password is checked. Failures count against (user name, source), the source, and
the user name over all sources (`appliance.auth.throttle.LoginThrottle`); a held attempt is
answered 429 + Retry-After without checking the password, and audited as `throttled`. A
source that has not failed for a name is never held by that name's ceiling, so guessing
someone's name from elsewhere cannot keep them out.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, Router, delete, get, post
from litestar.datastructures import Cookie
from litestar.params import FromPath, JSONBody

from appliance.api.openapi import problems
from appliance.api.problems import ApiError
from appliance.audit.context import note
from appliance.audit.log import AuditLog
from appliance.auth.access import source_of
from appliance.auth.accounts import AccountService
from appliance.auth.permissions import Permission, public, requires
from appliance.auth.principal import SESSION_COOKIE, Principal
from appliance.auth.sessions import Session, SessionStore
from appliance.auth.throttle import LoginThrottle, retry_after_header
from appliance.auth.types import LoginRequest, SessionCreated, SessionInfo, UserRecord, Whoami


def session_cookie(secret: str, max_age: int) -> Cookie:
    return Cookie(
        key=SESSION_COOKIE, value=secret, path="/", max_age=max_age, httponly=True, secure=True, samesite="strict"
    )


def expired_session_cookie() -> Cookie:
    return Cookie(key=SESSION_COOKIE, value="", path="/", max_age=0, httponly=True, secure=True, samesite="strict")


def start_session(
    sessions: SessionStore, user: UserRecord, request: Request[Any, Any, Any]
) -> Response[SessionCreated]:
    """Create a session for `user` and answer with its cookie and CSRF token."""
    session, secret = sessions.create(
        user.name, source=source_of(request.scope), user_agent=request.headers.get("user-agent", "")
    )
    body = created_body(sessions, session, user)
    return Response(body, status_code=200, cookies=[session_cookie(secret, int(sessions.lifetime))])


def created_body(sessions: SessionStore, session: Session, user: UserRecord) -> SessionCreated:
    return SessionCreated(
        user=user.name,
        role=user.role,
        session_id=session.id,
        csrf_token=session.csrf_token,
        must_change_password=user.must_change_password,
        idle_timeout_seconds=int(sessions.idle_timeout),
        expires_at=sessions.expires_at(session),
    )


def back_off_detail(throttle: LoginThrottle, user: str, source: str) -> str:
    """Why a password check is held, for the audit entry (counts only, never a password)."""
    pair, from_source, for_user = throttle.counts(user, source)
    return (
        f"login back-off: {pair} failures for this name from this source, "
        f"{from_source} from this source, {for_user} for this name"
    )


def auth_routes(accounts: AccountService, sessions: SessionStore, throttle: LoginThrottle, audit: AuditLog) -> Router:
    @post(
        "/login",
        opt=public(action="auth.login") | problems(401, 429),
        summary="Log in: sets the session cookie",
        status_code=200,
    )
    async def login(request: Request[Any, Any, Any], data: JSONBody[LoginRequest]) -> Response[SessionCreated]:
        source = source_of(request.scope)

        def record(outcome: str, detail: str) -> None:
            audit.append(
                user=data.username,
                source=source,
                action="auth.login",
                target=data.username,
                outcome=outcome,  # type: ignore[arg-type]
                detail=detail,
            )

        wait = throttle.login_begin(data.username, source)
        if wait > 0:
            record("throttled", back_off_detail(throttle, data.username, source))
            raise ApiError(429, "too many failed logins; wait before trying again", headers=retry_after_header(wait))
        try:
            user = await accounts.check_password(data.username, data.password)
        except BaseException:
            throttle.login_release(data.username, source)
            raise
        if user is None:
            delay = throttle.login_failed(data.username, source)
            record("denied", f"wrong user name or password; next try allowed in {delay:g} s")
            raise ApiError(401, "wrong user name or password")
        throttle.login_succeeded(data.username, source)
        response = start_session(sessions, user, request)
        record("success", f"session {response.content.session_id}")
        return response

    @post(
        "/logout",
        opt=requires(Permission.SELF, action="auth.logout", before_password_change=True),
        summary="End this session",
        status_code=204,
    )
    async def logout(request: Request[Principal, Any, Any]) -> Response[None]:
        principal = request.user
        if principal.session is not None:
            sessions.revoke(principal.session.id)
            note(request, target=f"session {principal.session.id}")
        return Response(None, status_code=204, cookies=[expired_session_cookie()])

    @get(
        "/whoami",
        opt=requires(Permission.SELF, before_password_change=True),
        summary="The caller, its role and permissions (and CSRF token for a session)",
    )
    async def whoami(request: Request[Principal, Any, Any]) -> Whoami:
        principal = request.user
        return Whoami(
            user=principal.name,
            role=principal.role,
            permissions=sorted(principal.permissions),
            via=principal.via,
            must_change_password=principal.must_change_password,
            csrf_token=principal.session.csrf_token if principal.session else None,
        )

    @get("/sessions", opt=requires(Permission.SELF), summary="The caller's sessions on this node")
    async def list_sessions(request: Request[Principal, Any, Any]) -> list[SessionInfo]:
        principal = request.user
        return [
            SessionInfo(
                id=s.id,
                created_at=s.created_at,
                last_seen=s.last_seen,
                source=s.source,
                user_agent=s.user_agent,
                current=s.id == principal.credential_id,
            )
            for s in sessions.of_user(principal.name)
        ]

    @delete(
        "/sessions/{session_id:str}",
        opt=requires(Permission.SELF, action="auth.session.revoke") | problems(404),
        summary="End one of the caller's sessions",
        status_code=204,
    )
    async def revoke_session(request: Request[Principal, Any, Any], session_id: FromPath[str]) -> None:
        if not any(s.id == session_id for s in sessions.of_user(request.user.name)):
            raise ApiError(404, f"you have no session {session_id!r}")
        sessions.revoke(session_id)
        note(request, target=f"session {session_id}")

    return Router("/api/v1/auth", route_handlers=[login, logout, whoami, list_sessions, revoke_session], tags=["auth"])
