"""Gemma 4's multi-token-prediction drafter, used as `generate(assistant_model=...)`.

The drafter (`google/gemma-4-12B-it-assistant`, ~423M parameters) reads the target's keys and
values instead of keeping its own cache, and proposes a few tokens per step that the target
checks in one pass: the target decides every token (greedy output is the same, up to bf16
rounding where two tokens tie), only faster when the drafts are accepted. Batch size 1 only,
which is how Loupe runs.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

DRAFTER_SUFFIX = "-assistant"  # google/gemma-4-12B-it -> google/gemma-4-12B-it-assistant
DRAFT_TOKENS = 4  # drafts per step when the drafter's generation config names none


@contextmanager
def kv_sharing_fix() -> Iterator[None]:
    """Build the target and the drafter inside this, or transformers 5.23.0 cannot pair them.

    Workaround for transformers 5.23.0, `Gemma4UnifiedTextConfig.kv_sharing_modes`:
    - a drafter shares every layer's keys and values, and the property raises ValueError for it
      ("The set of layer types producing a cache is different..."); here every layer "reuse"s;
    - a target with `num_kv_shared_layers=0` (the 12B) gets no "store" layer, so it returns no
      shared keys and values and drafting fails with KeyError: 'full_attention'; here the last
      layer of each type "store"s them (a reference kept per step; nothing is computed twice).
    The modes are read only while the attention layers are built, so the patch is undone after.
    Remove this when `tests/test_drafter.py::test_transformers_still_needs_the_fix` fails: then
    transformers builds a miniature drafter and its target by itself.
    """
    from transformers import Gemma4UnifiedTextConfig

    original = Gemma4UnifiedTextConfig.kv_sharing_modes
    Gemma4UnifiedTextConfig.kv_sharing_modes = property(
        lambda config: _kv_sharing_modes(config, original)
    )
    try:
        yield
    finally:
        Gemma4UnifiedTextConfig.kv_sharing_modes = original


def _kv_sharing_modes(config: Any, original: property) -> list[str | None]:
    layers, shared = config.num_hidden_layers, config.num_kv_shared_layers
    if shared == layers:
        return ["reuse"] * layers
    if shared:  # partly shared (smaller Gemma 4 models): the library gets these right
        return original.fget(config)
    modes: list[str | None] = [None] * layers
    for layer_type in set(config.layer_types):
        last = layers - 1 - config.layer_types[::-1].index(layer_type)
        modes[last] = "store"
    return modes


def load_drafter(source: str, device: str) -> Any:
    """The drafter from a folder or hub id, in bf16 on `device` (call inside kv_sharing_fix)."""
    import torch
    from transformers import AutoModelForCausalLM

    drafter = AutoModelForCausalLM.from_pretrained(
        source, device_map={"": device}, dtype=torch.bfloat16
    )
    if drafter.generation_config.num_assistant_tokens is None:
        drafter.generation_config.num_assistant_tokens = DRAFT_TOKENS
    return drafter.eval()
