"""`nerkit serve`: a FastAPI app over the Python tagger API, with micro-batching, limits and metrics.

The app never runs inference itself: every text goes through `Tagger.pipe`, so the service and the
library give the same spans. Requests that arrive together are grouped into one `pipe` call (micro-
batching) because one batched forward pass costs far less than N single ones on a CPU.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, StrictStr
from starlette.exceptions import HTTPException as StarletteHTTPException

STATIC_DIR = Path(__file__).with_name("serve_static")
SETTINGS_ENV = "NERKIT_SERVE_SETTINGS"  # JSON handed from `run` to each uvicorn worker process
TIMEOUT_STATUS = 503  # the model did not answer in time: the server is busy, not the input wrong


@dataclass
class ServeSettings:
    """Limits and batching knobs of one server. Every limit has a name the error body repeats."""

    max_body_bytes: int = 1_000_000
    max_chars: int = 10_000  # per text
    max_texts: int = 64  # per request
    request_timeout_s: float = 30.0
    micro_batching: bool = True
    max_wait_ms: float = 5.0  # how long the batcher waits for more requests after the first
    max_batch: int = 32  # texts per model call when grouping requests
    # `Tagger.pipe` batch size cap. The tagger sorts a group by length and cuts it where a model call is
    # cheaper than padding (Tagger.call_cost), so the cap only bounds memory.
    batch_size: int = 32
    threads: int = 0  # torch intra-op threads per worker; 0 leaves torch's default (one per core)

    def __post_init__(self) -> None:
        for f in ("max_body_bytes", "max_chars", "max_texts", "max_batch", "batch_size"):
            if not isinstance(getattr(self, f), int) or getattr(self, f) < 1:
                raise ValueError(f"{f} must be a positive integer, got {getattr(self, f)!r}")
        if not isinstance(self.threads, int) or self.threads < 0:
            raise ValueError(f"threads must be 0 (torch's default) or more, got {self.threads!r}")
        if not self.request_timeout_s > 0:
            raise ValueError(f"request_timeout_s must be > 0, got {self.request_timeout_s!r}")
        if not self.max_wait_ms >= 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {self.max_wait_ms!r}")

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ServeSettings:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in json.loads(text).items() if k in known})


class LimitError(Exception):
    """A request over one of the configured limits; becomes a 413/422 JSON error naming the limit."""

    def __init__(self, status: int, limit: str, value: float, message: str):
        super().__init__(message)
        self.status, self.limit, self.value, self.message = status, limit, value, message


def error_body(kind: str, message: str, **extra: Any) -> dict:
    return {"error": {"type": kind, "message": message, **extra}}


def limit_response(e: LimitError) -> JSONResponse:
    return JSONResponse(error_body("limit", e.message, limit=e.limit, max=e.value), status_code=e.status)


# ------------------------------------------------------------------------------------------ API models


class EntitiesRequest(BaseModel):
    """Either `text` (one string) or `texts` (a list of strings), not both."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"text": "John Smith lives in Paris ."}, {"texts": ["Mary works for Siemens .", "Hi"]}]})
    text: StrictStr | None = Field(None, description="one text; the answer has `entities`")
    texts: list[StrictStr] | None = Field(None, description="a batch of texts; the answer has `results`")


class Entity(BaseModel):
    type: str = Field(description="entity type, e.g. PER")
    start: int = Field(description="character offset of the first character")
    end: int = Field(description="character offset one past the last character")
    text: str = Field(description="text[start:end]")
    score: float | None = Field(description="model confidence in [0, 1]")


class EntitiesResult(BaseModel):
    entities: list[Entity]


class EntitiesResponse(BaseModel):
    entities: list[Entity] | None = None
    results: list[EntitiesResult] | None = None


class LabelsResponse(BaseModel):
    labels: list[str]
    entity_types: list[str]


class ErrorResponse(BaseModel):
    error: dict[str, Any]


# ------------------------------------------------------------------------------------------ batching


@dataclass
class _Job:
    texts: list[str]
    future: asyncio.Future


class MicroBatcher:
    """Groups concurrent requests into one `tagger.pipe` call.

    One model call runs at a time (a one-thread executor): on a small CPU box, two concurrent forward
    passes only fight over the same cores. With batching off each request is its own model call.
    """

    def __init__(self, tagger, settings: ServeSettings):
        self.tagger, self.settings = tagger, settings
        self._executor: ThreadPoolExecutor | None = None
        self._queue: asyncio.Queue[_Job] | None = None
        self._carry: _Job | None = None  # a job that did not fit in the last group
        self._task: asyncio.Task | None = None
        self.model_calls = 0
        self.model_texts = 0
        self.model_seconds = 0.0  # time inside tagger.pipe: busy / wall time is the model's utilisation

    async def start(self) -> None:
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="nerkit-model")
        if self.settings.micro_batching:
            self._queue, self._carry = asyncio.Queue(), None
            self._task = asyncio.create_task(self._loop(), name="nerkit-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = self._queue = None
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    def _run(self, texts: list[str]) -> list[list]:
        self.model_calls += 1
        self.model_texts += len(texts)
        t0 = time.perf_counter()
        try:
            out = list(self.tagger.pipe(texts, batch_size=self.settings.batch_size))
        finally:
            self.model_seconds += time.perf_counter() - t0
        if len(out) != len(texts):
            raise RuntimeError(f"tagger.pipe returned {len(out)} results for {len(texts)} texts")
        return out

    async def _call(self, texts: list[str]) -> list[list]:
        if self._executor is None:  # the app was run without its lifespan (no batcher task)
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="nerkit-model")
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._run, texts)

    async def tag(self, texts: list[str]) -> list[list]:
        """Spans for each text, in order. Cancelling the caller (a timeout) drops the job."""
        if not texts:
            return []
        if self._queue is None or self._task is None or self._task.done():
            return await self._call(texts)
        fut = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Job(texts, fut))
        return await fut

    async def _collect(self) -> list[_Job]:
        """The first waiting job, then whatever else arrives within max_wait_ms, up to max_batch texts."""
        assert self._queue is not None
        first, self._carry = self._carry or await self._queue.get(), None
        jobs, n = [first], len(first.texts)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.max_wait_ms / 1000
        while n < self.settings.max_batch:
            try:
                job = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                left = deadline - loop.time()
                if left <= 0:
                    break
                try:
                    job = await asyncio.wait_for(self._queue.get(), left)
                except TimeoutError:
                    break
            if n + len(job.texts) > self.settings.max_batch:
                self._carry = job  # it starts the next group
                break
            jobs.append(job)
            n += len(job.texts)
        return [j for j in jobs if not j.future.done()]  # callers that timed out are gone

    async def _loop(self) -> None:
        while True:
            jobs = await self._collect()
            if not jobs:
                continue
            try:
                results = await self._call([t for j in jobs for t in j.texts])
            except Exception as e:
                if len(jobs) == 1:
                    _settle(jobs[0].future, exc=e)
                    continue
                # one bad text must not fail its neighbours: rerun each request alone
                for j in jobs:
                    try:
                        _settle(j.future, await self._call(j.texts))
                    except Exception as e2:
                        _settle(j.future, exc=e2)
                continue
            i = 0
            for j in jobs:
                _settle(j.future, results[i:i + len(j.texts)])
                i += len(j.texts)


def _settle(fut: asyncio.Future, result: Any = None, exc: BaseException | None = None) -> None:
    if fut.done():
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(result)


# ------------------------------------------------------------------------------------------ metrics

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


# ------------------------------------------------------------------------------------------ middleware

ASGIApp = Callable[[dict, Callable[[], Awaitable[dict]], Callable[[dict], Awaitable[None]]], Awaitable[None]]


class GuardMiddleware:
    """Times every request for /metrics, and reads each body under the size limit and the timeout before
    the app sees it, so that an oversized or endless body never reaches a handler."""

    def __init__(self, app: ASGIApp, settings: ServeSettings, metrics: Metrics):
        self.app, self.settings, self.metrics = app, settings, metrics

    async def __call__(self, scope: dict, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = {"code": 500}

        async def send_wrapper(message: dict) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            body_receive = await self._read_body(scope, receive)
            if isinstance(body_receive, JSONResponse):
                await body_receive(scope, receive, send_wrapper)
            else:
                scope.setdefault("state", {})["nerkit_deadline"] = time.monotonic() + self.settings.request_timeout_s
                await self.app(scope, body_receive, send_wrapper)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "other"
            self.metrics.observe(scope.get("method", "?"), path, status["code"], time.perf_counter() - start)

    async def _read_body(self, scope: dict, receive):
        """The whole body, or a 413/408 response. Returns a `receive` that replays the body."""
        limit = self.settings.max_body_bytes
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    return JSONResponse(error_body("bad_request", "Content-Length is not a number"), 400)
                if declared > limit:
                    return limit_response(_body_limit(limit))
        chunks: list[bytes] = []
        size = 0

        async def read() -> JSONResponse | None:
            nonlocal size
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return None
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > limit:
                    return limit_response(_body_limit(limit))
                chunks.append(chunk)
                if not message.get("more_body", False):
                    return None

        try:
            problem = await asyncio.wait_for(read(), self.settings.request_timeout_s)
        except TimeoutError:
            return JSONResponse(error_body("limit", "the request body did not arrive within the request timeout",
                                           limit="request_timeout_s", max=self.settings.request_timeout_s), 408)
        if problem is not None:
            return problem
        body = b"".join(chunks)
        sent = False

        async def replay() -> dict:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return replay


def _body_limit(limit: int) -> LimitError:
    return LimitError(413, "max_body_bytes", limit, f"the request body is over max_body_bytes ({limit} bytes)")


# ------------------------------------------------------------------------------------------ the app


def _span_dict(span) -> dict:
    score = float(span.score)
    return {"type": span.label, "start": int(span.start), "end": int(span.end), "text": span.text,
            "score": score if math.isfinite(score) else None}


def _check_texts(texts: Sequence[str], settings: ServeSettings) -> None:
    if len(texts) > settings.max_texts:
        raise LimitError(413, "max_texts", settings.max_texts,
                         f"{len(texts)} texts in one request; max_texts is {settings.max_texts}")
    for i, t in enumerate(texts):
        if len(t) > settings.max_chars:
            raise LimitError(413, "max_chars", settings.max_chars,
                             f"text {i} has {len(t)} characters; max_chars is {settings.max_chars}")
        try:
            t.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(f"text {i} is not valid Unicode (it has a lone surrogate)") from None


def _jsonable_errors(errors: Sequence[Any]) -> list[dict]:
    """Pydantic's error list without the raw input (it may hold bytes or huge values)."""
    out = []
    for e in errors:
        if isinstance(e, dict):
            out.append({"loc": [str(x) for x in e.get("loc", ())], "msg": str(e.get("msg", "")),
                        "type": str(e.get("type", ""))})
        else:
            out.append({"msg": str(e)})
    return out


def create_app(tagger_or_model_dir, settings: ServeSettings | None = None, backend: str = "torch",
               device: str | None = None) -> FastAPI:
    """The service for one tagger. A path is loaded here, once per process (so once per uvicorn worker)."""
    settings = settings or ServeSettings()
    if settings.threads:
        import torch

        torch.set_num_threads(settings.threads)
    if isinstance(tagger_or_model_dir, str | os.PathLike):
        from .tagger import load

        tagger = load(str(tagger_or_model_dir), backend=backend, device=device)
    else:
        tagger = tagger_or_model_dir
    batcher = MicroBatcher(tagger, settings)
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await batcher.start()
        try:
            yield
        finally:
            await batcher.stop()

    try:  # Swagger UI and ReDoc assets shipped in a package, so /docs works offline too
        from fastapi_offline import FastAPIOffline as make_fastapi
    except ImportError:  # plain FastAPI: /docs loads Swagger UI from a CDN
        make_fastapi = FastAPI
    app = make_fastapi(title="nerkit", version=_version(), lifespan=lifespan,
                  description="Named-entity recognition over HTTP. `POST /v1/entities` with `{\"text\": ...}` "
                              "or `{\"texts\": [...]}`. Limits: " + ", ".join(
                                  f"{k}={v}" for k, v in asdict(settings).items()),
                  responses={413: {"model": ErrorResponse}, 422: {"model": ErrorResponse}})
    app.state.tagger, app.state.settings, app.state.batcher, app.state.metrics = tagger, settings, batcher, metrics

    @app.exception_handler(LimitError)
    async def _limit(_: Request, e: LimitError) -> JSONResponse:
        return limit_response(e)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, e: RequestValidationError) -> JSONResponse:
        errors = _jsonable_errors(e.errors())
        msg = "; ".join(f"{'.'.join(x.get('loc', [])[1:]) or 'body'}: {x['msg']}" for x in errors)[:500]
        return JSONResponse(error_body("validation", msg or "invalid request", detail=errors), 422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, e: StarletteHTTPException) -> JSONResponse:
        if e.status_code == 400:  # FastAPI's "error parsing the body" (e.g. bytes that are not UTF-8)
            return JSONResponse(error_body("validation", f"the body is not valid JSON: {e.detail}"), 422)
        return JSONResponse(error_body("http", str(e.detail)), e.status_code, headers=e.headers)

    @app.exception_handler(Exception)
    async def _crash(_: Request, e: Exception) -> JSONResponse:  # a server bug, never the client's input
        return JSONResponse(error_body("internal", f"internal error: {type(e).__name__}"), 500)

    @app.post("/v1/entities", response_model=EntitiesResponse, response_model_exclude_none=True,
              responses={413: {"model": ErrorResponse, "description": "over max_body_bytes, max_texts or "
                                                                      "max_chars"},
                         422: {"model": ErrorResponse, "description": "bad JSON or wrong types"},
                         503: {"model": ErrorResponse, "description": "over request_timeout_s"}})
    async def entities(req: EntitiesRequest, request: Request):
        """Entities in one text (`text`) or in each of a batch of texts (`texts`)."""
        if (req.text is None) == (req.texts is None):
            return JSONResponse(error_body("validation", "give exactly one of 'text' (a string) or 'texts' "
                                                         "(a list of strings)"), 422)
        texts = [req.text] if req.text is not None else list(req.texts or [])
        try:
            _check_texts(texts, settings)
        except ValueError as e:
            return JSONResponse(error_body("validation", str(e)), 422)
        deadline = getattr(request.state, "nerkit_deadline", time.monotonic() + settings.request_timeout_s)
        try:
            spans = await asyncio.wait_for(batcher.tag(texts), max(deadline - time.monotonic(), 0.001))
        except TimeoutError:
            return JSONResponse(error_body("limit", f"no answer within request_timeout_s "
                                                    f"({settings.request_timeout_s} s)",
                                           limit="request_timeout_s", max=settings.request_timeout_s),
                                TIMEOUT_STATUS, headers={"Retry-After": "1"})
        metrics.texts += len(texts)
        results = [{"entities": [_span_dict(s) for s in row]} for row in spans]
        # a Response skips re-validating our own output against response_model (it only documents it)
        return JSONResponse(results[0] if req.text is not None else {"results": results})

    @app.get("/v1/labels", response_model=LabelsResponse)
    async def labels():
        """The model's IOB2 labels and entity types."""
        return {"labels": list(tagger.labels), "entity_types": list(tagger.entity_types)}

    @app.get("/healthz")
    async def healthz():
        """Liveness: the model is loaded and the process answers."""
        return {"status": "ok"}

    @app.get("/metrics", response_class=PlainTextResponse)
    async def prometheus():
        """Request counts and latency in the Prometheus text format."""
        return PlainTextResponse(metrics.render(batcher), media_type="text/plain; version=0.0.4")

    @app.get("/", include_in_schema=False)
    async def index():
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.add_middleware(GuardMiddleware, settings=settings, metrics=metrics)
    return app


def _version() -> str:
    from . import __version__

    return __version__


# ------------------------------------------------------------------------------------------ run


def app_from_env():
    """uvicorn factory for multi-worker runs: each worker process loads the model once."""
    settings = ServeSettings.from_json(os.environ.get(SETTINGS_ENV, "{}"))
    return create_app(os.environ["NERKIT_SERVE_MODEL"], settings, backend=os.environ.get("NERKIT_SERVE_BACKEND",
                                                                                          "torch"),
                      device=os.environ.get("NERKIT_SERVE_DEVICE") or None)


class PortError(ValueError):
    """The address cannot be bound (in use, or not an address of this machine). str() is one line."""


def check_port(host: str, port: int) -> None:
    """Bind and release the address as uvicorn will (SO_REUSEADDR), to fail with one clear line instead
    of uvicorn's log and exit code 3 once the model has loaded."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise PortError(f"--host {host!r}: {e.strerror}") from None
    family, kind, proto, _, addr = infos[0]
    with socket.socket(family, kind, proto) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(addr)
        except OSError as e:
            raise PortError(f"--port {port}: cannot listen on {host}:{port}: {e.strerror}") from None


def run(model_dir: str, host: str = "127.0.0.1", port: int = 8000, workers: int = 1, backend: str = "torch",
        device: str | None = None, settings: ServeSettings | None = None, log_level: str = "info") -> None:
    """Load the model (a missing or broken folder raises ModelError before any port is bound), then serve."""
    import uvicorn

    from .tagger import load

    settings = settings or ServeSettings()
    tagger = load(model_dir, backend=backend, device=device)  # validates the folder for every worker too
    check_port(host, port)
    shown = f"[{host}]" if ":" in host else host
    print(f"nerkit: serving {model_dir} on http://{shown}:{port}/ (API docs at /docs, {workers} worker(s), "
          f"micro-batching {'on' if settings.micro_batching else 'off'})", flush=True)
    if workers <= 1:
        uvicorn.run(create_app(tagger, settings), host=host, port=port, log_level=log_level)
        return
    del tagger
    if not settings.threads:  # N workers share the cores instead of each taking them all
        settings = replace(settings, threads=max(1, (os.cpu_count() or 1) // workers))
    os.environ.update({SETTINGS_ENV: settings.to_json(), "NERKIT_SERVE_MODEL": str(model_dir),
                       "NERKIT_SERVE_BACKEND": backend, "NERKIT_SERVE_DEVICE": device or ""})
    uvicorn.run("nerkit.serve:app_from_env", factory=True, host=host, port=port, workers=workers,
                log_level=log_level)
