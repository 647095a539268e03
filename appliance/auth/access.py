"""The one gate every API request passes after routing: authentication, authorisation, audit.

It runs as Litestar middleware rather than as Litestar guards: a guard costs a copy of the
route handler on every request (a third of the whole request on the hot path), while the
middleware reads the matched handler from the scope. For each request it:

1. answers 415 to a JSON-body route called with another media type;
2. lets public routes through (they audit themselves where they act, as login does);
3. denies a route that declares no permission (403): a forgotten declaration fails closed;
4. authenticates the caller (401 without valid credentials);
5. holds users who must change their password to the routes that let them do so (403);
6. checks the CSRF token on unsafe requests authenticated by session cookie (403);
7. applies the per-user rate limit (429 with Retry-After); GETs of the metrics routes (those
   that need `metrics:read`: `/metrics` and the Prometheus target list) spend a separate
   per-user bucket instead, so a Prometheus scraping every node can never be refused because
   the same user's dashboard or scripts used up their requests, nor use up theirs. That
   bucket is still per user and bounded (`METRICS_RATE`/`METRICS_BURST`): a scrape is a few
   requests a minute per node, so it leaves room for several Prometheus servers and scrape
   jobs sharing one token, yet a leaked metrics token cannot flood a node;
8. checks the role's permission (403);
9. records every unsafe request (and every refusal of one) in the audit log, with the
   credential (session or API token id) and, for a forwarded request, the member that
   forwarded it and the caller's address as that member saw it; a refusal's reason is the
   entry's detail unless the handler noted one.

WebSocket upgrades pass the same gate before they are accepted (`_websocket`): a declared
permission, valid credentials (a bearer token, a session cookie, or a member's forwarding
assertion), for a session cookie an Origin naming this host, the rate limit; a refusal closes
the socket before accepting it, which the client sees as HTTP 403.

Handlers read the principal as `request.user` and may refine the audit entry with
`appliance.audit.context.note`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import time
from dataclasses import dataclass

from litestar.enums import ScopeType
from litestar.exceptions import HTTPException
from litestar.handlers.base import BaseRouteHandler
from litestar.handlers.http_handlers import HTTPRouteHandler
from litestar.types import ASGIApp, HTTPScope, Message, Receive, Scope, Send, WebSocketScope

from appliance.api.problems import ApiError
from appliance.audit.context import AUDIT_STATE_KEY, AuditNote, outcome_of
from appliance.audit.log import AuditLog
from appliance.auth.permissions import (
    ACTION_KEY,
    BEFORE_PASSWORD_CHANGE_KEY,
    Permission,
    declared_permission,
    is_public,
)
from appliance.auth.principal import Authenticator, Principal, unauthorized
from appliance.auth.throttle import RateLimiter, retry_after_header

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
RATE_LIMIT_AUDIT_INTERVAL = 60.0
# The metrics bucket: 5 requests/s on average, bursts of 50. One Prometheus scraping a node
# every 15 s uses 1/15 of a request a second there; even a 1 s scrape interval with HA pairs
# and service-discovery refreshes stays well inside it.
METRICS_RATE = 5.0
METRICS_BURST = 50.0
WEBSOCKET_RECHECK_SECONDS = 15.0  # how soon an open WebSocket notices revoked credentials


@dataclass(frozen=True)
class RoutePolicy:
    """What the gate needs to know about one route handler, computed once."""

    public: bool
    permission: Permission | None
    action: str | None
    before_password_change: bool
    takes_json_body: bool


def policy_for(handler: BaseRouteHandler) -> RoutePolicy:
    takes_body = isinstance(handler, HTTPRouteHandler) and "data" in handler.parsed_fn_signature.parameters
    action = handler.opt.get(ACTION_KEY)
    return RoutePolicy(
        public=is_public(handler),
        permission=declared_permission(handler),
        action=action if isinstance(action, str) else None,
        before_password_change=handler.opt.get(BEFORE_PASSWORD_CHANGE_KEY) is True,
        takes_json_body=takes_body,
    )


def _metrics_read(policy: RoutePolicy, method: str) -> bool:
    """A read of a metrics route: it spends the metrics bucket, not the user's."""
    return policy.permission is Permission.METRICS_READ and method in ("GET", "HEAD")


def _header(scope: Scope, name: bytes) -> bytes:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return b""


def source_of(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


class AccessGate:
    """The collaborators the gate needs; one instance per app."""

    def __init__(
        self,
        authenticator: Authenticator,
        limiter: RateLimiter,
        audit: AuditLog,
        metrics_limiter: RateLimiter | None = None,
    ) -> None:
        self.authenticator = authenticator
        self.limiter = limiter
        # Without one of its own, metrics reads share the user's bucket (as before).
        self.metrics_limiter = metrics_limiter if metrics_limiter is not None else limiter
        self.audit = audit
        self.policies: dict[int, RoutePolicy] = {}
        self._rate_limit_audited: dict[str, float] = {}

    def policy(self, handler: BaseRouteHandler) -> RoutePolicy:
        policy = self.policies.get(id(handler))
        if policy is None:
            policy = self.policies[id(handler)] = policy_for(handler)
        return policy

    def admit(self, scope: HTTPScope, policy: RoutePolicy) -> Principal:
        """The principal allowed to make this request, or an ApiError saying why not."""
        if policy.permission is None:
            raise ApiError(403, "this route declares no permission and is denied by default")
        principal = self.authenticator.authenticate(scope)
        if principal is None:
            raise unauthorized("log in or send an API token")
        scope["user"] = principal
        if principal.must_change_password and not policy.before_password_change:
            raise ApiError(403, "change your password first (POST /api/v1/users/{name}/password)")
        method = scope["method"]
        if principal.via == "forwarded":
            # The forwarding member checked CSRF and the rate limit; never forward it again.
            scope.setdefault("state", {})["debvisor_forwarded"] = True
            if not principal.can(policy.permission):
                raise ApiError(403, f"role {principal.role} lacks permission {policy.permission}")
            return principal
        if principal.session is not None and method in UNSAFE_METHODS:
            sent = _header(scope, b"x-csrf-token")
            if not sent or not hmac.compare_digest(sent, principal.session.csrf_token.encode()):
                raise ApiError(403, "missing or wrong X-CSRF-Token header")
        limiter = self.metrics_limiter if _metrics_read(policy, method) else self.limiter
        wait = limiter.take(principal.name)
        if wait > 0:
            self._audit_rate_limit(scope, principal, limiter)
            raise ApiError(429, "too many requests", headers=retry_after_header(wait))
        if not principal.can(policy.permission):
            raise ApiError(403, f"role {principal.role} lacks permission {policy.permission}")
        return principal

    def admit_websocket(self, scope: WebSocketScope, policy: RoutePolicy) -> Principal:
        """As `admit`, for an upgrade: the permission, credentials, and for a session cookie the
        Origin (a page of another site must not open a socket with the user's cookie)."""
        if policy.permission is None:
            raise ApiError(403, "this route declares no permission and is denied by default")
        principal = self.authenticator.authenticate(scope)
        if principal is None:
            raise unauthorized("log in or send an API token")
        scope["user"] = principal
        if principal.must_change_password:
            raise ApiError(403, "change your password first (POST /api/v1/users/{name}/password)")
        if principal.via == "forwarded":
            scope.setdefault("state", {})["debvisor_forwarded"] = True
        else:
            if principal.session is not None and not same_origin(scope):
                raise ApiError(403, "the Origin header does not match the host (cross-site WebSocket refused)")
            wait = self.limiter.take(principal.name)
            if wait > 0:
                raise ApiError(429, "too many requests", headers=retry_after_header(wait))
        if not principal.can(policy.permission):
            raise ApiError(403, f"role {principal.role} lacks permission {policy.permission}")
        return principal

    def _audit_rate_limit(self, scope: HTTPScope, principal: Principal, limiter: RateLimiter) -> None:
        now = time.monotonic()
        # Once a minute per user and bucket: a refused scrape is not hidden by the user's own refusals.
        key = principal.name if limiter is self.limiter else f"metrics:{principal.name}"
        if now - self._rate_limit_audited.get(key, -RATE_LIMIT_AUDIT_INTERVAL) < RATE_LIMIT_AUDIT_INTERVAL:
            return
        self._rate_limit_audited[key] = now
        self.audit.append(
            user=principal.name,
            source=principal.source,
            action="auth.rate_limited",
            target=scope["path"],
            outcome="throttled",
            detail=f"over {limiter.rate:g} requests/s",
            credential=principal.credential,
        )


class AccessMiddleware:
    """ASGI middleware applying the `AccessGate` to every HTTP request."""

    def __init__(self, app: ASGIApp, gate: AccessGate) -> None:
        self._app = app
        self._gate = gate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == ScopeType.WEBSOCKET:
            await self._websocket(scope, receive, send)
            return
        policy = self._gate.policy(scope["route_handler"])
        if policy.takes_json_body and scope["method"] in _BODY_METHODS:
            media_type = _header(scope, b"content-type").split(b";", 1)[0].strip().lower()
            if media_type != b"application/json":
                raise ApiError(415, "send the body as application/json")
        if policy.public:
            await self._app(scope, receive, send)
            return
        audited = scope["method"] in UNSAFE_METHODS or policy.action is not None
        if not audited:
            self._gate.admit(scope, policy)
            await self._app(scope, receive, send)
            return
        note = AuditNote()
        scope.setdefault("state", {})[AUDIT_STATE_KEY] = note
        status = 500
        refusal = ""

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            self._gate.admit(scope, policy)
            await self._app(scope, receive, send_wrapper)
        except HTTPException as exc:
            status = exc.status_code
            if status in (401, 403):  # the gate's own words: they name no secret
                refusal = exc.detail
            raise
        finally:
            # Set by `admit` as soon as the caller is known, also when a later check refuses them.
            principal = scope.get("user")
            known = principal if isinstance(principal, Principal) else None
            self._gate.audit.append(
                user=known.name if known else "-",
                source=known.source if known else source_of(scope),
                action=policy.action or f"{scope['method'].lower()} {scope['path_template']}",
                target=note.target or scope["path"],
                outcome=outcome_of(status),
                detail=note.detail or refusal,
                credential=known.credential if known else "",
                forwarded_by=known.forwarded_by if known else "",
            )

    async def _websocket(self, scope: WebSocketScope, receive: Receive, send: Send) -> None:
        """Admit an upgrade or refuse it before it is accepted: the client sees HTTP 403, and
        the close code (4401, 4403, 4429) says why to ASGI servers that pass it on."""
        policy = self._gate.policy(scope["route_handler"])
        if policy.public:
            await self._app(scope, receive, send)
            return
        try:
            principal = self._gate.admit_websocket(scope, policy)
        except HTTPException as exc:
            message = await receive()
            if message["type"] == "websocket.connect":
                await send({"type": "websocket.close", "code": 4000 + exc.status_code, "reason": exc.detail[:120]})
            return
        if principal.via == "forwarded":  # the node the client reached checks it again; it closes this one too
            await self._app(scope, receive, send)
            return
        watchdog = asyncio.create_task(self._recheck(scope, policy, send), name="websocket-recheck")
        try:
            await self._app(scope, receive, send)
        finally:
            watchdog.cancel()

    async def _recheck(self, scope: WebSocketScope, policy: RoutePolicy, send: Send) -> None:
        """Close a socket whose credentials stop being valid (a revoked token, an ended session,
        a demoted role) within `WEBSOCKET_RECHECK_SECONDS`: a socket lives longer than a request."""
        while True:
            await asyncio.sleep(WEBSOCKET_RECHECK_SECONDS)
            try:
                principal = self._gate.authenticator.authenticate(scope)
                valid = principal is not None and principal.can(policy.permission) if policy.permission else False
            except HTTPException:
                valid = False
            if not valid:
                with contextlib.suppress(Exception):
                    await send({"type": "websocket.close", "code": 4401, "reason": "credentials no longer valid"})
                return


def same_origin(scope: Scope) -> bool:
    """True when the Origin header names the host the request was sent to (scheme aside)."""
    origin = _header(scope, b"origin").decode("latin-1").strip().lower()
    host = _header(scope, b"host").decode("latin-1").strip().lower()
    if not origin or not host:
        return False
    _, sep, rest = origin.partition("://")
    return bool(sep) and rest.rstrip("/") == host
