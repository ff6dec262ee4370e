"""The messages of a body sent to Loupe's /v1: each one's role, text and media parts (decoded from
base64 or data URLs, not yet checked: that is the intake's work), and the stop strings. Every
refusal a RequestError naming the field."""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any

from ..messages import ToolCall
from .errors import RequestError
from .tools import calls_from_wire

DATA_URL = re.compile(
    r"data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?:;[\w-]+=[^;,]*)*;base64,(?P<data>.*)", re.S
)


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


# A file part of these types (and of any text/ type) is a text file: notes, code, data.
TEXT_TYPES = frozenset(
    {
        "application/json",
        "application/x-ndjson",
        "application/xml",
        "application/yaml",
        "application/x-yaml",
        "application/javascript",
        "application/x-sh",
        "application/sql",
        "application/toml",
    }
)


@dataclass(frozen=True)
class MediaPart:
    """An image, video, audio or file part of a request's message, still undecoded: `kind` is
    what the part says it is ("image" for image_url, "video" for video_url, "audio" for
    input_audio, "text" for a file of a text type (TEXT_TYPES), else "pdf" for a file); `param`
    names it in errors; `name` is a file part's filename, if it gives one."""

    kind: str
    data: bytes
    param: str
    name: str = ""


@dataclass(frozen=True)
class WireMessage:
    """A request's message as the server reads it: role, its text parts joined, its media; an
    assistant's tool calls, or the id of the call a tool's result answers."""

    role: str
    text: str
    media: tuple[MediaPart, ...] = ()
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str = ""


# Roles as Loupe's model takes them; OpenAI's "developer" is the system prompt by a newer name.
ROLES = {
    "system": "system",
    "developer": "system",
    "user": "user",
    "assistant": "assistant",
    "tool": "tool",
}
MAX_STOPS = 16


def messages_from_body(body: dict[str, Any]) -> list[WireMessage]:
    """The messages of a chat-completions body, media decoded from base64 but not yet checked
    (that is the intake's work). Raises RequestError for anything Loupe does not take: other
    roles, other part types, media outside the person's messages, URLs and paths."""
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
            f"{param}.role must be system, developer, user, assistant or tool.", f"{param}.role"
        )
    calls, call_id = (), ""
    if role == "assistant" and message.get("tool_calls"):
        calls = calls_from_wire(message["tool_calls"], f"{param}.tool_calls")
    if role == "tool":
        call_id = message.get("tool_call_id")
        if not isinstance(call_id, str) or not call_id:
            raise RequestError(
                f"{param}.tool_call_id must name the call this result answers.",
                f"{param}.tool_call_id",
            )
    text, media = _content(message.get("content"), role, param)
    return WireMessage(role, text, media, calls, call_id)


def _content(content: Any, role: str, param: str) -> tuple[str, tuple[MediaPart, ...]]:
    """A message's text parts joined, and its media parts."""
    if content is None or isinstance(content, str):
        return content or "", ()
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
                "(base64 data URLs), input_audio and file (PDFs and text files as base64 data "
                "URLs) parts.",
                where,
            )
    return "\n".join(texts), tuple(media)


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
    mime, content = decode_data_url(data)
    kind = "text" if mime.startswith("text/") or mime in TEXT_TYPES else "pdf"
    return MediaPart(kind, content, where, name if isinstance(name, str) else "")


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
