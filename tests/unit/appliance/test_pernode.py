"""Per-node routes are forwarded by their router, once, and their handlers run only here.

A single node has no other member, so a request that names another node is answered by the
router's forwarding step (404: no such member) before any handler runs; a route that acts for
the cluster wherever it is asked (`ACTS_HERE`, removing a node) runs its own handler.
"""

from __future__ import annotations

from typing import Any

from litestar.handlers.http_handlers import HTTPRouteHandler
from litestar.routes import HTTPRoute
from litestar.testing import TestClient

from appliance.api.openapi import FORWARDS_KEY
from appliance.api.pernode import ForwardMiddleware
from appliance.app import Appliance


def test_every_route_about_one_node_is_forwarded_by_its_router_or_acts_here(appliance: Appliance) -> None:
    per_node = 0
    for route in appliance.litestar.routes:
        if not isinstance(route, HTTPRoute) or not route.path.startswith("/api/v1/nodes/{name"):
            continue
        for handler in route.route_handlers:
            if not isinstance(handler, HTTPRouteHandler) or handler.http_methods == {"OPTIONS"}:
                continue
            per_node += 1
            declared = handler.opt.get(FORWARDS_KEY)
            assert declared in (True, False), f"{route.path} {handler.http_methods}: forwarded or ACTS_HERE?"
            middleware = [getattr(m, "middleware", m) for m in handler.resolve_middleware()]
            assert ForwardMiddleware in middleware, f"{route.path} is not in a node_router"
    assert per_node >= 18  # node status (and removing a node), 7 network routes, 9 PXE routes


def test_a_request_for_another_node_never_reaches_the_handler(client: TestClient[Any]) -> None:
    for method, path in [
        ("GET", "/api/v1/nodes/ghost"),
        ("GET", "/api/v1/nodes/ghost/network/status"),
        ("GET", "/api/v1/nodes/ghost/pxe/machines/not-a-mac"),  # the handler would answer 422
        ("POST", "/api/v1/nodes/ghost/network/confirm"),
    ]:
        answer = client.request(method, path)
        assert answer.status_code == 404, (path, answer.text)
        assert answer.json()["detail"] == "no node 'ghost' in this cluster"
    # Removing a node acts here, for the cluster: its own handler answers.
    removed = client.delete("/api/v1/nodes/ghost")
    assert (removed.status_code, removed.json()["detail"]) == (404, "no member 'ghost'")
    # This node's own routes run their handlers.
    assert client.get("/api/v1/nodes/n1").json()["name"] == "n1"
    assert client.get("/api/v1/nodes/n1/pxe/machines/not-a-mac").status_code == 422
