"""`/api/v1/nodes/{name}/network...` (a node's host networking) and `/api/v1/networks` (overlays).

Per-node routes are forwarded by their router (appliance/api/pernode.py): a request for another
node is replayed to it (the Forwarder carries the caller's identity), so every node answers for
every node and each node applies only its own configuration. Every change is audited by the
access gate under the `action` of its route; handlers add the target and what was done.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from litestar import Request, Response, Router, delete, get, post, put
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, JSONBody

from appliance.api.forward import Forwarder
from appliance.api.openapi import problems
from appliance.api.pernode import node_router
from appliance.audit.context import note
from appliance.auth.permissions import Permission, requires
from appliance.auth.principal import Principal
from appliance.network.overlays import OverlayStore
from appliance.network.service import NetworkService
from appliance.network.types import (
    NetworkApplied,
    NetworkApplyPost,
    NetworkOutcome,
    NetworkPlan,
    NetworkPlanPost,
    NetworkStatus,
    Overlay,
    OverlayPut,
    OverlaysPost,
    OverlayState,
)
from netconfig.model import NetworkConfig

AnyRequest = Request[Principal, Any, Any]


def network_routes(
    service: NetworkService, *, overlays: Callable[[], list[OverlayState]], forwarder: Forwarder
) -> Router:
    """A node's host networking, through any node (`overlays`: their states on this node)."""
    read = requires(Permission.NETWORK_READ)

    @get(
        "/{name:str}/network",
        opt=read,
        summary="A node's desired network configuration",
        responses={200: ResponseSpec(NetworkConfig)},
    )
    async def get_desired() -> Response[Any]:
        return Response(service.desired())

    @put(
        "/{name:str}/network",
        opt=requires(Permission.NETWORK_MANAGE, action="network.config.put"),
        summary="Store a node's desired network configuration (applied by POST .../apply)",
        responses={200: ResponseSpec(NetworkConfig)},
    )
    async def put_desired(request: AnyRequest, name: FromPath[str], data: JSONBody[NetworkConfig]) -> Response[Any]:
        stored = await service.put_desired(data)
        note(request, target=f"node {name}", detail=f"{len(stored.links())} links")
        return Response(stored)

    @post(
        "/{name:str}/network/plan",
        opt=requires(Permission.NETWORK_READ, action="network.plan") | problems(409),
        status_code=200,
        summary="What applying a configuration (default: the stored one) would change; changes nothing",
        responses={200: ResponseSpec(NetworkPlan)},
    )
    async def plan(request: AnyRequest, name: FromPath[str], data: JSONBody[NetworkPlanPost]) -> Response[Any]:
        result = await service.plan(data.config)
        note(request, target=f"node {name}", detail=f"{len(result.actions)} changes")
        return Response(result)

    @post(
        "/{name:str}/network/apply",
        opt=requires(Permission.NETWORK_MANAGE, action="network.apply") | problems(409),
        status_code=200,
        summary="Apply a configuration; rolled back unless confirmed within confirm_within",
        responses={200: ResponseSpec(NetworkApplied)},
    )
    async def apply(request: AnyRequest, name: FromPath[str], data: JSONBody[NetworkApplyPost]) -> Response[Any]:
        note(request, target=f"node {name}", detail=f"confirm within {data.confirm_within:g} s")
        result = await service.apply(data.config, data.confirm_within, data.check)
        checked = f", checked {data.check}" if data.check else ""
        note(request, detail=f"change {result.id}: {len(result.actions)} changes, {data.confirm_within:g} s{checked}")
        return Response(result)

    @post(
        "/{name:str}/network/confirm",
        opt=requires(Permission.NETWORK_MANAGE, action="network.confirm") | problems(409),
        status_code=200,
        summary="Keep the change in its confirm window",
        responses={200: ResponseSpec(NetworkOutcome)},
    )
    async def confirm(request: AnyRequest, name: FromPath[str]) -> Response[Any]:
        note(request, target=f"node {name}")
        return Response(await service.confirm())

    @post(
        "/{name:str}/network/rollback",
        opt=requires(Permission.NETWORK_MANAGE, action="network.rollback") | problems(409),
        status_code=200,
        summary="Undo the change in its confirm window now",
        responses={200: ResponseSpec(NetworkOutcome)},
    )
    async def rollback(request: AnyRequest, name: FromPath[str]) -> Response[Any]:
        note(request, target=f"node {name}")
        result = await service.rollback()
        note(request, detail=f"{len(result.actions)} changes undone")
        return Response(result)

    @get(
        "/{name:str}/network/status",
        opt=read,
        summary="A node's links, addresses, routes and counters, its configuration and confirm window",
        responses={200: ResponseSpec(NetworkStatus)},
    )
    async def status() -> Response[Any]:
        return Response(await service.status(overlays()))

    return node_router(
        "/api/v1/nodes",
        [get_desired, put_desired, plan, apply, confirm, rollback, status],
        forwarder=forwarder,
        tags=["network"],
    )


def overlay_routes(overlays: OverlayStore) -> Router:
    """Cluster-wide overlay (VXLAN) networks; every node builds each one."""

    @get("/", opt=requires(Permission.NETWORK_READ), summary="Overlay networks")
    async def list_overlays() -> list[Overlay]:
        return [Overlay.of(r) for r in sorted(overlays.all(), key=lambda r: r.name)]

    @post(
        "/",
        opt=requires(Permission.NETWORK_MANAGE, action="network.overlay.create") | problems(409),
        summary="Define an overlay network; every node creates it",
    )
    async def create_overlay(request: AnyRequest, data: JSONBody[OverlaysPost]) -> Overlay:
        note(request, target=data.name, detail=f"VNI {data.vni}, bridge {data.bridge}")
        return Overlay.of(overlays.create(data))

    @get("/{name:str}", opt=requires(Permission.NETWORK_READ) | problems(404), summary="One overlay network")
    async def get_overlay(name: FromPath[str]) -> Overlay:
        return Overlay.of(overlays.get(name))

    @put(
        "/{name:str}",
        opt=requires(Permission.NETWORK_MANAGE, action="network.overlay.update") | problems(404, 409),
        summary="Change an overlay network (every node follows)",
    )
    async def update_overlay(request: AnyRequest, name: FromPath[str], data: JSONBody[OverlayPut]) -> Overlay:
        note(request, target=name, detail=f"VNI {data.vni}, bridge {data.bridge}, MTU {data.mtu}")
        return Overlay.of(overlays.update(name, data))

    @delete(
        "/{name:str}",
        opt=requires(Permission.NETWORK_MANAGE, action="network.overlay.delete") | problems(404),
        status_code=204,
        summary="Delete an overlay network; every node removes its links",
    )
    async def delete_overlay(request: AnyRequest, name: FromPath[str]) -> None:
        note(request, target=name)
        overlays.delete(name)

    return Router(
        "/api/v1/networks",
        route_handlers=[list_overlays, create_overlay, get_overlay, update_overlay, delete_overlay],
        tags=["network"],
    )
