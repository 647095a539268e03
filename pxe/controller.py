"""`/api/v1/nodes/{name}/pxe`: a node's PXE boot server settings, and the machines it booted.

Per node (the interface and DHCP range are that node's), so each handler forwards first.
Reading the settings needs `pxe:manage` like writing them: per-machine settings hold join
tokens. Changes are audited by the access gate under the route's action. The boot files
themselves are served without credentials by `pxe.http` on the plain-HTTP listener.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, Router, get, put
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, JSONBody

from appliance.api.problems import ApiError
from appliance.audit.context import note
from appliance.auth.permissions import Permission, requires
from appliance.auth.principal import Principal
from appliance.cluster.forward import Forwarder
from pxe.service import PxeConfig, PxeError, PxeService, SeenMachine

AnyRequest = Request[Principal, Any, Any]


def pxe_config_routes(service: PxeService, *, local: str, forwarder: Forwarder) -> Router:
    """A node's PXE settings and booted machines, through any node."""

    @get(
        "/{name:str}/pxe",
        opt=requires(Permission.PXE_MANAGE),
        summary="A node's PXE boot server settings",
        responses={200: ResponseSpec(PxeConfig)},
    )
    async def get_config(request: AnyRequest, name: FromPath[str]) -> Response[Any]:
        if name != local:
            return await forwarder.forward(request, name)
        return Response(service.config())

    @put(
        "/{name:str}/pxe",
        opt=requires(Permission.PXE_MANAGE, action="pxe.config.put"),
        summary="Store and apply a node's PXE boot server settings (restarts dnsmasq if they changed)",
        responses={200: ResponseSpec(PxeConfig)},
    )
    async def put_config(request: AnyRequest, name: FromPath[str], data: JSONBody[PxeConfig]) -> Response[Any]:
        if name != local:
            return await forwarder.forward(request, name)
        try:
            stored = await service.put(data)
        except PxeError as exc:
            raise ApiError(422, f"invalid PXE settings: {exc}") from exc
        state = f"enabled on {stored.interface} ({stored.mode})" if stored.enabled else "disabled"
        note(request, target=f"node {name}", detail=f"{state}, {len(stored.machines)} machines")
        return Response(stored)

    @get(
        "/{name:str}/pxe/machines",
        opt=requires(Permission.NODE_READ),
        summary="Machines that fetched a boot script from a node, most recent first",
        responses={200: ResponseSpec(list[SeenMachine])},
    )
    async def machines(request: AnyRequest, name: FromPath[str]) -> Response[Any]:
        if name != local:
            return await forwarder.forward(request, name)
        return Response(service.seen())

    return Router("/api/v1/nodes", route_handlers=[get_config, put_config, machines], tags=["pxe"])
