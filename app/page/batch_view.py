"""The page's Batch view (/batch): many images, or a zip of them, described at one level with
progress and Stop; the results in an editable table beside the images; downloads as CSV, JSON
Lines, or a zip of the images with their alt text written into them.

Each start is a run in its own folder under the data folder (`batches/ID/`): the uploaded images
(a zip unpacked), and the run's output and journal, as `launch.py describe` keeps them. The page
holds its latest run: once the run ends, only the images its downloads need are kept; the folder
goes when the page closes or starts another run (see intake/archive.py for what is sent).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import gradio as gr

from model import Engine, RemoteEngineConfig

from ..config import Limits
from ..intake.archive import BatchProblem, remove_old_runs
from ..tasks.batch_progress import progress_sentence
from ..tasks.batch_rows import ItemResult, Journal
from ..tasks.batch_runs import (
    Run,
    batches_folder,
    discard,
    new_run,
    remove_images_no_download_needs,
    wait_for_rows,
    work,
    zip_of_copies,
)
from ..tasks.describe import LEVELS
from .errors import refused
from .owners import user_of

log = logging.getLogger("loupe.app")

BATCH_PATH = "batch"
DEFAULT_BATCH_LEVEL = "alt_text"
# The result columns shown for a level, between the file and its problem; the others are in the
# downloads.
LEVEL_COLUMNS = {
    "alt_text": ("kind", "alt_text", "long_description"),
    "check_content": ("flagged", "flagged_categories", "rationale", "verdict_problem"),
}
OTHER_LEVELS_COLUMNS = ("text",)
EDITABLE = {"kind", "alt_text", "long_description", "text"}  # the model's words, not verdicts
HEADERS = {  # each column's header and width
    "path": ("File", 18),
    "kind": ("Kind", 12),
    "alt_text": ("Alt text", 30),
    "long_description": ("Long description", 28),
    "text": ("Description", 58),
    "flagged": ("Flagged", 10),
    "flagged_categories": ("Categories", 16),
    "rationale": ("Why", 28),
    "verdict_problem": ("No verdict because", 16),
    "error": ("Problem", 12),
}


def _page(request: gr.Request) -> tuple[str, str]:
    """A page's key to its run: the logged-in user and the page's session, so that a session
    hash sent by another user's page names nothing of theirs."""
    return user_of(request), request.session_hash


def columns(level: str) -> tuple[str, ...]:
    return ("path", *LEVEL_COLUMNS.get(level, OTHER_LEVELS_COLUMNS), "error")


class Batches:
    """The Batch view's handlers: one run at a time for each open page."""

    def __init__(
        self, engine: Engine, limits: Limits, remote: RemoteEngineConfig | None, data_dir: Path
    ):
        self.engine, self.limits, self.remote = engine, limits, remote
        self.folder = batches_folder(data_dir)
        self._runs: dict[tuple[str, str], Run] = {}  # a page (see _page) -> its latest run
        remove_old_runs(self.folder, ())

    def start(
        self, uploads: list[str] | None, level: str, context: str, request: gr.Request
    ) -> Iterator[tuple]:
        """Start: goes on with the page's stopped run when nothing asked of it changed, or
        starts a new one. Streams (progress, images, table, start, start over, stop)."""
        yield from self._start(uploads, level, context, request, over=False)

    def start_over(
        self, uploads: list[str] | None, level: str, context: str, request: gr.Request
    ) -> Iterator[tuple]:
        """Start over: a new run of every image, what the stopped one did left behind."""
        yield from self._start(uploads, level, context, request, over=True)

    def _start(
        self, uploads: list[str] | None, level: str, context: str, request: gr.Request, over: bool
    ) -> Iterator[tuple]:
        previous = self._runs.get(_page(request))
        if previous is not None and previous.worker is not None and previous.worker.is_alive():
            yield _said("A batch is already running on this page; stop it first.")
            return
        asked = (tuple(uploads or ()), level, context.strip())
        if previous is not None and not over and previous.goes_on_with(asked):
            run = previous
            run.go_on()
        else:
            try:
                run = new_run(
                    self.folder, uploads or [], level, context.strip(), self.limits, self._held()
                )
            except BatchProblem as exc:
                yield _said(str(exc))
                return
            self._runs[_page(request)] = run
            if previous is not None:
                discard(previous)  # its results left the page with this run
        job = (run, self.engine, self.limits, self.remote)
        worker = threading.Thread(target=work, args=job, name="loupe-batch", daemon=True)
        run.worker = worker
        started, before = time.monotonic(), len(run.rows)
        worker.start()
        left = len(run.files) - before
        yield (
            f"Describing {left} images…" if not before else f"Describing the {left} images left…",
            _gallery(run),
            _table(run),
            gr.update(interactive=False),
            gr.update(visible=False),
            gr.update(interactive=True),
        )
        try:
            while worker.is_alive() or not run.updates.empty():
                if not wait_for_rows(run):
                    continue
                yield (
                    progress_sentence(len(run.rows) - before, left, time.monotonic() - started),
                    gr.skip(),
                    _table(run),
                    gr.skip(),
                    gr.skip(),
                    gr.skip(),
                )
        finally:
            run.stop.set()  # the page went away: the run ends with it, what is done is kept
        yield (
            run.outcome,
            _gallery(run),
            _table(run),
            gr.update(interactive=True),
            gr.update(visible=run.stopped),
            gr.update(interactive=False),
        )
        remove_images_no_download_needs(run)  # the gallery above shows Gradio's own copies

    def _held(self) -> list[Path]:
        """The folders of the runs pages still show."""
        return [run.folder for run in list(self._runs.values())]

    def stop(self, request: gr.Request) -> None:
        run = self._runs.get(_page(request))
        if run is not None:
            run.stop.set()

    def close(self, request: gr.Request) -> None:
        """The page closed or reloaded: its run ends, and its folder goes with its results."""
        run = self._runs.pop(_page(request), None)
        if run is not None:
            discard(run)

    def downloader(self, kind: str) -> Callable[[list[list], gr.Request], list[str]]:
        """The handler of a Download button: "csv", "jsonl" or "zip"."""

        def download(table: list[list], request: gr.Request) -> list[str]:
            return self.download(kind, table, request)

        return download

    def download(self, kind: str, table: list[list], request: gr.Request) -> list[str]:
        """The results as the table shows them, edits included."""
        run = self._runs.get(_page(request))
        if run is None or not run.rows:
            raise refused("Describe some images first; then their results can be downloaded.")
        rows = _edited(run, table)
        if kind == "zip":
            try:
                return [str(zip_of_copies(run, rows))]
            except BatchProblem as exc:
                raise refused(exc) from None
        out = run.folder / f"results.{kind}"
        # Each file named as it was uploaded (animals/x.jpg), as the table names it.
        Journal(out).write_output([replace(row, path=run.name(row.path)) for row in rows])
        return [str(out)]


def _table(run: Run) -> gr.Dataframe:
    shown = columns(run.job.level)
    data = [
        [run.name(row.path) if name == "path" else getattr(row, name) for name in shown]
        for row in run.finished()
    ]
    return gr.Dataframe(
        {"headers": [HEADERS[name][0] for name in shown], "data": data},
        column_widths=[f"{HEADERS[name][1]}%" for name in shown],
        static_columns=[n for n, name in enumerate(shown) if name not in EDITABLE],
    )


def _gallery(run: Run) -> list[tuple[str, str]]:
    """Each image with its file name (and its alt text once written), as its caption."""
    captions = {path: row.alt_text or row.error for path, row in run.rows.items()}
    return [
        (str(file), " · ".join(filter(None, (run.name(file), captions.get(str(file))))))
        for file in run.files
    ]


def _edited(run: Run, table: list[list]) -> list[ItemResult]:
    """The finished rows with the table's edits taken in (matched by file name)."""
    shown = columns(run.job.level)
    edits = {
        str(line[0]): {
            name: _cell(value) for name, value in zip(shown, line, strict=False) if name in EDITABLE
        }
        for line in table or []
        if line
    }
    rows = []
    for row in run.finished():
        rows.append(replace(row, **edits.get(run.name(row.path), {})))
    return rows


def _cell(value: object) -> str:
    return "" if value is None else str(value)


def _said(sentence: str) -> tuple:
    return sentence, gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()


def render_batch_view(batches: Batches) -> None:
    """The view's components and events, inside the page's route for it."""
    gr.HTML(
        '<a href="./" id="chat-link">Back to the chat</a>'
        '<h1 id="batch-title">Describe many images</h1>',
        padding=False,
    )
    gr.Markdown(
        "Describe many images at once: alt text, descriptions or the text in them. Add images "
        "or a zip of them, choose what to write, and start. Nothing leaves this machine.",
        elem_id="batch-intro",
    )
    uploads = gr.File(
        label="Images, or a zip of them",
        file_count="multiple",
        file_types=["image", ".zip"],
        elem_id="batch-files",
    )
    with gr.Row(equal_height=True):
        level = gr.Radio(
            [(spec.label, name) for name, spec in LEVELS.items()],
            value=DEFAULT_BATCH_LEVEL,
            label="What to write for each image",
            elem_id="batch-level",
        )
        context = gr.Textbox(
            label="What the images are for (optional)",
            placeholder="e.g. product page of an outdoor shop",
            max_lines=1,
            elem_id="batch-context",
        )
    with gr.Row():
        start = gr.Button("Start", variant="primary", elem_id="batch-start")
        # Shown once a run is stopped: Start goes on with the rest, this describes all again.
        start_over = gr.Button("Start over", visible=False, elem_id="batch-start-over")
        stop = gr.Button("Stop", variant="stop", interactive=False, elem_id="batch-stop")
    progress = gr.Markdown("", elem_id="batch-progress")
    images = gr.Gallery(
        label="Images",
        columns=8,
        height=300,
        object_fit="contain",
        allow_preview=True,
        elem_id="batch-images",
    )
    table = gr.Dataframe(
        label="Results (select a cell to correct it; downloads take your corrections)",
        interactive=True,
        wrap=True,
        type="array",
        max_chars=160,  # a long cell shows whole once selected; alt text fits
        elem_id="batch-results",
    )
    with gr.Row():
        as_csv = gr.Button("Download CSV", size="sm", elem_id="batch-csv")
        as_jsonl = gr.Button("Download JSON Lines", size="sm", elem_id="batch-jsonl")
        as_zip = gr.Button(
            "Download the images with their alt text (zip)", size="sm", elem_id="batch-zip"
        )
    downloads = gr.File(
        label="Downloads", file_count="multiple", interactive=False, elem_id="batch-downloads"
    )

    for button, handler in ((start, batches.start), (start_over, batches.start_over)):
        button.click(
            handler,
            [uploads, level, context],
            [progress, images, table, start, start_over, stop],
            api_visibility="private",
            show_progress="hidden",  # the progress line says it, in words
        )
    stop.click(batches.stop, None, None, api_visibility="private", queue=False)
    for button, kind in ((as_csv, "csv"), (as_jsonl, "jsonl"), (as_zip, "zip")):
        button.click(batches.downloader(kind), table, downloads, api_visibility="private")
