"""`/metrics`: the Prometheus text exposition of this node's registry."""

from __future__ import annotations

from litestar import Controller, Response, get
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from appliance.auth.permissions import Permission, requires


class MetricsController(Controller):
    tags = ("metrics",)

    @get(
        "/metrics",
        opt=requires(Permission.METRICS_READ),
        summary="Prometheus metrics",
        media_type="text/plain",
    )
    async def metrics(self, metrics_registry: CollectorRegistry) -> Response[bytes]:
        return Response(generate_latest(metrics_registry), media_type=CONTENT_TYPE_LATEST)
