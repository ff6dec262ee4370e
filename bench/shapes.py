"""Model shapes to benchmark without their weights: the real Gemma 4 12B, and scaled copies.

The values are google/gemma-4-12B-it's (../shared/docs/gemma4-12b.md). The control-token ids
come from the processor the model is paired with (the miniature's tokenizer), so prompts with
images and audio line up; the vocabulary keeps its real size, so the embedding table and the
output head cost what they really cost.
"""

from __future__ import annotations

from typing import Any

SHAPES = ("12b",)
GEMMA4_12B_LAYERS = 48  # 5 sliding-window : 1 full-attention; the last layer is full
GEMMA4_12B_TEXT = {
    "vocab_size": 262_144,
    "hidden_size": 3840,
    "intermediate_size": 15_360,
    "num_attention_heads": 16,
    "num_key_value_heads": 8,  # sliding layers
    "head_dim": 256,
    "global_head_dim": 512,  # full layers: one KV head, keys reused as values
    "num_global_key_value_heads": 1,
    "attention_k_eq_v": True,
    "sliding_window": 1024,
    "max_position_embeddings": 262_144,
    "final_logit_softcapping": 30.0,
}
WIDTHS = ("vocab_size", "hidden_size", "intermediate_size", "head_dim", "global_head_dim")
# On CPUs with AVX-512 BF16, bitsandbytes repacks each 4-bit layer for its CPU kernel
# (functional._convert_weight_packed_for_cpu): outputs in groups of 32, inputs in whole 64-value
# quantization blocks, or the repacking fails. The 12B's widths are all multiples of 64, and a
# shrunk copy rounds its widths up to multiples of 64 so that it takes the same path.
WIDTH_MULTIPLE = 64
GEMMA4_12B_PARAMETERS = 11.96e9
TOKENS = ("image_token", "boi_token", "eoi_token", "audio_token", "boa_token", "eoa_token")


def gemma4_12b_config(processor: Any, shrink: int = 1) -> Any:
    """The 12B's configuration; `shrink` > 1 divides its widths and layers by that much.

    A shrunk copy takes the same construction path at a size a CPU builds in seconds; its widths
    are rounded up to multiples of WIDTH_MULTIPLE.
    """
    from transformers import (
        Gemma4UnifiedAudioConfig,
        Gemma4UnifiedConfig,
        Gemma4UnifiedTextConfig,
        Gemma4UnifiedVisionConfig,
    )

    text = {**GEMMA4_12B_TEXT, **{name: _shrunk(GEMMA4_12B_TEXT[name], shrink) for name in WIDTHS}}
    text["num_hidden_layers"] = max(6, GEMMA4_12B_LAYERS // shrink)
    tokenizer = processor.tokenizer
    ids = {name: tokenizer.convert_tokens_to_ids(getattr(tokenizer, name)) for name in TOKENS}
    return Gemma4UnifiedConfig(
        text_config=Gemma4UnifiedTextConfig(
            **text,
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
        ),
        vision_config=Gemma4UnifiedVisionConfig(
            mm_embed_dim=text["hidden_size"], output_proj_dims=text["hidden_size"]
        ),
        audio_config=Gemma4UnifiedAudioConfig(
            audio_embed_dim=processor.feature_extractor.audio_samples_per_token
        ),
        boi_token_id=ids["boi_token"],
        eoi_token_id=ids["eoi_token"],
        image_token_id=ids["image_token"],
        video_token_id=tokenizer.convert_tokens_to_ids("<|video|>"),
        boa_token_id=ids["boa_token"],
        eoa_token_index=ids["eoa_token"],
        audio_token_id=ids["audio_token"],
    )


def _shrunk(width: int, shrink: int) -> int:
    """`width` / `shrink`, rounded up to a multiple of WIDTH_MULTIPLE (the 12B's own are)."""
    return -(-width // (shrink * WIDTH_MULTIPLE)) * WIDTH_MULTIPLE
