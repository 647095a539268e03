"""The one gate every API request passes after routing: who may call this route, with what body.

It runs as Litestar middleware rather than as a Litestar guard: a guard costs a copy of the
route handler on every request (a third of the whole request on the hot path), while the
middleware reads the matched handler from the scope. It decides, per route handler, once:

- public routes pass;
- a route that declares no permission is denied (403), so a forgotten declaration fails closed;
- a route that takes a JSON body answers 415 to any other media type instead of parsing it.

Authentication and the role check are the accounts issue's work and slot in here.
"""

from __future__ import annotations

from dataclasses import dataclass

from litestar.enums import ScopeType
from litestar.handlers.base import BaseRouteHandler
from litestar.handlers.http_handlers import HTTPRouteHandler
from litestar.types import ASGIApp, Receive, Scope, Send

from appliance.api.problems import ApiError
from appliance.auth.permissions import Permission, declared_permission, is_public

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


@dataclass(frozen=True)
class RoutePolicy:
    """What the gate needs to know about one route handler, computed once."""

    public: bool
    permission: Permission | None
    takes_json_body: bool


def policy_for(handler: BaseRouteHandler) -> RoutePolicy:
    takes_body = isinstance(handler, HTTPRouteHandler) and "data" in handler.parsed_fn_signature.parameters
    return RoutePolicy(is_public(handler), declared_permission(handler), takes_body)


def _media_type(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"content-type":
            return value.split(b";", 1)[0].strip().lower().decode("latin-1")
    return ""


class AccessMiddleware:
    """ASGI middleware applying each route's `RoutePolicy`."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app
        self._policies: dict[int, RoutePolicy] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == ScopeType.HTTP:
            handler = scope["route_handler"]
            policy = self._policies.get(id(handler))
            if policy is None:
                policy = self._policies[id(handler)] = policy_for(handler)
            if not policy.public and policy.permission is None:
                raise ApiError(403, "this route declares no permission and is denied by default")
            if policy.takes_json_body and scope["method"] in _BODY_METHODS and _media_type(scope) != "application/json":
                raise ApiError(415, "send the body as application/json")
        await self._app(scope, receive, send)
