"""The benchmark harness: its quick mode end to end, and the 12B shape's construction path."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bench.samples import photo
from tests.conftest import ROOT

QUICK_RUN_S = 600


@pytest.mark.heavy
def test_quick_mode_writes_json_a_table_and_a_plot(tmp_path: Path):
    subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--out", str(tmp_path)],
        cwd=ROOT,
        check=True,
        timeout=QUICK_RUN_S,
        capture_output=True,
    )
    (document,) = tmp_path.glob("*.json")
    results = json.loads(document.read_text())
    figures = results["figures"]
    stages = {figure["stage"] for figure in figures}
    for stage in ("load 4bit", "time to first token 4bit", "decode 4bit", "settings", "engine"):
        assert stage in stages, stage
    assert {"app", "gradio alone", "speech recognition", "remote", "batch", "video"} <= stages
    # The worst request the (scaled) limits allow, answered, and the memory it added.
    assert "request memory" in stages
    [memory] = [note for note in results["notes"] if note.startswith("request memory:")]
    assert "HTTP 200, answered" in memory, memory
    recording = [f for f in figures if "screen recording" in f["name"]]
    assert {f["stage"] for f in recording} == {
        "video",
        "time to first token 4bit",
        "processor 4bit",
        "memory 4bit",
    }
    assert all(math.isfinite(f["median"]) and f["median"] >= 0 for f in figures)
    rates = [f for f in figures if f["unit"] == "tokens/s"]
    assert rates and all(f["median"] > 0 for f in rates)
    ratios = {f["stage"]: f["median"] for f in figures if f["unit"] == "ratio"}
    assert set(ratios) == {"engine", "app", "remote", "batch"}
    assert all(0 < r < 10 for r in ratios.values())
    assert sum(f["stage"] == "remote" and f["unit"] == "ratio" for f in figures) == 2
    # Describing a folder: images per minute in process and on a server, each against the
    # model's own pace, and the run's summary (every file described).
    per_minute = [f for f in figures if f["unit"] == "images/min"]
    assert len(per_minute) == 4 and all(f["median"] > 0 for f in per_minute)
    assert sum(f["stage"] == "batch" and f["unit"] == "ratio" for f in figures) == 2
    summaries = [note for note in results["notes"] if "the job's summary" in note]
    assert len(summaries) == 2 and all("0 failed" in note for note in summaries)
    v1_skipped = any(note.startswith("app /v1: not measured") for note in results["notes"])
    assert "app /v1" in stages or v1_skipped
    assert results["machine"]["cpu"] and results["notes"]
    table = document.with_suffix(".md").read_text()
    assert "| stage | figure | median | min | max | unit | runs |" in table
    assert table.count("\n| ") >= len(figures)
    assert document.with_suffix(".png").read_bytes().startswith(b"\x89PNG")


def test_the_12b_shape_suits_the_cpu_4bit_layout(processor):
    """Every 4-bit layer, of the real shape and of the shrunk copy, can be repacked for the CPU.

    On CPUs with AVX-512 BF16, bitsandbytes repacks each 4-bit weight on first use; a width it
    cannot repack fails the first reply there (and passes everywhere else). Its repacking runs
    here on the meta device, shapes only, so every CPU checks it.
    """
    import bitsandbytes as bnb
    from transformers import AutoModelForMultimodalLM
    from transformers.integrations.bitsandbytes import replace_with_bnb_linear

    from bench.shapes import gemma4_12b_config
    from model.loader import UNQUANTIZED_MODULES, quantization_config

    for shrink in (1, 16):
        with torch.device("meta"):
            model = AutoModelForMultimodalLM.from_config(gemma4_12b_config(processor, shrink))
        model = replace_with_bnb_linear(model, UNQUANTIZED_MODULES, quantization_config("4bit"))
        layers = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
        assert len(layers) > 40
        for shape in {(m.out_features, m.in_features, m.weight.blocksize) for m in layers}:
            _repack_on_meta(*shape)


def _repack_on_meta(outputs: int, inputs: int, blocksize: int) -> None:
    """bitsandbytes' CPU repacking of an NF4 weight of this shape; raises if it cannot be done.

    Without double quantization: that only changes how the block scales are stored on the way
    in, not the shapes the repacking needs.
    """
    from bitsandbytes.functional import QuantState, _convert_weight_packed_for_cpu

    values = outputs * inputs
    scales = torch.empty(-(-values // blocksize), device="meta")
    state = QuantState(scales, torch.Size((outputs, inputs)), blocksize=blocksize, quant_type="nf4")
    packed = torch.empty(values // 2, 1, dtype=torch.uint8, device="meta")
    _convert_weight_packed_for_cpu(packed, state)


def test_the_12b_shape_is_built_quantized_in_place(processor):
    """The real configuration (counted on the meta device) and, shrunk, the same build path."""
    import bitsandbytes as bnb
    from transformers import AutoModelForMultimodalLM

    from bench.shapes import GEMMA4_12B_PARAMETERS, gemma4_12b_config
    from model.loader import build_random
    from model.messages import GenerationOptions, Message
    from model.prompts import build_inputs

    with torch.device("meta"):
        full = AutoModelForMultimodalLM.from_config(gemma4_12b_config(processor))
    parameters = sum(p.numel() for p in full.parameters())
    assert abs(parameters - GEMMA4_12B_PARAMETERS) / GEMMA4_12B_PARAMETERS < 0.005

    model = build_random(gemma4_12b_config(processor, shrink=16), "4bit", "cpu")
    tensors = [*model.parameters(), *model.buffers()]
    assert not any(t.is_meta for t in tensors)
    quantized = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert len(quantized) > 40 and all(m.weight.bnb_quantized for m in quantized)
    # Repacked for this CPU while building, where bitsandbytes would on first use (as `load`).
    for layer in quantized:
        repacked = getattr(layer.weight.quant_state, "packing_format_for_cpu", False)
        assert repacked == bool(layer.support_avx512bf16_for_cpu)
    assert model.lm_head.weight.dtype == torch.bfloat16  # kept unquantized, tied to the input
    assert model.lm_head.weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()
    assert model.model.embed_vision.patch_dense.weight.dtype == torch.bfloat16
    message = Message("user", "What is in this picture?", images=(photo(),))
    inputs = build_inputs(processor, (message,), GenerationOptions()).to(dtype=torch.bfloat16)
    with torch.inference_mode():
        output = model.generate(
            **inputs,
            max_new_tokens=4,
            min_new_tokens=4,
            do_sample=False,
            output_logits=True,
            return_dict_in_generate=True,
        )
    assert output.sequences.shape[1] == inputs["input_ids"].shape[1] + 4
    assert all(torch.isfinite(logits).all() for logits in output.logits)
