"""`/metrics`: the Prometheus text exposition of this node's registry, and the target list.

Metrics are per node: each node exports its own registry. So that one Prometheus scrape
configuration covers the whole cluster however it grows, `GET /api/v1/metrics/targets`
answers in the shape of Prometheus's HTTP service discovery (`http_sd_configs`): one target
group per live member (alive or suspect), its API address and its name as the `node` label.
Members that are dead or have left are not listed, so Prometheus stops scraping them.

Both routes need `metrics:read`, and their reads spend a rate-limit bucket of their own
(appliance/auth/access.py), so scraping never competes with the user's other requests.
"""

from __future__ import annotations

from collections.abc import Callable

import msgspec
from litestar import Response, Router, get
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from appliance.auth.permissions import Permission, requires
from appliance.cluster.service import NodeMember

LIVE_STATES = frozenset({"alive", "suspect"})


class TargetGroup(msgspec.Struct, frozen=True):
    """One entry of a Prometheus HTTP service discovery answer."""

    targets: list[str]
    labels: dict[str, str]


def target_groups(members: list[NodeMember]) -> list[TargetGroup]:
    """The scrape targets: live members that announced an API address, one group each."""
    return [
        TargetGroup(targets=[m.api_address], labels={"node": m.name})
        for m in sorted(members, key=lambda m: m.name)
        if m.state in LIVE_STATES and m.api_address
    ]


def metrics_routes(registry: CollectorRegistry, members: Callable[[], list[NodeMember]]) -> Router:
    @get("/metrics", opt=requires(Permission.METRICS_READ), summary="Prometheus metrics", media_type="text/plain")
    async def metrics() -> Response[bytes]:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @get(
        "/api/v1/metrics/targets",
        opt=requires(Permission.METRICS_READ),
        summary="Every live member's /metrics address, for Prometheus http_sd_configs",
    )
    async def targets() -> list[TargetGroup]:
        return target_groups(members())

    return Router("/", route_handlers=[metrics, targets], tags=["metrics"])
