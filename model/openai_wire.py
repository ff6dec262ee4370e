"""The OpenAI chat-completions wire format, both ways: the one place that knows it.

`RemoteEngine` uses the client half (a ChatRequest as a request body; a server's stream and
errors as ReplyEvents); Loupe's own /v1 uses the server half (a body's options as
GenerationOptions; ReplyEvents as chunks, completions and errors). So the two sides cannot
drift apart on field names, defaults or error shapes. No HTTP library here: only dicts.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from .audio import AUDIO_SAMPLE_RATE_HZ
from .events import EngineError, TextChunk
from .messages import IMAGE_TOKEN_BUDGETS, AudioClip, ChatRequest, GenerationOptions, Message
from .prompts import normalise_audio

# Engines count audio tokens per 40 ms (640 samples); a clip of a whole number of them is
# counted alike by vLLM and transformers.
AUDIO_SAMPLES_PER_TOKEN = 640
# Images up to this many pixels go as PNG (lossless: text in screenshots stays sharp); larger
# ones, photos mostly, as JPEG, a tenth of the size.
PNG_MAX_PIXELS = 2_000_000
JPEG_QUALITY = 92
# Request fields not every server takes: learnt per server, dropped once refused.
OPTIONAL_FIELDS = ("top_k", "mm_processor_kwargs", "stream_options", "reasoning_effort")
THOUGHT_OPEN, THOUGHT_CLOSE, THOUGHT_LABEL = "<|channel>", "<channel|>", "thought\n"
DATA_URL = re.compile(
    r"data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?:;[\w-]+=[^;,]*)*;base64,(?P<data>.*)", re.S
)

# Error kinds as HTTP statuses and OpenAI error types (Loupe's /v1 answers with these).
ERRORS: dict[str, tuple[int, str]] = {
    "bad_input": (400, "invalid_request_error"),
    "unauthorized": (401, "authentication_error"),
    "not_found": (404, "not_found_error"),
    "too_large": (413, "invalid_request_error"),
    "busy": (429, "rate_limit_error"),
    "unavailable": (503, "service_unavailable"),
    "unreachable": (503, "service_unavailable"),
    "worker_crashed": (503, "service_unavailable"),
    "worker_hung": (503, "service_unavailable"),
    "out_of_memory": (503, "service_unavailable"),
    "generation_failed": (500, "api_error"),
}
RETRY_AFTER_S = 1


class WireError(Exception):
    """What came over the wire is not what the protocol promises; one sentence."""


# -- client: a request as a body --------------------------------------------------------------


def image_url(image: Image.Image) -> str:
    """A PNG (or, for large photos, JPEG) data URL: the form every server takes."""
    buffer = io.BytesIO()
    if image.width * image.height <= PNG_MAX_PIXELS:
        image.save(buffer, "PNG")
        mime = "image/png"
    else:
        image.convert("RGB").save(buffer, "JPEG", quality=JPEG_QUALITY)
        mime = "image/jpeg"
    return f"data:{mime};base64,{base64.b64encode(buffer.getvalue()).decode()}"


def audio_part(clip: AudioClip) -> dict[str, Any]:
    """An `input_audio` part: the clip as the in-process model hears it (16 kHz mono, at most
    30 s), as 16-bit WAV padded with silence to a whole number of 40 ms audio tokens."""
    import soundfile

    samples = normalise_audio(clip)
    samples = np.pad(samples, (0, -len(samples) % AUDIO_SAMPLES_PER_TOKEN))
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, AUDIO_SAMPLE_RATE_HZ, format="WAV", subtype="PCM_16")
    data = base64.b64encode(buffer.getvalue()).decode()
    return {"type": "input_audio", "input_audio": {"data": data, "format": "wav"}}


def wire_message(message: Message) -> dict[str, Any]:
    """One message; media first, as Loupe shows them to the model."""
    if message.role != "user" or not (message.images or message.audio):
        return {"role": message.role, "content": message.text}
    content: list[dict[str, Any]] = [
        {"type": "image_url", "image_url": {"url": image_url(image)}} for image in message.images
    ]
    content += [audio_part(clip) for clip in message.audio]
    if message.text:
        content.append({"type": "text", "text": message.text})
    return {"role": "user", "content": content}


def request_body(
    request: ChatRequest, model: str, refused: Iterable[str] = (), stream: bool = True
) -> dict[str, Any]:
    """The body for POST /chat/completions. Temperature, top_p and max_tokens always go (some
    servers' defaults differ from the model's); fields in `refused` are left out."""
    options = request.options
    body: dict[str, Any] = {
        "model": model,
        "messages": [wire_message(message) for message in request.messages],
        "stream": stream,
        "temperature": options.temperature,
        "top_p": options.top_p,
        "max_tokens": options.max_new_tokens,
        "chat_template_kwargs": {"enable_thinking": options.thinking},
        "reasoning_effort": "medium" if options.thinking else "none",
        "top_k": options.top_k,
        "mm_processor_kwargs": {"max_soft_tokens": options.image_tokens},
    }
    if stream:
        body["stream_options"] = {"include_usage": True}
    for name in refused:
        body.pop(name, None)
    return body


def refused_fields(status: int, message: str) -> set[str]:
    """Which optional fields a server's refusal names: transformers serve says "Unexpected
    fields in the request: {'top_k'}"; vLLM "Per-request mm_processor_kwargs are disabled"."""
    if status not in (400, 422):
        return set()
    return {name for name in OPTIONAL_FIELDS if name in message}


# -- client: a stream and errors as events -----------------------------------------------------


def sse_data(lines: Iterable[str]) -> Iterator[dict[str, Any]]:
    """The JSON objects of a server-sent event stream, up to `[DONE]` or its end.

    Raises WireError for data that is not JSON, and for an error a server sends mid-stream
    (`{"error": {...}}` or `{"error": "..."}`).
    """
    for line in lines:
        if not line.startswith("data:"):
            continue  # blank separators, ": keep-alive" comments, event names
        data = line[5:].strip()
        if data == "[DONE]":
            return
        try:
            chunk = json.loads(data)
        except ValueError:
            if data.startswith('{"error"'):  # transformers serve does not escape its message
                raise WireError(f"The model server failed mid-reply: {data[10:-2]}") from None
            raise WireError("The model server sent a reply Loupe cannot read.") from None
        if not isinstance(chunk, dict):
            raise WireError("The model server sent a reply Loupe cannot read.")
        if "error" in chunk:
            raise WireError(f"The model server failed mid-reply: {error_message(chunk)}")
        yield chunk


@dataclass
class EventReader:
    """Turns chunks into text events: reasoning from `reasoning` or `reasoning_content`, or
    from `<|channel>thought ... <channel|>` left inside `content`; counts from `usage`."""

    completion_tokens: int | None = None
    prompt_tokens: int | None = None
    finish_reason: str | None = None
    text_chunks: int = 0
    _in_thought: bool = False
    _pending: str = ""
    _events: list[TextChunk] = field(default_factory=list)

    def read(self, chunk: dict[str, Any], sent_at: float = 0.0) -> list[TextChunk]:
        usage = chunk.get("usage") or {}
        if usage.get("completion_tokens") is not None:
            self.completion_tokens = int(usage["completion_tokens"])
        if usage.get("prompt_tokens") is not None:
            self.prompt_tokens = int(usage["prompt_tokens"])
        self._events = []
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or choice.get("message") or {}
            reasoning = delta.get("reasoning") or delta.get("reasoning_content")
            if reasoning:
                self._emit(reasoning, True, sent_at)
            if delta.get("content"):
                self._split(delta["content"], sent_at)
            self.finish_reason = choice.get("finish_reason") or self.finish_reason
        return self._events

    def end(self, sent_at: float = 0.0) -> list[TextChunk]:
        """What a marker-looking tail held back turned out to be."""
        self._events = []
        if self._pending:
            self._emit(self._pending, self._in_thought, sent_at)
            self._pending = ""
        return self._events

    def _split(self, text: str, sent_at: float) -> None:
        text = self._pending + text
        self._pending = ""
        while text:
            marker = THOUGHT_CLOSE if self._in_thought else THOUGHT_OPEN
            at = text.find(marker)
            if at < 0:
                keep = _marker_prefix_length(text, marker)  # a marker may be split in two
                self._emit(text[: len(text) - keep], self._in_thought, sent_at)
                self._pending = text[len(text) - keep :]
                return
            self._emit(text[:at], self._in_thought, sent_at)
            text = text[at + len(marker) :]
            self._in_thought = not self._in_thought
            if self._in_thought and text.startswith(THOUGHT_LABEL):
                text = text[len(THOUGHT_LABEL) :]

    def _emit(self, text: str, thinking: bool, sent_at: float) -> None:
        if text:
            self.text_chunks += 1
            self._events.append(TextChunk(text, thinking=thinking, sent_at=sent_at))


def _marker_prefix_length(text: str, marker: str) -> int:
    for size in range(min(len(marker) - 1, len(text)), 0, -1):
        if text.endswith(marker[:size]):
            return size
    return 0


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


# -- server: a body's options, events as chunks, errors ----------------------------------------


def options_from_body(body: dict[str, Any]) -> GenerationOptions:
    """GenerationOptions from a request body; absent fields keep the model's defaults.
    Raises ValueError with one sentence for values out of range."""
    defaults = GenerationOptions()
    kwargs = body.get("chat_template_kwargs") or {}
    if "enable_thinking" in kwargs:
        thinking = bool(kwargs["enable_thinking"])
    else:
        effort = body.get("reasoning_effort")
        thinking = effort not in (None, "none", "minimal")
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
    budget = (body.get("mm_processor_kwargs") or {}).get("max_soft_tokens")
    if budget is not None and budget not in IMAGE_TOKEN_BUDGETS:
        raise ValueError(
            f"mm_processor_kwargs.max_soft_tokens must be one of {IMAGE_TOKEN_BUDGETS}."
        )
    values = {
        "temperature": _number(body, "temperature", float, 0.0, 2.0, defaults.temperature),
        "top_p": _number(body, "top_p", float, 0.0, 1.0, defaults.top_p),
        "top_k": _number(body, "top_k", int, 0, 1_000_000, defaults.top_k),
        "max_new_tokens": int(max_tokens) if max_tokens else defaults.max_new_tokens,
        "thinking": thinking,
        "image_tokens": budget or defaults.image_tokens,
        # vLLM's extension: the end of the reply is held back until this many tokens are out.
        "min_new_tokens": _number(body, "min_tokens", int, 0, 1_000_000, 0),
    }
    if values["max_new_tokens"] < 1:
        raise ValueError("max_tokens must be at least 1.")
    if values["min_new_tokens"] > values["max_new_tokens"]:
        raise ValueError("min_tokens must not be more than max_tokens.")
    return GenerationOptions(**values)


def _number(body: dict[str, Any], name: str, kind: type, low: float, high: float, default: Any):
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number.")
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {low:g} and {high:g}.")
    return kind(value)


def decode_data_url(url: str) -> tuple[str, bytes]:
    """(declared type, bytes) of a base64 data URL. Raises ValueError with one sentence for
    anything else: Loupe never fetches a URL or opens a path a client names."""
    if not isinstance(url, str) or not url.startswith("data:"):
        raise ValueError(
            "Loupe takes images only as base64 data URLs (data:image/png;base64,...); it does "
            "not fetch web addresses or open file paths."
        )
    found = DATA_URL.fullmatch(url)
    if found is None:
        raise ValueError("The data URL is not base64; send data:image/png;base64,... .")
    try:
        return found["mime"] or "", base64.b64decode(found["data"], validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("The data URL's base64 data is damaged.") from None


class RequestError(ValueError):
    """A request body Loupe cannot take; one sentence, and the field it is about (`param`)."""

    def __init__(self, message: str, param: str | None = None):
        super().__init__(message)
        self.param = param


@dataclass(frozen=True)
class MediaPart:
    """An image or audio part of a request's message, still undecoded: `kind` is what the part
    says it is ("image" for image_url, "audio" for input_audio); `param` names it in errors."""

    kind: str
    data: bytes
    param: str


@dataclass(frozen=True)
class WireMessage:
    """A request's message as the server reads it: role, its text parts joined, its media."""

    role: str
    text: str
    media: tuple[MediaPart, ...] = ()


# Roles as Loupe's model takes them; OpenAI's "developer" is the system prompt by a newer name.
ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}
MAX_STOPS = 16


def messages_from_body(body: dict[str, Any]) -> list[WireMessage]:
    """The messages of a chat-completions body, media decoded from base64 but not yet checked
    (that is the intake's work). Raises RequestError for anything Loupe does not take: other
    roles (tools), other part types, media outside the person's messages, URLs and paths."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RequestError("messages must be a list of at least one message.", "messages")
    return [_wire_message(message, f"messages[{index}]") for index, message in enumerate(messages)]


def _wire_message(message: Any, param: str) -> WireMessage:
    if not isinstance(message, dict):
        raise RequestError(f"{param} must be an object with a role and content.", param)
    role = message.get("role")
    role = ROLES.get(role) if isinstance(role, str) else None
    if role is None:
        raise RequestError(
            f"{param}.role must be system, user or assistant; Loupe's model has no tools.",
            f"{param}.role",
        )
    content = message.get("content")
    if content is None or isinstance(content, str):
        return WireMessage(role, content or "")
    if not isinstance(content, list):
        raise RequestError(f"{param}.content must be a string or a list of parts.", param)
    texts: list[str] = []
    media: list[MediaPart] = []
    for index, part in enumerate(content):
        where = f"{param}.content[{index}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            text = part.get("text")
            if not isinstance(text, str):
                raise RequestError(f"{where}.text must be a string.", where)
            texts.append(text)
        elif kind in ("image_url", "input_audio"):
            if role != "user":
                raise RequestError("Only the user's messages can carry images or audio.", where)
            media.append(_media_part(part, kind, where))
        else:
            raise RequestError(
                f"{where} is a part of type {kind!r}; Loupe takes text, image_url (base64 data "
                "URLs) and input_audio parts.",
                where,
            )
    return WireMessage(role, "\n".join(texts), tuple(media))


def _media_part(part: dict[str, Any], kind: str, where: str) -> MediaPart:
    try:
        if kind == "image_url":
            url = part.get("image_url")
            url = url.get("url") if isinstance(url, dict) else url
            return MediaPart("image", decode_data_url(url)[1], where)
        audio = part.get("input_audio")
        data = audio.get("data") if isinstance(audio, dict) else None
        if not isinstance(data, str):
            raise ValueError("input_audio must carry the audio file as base64 in its data.")
        return MediaPart("audio", _base64(data), where)
    except RequestError:
        raise
    except ValueError as exc:
        raise RequestError(str(exc), where) from None


def _base64(data: str) -> bytes:
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("The audio's base64 data is damaged.") from None


def stop_strings(body: dict[str, Any]) -> tuple[str, ...]:
    """The body's `stop`: a string or a list of them; RequestError for anything else."""
    stop = body.get("stop")
    if stop is None:
        return ()
    stops = [stop] if isinstance(stop, str) else stop
    if not isinstance(stops, list) or not all(isinstance(item, str) for item in stops):
        raise RequestError("stop must be a string or a list of strings.", "stop")
    if len(stops) > MAX_STOPS:
        raise RequestError(f"stop takes at most {MAX_STOPS} strings.", "stop")
    return tuple(item for item in stops if item)


def error_body(kind: str, message: str, param: str | None = None) -> tuple[int, dict[str, Any]]:
    """(status, body) for an error of `kind` (a key of ERRORS) in OpenAI's shape."""
    status, error_type = ERRORS.get(kind, ERRORS["generation_failed"])
    error = {"message": message, "type": error_type, "param": param, "code": status}
    return status, {"error": error}


def engine_error_body(error: EngineError) -> tuple[int, dict[str, Any]]:
    return error_body(error.kind, error.message)


@dataclass(frozen=True)
class Completion:
    """What every chunk of one reply repeats."""

    id: str
    created: int
    model: str

    def chunk(
        self,
        delta: dict[str, Any] | None = None,
        finish_reason: str | None = None,
        usage: dict[str, int] | None = None,
    ) -> dict[str, Any]:
        choices = (
            []
            if delta is None
            else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]
        )
        chunk = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": choices,
        }
        if usage is not None:
            chunk["usage"] = usage
        return chunk

    def whole(
        self, content: str, reasoning: str, finish_reason: str, usage: dict[str, int]
    ) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": content}
        if reasoning:
            message["reasoning_content"] = reasoning
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [
                {"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}
            ],
            "usage": usage,
        }


def delta_of(event: TextChunk) -> dict[str, str]:
    """A text event as a delta; reasoning goes in `reasoning_content`, which the openai
    client, llama.cpp's and LM Studio's readers, and Loupe's own EventReader all take."""
    return {"reasoning_content" if event.thinking else "content": event.text}


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def sse(payload: dict[str, Any] | str) -> str:
    """One server-sent event."""
    data = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
    return f"data: {data}\n\n"
