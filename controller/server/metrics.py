"""The server's own metrics: requests by route and code, and their latency."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class ServerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.requests = Counter("qforge_http_requests_total", "HTTP requests answered",
                                ["method", "route", "code"], registry=self.registry)
        self.latency = Histogram("qforge_http_request_duration_seconds",
                                 "time to the response's start, by route",
                                 ["method", "route"], buckets=LATENCY_BUCKETS,
                                 registry=self.registry)

    def observe(self, method: str, route: str, code: int, seconds: float) -> None:
        self.requests.labels(method, route, str(code)).inc()
        self.latency.labels(method, route).observe(seconds)
