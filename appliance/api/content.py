"""Request checks that belong to the HTTP layer rather than to any resource.

`require_json_body` answers 415 when a route that takes a JSON body receives another media
type, instead of trying to parse it.
"""

from __future__ import annotations

from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.handlers.http_handlers import HTTPRouteHandler

from appliance.api.problems import ApiError

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_takes_body: dict[int, bool] = {}


def _handler_takes_body(handler: BaseRouteHandler) -> bool:
    key = id(handler)
    if key not in _takes_body:
        _takes_body[key] = (
            isinstance(handler, HTTPRouteHandler) and "data" in handler.parsed_fn_signature.parameters
        )
    return _takes_body[key]


async def require_json_body(
    connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
) -> None:
    """415 for a body-taking route called with a body that is not `application/json`."""
    if connection.scope.get("method") not in _BODY_METHODS or not _handler_takes_body(handler):
        return
    media_type = connection.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/json":
        raise ApiError(415, "send the body as application/json")
