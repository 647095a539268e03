"""A record of every answer the API unit tests get, to check each against the OpenAPI document.

The record is taken where every request passes: `MetricsMiddleware`, outside Litestar, so it
sees the problems the access gate and the exception handlers answer as well as the handlers'
own answers, and (after routing) the route template and handler the request was matched to.
Only operations the document lists are recorded: an unknown path or method has no route.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from litestar.enums import ScopeType
from litestar.handlers.http_handlers import HTTPRouteHandler
from litestar.types import Message, Receive, Scope, Send


@dataclass(frozen=True)
class Answer:
    """One answer: the route it came from and what it was."""

    method: str  # lower case, as in the document
    path: str  # the route's OpenAPI path, such as /api/v1/users/{name}
    status: int
    media_type: str  # without parameters; "" when the answer has no body


ANSWERS: list[Answer] = []
App = Callable[[Scope, Receive, Send], Awaitable[None]]


def _media_type(headers: Any) -> str:
    for key, value in headers:
        if bytes(key).lower() == b"content-type":
            return bytes(value).split(b";", 1)[0].strip().decode("latin-1").lower()
    return ""


def recording(call: Callable[[Any, Scope, Receive, Send], Awaitable[None]]) -> Callable[..., Awaitable[None]]:
    """Wrap an ASGI `__call__` so every HTTP answer it sends is appended to `ANSWERS`."""

    async def wrapped(self: Any, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await call(self, scope, receive, send)
            return
        started: dict[str, Any] = {}
        has_body = False

        async def send_wrapper(message: Message) -> None:
            nonlocal has_body
            if message["type"] == "http.response.start":
                started.update(status=message["status"], media_type=_media_type(message.get("headers", [])))
            elif message["type"] == "http.response.body" and message.get("body"):
                has_body = True
            await send(message)

        try:
            await call(self, scope, receive, send_wrapper)
        finally:
            handler = scope.get("route_handler")
            method = str(scope["method"])
            if (
                started
                and isinstance(handler, HTTPRouteHandler)
                and handler.resolve_include_in_schema()
                and method in handler.http_methods
                and method in {"GET", "PUT", "POST", "PATCH", "DELETE"}
            ):
                ANSWERS.append(
                    Answer(
                        method=method.lower(),
                        path=str(scope.get("path_template", "")),
                        status=int(started["status"]),
                        media_type=started["media_type"] if has_body else "",
                    )
                )

    return wrapped
