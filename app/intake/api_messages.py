"""A /v1 request's messages as the model takes them, through the same intake as the page's
uploads: each file checked by its content against the part that carried it, counted against
the request's totals before any is decoded, then decoded and laid out as a kept message's
files are (`message.with_pages`, `message.model_message`)."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from model import Message, Tool
from model.openai_wire import RequestError, WireMessage

from ..config import Limits
from .files import attachment_kinds, load_file
from .message import chosen_pages, model_message, with_pages
from .pdf_pages import PdfPages, left_out_note
from .probe import Kind, MediaError
from .text import message_text, valid_text
from .text_file import TextFile
from .totals import Totals, file_totals
from .video import Video

KIND_NAMES = {
    "image": "an image",
    "audio": "audio",
    "pdf": "a PDF",
    "video": "a video",
    "text": "a text file",
}


def model_messages(
    wire: list[WireMessage],
    limits: Limits,
    described: Callable[[str], bool],
    tools: tuple[Tool, ...] = (),
) -> tuple[tuple[Message, ...], str]:
    """The messages with their media through the upload intake (content sniffing, count, size,
    megapixel and length limits), audio split at pauses into the model's 30 s clips, PDFs'
    pages as labelled images; and the note the reply starts with when pages of the last
    message's PDFs were left out (see pdf_pages.py).

    Every file is checked and counted against the request's totals (totals.py)
    before any is decoded, so a request over them costs no decoding; the text of the `tools`
    offered and of the calls made counts as the messages' text does."""
    messages, note = [], ""
    with tempfile.TemporaryDirectory(prefix="loupe-api-") as folder:  # private to this user
        checked = _checked_messages(wire, Path(folder), limits, tools)
        for index, (text, paths, kinds, pdfs) in enumerate(checked):
            message, where = wire[index], f"messages[{index}].content"
            decoded_files: list[Any] = []
            for path, part, kind, pages in zip(paths, message.media, kinds, pdfs, strict=True):
                try:
                    decoded = pages if pages is not None else load_file(path, kind, limits)
                except MediaError as exc:
                    raise RequestError(str(exc), part.param) from None
                if isinstance(decoded, Video):  # the file is gone after this: keep its bytes
                    decoded = replace(decoded, clip=replace(decoded.clip, path="", data=part.data))
                if isinstance(decoded, TextFile):  # named as the client named it
                    decoded = replace(decoded, name=_shown_name(part.name) or "a text file")
                decoded_files.append(decoded)
            try:
                files = list(zip(map(str, paths), decoded_files, strict=True))
                model_text, images, clips, videos = with_pages(text, files, described(text), limits)
            except MediaError as exc:
                raise RequestError(str(exc), where) from None
            for path in paths:
                path.unlink()
            made = model_message(message.role, model_text, images, clips, videos)
            calls, answered = message.tool_calls, message.tool_call_id
            messages.append(replace(made, tool_calls=calls, tool_call_id=answered))
            note = left_out_note([pages for pages in pdfs if pages], limits, text)
    return tuple(messages), note


def _checked_messages(
    wire: list[WireMessage], folder: Path, limits: Limits, tools: tuple[Tool, ...]
) -> list[tuple[str, list[Path], list[Kind], list[PdfPages | None]]]:
    """Each message's text, files (written to `folder`, named after their parts so that a
    refusal says which one: "messages[0].content[1] is ..."), their kinds, and each PDF's pages
    to read: checked without decoding, and counted against the request's totals. RequestError
    names what is wrong, or the message where the request passes a total."""
    checked = []
    chars = sum(len(tool.name + tool.description + tool.parameters) for tool in tools)
    for message in wire:
        chars += len(message.text) + sum(len(c.name + c.arguments) for c in message.tool_calls)
    totals = Totals(messages=len(wire), chars=chars)
    _check_totals(totals, limits, "messages")  # before any file is written
    for index, message in enumerate(wire):
        where = f"messages[{index}].content"
        paths = [Path(folder, part.param) for part in message.media]
        for path, part in zip(paths, message.media, strict=True):
            path.write_bytes(part.data)
        try:
            text = message_text(message.text, limits)
            kinds = attachment_kinds([str(path) for path in paths], limits)
        except MediaError as exc:
            raise RequestError(str(exc), where) from None
        for part, kind in zip(message.media, kinds, strict=True):
            if kind != part.kind:
                raise RequestError(
                    f"{part.param} holds {KIND_NAMES[kind]}, not {KIND_NAMES[part.kind]}.",
                    part.param,
                )
        try:
            pdfs = _pdf_pages(text, paths, message.media, kinds, limits)
            for path, kind, pages in zip(paths, kinds, pdfs, strict=True):
                totals += file_totals(path, kind, pages, limits)
        except MediaError as exc:
            raise RequestError(str(exc), where) from None
        _check_totals(totals, limits, where)
        checked.append((text, paths, kinds, pdfs))
    return checked


def _pdf_pages(
    text: str, paths: list[Path], parts: tuple[Any, ...], kinds: list[Kind], limits: Limits
) -> list[PdfPages | None]:
    """For each file of a message, the pages the model reads if it is a PDF (chosen by the
    message's text, named after its part's filename), else None; their text layers within
    what the message's text and other files leave."""
    pages: list[Any] = [
        replace(load_file(path, kind, limits), name=_shown_name(part.name) or path.name)
        if kind == "pdf"
        else None
        for path, part, kind in zip(paths, parts, kinds, strict=True)
    ]
    return chosen_pages(text, text, list(zip(paths, kinds, pages, strict=True)), limits)


def _check_totals(totals: Totals, limits: Limits, param: str) -> None:
    """RequestError naming `param` when the request's totals so far pass a limit."""
    sentence = totals.over(limits)
    if sentence is not None:
        raise RequestError(sentence, param)


def _shown_name(filename: str) -> str:
    """A file part's filename as the model and the reply may name it: no folders, one line."""
    name = valid_text(Path(filename.replace("\\", "/")).name)
    return " ".join(name.split())[:120]
