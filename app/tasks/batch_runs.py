"""A Batch view run, apart from the page: its folder (`batches/ID/`: the uploaded images, a zip
unpacked, and the run's output and journal, as `launch.py describe` keeps them), its job on a
thread, the rows it has finished, and the zip of images with their alt text."""

from __future__ import annotations

import logging
import queue
import shutil
import threading
import time
import uuid
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from model import Engine, RemoteEngineConfig

from ..config import Limits
from ..intake.archive import BatchProblem, remove_old_runs, unpack
from .batch import DescribeJob, Stopped, image_files, run_job, workers_for
from .batch_rows import ItemResult
from .describe import LEVELS
from .metadata import MetadataError, write_description

log = logging.getLogger("loupe.app")

UPDATE_EVERY_S = 0.5  # the page is updated at most this often while a run goes on
STOP_WAIT_S = 30.0  # a stopped run ends once its replies in flight are cancelled: seconds
ZIP_NAME = "images-with-alt-text.zip"


@dataclass
class Run:
    """One run of the Batch view: its folder, its job, and the rows finished so far."""

    folder: Path
    job: DescribeJob
    files: list[Path]
    stop: threading.Event = field(default_factory=threading.Event)
    rows: dict[str, ItemResult] = field(default_factory=dict)
    updates: queue.Queue = field(default_factory=queue.Queue)
    outcome: str = ""  # the sentence the run ended with
    stopped: bool = False  # ended by Stop, with images left to describe
    asked: tuple = ()  # what it was started with: (uploads, level, context)
    worker: threading.Thread | None = None

    @property
    def images(self) -> Path:
        return self.folder / "images"

    def name(self, path: str | Path) -> str:
        """A file's name as the table shows it: its path inside the uploaded set."""
        return Path(path).relative_to(self.images).as_posix()

    def finished(self) -> list[ItemResult]:
        return [self.rows[str(file)] for file in self.files if str(file) in self.rows]

    def goes_on_with(self, asked: tuple) -> bool:
        """Whether Start with `asked` continues this run: it was stopped, and nothing asked of
        it changed. Its journal then skips the images already done, as `describe` does."""
        return self.stopped and self.asked == asked

    def go_on(self) -> None:
        """Ready the stopped run to start again."""
        self.stop, self.outcome, self.stopped = threading.Event(), "", False


def batches_folder(data_dir: Path) -> Path:
    """Where the Batch view keeps its runs (the page may show the images in it)."""
    return data_dir / "batches"


def new_run(
    folder: Path, uploads: list[str], level: str, context: str, limits: Limits, held: list[Path]
) -> Run:
    """A run of `uploads` (images, zips of them) at `level`, unpacked into a new folder under
    `folder`; BatchProblem says in one sentence what is wrong. `held`: the folders of runs
    still shown, which the clean-up of old runs leaves."""
    if level not in LEVELS:
        raise BatchProblem(f"The level must be one of {', '.join(LEVELS)}.")
    if not uploads:
        raise BatchProblem("Add images, or a zip of them, first.")
    if context and level == "check_content":
        raise BatchProblem(
            "Check content judges each image alone: empty “What the images are for” first."
        )
    remove_old_runs(folder, held)
    # Unguessable: the page shows the run's images by their path, which any login could ask
    # for (Gradio serves the batches folder); the user's own page alone is told it.
    folder = folder / f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex}"
    images = folder / "images"
    try:
        unpack(map(Path, uploads), images, limits)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    files = image_files((str(images),))
    job = DescribeJob((str(images),), level, folder / "results.jsonl", context)
    return Run(folder, job, files, asked=(tuple(uploads), level, context))


def discard(run: Run) -> None:
    """End the run (within STOP_WAIT_S) and remove its folder."""
    run.stop.set()
    if run.worker is not None:
        run.worker.join(STOP_WAIT_S)
    shutil.rmtree(run.folder, ignore_errors=True)


def work(run: Run, engine: Engine, limits: Limits, remote: RemoteEngineConfig | None) -> None:
    """Run the job, taking each finished row into `run` and its updates; the outcome said in
    one sentence at the end."""
    def finished(_done: int, _total: int, row: ItemResult) -> None:
        run.rows[row.path] = row
        run.updates.put(row)

    workers = workers_for(remote)
    try:
        summary = run_job(run.job, engine, limits, workers, finished, run.stop)
        run.outcome = f"Done: {summary.sentence()}"
    except Stopped:
        run.stopped = True
        run.outcome = (
            f"Stopped: {len(run.rows)} of {len(run.files)} images done; "
            "Start goes on with the rest."
        )
    except Exception:  # a fault, not a refusal: logged whole, said in one sentence
        log.exception("The batch in %s failed", run.folder)
        run.outcome = "The batch stopped on an unexpected problem; see Loupe's console."
    finally:
        run.updates.put(None)


def zip_of_copies(run: Run, rows: list[ItemResult]) -> Path:
    """A zip of the described images, each with its alt text (as `rows` say, edits included)
    written into it; BatchProblem when there are none."""
    if run.job.level != "alt_text":
        raise BatchProblem("Images with their alt text written into them need the Alt text level.")
    copies = run.folder / "copies"
    shutil.rmtree(copies, ignore_errors=True)
    written = 0
    for row in rows:
        if row.error:
            continue
        target = copies / run.name(row.path)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            write_description(Path(row.path), target, row.alt_text, row.long_description)
            written += 1
        except MetadataError as exc:
            log.info("Left out of the zip: %s", exc)
    if not written:
        raise BatchProblem("None of these images could take alt text in its file.")
    archive = run.folder / ZIP_NAME
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as bundle:  # images: compressed
        for copy in sorted(copies.rglob("*")):
            if copy.is_file():
                bundle.write(copy, copy.relative_to(copies).as_posix())
    return archive


def remove_images_no_download_needs(run: Run) -> None:
    """Once a run has ended (not stopped: Start goes on with its images), only the zip of
    images with their alt text needs images: those described, at that level."""
    if run.stopped:
        return
    kept = {path for path, row in run.rows.items() if not row.error}
    if run.job.level != "alt_text" or not kept:
        shutil.rmtree(run.images, ignore_errors=True)
        return
    for file in run.files:
        if str(file) not in kept:
            file.unlink(missing_ok=True)


def wait_for_rows(run: Run) -> bool:
    """Wait up to UPDATE_EVERY_S for finished rows; whether any came."""
    try:
        run.updates.get(timeout=UPDATE_EVERY_S)
    except queue.Empty:
        return False
    while not run.updates.empty():
        run.updates.get_nowait()
    return True
