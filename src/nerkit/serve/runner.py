"""Running the server: check the model folder and the address, then hand the app to uvicorn, in this
process (one worker) or in N worker processes that each load the model once."""

from __future__ import annotations

import gc
import os
import resource
import socket
import sys
from dataclasses import replace
from functools import partial
from typing import Any, TypeVar

from ..errors import PortError
from .app import create_app, load_tagger
from .protocol import GuardedH11Protocol
from .settings import ServeConfig, ServeSettings

# The event loop wakes for every socket event and must then take the GIL back from the model thread,
# which holds it through tokenising and decoding; Python's default 5 ms switch interval makes each wake
# wait up to that long, so under load the loop falls behind on exactly the requests it should shed.
SWITCH_INTERVAL_S = 0.0005
FD_SPARE = 64  # descriptors beyond the connections: the model files, logs, the listening socket

T = TypeVar("T")
CONFIG_ENV = "NERKIT_SERVE_CONFIG"  # ServeConfig as JSON, handed from `run` to each uvicorn worker process
MODEL_ENV = "NERKIT_SERVE_MODEL"


def app_from_env():
    """uvicorn factory for multi-worker runs: each worker process loads the model once."""
    config = ServeConfig.from_json(os.environ.get(CONFIG_ENV, "{}"))
    sys.setswitchinterval(SWITCH_INTERVAL_S)  # a spawned worker does not inherit the parent's
    return freeze_heap(create_app(os.environ[MODEL_ENV], config.serve, config.predictor))


def freeze_heap(app: T) -> T:
    """Move everything allocated so far (the model, the libraries) out of the garbage collector's sight.
    It lives as long as the process, and a full collection that walks it stops the event loop and the
    model thread together for a long moment, which under load is the slowest answer the server gives."""
    gc.collect()
    gc.freeze()
    return app


def check_port(host: str, port: int) -> None:
    """Bind and release the address as uvicorn will (SO_REUSEADDR), to fail with one clear line instead
    of uvicorn's log and exit code 3 once the model has loaded. Raises PortError naming `host` or `port`."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise PortError(f"{host!r}: {e.strerror}", field="host") from None
    family, kind, proto, _, addr = infos[0]
    with socket.socket(family, kind, proto) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(addr)
        except OSError as e:
            raise PortError(f"cannot listen on {host}:{port}: {e.strerror}", field="port") from None


def uvicorn_options(s: ServeSettings) -> dict[str, Any]:
    """uvicorn's own limits and timeouts from the settings, and the h11 protocol with a header timeout."""
    return {"host": s.host, "port": s.port, "log_level": s.log_level,
            "http": partial(GuardedH11Protocol, header_timeout_s=s.header_timeout_s),
            "limit_concurrency": s.max_connections, "backlog": min(2048, s.max_connections),
            "timeout_keep_alive": s.keepalive_timeout_s, "timeout_graceful_shutdown": s.shutdown_timeout_s}


def raise_fd_limit(s: ServeSettings) -> ServeSettings:
    """Lift this process's soft descriptor limit toward the hard one so max_connections fit; if the hard
    limit is lower, lower max_connections to what fits (and say so) rather than fail on accept()."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = s.max_connections + FD_SPARE
    if soft != resource.RLIM_INFINITY and soft < need:
        target = need if hard == resource.RLIM_INFINITY else min(need, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft != resource.RLIM_INFINITY and soft < need:
        fit = max(1, soft - FD_SPARE)
        print(f"nerkit: serve.max_connections lowered from {s.max_connections} to {fit}: this process may "
              f"open {soft} file descriptors (ulimit -n)", flush=True)
        return replace(s, max_connections=fit)
    return s


def run(model_dir: str, config: ServeConfig | None = None) -> None:
    """Check the model (a missing or broken folder raises ModelError before any port is bound), then serve.

    One worker loads the tagger here, once. N workers each load it in their own process, so this one only
    checks the folder (nerkit.json, config, tokenizer, the ONNX file) and loads no weights."""
    import uvicorn

    config = config or ServeConfig()
    config = replace(config, serve=raise_fd_limit(config.serve))
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    s, backend = config.serve, str(config.predictor.backend)
    tagger = None
    if s.workers <= 1:
        tagger = load_tagger(model_dir, config.predictor)
        backend = tagger.predictor.backend_name
    else:
        from ..engine.backends import choose
        from ..folder import ModelFolder

        folder = ModelFolder(model_dir)
        backend = choose(folder, backend, config.predictor.device)
        folder.check(backend)
    check_port(s.host, s.port)
    shown = f"[{s.host}]" if ":" in s.host else s.host
    print(f"nerkit: serving {model_dir} on http://{shown}:{s.port}/ (API docs at /docs, {s.workers} worker(s), "
          f"backend {backend}, micro-batching {'on' if s.micro_batching else 'off'})", flush=True)
    if tagger is not None:
        uvicorn.run(freeze_heap(create_app(tagger, s)), **uvicorn_options(s))
        return
    if not s.threads:  # N workers share the cores instead of each taking them all
        config = replace(config, serve=replace(s, threads=max(1, (os.cpu_count() or 1) // s.workers)))
    os.environ.update({CONFIG_ENV: config.to_json(), MODEL_ENV: str(model_dir)})
    uvicorn.run("nerkit.serve.runner:app_from_env", factory=True, workers=s.workers, **uvicorn_options(s))
