"""Request counts and latency histograms, rendered in the Prometheus text format (no client library)."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .batcher import MicroBatcher

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class Metrics:
    """Request counts and latency histograms, rendered in the Prometheus text format (no client library)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, str, str], int] = {}
        self.latency: dict[tuple[str, str], list[float]] = {}  # bucket counts + [sum, count]
        self.texts = 0

    def observe(self, method: str, path: str, status: int, seconds: float) -> None:
        with self._lock:
            key = (method, path, str(status))
            self.requests[key] = self.requests.get(key, 0) + 1
            h = self.latency.setdefault((method, path), [0.0] * (len(LATENCY_BUCKETS) + 2))
            for i, b in enumerate(LATENCY_BUCKETS):
                if seconds <= b:
                    h[i] += 1
            h[-2] += seconds
            h[-1] += 1

    def render(self, batcher: MicroBatcher | None = None) -> str:
        out = ["# HELP nerkit_http_requests_total HTTP requests by method, route and status.",
               "# TYPE nerkit_http_requests_total counter"]
        with self._lock:
            for (m, p, s), n in sorted(self.requests.items()):
                out.append(f'nerkit_http_requests_total{{method="{m}",path="{_esc(p)}",status="{s}"}} {n}')
            out += ["# HELP nerkit_http_request_duration_seconds Time from request start to response end.",
                    "# TYPE nerkit_http_request_duration_seconds histogram"]
            for (m, p), h in sorted(self.latency.items()):
                lab = f'method="{m}",path="{_esc(p)}"'
                for i, b in enumerate(LATENCY_BUCKETS):
                    out.append(f'nerkit_http_request_duration_seconds_bucket{{{lab},le="{b}"}} {int(h[i])}')
                out.append(f'nerkit_http_request_duration_seconds_bucket{{{lab},le="+Inf"}} {int(h[-1])}')
                out.append(f"nerkit_http_request_duration_seconds_sum{{{lab}}} {h[-2]:.6f}")
                out.append(f"nerkit_http_request_duration_seconds_count{{{lab}}} {int(h[-1])}")
            out += ["# HELP nerkit_texts_total Texts tagged.", "# TYPE nerkit_texts_total counter",
                    f"nerkit_texts_total {self.texts}"]
        if batcher is not None:
            out += ["# HELP nerkit_model_calls_total Calls of Tagger.pipe (one per micro-batch).",
                    "# TYPE nerkit_model_calls_total counter", f"nerkit_model_calls_total {batcher.model_calls}",
                    "# HELP nerkit_model_texts_total Texts sent to Tagger.pipe.",
                    "# TYPE nerkit_model_texts_total counter", f"nerkit_model_texts_total {batcher.model_texts}",
                    "# HELP nerkit_model_seconds_total Time spent in Tagger.pipe.",
                    "# TYPE nerkit_model_seconds_total counter",
                    f"nerkit_model_seconds_total {batcher.model_seconds:.6f}"]
        return "\n".join(out) + "\n"


def _esc(s: str) -> str:
    return s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
