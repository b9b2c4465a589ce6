"""The ASGI middleware in front of the app: it times every request, refuses a Host header outside the
allow-list (DNS rebinding), and reads each body under the size limit and the timeout before a handler
sees it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from fastapi.responses import JSONResponse

from .api import LimitError, error_body, limit_response, overload_response
from .batcher import MicroBatcher
from .metrics import Metrics
from .settings import ServeSettings

ENTITIES_PATH = "/v1/entities"
ASGIApp = Callable[[dict, Callable[[], Awaitable[dict]], Callable[[dict], Awaitable[None]]], Awaitable[None]]


class GuardMiddleware:
    """Times every request for /metrics; refuses a Host outside the allow-list (400) and, while the queue
    is full, a tagging request (503) before reading its body; and reads each body under the size limit
    and the timeout before the app sees it, so that an oversized or endless body never reaches a handler."""

    def __init__(self, app: ASGIApp, settings: ServeSettings, metrics: Metrics, batcher: MicroBatcher | None = None):
        self.app, self.settings, self.metrics, self.batcher = app, settings, metrics, batcher
        self.hosts = settings.allowed_hosts()

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
            refused = self._check_host(scope) or self._shed(scope)
            if refused is not None:
                await refused(scope, receive, send_wrapper)  # type: ignore[arg-type]
                return
            body_receive = await self._read_body(scope, receive)
            if isinstance(body_receive, JSONResponse):
                await body_receive(scope, receive, send_wrapper)  # type: ignore[arg-type]
            else:
                scope.setdefault("state", {})["nerkit_deadline"] = time.monotonic() + self.settings.request_timeout_s
                await self.app(scope, body_receive, send_wrapper)
        finally:
            route = scope.get("route")
            known = ENTITIES_PATH if scope.get("path") == ENTITIES_PATH else "other"  # shed before routing
            path = getattr(route, "path", None) or known
            self.metrics.observe(scope.get("method", "?"), path, status["code"], time.perf_counter() - start)

    def _check_host(self, scope: dict) -> JSONResponse | None:
        """400 unless the Host header names an allowed host: a page on another site that rebinds its own
        name to 127.0.0.1 sends its own name as the Host, so it cannot reach a loopback server."""
        if self.hosts is None:
            return None
        raw = next((v for k, v in scope.get("headers", []) if k == b"host"), b"")
        host = host_name(raw.decode("latin-1"))
        if host in self.hosts:
            return None
        return JSONResponse(error_body("host", f"Host {host[:100]!r} is not allowed; the server accepts "
                                               f"{', '.join(sorted(self.hosts))} (serve.allow_host adds more)"),
                            400)

    def _shed(self, scope: dict) -> JSONResponse | None:
        """A tagging request while the queue is full is refused before its body is read or parsed: under
        overload the cheapest answer is the one that lets the event loop keep up."""
        if self.batcher is None or scope.get("method") != "POST" or scope.get("path") != ENTITIES_PATH:
            return None
        refused = self.batcher.overload(1)
        if refused is None:
            return None
        self.batcher.shed += 1
        return overload_response(refused.reason, refused.retry_after_s, self.settings.max_queue)

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


def host_name(header: str) -> str:
    """The host of a Host header, lower-cased, without the port or an IPv6 address's brackets."""
    h = header.strip().lower()
    if h.startswith("["):
        return h[1:h.find("]")] if "]" in h else h
    name, sep, port = h.rpartition(":")
    return name if sep and port.isdigit() else h
