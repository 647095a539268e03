"""`/api/v1/nodes` (cluster members) and `/api/v1/cluster` (joining).

Joining is public: a new node has no account, it has a join token, which `JoinService`
checks. Failed joins are throttled per source address, like logins, and every attempt is
audited on this node.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Request, Response, Router, delete, get, post
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, JSONBody

from appliance.api.problems import ApiError
from appliance.audit.context import note
from appliance.audit.log import AuditLog
from appliance.auth.access import source_of
from appliance.auth.permissions import PUBLIC, Permission, public, requires
from appliance.auth.principal import Principal
from appliance.auth.throttle import LoginThrottle, retry_after_header
from appliance.cluster.forward import Forwarder
from appliance.cluster.join import CaInfo, JoinRequest, JoinResponse, JoinService, JoinTokenCreated
from appliance.cluster.service import ClusterService, NodeMember
from appliance.node.service import NodeService
from appliance.node.types import Node


class JoinTokensPost(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    ttl_seconds: Annotated[int, msgspec.Meta(ge=60, le=7 * 86400)] = 3 * 3600


def cluster_routes(
    cluster: ClusterService,
    *,
    joins: JoinService,
    throttle: LoginThrottle,
    audit: AuditLog,
    forwarder: Forwarder,
    node_service: NodeService,
) -> Router:
    @get("/nodes", opt=requires(Permission.NODE_READ), summary="Cluster members and their state")
    async def list_nodes() -> list[NodeMember]:
        return cluster.members()

    @get(
        "/nodes/{name:str}",
        opt=requires(Permission.NODE_READ),
        summary="One node's status, answered by that node (through any node)",
        responses={200: ResponseSpec(Node)},
    )
    async def get_node(request: Request[Principal, Any, Any], name: FromPath[str]) -> Response[Any]:
        if name != cluster.settings.name:
            return await forwarder.forward(request, name)
        return Response(await node_service.get())

    @delete(
        "/nodes/{name:str}",
        opt=requires(Permission.CLUSTER_MANAGE, action="cluster.node.remove"),
        summary="Remove a node: revoke its certificate everywhere",
        status_code=204,
    )
    async def remove_node(request: Request[Principal, Any, Any], name: FromPath[str]) -> None:
        note(request, target=name)
        if name == cluster.settings.name:
            raise ApiError(409, "a node cannot remove itself; ask another node")
        if cluster.member(name) is None:
            raise ApiError(404, f"no member {name!r}")
        try:
            cluster.remove(name)
        except KeyError as exc:
            raise ApiError(409, f"{name!r} has not announced its certificate; it cannot be revoked yet") from exc

    @post(
        "/cluster/join-tokens",
        opt=requires(Permission.CLUSTER_MANAGE, action="cluster.token.create"),
        summary="A single-use token that lets one new node join",
    )
    async def create_join_token(
        request: Request[Principal, Any, Any], data: JSONBody[JoinTokensPost]
    ) -> JoinTokenCreated:
        created = joins.create_token(created_by=request.user.name, ttl=data.ttl_seconds)
        note(request, target=f"join token {created.id}", detail=f"valid {data.ttl_seconds} s")
        return created

    @get("/cluster/ca", opt=PUBLIC, summary="The cluster CA certificate (public)")
    async def cluster_ca() -> CaInfo:
        return joins.ca_info()

    @post(
        "/cluster/join",
        opt=public(action="cluster.join"),
        summary="Admit a new node (token-authenticated)",
        status_code=200,
    )
    async def join(request: Request[Any, Any, Any], data: JSONBody[JoinRequest]) -> JoinResponse:
        source = source_of(request.scope)
        key = f"join:{source}"
        wait = throttle.retry_after([key])
        if wait > 0:
            raise ApiError(429, "too many failed joins from this address", headers=retry_after_header(wait))
        try:
            response = joins.admit(data, name_in_use=cluster.name_in_use, gossip_seeds=cluster.gossip_seeds())
        except ApiError as exc:
            throttle.failed([key])
            audit.append(
                user=f"node:{data.name}"[:64], source=source, action="cluster.join", target=data.name[:64],
                outcome="denied", detail=f"token {data.token_id[:32]}: {exc.detail}",
            )  # fmt: skip
            raise
        throttle.succeeded(key)
        audit.append(
            user=f"node:{data.name}", source=source, action="cluster.join", target=data.name,
            outcome="success", detail=f"token {data.token_id}",
        )  # fmt: skip
        return response

    return Router(
        "/api/v1",
        route_handlers=[list_nodes, get_node, remove_node, create_join_token, cluster_ca, join],
        tags=["cluster"],
    )
