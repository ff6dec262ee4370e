"""Opens PDFs and draws their pages in a process of its own, run by pdf.py, so that PDFium never
runs inside the app.

A PDF can be a decompression bomb: a page whose few compressed kilobytes unpack into gigabytes
of drawing, or a few forms that draw each other thousands of times. This process sets a ceiling
on its own memory (address space) before PDFium is loaded, and on the CPU time that opening a
PDF and each of its pages may take; a bomb ends the process (PDFium aborts when an allocation
fails; the kernel stops it at the CPU limit), and the parent tells the person which page was
too large, then starts another process for the next PDF. It imports only the standard library
and pypdfium2 (it runs with `python -I`, so nothing of the app is on its path).

Its one argument is its memory ceiling in megabytes. It reads jobs from stdin, one JSON line
each: `path`, `pages` (numbers from 1; none: only count them), `page_cpu_s`, `page_pixels` and
`max_side_px`; or, for a text job, `path`, `texts` (page numbers), `text_chars` and
`page_cpu_s`. It answers on stdout, one line each:

    pages N                        the PDF opened and has N pages
    page N WIDTH HEIGHT STRIDE     then STRIDE x HEIGHT bytes: page N, drawn, as rows of RGB
    text N BYTES                   then BYTES bytes: page N's text layer, UTF-8 (a text job:
                                   the pages in order until `text_chars` characters are
                                   passed, the last one cut just past them)
    end                            a text job is done
    refused REASON [N]             it cannot be used: password, security, file, damaged,
                                   no-pages, or page N (PDFium could not draw it); the job ends

It ends when stdin closes (as when the app stops).
"""

from __future__ import annotations

import json
import math
import os
import resource
import signal
import sys
from typing import BinaryIO

# Opening errors PDFium reports (FPDF_ERR_*), as the parent's reasons.
OPEN_ERRORS = {2: "file", 4: "password", 5: "security"}
# The exit status when Python itself ran out of memory (PDFium aborts instead: SIGABRT).
MEMORY_EXIT = 3


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C is for the app, which closes stdin
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # an abort leaves no core file behind
    memory = int(sys.argv[1]) * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    out = sys.stdout.buffer
    try:
        for line in sys.stdin.buffer:
            _do(json.loads(line), out)
    except MemoryError:
        os._exit(MEMORY_EXIT)  # no traceback, and nothing more to allocate


def _do(job: dict, out: BinaryIO) -> None:
    _allow_cpu(job["page_cpu_s"])
    document = _open(job["path"], out)
    if document is None:
        return
    try:
        _say(out, f"pages {len(document)}")
        if "texts" in job:
            _write_texts(document, job, out)
            return
        for number in job["pages"]:
            _allow_cpu(job["page_cpu_s"])
            if not _draw(document, number, job["page_pixels"], job["max_side_px"], out):
                return
    finally:
        document.close()


def _allow_cpu(seconds: int) -> None:
    """Let what comes next use `seconds` of CPU time (the soft limit: SIGXCPU ends the
    process), counted from what was used so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    used = math.ceil(usage.ru_utime + usage.ru_stime)
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    resource.setrlimit(resource.RLIMIT_CPU, (used + seconds, hard))


def _open(path: str, out: BinaryIO):
    """The document, or None after saying why it cannot be used.

    PDFium is called directly to open it: pypdfium2 counts "no pages" as a failure to load
    and then reports PDFium's last error, which is left over from an earlier file."""
    import pypdfium2 as pdfium
    import pypdfium2.raw as pdfium_c

    try:
        handle = pdfium_c.FPDF_LoadDocument((path + "\x00").encode("utf-8"), None)
    except Exception:  # a path PDFium cannot take
        handle = None
    if not handle:
        _say(out, f"refused {OPEN_ERRORS.get(pdfium_c.FPDF_GetLastError(), 'damaged')}")
        return None
    document = pdfium.PdfDocument(handle)
    if len(document) < 1:
        document.close()
        _say(out, "refused no-pages")
        return None
    return document


def _draw(document, number: int, page_pixels: int, max_side_px: int, out: BinaryIO) -> bool:
    """Write page `number` (from 1) drawn at about `page_pixels`, its longer side at most
    `max_side_px`; False after saying it could not be drawn."""
    import pypdfium2.raw as pdfium_c

    try:
        page = document[number - 1]
        width_pt, height_pt = page.get_size()
        if not (width_pt > 0 and height_pt > 0 and math.isfinite(width_pt * height_pt)):
            raise ValueError(f"page size {width_pt}x{height_pt}")
        scale = math.sqrt(page_pixels / (width_pt * height_pt))
        scale = min(scale, max_side_px / max(width_pt, height_pt))
        bitmap = page.render(
            scale=scale, force_bitmap_format=pdfium_c.FPDFBitmap_BGR, rev_byteorder=True
        )  # RGB, 3 bytes a pixel
    except MemoryError:
        raise  # past the memory ceiling: the parent says the page is too large
    except Exception:  # PDFium raises PdfiumError; odd page sizes, ...
        _say(out, f"refused page {number}")
        return False
    _say(out, f"page {number} {bitmap.width} {bitmap.height} {bitmap.stride}")
    out.write(memoryview(bitmap.buffer).cast("B"))
    out.flush()
    bitmap.close()
    page.close()
    return True


def _write_texts(document, job: dict, out: BinaryIO) -> None:
    """Write the text layers of pages `job["texts"]`, in order, until `job["text_chars"]`
    characters are passed (the parent then knows the last page did not fit), then "end"."""
    left = job["text_chars"]
    for number in job["texts"]:
        _allow_cpu(job["page_cpu_s"])
        try:
            page = document[number - 1]
            text_page = page.get_textpage()
            text = text_page.get_text_range()
            text_page.close()
            page.close()
        except MemoryError:
            raise
        except Exception:  # a page PDFium cannot read: no more text
            break
        text = text.replace("\r\n", "\n").replace("\r", "\n").strip()[: left + 1]
        data = text.encode("utf-8", "replace")
        _say(out, f"text {number} {len(data)}")
        out.write(data)
        out.flush()
        left -= len(text)
        if left < 0:
            break
    _say(out, "end")


def _say(out: BinaryIO, line: str) -> None:
    out.write(line.encode() + b"\n")
    out.flush()


if __name__ == "__main__":
    main()
