"""A file's kind, told by its content (image, PDF, video, audio or text), and the file decoded as
that kind: the one dispatcher over the decoders, which never import it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from model import AudioClip

from ..config import Limits
from . import pdf, pdf_pages, video
from .audio import load_audio, open_audio
from .image import decoded_image, open_image
from .probe import Kind, MediaError, audio_format, check_size
from .text_file import load_text, looks_like_text

# Said of a file that is none of the kinds Loupe takes.
NOT_USABLE = "{} is not an image, a PDF, a video, audio or a text file Loupe can use."


def attachment_kinds(paths: list[str], limits: Limits) -> list[Kind]:
    """Each file's kind, after the checks that need no decoding: count, size, type by content,
    megapixels and duration from the headers."""
    if len(paths) > limits.max_files_per_message:
        raise MediaError(
            f"One message can carry at most {limits.max_files_per_message} files; "
            f"this one has {len(paths)}."
        )
    return [file_kind(path, limits) for path in paths]


def check_audio_file(path: str | Path, limits: Limits, name: str, videos: bool = False) -> None:
    """MediaError, saying so of `name`, unless the file is audio Loupe can read (the checks
    that need no decoding, as for any attachment), or with `videos` a video, for its sound."""
    taken = ["audio", "video"] if videos else ["audio"]
    if attachment_kinds([str(path)], limits)[0] not in taken:
        what = "an audio or video file" if videos else "an audio file"
        raise MediaError(f"{name} is not {what} Loupe can read.")


def file_kind(path: str | Path, limits: Limits) -> Kind:
    """What the file holds, "image", "pdf", "video", "audio" or "text"; MediaError if none, or
    over a limit (for a PDF: encrypted, damaged or without pages; for a video: its length, from
    the header; for text: its size, or not UTF-8). An MP4 or WebM with pictures is a video; one
    with only sound is audio."""
    path = Path(path)
    check_size(path, limits)
    try:
        with open_image(path, limits):
            return "image"
    except MediaError as exc:
        if not isinstance(exc.__cause__, UnidentifiedImageError):
            raise  # an image, but a bad one: say why
    if pdf.is_pdf(path):
        pdf.page_count(path)
        return "pdf"
    if video.is_video(path, limits):
        video.check_video(path, limits)
        return "video"
    if audio_format(path) is not None:
        with open_audio(path, limits):
            return "audio"
    if looks_like_text(path):
        load_text(path, limits)  # over the size limit, or not UTF-8: said now
        return "text"
    raise MediaError(NOT_USABLE.format(path.name))


def load_file(path: str | Path, kind: Kind, limits: Limits) -> Image.Image | AudioClip | Any:
    """A file whose kind is known (from file_kind or attachment_kinds), decoded; for a PDF,
    which pages the model reads when the message names none (pdf.PdfPages, not rendered); for
    a video, its frames and soundtrack (video.Video); for text, text_file.TextFile."""
    if kind == "text":
        return load_text(path, limits)
    if kind == "video":
        return video.load_video(path, limits)
    if kind == "pdf":
        name = Path(path).name
        return pdf_pages.choose_pages(name, pdf.page_count(path), None, limits.max_pdf_pages)
    return decoded_image(path, limits) if kind == "image" else load_audio(path, limits)


def file_path(item: Any) -> str:
    """Gradio passes files as paths, dicts with a path, or FileData-like objects."""
    if isinstance(item, str):
        return item
    if isinstance(item, dict):
        return item["path"]
    return item.path
