"""Requests on the OpenAI wire, both ways: a ChatRequest as the body a server takes, and the
options of a body sent to Loupe's /v1 (its messages are client_messages')."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterable
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
from ..constrained import ANY_OBJECT, SchemaError, schema_grammar
from ..detail import text_lines
from ..messages import (
    IMAGE_TOKEN_BUDGETS,
    AudioClip,
    ChatRequest,
    GenerationOptions,
    Message,
    VideoClip,
    only_calls,
)
from ..prompts import concrete_options, normalise_audio
from ..tool_calls import template_tools
from .errors import RequestError
from .tools import calls_to_wire, choice_to_wire, tool_fields

# Engines count audio tokens per 40 ms (640 samples); a clip of a whole number of them is
# counted alike by vLLM and transformers.
AUDIO_SAMPLES_PER_TOKEN = 640
JPEG_QUALITY = 92
# Request fields not every server takes: learnt per server, dropped once refused.
OPTIONAL_FIELDS = ("top_k", "mm_processor_kwargs", "stream_options", "reasoning_effort")
JSON_SCHEMA_PARAM = "response_format.json_schema.schema"

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
    their sound goes as the message's audio, as servers do not take it from the video), audio;
    a tool's result with the id of its call, an assistant's calls."""
    if message.role == "tool":
        return {"role": "tool", "tool_call_id": message.tool_call_id, "content": message.text}
    if message.tool_calls:
        calls = calls_to_wire(message.tool_calls)
        return {"role": "assistant", "content": message.text or None, "tool_calls": calls}
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
    # Never dropped: a server that cannot honour these says so.
    if options.response_schema:
        body["response_format"] = response_format(options.response_schema)
    if options.tools:
        body["tools"] = template_tools(options.tools)  # OpenAI's shape, as templates take
        body["tool_choice"] = choice_to_wire(options.tool_choice, options.named_tool)
    return body


def response_format(schema: str) -> dict[str, Any]:
    """OpenAI's `response_format` for a reply held to `schema` (JSON text)."""
    if schema == ANY_OBJECT:
        return {"type": "json_object"}
    json_schema = {"name": "reply", "schema": json.loads(schema), "strict": True}
    return {"type": "json_schema", "json_schema": json_schema}


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
    "response_format": 'an object such as {"type": "json_object"}',
    "response_format.type": "one of text, json_object and json_schema",
    "response_format.json_schema": 'an object such as {"name": "answer", "schema": {...}}',
    "response_format.json_schema.name": "a string",
    "response_format.json_schema.schema": "a JSON schema (an object)",
    "response_format.json_schema.strict": "true or false",
    "response_format.json_schema.description": "a string",
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


class JsonSchemaFormat(_Fields):
    name: StrictStr = "reply"
    description: StrictStr | None = None
    schema_: dict[str, Any] = Field(default_factory=dict, alias="schema")
    strict: StrictBool | None = None


class ResponseFormat(_Fields):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None

    def schema(self) -> str:
        """The JSON schema the reply must match, as JSON text ("" for free text)."""
        if self.type == "text":
            return ""
        if self.type == "json_object":
            return ANY_OBJECT
        if self.json_schema is None:
            raise RequestError(
                "response_format.json_schema must be given when its type is json_schema.",
                "response_format.json_schema",
            )
        schema = json.dumps(self.json_schema.schema_)
        try:
            schema_grammar(schema)
        except SchemaError as exc:
            raise RequestError(f"{exc}.".replace("..", "."), JSON_SCHEMA_PARAM) from None
        return schema


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
    response_format: ResponseFormat | None = None
    tools: Any = None  # checked by tools.tool_fields
    tool_choice: Any = None

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
        schema = self.response_format.schema() if self.response_format else ""
        tools = tool_fields({"tools": self.tools, "tool_choice": self.tool_choice})
        calls_only = only_calls(tools.tools, tools.choice, tools.named)
        if calls_only and schema:
            raise RequestError(
                "A reply cannot be both tool calls (tool_choice) and JSON (response_format).",
                "tool_choice",
            )
        return GenerationOptions(
            temperature=_given(self.temperature, defaults.temperature),
            top_p=_given(self.top_p, defaults.top_p),
            top_k=_given(self.top_k, defaults.top_k),
            max_new_tokens=max_new_tokens,
            # A schema, or calls alone, are the whole reply: no thought first.
            thinking=thinking and not schema and not calls_only,
            image_tokens=budget or defaults.image_tokens,
            # vLLM's extension: the end of the reply is held back until this many tokens are out.
            min_new_tokens=min_new_tokens,
            response_schema=schema,
            tools=tools.tools,
            tool_choice=tools.choice,
            named_tool=tools.named,
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
