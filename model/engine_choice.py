"""Which library runs the model in the worker, and why: `--engine auto|transformers|llama.cpp`.

On a CUDA GPU, transformers with bitsandbytes' 4-bit kernels; elsewhere llama.cpp, which reads
GGUF weights at close to the memory's speed on any CPU (and on Apple's GPUs through Metal),
where bitsandbytes is fast only on a CPU with AVX-512 BF16. The demo's miniature runs in
transformers unless llama.cpp is asked for by name: it is built for transformers, and llama.cpp
takes it only after a conversion.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from .config import ModelConfig

CPUINFO = Path("/proc/cpuinfo")
# Decode speed of the 12B in bitsandbytes 4-bit on two cores, as measured (bench/README.md).
BNB_CPU_SPEED = {True: "1 to 2.5 tokens/s", False: "0.04 to 0.12 tokens/s (up to 25 s a token)"}


@dataclass(frozen=True)
class EngineChoice:
    backend: str  # "transformers" or "llama.cpp"
    reason: str  # a sentence for the status line and /health


def choose_backend(config: ModelConfig) -> EngineChoice:
    """The backend `config` asks for, with auto resolved for this machine. Imports torch."""
    if config.backend != "auto":
        return EngineChoice(config.backend, f"{config.backend} (chosen with --engine)")
    if config.demo:
        return EngineChoice("transformers", "transformers (the demo's default)")
    if config.device != "cpu" and _cuda_available():
        return EngineChoice("transformers", "transformers + bitsandbytes (a CUDA GPU is here)")
    if config.device == "cuda":
        return EngineChoice("transformers", "transformers (--device cuda)")
    if importlib.util.find_spec("llama_cpp") is None:
        return EngineChoice(
            "transformers", "transformers (no CUDA GPU, but llama-cpp-python is not installed)"
        )
    return EngineChoice("llama.cpp", "llama.cpp (no CUDA GPU here)")


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def has_avx512_bf16() -> bool:
    """Whether this CPU has AVX-512 BF16, which bitsandbytes' fast CPU path needs (Linux only;
    elsewhere False, as on every Mac and most laptops)."""
    try:
        return " avx512_bf16" in CPUINFO.read_text()
    except OSError:
        return False


def bitsandbytes_cpu_note() -> str:
    """What to expect of bitsandbytes on this CPU, said before the model loads."""
    fast = has_avx512_bf16()
    has = "has" if fast else "lacks"
    return (
        f"bitsandbytes 4-bit on a CPU: this one {has} AVX-512 BF16, so expect "
        f"{BNB_CPU_SPEED[fast]} from the 12B; --engine llama.cpp is much faster."
    )
