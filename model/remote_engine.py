"""The remote engine: Gemma on an OpenAI-compatible server (vLLM, Ollama, llama.cpp, LM Studio,
`transformers serve`, another Loupe), behind the same boundary as the in-process one.

Up to `concurrency` replies stream at once, each on its own thread and HTTP stream (the server
batches them); more wait in a bounded queue, and past it the answer is "busy". A connection
thread finds the model at start and again whenever the server stops answering, with back-off,
so Loupe recovers by itself when the server is back. Cancelling a reply closes its HTTP stream,
which is what makes vLLM, Ollama and transformers serve abort the generation.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from dataclasses import replace
from typing import Any

import httpx

from . import detail
from .config import RemoteEngineConfig
from .engine import EngineStatus, LoadState, ModelInfo, QueueSlot, ReplyStream, RequestQueue
from .events import (
    STOPPED_BEFORE_START,
    ContextTrimmed,
    EngineError,
    ErrorKind,
    Finished,
    Timing,
)
from .messages import DEFAULT_IMAGE_TOKENS, ChatRequest, turn_starts
from .openai_wire import (
    EventReader,
    WireError,
    error_message,
    refused_fields,
    request_body,
    sse_data,
    too_long,
)

log = logging.getLogger("loupe.engine")
CONNECT_TIMEOUT_S = 5.0
# Waits between tries to reach a server that does not answer: quick at first, then every 30 s.
BACKOFF_S = (1.0, 2.0, 4.0, 8.0, 15.0, 30.0)
# A server that says it is loading its model is there and ready any moment: asked this often.
LOADING_POLL_S = 1.0
# How long a request sent while Loupe first connects waits for the connection.
FIRST_CONNECT_WAIT_S = 30.0
SETTINGS_NOTICE = {
    "top_k": "top-k",
    "mm_processor_kwargs": "the image detail",
    "reasoning_effort": "reasoning effort",
    "stream_options": "streamed usage counts",
}


class _Refused(Exception):
    def __init__(self, kind: ErrorKind, message: str):
        super().__init__(message)
        self.error = EngineError(kind, message)


class RemoteEngine:
    """Drives a model on an OpenAI-compatible server. Create, `start()`, then `submit()`."""

    def __init__(
        self,
        config: RemoteEngineConfig,
        queue_size: int = 8,
        transport: httpx.BaseTransport | None = None,
    ):
        """`transport` replaces the network (unit tests)."""
        self._config = config
        self._where = config.public_url
        self._down = f"The model server at {self._where} is not answering; Loupe keeps trying."
        self._key_refused = (
            f"The model server at {self._where} refused Loupe's API key; check --engine-api-key."
        )
        self._loading = (
            f"The model server at {self._where} is still loading its model; Loupe keeps trying."
        )
        headers = {"Authorization": f"Bearer {config.api_key}"} if config.api_key else {}
        self._http = httpx.Client(
            base_url=config.url.rstrip("/"),
            headers=headers,
            timeout=httpx.Timeout(config.timeout_s, connect=CONNECT_TIMEOUT_S),
            limits=httpx.Limits(max_connections=config.concurrency + 2),
            transport=transport,
        )
        self._queue = RequestQueue(queue_size)
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._responses: dict[int, httpx.Response] = {}  # request id -> its open HTTP stream
        self._running = 0
        self._model = config.model
        self._refused: set[str] = set()  # optional fields this server turned down
        self._load_state: LoadState = "loading"
        self._progress = f"Connecting to the model server at {self._where}"
        self._error: str | None = None
        self._info: ModelInfo | None = None
        self._ready = threading.Event()
        self._lost = threading.Event()  # a reply found the server gone: reconnect
        self._closed = threading.Event()
        self._threads = [
            threading.Thread(target=self._connect_loop, name="loupe-remote", daemon=True)
        ]
        self._threads += [
            threading.Thread(target=self._serve, name=f"loupe-remote-{n}", daemon=True)
            for n in range(config.concurrency)
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def status(self) -> EngineStatus:
        with self._lock:
            refused = [SETTINGS_NOTICE[name] for name in sorted(self._refused)]
            notice = (
                f"The server does not take {', '.join(refused)} per request; its own settings "
                "apply."
                if refused
                else None
            )
            return EngineStatus(
                self._load_state,
                self._progress,
                self._info,
                busy=self._running > 0,
                queued=self._queue.waiting(),
                error=self._error,
                notice=notice,
                kind="remote",
            )

    def reserve(self) -> QueueSlot | None:
        return self._queue.reserve()

    def submit(self, request: ChatRequest, slot: QueueSlot | None = None) -> ReplyStream:
        request_id = next(self._ids)
        stream = ReplyStream(request_id, lambda: self._close_stream(request_id))
        if self._load_state == "error":
            stream.put(EngineError("unreachable", self._error or self._down))
            return stream
        # The server's window is learnt only from its refusal (see _open).
        request, stream.image_detail = detail.resolve(request)
        self._queue.offer(stream, request, slot)
        return stream

    def close(self) -> None:
        self._closed.set()
        self._lost.set()
        self._queue.close(readers=self._config.concurrency)
        with self._lock:
            for response in self._responses.values():
                response.close()
        self._http.close()

    # -- finding the model -------------------------------------------------------------------

    def _connect_loop(self) -> None:
        tries = 0
        while not self._closed.is_set():
            if self._ready.is_set():
                self._lost.wait()
                self._lost.clear()
                continue
            problem = self._connect()
            if problem is None:
                tries = 0
                continue
            self._set(load_state="error", error=problem, progress="")
            if tries == 0:
                log.warning("%s", problem)
            backoff = BACKOFF_S[min(tries, len(BACKOFF_S) - 1)]
            self._closed.wait(LOADING_POLL_S if problem == self._loading else backoff)
            tries += 1

    def _connect(self) -> str | None:
        """Ask the server which models it serves; the problem in one sentence, or None once
        the model to ask for is known."""
        try:
            response = self._http.get("/models")
        except httpx.HTTPError:
            return self._down
        if response.status_code in (401, 403):
            return self._key_refused
        if response.status_code == 503:  # what llama.cpp's server answers while it loads
            return self._loading
        listed = _model_ids(response)
        chosen = self._config.model
        if chosen and listed and chosen not in listed:
            return (
                f'The model server at {self._where} does not serve "{chosen}"; it serves '
                f"{', '.join(listed)}. Choose one with --engine-model."
            )
        if not chosen and len(listed) != 1:
            many = f"several models ({', '.join(listed)})" if listed else "no models"
            return (
                f"The model server at {self._where} lists {many}; name the one to use with "
                "--engine-model."
            )
        self._model = chosen or listed[0]
        info = ModelInfo(self._model, False, "remote", None, engine="remote", url=self._where)
        was_lost = self._error is not None
        self._set(load_state="ready", info=info, error=None, progress="Ready")
        self._ready.set()
        log.info("%s %s at %s", "Reconnected:" if was_lost else "Ready:", self._model, self._where)
        return None

    def _server_lost(self) -> None:
        """A reply found the server gone: say so, and look for it again."""
        if self._ready.is_set():
            self._ready.clear()
            self._set(load_state="error", error=self._down, progress="")
            log.warning("%s", self._down)
            self._lost.set()

    # -- answering ---------------------------------------------------------------------------

    def _serve(self) -> None:
        while (item := self._queue.take()) is not None:
            stream, request = item
            with self._lock:
                self._running += 1
            try:
                self._answer(stream, request)
            except _Refused as refusal:
                stream.put(refusal.error)
            except Exception as exc:  # a reply thread must outlive any one reply
                log.exception("A reply from the model server failed.")
                stream.put(EngineError("generation_failed", f"The reply failed: {exc}"))
            finally:
                with self._lock:
                    self._running -= 1
                    self._responses.pop(stream.request_id, None)

    def _answer(self, stream: ReplyStream, request: ChatRequest) -> None:
        if stream.cancelled.is_set():
            stream.put(STOPPED_BEFORE_START)
            return
        if not self._ready.wait(FIRST_CONNECT_WAIT_S):
            raise _Refused("unreachable", self._error or self._down)
        started = time.monotonic()
        response, dropped = self._open(stream, request)
        if response is None:  # cancelled before the server answered
            stream.put(STOPPED_BEFORE_START)
            return
        if dropped:
            stream.put(ContextTrimmed(dropped))
        reader = EventReader()
        first: float | None = None
        try:
            for chunk in sse_data(response.iter_lines()):
                for event in reader.read(chunk, time.time()):
                    first = first or time.monotonic()
                    stream.put(event)
            for event in reader.end(time.time()):
                stream.put(event)
        except WireError as exc:
            raise _Refused("generation_failed", str(exc)) from None
        except httpx.HTTPError:
            if not stream.cancelled.is_set():
                self._server_lost()
                raise _Refused(
                    "unreachable",
                    "The model server stopped answering in the middle of the reply.",
                ) from None
        finally:
            response.close()
        cancelled = stream.cancelled.is_set()
        if reader.finish_reason is None and not cancelled:
            raise _Refused("unreachable", "The model server ended the reply without finishing it.")
        stream.put(Finished(_timing(started, first, reader), cancelled=cancelled))

    def _open(self, stream: ReplyStream, request: ChatRequest) -> tuple[httpx.Response | None, int]:
        """Send the request; the open 200 stream and how many old messages were left out.

        A field the server turns down is learnt and left out from then on. A prompt too long
        for its context first has an image budget Auto chose above 280 stepped down, then loses
        its oldest whole turns, one more each try.
        """
        messages, options, dropped = request.messages, request.options, 0
        while True:
            left_out = set(self._refused)  # another reply may learn more meanwhile
            if "mm_processor_kwargs" in left_out:
                stream.image_detail = None  # the server's own budget applies, unknown here
            body = request_body(ChatRequest(messages, options), self._model, left_out)
            try:
                response = self._http.send(
                    self._http.build_request("POST", "/chat/completions", json=body), stream=True
                )
            except httpx.HTTPError:
                self._server_lost()
                raise _Refused("unreachable", self._down) from None
            with self._lock:
                self._responses[stream.request_id] = response
            if stream.cancelled.is_set():
                response.close()
                return None, dropped
            if response.status_code == 200:
                return response, dropped
            status, message = response.status_code, error_message(response.read().decode())
            response.close()
            refused = refused_fields(status, message) - left_out
            if refused:
                with self._lock:
                    learnt, self._refused = refused - self._refused, self._refused | refused
                if learnt:
                    log.info(
                        "The model server does not take %s; Loupe leaves it out from now on.",
                        ", ".join(sorted(learnt)),
                    )
                continue
            chosen = stream.image_detail
            if status == 400 and too_long(message) and _may_step_down(chosen):
                lower = detail.next_lower(chosen.tokens)
                reason = f"{chosen.reason}; {chosen.tokens} did not fit the server's window"
                stream.image_detail = replace(chosen, tokens=lower, reason=reason)
                options = replace(options, image_tokens=lower)
                continue
            starts = turn_starts(messages)
            if status == 400 and too_long(message) and starts:
                kept_head = 1 if messages[0].role == "system" else 0
                dropped += starts[0] - kept_head
                messages = messages[:kept_head] + messages[starts[0] :]
                continue
            kind, sentence = self._refusal(status, message)
            if kind in ("bad_input", "generation_failed") and any(m.video for m in messages):
                sentence = (  # the server's own words rarely say it was the video
                    "The model server did not take this video (vLLM reads video; many servers "
                    f"do not): {message.rstrip('.')}."
                )
            raise _Refused(kind, sentence)

    def _refusal(self, status: int, message: str) -> tuple[ErrorKind, str]:
        """A server's refusal as an error kind and one sentence."""
        if status in (401, 403):
            return "unavailable", self._key_refused
        if status == 404 or "pinned" in message or "does not exist" in message:
            return "unavailable", (
                f'The model server does not serve "{self._model}"; check --engine-model.'
            )
        if status == 400 and too_long(message):
            return "bad_input", (
                "This message is too long for the model's context window; shorten it or send "
                "fewer or smaller files."
            )
        if status in (429, 503):
            return "busy", "The model server is busy; try again in a moment."
        if status in (400, 413, 422):
            return "bad_input", f"The model server refused this message: {message}"
        return "generation_failed", f"The model server failed to answer: {message}"

    def _close_stream(self, request_id: int) -> None:
        with self._lock:
            response = self._responses.get(request_id)
        if response is not None:
            response.close()  # the reading thread's next read fails; the server aborts

    def _set(self, **fields: object) -> None:
        with self._lock:
            for name, value in fields.items():
                setattr(self, f"_{name}", value)


def _may_step_down(chosen: detail.ImageDetail | None) -> bool:
    """Auto chose this budget, above 280: it gives way before the conversation's turns do."""
    return chosen is not None and chosen.auto and chosen.tokens > DEFAULT_IMAGE_TOKENS


def _model_ids(response: httpx.Response) -> list[str]:
    """The model ids a /models answer lists; none when it is not the OpenAI shape."""
    try:
        data: Any = response.json().get("data") if response.status_code == 200 else None
    except ValueError:
        return []
    if not isinstance(data, list):
        return []
    return [str(item["id"]) for item in data if isinstance(item, dict) and item.get("id")]


def _timing(started: float, first: float | None, reader: EventReader) -> Timing:
    counted = reader.completion_tokens
    tokens = counted if counted is not None else reader.text_chunks
    return Timing.measured(started, first, time.monotonic(), tokens, reader.prompt_tokens or 0)
