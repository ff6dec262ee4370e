"""PDFs: each page the model reads rendered as an image, labelled with its page number.

A PDF is told by its content (`%PDF-` near the start), as images and audio are. It is opened
with pypdfium2 (PDFium, Chromium's PDF engine, as a self-contained wheel: no system package,
and it renders what browsers render). Encrypted, damaged and page-less PDFs are refused in one
sentence. At most `Limits.max_pdf_pages` pages of a message are read: the first ones, or those
the person names in the message ("pages 3-5", "page 2", "pages 1, 4 and 7", "p. 3").

Which pages were read is kept as the attachment's caption ("Pages 1-10 of 30"), shown under the
file in the chat and in exports, and read back with the same parser when the conversation is
sent to the model again, so a reopened conversation shows the model the same pages.

PDFium never runs in the app: pages are counted and drawn by app/pdf_render.py, in a process
with a ceiling on its memory and on each page's CPU time, so a decompression bomb (a page whose
few kilobytes unpack into gigabytes of drawing) is refused in one sentence naming the page, and
the app's memory does not move. The process is kept between PDFs (starting one costs about
0.1 s), replaced after a PDF it could not finish, and stopped after a minute without work.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from model import MAX_IMAGE_PIXELS

from .config import Limits
from .decoded_files import DecodedFiles
from .media import MediaError
from .pdf_render import MEMORY_EXIT

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

_RANGE = r"\d{1,9}(?:\s*(?:-|–|—|to|through)\s*\d{1,9})?"
_PAGE_LIST = re.compile(
    r"\b(?:pages?|pp?\.)\s*("
    + _RANGE
    + r"(?:\s*(?:,\s*(?:and\s+|&\s*)?|and\s+|&\s*)"
    + _RANGE
    + r")*)",
    re.IGNORECASE,
)
_NUMBERS = re.compile(r"\d+")
_OF_TOTAL = re.compile(r"\bof (\d+)\b")
NONE_READ = "No pages"


class PdfError(MediaError):
    """A PDF that cannot be used, or pages it does not have; one sentence for the person."""


@dataclass(frozen=True)
class PdfPages:
    """The pages of a PDF the model reads: their numbers (from 1) and how many the PDF has."""

    name: str
    page_count: int
    numbers: tuple[int, ...]

    @property
    def left_out(self) -> int:
        return self.page_count - len(self.numbers)

    @property
    def caption(self) -> str:
        """How the chat and exports say which pages were read ("Pages 1-10 of 30")."""
        if not self.numbers:
            return f"{NONE_READ} of {self.page_count} read: the message's page limit was used up"
        word = "Page" if len(self.numbers) == 1 else "Pages"
        return f"{word} {page_list(self.numbers)} of {self.page_count}"


def is_pdf(path: str | Path) -> bool:
    """Whether the file starts like a PDF (its content, not its name): `%PDF-`, after at most
    some white space. (PDFium would look further, but then an MP3 whose tag quotes a PDF
    header would count as one.)"""
    try:
        with open(path, "rb") as file:
            head = file.read(HEADER_WINDOW_BYTES)
    except OSError:
        return False
    return head.lstrip(LEADING_SPACE).startswith(HEADER)


def page_count(path: str | Path) -> int:
    """How many pages the PDF has; PdfError if it is encrypted, damaged, has none, or is too
    large to open."""
    path = Path(path)
    return _cached(_counts, path, path.name, "pages", lambda: _drawn(path, path.name, ())[0])


def requested_pages(text: str) -> list[tuple[int, int]] | None:
    """The page ranges a message names ("pages 3-5" -> [(3, 5)], "page 2 and p. 7" ->
    [(2, 2), (7, 7)]), each (first, last); None when it names none."""
    ranges = []
    for found in _PAGE_LIST.finditer(text or ""):
        for item in re.split(r"\s*(?:,|\band\b|&)\s*", found[1]):
            numbers = [int(number) for number in _NUMBERS.findall(item)]
            if numbers:
                ranges.append((min(numbers), max(numbers)))
    return ranges or None


def choose_pages(
    name: str, count: int, requested: list[tuple[int, int]] | None, budget: int
) -> PdfPages:
    """The pages to read: those requested (PdfError for one the PDF does not have), else all,
    the first `budget` of them."""
    if requested is None:
        return PdfPages(name, count, tuple(range(1, min(count, budget) + 1)))
    for first, last in requested:
        if first < 1 or last > count:
            missing = first if first < 1 else last
            pages = "one page" if count == 1 else f"{count} pages"
            raise PdfError(f"{name} has {pages}, so it has no page {missing}.")
    numbers = sorted({page for first, last in requested for page in range(first, last + 1)})
    return PdfPages(name, count, tuple(numbers[: max(budget, 0)]))


def stored_pages(name: str, caption: str, count: int, limits: Limits) -> PdfPages:
    """The pages a kept attachment's caption says were read (see PdfPages.caption); without
    one, the first pages up to the limit."""
    if caption.startswith(NONE_READ):
        return PdfPages(name, count, ())
    head = caption.split(" of ", 1)[0]
    return choose_pages(name, count, requested_pages(head), limits.max_pdf_pages)


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


def page_list(numbers: tuple[int, ...] | list[int]) -> str:
    """Page numbers as people write them: "1-3, 7 and 9"."""
    runs: list[list[int]] = []
    for number in numbers:
        if runs and number == runs[-1][1] + 1:
            runs[-1][1] = number
        else:
            runs.append([number, number])
    parts = [f"{first}" if first == last else f"{first}-{last}" for first, last in runs]
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def page_labels(pages: PdfPages, first_image: int) -> str:
    """What the model reads before a PDF's images (which come first in the message, in order):
    which image is which page, one line each ("Image 2: page 3 of 30.")."""
    count = f"{pages.page_count} page{'s' if pages.page_count != 1 else ''}"
    if not pages.numbers:
        return f"{pages.name} is a PDF of {count}; none of its pages are shown."
    last = first_image + len(pages.numbers) - 1
    images = (
        f"image {first_image} is one of its pages"
        if last == first_image
        else f"images {first_image} to {last} are its pages"
    )
    lines = [f"{pages.name} is a PDF of {count}; {images}, as follows."]
    lines += [
        f"Image {first_image + offset}: page {number} of {pages.page_count}."
        for offset, number in enumerate(pages.numbers)
    ]
    return "\n".join(lines)


def left_out_note(pages: list[PdfPages], limits: Limits, text: str) -> str:
    """The reply's note when pages of a message's PDFs were not read ("" when all were), e.g.
    "report.pdf: pages 1-10 of 30 were read. Loupe reads at most 10 pages ...": when the limit
    cut pages the message (its `text`) named, or, naming none, pages of the whole PDF."""
    requested = requested_pages(text)
    notes, cut = [], False
    for document in pages:
        if not document.left_out:
            continue
        wanted = document.page_count
        if requested is not None:
            wanted = len({
                page
                for first, last in requested
                for page in range(max(first, 1), min(last, document.page_count) + 1)
            })  # fmt: skip
        cut = cut or len(document.numbers) < wanted
        if not document.numbers:
            notes.append(f"{document.name}: none of its pages were read")
            continue
        one = len(document.numbers) == 1
        read = f"{'page' if one else 'pages'} {page_list(document.numbers)}"
        notes.append(
            f"{document.name}: {read} of {document.page_count} {'was' if one else 'were'} read"
        )
    if not cut:  # every page asked for was read; the chat shows which under the file
        return ""
    return (
        f"{'; '.join(notes)}. Loupe reads at most {limits.max_pdf_pages} pages of a message: "
        'name the pages you want, as in "pages 11-20".'
    )


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
        raise PdfError(f"{name} could not be read.") from exc
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
