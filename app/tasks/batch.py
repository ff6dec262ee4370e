"""Describing many images: a job over files, folders and globs, one row per file, written to CSV
or JSON Lines and resumable.

The rows and the journal they are kept in are batch_rows'. A file that cannot be read or
described gets its sentence in its row, and the run goes on; failed rows are tried again by the
next run, finished ones are not (unless it is forced). An answer to Check content that holds no
verdict is finished, not failed: its row says why in `verdict_problem`, and the next run leaves
it as it is (the model did answer; --force asks again).
"""

from __future__ import annotations

import glob
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, replace
from pathlib import Path

from model import Engine, RemoteEngineConfig

from ..config import Limits
from ..intake.image import load_image
from ..intake.probe import MediaError
from .batch_rows import ANSWER_COLUMNS, ItemResult, Journal
from .describe import description_request, level_prompt
from .metadata import MetadataError, sidecar_path, write_description, write_sidecar
from .reply import Reply

OUTPUT_SUFFIXES = (".csv", ".jsonl")


class Stopped(Exception):
    """The run was stopped (Ctrl+C); what was finished is kept."""


@dataclass(frozen=True)
class DescribeJob:
    """What to describe, how, and where the rows go (`out`: .csv or .jsonl)."""

    paths: tuple[str, ...]
    level: str
    out: Path
    context: str = ""  # what the images are for, e.g. "product page of an outdoor shop"
    force: bool = False  # describe again what an earlier run finished
    # Alt text into the files' metadata: copies in `out_dir`, or the files themselves.
    out_dir: Path | None = None
    in_place: bool = False
    sidecar: bool = False  # a .txt beside each written image, with its alt text
    # Replace files Loupe did not write, and read-only ones (see batch_writes).
    overwrite: bool = False

    @property
    def writes_files(self) -> bool:
        return self.out_dir is not None or self.in_place or self.sidecar


@dataclass
class Summary:
    done: int = 0
    skipped: int = 0  # finished by an earlier run
    failed: int = 0
    seconds: float = 0.0
    not_verdicts: int = 0  # described, but the answer held no verdict (Check content)

    def sentence(self) -> str:
        said = (
            f"{self.done} described, {self.skipped} already done, {self.failed} failed, "
            f"in {self.seconds:.0f} s."
        )
        if self.not_verdicts:
            said += (
                f" {self.not_verdicts} of the answers held no verdict; verdict_problem says why."
            )
        return said


Progress = Callable[[int, int, ItemResult], None]  # (finished, to do, the latest row)


def job_problem(job: DescribeJob) -> str | None:
    """Why the job cannot start, in one sentence, or None."""
    if job.out.suffix.lower() not in OUTPUT_SUFFIXES:
        return f"--out takes a .csv or .jsonl file, not {job.out.name}."
    try:
        level_prompt(job.level)
    except ValueError as exc:
        return str(exc)
    if not job.paths:
        return "Name at least one image, folder or pattern to describe."
    if job.writes_files and job.level != "alt_text":
        return "Writing into the files takes the alt text: add --level alt_text."
    if job.context and job.level == "check_content":
        return "Check content judges the image alone: leave out --context."
    if job.in_place and job.out_dir is not None:
        return "Choose --out-dir (copies) or --in-place (the files themselves), not both."
    return None


def image_files(paths: tuple[str, ...], leave_out: tuple[Path, ...] = ()) -> list[Path]:
    """The files to describe, in a stable order: files as named, folders' files recursively
    (hidden ones left out), and glob patterns expanded, without the sidecars among them. A name
    that matches nothing is kept, so that its row can say so."""
    found: list[Path] = []
    for name in paths:
        path = Path(name)
        if path.is_dir():
            found += _without_sidecars(
                file
                for file in path.rglob("*")
                if file.is_file() and not file.name.startswith(".")
            )
        elif not path.exists() and glob.has_magic(name):
            found += _without_sidecars(Path(match) for match in glob.glob(name, recursive=True))
        else:
            found.append(path)
    skip = {file.resolve() for file in leave_out}
    unique = dict.fromkeys(file for file in found if file.resolve() not in skip)
    return list(unique)


def _without_sidecars(files: Iterable[Path]) -> list[Path]:
    """`files`, sorted, without the sidecars of others among them (photo.jpg.txt beside
    photo.jpg), so that the run after one that wrote them does not take them for images."""
    found = sorted(files)
    named = set(found)
    return [file for file in found if not (file.suffix == ".txt" and file.with_suffix("") in named)]


def to_describe(files: list[Path], rows: dict[str, ItemResult]) -> list[Path]:
    """The files an earlier run (its journal's `rows`) did not finish: new and failed ones."""
    return [file for file in files if str(file) not in rows or rows[str(file)].error]


def common_folder(files: list[Path]) -> Path | None:
    """The folder that holds all `files`, under which --out-dir keeps their structure."""
    return Path(os.path.commonpath([file.resolve().parent for file in files])) if files else None


def written_files(job: DescribeJob, root: Path | None, image: Path) -> tuple[Path, ...]:
    """The files the job writes for `image` once described: the image with its alt text (a
    copy in --out-dir, or the image itself with --in-place), then its sidecar."""
    written = []
    if job.in_place:
        written.append(image)
    elif job.out_dir is not None and root is not None:
        written.append(job.out_dir / image.resolve().relative_to(root))
    if job.sidecar:
        written.append(sidecar_path(written[0] if written else image))
    return tuple(written)


class Describer:
    """Describes one image at a level through the engine, and writes its alt text into the file
    when the job asks; cancels what runs when stopped."""

    def __init__(
        self,
        engine: Engine,
        limits: Limits,
        job: DescribeJob,
        root: Path | None,
        stop: threading.Event | None = None,
    ):
        self.engine, self.limits, self.job, self.root = engine, limits, job, root
        self.level, self.context = job.level, job.context
        self.stop = stop or threading.Event()
        self._running: set = set()
        self._lock = threading.Lock()

    def describe(self, path: Path) -> ItemResult:
        started = time.monotonic()
        row = ItemResult(str(path), self.level)
        if self.stop.is_set():
            raise Stopped
        try:
            image = load_image(path, self.limits)
        except MediaError as exc:
            return _with(row, error=str(exc), seconds=_seconds(started))
        stream = self.engine.submit(description_request(image, self.level, context=self.context))
        with self._lock:
            self._running.add(stream)
        if self.stop.is_set():  # stopped while this one was being submitted
            stream.cancel()
        reply = Reply()
        try:
            for event in stream:
                reply.take(event)
                if reply.error is not None:
                    return _with(row, error=reply.error, seconds=_seconds(started))
                if reply.cancelled:
                    raise Stopped
        finally:
            with self._lock:
                self._running.discard(stream)
        row = self._answered(row, reply.answer.strip(), _seconds(started))
        try:
            self._write_into_files(path, row)
        except MetadataError as exc:
            return _with(row, error=str(exc))
        return row

    def _write_into_files(self, path: Path, row: ItemResult) -> None:
        image = path
        if self.job.in_place or self.job.out_dir is not None:
            image = written_files(self.job, self.root, path)[0]
            image.parent.mkdir(parents=True, exist_ok=True)
            write_description(path, image, row.alt_text, row.long_description)
        if self.job.sidecar:
            write_sidecar(image, row.alt_text)

    def _answered(self, row: ItemResult, text: str, seconds: float) -> ItemResult:
        info = self.engine.status().info
        row = _with(row, text=text, model=info.name if info else "", seconds=seconds)
        read = ANSWER_COLUMNS.get(self.level)
        return _with(row, **read(text)) if read else row

    def cancel_all(self) -> None:
        self.stop.set()
        with self._lock:
            for stream in list(self._running):
                stream.cancel()


def run_job(
    job: DescribeJob,
    engine: Engine,
    limits: Limits,
    workers: int,
    progress: Progress | None = None,
    stop: threading.Event | None = None,
) -> Summary:
    """Describe the job's files, `workers` at a time (one decodes its image while another is
    with the model; a model server answers several at once). Raises Stopped on Ctrl+C or once
    `stop` is set (what runs is cancelled at once), after writing what was finished."""
    started = time.monotonic()
    job.out.parent.mkdir(parents=True, exist_ok=True)
    journal = Journal(job.out)
    if job.force:
        journal.start_over()
    rows = journal.load()
    files = image_files(job.paths, leave_out=(job.out, journal.path))
    todo = to_describe(files, rows)
    summary = Summary(skipped=len(files) - len(todo))
    describer = Describer(engine, limits, job, common_folder(files), stop)
    # Wakes when the job is stopped from outside, or when it ends (cancel_all sets the event).
    threading.Thread(
        target=lambda: describer.stop.wait() and describer.cancel_all(),
        name="loupe-describe-stop",
        daemon=True,
    ).start()

    def write_output() -> None:
        journal.write_output([rows[str(file)] for file in files if str(file) in rows])

    def finished(row: ItemResult) -> None:
        rows[row.path] = row
        journal.add(row)
        write_output()
        summary.done += not row.error
        summary.failed += bool(row.error)
        summary.not_verdicts += bool(row.verdict_problem)
        if progress is not None:
            progress(summary.done + summary.failed, len(todo), row)

    pool = ThreadPoolExecutor(max(1, workers), thread_name_prefix="loupe-describe")
    try:
        for row in _in_order_of_finishing(pool, describer.describe, todo):
            finished(row)
    except (KeyboardInterrupt, Stopped):
        raise Stopped from None
    finally:
        describer.cancel_all()  # nothing runs on after the job, however it ended
        pool.shutdown(wait=True, cancel_futures=True)
        write_output()
    summary.seconds = time.monotonic() - started
    return summary


def workers_for(remote: RemoteEngineConfig | None) -> int:
    """Images described at once: a model server's concurrency; in process two, so that one
    image is decoded and prepared while the model works on the other."""
    return remote.concurrency if remote else 2


def _in_order_of_finishing(
    pool: ThreadPoolExecutor, work: Callable[[Path], ItemResult], files: list[Path]
) -> Iterator[ItemResult]:
    for future in as_completed([pool.submit(work, file) for file in files]):
        yield future.result()


def _seconds(started: float) -> float:
    return round(time.monotonic() - started, 2)


def _with(row: ItemResult, **changes: object) -> ItemResult:
    return replace(row, **changes)
