"""PDFs: each page the model reads rendered as an image, labelled with its page number.

A PDF is told by its content (`%PDF-` near the start), as images and audio are. It is opened
with pypdfium2 (PDFium, Chromium's PDF engine, as a self-contained wheel: no system package,
and it renders what browsers render). Encrypted, damaged and page-less PDFs are refused in one
sentence. At most `Limits.max_pdf_pages` pages of a message are read: the first ones, or those
the person names in the message ("pages 3-5", "page 2", "pages 1, 4 and 7", "p. 3").

PDFium never runs in the app: pages are counted and drawn by app/pdf_render.py, in a process
with a ceiling on its memory and on each page's CPU time, so a decompression bomb (a page whose
few kilobytes unpack into gigabytes of drawing) is refused in one sentence naming the page, and
the app's memory does not move. The process is kept between PDFs (starting one costs about
0.1 s), replaced after a PDF it could not finish, and stopped after a minute without work.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from PIL import Image

from model import MAX_IMAGE_PIXELS

from .cache import DecodedFiles
from .pdf_pages import PdfError, PdfPages
from .pdf_render import MEMORY_EXIT
from .probe import unreadable

HEADER = b"%PDF-"
HEADER_WINDOW_BYTES = 1024
LEADING_SPACE = b"\x00\t\n\x0c\r \xef\xbb\xbf"  # white space, and a UTF-8 byte order mark
# Pages are rendered at the size the largest image budget can use (an A4 page at 165 dpi); the
# processor scales them down to the budget a request uses, so rendering more would only cost time.
PAGE_PIXELS = MAX_IMAGE_PIXELS
# A page far longer than it is wide (a receipt roll) still gets a bitmap PDFium can allocate.
MAX_SIDE_PX = 8192
# Rendered pages of the last few documents, keyed by file and pages: every turn of a
# conversation shows the model its earlier PDFs again. Page counts are kept for more files:
# each turn asks for them several times, each a round trip to the render process.
CACHED_DOCUMENTS = 2
CACHED_COUNTS = 64
# The render process's ceilings. An ordinary page takes tens of megabytes and a fraction of a
# second (an A4 scan at 600 dpi: 90 MB, 1 s), a bomb gigabytes and minutes.
RENDER_MEMORY_MB = 512
PAGE_CPU_S = 10  # opening the PDF, then each page
# The wall-clock time a render may take, per page (and for opening), when it gets no CPU:
# past it the process is stopped, as for the CPU limit.
PAGE_WALL_S = 3 * PAGE_CPU_S
IDLE_S = 60.0  # the render process is stopped after this long without work
RENDER_SCRIPT = Path(__file__).with_name("pdf_render.py")
HEADER_LINE_BYTES = 200
EXIT_WAIT_S = 5.0  # for a process that has stopped writing, or was asked to end, to exit
# How the process ends past its memory ceiling: PDFium aborts (SIGABRT); glibc exits with 127
# when it cannot allocate a thread's data for PDFium; Python exits with MEMORY_EXIT.
GLIBC_FATAL_EXIT = 127
OPEN_PROBLEMS = {
    "password": "is protected by a password, so Loupe cannot open it",
    "security": "uses a kind of encryption Loupe cannot open",
    "file": "could not be read",
    "damaged": "is damaged or not a PDF Loupe can read",
    "no-pages": "has no pages",
}

# Refusals are kept too (their sentence), so that a bomb in a conversation is not drawn again
# at every turn.
_counts: DecodedFiles[int | str] = DecodedFiles(CACHED_COUNTS)
_rendered: DecodedFiles[tuple[Image.Image, ...] | str] = DecodedFiles(CACHED_DOCUMENTS)
_texts: DecodedFiles[tuple[tuple[int, str], ...] | str] = DecodedFiles(CACHED_DOCUMENTS)



def is_pdf(path: str | Path) -> bool:
    """Whether the file starts like a PDF (its content, not its name; see `starts_like_pdf`)."""
    try:
        with open(path, "rb") as file:
            head = file.read(HEADER_WINDOW_BYTES)
    except OSError:
        return False
    return starts_like_pdf(head)


def starts_like_pdf(data: bytes) -> bool:
    """Whether `data` starts like a PDF: `%PDF-`, after at most some white space. (PDFium would
    look further, but then an MP3 whose tag quotes a PDF header would count as one.)"""
    return data[:HEADER_WINDOW_BYTES].lstrip(LEADING_SPACE).startswith(HEADER)


def page_count(path: str | Path) -> int:
    """How many pages the PDF has; PdfError if it is encrypted, damaged, has none, or is too
    large to open."""
    path = Path(path)
    return _cached(_counts, path, path.name, "pages", lambda: _drawn(path, path.name, ())[0])




def render_pages(path: str | Path, pages: PdfPages) -> tuple[Image.Image, ...]:
    """The chosen pages as RGB images of about PAGE_PIXELS each, in order; PdfError if a page
    cannot be rendered."""
    path = Path(path)
    return _cached(
        _rendered,
        path,
        pages.name,
        pages.numbers,
        lambda: _drawn(path, pages.name, pages.numbers)[1],
    )



def page_texts(
    path: str | Path, numbers: tuple[int, ...], budget: int
) -> tuple[tuple[int, str], ...]:
    """The text layers of pages `numbers` (page, text), in order, as long as they fit whole in
    `budget` characters together; pages without text (a scan) are left out. Text is a help
    beside the page images, so a PDF whose text PDFium cannot read (or not within the render
    process's limits) gives what was read before."""
    path = Path(path)
    if not numbers or budget <= 0:
        return ()
    return _cached(_texts, path, path.name, (numbers, budget), lambda: _read(path, numbers, budget))


def _cached(cache: DecodedFiles, path: Path, name: str, how: Hashable, work: Callable) -> Any:
    """What `work` gives for the file, through `cache`: its PdfError's sentence kept as well."""

    def attempt() -> Any:
        try:
            return work()
        except PdfError as exc:
            return str(exc)

    try:
        result = cache.get(path, how, attempt)
    except OSError as exc:
        raise PdfError(unreadable(name, exc)) from exc
    if isinstance(result, str):
        raise PdfError(result)
    return result


def _drawn(path: Path, name: str, numbers: tuple[int, ...]) -> tuple[int, tuple[Image.Image, ...]]:
    """How many pages the PDF has, and pages `numbers` drawn (RGB images of about PAGE_PIXELS,
    in order), from a render process (see app/pdf_render.py); PdfError in one sentence when
    the PDF or a page cannot be used, or would take more than the process may."""
    job = {
        "path": str(path.absolute()),
        "pages": list(numbers),
        "page_cpu_s": PAGE_CPU_S,
        "page_pixels": PAGE_PIXELS,
        "max_side_px": MAX_SIDE_PX,
    }
    with _renderer.job(job, PAGE_WALL_S * (len(numbers) + 1)) as process:
        header = process.line()
        if not header.startswith("pages "):
            raise PdfError(_refusal(name, header, None, process.failure(header)))
        count = int(header.split()[1])
        images = []
        for number in numbers:
            header = process.line()
            fields = header.split()
            if fields[:2] != ["page", str(number)] or len(fields) != 5:
                raise PdfError(_refusal(name, header, number, process.failure(header)))
            width, height, stride = map(int, fields[2:])
            # Rows of 3-byte pixels, each padded to a multiple of 4 bytes.
            if not (0 < width * height <= 2 * PAGE_PIXELS and 3 * width <= stride < 3 * width + 4):
                raise PdfError(f"Page {number} of {name} could not be rendered.")
            data = process.read(stride * height)
            if len(data) < stride * height:
                raise PdfError(_refusal(name, "", number, process.failure("")))
            images.append(Image.frombytes("RGB", (width, height), data, "raw", "RGB", stride))
        process.done()
        return count, tuple(images)


def _read(path: Path, numbers: tuple[int, ...], budget: int) -> tuple[tuple[int, str], ...]:
    """Pages' text layers from the render process (see `page_texts`)."""
    job = {"path": str(path.absolute()), "texts": list(numbers), "text_chars": budget}
    job["page_cpu_s"] = PAGE_CPU_S
    texts: list[tuple[int, str]] = []
    left = budget
    with _renderer.job(job, PAGE_WALL_S * (len(numbers) + 1)) as process:
        header = process.line()
        if not header.startswith("pages "):
            process.failure(header)
            return ()
        while (header := process.line()).startswith("text "):
            fields = header.split()
            if len(fields) != 3 or not fields[2].isdigit() or int(fields[2]) > 4 * (budget + 1):
                return tuple(texts)  # not what the process writes: it is replaced
            text = process.read(int(fields[2])).decode("utf-8", "replace")
            left -= len(text)
            if text and left >= 0:  # the page past the budget is the last one written
                texts.append((int(fields[1]), text))
        if header.strip() == "end":
            process.done()
    return tuple(texts)


def _refusal(name: str, header: str, number: int | None, failure: str) -> str:
    """The sentence for a render that did not give what was asked: the process's own reason
    (`header`, "refused ..."), or how it ended (`failure`) while opening the PDF (`number`
    None) or drawing page `number`."""
    reason = header.split()[1] if header.startswith("refused ") else ""
    if reason in OPEN_PROBLEMS:
        return f"{name} {OPEN_PROBLEMS[reason]}."
    what = f"Page {number} of {name}" if number is not None else name
    verb = "render" if number is not None else "open"
    if failure == "memory":
        return (
            f"{what} is too large to {verb}: it would take more than {RENDER_MEMORY_MB} MB "
            "of memory."
        )
    if failure == "time":
        return f"{what} takes too long to {verb}: more than {PAGE_CPU_S} s."
    if number is None:
        return f"{name} {OPEN_PROBLEMS['damaged']}."
    return f"Page {number} of {name} could not be rendered."


class _Job:
    """One job of the render process: what it writes, and how it ended if it did not finish.
    Past `wall_s` seconds the process is killed."""

    def __init__(self, process: subprocess.Popen, job: dict, wall_s: float):
        self._process = process
        self.finished = False
        self._timed_out = threading.Event()
        self._timer = threading.Timer(wall_s, self._stop)
        self._timer.daemon = True
        self._timer.start()
        try:
            process.stdin.write(json.dumps(job).encode() + b"\n")
            process.stdin.flush()
        except OSError:  # it has ended: line() finds nothing, failure() says how it ended
            pass

    def line(self) -> str:
        """The next line it wrote ("" once it has ended)."""
        return self._process.stdout.readline(HEADER_LINE_BYTES).decode("ascii", "replace")

    def read(self, size: int) -> bytes:
        """The next `size` bytes it wrote (fewer once it has ended)."""
        return self._process.stdout.read(size)

    def done(self) -> None:
        """The job went as the process meant it to: it can take the next."""
        self.finished = True
        self._timer.cancel()

    def failure(self, header: str) -> str:
        """How the job ended, given the last line read: "refused" (the process said why, and
        can take the next job), "time" (past its CPU or wall-clock limit), "memory" (past its
        memory limit) or "crash"."""
        if header.startswith("refused "):
            self.done()
            return "refused"
        self._timer.cancel()
        try:
            status = self._process.wait(EXIT_WAIT_S)  # it has stopped writing: ending
        except subprocess.TimeoutExpired:  # it writes what makes no sense
            self._process.kill()
            return "crash"
        if self._timed_out.is_set() or status == -signal.SIGXCPU:
            return "time"
        if status in (-signal.SIGABRT, GLIBC_FATAL_EXIT, MEMORY_EXIT):
            return "memory"
        return "crash"

    def _stop(self) -> None:
        self._timed_out.set()
        self._process.kill()


class _Renderer:
    """The render process (app/pdf_render.py), one job at a time: started for the first, kept
    while it finishes its jobs, replaced after one it did not (a bomb ends it), and stopped
    after IDLE_S without work, so that its memory goes back. One at a time, PDF rendering
    together never takes more than RENDER_MEMORY_MB."""

    def __init__(self):
        self._lock = threading.Lock()
        self._process: subprocess.Popen | None = None
        self._idle: threading.Timer | None = None

    @contextmanager
    def job(self, job: dict, wall_s: float) -> Iterator[_Job]:
        """`job` sent to the process (see app/pdf_render.py), to be read within `wall_s`."""
        with self._lock:
            if self._idle is not None:
                self._idle.cancel()
            if self._process is None or self._process.poll() is not None:
                self._process = subprocess.Popen(
                    [sys.executable, "-I", str(RENDER_SCRIPT), str(RENDER_MEMORY_MB)],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL,  # PDFium's and Python's last words on a bomb
                )
            current = _Job(self._process, job, wall_s)
            try:
                yield current
            finally:
                if current.finished:
                    self._idle = threading.Timer(IDLE_S, self._stop_idle)
                    self._idle.daemon = True
                    self._idle.start()
                else:  # ended, or in the middle of something: it cannot take another job
                    self._stop(kill=True)

    def _stop_idle(self) -> None:
        with self._lock:
            self._stop(kill=False)

    def _stop(self, kill: bool) -> None:
        """End the process (under the lock): killed, or asked to end by closing its input."""
        process, self._process = self._process, None
        if process is None:
            return
        if kill:
            process.kill()
        with suppress(OSError):  # what a killed process did not read
            process.stdin.close()
        try:
            process.wait(EXIT_WAIT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        process.stdout.close()


_renderer = _Renderer()
