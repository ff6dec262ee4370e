"""A reply as it grows, and the one reader of an engine's events: the page, the named API,
describe, batch runs and /v1 all read a reply's events through `Reply.take`."""

from __future__ import annotations

from dataclasses import dataclass, field

from model import (
    ContextTrimmed,
    EngineError,
    Finished,
    ImageDetail,
    ReplyEvent,
    TextChunk,
    Timing,
    ToolCall,
)


@dataclass
class Reply:
    """A reply as it grows."""

    answer: str = ""
    thinking: str = ""
    timing: Timing | None = None
    error: str | None = None
    cancelled: bool = False
    dropped: int = 0  # oldest messages left out: the conversation outgrew the context window
    image_detail: ImageDetail | None = None  # the image budget its prompt was built with
    tool_calls: list[ToolCall] = field(default_factory=list)  # where the request offered tools

    def take(self, event: ReplyEvent) -> None:
        """The reply with one more of the engine's events: text (the answer's, or its thinking),
        the oldest messages the engine left out, a tool call, the end (its timing, or
        cancelled), a failure."""
        if isinstance(event, ToolCall):
            self.tool_calls.append(event)
        elif isinstance(event, TextChunk):
            if event.thinking:
                self.thinking += event.text
            else:
                self.answer += event.text
        elif isinstance(event, ContextTrimmed):
            self.dropped += event.dropped
        elif isinstance(event, Finished):
            self.timing, self.cancelled = event.timing, event.cancelled
        elif isinstance(event, EngineError):
            self.error = event.message

    @property
    def finished(self) -> bool:
        """Whether the model wrote the reply to its end (not stopped, not failed)."""
        return bool(self.timing) and not self.cancelled and self.error is None


def dropped_note(dropped: int) -> str:
    """What the person is told when the oldest messages were left out of the prompt."""
    messages = "message was" if dropped == 1 else f"{dropped} messages were"
    return (
        f"The conversation is longer than the model can read at once, so its oldest {messages} "
        "left out of this reply."
    )


def with_dropped_note(reply: Reply, text: str) -> str:
    """`text` led by a note, when the oldest messages were left out of the reply's prompt."""
    return f"*{dropped_note(reply.dropped)}*\n\n{text}" if reply.dropped else text
