"""Which pages of a PDF the model reads: those a message names ("pages 3-5", "page 2", "pages 1,
4 and 7", "p. 3"), else the first, at most `Limits.max_pdf_pages` in a message; how the chat,
the model and a reply's note say which were read.

Which pages were read is kept as the attachment's caption ("Pages 1-10 of 30"), shown under the
file in the chat and in exports, and read back with the same parser when the conversation is
sent to the model again, so a reopened conversation shows the model the same pages.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..config import Limits
from .probe import MediaError

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


