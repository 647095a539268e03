"""Per-node routes (`/api/v1/nodes/{name}/...`): forwarded once, by their router.

Every node answers for every node. A router made by `node_router` holds only routes about one
node, named by the `name` path parameter; its middleware runs after the access gate (so the
caller is authenticated, authorised and audited here) and before the handler: when `name` is
another node it replays the request there through the `Forwarder` (404 for a node that is not
a member, 421 for a request that was already forwarded once, 502/503/504 when the target
cannot answer) and the handler does not run. So a handler only ever runs on the node it is
about, and has no forwarding step of its own. WebSocket routes (a node's event stream, a VM's
console) go the same way: an upgrade for another node is relayed there, messages both ways,
by `appliance.api.forward_ws` (refusals are close codes 4000 + the HTTP status). The router
also marks its routes as forwarding for the OpenAPI document (`appliance.api.openapi`,
`FORWARDS_KEY`). A route under the same path that acts for the whole cluster wherever it is
asked (removing a node) opts out with `ACTS_HERE` in its `opt`: Litestar allows one router
per path.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from litestar import Request, Response, Router, WebSocket
from litestar.enums import ScopeType
from litestar.middleware import DefineMiddleware
from litestar.types import ASGIApp, ControllerRouterHandler, Receive, Scope, Send

from appliance.api.forward import Forwarder
from appliance.api.forward_ws import forward_websocket
from appliance.api.openapi import FORWARDS_KEY

NODE_PARAMETER = "name"  # the path parameter that names the node a route is about


Forward = Callable[[Request[Any, Any, Any], str], Awaitable[Response[Any]]]
ForwardSocket = Callable[[WebSocket[Any, Any, Any], str], Awaitable[None]]


class ForwardMiddleware:
    """Replays a request for another node to it, or relays a WebSocket there; lets a request
    for node `local` through."""

    def __init__(self, app: ASGIApp, local: str, forward: Forward, forward_socket: ForwardSocket) -> None:
        self._app = app
        self._local = local
        self._forward = forward
        self._forward_socket = forward_socket

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["route_handler"].opt.get(FORWARDS_KEY) is True:
            target = scope["path_params"][NODE_PARAMETER]
            if target != self._local and scope["type"] == ScopeType.HTTP:
                request: Request[Any, Any, Any] = Request(scope, receive, send)
                response = await self._forward(request, target)
                await response.to_asgi_response(app=None, request=request)(scope, receive, send)
                return
            if target != self._local and scope["type"] == ScopeType.WEBSOCKET:
                await self._forward_socket(WebSocket(scope, receive, send), target)
                return
        await self._app(scope, receive, send)


ACTS_HERE: dict[str, Any] = {FORWARDS_KEY: False}


def node_router(
    path: str, route_handlers: Sequence[ControllerRouterHandler], *, forwarder: Forwarder, tags: Sequence[str]
) -> Router:
    """A router of routes about one node each (their path has `{name:str}`), forwarded once;
    HTTP and WebSocket routes alike."""

    # A plain function, not the forwarder: Litestar deep-copies a router when it registers it.
    async def forward(request: Request[Any, Any, Any], target: str) -> Response[Any]:
        return await forwarder.forward(request, target)

    async def forward_socket(socket: WebSocket[Any, Any, Any], target: str) -> None:
        await forward_websocket(forwarder, socket, target)

    return Router(
        path,
        route_handlers=route_handlers,
        middleware=[
            DefineMiddleware(ForwardMiddleware, local=forwarder.name, forward=forward, forward_socket=forward_socket)
        ],
        opt={FORWARDS_KEY: True},
        tags=tags,
    )
