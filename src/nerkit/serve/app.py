"""The FastAPI app: `POST /v1/entities`, `/v1/labels`, `/healthz`, `/readyz`, `/metrics`, and the page at `/`.

The app never runs inference itself: every text goes through `Tagger.pipe` (via the MicroBatcher), so
the service and the library give the same spans.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections.abc import Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..settings import PredictorSettings
from ..version import __version__
from .api import (
    EntitiesRequest,
    EntitiesResponse,
    ErrorResponse,
    LabelsResponse,
    LimitError,
    error_body,
    limit_response,
    overload_response,
)
from .batcher import MicroBatcher, Overloaded
from .guard import GuardMiddleware
from .metrics import CONTENT_TYPE, Metrics
from .settings import ServeSettings

STATIC_DIR = Path(__file__).resolve().parent.parent / "serve_static"  # package data of nerkit
TIMEOUT_STATUS = 503  # the model did not answer in time: the server is busy, not the input wrong
CLIENT_GONE_STATUS = 499  # nginx's "client closed request": no client ever reads it


class ClientGone(Exception):
    """The client closed the connection before its answer was ready."""


async def _disconnected(request: Request) -> None:
    """Returns when the client has gone. The guard middleware has read the body already, so `receive`
    here only ever answers http.disconnect (or nothing until the response is sent)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _tag_while_connected(batcher: MicroBatcher, texts: list[str], request: Request, timeout: float):
    """batcher.tag under a timeout, given up (and its job dropped unrun) as soon as the client leaves."""
    job = asyncio.ensure_future(batcher.tag(texts))
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        done, _ = await asyncio.wait({job, gone}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
        if not job.done():
            job.cancel()  # cancels the job's future: the model loop skips it
    if job in done:
        return job.result()
    if gone in done:
        raise ClientGone
    raise TimeoutError


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


LIMITS = ("max_body_bytes", "max_chars", "max_texts", "request_timeout_s", "max_queue")


def load_tagger(model_dir: str, predictor: PredictorSettings):
    """The tagger a server runs: the model as `predictor` says, under the text budget."""
    from ..engine.predictor import TEXT_BUDGET
    from ..tagger import Tagger

    return Tagger(predictor.open(model_dir, TEXT_BUDGET))


def create_app(tagger_or_model_dir, settings: ServeSettings | None = None,
               predictor: PredictorSettings | None = None) -> FastAPI:
    """The service for one tagger. A path is loaded here (as `predictor` says), once per process, so once
    per uvicorn worker."""
    settings = settings or ServeSettings()
    if settings.threads:
        import torch

        torch.set_num_threads(settings.threads)
    if isinstance(tagger_or_model_dir, str | os.PathLike):
        tagger = load_tagger(str(tagger_or_model_dir), predictor or PredictorSettings())
    else:
        tagger = tagger_or_model_dir
    metrics = Metrics()
    batcher = MicroBatcher(tagger, settings, on_call=lambda n, _: metrics.batch.observe(n))
    metrics.watch(batcher)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await batcher.start()
        try:
            yield
        finally:
            await batcher.stop()

    make_fastapi: Any = FastAPI  # plain FastAPI: /docs loads Swagger UI from a CDN
    try:  # Swagger UI and ReDoc assets shipped in a package, so /docs works offline too
        from fastapi_offline import FastAPIOffline as make_fastapi
    except ImportError:
        pass
    app = make_fastapi(title="nerkit", version=__version__, lifespan=lifespan,
                  description="Named-entity recognition over HTTP. `POST /v1/entities` with `{\"text\": ...}` "
                              "or `{\"texts\": [...]}`. Limits: " + ", ".join(
                                  f"{k}={getattr(settings, k)}" for k in LIMITS),
                  responses={413: {"model": ErrorResponse}, 422: {"model": ErrorResponse}})
    app.state.tagger, app.state.settings, app.state.batcher, app.state.metrics = tagger, settings, batcher, metrics
    _error_handlers(app)
    _routes(app, tagger, settings, batcher, metrics)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.add_middleware(GuardMiddleware, settings=settings, metrics=metrics, batcher=batcher)
    return app


def _error_handlers(app: FastAPI) -> None:
    """Every refusal is the JSON error body; client input never gets a 500."""

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


def _routes(app: FastAPI, tagger, settings: ServeSettings, batcher: MicroBatcher, metrics: Metrics) -> None:
    @app.post("/v1/entities", response_model=EntitiesResponse, response_model_exclude_none=True,
              responses={413: {"model": ErrorResponse, "description": "over max_body_bytes, max_texts or "
                                                                      "max_chars"},
                         422: {"model": ErrorResponse, "description": "bad JSON or wrong types"},
                         503: {"model": ErrorResponse, "description": "the queue is full (at once, with "
                                                                      "Retry-After) or over request_timeout_s"}})
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
            spans = await _tag_while_connected(batcher, texts, request, max(deadline - time.monotonic(), 0.001))
        except Overloaded as e:
            return overload_response(e.reason, e.retry_after_s, settings.max_queue)
        except TimeoutError:
            return JSONResponse(error_body("limit", f"no answer within request_timeout_s "
                                                    f"({settings.request_timeout_s} s)",
                                           limit="request_timeout_s", max=settings.request_timeout_s),
                                TIMEOUT_STATUS, headers={"Retry-After": "1"})
        except ClientGone:  # nobody reads this answer; the status is for the access log and /metrics
            return JSONResponse(error_body("gone", "the client closed the connection"), CLIENT_GONE_STATUS)
        metrics.texts.inc(len(texts))
        results = [{"entities": [_span_dict(s) for s in row]} for row in spans]
        # a Response skips re-validating our own output against response_model (it only documents it)
        return JSONResponse(results[0] if req.text is not None else {"results": results})

    @app.get("/v1/labels", response_model=LabelsResponse)
    async def labels():
        """The model's IOB2 labels and entity types."""
        return {"labels": list(tagger.labels), "entity_types": list(tagger.entity_types)}

    @app.get("/healthz")
    async def healthz():
        """Liveness: the process answers (its event loop runs)."""
        return {"status": "ok"}

    @app.get("/readyz", responses={503: {"description": "not ready: `checks` says which check failed"}})
    async def readyz():
        """Readiness for a load balancer: the model is loaded, its thread runs (no call stuck past the
        timeout) and the queue is below its cap. 503 with the failed checks otherwise."""
        checks = {"model_loaded": tagger is not None and bool(getattr(tagger, "labels", None)),
                  "model_thread": batcher.running(),
                  "queue_below_cap": batcher.overload(1) is None}
        body = {"status": "ready" if all(checks.values()) else "not ready", "checks": checks,
                "queue_texts": batcher.waiting_texts, "max_queue": settings.max_queue}
        if all(checks.values()):
            return body
        return JSONResponse(body, 503, headers={"Retry-After": "1"})

    @app.get("/metrics", response_class=PlainTextResponse)
    async def prometheus():
        """Request counts and latency, model calls and batch sizes, the queue and what it shed, and the
        process (RSS, CPU, file descriptors) in the Prometheus text format."""
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    @app.get("/", include_in_schema=False)
    async def index():
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

