"""Replacing a file whole: a reader sees the old file or the new one, never half of one, and a
failure leaves the old one and no temporary file behind."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def replace_atomically(target: Path, data: bytes, mode_from: Path | None = None) -> None:
    """Write `data` to a temporary file beside `target`, flush it to disk, then rename it over
    `target`, with the mode of `mode_from`, else of `target`, else 0644; the temporary file is
    removed on any failure."""
    handle, temporary = tempfile.mkstemp(
        dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"
    )
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        # mkstemp makes the file private (0600): give it the mode the file would have had.
        for model in (mode_from, target):
            if model is not None and model.is_file():
                os.chmod(temporary, os.stat(model).st_mode & 0o777)
                break
        else:
            os.chmod(temporary, 0o644)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
