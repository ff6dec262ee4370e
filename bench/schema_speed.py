"""What holding a reply to a JSON schema costs (constrained decoding, model/constrained.py): decode
tokens per second of the same request with and without `response_format`, on each in-process
engine (transformers and llama.cpp), side by side in one run, on the demo model:

    .venv/bin/python -m bench.schema_speed            # 256-token replies, 5 runs each
    .venv/bin/python -m bench.schema_speed --quick    # 64 tokens, 2 runs each

The schema asks for one long string (`{"story": "..."}`, at least 2,000 characters), so that
the reply runs to its token limit as the free one does (held to it by `min_new_tokens`). The
rate counts the tokens after the first (model.events.Timing). The demo model is tiny, so each
of its steps is short and the grammar's share of a step is the largest it gets: the ratio here
is a floor for a real model.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from model import ChatRequest, Finished, GenerationOptions, LocalEngine, Message, ModelConfig

from .harness import Figure, cpu_flags, device_label, figure, machine, write
from .serving import wait_until_ready

STORY_CHARS = 2000  # the story is at least this long: the reply runs to its token limit
SCHEMA = json.dumps({
    "type": "object",
    "properties": {"story": {"type": "string", "minLength": STORY_CHARS}},
    "required": ["story"],
})  # fmt: skip
PROMPT = "Tell me a long story about the sea."
ENGINES = ("transformers", "llama.cpp")
TARGET_RATIO = 0.9


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.schema_speed", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--quick", action="store_true", help="64 tokens, 2 runs each")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> list[Path]:
    args = parse_args(argv)
    tokens, runs = (64, 2) if args.quick else (256, 5)
    figures: list[Figure] = []
    notes = []
    for backend in ENGINES:
        free, held = measure(backend, tokens, runs)
        figures += [
            figure(backend, "free reply", "tokens/s", free),
            figure(backend, "held to a schema", "tokens/s", held),
        ]
        ratio = statistics.median(held) / statistics.median(free)
        notes.append(
            f"{backend}: {statistics.median(held):.1f} tokens/s held to a schema against "
            f"{statistics.median(free):.1f} free, a ratio of {ratio:.2f} (target at least "
            f"{TARGET_RATIO})"
        )
    results = {
        "subject": "Decode speed with and without a JSON schema (constrained decoding)",
        "machine": {**machine(), "cpu_flags": cpu_flags()},
        "settings": {"tokens": tokens, "runs": runs, "schema": json.loads(SCHEMA)},
        "notes": notes,
    }
    name = f"{device_label()}-schema-speed{'-quick' if args.quick else ''}"
    paths = write(args.out, name, results, figures, plotted=False)
    print("\n".join([*notes, *map(str, paths)]))
    return paths


def measure(backend: str, tokens: int, runs: int) -> tuple[list[float], list[float]]:
    """Decode rates of `runs` free replies and `runs` schema replies (after a warm-up of each),
    taken in turns, on the demo model in `backend`."""
    engine = LocalEngine(ModelConfig(demo=True, backend=backend), queue_size=2)
    engine.start()
    try:
        wait_until_ready(engine)
        free = GenerationOptions(
            max_new_tokens=tokens, min_new_tokens=tokens, temperature=0.0, speculative=False
        )
        held = GenerationOptions(
            max_new_tokens=tokens, temperature=0.0, speculative=False, response_schema=SCHEMA
        )
        rates: dict[bool, list[float]] = {False: [], True: []}
        for run in range(runs + 1):
            for schema, options in ((False, free), (True, held)):
                rate = _rate(engine, options)
                if run:  # the first of each is a warm-up
                    rates[schema].append(rate)
        return rates[False], rates[True]
    finally:
        engine.close()


def _rate(engine: LocalEngine, options: GenerationOptions) -> float:
    events = list(engine.submit(ChatRequest((Message("user", PROMPT),), options)))
    finished = events[-1]
    assert isinstance(finished, Finished), finished
    return finished.timing.tokens_per_s


if __name__ == "__main__":
    main()
