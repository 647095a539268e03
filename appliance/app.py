"""Assemble the appliance's HTTP application: the one place that lists every part.

`create_app` takes the node's opened state and the adapters it should drive, builds the
services, and wires controllers, guards, error handlers, OpenAPI and metrics. Nothing
registers itself by being imported; to find what the API serves, read this file.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from litestar import Litestar, Router
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin
from litestar.types import ASGIApp
from prometheus_client import CollectorRegistry

from appliance import __version__
from appliance.api.docs_page import ApiDocsController
from appliance.api.problems import EXCEPTION_HANDLERS
from appliance.auth.access import AccessMiddleware
from appliance.auth.permissions import Permission, requires
from appliance.bootstrap import OpenedNode
from appliance.health.controller import health_routes
from appliance.health.readiness import Readiness
from appliance.metrics.controller import metrics_routes
from appliance.metrics.http import HttpMetrics, MetricsMiddleware, new_registry
from appliance.node.controller import node_routes
from appliance.node.host import HostProbe
from appliance.node.service import NodeService

API_ROOT = "/api/v1"
MAX_BODY_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Appliance:
    """The assembled app: the ASGI callable to serve, and the parts tests and the server reach."""

    asgi: ASGIApp
    litestar: Litestar
    readiness: Readiness
    registry: CollectorRegistry
    node_service: NodeService


def create_app(node: OpenedNode, *, host: HostProbe) -> Appliance:
    """Build the appliance for an opened node, driving the host through `host`."""
    readiness = Readiness()
    for subsystem in ("database", "identity", "api"):
        readiness.register(subsystem)
    readiness.set("database", True, f"schema version {node.db.version}")
    readiness.set("identity", True, f"CA {node.identity.ca_fingerprint[:16]}")

    registry = new_registry()
    node_service = NodeService(
        db=node.db,
        host=host,
        name=node.name,
        node_id=node.node_id,
        cluster_id=node.cluster_id,
        version=__version__,
        data_dir=node.datadir.root,
    )

    @asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        readiness.set("api", True, "serving")
        try:
            yield
        finally:
            readiness.set("api", False, "stopping")

    openapi = OpenAPIConfig(
        title="DebVisor",
        version=__version__,
        description="Cluster-wide REST API of a DebVisor node. Every node serves the whole API.",
        # The router's own path is the document's URL: Litestar adds a catch-all 404 page below
        # its router, which must not shadow the API's problem+json 404s under /api/v1.
        render_plugins=[JsonRenderPlugin(path="/")],
        openapi_router=Router(
            path=f"{API_ROOT}/openapi.json",
            route_handlers=[],
            include_in_schema=False,
            opt=requires(Permission.API_DOCS_READ),
        ),
    )
    litestar = Litestar(
        route_handlers=[
            health_routes(readiness),
            metrics_routes(registry),
            ApiDocsController,
            node_routes(node_service),
        ],
        middleware=[AccessMiddleware],
        exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
        openapi_config=openapi,
        request_max_body_size=MAX_BODY_BYTES,
        lifespan=[lifespan],
        logging_config=None,
        debug=False,
    )
    asgi = MetricsMiddleware(litestar, HttpMetrics(registry))
    return Appliance(asgi, litestar, readiness, registry, node_service)
