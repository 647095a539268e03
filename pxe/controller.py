"""`/api/v1/nodes/{name}/pxe`: a node's PXE boot server settings, and the machines it booted.

Per node (the interface and DHCP range are that node's), so each handler forwards first.
Reading the settings needs `pxe:manage` like writing them: per-machine settings hold join
tokens. The machine list and a machine's reported inventory hold none, so `node:read` may see
them. Naming a machine (`PUT .../machines/{mac}`) or forgetting it (`DELETE`) changes the
per-MAC settings like `PUT .../pxe`. Changes are audited by the access gate under the route's
action, with a detail that never holds a join token. The boot files and the machines' reports
are served without credentials by `pxe.http` on the plain-HTTP listener.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, Router, delete, get, put
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, JSONBody

from appliance.api.problems import ApiError
from appliance.audit.context import note
from appliance.auth.permissions import Permission, requires
from appliance.auth.principal import Principal
from appliance.cluster.forward import Forwarder
from pxe.dnsmasq import normalize_mac
from pxe.enlistment import EnlistedMachine, EnlistedMachineDetail
from pxe.service import MachinePut, MachineSettings, PxeConfig, PxeError, PxeService

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
        responses={200: ResponseSpec(list[EnlistedMachine])},
    )
    async def machines(request: AnyRequest, name: FromPath[str]) -> Response[Any]:
        if name != local:
            return await forwarder.forward(request, name)
        return Response(service.seen())

    @get(
        "/{name:str}/pxe/machines/{mac:str}",
        opt=requires(Permission.NODE_READ),
        summary="One machine that booted from a node, with the inventory it reported",
        responses={200: ResponseSpec(EnlistedMachineDetail)},
    )
    async def machine(request: AnyRequest, name: FromPath[str], mac: FromPath[str]) -> Response[Any]:
        if name != local:
            return await forwarder.forward(request, name)
        found = service.machine(_mac(mac))
        if found is None:
            raise ApiError(404, f"machine {mac} has not fetched a boot script from node {name}")
        return Response(found)

    @put(
        "/{name:str}/pxe/machines/{mac:str}",
        opt=requires(Permission.PXE_MANAGE, action="pxe.machine.put"),
        summary="Name a machine: store its boot settings (name, join token, extra arguments, fixed IP)",
        responses={200: ResponseSpec(MachineSettings)},
    )
    async def put_machine(
        request: AnyRequest, name: FromPath[str], mac: FromPath[str], data: JSONBody[MachinePut]
    ) -> Response[Any]:
        if name != local:
            return await forwarder.forward(request, name)
        try:
            stored = await service.put_machine(_mac(mac), data)
        except PxeError as exc:
            raise ApiError(422, f"invalid machine settings: {exc}") from exc
        join = "with a join token" if stored.has_join else "no join token"
        note(request, target=f"node {name} machine {stored.mac}", detail=f"name {stored.name}, {join}")
        return Response(stored)

    @delete(
        "/{name:str}/pxe/machines/{mac:str}",
        opt=requires(Permission.PXE_MANAGE, action="pxe.machine.delete"),
        summary="Forget a machine: its record, its inventory and its boot settings",
        status_code=204,
    )
    async def forget_machine(request: AnyRequest, name: FromPath[str], mac: FromPath[str]) -> Response[None]:
        if name != local:
            return await forwarder.forward(request, name)
        normalized = _mac(mac)
        try:
            forgotten = await service.forget(normalized)
        except PxeError as exc:
            raise ApiError(422, str(exc)) from exc
        if not forgotten:
            raise ApiError(404, f"node {name} knows no machine {normalized}")
        note(request, target=f"node {name} machine {normalized}")
        return Response(None, status_code=204)

    return Router(
        "/api/v1/nodes",
        route_handlers=[get_config, put_config, machines, machine, put_machine, forget_machine],
        tags=["pxe"],
    )


def _mac(text: str) -> str:
    """A MAC from the path, normalized; 422 if it is none."""
    try:
        return normalize_mac(text)
    except ValueError as exc:
        raise ApiError(422, str(exc)) from exc
