"""Loads Gemma 4 and its processor: the only place that knows about quantization and devices."""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import ModelConfig
from .drafter import kv_sharing_fix, load_drafter
from .engine import ModelInfo
from .engine_choice import bitsandbytes_cpu_note
from .folder import folder_problem, safetensors_parameters
from .progress_bars import Progress, reported_bars

# Full module paths: a bare "embed_vision" matches nothing, and any list replaces the default
# lm_head skip. The embedders are small; quantizing them costs accuracy and saves little.
UNQUANTIZED_MODULES = ["lm_head", "model.embed_vision", "model.embed_audio"]
# Quantizations as a person reads them (the --quant values are for typing).
QUANT_NAMES = {"4bit": "4-bit", "8bit": "8-bit", "none": "bf16 (no quantization)"}
MODEL_TYPE = "gemma4_unified"
MIN_TRANSFORMERS = "5.10.1"
HUB_TIMEOUT_S = 5.0
GIB = 1024**3
# Resident bytes per parameter, embeddings and output head kept in bf16 (12B: ~7.7 GB in NF4),
# plus a margin for activations and the KV cache of an ordinary conversation.
BYTES_PER_PARAM = {"4bit": 0.65, "8bit": 1.1, "none": 2.0}
RUNTIME_MARGIN_BYTES = 1 * GIB
# On the CPU the model leaves this many cores to the web server: PyTorch's threads spin while
# they wait, and a server that has to preempt them delays every streamed token.
CORES_LEFT_TO_THE_PAGE = 1
PREPARING = "Preparing the 4-bit weights for this CPU"
# bitsandbytes logs this on import on CPUs with AVX-512 BF16 when the optional `kernels` package
# cannot fetch its compiled kernel from the Hugging Face hub; its own CPU kernel is used instead,
# so there is nothing for the person to do.
KERNELS_NOTICE = "Failed to load CPU gemm_4bit_forward"
BNB_CPU_LOGGER = "bitsandbytes.backends.cpu.ops"


class LoadError(Exception):
    """A model could not be loaded; the message is one sentence a person can act on."""


@dataclass
class LoadedModel:
    model: Any
    processor: Any
    info: ModelInfo
    drafter: Any = None
    grammar_tokenizer: Any = None  # the tokenizer as the grammar engine reads it, once needed


def first_line(exc: BaseException) -> str:
    """An exception as one line for a person (library messages can run to pages)."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def resolve_device(requested: str) -> str:
    """`auto` means CUDA when PyTorch sees a GPU, else the CPU."""
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise LoadError(
            "--device cuda was asked for, but PyTorch sees no CUDA GPU on this machine."
        )
    return requested


def quantization_config(quant: str) -> Any:
    """The BitsAndBytesConfig for `quant`, or None for bf16 weights."""
    import torch
    from transformers import BitsAndBytesConfig

    if quant == "4bit":
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_compute_dtype=torch.bfloat16,
            bnb_4bit_use_double_quant=True,
            llm_int8_skip_modules=UNQUANTIZED_MODULES,
        )
    if quant == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=UNQUANTIZED_MODULES)
    return None


def _check_transformers() -> None:
    import transformers
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    if MODEL_TYPE not in CONFIG_MAPPING_NAMES:
        raise LoadError(
            f"transformers {transformers.__version__} is too old for Gemma 4 unified models; "
            f"install transformers>={MIN_TRANSFORMERS} (pip install -r requirements.txt)."
        )


def _hub_parameters(repo_id: str) -> int:
    """Where the weights are still on the hub: their count, or a LoadError naming the way out."""
    from huggingface_hub import constants, get_safetensors_metadata
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    fix = f"download them with `hf download {repo_id}` or pass `--model PATH`"
    if constants.HF_HUB_OFFLINE:  # read from the environment when huggingface_hub loads
        raise LoadError(
            f"The weights for {repo_id} are not on this machine and HF_HUB_OFFLINE is set; {fix}."
        )
    try:
        metadata = get_safetensors_metadata(repo_id)
    except GatedRepoError:
        raise LoadError(
            f"{repo_id} is gated: accept its licence on huggingface.co and run `hf auth login`."
        ) from None
    except RepositoryNotFoundError:
        raise LoadError(
            f"There is no model called {repo_id} on the Hugging Face hub; check the name."
        ) from None
    except Exception as exc:
        raise LoadError(
            f"The weights for {repo_id} are not on this machine and the Hugging Face hub "
            f"cannot be reached; {fix}."
        ) from exc
    return sum(metadata.parameter_count.values())


def locate(config: ModelConfig, progress: Progress | None = None) -> tuple[str, int]:
    """The folder or hub id to load from, and the checkpoint's parameter count.

    Raises LoadError when the weights are neither on disk nor reachable.
    """
    if config.demo:
        from .miniature import ensure_miniature

        folder = ensure_miniature(config.cache_root, progress)
        return str(folder), safetensors_parameters(folder)
    problem = folder_problem(config.model_id)
    if problem:
        raise LoadError(problem)
    folder = Path(config.model_id).expanduser()
    if folder.is_dir():
        return str(folder), safetensors_parameters(folder)
    from huggingface_hub import snapshot_download

    try:
        cached = Path(snapshot_download(config.model_id, local_files_only=True))
    except Exception:
        return config.model_id, _hub_parameters(config.model_id)
    return str(cached), safetensors_parameters(cached)


def locate_drafter(config: ModelConfig) -> str | None:
    """The drafter's folder when it is on this machine (never downloaded), else None.

    It sits beside a local model folder as `<folder>-assistant`, or in the Hugging Face cache
    as `<model id>-assistant`.
    """
    from .drafter import DRAFTER_SUFFIX

    if config.demo:
        return None
    folder = Path(config.model_id).expanduser()
    if folder.is_dir():
        beside = folder.with_name(folder.name + DRAFTER_SUFFIX)
        return str(beside) if (beside / "config.json").is_file() else None
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(config.model_id + DRAFTER_SUFFIX, local_files_only=True)
    except Exception:
        return None


def _free_bytes(device: str) -> int:
    if device == "cuda":
        import torch

        return torch.cuda.mem_get_info()[0]
    import psutil

    return psutil.virtual_memory().available


def check_memory(
    name: str, parameters: int, quant: str, device: str, drafter_parameters: int = 0
) -> str:
    """What loading `name` needs against what is free, as a sentence to show before loading.

    Raises LoadError, in one sentence, when the weights cannot fit (the drafter stays in bf16).
    """
    weights = parameters * BYTES_PER_PARAM[quant] + drafter_parameters * BYTES_PER_PARAM["none"]
    smaller = " or a smaller --quant" if quant != "4bit" else ""
    return check_memory_bytes(name, int(weights), QUANT_NAMES[quant], device, smaller)


def check_memory_bytes(
    name: str, weights_bytes: int, quantization: str, device: str, smaller: str = ""
) -> str:
    """check_memory for weights whose size is known in bytes (GGUF files)."""
    needed = weights_bytes + RUNTIME_MARGIN_BYTES
    free = _free_bytes(device)
    where = "GPU memory" if device == "cuda" else "RAM"
    if needed > free:
        raise LoadError(
            f"{name} needs about {needed / GIB:.1f} GiB of {where} in {quantization} but "
            f"only {free / GIB:.1f} GiB is free; close other programs{smaller}, or run with --demo."
        )
    return (
        f"Loading {name} in {quantization} needs about {needed / GIB:.1f} GiB of {where}; "
        f"{free / GIB:.1f} GiB is free."
    )


def load(config: ModelConfig, progress: Progress = print) -> LoadedModel:
    """Check, then load the processor and model. Raises LoadError with one clear sentence."""
    _check_transformers()
    if config.quant not in QUANT_NAMES:
        raise LoadError(
            f"--quant {config.quant} is a GGUF build for llama.cpp; run it with --engine llama.cpp."
        )
    device = resolve_device(config.device)
    if device == "cpu" and config.quant != "none" and not config.demo:
        progress(bitsandbytes_cpu_note())
    with reported_bars(progress) as bars:
        progress("Looking for the model weights")
        source, parameters = locate(config, progress)  # the demo's first build saves with bars
        drafter_source = locate_drafter(config)
        drafter_parameters = safetensors_parameters(Path(drafter_source)) if drafter_source else 0
        name = "Loupe miniature (random weights)" if config.demo else config.model_id
        progress(check_memory(name, parameters, config.quant, device, drafter_parameters))
        try:
            model, processor, drafter = _load_weights(
                source, config.quant, device, drafter_source, bars, progress
            )
        except Exception as exc:
            raise LoadError(f"Loading {name} failed: {first_line(exc)}") from exc
    progress("Model loaded")
    info = ModelInfo(name, config.demo, device, config.quant, drafter=bool(drafter_source))
    return LoadedModel(model, processor, info, drafter)


def _load_weights(
    source: str, quant: str, device: str, drafter_source: str | None, bars: type, progress: Progress
) -> tuple[Any, Any, Any]:
    """The model (ready for its first reply), its processor, and the drafter or None."""
    _quiet_bitsandbytes()
    import torch
    from transformers import AutoModelForMultimodalLM, AutoProcessor

    if device == "cpu":
        torch.set_num_threads(max(1, (os.cpu_count() or 1) - CORES_LEFT_TO_THE_PAGE))
    # Only a target built with the fix can hand its keys and values to the drafter.
    pairing = kv_sharing_fix() if drafter_source else contextlib.nullcontext()
    drafter = None
    with pairing:
        processor = AutoProcessor.from_pretrained(source)
        model = AutoModelForMultimodalLM.from_pretrained(
            source,
            tqdm_class=bars,
            quantization_config=quantization_config(quant),
            device_map={"": device},
            dtype=torch.bfloat16,  # never fp16: Gemma overflows in it
        )
        model.eval()
        prepare_for_cpu(model, progress)
        if drafter_source:
            progress("Loading the multi-token-prediction drafter")
            drafter = load_drafter(drafter_source, device)
    return model, processor, drafter


def build_random(
    model_config: Any, quant: str, device: str, seed: int = 0, progress: Progress | None = None
) -> Any:
    """A random-weight model of `model_config`'s shape, made directly on `device` in `quant`.

    For measuring a model whose weights are not here (`bench --shape 12b`). The model is laid
    out on the meta device, then filled one module at a time on `device`: each quantized linear
    layer's bf16 weight is drawn there and quantized at once, so the model never exists whole in
    bf16, and nothing of it on the CPU unless `device` is the CPU. Then prepared as `load`
    prepares a model.
    """
    _quiet_bitsandbytes()
    import bitsandbytes as bnb
    import torch
    from transformers import AutoModelForMultimodalLM
    from transformers.integrations.bitsandbytes import replace_with_bnb_linear

    torch.manual_seed(seed)
    with torch.device("meta"):
        model = AutoModelForMultimodalLM.from_config(model_config, dtype=torch.bfloat16)
    settings = quantization_config(quant)
    if settings is not None:
        model = replace_with_bnb_linear(model, UNQUANTIZED_MODULES, settings)
    std = model_config.get_text_config().initializer_range
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, bnb.nn.Linear4bit | bnb.nn.Linear8bitLt):
                shape = (module.out_features, module.in_features)
                weight = torch.empty(shape, dtype=torch.bfloat16, device=device).normal_(0, std)
                module.weight = _quantized(weight, module, device)
            else:
                module.to_empty(device=device, recurse=False)
                model._init_weights(module)
    model.tie_weights()
    model.eval()
    prepare_for_cpu(model, progress or (lambda sentence: None))
    return model


def _quantized(weight: Any, module: Any, device: str) -> Any:
    """`weight` (bf16, on `device`) as the quantized parameter of bitsandbytes linear `module`."""
    import bitsandbytes as bnb

    if isinstance(module, bnb.nn.Linear4bit):
        old = module.weight
        return bnb.nn.Params4bit(
            weight,
            requires_grad=False,
            blocksize=old.blocksize,
            compress_statistics=old.compress_statistics,
            quant_type=old.quant_type,
            quant_storage=old.quant_storage,
            module=module,
        ).to(device)  # quantizes
    int8, scales, _ = bnb.functional.int8_vectorwise_quant(weight.half())
    return bnb.nn.Int8Params(int8, requires_grad=False, has_fp16_weights=False, CB=int8, SCB=scales)


def prepare_for_cpu(model: Any, progress: Progress) -> None:
    """Repack the 4-bit weights for the CPU's kernel now, rather than in the first reply.

    On a CPU with AVX-512 BF16, bitsandbytes' `Linear4bit.forward` repacks its layer's weight the
    first time it runs in inference (`functional._convert_weight_packed_for_cpu`): for the 12B
    that made the first reply a minute slower than the next. One forward of a zero row per layer
    runs that same code under bitsandbytes' own conditions; layers it would not repack (on a GPU,
    on other CPUs) are left alone.
    """
    import bitsandbytes as bnb
    import torch

    layers = [
        module
        for module in model.modules()
        if isinstance(module, bnb.nn.Linear4bit)
        and module.weight.device.type == "cpu"
        and module.support_avx512bf16_for_cpu  # what forward checks before repacking
        and not getattr(module.weight.quant_state, "packing_format_for_cpu", False)
    ]
    reported = -1
    with torch.inference_mode():
        for done, layer in enumerate(layers, 1):
            layer(torch.zeros(1, layer.in_features, dtype=torch.bfloat16))  # the compute dtype
            tenth = 10 * done // len(layers)
            if tenth != reported:
                reported = tenth
                progress(f"{PREPARING}: {10 * tenth}%")


def _quiet_bitsandbytes() -> None:
    """Keep bitsandbytes' notice about the optional `kernels` package off the console."""
    logging.getLogger(BNB_CPU_LOGGER).addFilter(_not_the_kernels_notice)


def _not_the_kernels_notice(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith(KERNELS_NOTICE)
