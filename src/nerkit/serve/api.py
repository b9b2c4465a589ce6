"""The request and response models of the HTTP API (they validate bodies and write the OpenAPI schema),
and the JSON error body every refusal answers with."""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictStr


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


class LimitError(Exception):
    """A request over one of the configured limits; becomes a 413/422 JSON error naming the limit."""

    def __init__(self, status: int, limit: str, value: float, message: str):
        super().__init__(message)
        self.status, self.limit, self.value, self.message = status, limit, value, message


def error_body(kind: str, message: str, **extra: Any) -> dict:
    return {"error": {"type": kind, "message": message, **extra}}


def limit_response(e: LimitError) -> JSONResponse:
    return JSONResponse(error_body("limit", e.message, limit=e.limit, max=e.value), status_code=e.status)


def overload_response(reason: str, retry_after_s: int, max_queue: int) -> JSONResponse:
    """503 at once with Retry-After: the queue is full. The connection is closed too, so that under
    overload a client's idle socket does not hold a descriptor the server needs."""
    return JSONResponse(error_body("overload", f"the server is busy: {reason}", limit="max_queue", max=max_queue),
                        503, headers={"Retry-After": str(retry_after_s), "Connection": "close"})
