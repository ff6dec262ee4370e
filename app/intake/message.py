"""A message from the page or the API: its files checked, decoded and kept with captions, and a
conversation as the model reads it."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

from PIL import Image

from model import AudioClip, Message, VideoClip, split_at_pauses

from ..config import Limits
from ..history import Attachment, Conversation, StoredMessage
from .files import attachment_kinds, file_path, load_file
from .pdf import page_count, page_texts, render_pages
from .pdf_pages import (
    PdfPages,
    choose_pages,
    left_out_note,
    page_labels,
    requested_pages,
    stored_pages,
    text_budget,
    text_candidates,
    text_layer,
)
from .probe import Kind, MediaError
from .speech import Speech
from .text import message_text
from .text_file import TextFile
from .totals import Totals, file_totals, message_totals
from .video import Video

PASTED_IMAGE_NAME = "image.png"  # what browsers call every image pasted from the clipboard
# Said to the model after a PDF's page labels when the message asks for a description.
PAGE_BY_PAGE = "Take the pages one at a time, in order, each under a heading with its page number."
# Said to the model after a level's prompt (written for images) when it is a video's description.
VIDEO_BY_TIME = (
    "This is a video: you see its frames, each after its time (minutes:seconds), then hear its "
    "sound. Describe what happens, in order, with the times, and what is said."
)
# Said to the model in place of an earlier message's files that can no longer be read.
FILES_LEFT_OUT = "(This message's files are left out: {})"


class Intake:
    """Turns what a person sends into a message to keep, and kept messages into the model's.

    `described` tells a description's prompt from a person's text (the describe task's
    levels): the model is then also told how to take a PDF's pages or a video's times."""

    def __init__(self, limits: Limits, speech: Speech, described: Callable[[str], bool]):
        self.limits = limits
        self.speech = speech
        self.described = described

    def message_files(self, value: dict[str, Any]) -> list[tuple[str, Kind]]:
        """A MultimodalTextbox value's files, each with its kind, after the checks that need no
        decoding (files.attachment_kinds); MediaError names a file it can't use."""
        paths = [file_path(item) for item in value.get("files") or []]
        return list(zip(paths, attachment_kinds(paths, self.limits), strict=True))

    def stored_user_message(
        self, text: str | None, files: list[tuple[str, Kind]], pages_from: str | None = None
    ) -> StoredMessage:
        """A message to keep: its text and files (from `message_files`); MediaError names a file
        that does not decode, or says the text is too long.

        Audio sent as audio gets a caption of what the speech recogniser heard, which also says
        into how many clips the model takes it. A PDF gets the pages the model reads ("Pages
        1-10 of 30"): those the text names, else the first, at most Limits.max_pdf_pages in
        the message. `pages_from` is text that names pages when `text` is not the person's
        own (describe mode keeps a level's prompt as the text).
        """
        text = message_text(text, self.limits)
        # A PDF's pages are chosen without rendering them, so that the message is counted
        # against what one request may send before anything is decoded; its text layer fills
        # what the rest of the message leaves.
        pdfs = [
            load_file(path, kind, self.limits) if kind == "pdf" else None for path, kind in files
        ]
        named = text if pages_from is None else pages_from
        decoded = [(path, kind, pdf) for (path, kind), pdf in zip(files, pdfs, strict=True)]
        pdfs = chosen_pages(named, text, decoded, self.limits)
        counted = [(*file, pages) for file, pages in zip(files, pdfs, strict=True)]
        totals = message_totals(text, counted, self.limits)
        totals.check(self.limits, "This message")
        # Decoded here so that a damaged file is refused, not kept; a PDF's chosen pages are
        # drawn too, so that one PDFium cannot draw (a decompression bomb) is never kept.
        decoded = [
            pages if pages is not None else load_file(path, kind, self.limits)
            for (path, kind), pages in zip(files, pdfs, strict=True)
        ]
        for (path, _), pages in zip(files, pdfs, strict=True):
            if pages is not None:
                render_pages(path, pages)
        attachments = tuple(
            self._attachment(path, kind, file)
            for (path, kind), file in zip(files, decoded, strict=True)
        )
        return StoredMessage("user", text, attachments)

    def left_out_note(self, message: StoredMessage) -> str:
        """The note a reply to `message` starts with when pages of its PDFs were not read."""
        pages = [
            stored_pages(a.name, a.caption, _caption_count(a.caption), self.limits)
            for a in message.attachments
            if a.kind == "pdf" and _caption_count(a.caption)
        ]
        return left_out_note(pages, self.limits, message.text)

    def _attachment(self, path: str, kind: Kind, decoded: Any) -> Attachment:
        if kind == "image":
            return Attachment("image", path, display_name(path))
        if kind == "pdf":
            return Attachment("pdf", path, display_name(path), decoded.caption)
        if kind == "text":
            return Attachment("text", path, display_name(path))
        if kind == "video":  # what was heard in its soundtrack; a silent video has no caption
            sound = decoded.soundtrack
            caption = self.speech.caption(sound, clip_count(sound)) if sound else ""
            return Attachment("video", path, display_name(path), caption)
        caption = self.speech.caption(path, clip_count(decoded))
        return Attachment("audio", path, display_name(path), caption)

    def sent_turns(
        self, conversation: Conversation, system_prompt: str
    ) -> tuple[Conversation, int]:
        """The conversation as one request sends it: its newest whole turns (a turn starts at
        one of the person's messages) within the per-request totals (totals.py),
        and how many older messages are left out. The newest turn always stays: its message
        was counted when it came. Counted from the files' headers, nothing decoded."""
        messages = conversation.messages
        starts = [i for i, m in enumerate(messages) if m.role == "user" or i == 0]
        start = starts[-1] if starts else 0
        totals = Totals(1, len(system_prompt.strip())) if system_prompt.strip() else Totals()
        totals += sum(map(self._totals, messages[start:]), Totals())
        for earlier in reversed(starts[:-1]):
            totals += sum(map(self._totals, messages[earlier:start]), Totals())
            if totals.over(self.limits) is not None:
                break
            start = earlier
        return replace(conversation, messages=messages[start:]), start

    def _totals(self, stored: StoredMessage) -> Totals:
        """What a kept message adds to a request (see totals.py). A file that can no
        longer be read adds nothing: `model_messages` leaves it out, or refuses the turn."""
        totals = message_totals(stored.text, [], self.limits)
        for attachment in stored.attachments:
            try:
                pages = None
                if attachment.kind == "pdf":
                    count = page_count(attachment.path)
                    pages = stored_pages(attachment.name, attachment.caption, count, self.limits)
                totals += file_totals(attachment.path, attachment.kind, pages, self.limits)
            except (MediaError, OSError):
                continue
        return totals

    def model_messages(self, conversation: Conversation, system_prompt: str) -> list[Message]:
        """What the model sees: the system prompt, then every turn with its images and audio.
        A PDF's pages are images, and the text before the person's says which page each is."""
        messages = [Message("system", system_prompt.strip())] if system_prompt.strip() else []
        last = len(conversation.messages) - 1
        for index, stored in enumerate(conversation.messages):
            try:
                messages.append(self._model_message(stored))
            except MediaError as exc:
                if index == last:  # the message being answered: this turn gets the sentence
                    raise
                # An earlier message whose files can no longer be read (gone from the disk, or
                # over a limit lowered since) is sent without them, so that it does not make
                # every later turn of the conversation fail.
                text = "\n\n".join(filter(None, [stored.text, FILES_LEFT_OUT.format(exc)]))
                messages.append(Message(stored.role, text))
        return messages

    def _model_message(self, stored: StoredMessage) -> Message:
        """A kept message as the model sees it; MediaError if one of its files cannot be read.
        Each file is taken as the kind it was found to be when it came (never sniffed again),
        and decoded through the caches of decoded files: a conversation's earlier files are
        not decoded again on every turn."""
        files = []
        for attachment in stored.attachments:
            kind = attachment.kind
            try:
                decoded = load_file(attachment.path, kind, self.limits)
            except MediaError as exc:  # said of the file by the name the person gave it
                kept_as = Path(attachment.path).name
                raise MediaError(str(exc).replace(kept_as, attachment.name)) from exc
            if kind == "pdf":
                count = decoded.page_count
                decoded = stored_pages(attachment.name, attachment.caption, count, self.limits)
            if kind == "text":
                decoded = replace(decoded, name=attachment.name)
            files.append((attachment.path, decoded))
        text = stored.text
        laid_out = with_pages(text, files, self.described(text), self.limits)
        return model_message(stored.role, *laid_out)


def chosen_pages(
    named: str, text: str, files: list[tuple[str | Path, Kind, Any]], limits: Limits
) -> list[Any]:
    """The decoded files of a message (path, kind, decoded) with each PDF's pages
    (pdf.PdfPages) chosen by `named` (the text that names pages): those it names (PdfError for
    a page a PDF does not have), else the first; Limits.max_pdf_pages in the message. Their
    text layers come too, within what the message's `text` and other files leave (see
    pdf_pages.text_budget)."""
    others = [(path, kind, None) for path, kind, _ in files if kind != "pdf"]
    text_left = text_budget(limits, message_totals(text, others, limits).chars)
    requested = requested_pages(named)
    budget = limits.max_pdf_pages
    chosen = []
    for path, _, item in files:
        if isinstance(item, PdfPages):
            item = choose_pages(item.name, item.page_count, requested, budget)
            budget -= len(item.numbers)
            texts = page_texts(path, text_candidates(item, requested), text_left)
            text_left -= sum(len(text) for _, text in texts)
            item = replace(item, text_numbers=tuple(sorted(number for number, _ in texts)))
        chosen.append(item)
    return chosen


def with_pages(
    text: str, files: list[tuple[str, Any]], described: bool, limits: Limits
) -> tuple[str, list[Image.Image], list[AudioClip], list[VideoClip]]:
    """A message's text, images, audio and videos from its decoded files (path, decoded), a
    PDF's chosen pages rendered as images in their place, a video's soundtrack in the audio, a
    text file fenced under its name before the person's text.

    The model sees a message's images before its text, so the text starts by saying which
    image is which page ("Image 3: page 5 of 30."), then gives a PDF's text layer page by page
    (read again within `limits`); a description also asks for one page at a time
    (`described`: the text is a description's prompt)."""
    images: list[Image.Image] = []
    audio: list[AudioClip] = []
    videos: list[VideoClip] = []
    labels: list[str] = []
    texts: list[str] = []
    for path, decoded in files:
        if isinstance(decoded, TextFile):
            texts.append(decoded.fenced())
        elif isinstance(decoded, PdfPages):
            layer = text_layer(
                decoded, page_texts(path, decoded.text_numbers, limits.max_request_chars)
            )
            labels.append("\n\n".join(filter(None, [page_labels(decoded, len(images) + 1), layer])))
            images += render_pages(path, decoded)
        elif isinstance(decoded, Video):
            videos.append(decoded.clip)
            audio += [decoded.soundtrack] if decoded.soundtrack else []
        elif isinstance(decoded, AudioClip):
            audio.append(decoded)
        else:
            images.append(decoded)
    if texts:
        text = "\n\n".join([*texts, text] if text else texts)
    if videos and described:
        text = f"{text}\n\n{VIDEO_BY_TIME}"
    if labels:
        by_page = [PAGE_BY_PAGE] if described else []
        text = "\n\n".join([*labels, *by_page, text] if text else [*labels, *by_page])
    return text, images, audio, videos


def model_message(
    role: str,
    text: str,
    images: list[Image.Image],
    audio: list[AudioClip],
    videos: list[VideoClip] | tuple[VideoClip, ...] = (),
) -> Message:
    """A message as the model takes it: at most 30 s per clip, so longer recordings (and
    soundtracks) become several clips, split at pauses."""
    clips = tuple(piece for clip in audio for piece in split_at_pauses(clip))
    return Message(role, text, tuple(images), clips, tuple(videos))


def _caption_count(caption: str) -> int:
    """How many pages a PDF attachment's caption says the PDF has (0 if it says none)."""
    found = re.search(r" of (\d+)", caption)
    return int(found[1]) if found else 0


def clip_count(decoded: Any) -> int:
    """How many clips the model takes a decoded attachment as (images: none)."""
    return len(split_at_pauses(decoded)) if isinstance(decoded, AudioClip) else 0


def display_name(path: str) -> str:
    """The name a file is shown and kept under; a pasted image is named after the time it came,
    since browsers call every one "image.png"."""
    name = Path(path).name
    if name == PASTED_IMAGE_NAME:
        return f"Pasted image {datetime.now():%Y-%m-%d %H-%M-%S}.png"
    return name
