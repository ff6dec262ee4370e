"""Progress bars that report instead of drawing: downloads and weight loading tell a `progress`
callback each whole percent, which reaches the page's status line and the log."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Iterator
from typing import Any

Progress = Callable[[str], None]  # told each step of loading, one sentence at a time

class _Discard(io.TextIOBase):
    """A text stream that drops whatever is written to it."""

    def write(self, text: str) -> int:
        return len(text)


def reporting_tqdm(progress: Progress) -> type:
    """A tqdm class that tells `progress` each whole percent (downloads, weight loading).

    It draws no bar: the worker's bars would interleave with the log lines on the console, and
    `progress` already reaches both the page's status line and the log.
    """
    from tqdm.auto import tqdm

    class ReportingTqdm(tqdm):
        def __init__(self, *args: Any, **kwargs: Any):
            super().__init__(*args, **{**kwargs, "file": _Discard()})

        def display(self, *args: Any, **kwargs: Any) -> Any:
            # tqdm redraws through display() both from update() and while iterating.
            percent = int(100 * self.n / self.total) if self.total else None
            if percent is not None and percent != getattr(self, "_reported_percent", None):
                self._reported_percent = percent
                progress(f"{self.desc or 'Loading'}: {percent}%")
            return super().display(*args, **kwargs)

    return ReportingTqdm


@contextlib.contextmanager
def reported_bars(progress: Progress) -> Iterator[type]:
    """While open, transformers' progress bars report to `progress` instead of being drawn.

    Yields the bar class, for the calls that take one (`tqdm_class`).
    """
    from tqdm.auto import tqdm as tqdm_auto
    from transformers.utils import logging as hf_logging

    bars = reporting_tqdm(progress)
    previous_hook = hf_logging.set_tqdm_hook(
        # transformers passes an empty stand-in as the factory when progress bars are off
        lambda factory, args, kwargs: (
            bars(*args, **kwargs) if issubclass(factory, tqdm_auto) else factory(*args, **kwargs)
        )
    )
    try:
        yield bars
    finally:
        hf_logging.set_tqdm_hook(previous_hook)
