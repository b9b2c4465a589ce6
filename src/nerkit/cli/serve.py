"""`nerkit serve`: the HTTP service (serve/ does the work)."""

from __future__ import annotations

import argparse
import os

from ..serve.settings import ServeConfig
from .common import command


def register(sub) -> None:
    command(sub, "serve", ServeConfig, run, "serve a model over HTTP: JSON API, web page, metrics",
            description="Start a FastAPI app under uvicorn: POST /v1/entities, GET /v1/labels, /healthz, /readyz, "
                        "/metrics, /docs, and a web page at /. A --config file takes [serve] and "
                        "[predictor] sections, so a serving set-up is reproducible from a file.")


def run(args: argparse.Namespace, extra: list[str]) -> int:
    # Idle OpenMP threads sleep instead of spinning, so the event loop gets a core between model calls
    # (an A/B with bench/serve_load.py; see the README). Must precede torch's import.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from ..config import from_args
    from ..serve.runner import run as serve

    serve(args.model_dir, from_args(ServeConfig, args, extra))
    return 0
