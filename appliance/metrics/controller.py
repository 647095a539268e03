"""`/metrics`: the Prometheus text exposition of this node's registry."""

from __future__ import annotations

from litestar import Response, Router, get
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from appliance.auth.permissions import Permission, requires


def metrics_routes(registry: CollectorRegistry) -> Router:
    @get("/metrics", opt=requires(Permission.METRICS_READ), summary="Prometheus metrics", media_type="text/plain")
    async def metrics() -> Response[bytes]:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return Router("/", route_handlers=[metrics], tags=["metrics"])
