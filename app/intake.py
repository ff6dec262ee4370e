"""A message from the page or the API: its files checked, decoded and kept with captions, and a
conversation as the model reads it."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from PIL import Image

from model import AudioClip, Message, split_at_pauses

from .config import Limits
from .history import Attachment, Conversation, StoredMessage
from .media import Kind, attachment_kinds, file_path, load_attachments, load_file, message_text
from .voice import Voice

PASTED_IMAGE_NAME = "image.png"  # what browsers call every image pasted from the clipboard


class Intake:
    """Turns what a person sends into a message to keep, and kept messages into the model's."""

    def __init__(self, limits: Limits, voice: Voice):
        self.limits = limits
        self.voice = voice

    def message_files(self, value: dict[str, Any]) -> list[tuple[str, Kind]]:
        """A MultimodalTextbox value's files, each with its kind, after the checks that need no
        decoding (media.attachment_kinds); MediaError names a file it can't use."""
        paths = [file_path(item) for item in value.get("files") or []]
        return list(zip(paths, attachment_kinds(paths, self.limits), strict=True))

    def stored_user_message(self, text: str | None, files: list[tuple[str, Kind]]) -> StoredMessage:
        """A message to keep: its text and files (from `message_files`); MediaError names a file
        that does not decode, or says the text is too long.

        Audio sent as audio gets a caption of what the speech recogniser heard, which also says
        into how many clips the model takes it.
        """
        text = message_text(text, self.limits)
        # Decoded here so that a damaged file is refused, not kept.
        decoded = [load_file(path, kind, self.limits) for path, kind in files]
        attachments = tuple(
            self._attachment(path, kind, file)
            for (path, kind), file in zip(files, decoded, strict=True)
        )
        return StoredMessage("user", text, attachments)

    def _attachment(self, path: str, kind: Kind, decoded: Any) -> Attachment:
        if kind == "image":
            return Attachment("image", path, display_name(path))
        caption = self.voice.caption(path, clip_count(decoded))
        return Attachment("audio", path, display_name(path), caption)

    def model_messages(self, conversation: Conversation, system_prompt: str) -> list[Message]:
        """What the model sees: the system prompt, then every turn with its images and audio."""
        messages = [Message("system", system_prompt.strip())] if system_prompt.strip() else []
        for stored in conversation.messages:
            paths = [attachment.path for attachment in stored.attachments]
            images, audio = load_attachments(paths, self.limits)
            messages.append(model_message(stored.role, stored.text, images, audio))
        return messages


def model_message(
    role: str, text: str, images: list[Image.Image], audio: list[AudioClip]
) -> Message:
    """A message as the model takes it: at most 30 s per clip, so longer recordings become
    several clips, split at pauses."""
    clips = tuple(piece for clip in audio for piece in split_at_pauses(clip))
    return Message(role, text, tuple(images), clips)


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
