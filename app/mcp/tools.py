"""What Loupe does for an agent over the Model Context Protocol (endpoint.py serves it at /mcp):
describe an image, answer questions about images, read the text of an image or a PDF, transcribe
a recording, check an image's content, and in desktop mode look at the screen.

Files come as base64 (or base64 data URLs), as MCP clients send them; Loupe never fetches a URL
or opens a path for a client. Each request goes through /v1's reading of a request
(v1.serving.chat_call: content sniffing, sizes, page and request limits) and the same queue as
the page, so every limit of /v1 holds here too. A refusal is one sentence: a ToolError, which an
MCP client shows as the tool's error.
"""

from __future__ import annotations

import base64
import binascii
import io
from typing import Annotated, Any, Literal, get_args

from mcp.server.mcpserver.exceptions import ToolError
from pydantic import Field

from model import ChatRequest

from ..config import Limits
from ..intake.pdf import starts_like_pdf
from ..intake.probe import MediaError
from ..intake.screen import grab_screen
from ..intake.speech import Speech
from ..tasks.describe import AI_NOTICE, checked_content, level_options, prompt_in_context
from ..tasks.replies import Replies
from ..v1.serving import ApiError, chat_call, transcription

Level = Literal["brief", "detailed", "alt_text", "read_text", "diagram"]
DESCRIBE_LEVELS = get_args(Level)
# A file argument: its bytes as base64, as MCP clients send files.
Image = Annotated[str, Field(description="The image (PNG, JPEG, WebP, ...) as base64.")]


class Tools:
    """The tools, over the app's reply loop (its queue) and speech recogniser."""

    def __init__(self, replies: Replies, speech: Speech, limits: Limits):
        self.replies = replies
        self.speech = speech
        self.limits = limits

    def describe_image(
        self,
        image: Image,
        level: Level = "detailed",
        context: Annotated[str, Field(description="Where the image is used (optional).")] = "",
    ) -> str:
        """A description of the image for someone who cannot see it, starting "AI description,
        may be wrong:". `level`: brief, detailed, alt_text (one short line for an alt
        attribute), read_text (all its text) or diagram (a chart or diagram explained).
        `context`: where the image is used, so that alt text says its purpose there."""
        if level not in DESCRIBE_LEVELS:
            raise ToolError(f"The level must be one of {', '.join(DESCRIBE_LEVELS)}.")
        prompt = prompt_in_context(level, context.strip())
        return self._answer([_part(image, "image")], prompt, level)

    def ask_about_image(
        self,
        images: Annotated[list[str], Field(description="One or more images, each as base64.")],
        question: str,
    ) -> str:
        """The model's answer to `question` about one or more images (screenshots, photos,
        scans), in the order given."""
        if not images:
            raise ToolError("Send at least one image to ask about.")
        if not question.strip():
            raise ToolError("Ask a question about the images.")
        parts = [_part(image, f"images[{index}]") for index, image in enumerate(images)]
        return self._answer(parts, question.strip())

    def read_text(
        self,
        file: Annotated[str, Field(description="An image or a PDF, as base64.")],
        pages: Annotated[str, Field(description='A PDF\'s pages to read, as "3-5".')] = "",
    ) -> str:
        """All the text of an image or a PDF, as written. For a PDF, `pages` names the pages
        to read ("3-5", "2, 7"); without it the first ten are read."""
        named = f"\n\nRead pages {pages.strip()}." if pages.strip() else ""
        prompt = prompt_in_context("read_text") + named
        return self._answer([_part(file, "file")], prompt, "read_text")

    def transcribe(
        self,
        audio: Annotated[str, Field(description="A recording or a video, as base64.")],
        language: Annotated[str, Field(description='Its language ("en"), if known.')] = "",
    ) -> dict[str, Any]:
        """What is said in a recording (or a video's sound): the text, its language and
        duration, and segments with their start and end in seconds."""
        data = _decoded(audio, "audio")
        try:
            body, _ = transcription(
                self.speech, self.limits, "audio", data, "verbose_json", language or None
            )
        except ApiError as exc:
            raise ToolError(str(exc)) from None
        assert isinstance(body, dict)  # verbose_json is a document
        return body

    def check_content(self, image: Image) -> dict[str, Any]:
        """The model's content check of an image in OpenAI's moderation shape: {"notice",
        "verdict" ({"flagged", "categories", "category_scores", "rationale"}, or null when the
        answer held none), "verdict_problem" (why there is none), "answer"}."""
        prompt = prompt_in_context("check_content")
        answer = self._answer([_part(image, "image")], prompt, "check_content")
        return checked_content(answer)

    def look_at_screen(self, question: str) -> str:
        """The model's answer to `question` about what is on this computer's screen now (the
        whole screen, captured as the tool is called). Desktop mode only."""
        if not question.strip():
            raise ToolError("Ask a question about the screen.")
        try:
            shot = grab_screen(self.limits.max_image_mp)
        except MediaError as exc:
            raise ToolError(str(exc)) from None
        buffer = io.BytesIO()
        shot.save(buffer, format="PNG")
        screen = base64.b64encode(buffer.getvalue()).decode("ascii")
        return self._answer([_part(screen, "screen")], question.strip())

    def _answer(self, parts: list[dict[str, Any]], text: str, level: str | None = None) -> str:
        """The whole answer to one message of `parts` and `text` (at a describe `level`: led by
        the AI notice, but for Check content's, which a document carries); ToolError in the
        sentence the page would show."""
        content = [*parts, {"type": "text", "text": text}]
        body = {"messages": [{"role": "user", "content": content}]}
        try:
            slot = self.replies.queue_slot()  # a busy Loupe says so before decoding any file
        except MediaError as exc:
            raise ToolError(str(exc)) from None
        with slot:
            try:
                call = chat_call(body, self.limits)
            except ApiError as exc:
                raise ToolError(str(exc)) from None
            options = call.request.options
            options = level_options(level, options) if level else options
            prefix = f"{AI_NOTICE} " if level and level != "check_content" else ""
            prefix += f"*{call.note}*\n\n" if call.note else ""
            request = ChatRequest(call.request.messages, options)
            answer = ""
            for reply in self.replies.stream(request, prefix=prefix, slot=slot):
                if reply.error:
                    raise ToolError(reply.error)
                answer = reply.answer
        return answer


def _part(data: str, name: str) -> dict[str, Any]:
    """A chat message's part for a file given as base64: a PDF (by its content) as a file part,
    anything else as an image, which the intake then checks by its content."""
    raw = _decoded(data, name)
    url = "data:{};base64," + base64.b64encode(raw).decode("ascii")
    if starts_like_pdf(raw):
        file = {"file_data": url.format("application/pdf"), "filename": "document.pdf"}
        return {"type": "file", "file": file}
    return {"type": "image_url", "image_url": {"url": url.format("image/png")}}


def _decoded(data: str, name: str) -> bytes:
    """The bytes of a base64 argument (a data URL's too); ToolError naming `name` if it is
    not base64."""
    if not isinstance(data, str) or not data.strip():
        raise ToolError(f"{name} is empty: send the file as base64.")
    encoded = data.split(",", 1)[1] if data.startswith("data:") else data
    try:
        return base64.b64decode("".join(encoded.split()), validate=True)
    except (binascii.Error, ValueError):
        raise ToolError(f"{name} is not base64: send the file's bytes as base64.") from None
