"""The settings of one server: address, workers, limits and batching, declared like every command's
(nerkit.settings.opt), so `nerkit serve --config serve.toml` and `--serve.key VALUE` work as for train."""

from __future__ import annotations

import ipaddress
import json
import re
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
    # Overload and hostile clients. uvicorn's own settings where they do the job (max_connections ->
    # limit_concurrency, keepalive -> timeout_keep_alive, shutdown -> timeout_graceful_shutdown); uvicorn
    # has no timer on a request's headers, so header_timeout_s is ours (serve/protocol.py).
    max_connections: int = opt(2048, "most open connections and requests in flight per worker; "
                                     "over it a request gets 503 at once", positive=True)
    header_timeout_s: float = opt(10.0, "seconds a client may take to send a request's line and headers, "
                                        "from connecting or the previous response; then it is closed",
                                  positive=True)
    keepalive_timeout_s: float = opt(5.0, "seconds an idle keep-alive connection is kept open", positive=True)
    shutdown_timeout_s: float = opt(10.0, "on SIGTERM: seconds requests in flight may take to finish",
                                    positive=True)
    max_queue: int = opt(256, "most texts waiting for the model per worker; a request over it (or one that "
                              "would wait past half the timeout) gets 503 with Retry-After at once",
                         positive=True)
    allow_host: str = opt("", "Host names accepted besides localhost, comma-separated ('*': any); the check "
                              "is on when bound to a loopback address, or when this names hosts")

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
        bad = [h for h in self.extra_hosts() if h != "*" and not _HOST.fullmatch(h)]
        if bad:
            return f"serve.allow_host: {bad[0]!r} is not a host name (a name or address, without a port)"
        return None

    def extra_hosts(self) -> list[str]:
        return [h.strip().lower() for h in self.allow_host.split(",") if h.strip()]

    def allowed_hosts(self) -> frozenset[str] | None:
        """The Host header values (without the port) a request may carry; None: any (the check is off)."""
        extra = [h.strip("[]") for h in self.extra_hosts()]
        if "*" in extra:
            return None
        if is_loopback(self.host):
            return frozenset({"localhost", "127.0.0.1", "::1", *extra})
        return frozenset(extra) if extra else None


_HOST = re.compile(r"[a-z0-9._-]+|\[?[0-9a-f:.]+\]?")


def is_loopback(host: str) -> bool:
    """A literal loopback address or `localhost` (a name is not resolved: binding decides what it means)."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass
class ServeConfig:
    """`nerkit serve`: the server, and how its model runs."""

    serve: ServeSettings = field(default_factory=ServeSettings)
    # the fastest way to run the model that the folder allows (see engine.backends.choose)
    predictor: PredictorSettings = field(default_factory=lambda: PredictorSettings(backend="auto"))

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ServeConfig:
        raw = json.loads(text)
        return cls(ServeSettings(**raw.get("serve", {})), PredictorSettings(**raw.get("predictor", {})))
