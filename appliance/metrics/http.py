"""HTTP metrics as an ASGI wrapper around the whole app.

It sits outside Litestar so that it also counts requests Litestar answers before any route
runs (404, 405, 413). Routes are labelled by their template (`/api/v1/nodes/{name}`), never
by the raw path, so that label cardinality stays bounded; unmatched paths share one label.
Each app gets its own registry, which keeps tests that build several apps independent.
"""

from __future__ import annotations

import time

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.process_collector import ProcessCollector

UNMATCHED = "<unmatched>"
# Clients choose the method string; label only known ones so a client cannot mint series.
_KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class HttpMetrics:
    """The metric families the wrapper updates, registered in one registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "debvisor_http_requests_total",
            "HTTP requests answered, by route template, method and status",
            ("route", "method", "status"),
            registry=registry,
        )
        self.latency = Histogram(
            "debvisor_http_request_duration_seconds",
            "Time from request start to the last byte of the response",
            ("route", "method", "status"),
            buckets=_BUCKETS,
            registry=registry,
        )
        self.in_flight = Gauge("debvisor_http_requests_in_flight", "HTTP requests being served now", registry=registry)


def new_registry() -> CollectorRegistry:
    """A registry with process metrics (CPU, memory, file descriptors) already in it."""
    registry = CollectorRegistry(auto_describe=True)
    ProcessCollector(registry=registry)
    return registry


class MetricsMiddleware:
    """ASGI wrapper recording count, latency and in-flight requests for HTTP scopes."""

    def __init__(self, app: ASGIApp, metrics: HttpMetrics) -> None:
        self._app = app
        self._metrics = metrics
        # Labelled children looked up once per (route, method, status): `labels()` takes a lock
        # and builds a key on every call, which showed up at several microseconds per request.
        self._children: dict[tuple[str, str, str], tuple[Counter, Histogram]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self._app(scope, receive, send)
            return
        http_scope = scope
        status = 500
        start = time.perf_counter()

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        self._metrics.in_flight.inc()
        try:
            await self._app(scope, receive, send_wrapper)
        finally:
            self._metrics.in_flight.dec()
            route = http_scope.get("path_template") or UNMATCHED
            method = http_scope["method"]
            labels = (route, method if method in _KNOWN_METHODS else "OTHER", str(status))
            children = self._children.get(labels)
            if children is None:
                children = (self._metrics.requests.labels(*labels), self._metrics.latency.labels(*labels))
                self._children[labels] = children
            children[0].inc()
            children[1].observe(time.perf_counter() - start)
