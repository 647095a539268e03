"""Every error the API returns is an RFC 9457 `application/problem+json` document.

Litestar raises its own exceptions for routing (404, 405), body limits (413) and body
parsing (400, validation); the handlers here turn each into one `Problem` shape, so clients
parse one error format. Validation failures become 422 with one entry per bad field, naming
its JSON path. Unexpected exceptions become a 500 that says nothing about internals; the
traceback goes to the log, never to the client.
"""

from __future__ import annotations

import logging
import re
from http import HTTPStatus
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, SerializationException, ValidationException

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"


class FieldError(msgspec.Struct, frozen=True):
    """One invalid input: where it is (a JSON path such as `$.labels.rack`) and what is wrong."""

    path: str
    message: str


class Problem(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """RFC 9457 problem details, with `errors` for validation failures."""

    type: str
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    errors: list[FieldError] | None = None


class ApiError(HTTPException):
    """Raised by services and controllers for an expected failure with a specific status;
    `errors` lists invalid fields when a service (not the schema) found them."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        headers: dict[str, str] | None = None,
        errors: list[FieldError] | None = None,
    ) -> None:
        super().__init__(detail=detail, status_code=status, headers=headers)
        self.errors = errors


def problem_response(
    request: Request[Any, Any, Any],
    status: int,
    detail: str | None,
    *,
    errors: list[FieldError] | None = None,
    headers: dict[str, str] | None = None,
) -> Response[Problem]:
    phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
    body = Problem(
        type="about:blank",  # RFC 9457 4.2.1: the title is then the status phrase
        title=phrase,
        status=status,
        detail=detail,
        instance=request.url.path,
        errors=errors,
    )
    return Response(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


_UNKNOWN_FIELD = re.compile(r"^Object contains unknown field `([^`]*)`$")


def _field_errors(extra: Any) -> list[FieldError]:
    """Turn Litestar's validation `extra` into JSON-path + message pairs.

    Litestar reports body fields by key (`labels.rack`, or `data` for the body as a whole)
    with `source: body`, and parameters by name with their source (`query`, `path`, ...).
    """
    errors: list[FieldError] = []
    for item in extra if isinstance(extra, list) else []:
        if not isinstance(item, dict):
            continue
        message = str(item.get("message", "invalid value"))
        key = str(item.get("key") or "")
        raw_source = item.get("source") or "body"
        source = str(getattr(raw_source, "value", raw_source))  # Litestar passes a ParamType enum
        if source == "body" or not key:
            path = "$" if key in {"", "data"} else f"$.{key}"
            unknown = _UNKNOWN_FIELD.match(message)
            if unknown:
                path = f"{path}.{unknown.group(1)}"
        else:
            path = f"{source}:{key}"
        errors.append(FieldError(path=path, message=message))
    return errors


def handle_http_exception(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Problem]:
    """Map Litestar's and our HTTP exceptions to problem documents."""
    headers = dict(exc.headers) if exc.headers else None
    if isinstance(exc, ValidationException):
        fields = _field_errors(exc.extra)
        return problem_response(request, 422, "the request is well-formed but invalid", errors=fields or None)
    status = exc.status_code
    detail: str | None = exc.detail
    if isinstance(exc.__cause__, SerializationException):
        detail = f"the body is not valid JSON: {detail}"
    if status >= 500 and not isinstance(exc, ApiError):
        # Litestar's own 5xx: say nothing about internals. Our ApiError 503/504 details (a node
        # is dead, did not answer) are meant for the caller.
        log.error("request failed: %s", exc.detail, extra={"path": request.url.path, "status": status})
        detail = "internal error; see the node's log"
    elif detail == HTTPStatus(status).phrase:
        detail = None
    return problem_response(request, status, detail, headers=headers, errors=_errors_of(exc))


def _errors_of(exc: HTTPException) -> list[FieldError] | None:
    """The invalid fields an exception names: an ApiError's, or those of a library's own error
    with `errors` of path and message (the PXE boot routes' `pxe.http.BootError`)."""
    found = getattr(exc, "errors", None)
    if not found:
        return None
    return [e if isinstance(e, FieldError) else FieldError(str(e.path), str(e.message)) for e in found]


def handle_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[Problem]:
    """Last resort: log the traceback, tell the client only that it failed."""
    log.exception("unhandled error", extra={"path": request.url.path, "method": request.method})
    return problem_response(request, 500, "internal error; see the node's log")


EXCEPTION_HANDLERS = {
    HTTPException: handle_http_exception,
    Exception: handle_unexpected,
}
