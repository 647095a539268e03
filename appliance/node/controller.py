"""`/api/v1/node`: this node's facts, and the description and labels an operator sets."""

from __future__ import annotations

from litestar import Controller, get, put

from appliance.auth.permissions import Permission, requires
from appliance.node.service import NodeService
from appliance.node.types import Node, NodePut


class NodeController(Controller):
    """The node answering the request (cluster-wide `/nodes/{name}` comes with membership)."""

    path = "/api/v1/node"
    tags = ("node",)

    @get("/", opt=requires(Permission.NODE_READ), summary="This node: identity, version, host facts")
    async def get_node(self, node_service: NodeService) -> Node:
        return await node_service.get()

    @put("/", opt=requires(Permission.NODE_WRITE), summary="Set this node's description and labels")
    async def put_node(self, data: NodePut, node_service: NodeService) -> Node:
        return await node_service.update(data)
