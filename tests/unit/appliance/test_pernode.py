"""Per-node routes are forwarded by their router, once, and their handlers run only here.

A single node has no other member, so a request that names another node is answered by the
router's forwarding step (404: no such member) before any handler runs; a route that acts for
the cluster wherever it is asked (`ACTS_HERE`, removing a node) runs its own handler.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from litestar.exceptions import WebSocketDisconnect
from litestar.handlers.http_handlers import HTTPRouteHandler
from litestar.routes import HTTPRoute, WebSocketRoute
from litestar.testing import TestClient

from appliance.api.openapi import FORWARDS_KEY
from appliance.api.pernode import ForwardMiddleware
from appliance.app import Appliance
from appliance.auth.permissions import Role
from tests.unit.appliance.conftest import BASE, admin_token


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


def test_a_websocket_for_another_node_is_forwarded_by_its_router(appliance: Appliance) -> None:
    """The per-node events socket is in a node_router: for a node that is no member the router
    answers (close 4404) and the handler never runs; for this node the handler serves it."""
    headers = {"Authorization": f"Bearer {admin_token(appliance)}"}
    with TestClient(appliance.asgi, base_url=BASE) as client:
        with (
            pytest.raises(WebSocketDisconnect) as refused,
            client.websocket_connect("/api/v1/nodes/ghost/events", headers=headers) as socket,
        ):
            socket.receive_text()
        assert refused.value.code == 4404
        assert "no node 'ghost'" in str(refused.value.detail)
        with client.websocket_connect("/api/v1/nodes/n1/events?type=config", headers=headers) as socket:
            appliance.accounts.create_user("someone", Role.VIEWER, "a long enough password")
            message = json.loads(socket.receive_text().splitlines()[0])
        assert (message["type"], message["node"]) == ("config", "n1")


def test_every_websocket_route_about_one_node_is_in_a_node_router(appliance: Appliance) -> None:
    found = [route for route in appliance.litestar.routes if isinstance(route, WebSocketRoute)]
    per_node = [route for route in found if route.path.startswith("/api/v1/nodes/{name")]
    assert sorted(route.path for route in per_node) == [
        "/api/v1/nodes/{name:str}/events",
        "/api/v1/nodes/{name:str}/journal/follow",
    ]
    for route in per_node:
        middleware = [getattr(m, "middleware", m) for m in route.route_handler.resolve_middleware()]
        assert ForwardMiddleware in middleware, f"{route.path} is not in a node_router"
