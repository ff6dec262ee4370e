"""GGUF files of Gemma 4 12B's shape with random weights, for timing llama.cpp without the
real weights: the miniature's GGUF files (converted by llama.cpp's own converter) grown to the
12B's widths, 48 layers and 262,144-token vocabulary.

The model is laid out as llama.cpp's Q4_K_M lays out the 12B: 2-D weights in Q4_K, the tied
embedding and the value and down projections of the layers Q4_K_M favours in Q6_K, norms in
F32 (7.4 GB, as the published Q4_K_M). Blocks are random bytes with small, finite scales, so
every step computes on ordinary numbers. The projector (about 50M parameters) is in F16.
Written tensor by tensor, so memory stays small; cached, as a file takes a minute to write.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .shapes import GEMMA4_12B_LAYERS, GEMMA4_12B_TEXT

H = GEMMA4_12B_TEXT["hidden_size"]
FF = GEMMA4_12B_TEXT["intermediate_size"]
HEADS = GEMMA4_12B_TEXT["num_attention_heads"]
VOCAB = GEMMA4_12B_TEXT["vocab_size"]
HEAD_DIM = {False: GEMMA4_12B_TEXT["head_dim"], True: GEMMA4_12B_TEXT["global_head_dim"]}
KV_HEADS = {False: GEMMA4_12B_TEXT["num_key_value_heads"], True: 1}
SLIDING = [(layer + 1) % 6 != 0 for layer in range(GEMMA4_12B_LAYERS)]  # every sixth is full
PATCH_VALUES = 6912  # a 48x48 RGB patch
POSITIONS = 1120
AUDIO_FRAME = 640  # samples a token
SCALE = 2.0**-10  # the blocks' scale factors (d): small and finite
VERSION = 1  # bump when the layout changes, so a cached file is written again


def model_and_projector(
    folder: Path, miniature: tuple[Path, Path], gguf: Any, say: Callable[[str], None]
) -> tuple[Path, Path]:
    """The 12B-shape model and projector in `folder`, written if missing. `gguf` is the gguf-py
    module of the converter (model.gguf_files.ensure_converter)."""
    model = folder / f"gemma4-12b-shape-random-Q4_K_M-v{VERSION}.gguf"
    projector = folder / f"mmproj-gemma4-12b-shape-random-F16-v{VERSION}.gguf"
    folder.mkdir(parents=True, exist_ok=True)
    if not model.is_file():
        say(f"Writing {model.name} (7.4 GB of random blocks)")
        overrides = _model_overrides() | _vocabulary(gguf.GGUFReader(str(miniature[0])))
        _write(model, miniature[0], "gemma4", overrides, _model_tensors(gguf), gguf)
    if not projector.is_file():
        _write(
            projector, miniature[1], "clip", _projector_overrides(), _projector_tensors(gguf), gguf
        )
    return model, projector


def _write(
    path: Path, template: Path, arch: str, overrides: dict, tensors: list, gguf: Any
) -> None:
    """A GGUF with `template`'s metadata (`overrides` replace values) and `tensors`:
    (name, numpy shape outermost first, type)."""
    reader = gguf.GGUFReader(str(template))
    partial = path.with_suffix(".partial")
    writer = gguf.GGUFWriter(str(partial), arch)
    for key, field in reader.fields.items():
        if key.startswith("GGUF.") or key == "general.architecture":
            continue
        value = overrides.get(key, field.contents())
        kind, sub_type = field.types[0], field.types[1] if len(field.types) > 1 else None
        if isinstance(value, list) and kind != gguf.GGUFValueType.ARRAY:  # a value a layer
            kind, sub_type = gguf.GGUFValueType.ARRAY, kind
        writer.add_key_value(key, value, kind, sub_type)
    for name, shape, kind in tensors:
        stored = _stored_shape(shape, kind, gguf)
        dtype = np.uint8 if _quantized(kind) else FLOATS[kind.name]
        nbytes = int(np.prod(stored)) * np.dtype(dtype).itemsize
        raw = kind if _quantized(kind) else None
        writer.add_tensor_info(name, stored, np.dtype(dtype), nbytes, raw_dtype=raw)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    rng = np.random.default_rng(0)
    for name, shape, kind in tensors:
        if name.endswith(("rope_freqs.weight", "layer_output_scale.weight")):
            writer.write_tensor_data(np.ones(shape, np.float32))  # factors of 1: unchanged
        else:
            writer.write_tensor_data(_random(rng, shape, kind, gguf))
    writer.close()
    partial.rename(path)


FLOATS = {"F32": np.float32, "F16": np.float16}


def _quantized(kind: Any) -> bool:
    return kind.name in ("Q4_K", "Q6_K")


def _stored_shape(shape: tuple[int, ...], kind: Any, gguf: Any) -> tuple[int, ...]:
    if not _quantized(kind):
        return shape
    block_values, block_bytes = gguf.GGML_QUANT_SIZES[kind]
    return (*shape[:-1], shape[-1] // block_values * block_bytes)


def _random(rng: np.random.Generator, shape: tuple[int, ...], kind: Any, gguf: Any) -> np.ndarray:
    if not _quantized(kind):
        values = rng.normal(0, 0.02, shape).astype(np.float32)
        return values.astype(np.float16) if kind.name == "F16" else values
    block_values, block_bytes = gguf.GGML_QUANT_SIZES[kind]
    blocks = rng.integers(0, 256, (int(np.prod(shape)) // block_values, block_bytes), np.uint8)
    scale = np.frombuffer(np.float16(SCALE).tobytes(), np.uint8)
    if kind.name == "Q4_K":  # d, dmin (f16) lead the block
        blocks[:, 0:2], blocks[:, 2:4] = scale, 0
    else:  # Q6_K: d (f16) ends it
        blocks[:, -2:] = scale
    return blocks.reshape(_stored_shape(shape, kind, gguf))


def _model_overrides() -> dict:
    return {
        "general.name": "Gemma 4 12B shape (random weights)",
        "general.file_type": 15,  # MOSTLY_Q4_K_M
        "gemma4.block_count": GEMMA4_12B_LAYERS,
        "gemma4.embedding_length": H,
        "gemma4.feed_forward_length": FF,
        "gemma4.attention.head_count": HEADS,
        "gemma4.attention.key_length": HEAD_DIM[True],
        "gemma4.attention.value_length": HEAD_DIM[True],
        "gemma4.attention.key_length_swa": HEAD_DIM[False],
        "gemma4.attention.value_length_swa": HEAD_DIM[False],
        "gemma4.rope.dimension_count": HEAD_DIM[True],
        "gemma4.rope.dimension_count_swa": HEAD_DIM[False],
        "gemma4.attention.sliding_window": GEMMA4_12B_TEXT["sliding_window"],
        "gemma4.attention.sliding_window_pattern": SLIDING,
        "gemma4.attention.head_count_kv": [KV_HEADS[not s] for s in SLIDING],
    }


def _vocabulary(reader: Any) -> dict:
    """The miniature's tokens, then unused ones up to the 12B's vocabulary size (the prompts
    the bench sends use the miniature's; the embedding and output head cost their real size)."""
    tokens = reader.fields["tokenizer.ggml.tokens"].contents()
    extra = range(len(tokens), VOCAB)
    unused = 5  # llama.cpp's LLAMA_TOKEN_TYPE_UNUSED
    return {
        "tokenizer.ggml.tokens": tokens + [f"<unused{i}>" for i in extra],
        "tokenizer.ggml.scores": reader.fields["tokenizer.ggml.scores"].contents()
        + [0.0] * len(extra),
        "tokenizer.ggml.token_type": reader.fields["tokenizer.ggml.token_type"].contents()
        + [unused] * len(extra),
    }


def _model_tensors(gguf: Any) -> list:
    q4, q6, f32 = (gguf.GGMLQuantizationType[name] for name in ("Q4_K", "Q6_K", "F32"))
    tensors = [
        ("rope_freqs.weight", (HEAD_DIM[True] // 2,), f32),
        ("token_embd.weight", (VOCAB, H), q6),
    ]
    n = GEMMA4_12B_LAYERS
    for layer, sliding in enumerate(SLIDING):
        full = not sliding
        dim, kv = HEAD_DIM[full], KV_HEADS[full]
        # llama.cpp's use_more_bits: the first and last eighth, and every third between.
        more = layer < n // 8 or layer >= 7 * n // 8 or (layer - n // 8) % 3 == 2
        tensors += [
            (f"blk.{layer}.{name}", shape, kind)
            for name, shape, kind in (
                ("attn_norm.weight", (H,), f32),
                ("layer_output_scale.weight", (1,), f32),
                ("ffn_down.weight", (H, FF), q6 if more else q4),
                ("ffn_gate.weight", (FF, H), q4),
                ("ffn_up.weight", (FF, H), q4),
                ("post_attention_norm.weight", (H,), f32),
                ("post_ffw_norm.weight", (H,), f32),
                ("ffn_norm.weight", (H,), f32),
                ("attn_k_norm.weight", (dim,), f32),
                ("attn_k.weight", (kv * dim, H), q4),
                ("attn_output.weight", (H, HEADS * dim), q4),
                ("attn_q_norm.weight", (dim,), f32),
                ("attn_q.weight", (HEADS * dim, H), q4),
            )
        ]
        if sliding:  # full layers reuse their keys as values
            tensors.append((f"blk.{layer}.attn_v.weight", (kv * dim, H), q6 if more else q4))
    tensors.append(("output_norm.weight", (H,), f32))
    return tensors


def _projector_overrides() -> dict:
    return {
        "general.name": "Gemma 4 12B shape projector (random weights)",
        "general.file_type": 1,  # F16
        "clip.vision.projection_dim": H,
        "clip.vision.embedding_length": H,
        "clip.audio.projection_dim": H,
    }


def _projector_tensors(gguf: Any) -> list:
    f16, f32 = gguf.GGMLQuantizationType.F16, gguf.GGMLQuantizationType.F32
    return [
        ("mm.a.input_projection.weight", (H, AUDIO_FRAME), f16),
        ("mm.input_projection.weight", (H, H), f16),
        ("v.patch_embd.bias", (H,), f32),
        ("v.patch_embd.weight", (H, PATCH_VALUES), f16),
        ("v.patch_norm.1.bias", (PATCH_VALUES,), f32),
        ("v.patch_norm.1.weight", (PATCH_VALUES,), f32),
        ("v.patch_norm.2.bias", (H,), f32),
        ("v.patch_norm.2.weight", (H,), f32),
        ("v.position_embd.weight", (2, POSITIONS, H), f32),
        ("v.patch_norm.3.bias", (H,), f32),
        ("v.patch_norm.3.weight", (H,), f32),
    ]
