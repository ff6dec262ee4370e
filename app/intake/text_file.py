"""Text files in a message (notes, Markdown, code, CSV, JSON, logs): told by their content (UTF-8
text, no control bytes a text file never holds), held to Limits.max_text_kb, and given to the
model as fenced text under the file's name."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..config import Limits
from .probe import MediaError, plain_number

# Bytes no text file holds (NUL and the other C0 controls but tab, line feed, form feed and
# carriage return; ESC is kept, as logs of coloured terminal output hold it).
BINARY_BYTES = re.compile(rb"[\x00-\x08\x0b\x0e-\x1a\x1c-\x1f]")
SNIFF_BYTES = 4096


@dataclass(frozen=True)
class TextFile:
    """A text file as the model reads it: its name and its text."""

    name: str
    text: str

    def fenced(self) -> str:
        """The file under its name, in a fence."""
        return f"{self.name}:\n{fenced(self.text)}"


def fenced(text: str) -> str:
    """`text` in a fence longer than any run of backticks in it."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}\n{text}\n{fence}"


def looks_like_text(path: Path) -> bool:
    """Whether the file's first bytes hold no byte a text file never holds (a program, an
    archive or a picture nearly always does, within its first few kilobytes)."""
    with path.open("rb") as file:
        head = file.read(SNIFF_BYTES)
    return not BINARY_BYTES.search(head)


def load_text(path: str | Path, limits: Limits, name: str | None = None) -> TextFile:
    """The text of a file `looks_like_text` passed; MediaError, saying so of `name` (the
    file's own by default), when it is over the size limit or not UTF-8."""
    path = Path(path)
    name = name or path.name
    size = path.stat().st_size
    if size > limits.max_text_kb * 1024:
        raise MediaError(
            f"{name} is {plain_number(size / 1024)} KB of text; Loupe takes text files up to "
            f"{plain_number(limits.max_text_kb)} KB (--max-text-kb), which is what fits the "
            "model's context beside the conversation."
        )
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise MediaError(
            f"{name} is not UTF-8 text; save it as UTF-8 (most editors offer it under "
            "Save As or Encoding) and attach it again."
        ) from None
    if BINARY_BYTES.search(data):
        raise MediaError(f"{name} holds binary data, not only text.")
    return TextFile(name, text.replace("\r\n", "\n"))


def text_label(path: str | Path) -> str:
    """A kept text file's size, as the chat shows it under its name ("1.2 KB, 40 lines")."""
    try:
        data = Path(path).read_bytes()
    except OSError:
        return "no longer there"
    size = f"{len(data):,} bytes" if len(data) < 1024 else f"{plain_number(len(data) / 1024)} KB"
    lines = data.count(b"\n") + (not data.endswith(b"\n") and bool(data))
    return f"{size}, {lines:,} line{'s' if lines != 1 else ''}"
