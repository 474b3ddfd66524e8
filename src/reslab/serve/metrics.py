"""The server's Prometheus metrics, in a registry of their own (one per app)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Routes are a fixed set of labels: an unknown path counts as "other", so a scan cannot grow the metrics.
ROUTES = ("/", "/favicon.ico", "/healthz", "/readyz", "/metrics", "/v1/predict", "/v1/explain")
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def route_label(path: str) -> str:
    return path if path in ROUTES else "other"


class ServeMetrics:
    """requests by route and status, predict latency, batch sizes, queue depth, skipped images."""

    def __init__(self, *, max_batch: int, queue_depth: Callable[[], int], in_flight: Callable[[], int]) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("reslab_http_requests", "HTTP requests answered, by route and status code",
                                ("route", "status"), registry=self.registry)
        self.latency = Histogram("reslab_predict_latency_seconds", "time from request to response of /v1/predict",
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        sizes = sorted({1, 2, 4, 8, 16, 32, 64, 128, 256, max_batch})
        self.batch_size = Histogram("reslab_batch_size", "images per forward pass", buckets=[s for s in sizes
                                    if s <= max_batch], registry=self.registry)
        self.skipped = Counter("reslab_skipped_images", "images not run because their client disconnected first",
                               registry=self.registry)
        Gauge("reslab_queue_depth", "images waiting for a forward pass",
              registry=self.registry).set_function(queue_depth)
        Gauge("reslab_requests_in_flight", "predict requests admitted and not yet answered",
              registry=self.registry).set_function(in_flight)
