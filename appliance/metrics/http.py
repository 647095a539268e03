"""HTTP metrics as an ASGI wrapper around the whole app.

It sits outside Litestar so that it also counts requests Litestar answers before any route
runs (404, 405, 413). Routes are labelled by their template (`/api/v1/nodes/{name}`), never
by the raw path, and methods outside the standard set share one label, so label cardinality
stays bounded. The counts live in plain Python structures updated without locks (the event
loop is single-threaded) and become Prometheus families only when `/metrics` is scraped:
prometheus_client's own metric objects take a lock per update, which showed as several
microseconds per request on the hot path.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Iterator

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

UNMATCHED = "<unmatched>"
# Clients choose the method string; label only known ones so a client cannot mint series.
_KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_LABELS = ("route", "method", "status")


class _Series:
    """Count, sum and per-bucket counts (not cumulative) of one label combination."""

    __slots__ = ("buckets", "count", "total")

    def __init__(self) -> None:
        self.count = 0
        self.total = 0.0
        self.buckets = [0] * (len(BUCKETS) + 1)


class HttpMetrics(Collector):
    """Request count, latency histogram and in-flight gauge, exposed as a Prometheus collector."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.in_flight = 0
        self._series: dict[tuple[str, str, str], _Series] = {}
        registry.register(self)

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method if method in _KNOWN_METHODS else "OTHER", str(status))
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = _Series()
        series.count += 1
        series.total += seconds
        series.buckets[bisect.bisect_left(BUCKETS, seconds)] += 1

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "debvisor_http_requests", "HTTP requests answered, by route template, method and status", labels=_LABELS
        )
        latency = HistogramMetricFamily(
            "debvisor_http_request_duration_seconds",
            "Time from request start to the last byte of the response",
            labels=_LABELS,
        )
        for key, series in sorted(self._series.items()):
            requests.add_metric(list(key), series.count)
            cumulative, buckets = 0, []
            for bound, count in zip((*map(str, BUCKETS), "+Inf"), series.buckets, strict=True):
                cumulative += count
                buckets.append((bound, cumulative))
            latency.add_metric(list(key), buckets, series.total)
        yield requests
        yield latency
        yield GaugeMetricFamily("debvisor_http_requests_in_flight", "HTTP requests being served now", self.in_flight)

    def describe(self) -> Iterator[Metric]:
        return iter(())


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

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self._app(scope, receive, send)
            return
        status = 500
        start = time.perf_counter()

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        metrics = self._metrics
        metrics.in_flight += 1
        try:
            await self._app(scope, receive, send_wrapper)
        finally:
            metrics.in_flight -= 1
            metrics.observe(
                scope.get("path_template") or UNMATCHED, scope["method"], status, time.perf_counter() - start
            )
