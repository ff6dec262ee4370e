"""Figures the reliability tests measure, kept as JSON in test-artifacts/reliability/ for the
closing notes (measured, not asserted beyond each test's own bounds)."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

FIGURES_DIR = Path(__file__).resolve().parent.parent / "test-artifacts" / "reliability"


def record(name: str, figures: dict) -> None:
    """Write `figures` to test-artifacts/reliability/<name>.json and print them (pytest -s)."""
    FIGURES_DIR.mkdir(parents=True, exist_ok=True)
    text = json.dumps(figures, indent=2)
    (FIGURES_DIR / f"{name}.json").write_text(text + "\n")
    print(f"\n{name}: {text}")


def spread_s(samples: list[float]) -> dict[str, float]:
    """Median and maximum of durations, in seconds, rounded to milliseconds."""
    return {
        "median_s": round(statistics.median(samples), 3),
        "max_s": round(max(samples), 3),
    }
