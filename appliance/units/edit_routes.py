"""`/api/v1/nodes/{name}/units/{unit}/file` and `.../units/transient`: unit files and one-off runs.

Admin only, every one: a unit file runs as root and may hold secrets (`unitfiles:edit`, which
reading needs too, audited as `unitfile.read`), and a transient unit is a root command on the
node (`units:run`). Writing (`PUT`) creates or replaces a service or timer, or one drop-in
with `dropin`; `DELETE` reverts (removes our file, `?dropin=` names a drop-in). Each change's
audit entry carries its unified diff with secrets redacted (appliance/units/unitfile_content.py),
clipped to the audit log's field size; the answer carries the whole diff. Refusals are
problem+json: 422 with `errors` (`$.content`, `$.dropin`, `$.name` ...) for bad input or
content systemd refuses, 409 for a shipped unit written whole or a run still going, 404 for
no such unit, 503 when the bus or `systemd-analyze` is missing. The handlers are exported
as a list so the units subsystem can put them on its own per-node router.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, Response, delete, get, post, put
from litestar.handlers import HTTPRouteHandler
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, FromQuery, JSONBody

from appliance.api.openapi import problems
from appliance.api.problems import ApiError, FieldError
from appliance.audit.context import note
from appliance.auth.permissions import Permission, requires
from appliance.auth.principal import Principal
from appliance.units.bus import BusError, BusUnavailable
from appliance.units.transient import TransientError, TransientResult, TransientRun, TransientRunner
from appliance.units.unitfiles import UnitFileChange, UnitFileError, UnitFiles, UnitFileView

AnyRequest = Request[Principal, Any, Any]


class UnitFilePut(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A unit's whole file (`dropin` null) or one drop-in of it (`dropin`: its name, `.conf` optional)."""

    content: str
    dropin: str | None = None


def unit_file_handlers(files: UnitFiles, runner: TransientRunner) -> list[HTTPRouteHandler]:
    """The per-node handlers (paths start at `/{name}`), for a router made by `node_router`."""

    @get(
        "/{name:str}/units/{unit:str}/file",
        opt=requires(Permission.UNIT_FILES_EDIT, action="unitfile.read") | problems(404, 422),
        summary="A unit's file as systemd finds it, with its drop-ins (admin: unit files may hold secrets)",
        responses={200: ResponseSpec(UnitFileView)},
    )
    async def read_file(request: AnyRequest, name: FromPath[str], unit: FromPath[str]) -> Response[Any]:
        note(request, target=f"node {name} unit {unit}")
        try:
            view = files.read(unit)
        except UnitFileError as exc:
            raise _problem(exc) from exc
        return Response(view, headers={"cache-control": "no-store"})

    @put(
        "/{name:str}/units/{unit:str}/file",
        opt=requires(Permission.UNIT_FILES_EDIT, action="unitfile.write") | problems(404, 409, 422, 503),
        summary="Create or replace a service or timer, or one drop-in: verified, written atomically, "
        "reverted if the reload fails",
        responses={200: ResponseSpec(UnitFileChange)},
    )
    async def write_file(
        request: AnyRequest, name: FromPath[str], unit: FromPath[str], data: JSONBody[UnitFilePut]
    ) -> Response[Any]:
        note(request, target=f"node {name} unit {unit}")
        try:
            change = await files.write(unit, data.content, data.dropin)
        except (UnitFileError, BusUnavailable, BusError) as exc:
            raise _problem(exc) from exc
        note(request, detail=_detail(change))
        return Response(change)

    @delete(
        "/{name:str}/units/{unit:str}/file",
        opt=requires(Permission.UNIT_FILES_EDIT, action="unitfile.revert") | problems(404, 409, 422, 503),
        summary="Revert: remove the unit's file of ours (or the drop-in named by `dropin`) and reload",
        responses={200: ResponseSpec(UnitFileChange)},
        status_code=200,
    )
    async def revert_file(
        request: AnyRequest, name: FromPath[str], unit: FromPath[str], dropin: FromQuery[str | None] = None
    ) -> Response[Any]:
        note(request, target=f"node {name} unit {unit}")
        try:
            change = await files.revert(unit, dropin)
        except (UnitFileError, BusUnavailable, BusError) as exc:
            raise _problem(exc) from exc
        note(request, detail=_detail(change))
        return Response(change)

    @post(
        "/{name:str}/units/transient",
        opt=requires(Permission.UNITS_RUN, action="unit.run") | problems(409, 422, 503),
        summary="Run a one-off command as debvisor-run-NAME.service, now (waiting for its job) or by a timer",
        responses={200: ResponseSpec(TransientResult)},
        status_code=200,
    )
    async def run_transient(request: AnyRequest, name: FromPath[str], data: JSONBody[TransientRun]) -> Response[Any]:
        note(request, target=f"node {name} run {data.name}", detail=" ".join(data.command))
        try:
            result = await runner.run(data)
        except TransientError as exc:
            errors = [FieldError(exc.path, str(exc))] if exc.path else None
            raise ApiError(exc.status, str(exc), errors=errors) from exc
        except (BusUnavailable, BusError) as exc:
            raise _problem(exc) from exc
        exit_status = "" if result.exit_status is None else f" exit {result.exit_status}"
        note(request, detail=f"{result.job}{exit_status}: {' '.join(data.command)}")
        return Response(result)

    return [read_file, write_file, revert_file, run_transient]


def _detail(change: UnitFileChange) -> str:
    """The audit detail: what happened to which file, then the (redacted) diff."""
    return f"{change.action} {change.path}\n{change.diff}".rstrip()


def _problem(exc: Exception) -> ApiError:
    if isinstance(exc, UnitFileError):
        errors = [FieldError(path, message) for path, message in exc.errors] or None
        return ApiError(exc.status, str(exc), errors=errors)
    if isinstance(exc, BusUnavailable):
        return ApiError(503, f"systemd cannot be reached: {exc}")
    if isinstance(exc, BusError):
        return ApiError(500, f"systemd answered {exc.name}: {exc}")
    raise exc
