"""`/api/v1/nodes/{name}/pxe`: a node's PXE boot server settings, and the machines it booted.

Per node (the interface and DHCP range are that node's): the router forwards a request for
another node there (appliance/api/pernode.py).
Reading the settings needs `pxe:manage` like writing them, and is audited (`pxe.config.read`):
they are the site's security settings (the approval policy). No route returns a join token:
the settings name the token a machine was handed by id and expiry only. The machine list and a
machine's reported inventory and enrolment state are for `node:read`. Naming a machine
(`PUT .../machines/{mac}`: its whole entry), changing some of its fields (`PATCH`, merge-patch:
absent fields kept, null clears) or forgetting it (`DELETE`) changes the per-MAC settings like
`PUT .../pxe`. Approving a machine that enrolled (`POST .../machines/{mac}/approve`,
optionally naming it) admits a member, and a member can act at the other nodes as any enabled
user (docs/security.md), so it is an admin's act (`cluster:manage`, like making a join token);
so is changing the approval policy (`approve_macs`, `approve_serials`, `approve_all`) in
`PUT .../pxe`. Refusing (`.../refuse`) is `pxe:manage`. Everything here is audited by the
access gate under the route's action. The boot files and the machines' reports are served
without credentials by `pxe.http` on the plain-HTTP listener; enrolment by `appliance.pxe.enrol_routes`.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, Response, Router, delete, get, patch, post, put
from litestar.handlers import HTTPRouteHandler
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, JSONBody

from appliance.api.forward import Forwarder
from appliance.api.openapi import problems, reads_body
from appliance.api.pernode import node_router
from appliance.api.problems import ApiError
from appliance.audit.context import note
from appliance.auth.permissions import Permission, requires
from appliance.auth.principal import Principal
from appliance.settings import SettingsError, validate_node_name
from pxe.dnsmasq import normalize_mac
from pxe.enlistment import EnlistedMachine, EnlistedMachineDetail
from pxe.enrol_service import EnrolmentService
from pxe.enrolment import EnrolmentError, EnrolmentView
from pxe.service import MachinePatch, MachinePut, MachineSettings, PxeError, PxeService, PxeSettings, PxeSettingsView

AnyRequest = Request[Principal, Any, Any]


def pxe_config_routes(service: PxeService, *, forwarder: Forwarder) -> Router:
    """A node's PXE settings and booted machines, through any node."""

    @get(
        "/{name:str}/pxe",
        opt=requires(Permission.PXE_MANAGE, action="pxe.config.read"),
        summary="A node's PXE boot server settings, with each machine's enrolment (never a token)",
        responses={200: ResponseSpec(PxeSettingsView)},
    )
    async def get_config(request: AnyRequest, name: FromPath[str]) -> Response[Any]:
        note(request, target=f"node {name}")
        return Response(service.settings_view(), headers={"cache-control": "no-store"})

    @put(
        "/{name:str}/pxe",
        opt=requires(Permission.PXE_MANAGE, action="pxe.config.put"),
        summary="Store and apply a node's PXE boot server settings (restarts dnsmasq if they changed)",
        responses={200: ResponseSpec(PxeSettingsView)},
    )
    async def put_config(request: AnyRequest, name: FromPath[str], data: JSONBody[PxeSettingsView]) -> Response[Any]:
        # What GET answers may be sent back as is: its read-only `enrolments` are ignored.
        fields = msgspec.structs.asdict(data)
        del fields["enrolments"]
        wanted = PxeSettings(**fields)
        if _policy_of(wanted) != _policy_of(service.settings()) and not request.user.can(Permission.CLUSTER_MANAGE):
            raise ApiError(
                403,
                "changing the approval policy (approve_macs, approve_serials, approve_all) admits members "
                f"without a person: it needs {Permission.CLUSTER_MANAGE} (an admin)",
            )
        try:
            stored = await service.put(wanted)
        except PxeError as exc:
            raise ApiError(422, f"invalid PXE settings: {exc}") from exc
        state = f"enabled on {stored.interface} ({stored.mode})" if stored.enabled else "disabled"
        policy = (
            "approve all"
            if stored.approve_all
            else f"{len(stored.approve_macs) + len(stored.approve_serials)} approved"
        )
        note(request, target=f"node {name}", detail=f"{state}, {len(stored.machines)} machines, {policy}")
        return Response(service.settings_view())

    @get(
        "/{name:str}/pxe/machines",
        opt=requires(Permission.NODE_READ),
        summary="Machines that fetched a boot script from a node, most recent first",
        responses={200: ResponseSpec(list[EnlistedMachine])},
    )
    async def machines(request: AnyRequest, name: FromPath[str]) -> Response[Any]:
        return Response(service.seen())

    @get(
        "/{name:str}/pxe/machines/{mac:str}",
        opt=requires(Permission.NODE_READ) | problems(404, 422),
        summary="One machine that booted from a node, with the inventory it reported",
        responses={200: ResponseSpec(EnlistedMachineDetail)},
    )
    async def machine(request: AnyRequest, name: FromPath[str], mac: FromPath[str]) -> Response[Any]:
        found = service.machine(_mac(mac))
        if found is None:
            raise ApiError(404, f"machine {mac} has not fetched a boot script from node {name}")
        return Response(found)

    @put(
        "/{name:str}/pxe/machines/{mac:str}",
        opt=requires(Permission.PXE_MANAGE, action="pxe.machine.put"),
        summary="Name a machine: store its boot settings (name, extra arguments, fixed IP)",
        responses={200: ResponseSpec(MachineSettings)},
    )
    async def put_machine(
        request: AnyRequest, name: FromPath[str], mac: FromPath[str], data: JSONBody[MachinePut]
    ) -> Response[Any]:
        try:
            stored = await service.put_machine(_mac(mac), data)
        except PxeError as exc:
            raise ApiError(422, f"invalid machine settings: {exc}") from exc
        note(request, target=f"node {name} machine {stored.mac}", detail=f"name {stored.name}")
        return Response(stored)

    @patch(
        "/{name:str}/pxe/machines/{mac:str}",
        opt=requires(Permission.PXE_MANAGE, action="pxe.machine.patch"),
        summary="Change some of a machine's boot settings: absent fields are kept, null clears one",
        responses={200: ResponseSpec(MachineSettings)},
    )
    async def patch_machine(
        request: AnyRequest, name: FromPath[str], mac: FromPath[str], data: JSONBody[MachinePatch]
    ) -> Response[Any]:
        try:
            stored = await service.patch_machine(_mac(mac), data)
        except PxeError as exc:
            raise ApiError(422, f"invalid machine settings: {exc}") from exc
        # Which fields changed, never their values: `extra` may carry anything an operator typed.
        changed = ", ".join(data.changed()) or "nothing"
        note(request, target=f"node {name} machine {stored.mac}", detail=f"changed {changed}; name {stored.name}")
        return Response(stored)

    @delete(
        "/{name:str}/pxe/machines/{mac:str}",
        opt=requires(Permission.PXE_MANAGE, action="pxe.machine.delete") | problems(404, 422),
        summary="Forget a machine: its record, its inventory and its boot settings",
        status_code=204,
    )
    async def forget_machine(request: AnyRequest, name: FromPath[str], mac: FromPath[str]) -> Response[None]:
        normalized = _mac(mac)
        try:
            forgotten = await service.forget(normalized)
        except PxeError as exc:
            raise ApiError(422, str(exc)) from exc
        if not forgotten:
            raise ApiError(404, f"node {name} knows no machine {normalized}")
        note(request, target=f"node {name} machine {normalized}")
        return Response(None, status_code=204)

    return node_router(
        "/api/v1/nodes",
        [
            get_config,
            put_config,
            machines,
            machine,
            put_machine,
            patch_machine,
            forget_machine,
            *_enrolment_handlers(service),
        ],
        forwarder=forwarder,
        tags=["pxe"],
    )


def _enrolment_handlers(service: PxeService) -> list[HTTPRouteHandler]:
    """Approve or refuse a machine that enrolled with its boot script's credential."""

    @post(
        "/{name:str}/pxe/machines/{mac:str}/approve",
        opt=requires(Permission.CLUSTER_MANAGE, action="pxe.machine.approve")
        | problems(400, 404, 409, 413, 422)
        | reads_body(Approval, required=False),
        summary="Approve a machine waiting to enrol (optionally naming it): its next poll gets a join token",
        responses={200: ResponseSpec(EnrolmentView)},
        status_code=200,
    )
    async def approve(request: AnyRequest, name: FromPath[str], mac: FromPath[str]) -> Response[Any]:
        enrolments, key = _enrolments(service), _mac(mac)
        given = _approval(await request.body()).name
        if given is not None:
            try:
                validate_node_name(given)
            except SettingsError as exc:
                raise ApiError(422, f"name: {exc}") from exc
        try:
            decided = enrolments.approve(key, request.user.name, given)
        except EnrolmentError as exc:
            raise ApiError(exc.status, str(exc)) from exc
        detail = f"approved to join as {decided.name}"
        if given is not None:  # remembered for its next boot too; the approval stands either way
            try:
                await service.name_machine(key, given)
            except PxeError as exc:
                detail += f" (the name was not stored in its settings: {exc})"
        note(request, target=f"node {name} machine {key}", detail=detail)
        return Response(decided)

    @post(
        "/{name:str}/pxe/machines/{mac:str}/refuse",
        opt=requires(Permission.PXE_MANAGE, action="pxe.machine.refuse") | problems(404, 422),
        summary="Refuse a machine's enrolment: it stays refused until it is forgotten",
        responses={200: ResponseSpec(EnrolmentView)},
        status_code=200,
    )
    async def refuse(request: AnyRequest, name: FromPath[str], mac: FromPath[str]) -> Response[Any]:
        key = _mac(mac)
        decided = _enrolments(service).refuse(key, request.user.name)
        note(request, target=f"node {name} machine {key}", detail="refused")
        return Response(decided)

    return [approve, refuse]


class Approval(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The optional body of `POST .../approve`: the node name the machine joins under (stored in
    its settings; default: the name there, else pxe-<its MAC>)."""

    name: str | None = None


def _approval(body: bytes) -> Approval:
    """The optional approval body (empty: no name given)."""
    if not body.strip():
        return Approval()
    try:
        return msgspec.json.decode(body, type=Approval)
    except msgspec.ValidationError as exc:
        raise ApiError(422, f"invalid approval: {str(exc)[:200]}") from exc
    except msgspec.DecodeError as exc:
        raise ApiError(400, f"the body is not valid JSON: {str(exc)[:200]}") from exc


def _enrolments(service: PxeService) -> EnrolmentService:
    if service.enrolments is None:
        raise ApiError(404, "this node does not take enrolments")
    return service.enrolments


def _mac(text: str) -> str:
    """A MAC from the path, normalized; 422 if it is none."""
    try:
        return normalize_mac(text)
    except ValueError as exc:
        raise ApiError(422, str(exc)) from exc


def _policy_of(config: PxeSettings) -> tuple[frozenset[str], frozenset[str], bool]:
    """The approval policy as stored (MACs normalised), to tell whether a PUT changes it."""
    macs = set()
    for mac in config.approve_macs:
        try:
            macs.add(normalize_mac(mac))
        except ValueError:
            macs.add(mac)  # invalid: a change (PxeService.put then says why, to those who may make it)
    return frozenset(macs), frozenset(config.approve_serials), config.approve_all
