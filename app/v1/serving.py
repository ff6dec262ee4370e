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
    ContextTrimmed,
    Engine,
    EngineError,
    Finished,
    ImageDetail,
    Message,
    ReplyEvent,
    TextChunk,
    Transcript,
)
from model.openai_wire import (
    RETRY_AFTER_S,
    Completion,
    RequestError,
    WireMessage,
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
from ..intake.files import attachment_kinds, check_audio_file, load_file
from ..intake.message import chosen_pages, model_message, with_pages
from ..intake.pdf_pages import PdfPages, left_out_note
from ..intake.probe import Kind, MediaError
from ..intake.text import message_text, valid_text
from ..intake.totals import Totals, file_totals
from ..intake.video import Video
from ..page.voice import Voice

OWNER = "loupe"
TRANSCRIPT_FORMATS = ("json", "text", "verbose_json")
KIND_NAMES = {"image": "an image", "audio": "audio", "pdf": "a PDF", "video": "a video"}


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
    card = {"id": name, "object": "model", "created": created, "owned_by": OWNER}
    return {"object": "list", "data": [card]}


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
    try:
        fields = chat_fields(body)
        options = fields.options()
        stops = stop_strings(body)
        wire = messages_from_body(body)
        messages, note = model_messages(wire, limits)
    except RequestError as exc:
        raise ApiError("bad_input", str(exc), exc.param) from None
    except ValueError as exc:  # options out of range; MediaError is one too
        raise ApiError("bad_input", str(exc)) from None
    request = ChatRequest(messages, options)
    return ChatCall(request, bool(fields.stream), fields.include_usage, stops, note)


def model_messages(wire: list[WireMessage], limits: Limits) -> tuple[tuple[Message, ...], str]:
    """The messages with their media through the upload intake (content sniffing, count, size,
    megapixel and length limits), audio split at pauses into the model's 30 s clips, PDFs'
    pages as labelled images; and the note the reply starts with when pages of the last
    message's PDFs were left out (see app/intake/pdf_pages.py).

    Every file is checked and counted against the request's totals (app/intake/totals.py)
    before any is decoded, so a request over them costs no decoding."""
    messages, note = [], ""
    with tempfile.TemporaryDirectory(prefix="loupe-api-") as folder:  # private to this user
        checked = _checked_messages(wire, Path(folder), limits)
        for index, (text, paths, kinds, pdfs) in enumerate(checked):
            message, where = wire[index], f"messages[{index}].content"
            decoded_files: list[Any] = []
            for path, part, kind, pages in zip(paths, message.media, kinds, pdfs, strict=True):
                try:
                    decoded = pages if pages is not None else load_file(path, kind, limits)
                except MediaError as exc:
                    raise RequestError(str(exc), part.param) from None
                if isinstance(decoded, Video):  # the file is gone after this: keep its bytes
                    decoded = replace(decoded, clip=replace(decoded.clip, path="", data=part.data))
                decoded_files.append(decoded)
            try:
                files = list(zip(map(str, paths), decoded_files, strict=True))
                model_text, images, clips, videos = with_pages(text, files)
            except MediaError as exc:
                raise RequestError(str(exc), where) from None
            for path in paths:
                path.unlink()
            messages.append(model_message(message.role, model_text, images, clips, videos))
            note = left_out_note([pages for pages in pdfs if pages], limits, text)
    return tuple(messages), note


def _checked_messages(
    wire: list[WireMessage], folder: Path, limits: Limits
) -> list[tuple[str, list[Path], list[Kind], list[PdfPages | None]]]:
    """Each message's text, files (written to `folder`, named after their parts so that a
    refusal says which one: "messages[0].content[1] is ..."), their kinds, and each PDF's pages
    to read: checked without decoding, and counted against the request's totals. RequestError
    names what is wrong, or the message where the request passes a total."""
    checked = []
    totals = Totals(messages=len(wire), chars=sum(len(message.text) for message in wire))
    _check_totals(totals, limits, "messages")  # before any file is written
    for index, message in enumerate(wire):
        where = f"messages[{index}].content"
        paths = [Path(folder, part.param) for part in message.media]
        for path, part in zip(paths, message.media, strict=True):
            path.write_bytes(part.data)
        try:
            text = message_text(message.text, limits)
            kinds = attachment_kinds([str(path) for path in paths], limits)
        except MediaError as exc:
            raise RequestError(str(exc), where) from None
        for part, kind in zip(message.media, kinds, strict=True):
            if kind != part.kind:
                raise RequestError(
                    f"{part.param} holds {KIND_NAMES[kind]}, not {KIND_NAMES[part.kind]}.",
                    part.param,
                )
        try:
            pdfs = _pdf_pages(text, paths, message.media, kinds, limits)
            for path, kind, pages in zip(paths, kinds, pdfs, strict=True):
                totals += file_totals(path, kind, pages, limits)
        except MediaError as exc:
            raise RequestError(str(exc), where) from None
        _check_totals(totals, limits, where)
        checked.append((text, paths, kinds, pdfs))
    return checked


def _pdf_pages(
    text: str, paths: list[Path], parts: tuple[Any, ...], kinds: list[Kind], limits: Limits
) -> list[PdfPages | None]:
    """For each file of a message, the pages the model reads if it is a PDF (chosen by the
    message's text, named after its part's filename), else None."""
    pages: list[Any] = [
        replace(load_file(path, kind, limits), name=_shown_name(part.name) or path.name)
        if kind == "pdf"
        else None
        for path, part, kind in zip(paths, parts, kinds, strict=True)
    ]
    return chosen_pages(text, pages, limits)


def _check_totals(totals: Totals, limits: Limits, param: str) -> None:
    """RequestError naming `param` when the request's totals so far pass a limit."""
    sentence = totals.over(limits)
    if sentence is not None:
        raise RequestError(sentence, param)


def _shown_name(filename: str) -> str:
    """A file part's filename as the model and the reply may name it: no folders, one line."""
    name = valid_text(Path(filename.replace("\\", "/")).name)
    return " ".join(name.split())[:120]


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
    content: str = ""
    reasoning: str = ""
    dropped: int = 0
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
        if self.dropped:
            facts["dropped_messages"] = self.dropped
        if self.image_detail is not None:
            facts["image_detail"] = asdict(self.image_detail)
        return facts

    def read(self, event: ReplyEvent) -> list[dict[str, Any]]:
        """The chunks this event adds (none for some)."""
        self._chunks = []
        if isinstance(event, ContextTrimmed):
            self.dropped = event.dropped
        elif isinstance(event, TextChunk) and not self.stopped:
            if event.thinking:
                self.reasoning += event.text
                self._send(delta_of(event))
            else:
                self._text(event.text)
        elif isinstance(event, Finished):
            self._send_text(self._held)  # no stop string came after all
            self._held = ""
            timing = event.timing
            length = timing.tokens >= self.call.request.options.max_new_tokens
            self.finish_reason = "length" if length and not self.stopped else "stop"
            self.usage = usage(timing.prompt_tokens, timing.tokens)
            self._chunks.append(self.completion.chunk({}, self.finish_reason))
            if self.call.include_usage:
                self._chunks.append(self.completion.chunk(None, usage=self.usage))
        elif isinstance(event, EngineError):
            self.error = event
        return self._chunks

    def whole(self) -> dict[str, Any]:
        """The finished reply as one chat.completion."""
        body = self.completion.whole(
            self.content, self.reasoning, self.finish_reason or "stop", self.usage or usage(0, 0)
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

    def _send(self, delta: dict[str, str]) -> None:
        self._chunks.append(self.completion.chunk(delta))


def stream_error(error: EngineError) -> dict[str, Any]:
    """What a stream sends for a failure after its 200 went out."""
    return engine_error_body(error)[1]


# -- transcriptions -------------------------------------------------------------------------------


def transcription(
    voice: Voice, limits: Limits, name: str, data: bytes, response_format: str
) -> tuple[dict[str, Any] | str, str]:
    """(body, media type) for POST /v1/audio/transcriptions: the upload through the intake's
    checks, then the speech recognizer. Blocks for the transcription: call it off the loop."""
    if response_format not in TRANSCRIPT_FORMATS:
        raise ApiError(
            "bad_input",
            "Loupe writes transcripts as json, text or verbose_json.",
            "response_format",
        )
    with tempfile.TemporaryDirectory(prefix="loupe-api-") as folder:
        path = Path(folder, _file_name(name))
        path.write_bytes(data)
        try:
            check_audio_file(path, limits, path.name)
        except MediaError as exc:
            raise ApiError("bad_input", str(exc), "file") from None
        try:
            transcript = voice.transcribe(str(path))
        except AsrError as exc:
            kind = "unavailable" if voice.recognizer.state == "error" else "bad_input"
            raise ApiError(kind, str(exc), "file") from None
    return transcript_body(transcript, response_format)


def transcript_body(
    transcript: Transcript, response_format: str
) -> tuple[dict[str, Any] | str, str]:
    if response_format == "text":
        return transcript.text, "text/plain"
    if response_format == "json":
        return {"text": transcript.text}, "application/json"
    segments = [
        {"id": number, "start": part.start_s, "end": part.end_s, "text": part.text}
        for number, part in enumerate(transcript.segments)
    ]
    return {
        "task": "transcribe",
        "language": transcript.language,
        "duration": transcript.duration_s,
        "text": transcript.text,
        "segments": segments,
    }, "application/json"


def _file_name(name: str) -> str:
    """The upload's own name, as sentences about it say, made safe as a file name here."""
    name = re.sub(r"[^\w. -]", "_", Path(name or "").name)[:100].strip(" .")
    return name or "audio"
