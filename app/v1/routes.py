"""HTTP for Loupe's OpenAI-compatible API on the page's port: POST /v1/chat/completions (whole
or streamed as server-sent events), GET /v1/models, POST /v1/audio/transcriptions.

Everything that waits (decoding media, the engine's reply, a transcription) runs in threads, so
the page that shares this event loop never stalls; a client that goes away stops its reply.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route
from starlette.types import Message

from model import BUSY, ContextTrimmed, Engine, EngineError, ReplyEvent, ReplyStream
from model.openai_wire import sse

from ..config import Limits
from ..intake.speech import Speech
from .serving import (
    ApiError,
    ReplyWriter,
    chat_call,
    check_model,
    model_card,
    model_list,
    new_completion,
    served_model,
    stream_error,
    transcription,
)

log = logging.getLogger("loupe.api")
MB = 1024 * 1024
# Room beside the audio file for a multipart upload's other fields and boundaries.
FORM_SLACK_BYTES = MB
EVENT_STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
ANY_METHOD = ["GET", "POST", "PUT", "PATCH", "DELETE"]
# What /v1 serves, as an unknown path's answer lists it.
ENDPOINTS = {
    "/v1/chat/completions": "POST",
    "/v1/models": "GET",
    "/v1/models/{id}": "GET",
    "/v1/audio/transcriptions": "POST",
    "/v1/audio/translations": "POST",
}


class OpenAiApi:
    """The /v1 endpoints over the app's engine, speech recognizer and limits."""

    def __init__(self, engine: Engine, speech: Speech, limits: Limits):
        self.engine = engine
        self.speech = speech
        self.limits = limits
        self.created = int(time.time())

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/v1/chat/completions", _answering(self.chat_completions), methods=["POST"]),
            Route("/v1/models", _answering(self.models), methods=["GET"]),
            Route("/v1/audio/transcriptions", _answering(self.transcriptions), methods=["POST"]),
            Route("/v1/audio/translations", _answering(self.transcriptions), methods=["POST"]),
            Route("/v1/models/{model:path}", _answering(self.model), methods=["GET"]),
            # Last: any other path or method under /v1 is answered in OpenAI's error shape.
            Route("/v1/{rest:path}", _answering(self.no_such_route), methods=ANY_METHOD),
        ]

    async def models(self, request: Request) -> Response:
        return JSONResponse(model_list(served_model(self.engine), self.created))

    async def model(self, request: Request) -> Response:
        served = served_model(self.engine)
        check_model({"model": request.path_params["model"]}, served)
        return JSONResponse(model_card(served, self.created))

    async def no_such_route(self, request: Request) -> Response:
        path, method = request.url.path.rstrip("/"), request.method
        if path in ENDPOINTS or path.startswith("/v1/models/"):
            raise ApiError(
                "wrong_method", f"{path} takes {ENDPOINTS.get(path, 'GET')}, not {method}."
            )
        served = ", ".join(f"{verb} {name}" for name, verb in ENDPOINTS.items())
        raise ApiError("no_such_path", f"Invalid URL ({method} {path}): Loupe serves {served}.")

    async def chat_completions(self, request: Request) -> Response:
        limit = self.limits.max_file_mb * self.limits.max_files_per_message * MB
        body = await run_in_threadpool(_json, await _body(request, limit))
        served = served_model(self.engine)
        check_model(body, served)
        # A place in the queue first: a busy Loupe says so before decoding any media.
        slot = self.engine.reserve()
        if slot is None:
            raise ApiError.of(EngineError("busy", BUSY))
        with slot:
            call = await run_in_threadpool(chat_call, body, self.limits)
            # Off the loop: choosing an Auto image detail looks at every image.
            stream = await run_in_threadpool(self.engine.submit, call.request, slot)
        refusal = stream.refusal()
        if refusal is not None:  # busy, or no model: said at once, before any reply starts
            raise ApiError.of(refusal)
        writer = ReplyWriter(new_completion(served), call)
        events = _events(stream)
        pending: list[dict[str, Any]] = []
        try:
            # Up to the first text (or the end), so a refusal still gets its own status code.
            await _until_disconnect(request, stream, _read(events, writer, stream, pending, True))
            writer.image_detail = stream.image_detail  # settled before the first event
            if writer.error is not None:
                raise ApiError.of(writer.error)
            if call.stream:
                return StreamingResponse(
                    _event_stream(events, writer, stream, pending),
                    media_type="text/event-stream",
                    headers=EVENT_STREAM_HEADERS,
                )
            await _until_disconnect(request, stream, _read(events, writer, stream, pending, False))
        except BaseException:
            stream.cancel()
            raise
        stream.cancel()  # nothing left to stop; a no-op once finished
        if writer.error is not None:
            raise ApiError.of(writer.error)
        return JSONResponse(writer.whole())

    async def transcriptions(self, request: Request) -> Response:
        data = await _body(request, self.limits.max_file_mb * MB + FORM_SLACK_BYTES)
        try:
            async with _replayed(request, data).form(max_files=1, max_fields=16) as form:
                upload = form.get("file")
                if not isinstance(upload, UploadFile):
                    raise ApiError(
                        "bad_input",
                        "Send the audio (or video) as a multipart upload named file.",
                        "file",
                    )
                audio = await upload.read()
                name = upload.filename or "audio"
                response_format = str(form.get("response_format") or "json")
                language = str(form.get("language") or "") or None
        except HTTPException as exc:  # a malformed multipart body
            raise ApiError("bad_input", f"The upload could not be read: {exc.detail}") from None
        task = "translate" if request.url.path.endswith("/translations") else "transcribe"
        body, media_type = await run_in_threadpool(
            transcription, self.speech, self.limits, name, audio, response_format, language, task
        )
        if isinstance(body, str):
            return PlainTextResponse(body, media_type=media_type)
        return JSONResponse(body)


def routes(engine: Engine, speech: Speech, limits: Limits) -> list[BaseRoute]:
    """The /v1 routes, to serve beside /health."""
    return OpenAiApi(engine, speech, limits).routes()


# -- HTTP helpers -----------------------------------------------------------------------------


def _answering(
    endpoint: Callable[[Request], Awaitable[Response]],
) -> Callable[[Request], Awaitable[Response]]:
    """The endpoint, answering every failure in OpenAI's error shape."""

    async def answer(request: Request) -> Response:
        try:
            return await endpoint(request)
        except ApiError as exc:
            log.info("Refused %s: %s", request.url.path, exc)
            return JSONResponse(exc.body, exc.status, headers=exc.headers)
        except Exception:
            log.exception("%s failed", request.url.path)
            failed = ApiError("generation_failed", "Loupe failed to answer this request.")
            return JSONResponse(failed.body, failed.status)

    return answer


async def _body(request: Request, limit: int) -> bytes:
    """The request's body; 413 past `limit` bytes (checked as it arrives, not after)."""
    too_large = ApiError(
        "too_large",
        f"The request is larger than {limit / MB:.0f} MB, the most Loupe takes in one request.",
    )
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    parts, size = [], 0
    async for part in request.stream():
        size += len(part)
        if size > limit:
            raise too_large
        parts.append(part)
    return b"".join(parts)


def _json(data: bytes) -> dict[str, Any]:
    try:
        body = json.loads(data)
    except ValueError:
        raise ApiError("bad_input", "The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise ApiError("bad_input", "The request body must be a JSON object.")
    return body


def _replayed(request: Request, data: bytes) -> Request:
    """The request again, its body (already read, within the limit) given from memory."""

    async def receive() -> Message:
        return {"type": "http.request", "body": data, "more_body": False}

    return Request(request.scope, receive)


# -- replies ----------------------------------------------------------------------------------


async def _events(stream: ReplyStream) -> AsyncIterator[ReplyEvent]:
    """The stream's events, each awaited in a worker thread. A cancelled wait returns at once
    (the thread finishes on its own once the engine answers the cancel)."""
    iterator = iter(stream)
    while True:
        event = await anyio.to_thread.run_sync(next, iterator, None, abandon_on_cancel=True)
        if event is None:
            return
        yield event


async def _read(
    events: AsyncIterator[ReplyEvent],
    writer: ReplyWriter,
    stream: ReplyStream,
    chunks: list[dict[str, Any]],
    until_text: bool,
) -> None:
    """Events into `writer`, its chunks onto `chunks`: to the end, or to the first text."""
    async for event in events:
        chunks.extend(writer.read(event))
        if writer.stopped:
            stream.cancel()  # a stop string: the model need not go on
        if writer.done or (until_text and not isinstance(event, ContextTrimmed)):
            return


async def _until_disconnect(request: Request, stream: ReplyStream, work: Awaitable[None]) -> None:
    """Awaits `work`; if the client goes away meanwhile, its reply is cancelled."""

    async def watch() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass
        stream.cancel()

    async with anyio.create_task_group() as group:
        group.start_soon(watch)
        try:
            await work
        finally:
            group.cancel_scope.cancel()


async def _event_stream(
    events: AsyncIterator[ReplyEvent],
    writer: ReplyWriter,
    stream: ReplyStream,
    pending: list[dict[str, Any]],
) -> AsyncIterator[str]:
    """The reply as server-sent events. Starlette cancels this when the client disconnects;
    the `finally` then stops the model."""
    try:
        yield sse(writer.opening())
        for chunk in pending:
            yield sse(chunk)
        async for event in events:
            for chunk in writer.read(event):
                yield sse(chunk)
            if writer.stopped:
                stream.cancel()
            if writer.done:
                break
        if writer.error is not None:
            yield sse(stream_error(writer.error))
        yield sse("[DONE]")
    finally:
        stream.cancel()
