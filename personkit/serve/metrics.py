"""The service's Prometheus metrics (``GET /metrics``), in a registry of its own."""

from __future__ import annotations

import time
from typing import Any

from personkit.extras import require


class ServiceMetrics:
    """Requests by route and status, their latency, the sizes of the batches run, the people
    predicted."""

    def __init__(self) -> None:
        prom = require("prometheus_client")
        self.registry = prom.CollectorRegistry()
        self.requests = prom.Counter("personkit_requests", "HTTP requests", ["route", "status"],
                                     registry=self.registry)
        self.latency = prom.Histogram("personkit_request_seconds", "request latency",
                                      ["route"], registry=self.registry,
                                      buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5,
                                               5, 10))
        self.batch_size = prom.Histogram("personkit_batch_size", "requests per forward batch",
                                         registry=self.registry,
                                         buckets=(1, 2, 4, 8, 16, 32, 64))
        self.people = prom.Counter("personkit_people", "people predicted",
                                   registry=self.registry)
        self.refused = prom.Counter("personkit_refused", "requests refused because the server "
                                    "was busy (503)", ["route"], registry=self.registry)
        self.in_work = prom.Gauge("personkit_requests_in_work", "requests being worked on",
                                  registry=self.registry)
        self.waiting = prom.Gauge("personkit_requests_waiting", "requests waiting for a slot",
                                  registry=self.registry)

    def refuse(self, route: str) -> None:
        self.refused.labels(route).inc()

    def observe(self, route: str, status: int, seconds: float) -> None:
        self.requests.labels(route, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        prom = require("prometheus_client")
        return prom.generate_latest(self.registry), prom.CONTENT_TYPE_LATEST


class CountRequests:
    """ASGI middleware (the outermost): every request's route, status and latency into
    ``metrics``, those answered by the limits' middleware too. The route is the matched path
    template (``/tracks/{entry_id}``), else the path for the service's own POST routes, else
    ``other`` (the label set stays bounded)."""

    def __init__(self, app: Any, metrics: ServiceMetrics, routes: tuple[str, ...]):
        self.app, self.metrics, self.routes = app, metrics, routes

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start, status = time.perf_counter(), 500

        async def send_status(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = getattr(scope.get("route"), "path", None) or (
                scope["path"] if scope["path"] in self.routes else "other")
            self.metrics.observe(route, status, time.perf_counter() - start)
