"""What a describe job will write, checked before it starts (and before the model loads), so that
Loupe replaces only files it wrote itself or that the person asked it to replace.

Loupe's own files are known by their content: an --out whose header (CSV) or first row (JSON
Lines) has Loupe's columns, or an empty one; a sidecar that holds, or a copy in --out-dir whose
metadata holds, the alt text that this --out's journal has for its image, so that running the
same command again (with --force too) goes on. Any other file in the way, and any read-only one,
is replaced only with --overwrite. Whatever the flags, Loupe never writes over a folder, over an
image it is describing or its own results, twice into one file, or copies into the images' own
folders.
"""

from __future__ import annotations

import csv
import json
import os
import stat
from pathlib import Path

from .batch import DescribeJob, common_folder, image_files, to_describe, written_files
from .batch_rows import COLUMNS, ItemResult, Journal
from .metadata import alt_text_in

FIRST_LINE_MAX_BYTES = 1 << 20  # a Loupe row holds one answer: far below this


def writes_problem(job: DescribeJob) -> str | None:
    """Why the job would write where it must not, in one sentence, or None."""
    journal = Journal(job.out)
    problem = _out_problem(job)
    if problem or not job.writes_files:
        return problem
    files = image_files(job.paths, leave_out=(job.out, journal.path))
    problem = _out_dir_problem(job, files)
    if problem:
        return problem
    rows = journal.load()  # before --force starts over: what Loupe wrote last time
    root = common_folder(files)
    read = {file.resolve() for file in files} | {job.out.resolve(), journal.path.resolve()}
    planned: dict[Path, Path] = {}  # where a file is written -> the image it is written for
    for image in files if job.force else to_describe(files, rows):
        written = written_files(job, root, image)
        for target in written:
            where = target.resolve()
            if where in planned:
                return (
                    f"{planned[where]} and {image} would both be written to {target}; rename one "
                    "of them."
                )
            if where in read and not (job.in_place and target == image):
                return (
                    f"Loupe would write over {target}, which this run reads or writes; rename it "
                    "or write elsewhere."
                )
            planned[where] = image
            sidecar = job.sidecar and target == written[-1]
            problem = _replace_problem(job, target, image, rows.get(str(image)), sidecar)
            if problem:
                return problem
    return None


def _out_problem(job: DescribeJob) -> str | None:
    out = job.out
    if out.is_dir():
        return f"--out {out} is a folder: name a .csv or .jsonl file."
    folder = next((parent for parent in out.parents if os.path.lexists(parent)), None)
    if folder is not None and not folder.is_dir():
        return f"--out {out} cannot be written: {folder} is a file, not a folder."
    if not os.path.lexists(out) or job.overwrite:
        return None
    if _read_only(out):
        return f"--out {out} is read-only; Loupe leaves it as it is unless you add --overwrite."
    if not _is_loupe_output(out):
        return (
            f"--out {out} already holds a file Loupe did not write; name another file, or add "
            "--overwrite to replace it."
        )
    return None


def _out_dir_problem(job: DescribeJob, files: list[Path]) -> str | None:
    if job.out_dir is None:
        return None
    if os.path.lexists(job.out_dir) and not job.out_dir.is_dir():
        return f"--out-dir {job.out_dir} is a file, not a folder."
    out_dir = job.out_dir.resolve()
    if any(file.resolve().is_relative_to(out_dir) for file in files):
        return (
            f"--out-dir {job.out_dir} is or holds the images' folder, and the originals stay "
            "untouched: choose a folder apart from them, or --in-place to write into them."
        )
    walked = (Path(name).resolve() for name in job.paths if Path(name).is_dir())
    if any(out_dir.is_relative_to(folder) for folder in walked):
        return (
            f"--out-dir {job.out_dir} lies inside a folder being described, so the next run "
            "would describe the copies too: choose a folder outside it."
        )
    return None


def _replace_problem(
    job: DescribeJob, target: Path, image: Path, row: ItemResult | None, sidecar: bool
) -> str | None:
    """Why `target`, written for `image`, must not be replaced, or None."""
    if not os.path.lexists(target):
        return None
    if target.is_dir():
        return f"{target} is a folder, where Loupe would write for {image}; move it away first."
    if job.overwrite:
        return None
    if _read_only(target):
        return f"{target} is read-only; Loupe leaves it as it is unless you add --overwrite."
    if target == image:  # --in-place: the person asked for the image itself
        return None
    alt_text = row.alt_text if row is not None and not row.error else None
    if alt_text is None or _alt_text_of(target, sidecar) != alt_text:
        what = "sidecar" if sidecar else "copy"
        return (
            f"The {what} {target} is already there and Loupe did not write it; move it away, "
            "or add --overwrite to replace it."
        )
    return None


def _alt_text_of(target: Path, sidecar: bool) -> str | None:
    if not sidecar:
        return alt_text_in(target)
    try:
        with target.open("rb") as file:
            return file.read(FIRST_LINE_MAX_BYTES).decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def _read_only(path: Path) -> bool:
    """Read-only as `ls -l` shows it (no write bit for its owner; root may write any file), or
    not writable by this user."""
    try:
        return not os.stat(path).st_mode & stat.S_IWUSR or not os.access(path, os.W_OK)
    except OSError:
        return False


def _is_loupe_output(out: Path) -> bool:
    """Whether `out` is empty or starts as Loupe writes: a CSV header, or a JSON Lines row,
    of Loupe's columns, `path` and `level` first."""
    try:
        with out.open("rb") as file:
            first = file.readline(FIRST_LINE_MAX_BYTES).decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    if not first:
        return True
    if out.suffix.lower() == ".csv":
        columns = next(csv.reader([first]), [])
    else:
        try:
            row = json.loads(first)
        except ValueError:
            return False
        columns = list(row) if isinstance(row, dict) else []
    return columns[:2] == ["path", "level"] and set(columns) <= set(COLUMNS)
