"""`/api/v1/node`: this node's facts, and the description and labels an operator sets.

Routes are built around the service they call (no per-request dependency injection: it cost
about a tenth of the request on this hot path); `create_app` passes the service in.
"""

from __future__ import annotations

from litestar import Router, get, put
from litestar.params import JSONBody

from appliance.auth.permissions import Permission, requires
from appliance.node.service import NodeService
from appliance.node.types import Node, NodePut


def node_routes(service: NodeService) -> Router:
    """The node resource of the node answering the request."""

    @get("/", opt=requires(Permission.NODE_READ), summary="This node: identity, version, host facts")
    async def get_node() -> Node:
        return await service.get()

    @put("/", opt=requires(Permission.NODE_WRITE), summary="Set this node's description and labels")
    async def put_node(data: JSONBody[NodePut]) -> Node:
        return await service.update(data)

    return Router("/api/v1/node", route_handlers=[get_node, put_node], tags=["node"])
