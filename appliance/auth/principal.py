"""Who is calling: the authenticated principal of a request, and how it is found.

Credentials are looked for in this order: `Authorization: Bearer dvt_...` (an API token),
then the `dv_session` cookie (a browser session). A credential that is present but invalid
is an error (401) rather than falling back to anonymous: a client should learn that its
token stopped working. Every lookup is served from memory.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from http.cookies import CookieError, SimpleCookie
from typing import Literal

from litestar.types import Scope

from appliance.api.problems import ApiError
from appliance.auth.accounts import AccountService
from appliance.auth.permissions import ROLE_PERMISSIONS, Permission, Role
from appliance.auth.sessions import Session, SessionStore
from appliance.auth.token_use import TokenUse

SESSION_COOKIE = "dv_session"
_UNAUTHORIZED = {"WWW-Authenticate": 'Bearer realm="debvisor"'}


@dataclass(frozen=True)
class Principal:
    """An authenticated caller and what it may do."""

    name: str
    role: Role
    via: Literal["session", "token", "forwarded"]
    credential_id: str  # session id or token id: never a secret
    must_change_password: bool
    session: Session | None = None

    @property
    def permissions(self) -> frozenset[Permission]:
        return ROLE_PERMISSIONS[self.role]

    def can(self, permission: Permission) -> bool:
        return permission in ROLE_PERMISSIONS[self.role]


def unauthorized(detail: str) -> ApiError:
    return ApiError(401, detail, headers=_UNAUTHORIZED)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


def session_cookie(scope: Scope) -> str | None:
    raw = _header(scope, b"cookie")
    if not raw or SESSION_COOKIE not in raw:
        return None
    try:
        cookie = SimpleCookie(raw)
    except CookieError:
        return None
    morsel = cookie.get(SESSION_COOKIE)
    return morsel.value if morsel else None


def forwarded_principal(accounts: AccountService, user: str, role: Role, credential_id: str) -> Principal:
    """The principal a member vouched for, if the user still exists and is enabled here."""
    record = accounts.user(user)
    if record is None or not record.enabled:
        raise unauthorized(f"user {user!r} does not exist or is disabled on this node")
    return Principal(user, role, "forwarded", credential_id, must_change_password=False)


class Authenticator:
    """Finds the principal of a request from its token or session cookie."""

    def __init__(
        self, accounts: AccountService, sessions: SessionStore, token_use: TokenUse, clock: Callable[[], float]
    ) -> None:
        self.forwarded: Callable[[Scope], Principal] | None = None  # set when the cluster is assembled
        self._accounts = accounts
        self._sessions = sessions
        self._token_use = token_use
        self._clock = clock

    def authenticate(self, scope: Scope) -> Principal | None:
        """The caller, None if no credential was sent; 401 if one was sent and is not valid."""
        self._accounts.refresh_if_changed()
        if self.forwarded is not None and _header(scope, b"x-debvisor-forwarded") is not None:
            return self.forwarded(scope)
        authorization = _header(scope, b"authorization")
        if authorization is not None:
            scheme, _, value = authorization.partition(" ")
            if scheme.lower() != "bearer" or not value.strip():
                raise unauthorized("use 'Authorization: Bearer <token>'")
            return self._from_token(value.strip())
        secret = session_cookie(scope)
        if secret is not None:
            return self._from_session(secret)
        return None

    def _from_token(self, presented: str) -> Principal:
        token = self._accounts.token_for(presented)
        if token is None:
            raise unauthorized("the API token is invalid, expired or revoked")
        owner = self._accounts.user(token.owner)
        if owner is None or not owner.enabled:
            raise unauthorized("the API token's owner no longer exists or is disabled")
        self._token_use.used(token.id, self._clock())
        return Principal(token.owner, token.role, "token", token.id, must_change_password=False)

    def _from_session(self, secret: str) -> Principal:
        session = self._sessions.lookup(secret)
        if session is None:
            raise unauthorized("the session has ended; log in again")
        user = self._accounts.user(session.user)
        if user is None or not user.enabled or session.created_at < user.sessions_valid_after:
            self._sessions.revoke(session.id)
            raise unauthorized("the session has ended; log in again")
        return Principal(user.name, user.role, "session", session.id, user.must_change_password, session)
