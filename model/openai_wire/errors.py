"""Errors on the OpenAI wire, both ways: the statuses and types Loupe's /v1 answers with, and
the message inside any error shape a server sends."""

from __future__ import annotations

import json
from typing import Any

from ..events import EngineError

# Error kinds as HTTP statuses and OpenAI error types (Loupe's /v1 answers with these).
ERRORS: dict[str, tuple[int, str]] = {
    "bad_input": (400, "invalid_request_error"),
    "unauthorized": (401, "authentication_error"),
    "forbidden": (403, "permission_error"),
    "not_found": (404, "not_found_error"),
    "no_such_path": (404, "invalid_request_error"),
    "wrong_method": (405, "invalid_request_error"),
    "too_large": (413, "invalid_request_error"),
    "busy": (429, "rate_limit_error"),
    "unavailable": (503, "service_unavailable"),
    "unreachable": (503, "service_unavailable"),
    "worker_crashed": (503, "service_unavailable"),
    "worker_hung": (503, "service_unavailable"),
    "out_of_memory": (503, "service_unavailable"),
    "generation_failed": (500, "api_error"),
}
# The `code` of each kind, a string or null as OpenAI sends it (its own where it has one).
CODES: dict[str, str | None] = {
    "bad_input": None,
    "unauthorized": "invalid_api_key",
    "forbidden": "origin_not_allowed",
    "not_found": "model_not_found",
    "no_such_path": None,
    "wrong_method": None,
    "too_large": "request_too_large",
    "busy": "rate_limit_exceeded",
}
RETRY_AFTER_S = 1


class RequestError(ValueError):
    """A request body Loupe cannot take; one sentence, and the field it is about (`param`)."""

    def __init__(self, message: str, param: str | None = None):
        super().__init__(message)
        self.param = param


class WireError(Exception):
    """What came over the wire is not what the protocol promises; one sentence."""


def error_message(body: Any) -> str:
    """The message inside any of the error shapes servers send: `{"error": {"message"}}`
    (OpenAI, vLLM, Ollama, llama.cpp), `{"error": "..."}`, `{"detail": ...}` (FastAPI), text."""
    if isinstance(body, str):
        try:
            body = json.loads(body)
        except ValueError:
            return _one_line(body) or "no reason given"
    if isinstance(body, dict):
        inner = body.get("error", body.get("detail", body.get("message")))
        if isinstance(inner, dict):
            inner = inner.get("message", inner)
        if isinstance(inner, list):  # FastAPI's validation errors
            inner = "; ".join(str(item.get("msg", item)) for item in inner if item)
        if inner:
            return _one_line(str(inner))
    return _one_line(str(body)) or "no reason given"


def too_long(message: str) -> bool:
    """Whether a server's refusal says the prompt does not fit its context window."""
    lowered = message.lower()
    return any(
        words in lowered
        for words in (
            "maximum context length",
            "longer than the maximum model length",
            "exceed_context_size",
            "exceeds the available context",
            "context length",
            "context window",
        )
    )


def _one_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[0][:300] if lines else ""


def error_body(kind: str, message: str, param: str | None = None) -> tuple[int, dict[str, Any]]:
    """(status, body) for an error of `kind` (a key of ERRORS) in OpenAI's shape."""
    kind = kind if kind in ERRORS else "generation_failed"
    status, error_type = ERRORS[kind]
    # Loupe's own kinds ("worker_crashed", "out_of_memory", ...) name the rest.
    error = {"message": message, "type": error_type, "param": param, "code": CODES.get(kind, kind)}
    return status, {"error": error}


def engine_error_body(error: EngineError) -> tuple[int, dict[str, Any]]:
    return error_body(error.kind, error.message)
