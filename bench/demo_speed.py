"""Demo-model figures on this machine: checkpoint build and load, and reply speed.

Measures the miniature checkpoint's size, build and 4-bit load time; then time to first token
and tokens per second for an image+text request, in the engine and through the running app
(gradio_client streaming: there the rate is of streamed updates, which are fewer than tokens
when a token is part of a character). Each figure is the median of repeated runs after a warm-up,
with min and max. Writes bench/results/demo-cpu.json and prints it.

    .venv/bin/python bench/demo_speed.py [--runs 5] [--new-tokens 128]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from model import ChatRequest, Engine, Finished, GenerationOptions, Message, ModelConfig  # noqa: E402
from tests.conftest import photo, wait_until_ready  # noqa: E402


def summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def measure_checkpoint(cache_root: Path) -> dict:
    from model.loader import load
    from model.miniature import ensure_miniature

    started = time.perf_counter()
    folder = ensure_miniature(cache_root)
    build_s = time.perf_counter() - started
    size = sum(file.stat().st_size for file in folder.rglob("*") if file.is_file())
    loads = []
    for _ in range(3):
        started = time.perf_counter()
        load(ModelConfig(demo=True, cache_root=cache_root), progress=lambda sentence: None)
        loads.append(time.perf_counter() - started)
    return {"size_bytes": size, "build_s": build_s, "load_4bit_s": summary(loads)}


def request(new_tokens: int) -> ChatRequest:
    # Greedy, so the random model's reply length depends only on where it meets a stop token.
    options = GenerationOptions(max_new_tokens=new_tokens, temperature=0.0)
    return ChatRequest((Message("user", "What is in this picture?", images=(photo(),)),), options)


def measure_engine(cache_root: Path, runs: int, new_tokens: int) -> dict:
    engine = Engine(ModelConfig(demo=True, cache_root=cache_root))
    engine.start()
    wait_until_ready(engine)
    timings = []
    for run in range(runs + 1):
        finished = list(engine.submit(request(new_tokens)))[-1]
        assert isinstance(finished, Finished), finished
        if run:  # the first run warms up
            timings.append(finished.timing)
    engine.close()
    return {
        "time_to_first_token_s": summary([t.time_to_first_token_s for t in timings]),
        "tokens_per_s": summary([t.tokens_per_s for t in timings]),
        "tokens": summary([t.tokens for t in timings]),
    }


def measure_app(cache_root: Path, runs: int, new_tokens: int, port: int = 7931) -> dict:
    from gradio_client import handle_file

    env = {**os.environ, "LOUPE_CACHE_DIR": str(cache_root)}
    app = subprocess.Popen(
        [sys.executable, "launch.py", "--demo", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    image = Path(tempfile.mkdtemp()) / "photo.png"
    photo().save(image)
    try:
        client = _connect(f"http://127.0.0.1:{port}")
        first, rates = [], []
        for run in range(runs + 1):
            started = time.perf_counter()
            first_at, updates = None, 0
            job = client.submit(
                {"text": "What is in this picture?", "files": [handle_file(image)]},
                "",
                0.0,
                0.95,
                64,
                new_tokens,
                False,
                280,
                api_name="/chat",
            )
            for text in job:
                updates += 1
                if first_at is None and text:
                    first_at = time.perf_counter()
            ended = time.perf_counter()
            if run and first_at is not None:
                first.append(first_at - started)
                if updates > 1 and ended > first_at:
                    rates.append((updates - 1) / (ended - first_at))
        return {"time_to_first_text_s": summary(first), "updates_per_s": summary(rates)}
    finally:
        app.terminate()
        app.wait(timeout=30)


def _connect(url: str, timeout_s: float = 240):
    import httpx
    from gradio_client import Client

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=2).json().get("status") == "ok":
                return Client(url, verbose=False)
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(0.5)
    raise RuntimeError("the app did not become ready")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--new-tokens", type=int, default=128)
    args = parser.parse_args()
    cache_root = Path(tempfile.mkdtemp(prefix="loupe-bench-"))
    try:
        results = {
            "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
            "runs": args.runs,
            "max_new_tokens": args.new_tokens,
            "checkpoint": measure_checkpoint(cache_root),
            "engine": measure_engine(cache_root, args.runs, args.new_tokens),
            "app": measure_app(cache_root, args.runs, args.new_tokens),
        }
    finally:
        shutil.rmtree(cache_root, ignore_errors=True)
    out = ROOT / "bench" / "results" / "demo-cpu.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
