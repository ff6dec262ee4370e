"""What a reply stream yields: maybe a ContextTrimmed, text chunks and tool calls (a
messages.ToolCall each), then one Finished or one EngineError."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .messages import ToolCall

ErrorKind = Literal[
    "busy",  # the waiting queue is full
    "unavailable",  # no model could be loaded
    "bad_input",  # the message could not be turned into model inputs
    "out_of_memory",
    "generation_failed",
    "worker_crashed",  # the worker process died mid-request; it is restarted
    "worker_hung",  # the worker sent nothing for ModelConfig.hang_timeout_s; it is restarted
    "unreachable",  # the model server cannot be reached, or stopped answering mid-reply
]


@dataclass(frozen=True)
class ContextTrimmed:
    """The conversation was longer than the model's context window: its `dropped` oldest
    messages (after the system prompt) were left out of this reply's prompt."""

    dropped: int


@dataclass(frozen=True)
class TextChunk:
    """New text of the reply; `thinking` marks the model's reasoning, shown apart.

    `sent_at` is when the worker sent it (`time.time()`, for measuring the delay to the page).
    """

    text: str
    thinking: bool = False
    sent_at: float = 0.0


@dataclass(frozen=True)
class Timing:
    """How a reply went: `tokens` generated, `prompt_tokens` read (0 where unknown)."""

    time_to_first_token_s: float
    tokens_per_s: float
    tokens: int
    prompt_tokens: int = 0

    @classmethod
    def measured(
        cls, started: float, first: float | None, ended: float, tokens: int, prompt_tokens: int
    ) -> Timing:
        """From one clock's readings: the request's start, its first token (None: none came)
        and its end; the rate counts the tokens after the first."""
        if first is None:
            return cls(0.0, 0.0, tokens, prompt_tokens)
        decode_s = ended - first
        rate = (tokens - 1) / decode_s if tokens > 1 and decode_s > 0 else 0.0
        return cls(first - started, rate, tokens, prompt_tokens)


@dataclass(frozen=True)
class Finished:
    """The reply is complete, or was stopped on request (`cancelled`)."""

    timing: Timing
    cancelled: bool = False


STOPPED_BEFORE_START = Finished(Timing(0.0, 0.0, 0), cancelled=True)


@dataclass(frozen=True)
class EngineError:
    """The reply failed; `message` is one sentence for the person."""

    kind: ErrorKind
    message: str


ReplyEvent = ContextTrimmed | TextChunk | ToolCall | Finished | EngineError
