"""The service's Prometheus metrics (``GET /metrics``), in a registry of its own."""

from __future__ import annotations

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

    def observe(self, route: str, status: int, seconds: float) -> None:
        self.requests.labels(route, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        prom = require("prometheus_client")
        return prom.generate_latest(self.registry), prom.CONTENT_TYPE_LATEST
