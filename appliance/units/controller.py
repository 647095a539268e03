"""`/api/v1/nodes/{name}/units...`, `.../unit-files`, `.../timers`: a node's systemd units,
through any node.

Per-node routes on `node_router` (appliance/api/pernode.py): a request about another node is
replayed there with the caller's identity, so the handler runs on the node whose systemd it
asks. The access gate audits every action on both nodes (the one asked, and the one acting);
the acting node's entry names the unit and what happened. Reading needs `units:read`, acting
`units:manage`, and `force` on a protected unit `units:force` (admins).
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Request, Response, Router, get, post
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, Parameter, QueryParameter

from appliance.api.forward import Forwarder
from appliance.api.openapi import problems, reads_body
from appliance.api.pernode import node_router
from appliance.api.problems import ApiError
from appliance.audit.context import note
from appliance.auth.permissions import Permission, requires
from appliance.auth.principal import Principal
from appliance.units.listing import FilterError, UnitFilter
from appliance.units.service import UnitService
from appliance.units.types import Timer, Unit, UnitAction, UnitActionPost, UnitActionResult, UnitDetails, UnitFile

AnyRequest = Request[Principal, Any, Any]
_ALTERNATIVES = "comma-separated alternatives"
_TYPES = f"unit types ({_ALTERNATIVES}): service,timer"
_FILE_STATES = f"unit-file states ({_ALTERNATIVES}): enabled,masked"
TypeQuery = Annotated[str | None, QueryParameter(name="type", description=_TYPES)]
LoadQuery = Annotated[str | None, Parameter(description=f"load states ({_ALTERNATIVES}): loaded,not-found")]
ActiveQuery = Annotated[str | None, Parameter(description=f"active states ({_ALTERNATIVES}): active,failed")]
SubQuery = Annotated[str | None, Parameter(description=f"sub states ({_ALTERNATIVES}): running,exited")]
StateQuery = Annotated[str | None, QueryParameter(name="state", description=_FILE_STATES)]
PatternQuery = Annotated[str | None, Parameter(description="a shell glob on the unit name: ssh*, *@*.service")]
ACTIONS = ", ".join(a.value for a in UnitAction)


def _filter(**values: str | None) -> UnitFilter:
    try:
        return UnitFilter.parse(**values)
    except FilterError as exc:
        raise ApiError(422, str(exc)) from exc


def _action_body(body: bytes) -> UnitActionPost:
    """The optional body of an action (empty: the defaults)."""
    if not body.strip():
        return UnitActionPost()
    try:
        return msgspec.json.decode(body, type=UnitActionPost)
    except msgspec.ValidationError as exc:
        raise ApiError(422, f"invalid action body: {str(exc)[:200]}") from exc
    except msgspec.DecodeError as exc:
        raise ApiError(400, f"the body is not valid JSON: {str(exc)[:200]}") from exc


def unit_routes(service: UnitService, *, forwarder: Forwarder) -> Router:
    """A node's units, unit files and timers, and the actions on units."""
    read = requires(Permission.UNITS_READ) | problems(503)

    @get(
        "/{name:str}/units",
        opt=read,
        summary="A node's loaded units (systemctl list-units --all), filtered",
        responses={200: ResponseSpec(list[Unit])},
    )
    async def list_units(
        kind: TypeQuery = None,
        load: LoadQuery = None,
        active: ActiveQuery = None,
        sub: SubQuery = None,
        pattern: PatternQuery = None,
    ) -> Response[Any]:
        keep = _filter(types=kind, load=load, active=active, sub=sub, pattern=pattern)
        return Response(await service.units(keep))

    @get(
        "/{name:str}/units/{unit:str}",
        opt=read | problems(404, 422),
        summary="One unit in detail: states, since, main PID, memory, CPU, tasks, restarts, dependencies",
        responses={200: ResponseSpec(UnitDetails)},
    )
    async def show_unit(unit: FromPath[str]) -> Response[Any]:
        return Response(await service.details(unit))

    @post(
        "/{name:str}/units/{unit:str}/{action:str}",
        opt=requires(Permission.UNITS_MANAGE, action="units.action")
        | problems(400, 404, 409, 413, 422, 503)
        | reads_body(UnitActionPost, required=False),
        status_code=200,
        summary=f"Act on a unit ({ACTIONS}); jobs are waited for and their result answered",
        description="200 once systemd's job ended (its result in job_result: done, failed, timeout, canceled, "
        "dependency, skipped) or the action needed no job; 202 when the job was still running after a few "
        "seconds (job_result running). Protected units (the appliance, D-Bus, the journal, udev, an active "
        "systemd-networkd) refuse stop, kill, disable and mask with 409 unless an admin passes force.",
        responses={200: ResponseSpec(UnitActionResult), 202: ResponseSpec(UnitActionResult)},
    )
    async def act(
        request: AnyRequest,
        name: FromPath[str],
        unit: FromPath[str],
        action: FromPath[str],
    ) -> Response[Any]:
        body = _action_body(await request.body())
        forced = " with force" if body.force else ""
        note(request, target=f"node {name} unit {unit}", detail=f"{action}{forced}")
        try:
            chosen = UnitAction(action)
        except ValueError:
            raise ApiError(422, f"action: one of {ACTIONS}, not {action!r}") from None
        result = await service.act(unit, chosen, body, may_force=request.user.can(Permission.UNITS_FORCE))
        job = f": job {result.job_result}" if result.job_result else ""
        note(request, detail=f"{action}{forced}{job}; now {result.active_state} ({result.sub_state})")
        return Response(result, status_code=202 if result.job_result == "running" else 200)

    @get(
        "/{name:str}/unit-files",
        opt=read,
        summary="A node's unit files and their enablement (systemctl list-unit-files), filtered",
        responses={200: ResponseSpec(list[UnitFile])},
    )
    async def list_unit_files(
        kind: TypeQuery = None, file_state: StateQuery = None, pattern: PatternQuery = None
    ) -> Response[Any]:
        return Response(await service.unit_files(_filter(types=kind, states=file_state, pattern=pattern)))

    @get(
        "/{name:str}/timers",
        opt=read,
        summary="A node's loaded timers with their last and next elapse (systemctl list-timers --all)",
        responses={200: ResponseSpec(list[Timer])},
    )
    async def list_timers(pattern: PatternQuery = None) -> Response[Any]:
        return Response(await service.timers(_filter(pattern=pattern)))

    return node_router(
        "/api/v1/nodes",
        [list_units, show_unit, act, list_unit_files, list_timers],
        forwarder=forwarder,
        tags=["units"],
    )
