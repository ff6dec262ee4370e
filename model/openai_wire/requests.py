"""Requests on the OpenAI wire, both ways: a ChatRequest as the body a server takes, and a
body sent to Loupe's /v1 as options and messages (media decoded from base64, not yet checked:
that is the intake's work)."""

from __future__ import annotations

import base64
import binascii
import io
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import numpy as np
from PIL import Image
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictStr,
    ValidationError,
)

from ..audio import AUDIO_SAMPLE_RATE_HZ
from ..detail import text_lines
from ..messages import (
    IMAGE_TOKEN_BUDGETS,
    AudioClip,
    ChatRequest,
    GenerationOptions,
    Message,
    VideoClip,
)
from ..prompts import concrete_options, normalise_audio

# Engines count audio tokens per 40 ms (640 samples); a clip of a whole number of them is
# counted alike by vLLM and transformers.
AUDIO_SAMPLES_PER_TOKEN = 640
JPEG_QUALITY = 92
# Request fields not every server takes: learnt per server, dropped once refused.
OPTIONAL_FIELDS = ("top_k", "mm_processor_kwargs", "stream_options", "reasoning_effort")
DATA_URL = re.compile(
    r"data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?:;[\w-]+=[^;,]*)*;base64,(?P<data>.*)", re.S
)


# -- to a server -----------------------------------------------------------------------------


def image_url(image: Image.Image) -> str:
    """A data URL, the form every server takes: PNG for an image with lines of text (lossless,
    so small letters stay sharp), JPEG for photos and pictures (a tenth of the size, and made
    many times faster: a 2-megapixel photo as PNG is 4 MB and takes about a second here)."""
    buffer = io.BytesIO()
    if text_lines(image).is_text:
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


def video_url(clip: VideoClip) -> str:
    """The video file as it was sent, as a data URL: the server samples its frames itself
    (vLLM: 32 over the whole video, as Loupe's at most 32)."""
    data = clip.data
    if not data:
        with open(clip.path, "rb") as file:
            data = file.read()
    return f"data:{clip.mime};base64,{base64.b64encode(data).decode()}"


def message_to_wire(message: Message) -> dict[str, Any]:
    """One message; media first, as Loupe shows them to the model: images, videos (the file;
    their sound goes as the message's audio, as servers do not take it from the video), audio."""
    if message.role != "user" or not (message.images or message.audio or message.video):
        return {"role": message.role, "content": message.text}
    content: list[dict[str, Any]] = [
        {"type": "image_url", "image_url": {"url": image_url(image)}} for image in message.images
    ]
    content += [
        {"type": "video_url", "video_url": {"url": video_url(clip)}} for clip in message.video
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
    options = concrete_options(request.messages, request.options)
    body: dict[str, Any] = {
        "model": model,
        "messages": [message_to_wire(message) for message in request.messages],
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


# -- from a client ---------------------------------------------------------------------------


# What each field a client may send must be, as the sentence refusing it says.
FIELD_RULES = {
    "model": "a string",
    "stream": "true or false",
    "stream_options": 'an object such as {"include_usage": true}',
    "stream_options.include_usage": "true or false",
    "temperature": "a number between 0 and 2",
    "top_p": "a number between 0 and 1",
    "top_k": "a whole number between 0 and 1,000,000",
    "max_tokens": "a whole number of at least 1",
    "max_completion_tokens": "a whole number of at least 1",
    "min_tokens": "a whole number of at least 0",
    "seed": "a whole number",
    "reasoning_effort": "one of none, minimal, low, medium, high and xhigh",
    "chat_template_kwargs": 'an object such as {"enable_thinking": true}',
    "chat_template_kwargs.enable_thinking": "true or false",
    "mm_processor_kwargs": 'an object such as {"max_soft_tokens": 280}',
    "mm_processor_kwargs.max_soft_tokens": "one of " + ", ".join(map(str, IMAGE_TOKEN_BUDGETS)),
}
# Strict: a number is not a string or a bool, a whole number is not 2.5, and JSON's 1e400
# (infinity to Python) is no number at all.
Number = Annotated[float, Field(strict=True, allow_inf_nan=False)]
WholeNumber = Annotated[int, Field(strict=True)]
# Far above any context window; the engine gives a reply at most the room its context leaves.
MAX_TOKENS_CEILING = 2**31 - 1
TokenCount = Annotated[WholeNumber, Field(ge=1)]


class _Fields(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class StreamOptions(_Fields):
    include_usage: StrictBool = False


class TemplateOptions(_Fields):
    enable_thinking: StrictBool | None = None


class MediaOptions(_Fields):
    max_soft_tokens: Literal[IMAGE_TOKEN_BUDGETS] | None = None  # type: ignore[valid-type]


class ChatFields(_Fields):
    """The fields of a chat-completions body that Loupe reads, besides `messages` and `stop`,
    each checked for its type and range; the fields Loupe does not read are ignored."""

    model: StrictStr | None = None
    stream: StrictBool | None = None
    stream_options: StreamOptions | None = None
    temperature: Annotated[Number, Field(ge=0, le=2)] | None = None
    top_p: Annotated[Number, Field(ge=0, le=1)] | None = None
    top_k: Annotated[WholeNumber, Field(ge=0, le=1_000_000)] | None = None
    max_tokens: TokenCount | None = None
    max_completion_tokens: TokenCount | None = None
    min_tokens: Annotated[WholeNumber, Field(ge=0)] | None = None
    seed: WholeNumber | None = None  # taken, not used
    reasoning_effort: Literal["none", "minimal", "low", "medium", "high", "xhigh"] | None = None
    chat_template_kwargs: TemplateOptions | None = None
    mm_processor_kwargs: MediaOptions | None = None

    @property
    def include_usage(self) -> bool:
        return bool(self.stream and self.stream_options and self.stream_options.include_usage)

    def options(self) -> GenerationOptions:
        """GenerationOptions; absent fields keep the model's defaults."""
        defaults = GenerationOptions()
        enabled = self.chat_template_kwargs and self.chat_template_kwargs.enable_thinking
        if enabled is not None:
            thinking = enabled
        else:
            thinking = self.reasoning_effort not in (None, "none", "minimal")
        asked = self.max_completion_tokens or self.max_tokens or defaults.max_new_tokens
        max_new_tokens = min(asked, MAX_TOKENS_CEILING)
        min_new_tokens = self.min_tokens or 0
        if min_new_tokens > max_new_tokens:
            raise RequestError("min_tokens must not be more than max_tokens.", "min_tokens")
        budget = self.mm_processor_kwargs and self.mm_processor_kwargs.max_soft_tokens
        return GenerationOptions(
            temperature=_given(self.temperature, defaults.temperature),
            top_p=_given(self.top_p, defaults.top_p),
            top_k=_given(self.top_k, defaults.top_k),
            max_new_tokens=max_new_tokens,
            thinking=thinking,
            image_tokens=budget or defaults.image_tokens,
            # vLLM's extension: the end of the reply is held back until this many tokens are out.
            min_new_tokens=min_new_tokens,
        )


def chat_fields(body: dict[str, Any]) -> ChatFields:
    """The body's fields, checked; RequestError names the first wrong one in a sentence."""
    try:
        return ChatFields.model_validate(body)
    except ValidationError as exc:
        param = ".".join(str(step) for step in exc.errors()[0]["loc"])
        rule = FIELD_RULES.get(param) or FIELD_RULES[param.split(".")[0]]
        raise RequestError(f"{param} must be {rule}.", param) from None


def options_from_body(body: dict[str, Any]) -> GenerationOptions:
    """GenerationOptions from a request body; absent fields keep the model's defaults.
    Raises RequestError (a ValueError) with one sentence for a field of the wrong type or range."""
    return chat_fields(body).options()


def _given(value: Any, default: Any) -> Any:
    return default if value is None else value


def decode_data_url(url: str, what: str = "images") -> tuple[str, bytes]:
    """(declared type, bytes) of a base64 data URL. Raises ValueError with one sentence for
    anything else: Loupe never fetches a URL or opens a path a client names."""
    if not isinstance(url, str) or not url.startswith("data:"):
        example = "data:video/mp4;base64,..." if what == "videos" else "data:image/png;base64,..."
        raise ValueError(
            f"Loupe takes {what} only as base64 data URLs ({example}); it does "
            "not fetch web addresses or open file paths."
        )
    found = DATA_URL.fullmatch(url)
    if found is None:
        raise ValueError("The data URL is not base64; send data:image/png;base64,... .")
    return found["mime"] or "", _base64(found["data"], "The data URL's")


class RequestError(ValueError):
    """A request body Loupe cannot take; one sentence, and the field it is about (`param`)."""

    def __init__(self, message: str, param: str | None = None):
        super().__init__(message)
        self.param = param


@dataclass(frozen=True)
class MediaPart:
    """An image, video, audio or file part of a request's message, still undecoded: `kind` is
    what the part says it is ("image" for image_url, "video" for video_url, "audio" for
    input_audio, "pdf" for file); `param` names it in errors; `name` is a file part's filename,
    if it gives one."""

    kind: str
    data: bytes
    param: str
    name: str = ""


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
    return [
        _message_from_wire(message, f"messages[{index}]") for index, message in enumerate(messages)
    ]


def _message_from_wire(message: Any, param: str) -> WireMessage:
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
        elif kind in ("image_url", "input_audio", "file", "video_url"):
            if role != "user":
                raise RequestError(
                    "Only the user's messages can carry images, videos, audio or files.", where
                )
            media.append(_media_part(part, kind, where))
        else:
            raise RequestError(
                f"{where} is a part of type {kind!r}; Loupe takes text, image_url and video_url "
                "(base64 data URLs), input_audio and file (PDFs as base64 data URLs) parts.",
                where,
            )
    return WireMessage(role, "\n".join(texts), tuple(media))


def _media_part(part: dict[str, Any], kind: str, where: str) -> MediaPart:
    try:
        if kind == "image_url":
            url = part.get("image_url")
            url = url.get("url") if isinstance(url, dict) else url
            return MediaPart("image", decode_data_url(url)[1], where)
        if kind == "video_url":
            url = part.get("video_url")
            url = url.get("url") if isinstance(url, dict) else url
            return MediaPart("video", decode_data_url(url, "videos")[1], where)
        if kind == "file":
            return _file_part(part.get("file"), where)
        audio = part.get("input_audio")
        data = audio.get("data") if isinstance(audio, dict) else None
        if not isinstance(data, str):
            raise ValueError("input_audio must carry the audio file as base64 in its data.")
        return MediaPart("audio", _base64(data, "The audio's"), where)
    except RequestError:
        raise
    except ValueError as exc:
        raise RequestError(str(exc), where) from None


def _file_part(file: Any, where: str) -> MediaPart:
    """OpenAI's file part: {"file_data": "data:application/pdf;base64,...", "filename": ...}.
    A `file_id` (an upload to OpenAI's Files API) names nothing Loupe has."""
    if not isinstance(file, dict) or not isinstance(file.get("file_data"), str):
        raise ValueError(
            "A file part must carry the file in file.file_data as a base64 data URL "
            "(data:application/pdf;base64,...); Loupe has no Files API for file_id."
        )
    data = file["file_data"]
    if not data.startswith("data:"):
        raise ValueError(
            "Loupe takes files only as base64 data URLs (data:application/pdf;base64,...); it "
            "does not fetch web addresses or open file paths."
        )
    name = file.get("filename")
    return MediaPart("pdf", decode_data_url(data)[1], where, name if isinstance(name, str) else "")


def _base64(data: str, whose: str) -> bytes:
    """Bytes from base64; ValueError saying that `whose` data is damaged otherwise."""
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{whose} base64 data is damaged.") from None


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
