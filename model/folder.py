"""A local model folder, read without torch or the network: is it whole, and how many
parameters do its weights hold. Cheap, so launch.py can refuse a bad --model before serving."""

from __future__ import annotations

import json
import struct
from pathlib import Path

# What a model folder needs besides config.json, each as (alternatives, name to tell a person).
PROCESSOR_FILES = (
    (("tokenizer.json", "tokenizer.model"), "tokenizer.json"),
    (("tokenizer_config.json",), "tokenizer_config.json"),
    (("processor_config.json", "preprocessor_config.json"), "processor_config.json"),
)
CHAT_TEMPLATE_FILES = ("chat_template.jinja", "chat_template.json")
SHARD_INDEX = "model.safetensors.index.json"


def _looks_like_path(model_id: str) -> bool:
    """Hub ids are `org/name`; anything else with a slash or a leading ./~ is a folder."""
    return model_id.startswith((".", "/", "~")) or model_id.count("/") > 1 or "\\" in model_id


def folder_problem(model_id: str) -> str | None:
    """Why `model_id`, meant as a local folder, cannot be a model; None if fine or a hub id.

    Cheap (no torch, no network), so launch.py can refuse a bad --model before serving.
    """
    folder = Path(model_id).expanduser()
    if folder.is_dir():
        return _incomplete_folder(folder)
    if _looks_like_path(model_id):
        return (
            f"There is no model folder at {model_id}; pass an existing folder or a "
            "Hugging Face model id such as google/gemma-4-12B-it."
        )
    return None


def _incomplete_folder(folder: Path) -> str | None:
    """What model folder `folder` lacks, as one sentence; None when it has every file we load.

    Reads only file names and two small JSON files, so a half-copied folder is named here rather
    than by a transformers error that points at the hub.
    """
    if not (folder / "config.json").is_file():
        return (
            f"{folder} has no config.json, so it is not a model folder; pass the folder "
            "that holds config.json and the .safetensors files."
        )
    missing = [*_missing_weights(folder), *_missing_processor_files(folder)]
    if not missing:
        return None
    listed = ", ".join(missing[:-1]) + (" and " if len(missing) > 1 else "") + missing[-1]
    return (
        f"The model folder {folder} is incomplete: {listed} "
        f"{'is' if len(missing) == 1 else 'are'} missing; copy or download the whole folder again."
    )


def _missing_weights(folder: Path) -> list[str]:
    """The weight files transformers would look for in `folder` and not find."""
    if (folder / "model.safetensors").is_file():
        return []
    index = folder / SHARD_INDEX
    if not index.is_file():
        return [f"the weights (model.safetensors, or {SHARD_INDEX} and its shards)"]
    try:
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    except (ValueError, KeyError, AttributeError):
        return [f"a readable {SHARD_INDEX}"]
    return [shard for shard in shards if not (folder / shard).is_file()]


def _missing_processor_files(folder: Path) -> list[str]:
    """The tokenizer and processor files AutoProcessor needs, and the chat template."""
    missing = [
        name
        for alternatives, name in PROCESSOR_FILES
        if not any((folder / file).is_file() for file in alternatives)
    ]
    if not _has_chat_template(folder):
        missing.append("the chat template (chat_template.jinja)")
    return missing


def _has_chat_template(folder: Path) -> bool:
    """A chat template in its own file, or inside the tokenizer's or processor's settings."""
    if any((folder / name).is_file() for name in CHAT_TEMPLATE_FILES):
        return True
    for name in ("tokenizer_config.json", "processor_config.json"):
        try:
            if "chat_template" in json.loads((folder / name).read_text()):
                return True
        except (OSError, ValueError, TypeError):
            continue
    return False


def safetensors_parameters(folder: Path) -> int:
    """Parameter count from the safetensors headers, without reading any weights."""
    total = 0
    for file in folder.glob("*.safetensors"):
        with open(file, "rb") as f:
            (header_len,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(header_len))
        for name, entry in header.items():
            if name != "__metadata__":
                count = 1
                for dim in entry["shape"]:
                    count *= dim
                total += count
    return total
