"""The loader: 4-bit layout on the miniature checkpoint, and its one-sentence refusals."""

from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from model import ModelConfig
from model.folder import folder_problem
from model.loader import (
    BNB_CPU_LOGGER,
    KERNELS_NOTICE,
    PREPARING,
    LoadError,
    check_memory,
    load,
    locate,
)
from tests.conftest import ROOT


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


@pytest.fixture
def model_folder(miniature: Path, tmp_path: Path) -> Path:
    """A complete model folder of our own to take files away from."""
    folder = tmp_path / "gemma"
    shutil.copytree(miniature, folder)
    return folder


def test_a_complete_folder_is_accepted(model_folder: Path):
    assert folder_problem(str(model_folder)) is None


@pytest.mark.parametrize(
    ("removed", "named"),
    [
        ("model.safetensors", "the weights (model.safetensors, or model.safetensors.index.json"),
        ("tokenizer.json", "tokenizer.json"),
        ("tokenizer_config.json", "tokenizer_config.json"),
        ("processor_config.json", "processor_config.json"),
        ("chat_template.jinja", "the chat template"),
    ],
)
def test_a_missing_file_is_named_with_its_folder(model_folder: Path, removed: str, named: str):
    (model_folder / removed).unlink()
    problem = folder_problem(str(model_folder))
    assert problem is not None and str(model_folder) in problem and named in problem, problem
    _one_sentence(problem)


def test_a_missing_shard_is_named(model_folder: Path):
    shards = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    (model_folder / "model.safetensors").rename(model_folder / shards[0])
    index = {"metadata": {}, "weight_map": {"a.weight": shards[0], "b.weight": shards[1]}}
    (model_folder / "model.safetensors.index.json").write_text(json.dumps(index))
    problem = folder_problem(str(model_folder))
    assert problem == (
        f"The model folder {model_folder} is incomplete: {shards[1]} is missing; copy or "
        "download the whole folder again."
    )
    (model_folder / shards[1]).write_bytes(b"")
    assert folder_problem(str(model_folder)) is None


def test_loading_an_incomplete_folder_fails_in_one_sentence(model_folder: Path):
    (model_folder / "model.safetensors").unlink()
    (model_folder / "tokenizer.json").unlink()
    with pytest.raises(LoadError) as error:
        load(ModelConfig(model_id=str(model_folder), device="cpu"), progress=lambda s: None)
    message = str(error.value)
    assert str(model_folder) in message and "tokenizer.json" in message and "hub" not in message
    _one_sentence(message)


def test_weights_missing_and_hub_unreachable(no_hub):
    with pytest.raises(LoadError) as error:
        locate(ModelConfig())
    message = str(error.value)
    assert "hf download google/gemma-4-12B-it" in message and "--model PATH" in message
    _one_sentence(message)


@pytest.mark.parametrize(
    ("quant", "named"), [("4bit", "4-bit"), ("8bit", "8-bit"), ("none", "bf16 (no quantization)")]
)
def test_not_enough_memory_is_refused_before_loading(quant: str, named: str):
    with pytest.raises(LoadError) as error:
        check_memory("Gemma", parameters=12_000_000_000_000, quant=quant, device="cpu")
    message = str(error.value)
    assert f"GiB of RAM in {named} but only" in message and f"in {quant} " not in message
    _one_sentence(message)


def test_memory_needed_and_free_are_told_before_loading():
    told = check_memory("Gemma", parameters=1_000_000, quant="none", device="cpu")  # fits
    assert re.fullmatch(
        r"Loading Gemma in bf16 \(no quantization\) needs about 1\.0 GiB of RAM; "
        r"\d+\.\d GiB is free\.",
        told,
    ), told


def test_too_old_transformers_is_named(monkeypatch: pytest.MonkeyPatch, demo_config):
    from transformers.models.auto import configuration_auto

    names = {
        k: v for k, v in configuration_auto.CONFIG_MAPPING_NAMES.items() if k != "gemma4_unified"
    }
    monkeypatch.setattr(configuration_auto, "CONFIG_MAPPING_NAMES", names)
    with pytest.raises(LoadError, match=r"too old for Gemma 4 unified.*transformers>=5\.10\.1"):
        load(demo_config)


def test_loading_reports_progress(demo_config: ModelConfig):
    import bitsandbytes as bnb

    sentences: list[str] = []
    loaded = load(demo_config, progress=sentences.append)
    assert sentences[0] == "Looking for the model weights"
    memory = next(i for i, s in enumerate(sentences) if "GiB of RAM" in s)
    weights = sentences.index("Loading weights: 100%")
    assert memory < weights and sentences[memory].startswith(
        "Loading Loupe miniature (random weights) in 4-bit needs about"
    )
    layers = [m for m in loaded.model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    if _repacked_by_bitsandbytes(layers[0]):
        assert sentences.index(f"{PREPARING}: 100%") > weights
    else:
        assert not any(s.startswith(PREPARING) for s in sentences)
    assert sentences[-1] == "Model loaded"


def test_4bit_weights_are_repacked_for_this_cpu_while_loading(loaded):
    """bitsandbytes repacks a 4-bit layer on its first forward on a CPU with AVX-512 BF16 (a
    minute for the 12B); the loader has it done before the first reply, and only there."""
    import bitsandbytes as bnb

    layers = [m for m in loaded.model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert layers
    for layer in layers:
        repacked = getattr(layer.weight.quant_state, "packing_format_for_cpu", False)
        assert repacked == _repacked_by_bitsandbytes(layer)


def _repacked_by_bitsandbytes(layer: torch.nn.Module) -> bool:
    """Whether bitsandbytes repacks this 4-bit layer in its first inference forward."""
    return layer.weight.device.type == "cpu" and bool(layer.support_avx512bf16_for_cpu)


def test_loading_draws_nothing_on_the_console(demo_config: ModelConfig):
    """No progress bars and no notice about bitsandbytes' optional `kernels` package: the
    worker shares the console with the log, and `progress` has the figures."""
    cache = str(demo_config.cache_root)
    config = f"ModelConfig(demo=True, device='cpu', cache_root=Path({cache!r}))"
    loading = (
        "from pathlib import Path; from model import ModelConfig; from model.loader import load; "
        f"load({config}, progress=lambda sentence: None)"
    )
    run = subprocess.run(
        [sys.executable, "-c", loading], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    console = run.stdout + run.stderr
    assert KERNELS_NOTICE not in console and "Loading weights" not in console, console
    assert "%|" not in console, console  # any other tqdm bar


def test_only_the_kernels_notice_is_filtered(caplog: pytest.LogCaptureFixture, loaded):
    # `loaded`: loading sets the filter up.
    bnb_cpu = logging.getLogger(BNB_CPU_LOGGER)
    with caplog.at_level(logging.WARNING, logger=BNB_CPU_LOGGER):
        bnb_cpu.warning(f"{KERNELS_NOTICE} from kernels-community: %s.", "no module")
        bnb_cpu.warning("Another warning")
    assert [record.getMessage() for record in caplog.records] == ["Another warning"]
