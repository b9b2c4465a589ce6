"""Running the server: check the model folder and the address, then hand the app to uvicorn, in this
process (one worker) or in N worker processes that each load the model once."""

from __future__ import annotations

import os
import socket
from dataclasses import replace

from ..errors import PortError
from .app import create_app, load_tagger
from .settings import ServeConfig

CONFIG_ENV = "NERKIT_SERVE_CONFIG"  # ServeConfig as JSON, handed from `run` to each uvicorn worker process
MODEL_ENV = "NERKIT_SERVE_MODEL"


def app_from_env():
    """uvicorn factory for multi-worker runs: each worker process loads the model once."""
    config = ServeConfig.from_json(os.environ.get(CONFIG_ENV, "{}"))
    return create_app(os.environ[MODEL_ENV], config.serve, config.predictor)


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


def run(model_dir: str, config: ServeConfig | None = None) -> None:
    """Check the model (a missing or broken folder raises ModelError before any port is bound), then serve.

    One worker loads the tagger here, once. N workers each load it in their own process, so this one only
    checks the folder (nerkit.json, config, tokenizer, the ONNX file) and loads no weights."""
    import uvicorn

    config = config or ServeConfig()
    s, backend = config.serve, config.predictor.backend
    tagger = None
    if s.workers <= 1:
        tagger = load_tagger(model_dir, config.predictor)
    else:
        from ..folder import ModelFolder

        ModelFolder(model_dir).check(backend)
    check_port(s.host, s.port)
    shown = f"[{s.host}]" if ":" in s.host else s.host
    print(f"nerkit: serving {model_dir} on http://{shown}:{s.port}/ (API docs at /docs, {s.workers} worker(s), "
          f"micro-batching {'on' if s.micro_batching else 'off'})", flush=True)
    if tagger is not None:
        uvicorn.run(create_app(tagger, s), host=s.host, port=s.port, log_level=s.log_level)
        return
    if not s.threads:  # N workers share the cores instead of each taking them all
        config = replace(config, serve=replace(s, threads=max(1, (os.cpu_count() or 1) // s.workers)))
    os.environ.update({CONFIG_ENV: config.to_json(), MODEL_ENV: str(model_dir)})
    uvicorn.run("nerkit.serve.runner:app_from_env", factory=True, host=s.host, port=s.port, workers=s.workers,
                log_level=s.log_level)
