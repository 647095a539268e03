"""The permissions routes declare.

Every route states the permission it needs in its `opt` (`opt=requires(Permission.NODE_READ)`)
or that it is public (`opt=PUBLIC`). `appliance.auth.access` denies any route that declares
neither, so forgetting a declaration fails closed.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from litestar.handlers.base import BaseRouteHandler
from litestar.handlers.http_handlers import HTTPRouteHandler

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
    """Declared public, or Litestar's automatic OPTIONS answer (it only lists allowed methods)."""
    if handler.opt.get(PUBLIC_KEY) is True:
        return True
    return isinstance(handler, HTTPRouteHandler) and handler.http_methods == {"OPTIONS"} and not handler.opt
