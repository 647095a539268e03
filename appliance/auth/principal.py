"""Who is calling: the authenticated principal of a request, and how it is found.

Credentials are looked for in this order: `Authorization: Bearer dvt_...` (an API token),
then the `dv_session` cookie (a browser session). A credential that is present but invalid
is an error (401) rather than falling back to anonymous: a client should learn that its
token stopped working. Every lookup is served from memory.

An API token acts with its own role only while its owner's current role still covers it: a
demotion revokes the tokens it no longer covers, and the check at use also holds on a node
that has received the demoted user record but not yet those revocations.

A request another member forwarded carries that member's signed assertion instead of a
credential (appliance/api/forward.py checks the signature). Its caller's role is derived
here from the replicated records, never taken from the assertion: for an API token, the
token record (it must exist, be unexpired and belong to the user) capped by its owner's
current role; for a session (sessions live on the node that issued them), the user's current
role. The role the forwarding member saw can only lower that, so a demotion takes effect on
whichever node learns of it first.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from http.cookies import CookieError, SimpleCookie
from typing import Literal, Protocol

from litestar.enums import ScopeType
from litestar.types import Scope

from appliance.api.problems import ApiError
from appliance.auth.accounts import AccountService
from appliance.auth.permissions import ROLE_PERMISSIONS, Permission, Role, role_within
from appliance.auth.sessions import Session, SessionStore
from appliance.auth.token_use import TokenUse
from appliance.auth.types import TokenRecord

SESSION_COOKIE = "dv_session"
_UNAUTHORIZED = {"WWW-Authenticate": 'Bearer realm="debvisor"'}

CredentialKind = Literal["session", "token"]


@dataclass(frozen=True)
class Principal:
    """An authenticated caller and what it may do."""

    name: str
    role: Role
    via: Literal["session", "token", "forwarded"]
    credential_id: str  # session id or token id: never a secret
    must_change_password: bool
    session: Session | None = None
    source: str = "unknown"  # the caller's address (of a forwarded caller: as the forwarding member saw it)
    forwarded_by: str = ""  # the member that forwarded the request; "" when it came directly
    forwarded_kind: CredentialKind = "session"  # what the caller showed the forwarding member

    @property
    def credential_kind(self) -> CredentialKind:
        return self.forwarded_kind if self.via == "forwarded" else self.via

    @property
    def credential(self) -> str:
        """What authenticated the caller, for the audit trail: "session:<id>" or "token:<id>"."""
        return f"{self.credential_kind}:{self.credential_id}"

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


def _lower(derived: Role, claimed: Role) -> Role:
    """The lower of two roles (they form a chain); the derived one if neither covers the other."""
    return claimed if role_within(claimed, derived) else derived


class ForwardedClaim(Protocol):
    """Who a member vouches for in a forwarded request (appliance/api/forward.py `ForwardedIdentity`)."""

    @property
    def node(self) -> str: ...
    @property
    def user(self) -> str: ...
    @property
    def role(self) -> Role: ...
    @property
    def via(self) -> CredentialKind: ...
    @property
    def credential_id(self) -> str: ...
    @property
    def source(self) -> str: ...


# (headers, method, path) -> the verified claim; raises ApiError 401 unless every check passes.
VerifyForwarded = Callable[[dict[str, str], str, str], ForwardedClaim]


class Authenticator:
    """Finds the principal of a request from its token or session cookie, or, with
    `verify_forwarded`, from a member's forwarding assertion."""

    def __init__(
        self,
        accounts: AccountService,
        sessions: SessionStore,
        token_use: TokenUse,
        clock: Callable[[], float],
        verify_forwarded: VerifyForwarded | None = None,
    ) -> None:
        self._verify_forwarded = verify_forwarded
        self._accounts = accounts
        self._sessions = sessions
        self._token_use = token_use
        self._clock = clock

    def authenticate(self, scope: Scope) -> Principal | None:
        """The caller, None if no credential was sent; 401 if one was sent and is not valid."""
        self._accounts.refresh_if_changed()
        if self._verify_forwarded is not None and _header(scope, b"x-debvisor-forwarded") is not None:
            return self._forwarded(scope, self._verify_forwarded)
        client = scope.get("client")  # as appliance/auth/access.py `source_of`, which imports this module
        source = str(client[0]) if client else "unknown"
        authorization = _header(scope, b"authorization")
        if authorization is not None:
            scheme, _, value = authorization.partition(" ")
            if scheme.lower() != "bearer" or not value.strip():
                raise unauthorized("use 'Authorization: Bearer <token>'")
            return self._from_token(value.strip(), source)
        secret = session_cookie(scope)
        if secret is not None:
            return self._from_session(secret, source)
        return None

    def _forwarded(self, scope: Scope, verify: VerifyForwarded) -> Principal:
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        method = str(scope["method"]) if scope["type"] == ScopeType.HTTP else ""
        claim = verify(headers, method, scope["path"])
        return self.vouched(
            user=claim.user,
            kind=claim.via,
            credential_id=claim.credential_id,
            claimed_role=claim.role,
            node=claim.node,
            source=claim.source,
        )

    def vouched(
        self, *, user: str, kind: CredentialKind, credential_id: str, claimed_role: Role, node: str, source: str
    ) -> Principal:
        """The caller of a request member `node` forwarded, as the replicated records say they are now."""
        if kind == "token":
            token = self._accounts.token(credential_id)
            if token is None or token.owner != user:
                raise unauthorized(f"the forwarded API token {credential_id} of {user!r} is unknown or revoked here")
            if token.expires_at is not None and token.expires_at <= self._clock():
                raise unauthorized(f"the forwarded API token {credential_id} has expired")
            role = self._token_role(token)
        else:
            record = self._accounts.user(user)
            if record is None or not record.enabled:
                raise unauthorized(f"user {user!r} does not exist or is disabled on this node")
            if record.must_change_password:
                raise unauthorized(f"user {user!r} must change their password before anything else")
            role = record.role
        return Principal(
            user,
            _lower(role, claimed_role),
            "forwarded",
            credential_id,
            must_change_password=False,
            source=source,
            forwarded_by=node,
            forwarded_kind=kind,
        )

    def _token_role(self, token: TokenRecord) -> Role:
        """The token's role, if its owner exists, is enabled and still holds at least that role."""
        owner = self._accounts.user(token.owner)
        if owner is None or not owner.enabled:
            raise unauthorized("the API token's owner no longer exists or is disabled")
        if not role_within(token.role, owner.role):
            raise unauthorized(
                f"the API token's role {token.role} exceeds its owner's current role {owner.role}; "
                "the token is void, make a new one"
            )
        return token.role

    def _from_token(self, presented: str, source: str) -> Principal:
        token = self._accounts.token_for(presented)
        if token is None:
            raise unauthorized("the API token is invalid, expired or revoked")
        role = self._token_role(token)
        self._token_use.used(token.id, self._clock())
        return Principal(token.owner, role, "token", token.id, must_change_password=False, source=source)

    def _from_session(self, secret: str, source: str) -> Principal:
        session = self._sessions.lookup(secret)
        if session is None:
            raise unauthorized("the session has ended; log in again")
        user = self._accounts.user(session.user)
        if user is None or not user.enabled or session.created_at < user.sessions_valid_after:
            self._sessions.revoke(session.id)
            raise unauthorized("the session has ended; log in again")
        return Principal(user.name, user.role, "session", session.id, user.must_change_password, session, source=source)
