"""Start Loupe: parse flags, start the model engine, serve the page."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from app.config import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    AppConfig,
    AsrConfig,
    Limits,
    default_data_dir,
    env_default,
)
from model import (
    DEFAULT_ENGINE_CONCURRENCY,
    DEFAULT_HANG_TIMEOUT_S,
    DEFAULT_MODEL_ID,
    ModelConfig,
    RemoteEngineConfig,
    SpeechRecognizer,
    folder_problem,
    open_engine,
)

# Flag -> (Limits field, metavar, help); each also reads LOUPE_<FLAG> for its default.
LIMIT_FLAGS = {
    "--max-files": ("max_files_per_message", "N", "files per message"),
    "--max-file-mb": ("max_file_mb", "MB", "size of one uploaded file"),
    "--max-image-mp": (
        "max_image_mp",
        "MEGAPIXELS",
        "pixels in one image, checked before decoding it",
    ),
    "--max-audio-s": ("max_audio_s", "SECONDS", "length of one recording"),
    "--max-message-chars": ("max_message_chars", "N", "characters in one message"),
    "--max-pdf-pages": ("max_pdf_pages", "N", "PDF pages read in one message"),
    "--max-video-s": ("max_video_s", "SECONDS", "length of one video, checked before decoding it"),
    "--max-request-messages": ("max_request_messages", "N", "messages the model is sent at once"),
    "--max-request-chars": ("max_request_chars", "N", "characters the model is sent at once"),
    "--max-request-images": (
        "max_request_images",
        "N",
        "images, PDF pages and video frames the model is sent at once",
    ),
    "--max-request-mp": (
        "max_request_mp",
        "MEGAPIXELS",
        "pixels of the images the model is sent at once",
    ),
    "--max-request-audio-s": (
        "max_request_audio_s",
        "SECONDS",
        "seconds of recordings the model is sent at once",
    ),
    "--max-request-video-s": (
        "max_request_video_s",
        "SECONDS",
        "seconds of video the model is sent at once",
    ),
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


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="launch.py",
        description="Loupe: a local assistant that sees, hears and answers, with Gemma 4 12B. "
        "`launch.py describe --help`: describe whole folders of images.",
    )
    add_engine_flags(parser)
    parser.add_argument(
        "--host",
        default=env_default("host", DEFAULT_HOST),
        help="address to listen on (default %(default)s: this machine only)",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=int(env_default("port", str(DEFAULT_PORT))),
        help="port to listen on (default %(default)s)",
    )
    parser.add_argument(
        "--asr-model",
        default=env_default("asr_model", "tiny.en"),
        metavar="NAME_OR_PATH",
        help="faster-whisper model size or local folder (default %(default)s)",
    )
    parser.add_argument(
        "--desktop",
        action="store_true",
        help="open Loupe in its own window (pywebview, else the browser), with screen capture "
        "and push-to-talk",
    )
    parser.add_argument(
        "--share", action="store_true", help="make a public Gradio share link (off by default)"
    )
    parser.add_argument(
        "--auth",
        action="append",
        default=[],
        metavar="USER:PASS",
        help="require a login on the page: this user name and password (repeatable, one per "
        "person); each user name has its own conversations",
    )
    parser.add_argument(
        "--auth-file",
        type=Path,
        default=env_default("auth_file", "") or None,
        metavar="FILE",
        help="logins as --auth takes them, one USER:PASS a line (# starts a comment), kept off "
        "the command line (or LOUPE_AUTH_FILE)",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=default_data_dir(),
        help="where conversations and their files are kept (default %(default)s)",
    )
    parser.add_argument(
        "--queue-size",
        type=int,
        default=Limits.queue_size,
        help="requests that may wait for the model (default %(default)s)",
    )
    parser.add_argument(
        "--api-key",
        default=env_default("api_key", ""),
        metavar="KEY",
        help="require this Bearer key on Loupe's own OpenAI-compatible /v1 (or LOUPE_API_KEY); "
        "needed there when Loupe listens on the network or uses --auth",
    )
    parser.add_argument(
        "--allowed-host",
        action="append",
        default=[name for name in env_default("allowed_hosts", "").split(",") if name],
        metavar="NAME",
        help="a host name the page may also be reached by (repeatable); requests naming any "
        "other host are refused",
    )
    add_limit_flags(parser)
    return parser.parse_args(argv)


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


def build_config(args: argparse.Namespace) -> AppConfig:
    """AppConfig from flags; raises SystemExit with one sentence on bad values."""
    auth = logins(args.auth, args.auth_file)
    model, remote = engine_config(args)
    return AppConfig(
        model=model,
        remote=remote,
        api_key=args.api_key,
        asr=AsrConfig(args.asr_model),
        limits=build_limits(args),
        host=args.host,
        port=args.port,
        desktop=args.desktop,
        share=args.share,
        auth=auth,
        data_dir=args.data_dir,
        allowed_hosts=tuple(name.strip().lower() for name in args.allowed_host),
    )


def logins(pairs: list[str], users_file: Path | None) -> tuple[tuple[str, str], ...]:
    """(user name, password) of each --auth USER:PASS and each line of --auth-file; raises
    SystemExit with one sentence on a malformed or repeated login."""
    named = [(pair, "--auth") for pair in pairs]
    if users_file is not None:
        try:
            lines = users_file.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise SystemExit(f"--auth-file {users_file} could not be read ({exc}).") from None
        named += [
            (line.strip(), f"line {number} of {users_file}")
            for number, line in enumerate(lines, 1)
            if line.strip() and not line.strip().startswith("#")
        ]
    found: dict[str, str] = {}
    for pair, where in named:
        user, sep, password = pair.partition(":")
        # Gradio's login form strips the user name it is sent; a name with spaces around it
        # could never log in.
        if not (sep and user.strip() and password) or user != user.strip():
            raise SystemExit(f"{where} takes USER:PASS, for example ana:correct-horse.")
        if user in found:
            raise SystemExit(f"The user name {user!r} is given twice ({where}); give each once.")
        found[user] = password
    return tuple(found.items())


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


def parse_describe_args(argv: list[str]) -> argparse.Namespace:
    from app.tasks.batch import VERDICT_COLUMNS
    from app.tasks.describe import DEFAULT_LEVEL, LEVELS

    parser = argparse.ArgumentParser(
        prog="launch.py describe",
        description="Describe many images: alt text, descriptions or a content check for every "
        "file, written to CSV or JSON Lines. Run it again with the same --out to continue a "
        "stopped run.",
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", help="images, folders or patterns")
    parser.add_argument(
        "--level",
        choices=list(LEVELS),
        default=DEFAULT_LEVEL,
        help="what to write for each image (default %(default)s); check_content asks for a "
        "moderation verdict, in the columns " + ", ".join(VERDICT_COLUMNS) + " (scores from 0 "
        "to 1; verdict_problem says why when the answer holds no verdict)",
    )
    parser.add_argument(
        "--out", type=Path, required=True, metavar="FILE", help="results.csv or results.jsonl"
    )
    parser.add_argument(
        "--context",
        default="",
        metavar="TEXT",
        help='what the images are for, e.g. "product page of an outdoor shop"',
    )
    parser.add_argument(
        "--force", action="store_true", help="describe again what an earlier run finished"
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace files in the way that Loupe did not write (an --out, sidecars, copies in "
        "--out-dir) and read-only ones; without it the run refuses before it starts",
    )
    files = parser.add_argument_group("alt text into the image files (JPEG, PNG, WebP)")
    files.add_argument(
        "--write-metadata",
        action="store_true",
        help="write the alt text (and a complex image's long description) into the files' IPTC "
        "accessibility fields and dc:description, in copies in --out-dir or with --in-place",
    )
    files.add_argument("--out-dir", type=Path, metavar="DIR", help="where the copies go")
    files.add_argument(
        "--in-place", action="store_true", help="write into the original files themselves"
    )
    files.add_argument(
        "--sidecar",
        action="store_true",
        help="a text file with the alt text beside each image, named after it: photo.jpg.txt",
    )
    add_engine_flags(parser)
    add_limit_flags(parser)
    parser.set_defaults(queue_size=Limits.queue_size)
    return parser.parse_args(argv)


def describe(argv: list[str]) -> int:
    """`launch.py describe`: a whole folder of images, with progress; 0 when every file was
    described, 1 when some failed, 130 when stopped."""
    from app.tasks.batch import DescribeJob, Stopped, job_problem, run_job, workers_for
    from app.tasks.batch_progress import ProgressLine
    from app.tasks.batch_writes import writes_problem

    args = parse_describe_args(argv)
    model, remote = engine_config(args)
    limits = build_limits(args)
    if args.write_metadata != bool(args.out_dir or args.in_place):
        print(
            "--write-metadata writes into copies in --out-dir DIR, or with --in-place into the "
            "files themselves; give one of them with it.",
            file=sys.stderr,
        )
        return 2
    job = DescribeJob(
        tuple(args.paths),
        args.level,
        args.out,
        args.context,
        args.force,
        out_dir=args.out_dir,
        in_place=args.in_place,
        sidecar=args.sidecar,
        overwrite=args.overwrite,
    )
    problem = job_problem(job) or model_problem(model, remote) or writes_problem(job)
    if problem:
        print(problem, file=sys.stderr)
        return 2
    show_log()
    workers = workers_for(remote)
    engine = open_engine(remote or model, queue_size=max(workers, limits.queue_size))
    engine.start()
    try:
        failure = wait_for_model(engine)
        if failure:
            print(failure, file=sys.stderr)
            return 2
        line = ProgressLine(sys.stderr)
        summary = run_job(job, engine, limits, workers, line.update)
    except Stopped:
        print(f"\nStopped. What was finished is in {job.out}; run again to go on.", file=sys.stderr)
        return 130
    except KeyboardInterrupt:  # Ctrl+C while the model loads
        print("\nStopped before the model had loaded; nothing was described.", file=sys.stderr)
        return 130
    finally:
        engine.close()
    print(f"{summary.sentence()} Results in {job.out}.", file=sys.stderr)
    return 1 if summary.failed else 0


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


def wait_for_model(engine) -> str | None:
    """Wait until the engine has its model; the failure sentence, or None."""
    while (status := engine.status()).load_state == "loading":
        time.sleep(0.2)
    return status.error if status.load_state == "error" else None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["describe"]:
        return describe(argv[1:])
    config = build_config(parse_args(argv))
    problem = model_problem(config.model, config.remote)
    if problem:
        print(problem, file=sys.stderr)
        return 2
    show_log()
    from app.history import History
    from app.page.chat_events import ChatHandlers
    from app.page.voice import Voice
    from app.server import serve

    engine = open_engine(config.remote or config.model, queue_size=config.limits.queue_size)
    engine.start()
    recognizer = SpeechRecognizer(config.asr.model)
    recognizer.start_loading()
    history = History(config.data_dir)
    try:
        serve(ChatHandlers(engine, Voice(recognizer), history, config), config)
    except KeyboardInterrupt:
        pass
    finally:
        engine.close()  # whatever ended the server: the worker goes quietly, not by a broken pipe
    return 0


if __name__ == "__main__":
    sys.exit(main())
