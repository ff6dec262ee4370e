"""Replies on the OpenAI wire, both ways: a server's event stream read as ReplyEvents, and
Loupe's own ReplyEvents written as chunks and completions."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ..events import TextChunk
from ..messages import ToolCall
from .errors import WireError, error_message
from .tools import CallReader

THOUGHT_OPEN, THOUGHT_CLOSE, THOUGHT_LABEL = "<|channel>", "<channel|>", "thought\n"


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
    from `<|channel>thought ... <channel|>` left inside `content`; tool calls, whole, once the
    server says why the reply ended; counts from `usage`."""

    completion_tokens: int | None = None
    prompt_tokens: int | None = None
    finish_reason: str | None = None
    text_chunks: int = 0
    _in_thought: bool = False
    _pending: str = ""
    _events: list[TextChunk | ToolCall] = field(default_factory=list)
    _calls: CallReader = field(default_factory=CallReader)

    def read(self, chunk: dict[str, Any], sent_at: float = 0.0) -> list[TextChunk | ToolCall]:
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
            self._calls.read(delta.get("tool_calls"))
            self.finish_reason = choice.get("finish_reason") or self.finish_reason
            if choice.get("finish_reason"):
                self._events += self._calls.finished()
        return self._events

    def end(self, sent_at: float = 0.0) -> list[TextChunk | ToolCall]:
        """What a marker-looking tail held back turned out to be, and calls not yet passed on."""
        self._events = []
        if self._pending:
            self._emit(self._pending, self._in_thought, sent_at)
            self._pending = ""
        self._events += self._calls.finished()
        return self._events

    def _split(self, text: str, sent_at: float) -> None:
        text = self._pending + text
        self._pending = ""
        while text:
            marker = THOUGHT_CLOSE if self._in_thought else THOUGHT_OPEN
            at = text.find(marker)
            if at < 0:
                keep = partial_suffix(text, marker)  # a marker may be split in two
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


def partial_suffix(text: str, marker: str) -> int:
    """How long a start of `marker` the text ends with (the rest may come in the next chunk)."""
    for size in range(min(len(marker) - 1, len(text)), 0, -1):
        if text.endswith(marker[:size]):
            return size
    return 0


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
        self,
        content: str,
        reasoning: str,
        finish_reason: str,
        usage: dict[str, int],
        tool_calls: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": content}
        if reasoning:
            message["reasoning_content"] = reasoning
        if tool_calls:  # as OpenAI answers: no content (null) where the reply is calls alone
            message["tool_calls"] = tool_calls
            message["content"] = content or None
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
