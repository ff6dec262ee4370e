"""Loupe's llama.cpp engine beside llama.cpp's own llama-bench and beside Loupe's bitsandbytes
engine, in one run, on Gemma 4 12B's shape with random weights (bench/gguf_shape.py):

    .venv/bin/python -m bench.llama_cpp            # ~15 min on 2 cores, the GGUF's first write
    .venv/bin/python -m bench.llama_cpp --quick    # shorter replies, one run each

- llama-bench: built here from the llama.cpp that llama-cpp-python vendors (the same code Loupe
  runs), on the same file, with as many threads as Loupe uses: prompt (pp) and decode (tg).
- Loupe's llama.cpp engine (the supervised worker, as the app runs it): decode speed at a
  forced length; prompt speed, the prompt's tokens over the time to the first token less one
  decode step (what llama-bench's pp leaves out); time to first token for a text prompt, a
  screenshot and a 10 s clip; the worker's peak memory.
- Loupe's transformers + bitsandbytes NF4 engine (bench/model_speed.py's random 12B) on the same
  CPU: decode speed, time to first token for the same text prompt, peak memory.

The CPU's flags (AVX-512 BF16 decides bitsandbytes' speed) are written with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from model import ChatRequest, Finished, GenerationOptions, LocalEngine, Message, ModelConfig
from model.config import default_cache_root
from model.engine_choice import has_avx512_bf16
from model.gguf_files import ensure_converter, llama_cpp_sources, miniature_gguf

from . import model_speed
from .gguf_shape import model_and_projector
from .harness import Figure, cpu_flags, cpu_name, figure, machine, write

PROMPT_WORDS = 60  # llama-bench's prompt is this many tokens too (-p), about
LLAMA_BENCH = "bin/llama-bench"
# llama.cpp as it builds for a CPU with AVX2 and no AVX-512 (most laptops').
AVX2_ONLY = (
    "-DGGML_NATIVE=OFF",
    "-DGGML_AVX=ON",
    "-DGGML_AVX2=ON",
    "-DGGML_FMA=ON",
    "-DGGML_F16C=ON",
    "-DGGML_AVX512=OFF",
    "-DGGML_AVX512_VBMI=OFF",
    "-DGGML_AVX512_VNNI=OFF",
    "-DGGML_AVX512_BF16=OFF",
    "-DGGML_AVX_VNNI=OFF",
)
HOUR_S = 3600.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.llama_cpp", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="16 tokens, one run each")
    parser.add_argument("--skip-bitsandbytes", action="store_true", help="only llama.cpp")
    parser.add_argument(
        "--as-avx2",
        action="store_true",
        help="as on a CPU with AVX2 and no AVX-512 (most laptops'): llama-bench built for AVX2 "
        "only, bitsandbytes without its AVX-512 BF16 path and PyTorch at AVX2",
    )
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> list[Path]:
    args = parse_args(argv)
    if args.as_avx2:
        os.environ["ATEN_CPU_CAPABILITY"] = "avx2"  # read when torch is first imported
        return _as_avx2(args)
    tokens, runs = (16, 1) if args.quick else (64, 3)
    cache = default_cache_root()
    model, projector = _shape_files(cache)
    threads = _threads()
    figures: list[Figure] = []
    ours = _loupe_llama_cpp(model, tokens, runs)
    theirs = _llama_bench(cache, model, threads, tokens, runs, ours["prompt_tokens"])
    figures += theirs["figures"] + ours["figures"]
    figures.append(
        figure("decode", "Loupe llama.cpp / llama-bench", "x", ours["decode"] / theirs["decode"])
    )
    figures.append(
        figure("prompt", "Loupe llama.cpp / llama-bench", "x", ours["prompt"] / theirs["prompt"])
    )
    if not args.skip_bitsandbytes:
        bnb = _loupe_bitsandbytes(min(tokens, 16))
        figures += bnb["figures"]
        figures.append(
            figure(
                "decode",
                "Loupe llama.cpp / Loupe bitsandbytes",
                "x",
                ours["decode"] / bnb["decode"],
            )
        )
    results = {
        "subject": "Gemma 4 12B shape, random weights: llama.cpp and bitsandbytes, side by side",
        "machine": {**machine(), "cpu_flags": cpu_flags(), "threads": threads},
        "settings": {
            "model file": model.name,
            "projector": projector.name,
            "decode tokens": tokens,
            "runs": runs,
        },
        "notes": [
            f"CPU: {cpu_name()}; AVX-512 BF16: {'yes' if has_avx512_bf16() else 'no'}.",
            "Prompt speed of Loupe's engine: prompt tokens / (time to first token - one decode "
            "step).",
        ],
    }
    return _written(args, "cpu-llama-cpp-12b-shape", results, figures)


def _as_avx2(args: argparse.Namespace) -> list[Path]:
    """llama-bench (llama.cpp built for AVX2 only: Loupe's engine runs at llama-bench's speed,
    as the native run shows) beside bitsandbytes without AVX-512 BF16, on this machine."""
    import bitsandbytes.nn.modules as bnb_modules
    import torch

    tokens = 16 if args.quick else 32
    bnb_modules.has_avx512bf16 = lambda: False  # what Linear4bit asks when it is made
    cache = default_cache_root()
    model, _ = _shape_files(cache)
    threads = _threads()
    bnb = _loupe_bitsandbytes(4)  # 25 s a token: four are enough
    theirs = _llama_bench(
        cache, model, threads, tokens, 1 if args.quick else 3, bnb["prompt_tokens"], AVX2_ONLY
    )
    figures = theirs["figures"] + bnb["figures"]
    figures.append(
        figure(
            "decode",
            "llama.cpp (llama-bench) / Loupe bitsandbytes",
            "x",
            theirs["decode"] / bnb["decode"],
        )
    )
    results = {
        "subject": "Gemma 4 12B shape, random weights, as on an AVX2 CPU: llama.cpp and "
        "bitsandbytes",
        "machine": {
            **machine(),
            "cpu_flags": cpu_flags(),
            "threads": threads,
            "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        },
        "settings": {"model file": model.name, "llama.cpp build": " ".join(AVX2_ONLY)},
        "notes": [
            "This CPU has AVX-512 BF16; the run keeps to AVX2: llama.cpp compiled without "
            "AVX-512, bitsandbytes told the CPU lacks AVX-512 BF16 (its generic CPU kernel), "
            "PyTorch limited to AVX2 (ATEN_CPU_CAPABILITY).",
        ],
    }
    return _written(args, "cpu-llama-cpp-12b-shape-as-avx2", results, figures)


def _written(args: argparse.Namespace, name: str, results: dict, figures: list) -> list[Path]:
    paths = write(args.out, f"{name}{'-quick' if args.quick else ''}", results, figures)
    print("\n".join(str(path) for path in paths))
    return paths


def _shape_files(cache: Path) -> tuple[Path, Path]:
    """The 12B-shape model and projector (bench/gguf_shape.py), written once into the cache."""
    converter = ensure_converter(cache, print)
    sys.path.append(str(converter / "gguf-py"))  # after the project: gguf-py has a tests/ too
    import gguf

    return model_and_projector(cache / "bench", miniature_gguf(cache, print), gguf, print)


def _threads() -> int:
    from model.llama_runner import _threads as worker_threads

    return worker_threads()


def _llama_bench(
    cache: Path,
    model: Path,
    threads: int,
    tokens: int,
    runs: int,
    prompt_tokens: int,
    build_flags: tuple[str, ...] = (),
) -> dict[str, Any]:
    """llama-bench's prompt and decode speed on `model` (built once into the cache)."""
    source = llama_cpp_sources(cache, print, "source", ("vendor/llama.cpp/",), "CMakeLists.txt")
    build = source / ("build-avx2" if build_flags else "build")
    binary = build / LLAMA_BENCH
    if not binary.is_file():
        print("Building llama-bench (a few minutes)")
        flags = [
            "-DLLAMA_BUILD_TESTS=OFF",
            "-DLLAMA_BUILD_EXAMPLES=OFF",
            "-DLLAMA_CURL=OFF",
            "-DLLAMA_BUILD_SERVER=OFF",
            "-DCMAKE_BUILD_TYPE=Release",
            *build_flags,
        ]
        subprocess.run(
            ["cmake", "-S", str(source), "-B", str(build), *flags],
            check=True,
            capture_output=True,
        )
        subprocess.run(
            [
                "cmake",
                "--build",
                str(build),
                "--target",
                "llama-bench",
                "-j",
                str(os.cpu_count() or 1),
            ],
            check=True,
            capture_output=True,
        )
    command = [
        str(binary),
        "-m",
        str(model),
        "-t",
        str(threads),
        "-p",
        str(prompt_tokens),
        "-n",
        str(tokens),
        "-r",
        str(runs),
        "-fa",
        "1",  # flash attention, as Loupe's engine runs
        "-o",
        "json",
    ]
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    rows = json.loads(done.stdout)
    prompt = next(r for r in rows if r["n_prompt"] and not r["n_gen"])
    decode = next(r for r in rows if r["n_gen"] and not r["n_prompt"])
    return {
        "prompt": prompt["avg_ts"],
        "decode": decode["avg_ts"],
        "figures": [
            figure("prompt", f"llama-bench pp{prompt_tokens}", "tokens/s", prompt["samples_ts"]),
            figure("decode", f"llama-bench tg{tokens}", "tokens/s", decode["samples_ts"]),
        ],
    }


def _loupe_llama_cpp(model: Path, tokens: int, runs: int) -> dict[str, Any]:
    """Loupe's llama.cpp engine on `model`, as the app runs it."""
    config = ModelConfig(model_id=str(model), backend="llama.cpp", hang_timeout_s=HOUR_S)
    engine = LocalEngine(config)
    started = time.perf_counter()
    engine.start()
    while engine.status().load_state == "loading":
        time.sleep(0.2)
    assert engine.status().load_state == "ready", engine.status().error
    figures = [
        figure(
            "load",
            "Loupe llama.cpp: load (file in the page cache)",
            "s",
            time.perf_counter() - started,
        )
    ]
    forced = GenerationOptions(max_new_tokens=tokens, min_new_tokens=tokens)
    text = Message("user", " ".join(["the sea the wind and the light"] * (PROMPT_WORDS // 7)))
    decode, prompt, first = [], [], []
    for _ in range(runs + 1):  # the first is a warm-up
        timing = _timing(engine, (text,), forced)
        step_s = 1 / timing.tokens_per_s
        decode.append(timing.tokens_per_s)
        prompt.append(timing.prompt_tokens / (timing.time_to_first_token_s - step_s))
        first.append(timing.time_to_first_token_s)
    one = GenerationOptions(max_new_tokens=1)
    cases = {
        "screenshot 1024x768, detail 280": Message(
            "user", model_speed.IMAGE_PROMPT, images=(model_speed.screenshot(),)
        ),
        "10 s clip": Message(
            "user", model_speed.AUDIO_PROMPT, audio=(model_speed.speech_like(10),)
        ),
    }
    figures += [
        figure("decode", f"Loupe llama.cpp ({tokens} tokens)", "tokens/s", decode[1:]),
        figure(
            "prompt", f"Loupe llama.cpp ({timing.prompt_tokens} tokens)", "tokens/s", prompt[1:]
        ),
        figure(
            "time to first token",
            f"Loupe llama.cpp: text ({timing.prompt_tokens} tokens)",
            "s",
            first[1:],
        ),
    ]
    for name, message in cases.items():
        options = GenerationOptions(max_new_tokens=1, image_tokens=280) if message.images else one
        timed = [_timing(engine, (message,), options) for _ in range(runs)]
        figures.append(
            figure(
                "time to first token",
                f"Loupe llama.cpp: {name} ({timed[0].prompt_tokens} tokens)",
                "s",
                [t.time_to_first_token_s for t in timed],
            )
        )
    memory = _memory_gb(engine.worker_pid)
    figures += [
        figure(
            "memory",
            "Loupe llama.cpp: worker's peak RSS (file pages included)",
            "GB",
            memory["VmHWM"],
        ),
        figure("memory", "Loupe llama.cpp: worker's own memory (RssAnon)", "GB", memory["RssAnon"]),
        figure("memory", "Loupe llama.cpp: file pages resident (RssFile)", "GB", memory["RssFile"]),
    ]
    engine.close()
    return {
        "decode": _median(decode[1:]),
        "prompt": _median(prompt[1:]),
        "prompt_tokens": timing.prompt_tokens,
        "figures": figures,
    }


def _timing(engine: LocalEngine, messages: tuple[Message, ...], options: GenerationOptions):
    events = list(engine.submit(ChatRequest(messages, options)))
    assert isinstance(events[-1], Finished), events[-1]
    return events[-1].timing


def _memory_gb(pid: int | None) -> dict[str, float]:
    """The process's resident memory from /proc: its peak (VmHWM, which counts the pages of
    the mmapped GGUF file it read, reclaimable), and now its own (RssAnon: the weights as
    llama.cpp repacked them for this CPU, the KV cache, buffers) and the file's (RssFile)."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmHWM", "RssAnon", "RssFile"):
            fields[name] = int(value.split()[0]) * 1024 / 1e9
    return fields


def _loupe_bitsandbytes(tokens: int) -> dict[str, Any]:
    """The transformers engine's 12B shape in NF4 on this CPU (built in this process)."""
    from model.miniature import ensure_miniature

    subject = model_speed.shape_subject("12b", ensure_miniature(), "cpu")
    started = time.perf_counter()
    loaded = subject.load("4bit")
    built_s = time.perf_counter() - started
    text = Message("user", " ".join(["the sea the wind and the light"] * (PROMPT_WORDS // 7)))
    inputs = model_speed.prepared(loaded, (text,), GenerationOptions())
    first_s = model_speed.seconds(lambda: model_speed.generate(loaded, inputs, 1))
    rate = model_speed.decode_rate(loaded, inputs, tokens)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9
    prompt_tokens = inputs["input_ids"].shape[-1]
    return {
        "decode": rate,
        "prompt_tokens": prompt_tokens,
        "figures": [
            figure("load", "Loupe bitsandbytes: random 12B built and quantized", "s", built_s),
            figure("decode", f"Loupe bitsandbytes NF4 ({tokens} tokens)", "tokens/s", rate),
            figure(
                "time to first token",
                f"Loupe bitsandbytes: text ({prompt_tokens} tokens)",
                "s",
                first_s,
            ),
            figure("memory", "Loupe bitsandbytes: bench process's peak RSS", "GB", peak),
        ],
    }


def _median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


if __name__ == "__main__":
    main()
