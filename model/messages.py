"""What a chat request is made of: messages with images and audio, and generation options.

These types cross the process boundary to the worker, so they hold only picklable data
(PIL images, numpy arrays, plain values).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from PIL import Image

Role = Literal["system", "user", "assistant", "tool"]
ToolChoice = Literal["auto", "none", "required"]
IMAGE_TOKEN_BUDGETS = (70, 140, 280, 560, 1120)
DEFAULT_IMAGE_TOKENS = 280  # the model's own default
AUTO_IMAGE_TOKENS = 0  # Auto: the engine chooses per request (model/detail.py)
# Soft tokens per video frame: the processor's own default is 70, Google's for video; 32 frames
# at 280 would already be about 9,000 tokens.
VIDEO_FRAME_TOKEN_BUDGETS = (70, 140, 280)
DEFAULT_VIDEO_FRAME_TOKENS = 70


@dataclass(frozen=True)
class AudioClip:
    """A waveform at its own sample rate; shape (samples,) or (samples, channels)."""

    samples: np.ndarray
    sample_rate: int

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.sample_rate


@dataclass(frozen=True)
class VideoClip:
    """Frames chosen from a video, in order, each with its time from the start in seconds.

    The soundtrack is not here: it goes in the message's `audio`, as recordings do. For a
    server that samples the video itself, the file as it was sent (`mime`: its type) is
    `data`, or else read from `path` (empty where only the frames are known)."""

    frames: tuple[Image.Image, ...]
    timestamps_s: tuple[float, ...]
    duration_s: float
    path: str = ""
    data: bytes = field(default=b"", repr=False)
    mime: str = "video/mp4"

    def __post_init__(self) -> None:
        if not self.frames or len(self.frames) != len(self.timestamps_s):
            raise ValueError("a VideoClip needs at least one frame, and one time per frame")


@dataclass(frozen=True)
class Tool:
    """A function the model may call: its name, what it does, and its parameters (a JSON
    schema of an object, as JSON text)."""

    name: str
    description: str = ""
    parameters: str = '{"type": "object", "properties": {}}'


@dataclass(frozen=True)
class ToolCall:
    """A call of a tool: its name and arguments (a JSON object, as JSON text). `id` is what
    the reply names it by, for the result that answers it ("" until one is given)."""

    name: str
    arguments: str
    id: str = ""


@dataclass(frozen=True)
class Message:
    """One turn of a conversation. Media are shown to the model before the text: images, then
    videos (frames), then audio (a video's soundtrack among it).

    An assistant's turn may carry `tool_calls`; a "tool" turn is the result of one of them
    (`tool_call_id`), as text."""

    role: Role
    text: str = ""
    images: tuple[Image.Image, ...] = ()
    audio: tuple[AudioClip, ...] = ()
    video: tuple[VideoClip, ...] = ()
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str = ""


@dataclass(frozen=True)
class GenerationOptions:
    """Sampling and prompt settings; defaults are the model's own generation config.

    `image_tokens` is the most soft tokens per image, one of IMAGE_TOKEN_BUDGETS, or
    AUTO_IMAGE_TOKENS: the engine then chooses from the images (model.detail.resolve), starting
    from `preferred_image_tokens` instead when a task asks for one (0: the images decide).

    `min_new_tokens` holds the stop tokens back until that many tokens are out (benchmarks force
    a length with it, so random weights can be timed). `speculative` lets the multi-token-
    prediction drafter propose tokens when one is loaded; the model still decides every token.
    """

    temperature: float = 1.0
    top_p: float = 0.95
    top_k: int = 64
    max_new_tokens: int = 512
    thinking: bool = False
    image_tokens: int = AUTO_IMAGE_TOKENS
    min_new_tokens: int = 0
    speculative: bool = True
    preferred_image_tokens: int = 0
    video_frame_tokens: int = DEFAULT_VIDEO_FRAME_TOKENS
    # A JSON schema (JSON text) the reply must match, token by token ("" for free text); with
    # one, thinking is off (see constrained.py).
    response_schema: str = ""
    # A grammar (llguidance's Lark) the reply must keep to, for answers of Loupe's own in a form
    # of their own ("" for none); with one, thinking is off. Engines that take no grammar (model
    # servers) answer freely.
    response_grammar: str = ""
    # Functions the model may call (model/tool_calls.py): "auto" lets it choose, "none" keeps
    # them from it, "required" makes the reply calls only; `named_tool`: calls of that one only.
    tools: tuple[Tool, ...] = ()
    tool_choice: ToolChoice = "auto"
    named_tool: str = ""

    def __post_init__(self) -> None:
        if self.video_frame_tokens not in VIDEO_FRAME_TOKEN_BUDGETS:
            raise ValueError(f"video_frame_tokens must be one of {VIDEO_FRAME_TOKEN_BUDGETS}")
        if self.image_tokens not in (AUTO_IMAGE_TOKENS, *IMAGE_TOKEN_BUDGETS):
            raise ValueError(f"image_tokens must be 0 (Auto) or one of {IMAGE_TOKEN_BUDGETS}")
        if self.preferred_image_tokens not in (0, *IMAGE_TOKEN_BUDGETS):
            raise ValueError(f"preferred_image_tokens must be 0 or one of {IMAGE_TOKEN_BUDGETS}")
        if self.max_new_tokens < 1:
            raise ValueError("max_new_tokens must be at least 1")
        if self.min_new_tokens < 0:
            raise ValueError("min_new_tokens must not be negative")
        if self.response_schema and self.thinking:
            raise ValueError("A reply held to a JSON schema cannot think first")
        if self.response_grammar and (self.thinking or self.response_schema):
            raise ValueError("A reply held to a grammar has no thought first and no schema")
        if self.named_tool and self.named_tool not in {tool.name for tool in self.tools}:
            raise ValueError(f"No tool is named {self.named_tool}")
        if self.calls_only and (self.thinking or self.response_schema):
            raise ValueError("A reply made only of tool calls has no thought and no schema")

    @property
    def calls_only(self) -> bool:
        """Whether the reply must be tool calls, held to them token by token."""
        return only_calls(self.tools, self.tool_choice, self.named_tool)

    @property
    def offered_tools(self) -> tuple[Tool, ...]:
        """The tools the prompt declares: none when the model may not call them."""
        return () if self.tool_choice == "none" else self.tools


def only_calls(tools: tuple[Tool, ...], choice: ToolChoice, named: str) -> bool:
    """Whether a reply offered `tools` must be calls of them: `required`, or a named one."""
    return bool(tools) and (choice == "required" or bool(named))


@dataclass(frozen=True)
class ChatRequest:
    """A conversation to answer; the last message is the person's newest turn."""

    messages: tuple[Message, ...]
    options: GenerationOptions = field(default_factory=GenerationOptions)


def turn_starts(messages: tuple[Message, ...]) -> list[int]:
    """Where a shortened conversation may start: each of the person's messages after the first
    (a system prompt at the head always stays). Dropping up to one of these drops whole turns."""
    kept_head = 1 if messages and messages[0].role == "system" else 0
    return [i for i, m in enumerate(messages) if i > kept_head and m.role == "user"]
