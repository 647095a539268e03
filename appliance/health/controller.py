"""`/healthz` (the process answers) and `/readyz` (every subsystem is ready); no auth."""

from __future__ import annotations

import msgspec
from litestar import Response, Router, get
from litestar.openapi.datastructures import ResponseSpec

from appliance.auth.permissions import PUBLIC
from appliance.health.readiness import Readiness, ReadinessReport


class Alive(msgspec.Struct, frozen=True):
    status: str = "ok"


def health_routes(readiness: Readiness) -> Router:
    """Probes for supervisors and load balancers."""

    @get("/healthz", opt=PUBLIC, summary="Liveness: the process is up and answering")
    async def healthz() -> Alive:
        return Alive()

    @get(
        "/readyz",
        opt=PUBLIC,
        summary="Readiness of each subsystem; 503 until all are ready",
        responses={503: ResponseSpec(ReadinessReport, description="a subsystem is not ready")},
    )
    async def readyz() -> Response[ReadinessReport]:
        report = readiness.report()
        return Response(report, status_code=200 if report.ready else 503)

    return Router("/", route_handlers=[healthz, readyz], tags=["health"])
