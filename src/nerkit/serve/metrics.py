"""The server's Prometheus metrics, through prometheus_client: request counts and latency, texts tagged,
model calls and their batch sizes, the queue and what it shed, and the process's RSS and file descriptors.

Each app has its own registry (not the library's global one), so several apps in one process (tests) do
not share counts."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from .batcher import MicroBatcher

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"  # the text format generate_latest writes

disable_created_metrics()  # the *_created series only double the page; nothing here reads them


class _BatcherCollector(Collector):
    """Reads the batcher's counters at scrape time, so the model thread never touches the registry."""

    def __init__(self, batcher: MicroBatcher):
        self.batcher = batcher

    def collect(self):
        b = self.batcher
        yield CounterMetricFamily("nerkit_model_calls", "Calls of Tagger.pipe (one per micro-batch).",
                                  value=b.model_calls)
        yield CounterMetricFamily("nerkit_model_texts", "Texts sent to Tagger.pipe.", value=b.model_texts)
        yield CounterMetricFamily("nerkit_model_seconds", "Time spent in Tagger.pipe.", value=b.model_seconds)
        yield GaugeMetricFamily("nerkit_queue_texts", "Texts admitted and waiting for the model.",
                                value=b.waiting_texts)
        yield GaugeMetricFamily("nerkit_queue_requests", "Requests admitted and waiting for the model.",
                                value=b.waiting_jobs)
        yield CounterMetricFamily("nerkit_shed", "Requests answered 503 at once because the queue was full.",
                                  value=b.shed)
        yield CounterMetricFamily("nerkit_abandoned", "Admitted requests dropped before their model call "
                                                      "(the client left or timed out).", value=b.abandoned)


class Metrics:
    """The registry of one app; `observe` is called once per HTTP request by the guard middleware."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("nerkit_http_requests", "HTTP requests by method, route and status.",
                                ["method", "path", "status"], registry=self.registry)
        self.latency = Histogram("nerkit_http_request_duration_seconds", "Time from request start to response end.",
                                 ["method", "path"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.texts = Counter("nerkit_texts", "Texts tagged.", registry=self.registry)
        self.batch = Histogram("nerkit_model_batch_texts", "Texts per model call.", buckets=BATCH_BUCKETS,
                               registry=self.registry)
        ProcessCollector(registry=self.registry)  # RSS, CPU seconds, open and max file descriptors
        PlatformCollector(registry=self.registry)
        self._batcher = False

    def watch(self, batcher: MicroBatcher) -> None:
        """Expose the batcher's counters (once)."""
        if not self._batcher:
            self.registry.register(_BatcherCollector(batcher))
            self._batcher = True

    def observe(self, method: str, path: str, status: int, seconds: float) -> None:
        self.requests.labels(method, path, str(status)).inc()
        self.latency.labels(method, path).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
