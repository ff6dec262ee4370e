"""What one request sends the model in all, across its messages: how many messages, characters,
images (PDF pages and video frames count as images), megapixels, and seconds of audio and of
video, counted before anything is decoded and held to Limits' per-request totals.

So the memory a request can take is bounded by the request, not only by each message: the
page and /v1 both count here, the page over the turns of a conversation it sends.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from pathlib import Path

from PIL import Image

from ..config import Limits
from .audio import audio_seconds
from .image import IMAGE_FORMATS
from .pdf import PAGE_PIXELS, page_texts
from .pdf_pages import PdfPages
from .probe import Kind, MediaError, duration
from .text_file import load_text
from .video import FRAME_PIXELS, FRAMES_PER_S, MAX_FRAMES, check_video


@dataclass(frozen=True)
class Totals:
    """What a request (or a part of one) sends the model."""

    messages: int = 0
    chars: int = 0
    images: int = 0  # images, PDF pages read and video frames
    megapixels: float = 0.0  # images at their own size, pages and frames as they are rendered
    audio_s: float = 0.0
    video_s: float = 0.0

    def __add__(self, other: Totals) -> Totals:
        return Totals(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    def over(self, limits: Limits, subject: str = "This request") -> str | None:
        """The sentence refusing these totals (its subject such as "This request"), or None
        when they are within `limits`."""
        if self.messages > limits.max_request_messages:
            return (
                f"{subject} has {self.messages:,} messages; Loupe sends the model at most "
                f"{limits.max_request_messages:,} messages at once."
            )
        if self.chars > limits.max_request_chars:
            return (
                f"{subject} holds {self.chars:,} characters of text; Loupe sends the model at "
                f"most {limits.max_request_chars:,} characters at once."
            )
        if self.images > limits.max_request_images:
            return (
                f"{subject} has {self.images} images (PDF pages and video frames count as "
                f"images); Loupe sends the model at most {limits.max_request_images} at once."
            )
        if self.megapixels > limits.max_request_mp:
            return (
                f"{subject} has images of {self.megapixels:,.0f} megapixels in all; Loupe "
                f"sends the model at most {limits.max_request_mp:g} megapixels at once."
            )
        if self.audio_s > limits.max_request_audio_s:
            return (
                f"{subject} has {duration(self.audio_s)} of recordings; Loupe sends the model "
                f"at most {duration(limits.max_request_audio_s)} of recordings at once."
            )
        if self.video_s > limits.max_request_video_s:
            return (
                f"{subject} has {duration(self.video_s)} of video; Loupe sends the model at "
                f"most {duration(limits.max_request_video_s)} of video at once."
            )
        return None

    def check(self, limits: Limits, subject: str = "This request") -> None:
        """MediaError with `over`'s sentence when these totals are past `limits`."""
        sentence = self.over(limits, subject)
        if sentence is not None:
            raise MediaError(sentence)


def message_totals(
    text: str, files: list[tuple[str | Path, Kind, PdfPages | None]], limits: Limits
) -> Totals:
    """One message: its text and its files (path, kind, and for a PDF the pages read), each
    counted from its header (see `file_totals`)."""
    totals = Totals(messages=1, chars=len(text))
    for path, kind, pages in files:
        totals += file_totals(path, kind, pages, limits)
    return totals


def file_totals(path: str | Path, kind: Kind, pages: PdfPages | None, limits: Limits) -> Totals:
    """What a file adds, known without decoding it: an image's size from its header, a PDF's
    pages read (`pages`) and the characters of their text layer, a video's length (and so its
    frames; VideoError past `limits`, as when it came), a recording's length, a text file's
    characters."""
    if kind == "image":
        with Image.open(path, formats=IMAGE_FORMATS) as opened:  # the header only
            width, height = opened.size
        return Totals(images=1, megapixels=width * height / 1e6)
    if kind == "pdf":
        if pages is None:
            return Totals()
        count = len(pages.numbers)
        texts = page_texts(path, pages.text_numbers, limits.max_request_chars)
        chars = sum(len(text) for _, text in texts)
        return Totals(chars=chars, images=count, megapixels=count * PAGE_PIXELS / 1e6)
    if kind == "video":
        seconds = check_video(path, limits)
        frames = min(MAX_FRAMES, math.floor(seconds * FRAMES_PER_S) + 1)
        frames = max(frames, 2)  # under a second: its first and last frames
        return Totals(images=frames, megapixels=frames * FRAME_PIXELS / 1e6, video_s=seconds)
    if kind == "text":  # read whole to count: at most Limits.max_text_kb
        return Totals(chars=len(load_text(path, limits).text))
    return Totals(audio_s=audio_seconds(path))
