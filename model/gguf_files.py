"""The GGUF files llama.cpp runs: the model and its multimodal projector (mmproj).

From a local .gguf file or folder, a GGUF repository on the Hugging Face hub (cached or
downloaded, with progress), or, for the demo, the miniature checkpoint converted here with the
converter of the llama.cpp that llama-cpp-python was built from.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from .config import DEFAULT_MODEL_ID, ModelConfig, default_cache_root
from .loader import check_memory_bytes
from .progress_bars import Progress, reporting_tqdm

# Official GGUF builds of google/gemma-4-12B-it: llama.cpp's own (ggml-org) at Q4_K_M and Q8_0,
# and Google's quantization-aware-trained Q4_0. Each --quant picks a repository and the tag its
# file names carry; the files themselves are read off the repository's listing.
GGUF_SOURCES = {
    "4bit": ("ggml-org/gemma-4-12B-it-GGUF", "Q4_K_M"),
    "8bit": ("ggml-org/gemma-4-12B-it-GGUF", "Q8_0"),
    "none": ("ggml-org/gemma-4-12B-it-GGUF", "BF16"),
    "qat": ("google/gemma-4-12B-it-qat-q4_0-gguf", "Q4_0"),
}
PROJECTOR_PREFIX = "mmproj"
CONVERTER = "convert_hf_to_gguf.py"
# What of llama-cpp-python's source package the converter needs.
CONVERTER_PARTS = (
    "vendor/llama.cpp/convert_hf_to_gguf.py",
    "vendor/llama.cpp/conversion/",
    "vendor/llama.cpp/gguf-py/",
)
PYPI_SIMPLE = "https://pypi.org/simple/llama-cpp-python/"
SIMPLE_JSON = "application/vnd.pypi.simple.v1+json"


class GgufError(Exception):
    """The GGUF files cannot be found or made; the message is one sentence."""


@dataclass(frozen=True)
class GgufFiles:
    """A model file, its projector (None: text only), a name for people, its quantization."""

    model: Path
    projector: Path | None
    name: str
    quantization: str


def locate_gguf(config: ModelConfig, progress: Progress) -> GgufFiles:
    """The files `config` asks for, downloaded or converted first where needed."""
    if config.demo:
        model, projector = miniature_gguf(config.cache_root, progress)
        return GgufFiles(model, projector, "Loupe miniature (random weights)", "F32")
    wanted = Path(config.model_id).expanduser()
    if wanted.suffix == ".gguf":
        if not wanted.is_file():
            raise GgufError(f"There is no GGUF file at {wanted}.")
        return GgufFiles(wanted, _projector_beside(wanted), wanted.name, _tag_of(wanted.name))
    repo, tag = _repo_and_tag(config)
    if wanted.is_dir():
        return _pick(sorted(p.name for p in wanted.glob("*.gguf")), tag, str(wanted), wanted)
    return _from_hub(repo, tag, progress)


def _repo_and_tag(config: ModelConfig) -> tuple[str, str]:
    repo, tag = GGUF_SOURCES[config.quant]
    if config.model_id not in (DEFAULT_MODEL_ID, repo):
        repo = config.model_id  # a GGUF repository a person named
    return repo, tag


def _pick(names: list[str], tag: str, where: str, folder: Path) -> GgufFiles:
    models = [n for n in names if n.endswith(".gguf") and not n.startswith(PROJECTOR_PREFIX)]
    chosen = [n for n in models if tag.lower() in n.lower()] or (models if len(models) == 1 else [])
    if not chosen:
        have = ", ".join(models) or "none"
        raise GgufError(f"{where} has no {tag} GGUF file (it has: {have}); choose another --quant.")
    projectors = sorted(n for n in names if n.startswith(PROJECTOR_PREFIX) and n.endswith(".gguf"))
    # Prefer the projector at full precision: it is small, and images and audio read better.
    projectors.sort(key=lambda n: not any(p in n.lower() for p in ("f16", "bf16", "f32")))
    projector = folder / projectors[0] if projectors else None
    return GgufFiles(folder / chosen[0], projector, f"{where} ({tag})", tag)


def _projector_beside(model: Path) -> Path | None:
    found = sorted(model.parent.glob(f"{PROJECTOR_PREFIX}*.gguf"))
    return found[0] if found else None


def _tag_of(name: str) -> str:
    for _, tag in GGUF_SOURCES.values():
        if tag.lower() in name.lower():
            return tag
    return "GGUF"


def _from_hub(repo: str, tag: str, progress: Progress) -> GgufFiles:
    """From the Hugging Face cache, or downloaded into it."""
    from huggingface_hub import constants, hf_hub_download, snapshot_download

    here = None  # what the cache holds; used as it is when it has the projector too
    try:
        cached = Path(snapshot_download(repo, local_files_only=True, allow_patterns=["*.gguf"]))
        here = _pick(sorted(p.name for p in cached.glob("*.gguf")), tag, repo, cached)
    except Exception:
        pass
    if here is not None and here.projector is not None:
        return here
    if constants.HF_HUB_OFFLINE:
        if here is not None:
            return here  # text only: no projector is here to read images with
        raise GgufError(
            f"The GGUF files of {repo} are not on this machine and HF_HUB_OFFLINE is set; "
            f'download them with `hf download {repo} --include "*{tag}*" "mmproj*"` or pass '
            "--model PATH.gguf."
        )
    sizes = hub_listing(repo)
    files = _pick(sorted(sizes), tag, repo, Path())
    names = [files.model.name] + ([files.projector.name] if files.projector else [])
    progress(check_memory_bytes(files.name, sum(sizes[n] for n in names), tag, "cpu"))
    bars = reporting_tqdm(progress)
    paths = []
    for name in names:
        progress(f"Downloading {name}")
        paths.append(Path(hf_hub_download(repo, name, tqdm_class=bars)))
    return GgufFiles(paths[0], paths[1] if len(paths) > 1 else None, files.name, tag)


def hub_listing(repo: str) -> dict[str, int]:
    """The GGUF files of a hub repository and their sizes in bytes."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    try:
        entries = HfApi().list_repo_tree(repo)
        return {e.path: e.size for e in entries if e.path.endswith(".gguf")}
    except GatedRepoError:
        raise GgufError(
            f"{repo} is gated: accept its licence on huggingface.co and run `hf auth login`."
        ) from None
    except RepositoryNotFoundError:
        raise GgufError(f"There is no repository called {repo} on the Hugging Face hub.") from None
    except Exception as exc:
        raise GgufError(
            f"The GGUF files of {repo} are not on this machine and the Hugging Face hub cannot "
            f"be reached ({type(exc).__name__}); pass --model PATH.gguf."
        ) from None


def miniature_gguf(cache_root: Path | None, progress: Progress) -> tuple[Path, Path]:
    """The miniature checkpoint as GGUF (its weights in f32) and its projector, converted once."""
    from .miniature import ensure_miniature

    source = ensure_miniature(cache_root, progress)
    target = source.with_name(source.name + "-gguf")
    model, projector = target / "model-f32.gguf", target / "mmproj-f32.gguf"
    if model.is_file() and projector.is_file():
        return model, projector
    converter = ensure_converter(cache_root, progress)
    progress("Converting the miniature checkpoint to GGUF")
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        for name, extra in ((model.name, []), (projector.name, ["--mmproj"])):
            _convert(converter, source, staging / name, extra)
        try:
            os.rename(staging, target)
        except OSError:
            if not (model.is_file() and projector.is_file()):  # not a race lost to another process
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return model, projector


def _convert(converter: Path, source: Path, out: Path, extra: list[str]) -> None:
    command = [
        sys.executable,
        str(converter / CONVERTER),
        str(source),
        "--outfile",
        str(out),
        "--outtype",
        "f32",
        *extra,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    if done.returncode != 0 or not out.is_file():
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise GgufError(f"Converting the miniature checkpoint to GGUF failed: {last}")


def ensure_converter(cache_root: Path | None, progress: Progress) -> Path:
    """llama.cpp's convert_hf_to_gguf.py and its gguf-py, from the source package of the
    llama-cpp-python that is installed (its wheel leaves them out), fetched once from PyPI."""
    return llama_cpp_sources(cache_root, progress, "converter", CONVERTER_PARTS, CONVERTER)


def llama_cpp_sources(
    cache_root: Path | None, progress: Progress, label: str, parts: tuple[str, ...], marker: str
) -> Path:
    """The `parts` of the llama.cpp that the installed llama-cpp-python vendors, unpacked once
    from its source package on PyPI (checked against PyPI's sha256) into the cache, as a
    folder named by `label` in which `marker` exists once it is complete."""
    try:
        version = importlib.metadata.version("llama-cpp-python")
    except importlib.metadata.PackageNotFoundError:
        raise GgufError(
            "llama-cpp-python is not installed; install it with pip install -r requirements.txt."
        ) from None
    root = Path(cache_root) if cache_root is not None else default_cache_root()
    target = root / f"llama.cpp-{label}-{version}"
    if (target / marker).exists():
        return target
    progress(f"Fetching llama.cpp's {label} (llama-cpp-python {version} sources)")
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=root))
    try:
        archive = staging / "source.tar.gz"
        url, sha256 = _sdist(version)
        digest = hashlib.sha256()
        with urllib.request.urlopen(url, timeout=60) as reply, archive.open("wb") as out:
            while block := reply.read(1 << 20):
                digest.update(block)
                out.write(block)
        if digest.hexdigest() != sha256:
            raise ValueError("the downloaded source package does not match PyPI's checksum")
        with tarfile.open(archive) as tar:
            for member in tar.getmembers():
                inner = member.name.split("/", 1)[-1]
                if any(inner.startswith(p) for p in parts) and (member.isfile() or member.isdir()):
                    member.name = inner.removeprefix("vendor/llama.cpp/")
                    tar.extract(member, staging / "tree", filter="data")
        try:
            os.rename(staging / "tree", target)
        except OSError:
            if not (target / marker).exists():
                raise
    except (OSError, tarfile.TarError, ValueError) as exc:
        raise GgufError(f"Fetching llama.cpp's {label} failed: {exc}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _sdist(version: str) -> tuple[str, str]:
    """The source package's address and sha256, from PyPI's simple index (as pip reads it)."""
    request = urllib.request.Request(PYPI_SIMPLE, headers={"Accept": SIMPLE_JSON})
    with urllib.request.urlopen(request, timeout=30) as reply:
        listing = json.load(reply)
    wanted = f"llama_cpp_python-{version}.tar.gz"
    for entry in listing["files"]:
        if entry["filename"] == wanted:
            return entry["url"], entry["hashes"]["sha256"]
    raise ValueError(f"PyPI lists no source package of llama-cpp-python {version}")
