"""`nerkit serve`: a FastAPI app over the Python tagger API, with micro-batching, limits and metrics.

The app never runs inference itself: every text goes through `Tagger.pipe`, so the service and the
library give the same spans. Requests that arrive together are grouped into one `pipe` call (micro-
batching) because one batched forward pass costs far less than N single ones on a CPU.

settings: ServeSettings, ServeConfig · api: the pydantic models, LimitError · batcher: MicroBatcher (the
bounded queue) · metrics: Metrics (prometheus_client) · guard: the Host, shedding, body-size and timeout
middleware · protocol: uvicorn's h11 protocol with a header timeout · app: create_app, STATIC_DIR ·
runner: run, check_port, the uvicorn options · process: start_server/stop_server (a child process).

Names are imported on first use, so `nerkit.serve.process` alone does not import fastapi.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .api import LimitError
    from .app import STATIC_DIR, create_app
    from .batcher import MicroBatcher
    from .metrics import Metrics
    from .process import start_server, stop_server
    from .runner import check_port, run
    from .settings import ServeConfig, ServeSettings

_HOME = {"ServeSettings": "settings", "ServeConfig": "settings", "LimitError": "api", "MicroBatcher": "batcher", "Metrics": "metrics",
         "create_app": "app", "STATIC_DIR": "app", "run": "runner", "check_port": "runner",
         "start_server": "process", "stop_server": "process"}

__all__ = ["STATIC_DIR", "LimitError", "Metrics", "MicroBatcher", "ServeConfig", "ServeSettings", "check_port", "create_app",
           "run", "start_server", "stop_server"]


def __getattr__(name: str):
    if name in _HOME:
        return getattr(import_module(f".{_HOME[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
