"""Prometheus metrics of one app, in its own registry (the process-wide default registry is left alone)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class ServeMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("stepwise_requests", "HTTP requests by endpoint and status", ["endpoint", "status"],
                                registry=r)
        self.errors = Counter("stepwise_errors", "HTTP responses with status 400 or above, by status", ["status"],
                              registry=r)
        self.latency = Histogram("stepwise_request_latency_seconds", "request latency, arrival to response",
                                 ["endpoint"], buckets=LATENCY_BUCKETS, registry=r)
        self.batch_items = Histogram("stepwise_batch_items", "items per forward batch", buckets=SIZE_BUCKETS,
                                     registry=r)
        self.batch_requests = Histogram("stepwise_batch_requests", "requests merged into one forward batch",
                                        buckets=SIZE_BUCKETS, registry=r)
        self.inference = Histogram("stepwise_inference_seconds", "time of one batch's prediction",
                                   buckets=LATENCY_BUCKETS, registry=r)
        self.queue_depth = Gauge("stepwise_queue_depth", "items waiting for a batch", registry=r)
        self.items = Counter("stepwise_items", "items predicted", registry=r)

    def observe(self, endpoint: str, status: int, seconds: float) -> None:
        self.requests.labels(endpoint, str(status)).inc()
        self.latency.labels(endpoint).observe(seconds)
        if status >= 400:
            self.errors.labels(str(status)).inc()

    def text(self) -> bytes:
        return generate_latest(self.registry)
