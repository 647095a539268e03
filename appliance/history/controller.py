"""`GET /api/v1/nodes/{name}/history`: a node's resource history, through any node.

The route is on a per-node router (appliance/api/pernode.py): asked for another node, the
request is forwarded there and that node answers from its own archives. Reading needs
`node:read`, like the node's status. A metric or range the API does not know is a 422
problem naming the parameter.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

from litestar import Response, Router, get
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import Parameter

from appliance.api.forward import Forwarder
from appliance.api.pernode import node_router
from appliance.api.problems import ApiError, FieldError
from appliance.auth.permissions import Permission, requires
from appliance.history.sampler import METRICS
from appliance.history.types import History

Range = Literal["1h", "1d", "1w"]


def parse_metrics(text: str) -> list[str]:
    """The metric names of a `metrics=` parameter (comma-separated), in the order given."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in METRICS]
    if unknown or not names:
        known = ", ".join(METRICS)
        what = f"unknown metric {', '.join(repr(n) for n in unknown)}" if unknown else "no metric named"
        raise ApiError(422, f"{what}; known: {known}", errors=[FieldError("query:metrics", f"one or more of {known}")])
    return list(dict.fromkeys(names))


def history_routes(answer: Callable[[str, list[str]], History], *, forwarder: Forwarder) -> Router:
    """`answer(range, metrics)` is this node's history (the subsystem's store)."""

    @get(
        "/{name:str}/history",
        opt=requires(Permission.NODE_READ),
        summary="A node's CPU, memory, network and disk I/O over the last hour, day or week",
        responses={200: ResponseSpec(History)},
    )
    async def get_history(
        metrics: Annotated[
            str, Parameter(description="comma-separated: cpu, memory, net, disk (default: all)")
        ] = "cpu,memory,net,disk",
        range: Annotated[  # the query parameter's name: Litestar reports errors by it
            Range, Parameter(description="1h: 5 s buckets; 1d: 1 min; 1w: 10 min")
        ] = "1h",
    ) -> Response[Any]:
        return Response(answer(range, parse_metrics(metrics)))

    return node_router("/api/v1/nodes", [get_history], forwarder=forwarder, tags=["history"])
