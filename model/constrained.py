"""Constrained decoding: a reply held to a JSON schema token by token, so that it always parses
and matches (OpenAI's `response_format`), or to tool calls (`tool_choice` "required" or a named
function, see tool_calls.py), on both in-process engines.

llguidance (Microsoft's grammar engine, in Rust) computes which tokens may come next. It was
picked over xgrammar and outlines-core because it reads both tokenizers Loupe samples with: a
Hugging Face fast tokenizer (the transformers engine) and llama.cpp's own vocabulary (the GGUF
engine), and because it needs no torch and no compiler: its masks are plain bit arrays, applied
here with numpy. Computing a mask takes tens of microseconds; bench/ measures what a schema
costs a reply in tokens per second.

JSON is written compact (no free whitespace), so that a model cannot wander in blank space.
Thinking is off while a grammar holds: it is the whole reply. The grammar alone decides
which tokens may come: the tokens a model's generation config suppresses are not suppressed
again (Gemma 4's are media markers, never JSON text; the demo model's are the byte tokens it
spells "{" and quotes with).
"""

from __future__ import annotations

import json
from typing import Any

import llguidance
import numpy as np

from .messages import GenerationOptions
from .tool_calls import calls_grammar

# A schema for "any JSON object" (response_format {"type": "json_object"}).
ANY_OBJECT = json.dumps({"type": "object"})
# How the JSON is written: compact, as json.dumps(separators=(",", ":")) writes it.
COMPACT = {"whitespace_flexible": False}


class SchemaError(ValueError):
    """A schema the grammar engine cannot hold a reply to; its sentence says why."""


def schema_grammar(schema: str) -> str:
    """The grammar for replies that match `schema` (JSON text); SchemaError if it has none."""
    try:
        grammar = llguidance.LLMatcher.grammar_from_json_schema(schema, defaults=COMPACT)
    except (ValueError, TypeError) as exc:
        raise SchemaError(f"The JSON schema cannot be used: {_first_line(exc)}") from None
    problem = llguidance.LLMatcher.validate_grammar(grammar)
    if problem:
        raise SchemaError(f"The JSON schema cannot be used: {_first_line(problem)}")
    return grammar


def reply_grammar(options: GenerationOptions) -> str:
    """The grammar a reply is held to: its JSON schema's, its own, or, where it must be tool
    calls, theirs (tool_calls.calls_grammar); "" for a free reply."""
    if options.response_schema:
        return schema_grammar(options.response_schema)
    if options.response_grammar:
        return options.response_grammar
    if options.calls_only:
        return calls_grammar(options.tools, options.named_tool)
    return ""


class GrammarRules:
    """The tokens a reply may take next, so that it keeps to a grammar: `allowed(reply, size)`
    after each sampled token (`reply`: the tokens so far, from the first), as a boolean mask
    over a vocabulary of `size`. `tokenizer` is an llguidance tokenizer (see `hf_tokenizer`,
    `llama_tokenizer`)."""

    def __init__(self, tokenizer: llguidance.LLTokenizer, grammar: str):
        self.matcher = llguidance.LLMatcher(tokenizer, grammar, log_level=0)
        self.consumed = 0

    def allowed(self, reply: list[int], size: int) -> np.ndarray:
        """Which of `size` tokens may follow `reply`."""
        for token in reply[self.consumed :]:
            self.matcher.consume_token(token)
        self.consumed = len(reply)
        if self.matcher.is_error():  # cannot happen to a reply sampled under these masks
            raise SchemaError(f"The reply left its grammar: {self.matcher.get_error()}")
        bits = np.frombuffer(self.matcher.compute_bitmask(), dtype=np.uint8)
        allowed = np.unpackbits(bits, bitorder="little").astype(bool)
        mask = np.zeros(size, dtype=bool)
        shared = min(size, len(allowed))
        mask[:shared] = allowed[:shared]
        return mask


def hf_tokenizer(tokenizer: Any, end_ids: list[int]) -> llguidance.LLTokenizer:
    """llguidance's view of a Hugging Face fast tokenizer; a reply may end with any of
    `end_ids` once it is whole. About a second: made once per loaded model."""
    # Each engine's bridge is imported by that engine's process alone: the other's library
    # (llama.cpp, transformers) need not load there.
    import llguidance.hf

    return llguidance.hf.from_tokenizer(tokenizer, eos_token=end_ids)


def llama_tokenizer(vocab: Any, end_ids: list[int]) -> llguidance.LLTokenizer:
    """llguidance's view of llama.cpp's vocabulary (`llama_model_get_vocab`)."""
    import llguidance.llamacpp

    return llguidance.llamacpp.lltokenizer_from_vocab(vocab, eos_token=end_ids)


def _first_line(value: object) -> str:
    return str(value).strip().splitlines()[0] if str(value).strip() else "unknown error"
