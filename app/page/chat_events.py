"""The page's chat events: a message sent, answered again, edited or described; Stop; the banner
and the status line. Each acts for the logged-in `user` and sees only that user's conversations;
the reply loop itself is tasks.replies'."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import gradio as gr

from model import Engine, QueueSlot

from ..config import AppConfig
from ..history import LOCAL_USER, History
from ..intake.probe import MediaError
from ..intake.text import message_text
from ..tasks.describe import DEFAULT_LEVEL, DESCRIBE_OFF, alt_text_of, level_prompt
from ..tasks.moderation import verdict_in_words
from ..tasks.replies import Replies
from ..tasks.reply import Reply
from ..tasks.settings import Settings
from .display import shown_conversation, shown_reply
from .gradio_api import GradioApi
from .notices import noted
from .side_list import GROUPS, Conversations, hidden_alt_text
from .status import banner_text, status_text
from .voice import TRANSCRIBE, Voice

LISTING_OUTPUTS = len(GROUPS) + 1  # the side list's date groups, and its search box


class ChatHandlers:
    """The page's events over the reply loop, and the named Gradio API beside them (`api`)."""

    def __init__(self, engine: Engine, voice: Voice, history: History, config: AppConfig):
        self.engine = engine
        self.voice = voice
        self.history = history
        self.config = config
        self.replies = Replies(engine, voice, history, config)
        self.intake = self.replies.intake
        self.conversations = Conversations(history)
        self.api = GradioApi(self.replies, voice)

    def send(
        self,
        value: dict,
        conversation_id: str,
        mode: str,
        route: str,
        *settings: Any,
        user: str = LOCAL_USER,
    ) -> Iterator[tuple]:
        """The composer's Send: a message, or in describe mode (a level chosen) a description
        of the attached image; a message with no file is a follow-up question either way.
        Streams the page's reply outputs, then the alt-text box."""
        if mode != DESCRIBE_OFF and value.get("files"):
            yield from self.describe_page(value, conversation_id, mode, *settings, user=user)
            return
        for update in self.respond(value, conversation_id, route, *settings, user=user):
            yield *update, gr.skip()

    def respond(
        self, value: dict, conversation_id: str, route: str, *settings: Any, user: str = LOCAL_USER
    ) -> Iterator[tuple]:
        """A message: streams (chat, input box, conversation id, status line, *side list, title).

        With the Transcribe voice route, audio files are first turned into text in the box for
        the person to check; with the other, they go to the model with captions of what was heard.
        """
        try:
            files = self.intake.message_files(value)
            audio_paths = [path for path, kind in files if kind == "audio"]
            if route == TRANSCRIBE and audio_paths:
                yield _unchanged(self.voice.into_box(value, audio_paths), conversation_id)
                return
            slot = self.replies.queue_slot()
        except MediaError as exc:
            gr.Warning(str(exc))
            yield _unchanged(value, conversation_id)
            return
        with slot:
            try:
                message = self.intake.stored_user_message(value.get("text"), files)
            except MediaError as exc:
                gr.Warning(str(exc))
                yield _unchanged(value, conversation_id)
                return
            if not (message.text or message.attachments):
                yield _unchanged(value, conversation_id)
                return
            if not self.history.get(conversation_id or "", user):
                conversation_id = self.history.create(owner=user)
            self.history.append(conversation_id, message)
            yield from self._page_reply(conversation_id, Settings(*settings), slot, user=user)

    def regenerate(
        self, conversation_id: str, *settings: Any, user: str = LOCAL_USER
    ) -> Iterator[tuple]:
        """Answer the last message again, replacing the last answer."""
        if self.replies.drop_last_answer(conversation_id, user):
            yield from self._page_reply(conversation_id, Settings(*settings), user=user)

    def edit(
        self, conversation_id: str, edit: gr.EditData, *settings: Any, user: str = LOCAL_USER
    ) -> Iterator[tuple]:
        """A message the person edited in the chat: resend it from there."""
        conversation = self.history.get(conversation_id or "", user)
        if conversation is None:
            return
        _, positions = shown_conversation(conversation)
        position = positions[edit.index]
        try:
            if conversation.messages[position].role != "user" or not isinstance(edit.value, str):
                raise MediaError("Only the text of your own messages can be edited.")
            text = message_text(edit.value, self.config.limits)
        except MediaError as exc:
            gr.Warning(str(exc))
            shown = shown_conversation(conversation)[0]
            yield shown, *_unchanged(gr.skip(), conversation_id)[1:]
            return
        self.history.edit_text(conversation_id, position, text)
        yield from self._page_reply(conversation_id, Settings(*settings), user=user)

    def describe_page(
        self, value: dict, conversation_id: str, level: str, *settings: Any, user: str = LOCAL_USER
    ) -> Iterator[tuple]:
        """Describe: the one image in the box, described at `level` (Detailed when describe
        mode is off) in this conversation, so that questions typed next are follow-ups about it.
        Streams what a message streams, then the alt-text box: emptied when the description
        starts, filled after an Alt text one (or a Check content one, with the verdict in
        words). Typed text stays in the box."""
        level = DEFAULT_LEVEL if level == DESCRIBE_OFF else level
        try:
            files = self.intake.message_files(value)
            if [kind for _, kind in files] not in (["image"], ["pdf"], ["video"]):
                raise MediaError(
                    "Attach one image, PDF or video to describe: upload it, paste it, or take a "
                    "webcam snapshot."
                )
            slot = self.replies.queue_slot()  # a busy Loupe says so before decoding the file
        except MediaError as exc:
            gr.Warning(str(exc))
            yield *_unchanged(value, conversation_id), gr.skip()
            return
        with slot:  # given back on leaving unless the reply took it
            try:
                # Decoded (a PDF: its pages chosen by the text in the box, as in a message).
                [attachment] = self.intake.stored_user_message(
                    level_prompt(level), files, pages_from=value.get("text") or ""
                ).attachments
            except (MediaError, ValueError) as exc:
                gr.Warning(str(exc))
                yield *_unchanged(value, conversation_id), gr.skip()
                return
            if not self.history.get(conversation_id or "", user):
                conversation_id = self.history.create(owner=user)
            self.replies.ask_for_description(conversation_id, level, attachment, user)
            box: Any = {"text": value.get("text") or "", "files": []}
            alt_text: Any = hidden_alt_text()
            replies = self._page_reply(conversation_id, Settings(*settings), slot, user=user)
            for shown, _, *rest in replies:
                yield shown, box, *rest, alt_text
                box = alt_text = gr.skip()
            if level in ("alt_text", "check_content"):
                box = self._answer_box(conversation_id, level, user)
                yield *_unchanged(gr.skip(), conversation_id), box

    def _answer_box(self, conversation_id: str, level: str, user: str) -> Any:
        """The alt-text box for the conversation's last answer: its alt text, to edit and copy;
        after Check content, whose answer is JSON, the verdict in words."""
        last = self.history.get(conversation_id, user).messages[-1]
        if last.role != "assistant":  # the reply failed: nothing to fill in
            return gr.skip()
        if level == "check_content":
            label = "Content check: the model's verdict, may be wrong"
            return gr.update(value=verdict_in_words(last.text), label=label, visible=True)
        alt = alt_text_of(last.text)
        label = {
            "decorative": 'Alt text: decorative, so leave the alt attribute empty (alt="")',
            "complex": "Alt text: a complex image, so add the long description in the chat too",
        }.get(alt.kind, "Alt text: check it, edit it, then copy it")
        return gr.update(value=alt.text, label=label, visible=True)

    def stop(self, conversation_id: str, user: str = LOCAL_USER) -> None:
        """Stop: the model stops within one decoding step; the reply ends marked stopped."""
        self.replies.stop(conversation_id, user)

    def refresh(self) -> tuple[str, str]:
        """The banner and status line, as they stand now."""
        status = self.engine.status()
        return banner_text(status), status_text(status, self.replies.last_timing)

    def answer(
        self, conversation_id: str, *arguments: Any, user: str = LOCAL_USER
    ) -> Iterator[tuple[list, Reply]]:
        """The reply loop's answer to the stored conversation, as the chat shows it: yields (chat
        shown, reply) as it grows. Takes tasks.replies.Replies.answer's arguments."""
        shown = None
        for reply in noted(self.replies.answer(conversation_id, *arguments, user=user)):
            if shown is None:  # read once the reply starts: with the system prompt it keeps
                shown, _ = shown_conversation(self.history.get(conversation_id, user))
            yield [*shown, *shown_reply(reply)], reply

    def _page_reply(
        self,
        conversation_id: str,
        settings: Settings,
        slot: QueueSlot | None = None,
        *,
        user: str = LOCAL_USER,
    ) -> Iterator[tuple]:
        """Streams (chat, message box, id, status line, *side list, title) as the reply grows.
        The box empties, the side list and the title box change at the start, so that what the
        person types meanwhile stays; the status line changes at the end."""
        listed = self.conversations.listing(conversation_id, user=user)
        title = self.history.get(conversation_id, user).title
        options = settings.options()
        box = None
        for shown, _ in self.answer(conversation_id, settings.system, options, slot, user=user):
            yield shown, box, conversation_id, gr.skip(), *listed, title
            box, listed, title = gr.skip(), (gr.skip(),) * len(listed), gr.skip()
        status = status_text(self.engine.status(), self.replies.last_timing)
        listed = self.conversations.listing(conversation_id, user=user)
        yield gr.skip(), gr.skip(), conversation_id, status, *listed, gr.skip()


def _unchanged(box: Any, conversation_id: str) -> tuple:
    """The page's reply outputs (see _page_reply) when no reply starts: only the box may
    change."""
    return gr.skip(), box, conversation_id, gr.skip(), *(gr.skip(),) * LISTING_OUTPUTS, gr.skip()
