"""Turns generated token ids into answer and thinking text, a few characters at a time, and
keeps the thought channel shut when thinking is off."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from transformers.generation.logits_process import LogitsProcessor, LogitsProcessorList
from transformers.generation.streamers import BaseStreamer

from .constrained import GrammarRules
from .messages import Tool, ToolCall
from .tool_calls import QUOTE, read_call

THOUGHT_HEADER = "thought\n"  # what the model writes right after <|channel>


def reply_rules(
    tokenizer: Any, thinking: bool, grammar: GrammarRules | None, prompt_tokens: int
) -> LogitsProcessorList:
    """The logits processors for `generate`: the thinking setting (see `thinking_rules`) and,
    with a `grammar`, the one the reply must keep to (its tokens after `prompt_tokens`)."""
    rules = thinking_rules(tokenizer, thinking)
    if grammar is not None:
        rules.append(_Grammar(grammar, prompt_tokens))
    return rules


class _Grammar(LogitsProcessor):
    """Only the tokens that keep the reply to its grammar (constrained.GrammarRules)."""

    def __init__(self, rules: GrammarRules, prompt_tokens: int):
        self.rules = rules
        self.prompt_tokens = prompt_tokens

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        reply = input_ids[0, self.prompt_tokens :].tolist()
        allowed = torch.from_numpy(self.rules.allowed(reply, scores.shape[-1]))
        scores = scores.clone()
        scores[:, ~allowed.to(scores.device)] = -float("inf")
        return scores


def thinking_rules(tokenizer: Any, thinking: bool) -> LogitsProcessorList:
    """The logits processors for `generate` that make a reply keep to the thinking setting.

    With thinking off, the prompt ends in an empty, closed thought channel and the answer comes
    next, but nothing stops a model from opening another channel (the random demo model does,
    in about one reply in ten). What it would write there is reasoning the person turned off:
    neither thinking to show, nor answer text, and hiding it would leave them waiting on tokens
    they never see. So with thinking off `<|channel>` is never sampled, and the answer is all
    the model writes.
    """
    if thinking:
        return LogitsProcessorList()
    return LogitsProcessorList([_ForbiddenToken(tokenizer.convert_tokens_to_ids("<|channel>"))])


class _ForbiddenToken(LogitsProcessor):
    """Gives one token no chance of being sampled.

    Its own class, not SuppressTokensLogitsProcessor: `generate` lets a passed processor of the
    same class replace the one the generation config makes, and that would drop the config's
    `suppress_tokens`.
    """

    def __init__(self, token_id: int):
        self.token_id = token_id

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        scores = scores.clone()  # scores: (batch, vocabulary)
        scores[:, self.token_id] = -float("inf")
        return scores


class ReplyStreamer(BaseStreamer):
    """A per-token callback for `generate`.

    Thinking (between `<|channel>` and `<channel|>`) and the answer are decoded separately and
    passed to `emit(text, thinking)` as soon as they form whole characters. Each token decodes
    only the ids since the previous step's (with that step's for context), so a token costs the
    same at the end of a long reply as at its start. Counts tokens and notes when the first one
    arrived, for timing.

    A tool call (between `<|tool_call>` and `<tool_call|>`) is read whole, its control tokens
    kept, and passed to `call` as a ToolCall of one of `tools` (tool_calls.read_call); one that
    is not a valid call of them stays in the answer as the text the model wrote.
    """

    def __init__(
        self,
        tokenizer: Any,
        emit: Callable[[str, bool], None],
        call: Callable[[ToolCall], None] | None = None,
        tools: tuple[Tool, ...] = (),
    ):
        self.tokenizer = tokenizer
        self.emit = emit
        self.call = call
        self.tools = tools
        self.channel_open_id = tokenizer.convert_tokens_to_ids("<|channel>")
        self.channel_close_id = tokenizer.convert_tokens_to_ids("<channel|>")
        self.call_open_id = tokenizer.convert_tokens_to_ids("<|tool_call>")
        self.call_close_id = tokenizer.convert_tokens_to_ids("<tool_call|>")
        self.call_ids: list[int] | None = None  # a call's tokens while one is being written
        self.byte_ids = byte_token_ids(tokenizer)
        self.thinking = False
        self.ids: dict[bool, list[int]] = {False: [], True: []}
        # Decoded so far, and where the last decoded step's ids start and end in `ids`.
        self.text = {False: "", True: ""}
        self.decoded = {False: (0, 0), True: (0, 0)}
        self.sent_chars = {False: 0, True: 0}
        self.prompt_skipped = False
        self.tokens = 0
        self.first_token_at: float | None = None

    def put(self, value: Any) -> None:
        if not self.prompt_skipped:  # generate() first passes the prompt ids
            self.prompt_skipped = True
            return
        self.add(value.reshape(-1).tolist())

    def add(self, tokens: list[int]) -> None:
        """Generated token ids, in order (engines that do not stream through `generate`)."""
        if self.first_token_at is None:
            self.first_token_at = time.perf_counter()
        for token in tokens:
            self.tokens += 1
            if self.call_ids is not None:
                if token == self.call_close_id:
                    self._end_call()
                else:
                    self.call_ids.append(token)
            elif token == self.call_open_id:  # a call also ends a thought left open
                self._flush(self.thinking, final=True)
                self.thinking, self.call_ids = False, []
            elif token == self.channel_open_id:
                self.thinking = True
            elif token == self.channel_close_id:
                self.thinking = False
            else:
                self.ids[self.thinking].append(token)
                self._flush(self.thinking)

    def end(self) -> None:
        if self.call_ids is not None:  # the reply ended inside a call
            self._end_call()
        for thinking in (False, True):
            self._flush(thinking, final=True)

    def _end_call(self) -> None:
        text = self.tokenizer.decode(self.call_ids, skip_special_tokens=False)
        self.call_ids = None
        call = read_call(text, self.tools)
        if call is not None and self.call is not None:
            self.call(call)
        else:
            self.emit(text.replace(QUOTE, '"'), False)

    def _flush(self, thinking: bool, final: bool = False) -> None:
        ids = self.ids[thinking]
        if ids and ids[-1] in self.byte_ids and not final:
            # A run of byte tokens decodes as a whole (valid UTF-8, else one U+FFFD a byte), so
            # what it says is known only once it ends; it also never straddles a window start.
            return
        start, end = self.decoded[thinking]
        window = self.tokenizer.decode(ids[start:], skip_special_tokens=True)
        if window.endswith("\ufffd") and not final:
            return  # half of a multi-byte character
        # The previous step's ids lead the window so that a word boundary decodes as it would
        # in the whole reply (a leading space is dropped only at the start of a decode).
        known = self.tokenizer.decode(ids[start:end], skip_special_tokens=True)
        self.text[thinking] += window[len(known) :]
        self.decoded[thinking] = (end, len(ids))
        text = self.text[thinking]
        if thinking:
            if THOUGHT_HEADER.startswith(text) and not final:
                return  # the header may still be arriving
            text = text.removeprefix(THOUGHT_HEADER)
        new = text[self.sent_chars[thinking] :]
        if new:
            self.sent_chars[thinking] = len(text)
            self.emit(new, thinking)


def byte_token_ids(tokenizer: Any) -> frozenset[int]:
    """The ids of a byte-fallback tokenizer's byte tokens <0x00>..<0xFF> (Gemma's), if any: a
    tokenizer may name them itself (`byte_ids`), else they are looked up by name."""
    named = getattr(tokenizer, "byte_ids", None)
    if named is not None:
        return frozenset(named)
    ids = tokenizer.convert_tokens_to_ids([f"<0x{byte:02X}>" for byte in range(256)])
    unknown = getattr(tokenizer, "unk_token_id", None)
    return frozenset(i for i in ids if i is not None and i != unknown)
