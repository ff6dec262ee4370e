"""Chatbot entries: a stored conversation and a growing reply, as the page shows them."""

from __future__ import annotations

from model import ImageDetail

from ..history import STOPPED, Attachment, Conversation, StoredMessage
from ..intake.text_file import text_label
from ..intake.video import poster, video_label
from ..tasks.describe import LEVELS, level_of
from ..tasks.reply import Reply, with_dropped_note

THINKING_TITLE = "Thinking"
SYSTEM_PROMPT_TITLE = "System prompt"
IMAGE_DETAIL_TITLE = "Image detail"
# Files the chat shows as a link with their name and size (their MIME type, for the browser).
LINKED = {"pdf": "application/pdf", "text": "text/plain"}


def shown_conversation(conversation: Conversation | None) -> tuple[list[dict], list[int]]:
    """The chatbot entries of a conversation, and for each entry its message's position."""
    entries: list[dict] = []
    positions: list[int] = []
    if conversation and conversation.system_prompt:  # collapsed, above the first message
        entries.append(system_entry(conversation.system_prompt))
        positions.append(0)
    for position, message in enumerate(conversation.messages if conversation else ()):
        shown = shown_user(message) if message.role == "user" else shown_answer(message)
        entries += shown
        positions += [position] * len(shown)
    return entries, positions


def shown_user(message: StoredMessage) -> list[dict]:
    """What the person sent: each file (named for screen readers), the captions of audio, then
    the text; a description's long prompt is shown as the level that was asked for."""
    entries = [{"role": "user", "content": shown_file(a)} for a in message.attachments]
    entries += [  # a video's length under its poster frame, a text file's size under its name
        {"role": "user", "content": f"🎬 {video_label(a.path)}"}
        if a.kind == "video"
        else {"role": "user", "content": f"📝 {text_label(a.path)}"}
        for a in message.attachments
        if a.kind in ("video", "text")
    ]
    entries += [{"role": "user", "content": a.caption} for a in message.attachments if a.caption]
    level = level_of(message.text)
    kinds = {a.kind for a in message.attachments}
    described = "PDF" if "pdf" in kinds else "video" if "video" in kinds else "image"
    text = f"Describe this {described}: {LEVELS[level].label}" if level else message.text
    return entries + ([{"role": "user", "content": text}] if text else [])


def shown_file(attachment: Attachment) -> dict:
    """A file in the chat, with a text alternative (the page's images need one)."""
    kind = {"image": "Image", "pdf": "PDF", "video": "Video", "text": "Text file"}.get(
        attachment.kind, "Recording"
    )
    alt_text = f"{kind} you sent: {attachment.name}"
    if attachment.kind == "video":  # its first frame, as players show before playing
        shown = poster(attachment.path)
        if shown:
            alt_text = f"First frame of the video you sent: {attachment.name}"
            return {"path": shown, "alt_text": alt_text}
    if attachment.kind in LINKED:  # shown as a link, named as the person named the file
        file = {"path": attachment.path, "orig_name": attachment.name}
        return {"file": file | {"mime_type": LINKED[attachment.kind]}, "alt_text": alt_text}
    return {"path": attachment.path, "alt_text": alt_text}


def shown_answer(message: StoredMessage) -> list[dict]:
    reply = Reply(
        message.text,
        message.thinking,
        cancelled=message.status == "interrupted",
        image_detail=message.image_detail,
    )
    return shown_reply(reply)


def shown_reply(reply: Reply) -> list[dict]:
    """A reply: a collapsed note of its image detail (if it saw images), a collapsed Thinking
    section (if any), then the answer."""
    entries = [detail_entry(reply.image_detail)] if reply.image_detail else []
    if reply.thinking:
        entries.append(
            {
                "role": "assistant",
                "content": reply.thinking,
                "metadata": {"title": THINKING_TITLE, "status": "done"},
            }
        )
    answer = reply.answer
    if reply.error:
        answer = f"{answer}\n\n⚠️ {reply.error}".strip()
    elif reply.cancelled:
        answer = f"{answer} {STOPPED}".strip()
    entries.append({"role": "assistant", "content": with_dropped_note(reply, answer or "…")})
    return entries


def system_entry(system_prompt: str) -> dict:
    """The system prompt a conversation keeps, as a collapsed section titled "System prompt".
    Not part of any answer: read aloud, copying and the live region leave it out."""
    return {
        "role": "assistant",
        "content": system_prompt,
        "metadata": {"title": SYSTEM_PROMPT_TITLE, "status": "done"},
    }


def detail_entry(detail: ImageDetail) -> dict:
    """The image detail a reply was made with, as a collapsed section titled with the value
    ("Image detail: 1120 (Auto)") that says why. Not part of the answer: read aloud, copying
    and the live region leave it out, as they leave out Thinking."""
    if detail.auto:
        why = f"Auto chose it: {detail.reason}. A value chosen under Settings wins over Auto."
    else:
        why = "The value set for this message under Image detail, in Settings."
    return {
        "role": "assistant",
        "content": f"Each image was read at up to {detail.tokens} tokens. {why}",
        "metadata": {"title": f"{IMAGE_DETAIL_TITLE}: {detail.label}", "status": "done"},
    }
