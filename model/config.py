"""Typed settings for loading the model (no heavy imports here)."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

DEFAULT_MODEL_ID = "google/gemma-4-12B-it"
Device = Literal["auto", "cuda", "cpu"]
Quantization = Literal["4bit", "8bit", "none"]


def default_cache_root() -> Path:
    """Where Loupe keeps built artefacts such as the miniature checkpoint."""
    return Path(os.environ.get("LOUPE_CACHE_DIR") or Path.home() / ".cache" / "loupe")


@dataclass(frozen=True)
class ModelConfig:
    """Which model to load and how.

    `demo` selects the miniature random-weight checkpoint. `fallback_to_demo` lets the engine
    load the miniature checkpoint when `model_id` cannot be loaded (used when the person did not
    choose a model explicitly).
    """

    model_id: str = DEFAULT_MODEL_ID
    demo: bool = False
    device: Device = "auto"
    quant: Quantization = "4bit"
    fallback_to_demo: bool = False
    cache_root: Path | None = None

    def as_demo(self) -> ModelConfig:
        """The same settings pointed at the miniature checkpoint."""
        return replace(self, demo=True, fallback_to_demo=False)
