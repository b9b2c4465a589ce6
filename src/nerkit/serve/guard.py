"""The ASGI middleware in front of the app: it times every request and reads each body under the size
limit and the timeout before a handler sees it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from fastapi.responses import JSONResponse

from .api import LimitError, error_body, limit_response
from .metrics import Metrics
from .settings import ServeSettings

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
                await body_receive(scope, receive, send_wrapper)  # type: ignore[arg-type]
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
