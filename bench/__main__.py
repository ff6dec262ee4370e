"""Loupe's benchmarks, every stage in one command; writes JSON, a Markdown table and a plot.

    .venv/bin/python -m bench                      # the demo model, full runs (~10 min on 2 cores)
    .venv/bin/python -m bench --quick              # the same stages, small (~2 min; CI, tests)
    .venv/bin/python -m bench --shape 12b --device cuda --quant 4bit 8bit none
    .venv/bin/python -m bench --model /path/to/gemma-4-12B-it

Each figure is the median of repeated runs after a warm-up, with min and max. Files go to
bench/results/DEVICE-SUBJECT.{json,md,png} (--out to change). See bench/README.md.

Measured apart, each with its own command: `python -m bench.llama_cpp` (llama.cpp beside
bitsandbytes) and `python -m bench.intake_speed` (a late turn's input, photos decoded).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
import warnings
from contextlib import ExitStack
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from app.config import Limits
from model.config import ModelConfig
from model.messages import IMAGE_TOKEN_BUDGETS

from . import app_speed, asr_speed, batch_speed, model_speed, remote_speed, request_memory
from .harness import Figure, device_label, figure, machine, repeat, write
from .serving import Shared
from .shapes import SHAPES

STAGES = (
    "load",
    "first-token",
    "decode",
    "settings",
    "engine",
    "app",
    "asr",
    "remote",
    "batch",
    "memory",
)
# --quick's request memory stage: the worst request for limits this fraction of the defaults.
QUICK_LIMITS_FACTOR = 0.1
OVERHEAD_GOAL = 0.98  # app tokens per second over raw generate's
DELAY_GOAL_MS = 10.0  # worker to client, per chunk, median


@dataclass(frozen=True)
class Plan:
    """How much to measure."""

    runs: int
    decode_tokens: tuple[int, ...]
    image_budgets: tuple[int, ...]
    audio_s: tuple[int, ...]
    settings_tokens: int
    app_tokens: int
    asr_s: tuple[int, ...]
    remote_tokens: int  # one reply at a time from a model server
    remote_concurrent_tokens: int  # each of eight replies at once
    batch_images: int  # image files the describe job runs over, in process and on a server
    batch_tokens: int  # each description's length
    recording_s: int  # a screen recording with speech: its length
    recording_px: tuple[int, int]  # and its size


FULL = Plan(
    5, (128, 1024), IMAGE_TOKEN_BUDGETS, (5, 30), 128, 1024, (10, 60), 256, 64, 100, 64,
    30, (1920, 1080),
)  # fmt: skip
QUICK = Plan(1, (16, 64), (70, 280), (5,), 16, 64, (5,), 32, 16, 10, 16, 4, (320, 180))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few runs, short replies")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--shape", choices=SHAPES, help="random weights of a real model's shape")
    which.add_argument("--model", metavar="PATH", help="real weights (default: the demo model)")
    parser.add_argument(
        "--quant",
        nargs="+",
        default=["4bit"],
        choices=["4bit", "8bit", "none"],
        help="quantizations to load and time; the first is used for the later stages",
    )
    parser.add_argument("--device", default="auto", choices=["auto", "cuda", "cpu"])
    parser.add_argument("--stages", nargs="+", default=list(STAGES), choices=STAGES)
    parser.add_argument("--runs", type=int, help="runs per figure after the warm-up")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> list[Path]:
    args = parse_args(argv)
    plan = QUICK if args.quick else FULL
    if args.runs:
        plan = replace(plan, runs=args.runs)
    warnings.filterwarnings("ignore")  # bitsandbytes warns on every 8-bit matmul on the CPU
    from model.loader import resolve_device

    device = resolve_device(args.device)
    cache_root = Path(tempfile.mkdtemp(prefix="loupe-bench-"))
    os.environ["LOUPE_CACHE_DIR"] = str(cache_root)  # for the app the benchmark starts
    try:
        figures, details = checkpoint(cache_root)
        subject, app_config, app_flags = subjects(args, cache_root, device)
        with ExitStack() as stack:  # the forced app and the model server, once for all stages
            shared = Shared(stack, cache_root)
            results = run(
                args, plan, device, subject, app_config, app_flags, figures, details, shared
            )
    finally:
        shutil.rmtree(cache_root, ignore_errors=True)
    slug = subject.label.split(",")[0].lower().replace(" ", "-")
    if set(args.stages) in ({"remote"}, {"batch"}, {"memory"}):  # beside the model's figures
        slug = f"{args.stages[0]}-{slug}"
    name = f"{device_label()}-{slug}{'-quick' if args.quick else ''}"
    paths = write(args.out, name, results, figures)
    print("\n".join(str(path) for path in paths))
    return paths


def checkpoint(cache_root: Path) -> tuple[list[Figure], dict[str, Any]]:
    """The demo checkpoint: build time (imports included) and size on disk."""
    from model.miniature import ensure_miniature

    started = time.perf_counter()
    folder = ensure_miniature(cache_root)
    build_s = time.perf_counter() - started
    size = sum(file.stat().st_size for file in folder.rglob("*") if file.is_file())
    figures = [
        figure("demo checkpoint", "first build", "s", build_s),
        figure("demo checkpoint", "size", "MB", size / 1e6),
    ]
    return figures, {"miniature": str(folder)}


def subjects(args: argparse.Namespace, cache_root: Path, device: str) -> tuple:
    """What the model stages measure, and what the engine and app stages run."""
    from model.miniature import build_miniature_drafter, ensure_miniature

    demo = ModelConfig(demo=True, device=device, quant=args.quant[0], cache_root=cache_root)
    if args.shape:
        subject = model_speed.shape_subject(args.shape, ensure_miniature(cache_root), device)
        return subject, demo, ["--demo"]
    if args.model:
        config = ModelConfig(model_id=args.model, device=device)
        subject = model_speed.Subject(
            f"{args.model}, real weights",
            lambda quant: model_speed.load_subject(replace(config, quant=quant)),
        )
        return subject, replace(config, quant=args.quant[0]), ["--model", args.model]
    # The demo model, with a random drafter beside it (as `<folder>-assistant`) for the settings.
    folder = cache_root / "demo"
    folder.symlink_to(ensure_miniature(cache_root))
    build_miniature_drafter(folder, cache_root / "demo-assistant")
    config = ModelConfig(model_id=str(folder), device=device)
    subject = model_speed.Subject(
        "Demo model, random weights",
        lambda quant: model_speed.load_subject(replace(config, quant=quant)),
    )
    return subject, demo, ["--demo"]


def run(
    args: argparse.Namespace,
    plan: Plan,
    device: str,
    subject: model_speed.Subject,
    app_config: ModelConfig,
    app_flags: list[str],
    figures: list[Figure],
    details: dict[str, Any],
    shared: Shared,
) -> dict[str, Any]:
    """Every chosen stage, appending to `figures`; the results document without them."""
    stages, notes = set(args.stages), []
    bandwidth = model_speed.copy_bandwidth(device)
    figures.append(figure("decode", "copy bandwidth", "GB/s", bandwidth / 1e9))
    for quant in args.quant if stages & {"load", "first-token", "decode", "settings"} else []:
        loaded_figures, loaded = model_speed.measure_load(subject, quant, plan.runs)
        if "load" in stages:
            figures += loaded_figures
        if "first-token" in stages:
            cases = model_speed.first_token_inputs(plan.image_budgets, plan.audio_s)
            with tempfile.TemporaryDirectory() as folder:
                decode_s, recording = model_speed.screen_recording(
                    plan.recording_s, plan.recording_px, Path(folder)
                )
            figures.append(figure("video", f"{recording[0]}: decoded by the intake", "s", decode_s))
            timed = model_speed.measure_first_token(loaded, [*cases, recording], plan.runs)
            timed += model_speed.measure_recording_memory(loaded, recording)
            figures += [replace(f, stage=f"{f.stage} {quant}") for f in timed]
        if "decode" in stages:
            decoded, ceiling = model_speed.measure_decode(
                loaded, plan.decode_tokens, plan.runs, bandwidth
            )
            figures += [replace(f, stage=f"{f.stage} {quant}") for f in decoded]
            details[f"decode {quant}"] = ceiling
        if "settings" in stages and quant == args.quant[0]:
            tried, identical = model_speed.measure_settings(loaded, plan.settings_tokens, plan.runs)
            figures += tried
            details["greedy identical to plain"] = identical
            notes += [
                f"greedy {case}: same as plain {same} (bf16; see bench/README.md)"
                for case, same in identical.items()
            ]
        del loaded
        model_speed.release()
    if stages & {"engine", "app"}:
        notes += overhead(stages, plan, app_config, app_flags, figures, shared)
    if "asr" in stages:
        figures += asr_speed.measure(plan.asr_s, plan.runs)
        details["speech recognition"] = asr_speed.SETTINGS
    if "remote" in stages:
        notes += remote(plan, Path(details["miniature"]), app_config, app_flags, figures, shared)
    if "batch" in stages:
        measured, batch_notes, batch_details = batch_speed.measure(
            shared, app_config, Path(details["miniature"]), plan.batch_images, plan.batch_tokens
        )
        figures += measured
        notes += batch_notes
        details |= batch_details
    if "memory" in stages:
        limits = Limits()
        if args.quick:
            limits = request_memory.scaled(limits, QUICK_LIMITS_FACTOR)
        app_flags = [*app_flags, "--quant", app_config.quant]
        measured, memory_notes = request_memory.measure(app_flags, limits)
        figures += measured
        notes += memory_notes
    return {
        "subject": subject.label,
        "machine": machine(),
        "settings": {
            "device": device,
            "quantizations": " ".join(args.quant),
            "plan": ", ".join(f"{key} {value}" for key, value in asdict(plan).items()),
        },
        "details": details,
        "notes": notes,
    }


def overhead(
    stages: set[str],
    plan: Plan,
    config: ModelConfig,
    flags: list[str],
    figures: list[Figure],
    shared: Shared,
) -> list[str]:
    """Engine and app figures against raw `generate` of the same requests on the same model."""
    tokens = plan.app_tokens
    loaded = model_speed.load_subject(config)
    chat = app_speed.request(0, tokens)
    inputs = model_speed.prepared(loaded, chat.messages, chat.options)
    raw = repeat(lambda: model_speed.decode_rate(loaded, inputs, tokens), plan.runs)
    loaded = inputs = None
    model_speed.release()
    raw_figure = figure("raw generate", f"{tokens} new tokens, same request", "tokens/s", raw)
    figures.append(raw_figure)
    notes = []
    app_flags = [*flags, "--quant", config.quant]
    for stage, measure in (
        ("engine", lambda: app_speed.measure_engine(config, tokens, plan.runs)),
        ("app", lambda: app_speed.measure_app(shared, app_flags, tokens, plan.runs)),
    ):
        if stage not in stages:
            continue
        measured = measure()
        figures += measured
        rate = next(f for f in measured if f.unit == "tokens/s").median
        ratio = rate / raw_figure.median
        figures.append(figure(stage, "tokens/s over raw generate's", "ratio", ratio))
        delay = next(f for f in measured if f.unit == "ms").median
        notes.append(
            f"{stage}: {ratio:.3f} of raw generate's tokens per second (goal {OVERHEAD_GOAL}: "
            f"{'met' if ratio >= OVERHEAD_GOAL else 'not met'}); chunk delay from the worker "
            f"{delay:.1f} ms median (goal under {DELAY_GOAL_MS:g} ms: "
            f"{'met' if delay < DELAY_GOAL_MS else 'not met'})"
        )
    if "app" in stages:
        floor = app_speed.measure_gradio_alone(tokens, raw_figure.median, plan.runs)
        figures += floor
        notes.append(
            f"a bare Gradio generator at the same rate, read the same way: {floor[0].median:.1f} "
            "ms median from yield to client"
        )
    return notes


def remote(
    plan: Plan,
    miniature: Path,
    config: ModelConfig,
    flags: list[str],
    figures: list[Figure],
    shared: Shared,
) -> list[str]:
    """A real `transformers serve` straight and through RemoteEngine; Loupe's own /v1 stream."""
    measured, notes = remote_speed.measure(
        shared, miniature, plan.remote_tokens, plan.remote_concurrent_tokens, plan.runs
    )
    figures += measured
    app_flags = [*flags, "--quant", config.quant]
    measured, v1_notes = remote_speed.measure_v1(shared, app_flags, plan.remote_tokens, plan.runs)
    figures += measured
    return notes + v1_notes


if __name__ == "__main__":
    main()
