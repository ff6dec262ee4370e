"""What Loupe's OpenAI-compatible API does, apart from HTTP: a body becomes a ChatRequest through
the same intake as the page's uploads; a reply's events become chunks or one completion; an
upload becomes a transcript. The wire format itself is model/openai_wire's."""

from __future__ import annotations

import re
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from model import (
    AsrError,
    ChatRequest,
    Engine,
    EngineError,
    Finished,
    ImageDetail,
    ReplyEvent,
    TextChunk,
    ToolCall,
    Transcript,
)
from model.openai_wire import (
    RETRY_AFTER_S,
    Completion,
    RequestError,
    call_to_wire,
    chat_fields,
    delta_of,
    engine_error_body,
    error_body,
    messages_from_body,
    partial_suffix,
    stop_strings,
    usage,
)

from ..config import Limits
from ..intake.api_messages import model_messages
from ..intake.files import check_audio_file
from ..intake.probe import MediaError
from ..intake.speech import Speech
from ..tasks.describe import is_description
from ..tasks.reply import Reply

OWNER = "loupe"
TRANSCRIPT_FORMATS = ("json", "text", "verbose_json", "srt", "vtt")


class ApiError(Exception):
    """An answer other than success, in OpenAI's error shape: its status, body and headers."""

    def __init__(self, kind: str, message: str, param: str | None = None):
        super().__init__(message)
        self.status, self.body = error_body(kind, message, param)

    @classmethod
    def of(cls, error: EngineError) -> ApiError:
        refused = cls(error.kind, error.message)
        refused.status, refused.body = engine_error_body(error)
        return refused

    @property
    def headers(self) -> dict[str, str]:
        """Busy (429) and not-yet-ready (503) answers say when to try again."""
        return {"Retry-After": str(RETRY_AFTER_S)} if self.status in (429, 503) else {}


# -- the model ------------------------------------------------------------------------------------


def served_model(engine: Engine) -> str:
    """The id the API serves the model under; 503 while it loads or when none could load."""
    status = engine.status()
    if status.load_state == "ready" and status.info is not None:
        return status.info.name
    if status.load_state == "loading":
        raise ApiError("unavailable", f"The model is still loading ({status.progress}); try again.")
    raise ApiError("unavailable", status.error or "No model is loaded.")


def model_list(name: str, created: int) -> dict[str, Any]:
    """GET /v1/models: the one model Loupe serves."""
    return {"object": "list", "data": [model_card(name, created)]}


def model_card(name: str, created: int) -> dict[str, Any]:
    """GET /v1/models/{id} of the served model (and its entry in the list)."""
    return {"id": name, "object": "model", "created": created, "owned_by": OWNER}


def check_model(body: dict[str, Any], served: str) -> None:
    """A request may name the served model or none; another name is 404, as vLLM answers."""
    model = body.get("model")
    if model not in (None, "", served):
        raise ApiError(
            "not_found", f"The model `{model}` does not exist; Loupe serves `{served}`.", "model"
        )


# -- requests -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChatCall:
    """A chat-completions request, read and checked."""

    request: ChatRequest
    stream: bool = False
    include_usage: bool = False
    stops: tuple[str, ...] = ()
    note: str = ""  # the reply starts with it: pages of the last message's PDFs left out


def chat_call(body: dict[str, Any], limits: Limits) -> ChatCall:
    """The request a body asks for, its media decoded through the page's intake. ApiError (400)
    says in one sentence what is wrong. Decodes files: call it off the event loop."""
    if body.get("n") not in (None, 1):
        raise ApiError("bad_input", "Loupe writes one reply per request; n must be 1.", "n")
    for name in ("logprobs", "top_logprobs"):
        if body.get(name) not in (None, False, 0):
            raise ApiError(
                "bad_input", f"Loupe does not return log probabilities; leave out {name}.", name
            )
    try:
        fields = chat_fields(body)
        options = fields.options()
        stops = stop_strings(body)
        wire = messages_from_body(body)
        messages, note = model_messages(wire, limits, is_description, options.tools)
    except RequestError as exc:
        raise ApiError("bad_input", str(exc), exc.param) from None
    except ValueError as exc:  # options out of range; MediaError is one too
        raise ApiError("bad_input", str(exc)) from None
    request = ChatRequest(messages, options)
    return ChatCall(request, bool(fields.stream), fields.include_usage, stops, note)


# -- replies --------------------------------------------------------------------------------------


def new_completion(model: str) -> Completion:
    return Completion(f"chatcmpl-{uuid.uuid4().hex}", int(time.time()), model)


@dataclass
class ReplyWriter:
    """A reply's events as chat-completion chunks, and as one completion at the end.

    Text is held back while it may be the start of a stop string; once one appears the reply
    ends there (`stopped`: the caller cancels the engine's stream and reads on to Finished).

    Loupe's own facts about the reply go in an `x_loupe` object of the first chunk and of the
    whole completion, which OpenAI clients ignore: `dropped_messages` (old messages left out to
    fit the context window) and `image_detail` (the image budget: `tokens`, `auto`, `reason`).
    """

    completion: Completion
    call: ChatCall
    content: str = ""  # the reply as sent: cut at a stop string
    reply: Reply = field(default_factory=Reply)  # the engine's events as read (tasks.reply)
    image_detail: ImageDetail | None = None
    finish_reason: str | None = None
    usage: dict[str, int] | None = None
    error: EngineError | None = None
    stopped: bool = False
    _held: str = ""
    _chunks: list[dict[str, Any]] = field(default_factory=list)

    @property
    def done(self) -> bool:
        return self.finish_reason is not None or self.error is not None

    def __post_init__(self) -> None:
        # The reply starts with the call's note, as the page's and /chat's replies do.
        if not self.content:
            self.content = self.lead

    @property
    def lead(self) -> str:
        """What the reply starts with before the model's text: the call's note, if any."""
        return f"*{self.call.note}*\n\n" if self.call.note else ""

    def opening(self) -> dict[str, Any]:
        """The first chunk: the role, the note the reply starts with (if any), and Loupe's
        facts about the reply (see the class). The model's text, even text already read, comes
        in the chunks after it, so that the chunks joined are the reply exactly."""
        chunk = self.completion.chunk({"role": "assistant", "content": self.lead})
        if self.extension():
            chunk["x_loupe"] = self.extension()
        return chunk

    def extension(self) -> dict[str, Any]:
        """The `x_loupe` object: what of dropped messages and image detail applies."""
        facts: dict[str, Any] = {}
        if self.reply.dropped:
            facts["dropped_messages"] = self.reply.dropped
        if self.image_detail is not None:
            facts["image_detail"] = asdict(self.image_detail)
        return facts

    def read(self, event: ReplyEvent) -> list[dict[str, Any]]:
        """The chunks this event adds (none for some)."""
        self._chunks = []
        if self.stopped and isinstance(event, TextChunk):
            return self._chunks  # past a stop string: the reply has ended
        if isinstance(event, ToolCall) and not event.id:  # named as OpenAI names calls
            event = replace(event, id=f"call_{uuid.uuid4().hex[:24]}")
        self.reply.take(event)
        if isinstance(event, ToolCall):
            index = len(self.reply.tool_calls) - 1
            self._send({"tool_calls": [call_to_wire(event, index)]})
        elif isinstance(event, TextChunk):
            if event.thinking:
                self._send(delta_of(event))
            else:
                self._text(event.text)
        elif isinstance(event, Finished):
            self._send_text(self._held)  # no stop string came after all
            self._held = ""
            timing = event.timing
            length = timing.tokens >= self.call.request.options.max_new_tokens
            self.finish_reason = "length" if length and not self.stopped else "stop"
            if self.reply.tool_calls and self.finish_reason == "stop":
                self.finish_reason = "tool_calls"  # as OpenAI says it; "length" if cut short
            self.usage = usage(timing.prompt_tokens, timing.tokens)
            self._chunks.append(self.completion.chunk({}, self.finish_reason))
            if self.call.include_usage:
                self._chunks.append(self.completion.chunk(None, usage=self.usage))
        elif isinstance(event, EngineError):
            self.error = event
        return self._chunks

    def whole(self) -> dict[str, Any]:
        """The finished reply as one chat.completion."""
        finish_reason, used = self.finish_reason or "stop", self.usage or usage(0, 0)
        calls = [call_to_wire(call) for call in self.reply.tool_calls]
        body = self.completion.whole(
            self.content, self.reply.thinking, finish_reason, used, calls
        )
        if self.extension():
            body["x_loupe"] = self.extension()
        return body

    def _text(self, text: str) -> None:
        text = self._held + text
        found = [at for at in (text.find(stop) for stop in self.call.stops) if at >= 0]
        if found:
            self._send_text(text[: min(found)])
            self._held, self.stopped = "", True
            return
        keep = max((partial_suffix(text, stop) for stop in self.call.stops), default=0)
        self._send_text(text[: len(text) - keep])
        self._held = text[len(text) - keep :]

    def _send_text(self, text: str) -> None:
        if text:
            self.content += text
            self._send({"content": text})

    def _send(self, delta: dict[str, Any]) -> None:
        self._chunks.append(self.completion.chunk(delta))


def stream_error(error: EngineError) -> dict[str, Any]:
    """What a stream sends for a failure after its 200 went out."""
    return engine_error_body(error)[1]


# -- transcriptions -------------------------------------------------------------------------------


def transcription(
    speech: Speech,
    limits: Limits,
    name: str,
    data: bytes,
    response_format: str,
    language: str | None = None,
    task: str = "transcribe",
) -> tuple[dict[str, Any] | str, str]:
    """(body, media type) for POST /v1/audio/transcriptions (and /translations, `task`
    "translate"): the upload (audio, or a video for its sound) through the intake's checks,
    then the speech recognizer. Blocks for the transcription: call it off the loop."""
    if response_format not in TRANSCRIPT_FORMATS:
        raise ApiError(
            "bad_input",
            f"Loupe writes transcripts as {', '.join(TRANSCRIPT_FORMATS)}.",
            "response_format",
        )
    with tempfile.TemporaryDirectory(prefix="loupe-api-") as folder:
        path = Path(folder, _file_name(name))
        path.write_bytes(data)
        try:
            check_audio_file(path, limits, path.name, videos=True)
        except MediaError as exc:
            raise ApiError("bad_input", str(exc), "file") from None
        try:
            transcript = speech.transcribe(str(path), language or None, task)
        except AsrError as exc:
            kind = "unavailable" if speech.recognizer.state == "error" else "bad_input"
            param = "file" if "knows English only" not in str(exc) else "language"
            raise ApiError(kind, str(exc), param) from None
    return transcript_body(transcript, response_format, task)


def transcript_body(
    transcript: Transcript, response_format: str, task: str = "transcribe"
) -> tuple[dict[str, Any] | str, str]:
    if response_format == "text":
        return transcript.text, "text/plain"
    if response_format == "json":
        return {"text": transcript.text}, "application/json"
    if response_format in ("srt", "vtt"):
        return subtitles(transcript, response_format), f"text/{response_format}"
    segments = [
        {"id": number, "start": part.start_s, "end": part.end_s, "text": part.text}
        for number, part in enumerate(transcript.segments)
    ]
    return {
        "task": task,
        "language": transcript.language,
        "duration": transcript.duration_s,
        "text": transcript.text,
        "segments": segments,
    }, "application/json"


def subtitles(transcript: Transcript, kind: str) -> str:
    """The segments as SubRip (`srt`, times 00:00:01,500) or WebVTT (`vtt`, 00:00:01.500)."""
    mark = "," if kind == "srt" else "."

    def stamp(seconds: float) -> str:
        whole, millis = divmod(round(seconds * 1000), 1000)
        return f"{whole // 3600:02}:{whole // 60 % 60:02}:{whole % 60:02}{mark}{millis:03}"

    cues = [
        (f"{number}\n" if kind == "srt" else "")
        + f"{stamp(part.start_s)} --> {stamp(part.end_s)}\n{part.text}\n"
        for number, part in enumerate(transcript.segments, start=1)
    ]
    return ("WEBVTT\n\n" if kind == "vtt" else "") + "\n".join(cues)


def _file_name(name: str) -> str:
    """The upload's own name, as sentences about it say, made safe as a file name here."""
    name = re.sub(r"[^\w. -]", "_", Path(name or "").name)[:100].strip(" .")
    return name or "audio"
