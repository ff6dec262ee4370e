"""The loader: 4-bit layout on the miniature checkpoint, and its one-sentence refusals."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from model import ModelConfig
from model.loader import LoadError, check_memory, folder_problem, load, locate


@pytest.fixture(scope="module")
def loaded(demo_config: ModelConfig):
    return load(demo_config, progress=lambda sentence: None)


def _one_sentence(message: str) -> None:
    assert message.count(". ") == 0 and message.endswith(".") and "\n" not in message, message


def test_decoder_is_4bit_and_embedders_and_head_stay_bf16(loaded):
    import bitsandbytes as bnb

    modules = dict(loaded.model.named_modules())
    decoder_linears = [
        name
        for name, module in modules.items()
        if name.startswith("model.language_model.layers.") and isinstance(module, torch.nn.Linear)
    ]
    assert decoder_linears and all(
        isinstance(modules[name], bnb.nn.Linear4bit) for name in decoder_linears
    )
    kept = {
        name: module
        for name, module in modules.items()
        if name == "lm_head" or name.startswith(("model.embed_vision", "model.embed_audio"))
    }
    kept_linears = [module for module in kept.values() if isinstance(module, torch.nn.Linear)]
    assert "lm_head" in kept and len(kept_linears) >= 3
    for module in kept_linears:
        assert not isinstance(module, bnb.nn.Linear4bit)
        assert module.weight.dtype == torch.bfloat16
    assert loaded.info.quantization == "4bit" and loaded.info.demo and loaded.info.device == "cpu"


def test_a_missing_folder_is_named_in_one_sentence(tmp_path: Path):
    missing = folder_problem("/no/such/path")
    assert missing is not None and "/no/such/path" in missing
    _one_sentence(missing)
    assert "config.json" in folder_problem(str(tmp_path))
    assert folder_problem("google/gemma-4-12B-it") is None  # a hub id, not a folder


def test_weights_missing_and_hub_unreachable(no_hub):
    with pytest.raises(LoadError) as error:
        locate(ModelConfig())
    message = str(error.value)
    assert "hf download google/gemma-4-12B-it" in message and "--model PATH" in message
    _one_sentence(message)


def test_not_enough_memory_is_refused_before_loading():
    with pytest.raises(LoadError) as error:
        check_memory(parameters=12_000_000_000_000, quant="4bit", device="cpu")
    assert "GiB of RAM in 4bit" in str(error.value)
    _one_sentence(str(error.value))
    check_memory(parameters=1_000_000, quant="none", device="cpu")  # the miniature fits


def test_too_old_transformers_is_named(monkeypatch: pytest.MonkeyPatch, demo_config):
    from transformers.models.auto import configuration_auto

    names = {
        k: v for k, v in configuration_auto.CONFIG_MAPPING_NAMES.items() if k != "gemma4_unified"
    }
    monkeypatch.setattr(configuration_auto, "CONFIG_MAPPING_NAMES", names)
    with pytest.raises(LoadError, match=r"too old for Gemma 4 unified.*transformers>=5\.10\.1"):
        load(demo_config)


def test_loading_reports_progress(demo_config: ModelConfig):
    sentences: list[str] = []
    load(demo_config, progress=sentences.append)
    assert sentences[0] == "Looking for the model weights"
    assert any(s.startswith("Loading weights: ") and s.endswith("100%") for s in sentences)
    assert sentences[-1] == "Model loaded"
