"""A batch's progress in words (count, rate and time left), and the console's line for it."""

from __future__ import annotations

import time
from typing import TextIO

from ..intake.probe import duration
from .batch_rows import ItemResult


def progress_sentence(finished: int, total: int, elapsed_s: float) -> str:
    """E.g. "12/40 images · 3.1 per minute · about 9 min left"."""
    per_minute = finished / elapsed_s * 60 if elapsed_s > 0 else 0.0
    left_s = (total - finished) / (per_minute / 60) if per_minute else 0.0
    return (
        f"{finished}/{total} images · {per_minute:.1f} per minute · "
        f"about {duration(left_s)} left"
    )


class ProgressLine:
    """Rewrites one line on a terminal; elsewhere (a log, a pipe) writes a line per file."""

    def __init__(self, stream: TextIO):
        self.stream = stream
        self.started = time.monotonic()
        self.live = stream.isatty()

    def update(self, finished: int, total: int, row: ItemResult) -> None:
        line = progress_sentence(finished, total, time.monotonic() - self.started)
        if row.error:
            line += f" · {row.path}: {row.error}"
        if self.live:
            self.stream.write(f"\r\x1b[K{line}")
            if finished == total:
                self.stream.write("\n")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
