"""Typed settings for loading the model (no heavy imports here)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

DEFAULT_MODEL_ID = "google/gemma-4-12B-it"
Device = Literal["auto", "cuda", "cpu"]
Quantization = Literal["4bit", "8bit", "none", "qat"]
# Which library runs the model in the worker: transformers with bitsandbytes, or llama.cpp
# (llama-cpp-python) on GGUF files; "auto" chooses by the machine (model/engine_choice.py).
Backend = Literal["auto", "transformers", "llama.cpp"]
Fault = Literal["", "out_of_memory", "hang"]
# Generous: on the CPU a long prompt with images can take minutes before its first token.
DEFAULT_HANG_TIMEOUT_S = 300.0
# The text of a message that sets off `ModelConfig.inject_fault` (tests only).
FAULT_TRIGGER = "[loupe test: inject a fault]"


def default_cache_root() -> Path:
    """Where Loupe keeps built artefacts such as the miniature checkpoint."""
    return Path(os.environ.get("LOUPE_CACHE_DIR") or Path.home() / ".cache" / "loupe")


@dataclass(frozen=True)
class ModelConfig:
    """Which model to load and how.

    `demo` selects the miniature random-weight checkpoint. `fallback_to_demo` lets the engine
    load the miniature checkpoint when `model_id` cannot be loaded (used when the person did not
    choose a model explicitly).

    A worker that sends nothing for `hang_timeout_s` while answering is taken as hung, stopped
    and restarted. `context_tokens` caps what a prompt and its reply may take together (0: the
    model's own `max_position_embeddings`); older turns are left out to stay within it.

    `backend` is the library that runs the model: see Backend.

    `inject_fault` exists for the fault tests: only code sets it (no flag, no environment
    variable, nothing on the page or the API). With it set, the worker fails in that way while
    answering a request whose last message is exactly FAULT_TRIGGER, after its first token.
    """

    model_id: str = DEFAULT_MODEL_ID
    demo: bool = False
    device: Device = "auto"
    quant: Quantization = "4bit"
    fallback_to_demo: bool = False
    cache_root: Path | None = None
    hang_timeout_s: float = DEFAULT_HANG_TIMEOUT_S
    context_tokens: int = 0
    backend: Backend = "auto"
    inject_fault: Fault = ""

    def as_demo(self) -> ModelConfig:
        """The same settings pointed at the miniature checkpoint."""
        return replace(self, demo=True, fallback_to_demo=False)


DEFAULT_ENGINE_CONCURRENCY = 8


@dataclass(frozen=True)
class RemoteEngineConfig:
    """An OpenAI-compatible server to answer instead of the in-process model.

    `url` is its base URL (".../v1"); `model` the served name to ask for ("" takes the one the
    server lists); `api_key` goes as a Bearer token and is never shown (not even in repr).
    Up to `concurrency` replies run at once: the server batches them. A server that sends
    nothing for `timeout_s` mid-reply is taken as gone.
    """

    url: str
    model: str = ""
    api_key: str = field(default="", repr=False)
    concurrency: int = DEFAULT_ENGINE_CONCURRENCY
    timeout_s: float = DEFAULT_HANG_TIMEOUT_S

    @property
    def public_url(self) -> str:
        """The URL without credentials or query, fit for the page, the log and /health."""
        parts = urlsplit(self.url)
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        netloc = f"{host}:{parts.port}" if parts.port else host
        return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
