"""The settings of one server: address, workers, limits and batching, declared like every command's
(nerkit.settings.opt), so `nerkit serve --config serve.toml` and `--serve.key VALUE` work as for train."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Literal

from ..settings import PredictorSettings, opt


@dataclass
class ServeSettings:
    """Every limit has a name the error body repeats."""

    host: str = opt("127.0.0.1", "address to bind; 127.0.0.1 is this machine only")
    port: int = opt(8000, "port (0-65535; 0: any free port)")
    workers: int = opt(1, "worker processes, each loads the model", positive=True)
    log_level: Literal["critical", "error", "warning", "info", "debug"] = opt("info", "uvicorn log level")
    max_body_bytes: int = opt(1_000_000, "largest request body", positive=True)
    max_chars: int = opt(10_000, "most characters per text", positive=True)
    max_texts: int = opt(64, "most texts per request", positive=True)
    request_timeout_s: float = opt(30.0, "seconds until a request is answered 503", positive=True,
                                   aliases=("--timeout",))
    micro_batching: bool = opt(True, "group concurrent requests into one model call", off=("--no-batching",))
    max_wait_ms: float = opt(5.0, "micro-batching: how long to wait for more requests to join a batch")
    # The tagger cuts a micro-batch of mixed lengths into cheaper, less padded passes itself
    # (predictor.batch_size caps a pass), so this only bounds how many texts wait for one answer.
    max_batch: int = opt(32, "micro-batching: most texts per micro-batch", positive=True)
    threads: int = opt(0, "torch threads per worker; 0: all cores for 1 worker, cores/N for N")

    def __post_init__(self) -> None:
        from ..config import validate

        validate(self)

    def check(self) -> str | None:
        if not 0 <= self.port <= 65535:
            return f"serve.port: {self.port} is not a port number (0-65535)"
        if self.max_wait_ms < 0:
            return f"serve.max_wait_ms: expected 0 or more, got {self.max_wait_ms}"
        if self.threads < 0:
            return f"serve.threads: expected 0 (the default) or more, got {self.threads}"
        return None


@dataclass
class ServeConfig:
    """`nerkit serve`: the server, and how its model runs."""

    serve: ServeSettings = field(default_factory=ServeSettings)
    predictor: PredictorSettings = field(default_factory=PredictorSettings)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ServeConfig:
        raw = json.loads(text)
        return cls(ServeSettings(**raw.get("serve", {})), PredictorSettings(**raw.get("predictor", {})))
