"""The flags both commands share (`launch.py` and `launch.py describe`): the model and where it
runs, and the limits on what people send; read into configuration, each bad value refused in
one sentence (SystemExit). Also the console log both show."""

from __future__ import annotations

import argparse
import logging

from model import (
    DEFAULT_ENGINE_CONCURRENCY,
    DEFAULT_HANG_TIMEOUT_S,
    DEFAULT_MODEL_ID,
    ModelConfig,
    RemoteEngineConfig,
    folder_problem,
)

from .config import Limits, env_default

MP, S = "MEGAPIXELS", "SECONDS"  # metavars
SENT_AT_ONCE = "the model is sent at once"
# Flag -> (Limits field, metavar, help); each also reads LOUPE_<FLAG> for its default.
LIMIT_FLAGS = {
    "--max-files": ("max_files_per_message", "N", "files per message"),
    "--max-file-mb": ("max_file_mb", "MB", "size of one uploaded file"),
    "--max-image-mp": ("max_image_mp", MP, "pixels in one image, checked before decoding it"),
    "--max-audio-s": ("max_audio_s", S, "length of one recording"),
    "--max-message-chars": ("max_message_chars", "N", "characters in one message"),
    "--max-pdf-pages": ("max_pdf_pages", "N", "PDF pages read in one message"),
    "--max-text-kb": ("max_text_kb", "KB", "size of one text file (notes, code, CSV, JSON)"),
    "--max-video-s": ("max_video_s", S, "length of one video, checked before decoding it"),
    "--max-request-messages": ("max_request_messages", "N", f"messages {SENT_AT_ONCE}"),
    "--max-request-chars": ("max_request_chars", "N", f"characters {SENT_AT_ONCE}"),
    "--max-request-images": (
        "max_request_images",
        "N",
        f"images, PDF pages and video frames {SENT_AT_ONCE}",
    ),
    "--max-request-mp": ("max_request_mp", MP, f"pixels of the images {SENT_AT_ONCE}"),
    "--max-request-audio-s": ("max_request_audio_s", S, f"seconds of recordings {SENT_AT_ONCE}"),
    "--max-request-video-s": ("max_request_video_s", S, f"seconds of video {SENT_AT_ONCE}"),
}

# Flag -> (metavar, help) of a model server; each also reads LOUPE_<FLAG> for its default.
ENGINE_FLAGS = {
    "--engine-url": (
        "URL",
        "base URL of an OpenAI-compatible server, for example http://gpu-box:8000/v1",
    ),
    "--engine-model": ("NAME", "the served model to use (default: the one the server lists)"),
    "--engine-api-key": (
        "KEY",
        "the server's API key, sent as a Bearer token (or LOUPE_ENGINE_API_KEY)",
    ),
}


def add_engine_flags(parser: argparse.ArgumentParser) -> None:
    """The flags that choose the model and where it runs: the app's and `describe`'s."""
    parser.add_argument(
        "--model",
        default=None,
        metavar="ID_OR_PATH",
        help=f"Hugging Face model id or local folder (default {DEFAULT_MODEL_ID}; "
        "falls back to the demo model when it cannot be loaded)",
    )
    parser.add_argument(
        "--demo",
        action="store_true",
        help="use the miniature random-weight model (no download; replies are noise)",
    )
    parser.add_argument(
        "--device",
        choices=["auto", "cuda", "cpu"],
        default=env_default("device", "auto"),
        help="where the model runs (default %(default)s: CUDA when present)",
    )
    parser.add_argument(
        "--engine",
        dest="backend",
        choices=["auto", "transformers", "llama.cpp"],
        default=env_default("engine", "auto"),
        help="what runs the model here (or LOUPE_ENGINE; default %(default)s: transformers "
        "with bitsandbytes on a CUDA GPU, llama.cpp on GGUF files elsewhere; the demo "
        "runs in transformers unless llama.cpp is named)",
    )
    parser.add_argument(
        "--quant",
        choices=["4bit", "8bit", "none", "qat"],
        default=env_default("quant", "4bit"),
        help="weight quantization (default %(default)s): bitsandbytes NF4, int8 or bf16 in "
        "transformers; in llama.cpp the GGUF build Q4_K_M, Q8_0, BF16, or qat: Google's "
        "quantization-aware-trained Q4_0",
    )
    parser.add_argument(
        "--hang-timeout",
        type=float,
        default=float(env_default("hang_timeout", str(DEFAULT_HANG_TIMEOUT_S))),
        metavar="SECONDS",
        help="a model that sends nothing for this long while answering is restarted "
        "(default %(default)s; raise it on a slow CPU with long prompts)",
    )
    parser.add_argument(
        "--context-tokens",
        type=int,
        default=int(env_default("context_tokens", "0")),
        metavar="N",
        help="most tokens a conversation and its reply may take; older turns are left out "
        "beyond it (default 0: the model's own limit)",
    )
    engine = parser.add_argument_group(
        "a model server instead of the in-process model (vLLM, Ollama, llama.cpp, another Loupe)"
    )
    for flag, (metavar, help_text) in ENGINE_FLAGS.items():
        env_name = flag.removeprefix("--").replace("-", "_")
        engine.add_argument(
            flag, default=env_default(env_name, ""), metavar=metavar, help=help_text
        )
    engine.add_argument(
        "--engine-concurrency",
        type=int,
        default=int(env_default("engine_concurrency", str(DEFAULT_ENGINE_CONCURRENCY))),
        metavar="N",
        help="replies the server generates at once; more wait in the queue (default %(default)s)",
    )


def add_limit_flags(parser: argparse.ArgumentParser) -> None:
    """Limits on what one message may carry, each also read from LOUPE_<FLAG>."""
    limits = parser.add_argument_group("limits on what one message may carry")
    for flag, (field, metavar, help_text) in LIMIT_FLAGS.items():
        default = getattr(Limits, field)
        env_name = flag.removeprefix("--").replace("-", "_")
        limits.add_argument(
            flag,
            dest=field,
            type=type(default),
            default=type(default)(env_default(env_name, str(default))),
            metavar=metavar,
            help=f"{help_text} (default %(default)s)",
        )


def engine_config(args: argparse.Namespace) -> tuple[ModelConfig, RemoteEngineConfig | None]:
    """The model to load and the server to use instead, if any, from add_engine_flags' flags;
    raises SystemExit with one sentence on bad values."""
    if args.hang_timeout <= 0:
        raise SystemExit("--hang-timeout takes a number of seconds above 0, for example 300.")
    if args.context_tokens < 0:
        raise SystemExit("--context-tokens takes 0 (the model's own limit) or more tokens.")
    if args.engine_concurrency < 1:
        raise SystemExit("--engine-concurrency takes 1 or more replies at once.")
    remote = None
    if args.engine_url:
        if not args.engine_url.startswith(("http://", "https://")):
            raise SystemExit(
                "--engine-url takes the server's base URL, for example http://gpu-box:8000/v1."
            )
        remote = RemoteEngineConfig(
            url=args.engine_url,
            model=args.engine_model,
            api_key=args.engine_api_key,
            concurrency=args.engine_concurrency,
            timeout_s=args.hang_timeout,
        )
    chosen = args.model or env_default("model", "")
    model = ModelConfig(
        model_id=chosen or DEFAULT_MODEL_ID,
        demo=args.demo,
        device=args.device,
        quant=args.quant,
        fallback_to_demo=not chosen and not args.demo,
        hang_timeout_s=args.hang_timeout,
        context_tokens=args.context_tokens,
        backend=args.backend,
    )
    return model, remote


def build_limits(args: argparse.Namespace) -> Limits:
    """Limits from flags; raises SystemExit with one sentence unless each one is above zero."""
    limits = Limits(
        queue_size=args.queue_size,
        **{field: getattr(args, field) for field, _, _ in LIMIT_FLAGS.values()},
    )
    flags = {"queue_size": "--queue-size"} | {
        field: flag for flag, (field, _, _) in LIMIT_FLAGS.items()
    }
    for name, value in vars(limits).items():
        if not value > 0:
            raise SystemExit(f"{flags[name]} must be above zero, not {value}.")
    return limits


def model_problem(model: ModelConfig, remote: RemoteEngineConfig | None) -> str | None:
    """Why the chosen local model folder cannot be loaded, in one sentence, or None."""
    local = remote is None and not model.demo
    return folder_problem(model.model_id) if local else None


def show_log() -> None:
    """Loupe's own log lines (loading, the model server) on the console, one sentence each."""
    console = logging.StreamHandler()
    console.setFormatter(logging.Formatter("%(message)s"))
    logging.getLogger("loupe").addHandler(console)
    logging.getLogger("loupe").setLevel(logging.INFO)
