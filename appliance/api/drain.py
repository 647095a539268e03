"""Read the rest of a request body the app answered without reading, so the connection lives on.

Many answers come before the handler reads the body: the access gate's 401/403/429, the
per-node router's 404 for a node that is not a member (and 421/503 before forwarding), a 405.
The HTTP server then had unread body bytes on the connection and closed it: a client still
sending its body saw the connection reset ("EOF occurred in violation of protocol"), and one
that had sent it all found its next request on that keep-alive connection refused ("remote
end closed connection without response"). It depended on timing, so clients (and the API
fuzz test) failed now and then. `DrainBody`, outside the app, reads and discards what is left
of a body the client announced, up to the app's body limit, once the answer is out.

Left out: a body larger than the limit (413) is not drained; closing that connection is the
point of the limit. A client that stops sending is waited for `DRAIN_SECONDS` at most. Nor
are WebSocket or lifespan scopes touched.
"""

from __future__ import annotations

import asyncio
import contextlib

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Receive, ReceiveMessage, Scope, Send

DRAIN_SECONDS = 10.0  # the most a finished request waits for the rest of its body


class DrainBody:
    """ASGI wrapper: after the app answered an HTTP request, discard the unread rest of its body
    (at most `limit` bytes, announced by Content-Length or sent chunked)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self._app = app
        self._limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP or not _announces_body(scope, self._limit):
            await self._app(scope, receive, send)
            return
        finished = False

        async def tracking() -> ReceiveMessage:
            nonlocal finished
            message = await receive()
            finished = _last(message)
            return message

        await self._app(scope, tracking, send)
        drained = 0
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(DRAIN_SECONDS):  # a client that stops sending is left to the server
                while not finished and drained <= self._limit:
                    message = await receive()
                    if message["type"] == "http.request":
                        drained += len(message.get("body", b""))
                    finished = _last(message)


def _last(message: ReceiveMessage) -> bool:
    """Whether `message` ends the request body (its last part, or the client went away)."""
    return message["type"] != "http.request" or not message.get("more_body", False)


def _announces_body(scope: Scope, limit: int) -> bool:
    """Whether the request says a body follows that is worth draining (within `limit`)."""
    for key, value in scope.get("headers", ()):
        name = bytes(key).lower()
        if name == b"content-length":
            try:
                length = int(bytes(value))
            except ValueError:
                return False
            return 0 < length <= limit
        if name == b"transfer-encoding" and b"chunked" in bytes(value).lower():
            return True
    return False
