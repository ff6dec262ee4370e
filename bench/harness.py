"""The benchmark's common parts: repeated timing, the machine, and the result files."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Figure:
    """One line of the results table: a median with min and max, or a single value."""

    stage: str
    name: str
    unit: str
    median: float
    min: float | None = None
    max: float | None = None
    runs: int = 1


def figure(stage: str, name: str, unit: str, values: list[float] | float) -> Figure:
    """A Figure from repeated measurements (median, min, max) or from one value."""
    if isinstance(values, int | float):
        return Figure(stage, name, unit, float(values))
    return Figure(
        stage, name, unit, statistics.median(values), min(values), max(values), len(values)
    )


def repeat(measure: Callable[[], Any], runs: int, warmups: int = 1) -> list[Any]:
    """`measure()`'s results for `runs` runs, after `warmups` runs whose results are dropped."""
    for _ in range(warmups):
        measure()
    return [measure() for _ in range(runs)]


def seconds(action: Callable[[], Any]) -> float:
    """How long `action()` takes, wall clock."""
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> str:
    """The CPU's vector and matrix flags (AVX, AVX-512 and its BF16, AMX, VNNI, FMA, F16C)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                wanted = ("avx", "fma", "f16c", "amx", "vnni", "bf16")
                flags = line.split(":", 1)[1].split()
                return " ".join(f for f in flags if any(w in f for w in wanted))
    except OSError:
        pass
    return "unknown"


def machine() -> dict[str, Any]:
    """What ran the benchmark: CPU, memory, GPU, library versions, and how busy the CPU was."""
    import bitsandbytes
    import psutil
    import torch
    import transformers

    described = {
        "cpu": f"{cpu_name()}, {os.cpu_count()} cores",
        "ram_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "load_average_1min": os.getloadavg()[0],
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "bitsandbytes": bitsandbytes.__version__,
    }
    if torch.cuda.is_available():
        gpu = torch.cuda.get_device_properties(0)
        described["gpu"] = f"{gpu.name}, {gpu.total_memory / 2**30:.0f} GiB"
    return described


def device_label() -> str:
    """A short name for the results' file names: the GPU's model, else `cpu`."""
    import torch

    if not torch.cuda.is_available():
        return "cpu"
    name = torch.cuda.get_device_name(0).lower().replace("nvidia", "")
    return "-".join(part for part in name.split() if part)


def write(
    out: Path, name: str, results: dict[str, Any], figures: list[Figure], plotted: bool = True
) -> list[Path]:
    """NAME.json (everything), NAME.md (the table) and, `plotted`, NAME.png (the sweeps) in
    `out`."""
    out.mkdir(parents=True, exist_ok=True)
    document = {**results, "figures": [asdict(f) for f in figures]}
    paths = [out / f"{name}.json", out / f"{name}.md"]
    paths[0].write_text(json.dumps(document, indent=2) + "\n")
    paths[1].write_text(markdown(results, figures))
    if plotted:
        paths.append(out / f"{name}.png")
        plot(figures, paths[2], title=results["subject"])
    return paths


def markdown(results: dict[str, Any], figures: list[Figure]) -> str:
    lines = [
        f"# {results['subject']}",
        "",
        *(f"- {key}: {value}" for key, value in results["machine"].items()),
        *(f"- {key}: {value}" for key, value in results["settings"].items()),
        "",
        "| stage | figure | median | min | max | unit | runs |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for f in figures:
        spread = [_number(f.min), _number(f.max)] if f.min is not None else ["", ""]
        lines.append(
            f"| {f.stage} | {f.name} | {_number(f.median)} | {' | '.join(spread)} | {f.unit} "
            f"| {f.runs} |"
        )
    notes = results.get("notes", [])
    return "\n".join([*lines, "", *(f"- {note}" for note in notes)]).rstrip() + "\n"


def _number(value: float) -> str:
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"


# The sweeps drawn in NAME.png: (stage, unit, panel title).
PLOTTED = (
    ("time to first token", "s", "Time to first token by input"),
    ("decode", "tokens/s", "Decode speed by length"),
)


def plot(figures: list[Figure], path: Path, title: str) -> None:
    """Bar charts of the sweeps, medians with min-max whiskers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(PLOTTED), figsize=(7 * len(PLOTTED), 5.5))
    for axis, (stage, unit, panel) in zip(axes, PLOTTED, strict=True):
        shown = [f for f in figures if f.stage.startswith(stage) and f.unit == unit]
        medians = [f.median for f in shown]
        whiskers = [
            [f.median - (f.min if f.min is not None else f.median) for f in shown],
            [(f.max if f.max is not None else f.median) - f.median for f in shown],
        ]
        axis.bar(range(len(shown)), medians, yerr=whiskers, capsize=3, color="#4a7ab5")
        names = [f"{f.stage.removeprefix(stage)} {f.name}".strip() for f in shown]
        axis.set_xticks(range(len(shown)), names, rotation=45, ha="right", fontsize=7)
        axis.set_ylabel(unit)
        axis.set_title(panel)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
