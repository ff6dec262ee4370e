"""A GGUF model as llama.cpp loaded it, with what the prompt builder and the reply loop read."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .engine import ModelInfo


@dataclass
class LlamaModel:
    """A loaded GGUF model: llama-cpp-python's Llama, the projector's mtmd context (None: text
    only), the chat template, and the token ids the reply loop needs."""

    llm: Any
    mtmd: Any
    template: Any
    info: ModelInfo
    forbidden: list[int]  # never sampled (the model's suppress tokens)
    end_ids: list[int]  # end a reply (held back until min_new_tokens)
    channel_open: int
    byte_ids: frozenset[int]  # the byte-fallback tokens <0x00>..<0xFF>
    grammar_tokenizer: Any = None  # the vocabulary as the grammar engine reads it, once needed
