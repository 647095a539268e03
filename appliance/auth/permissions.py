"""The permissions routes declare, and the one guard that checks them.

Every route states the permission it needs in its `opt` (`opt=requires(Permission.NODE_READ)`)
or that it is public (`opt=PUBLIC`). The app-wide guard `authorize` denies any route that
declares neither, so forgetting a declaration fails closed. Who holds which permission is
the accounts issue's work; until then an authenticated principal is not yet required and
`authorize` only enforces that the declaration exists.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from appliance.api.problems import ApiError

PERMISSION_KEY = "permission"
PUBLIC_KEY = "public"


class Permission(StrEnum):
    """Actions a route can require, named `<resource>:<verb>`."""

    NODE_READ = "node:read"
    NODE_WRITE = "node:write"
    METRICS_READ = "metrics:read"
    API_DOCS_READ = "apidocs:read"


def requires(permission: Permission) -> dict[str, Any]:
    """The `opt` a route handler passes to declare the permission it needs."""
    return {PERMISSION_KEY: permission}


PUBLIC: dict[str, Any] = {PUBLIC_KEY: True}


def declared_permission(handler: BaseRouteHandler) -> Permission | None:
    value = handler.opt.get(PERMISSION_KEY)
    return value if isinstance(value, Permission) else None


def is_public(handler: BaseRouteHandler) -> bool:
    return handler.opt.get(PUBLIC_KEY) is True


async def authorize(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    """Deny by default: a route must be public or declare a permission."""
    if is_public(handler):
        return
    if declared_permission(handler) is None:
        raise ApiError(403, "this route declares no permission and is denied by default")
