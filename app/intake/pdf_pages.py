"""Which pages of a PDF the model reads: those a message names ("pages 3-5", "page 2", "pages 1,
4 and 7", "p. 3"), else the first, at most `Limits.max_pdf_pages` in a message; how the chat,
the model and a reply's note say which were read.

A PDF whose pages carry a text layer (most PDFs not scanned) also gives the model that text,
so small print is read exactly: first the text of the pages it sees, then of the pages past the
image limit (those named, else the rest, in order) as text only, so a long PDF can be asked
about beyond its first pages. A message's PDFs give at most half the characters one request
may send (`Limits.max_request_chars`), whole pages only, so follow-up questions still fit.

Which pages were read is kept as the attachment's caption ("Pages 1-10 of 30, and the text of
pages 1-30"), shown under the file in the chat and in exports, and read back with the same
parser when the conversation is sent to the model again, so a reopened conversation shows the
model the same pages.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from ..config import Limits
from .probe import MediaError
from .text_file import fenced

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
NONE_READ = "No pages"
TEXT_OF = ", and the text of "  # in a caption, before the pages whose text the model reads
WITH_TEXT = ", with text"  # in a caption: the model reads the text of the pages it sees
# The pages whose text layer is looked at, at most, for one PDF of a message.
MAX_TEXT_PAGES = 1000


class PdfError(MediaError):
    """A PDF that cannot be used, or pages it does not have; one sentence for the person."""


@dataclass(frozen=True)
class PdfPages:
    """The pages of a PDF the model reads: their numbers (from 1) and how many the PDF has."""

    name: str
    page_count: int
    numbers: tuple[int, ...]  # the pages the model sees
    text_numbers: tuple[int, ...] = ()  # the pages whose text layer it reads

    @property
    def text_only(self) -> tuple[int, ...]:
        """The pages the model reads as text alone, without their image."""
        return tuple(number for number in self.text_numbers if number not in self.numbers)

    @property
    def left_out(self) -> int:
        return self.page_count - len(self.numbers) - len(self.text_only)

    @property
    def caption(self) -> str:
        """How the chat and exports say which pages were read ("Pages 1-10 of 30", then ", and
        the text of pages 1-30", or ", with text" when it is that of these pages, for a PDF
        with a text layer)."""
        text = f"{TEXT_OF}{pages_named(self.text_numbers)}" if self.text_numbers else ""
        text = WITH_TEXT if self.numbers and self.text_numbers == self.numbers else text
        if not self.numbers:
            return (
                f"{NONE_READ} of {self.page_count} read: the message's page limit was used up"
                + text
            )
        return f"{pages_named(self.numbers).capitalize()} of {self.page_count}{text}"



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
    caption, _, text = caption.partition(TEXT_OF)
    text_numbers: tuple[int, ...] = ()
    if caption.endswith(WITH_TEXT):
        caption = caption.removesuffix(WITH_TEXT)
        text = caption.split(" of ", 1)[0]
    if text:
        text_numbers = choose_pages(name, count, requested_pages(text), MAX_TEXT_PAGES).numbers
    if caption.startswith(NONE_READ):
        return PdfPages(name, count, (), text_numbers)
    head = caption.split(" of ", 1)[0]
    pages = choose_pages(name, count, requested_pages(head), limits.max_pdf_pages)
    return replace(pages, text_numbers=text_numbers)


def text_candidates(pages: PdfPages, requested: list[tuple[int, int]] | None) -> tuple[int, ...]:
    """The pages whose text the model may read, in the order it gets them: the pages it sees,
    then the others named (or, naming none, the rest of the PDF), at most MAX_TEXT_PAGES."""
    if requested is None:
        named = range(1, pages.page_count + 1)
    else:
        named = sorted({page for first, last in requested for page in range(first, last + 1)})
    rest = [number for number in named if number not in pages.numbers]
    return (*pages.numbers, *rest)[:MAX_TEXT_PAGES]


def text_budget(limits: Limits, chars: int) -> int:
    """How many characters of text layer a message's PDFs may give, when the rest of the
    message holds `chars`: half of what a request may send, and what the message leaves."""
    return max(0, min(limits.max_request_chars // 2, limits.max_request_chars - chars))


def pages_named(numbers: tuple[int, ...] | list[int]) -> str:
    """ "page 4" or "pages 1-3 and 7"."""
    return f"{'page' if len(numbers) == 1 else 'pages'} {page_list(numbers)}"


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


def text_layer(pages: PdfPages, texts: tuple[tuple[int, str], ...]) -> str:
    """What the model reads after a PDF's page labels: the text layer of its pages (page,
    text), each under its page number in a fence ("" for none)."""
    if not texts:
        return ""
    only = pages.text_only
    alone = f"; {pages_named(only)} without an image" if only else ""
    head = f"The text of {pages.name}, as the PDF holds it{alone}:"
    return "\n\n".join([head, *(f"Page {number}:\n{fenced(text)}" for number, text in texts)])


def left_out_note(pages: list[PdfPages], limits: Limits, text: str) -> str:
    """The reply's note when pages of a message's PDFs were read as text only or not at all
    ("" when every page was seen), e.g. "report.pdf: pages 1-10 of 117 were read as images,
    and pages 11-60 as text only. Loupe reads at most 10 pages ...": the second sentence when
    pages the message (its `text`) named, or, naming none, pages of the whole PDF, were not
    read at all."""
    requested = requested_pages(text)
    notes, cut = [], False
    for document in pages:
        only = document.text_only
        if not document.left_out and not only:
            continue
        wanted = document.page_count
        if requested is not None:
            wanted = len({
                page
                for first, last in requested
                for page in range(max(first, 1), min(last, document.page_count) + 1)
            })  # fmt: skip
        cut = cut or len(document.numbers) + len(only) < wanted
        if not (document.numbers or only):
            notes.append(f"{document.name}: none of its pages were read")
            continue
        seen, of = document.numbers or only, document.page_count
        verb = "was" if len(seen) == 1 else "were"
        read = f"{document.name}: {pages_named(seen)} of {of} {verb} read"
        if document.numbers and only:
            read += f" as images, and {pages_named(only)} as text only"
        elif only:
            read += " as text only"
        notes.append(read)
    if not cut and not any(document.text_only for document in pages):
        return ""  # every page asked for was seen; the chat shows which under the file
    said = f"{'; '.join(notes)}."
    if not cut:
        return said
    return (
        f"{said} Loupe reads at most {limits.max_pdf_pages} pages of a message as images, and "
        f"text up to {text_budget(limits, 0):,} characters: name the pages you want, as in "
        '"pages 11-20".'
    )
