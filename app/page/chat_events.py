"""The functions page events and API endpoints call."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import gradio as gr

from model import (
    BUSY,
    DEFAULT_VIDEO_FRAME_TOKENS,
    ChatRequest,
    ContextTrimmed,
    Engine,
    EngineError,
    Finished,
    GenerationOptions,
    Message,
    QueueSlot,
    ReplyStream,
    TextChunk,
    Timing,
)

from ..config import AppConfig
from ..history import LOCAL_USER, NEW_TITLE, Attachment, Conversation, History, StoredMessage
from ..intake.files import check_audio_file
from ..intake.image import load_image
from ..intake.message import Intake, display_name
from ..intake.probe import MediaError
from ..intake.text import message_text, valid_text
from ..tasks.describe import (
    AI_NOTICE,
    DEFAULT_LEVEL,
    DESCRIBE_OFF,
    LEVELS,
    alt_text_of,
    description_messages,
    level_of,
    level_options,
    level_prompt,
)
from ..tasks.moderation import verdict_in_words
from .api_inputs import whole_number
from .display import Reply, dropped_note, shown_conversation, shown_reply, with_dropped_note
from .errors import refused
from .owners import user_of
from .side_list import GROUPS, Conversations, hidden_alt_text
from .status import banner_text, health_document, status_text
from .voice import TRANSCRIBE, Voice

GONE = "This conversation no longer exists; start a new chat."
LISTING_OUTPUTS = len(GROUPS) + 1  # the side list's date groups, and its search box


class ChatHandlers:
    """Turns page and API input into engine requests, streams replies back and keeps them."""

    def __init__(self, engine: Engine, voice: Voice, history: History, config: AppConfig):
        self.engine = engine
        self.voice = voice
        self.history = history
        self.config = config
        self.intake = Intake(config.limits, voice)
        self.conversations = Conversations(history)
        self.last_timing: Timing | None = None  # the app's most recent reply, for the status line
        self._running: dict[str, ReplyStream] = {}  # conversation id -> the reply being written

    # -- the page --------------------------------------------------------------------------

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
        Streams the page's reply outputs, then the alt-text box. (Each page handler acts for
        `user`, the logged-in user name, and sees only that user's conversations.)"""
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
            slot = self._queue_slot()
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
            options = generation_options(*settings)
            yield from self._page_reply(conversation_id, *options, slot, user=user)

    def regenerate(
        self, conversation_id: str, *settings: Any, user: str = LOCAL_USER
    ) -> Iterator[tuple]:
        """Answer the last message again, replacing the last answer."""
        if self._drop_last_answer(conversation_id, user):
            yield from self._page_reply(conversation_id, *generation_options(*settings), user=user)

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
            yield self._shown(conversation_id, user), *_unchanged(gr.skip(), conversation_id)[1:]
            return
        self.history.edit_text(conversation_id, position, text)
        yield from self._page_reply(conversation_id, *generation_options(*settings), user=user)

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
            [(image, _)] = files
            slot = self._queue_slot()  # a busy Loupe says so before decoding the file
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
            self._ask_for_description(conversation_id, image, level, attachment, user=user)
            box: Any = {"text": value.get("text") or "", "files": []}
            alt_text: Any = hidden_alt_text()
            options = generation_options(*settings)
            for shown, _, *rest in self._page_reply(conversation_id, *options, slot, user=user):
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
        if self.history.get(conversation_id or "", user) is None:
            return  # not this user's reply to stop
        reply_stream = self._running.get(conversation_id)
        if reply_stream is not None:
            reply_stream.cancel()

    def health(self) -> dict[str, Any]:
        """The /health document (see the README)."""
        return health_document(self.engine.status(), self.config)

    def refresh(self) -> tuple[str, str]:
        """The banner and status line, as they stand now."""
        status = self.engine.status()
        return banner_text(status), status_text(status, self.last_timing)

    # -- the API -----------------------------------------------------------------------------

    def chat(
        self,
        message: dict,
        system_prompt: str,
        temperature: float,
        top_p: float,
        top_k: int,
        max_new_tokens: int,
        thinking: bool,
        image_tokens: int,
        conversation_id: str,
        request: gr.Request | None = None,
    ) -> Iterator[str]:
        """Answer a message (text, images, videos, audio files); streams the reply as it grows.

        With a `conversation_id` (from /new_conversation) the exchange is kept in that
        conversation and earlier turns are part of the prompt; without one it stands alone.
        Videos are read at the default Video detail (the page's setting is the page's).
        """
        system, options = generation_options(
            system_prompt,
            temperature,
            top_p,
            top_k,
            max_new_tokens,
            thinking,
            image_tokens,
        )
        try:
            slot = self._queue_slot()  # a busy Loupe says so before reading any file
        except MediaError as exc:
            raise refused(exc) from None
        with slot:
            user = user_of(request)
            yield from self._chat_reply(message, system, options, conversation_id, slot, user=user)

    def _chat_reply(
        self,
        message: dict,
        system: str,
        options: GenerationOptions,
        conversation_id: str,
        slot: QueueSlot,
        *,
        user: str = LOCAL_USER,
    ) -> Iterator[str]:
        """/chat's reply (see `chat`), queued in `slot`."""
        try:
            files = self.intake.message_files(message)
            stored = self.intake.stored_user_message(message.get("text"), files)
            if not conversation_id:
                # PDF pages are rendered here, so a page PDFium cannot render is refused too.
                conversation = Conversation("", "", 0, 0, (stored,))
                messages = self.intake.model_messages(conversation, system)
        except MediaError as exc:
            raise refused(exc) from None
        if conversation_id:
            if not self.history.get(conversation_id, user):
                raise refused(GONE)
            self.history.append(conversation_id, stored)
            yield from self._api_reply(conversation_id, system, options, slot, user=user)
            return
        note = self.intake.left_out_note(stored)  # PDF pages not read
        prefix = f"*{note}*\n\n" if note else ""
        for reply in self.stream(messages, options, prefix=prefix, slot=slot):
            if reply.error:
                raise refused(reply.error)
            yield reply.answer

    def transcribe(self, audio: str) -> str:
        """/transcribe: an audio file -> its transcript ("" when no speech is heard)."""
        if audio:
            try:
                check_audio_file(audio, self.config.limits, display_name(audio))
            except MediaError as exc:
                raise refused(exc) from None
        return self.voice.transcribe_endpoint(audio)

    def describe(
        self,
        image: str,
        level: str = DEFAULT_LEVEL,
        conversation_id: str = "",
        request: gr.Request | None = None,
    ) -> Iterator[str]:
        """Describe an image at a level (brief, detailed, alt_text, read_text, diagram, or
        check_content for a moderation verdict as JSON); streams the description, which always
        starts by saying it is AI-generated.

        With a `conversation_id` (from /new_conversation) the description is kept there, and
        /chat with the same id asks follow-up questions about the image.
        """
        if not image:
            raise refused("Send an image to describe.")
        try:
            slot = self._queue_slot()  # a busy Loupe says so before decoding the image
        except MediaError as exc:
            raise refused(exc) from None
        with slot:  # given back on leaving unless the reply took it
            try:
                messages = description_messages(load_image(image, self.config.limits), level)
            except (MediaError, ValueError) as exc:
                raise refused(exc) from None
            if conversation_id:
                user = user_of(request)
                if not self.history.get(conversation_id, user):
                    raise refused(GONE)
                self._ask_for_description(conversation_id, image, level, user=user)
                yield from self._api_reply(
                    conversation_id, "", GenerationOptions(), slot, user=user
                )
                return
            options = level_options(level, GenerationOptions())
            for reply in self.stream(messages, options, prefix=f"{AI_NOTICE} ", slot=slot):
                if reply.error:
                    raise refused(reply.error)
                yield reply.answer

    def new_conversation(self, request: gr.Request | None = None) -> str:
        """Start a conversation that /chat can continue; its id. (Every API endpoint acts
        for the logged-in user of its `request` and sees only that user's conversations.)"""
        return self.history.create(owner=user_of(request))

    def regenerate_api(
        self, conversation_id: str, max_new_tokens: int = 512, request: gr.Request | None = None
    ) -> Iterator[str]:
        """Answer the conversation's last message again; streams the new reply."""
        user = user_of(request)
        options = _length_only(max_new_tokens)  # checked before the last answer is dropped
        if not self._drop_last_answer(conversation_id, user):
            raise refused(GONE)
        yield from self._api_reply(conversation_id, "", options, user=user)

    def edit_api(
        self,
        conversation_id: str,
        message_index: int,
        text: str,
        max_new_tokens: int = 512,
        request: gr.Request | None = None,
    ) -> Iterator[str]:
        """Replace the text of message `message_index` (one of yours, counted from 0) and
        answer again from there; streams the new reply."""
        user = user_of(request)
        options = _length_only(max_new_tokens)  # checked before the message is changed
        conversation = self.history.get(conversation_id, user)
        if conversation is None:
            raise refused(GONE)
        index = whole_number(message_index, "message_index", 0)
        if not 0 <= index < len(conversation.messages) or (
            conversation.messages[index].role != "user"
        ):
            raise refused(f"Message {index} is not one of your messages in this conversation.")
        try:
            text = message_text(text, self.config.limits)
        except MediaError as exc:
            raise refused(exc) from None
        self.history.edit_text(conversation_id, index, text)
        yield from self._api_reply(conversation_id, "", options, user=user)

    def export_api(
        self, conversation_id: str, format: str = "markdown", request: gr.Request | None = None
    ) -> str:
        """The conversation as Markdown ("markdown") or JSON ("json")."""
        user = user_of(request)
        if self.history.get(conversation_id, user) is None:
            raise refused(GONE)
        markdown, json_file = self.history.export(conversation_id, user)
        return (json_file if format == "json" else markdown).read_text()

    # -- shared ----------------------------------------------------------------------------

    def stream(
        self,
        messages: list[Message],
        options: GenerationOptions,
        owner: str = "",
        prefix: str = "",
        slot: QueueSlot | None = None,
        left_out: int = 0,
    ) -> Iterator[Reply]:
        """Yields the growing reply, which starts with `prefix`; cancels the request if the
        consumer stops early. `slot` is the queue place reserved for it (see `_queue_slot`);
        `left_out` the oldest messages already left out of `messages` (Intake.sent_turns).

        A reply with an `owner` (its conversation) can also be stopped with `stop(owner)`.
        """
        reply = Reply(answer=prefix, dropped=left_out)
        if left_out:
            gr.Info(dropped_note(left_out))  # a pop-up on the page
        reply_stream = self.engine.submit(ChatRequest(tuple(messages), options), slot)
        reply.image_detail = reply_stream.image_detail
        if owner:
            self._running[owner] = reply_stream
        try:
            for event in reply_stream:
                reply.image_detail = reply_stream.image_detail  # a server's window may lower it
                if isinstance(event, TextChunk):
                    if event.thinking:
                        reply.thinking += event.text
                    else:
                        reply.answer += event.text
                elif isinstance(event, Finished):
                    reply.timing, reply.cancelled = event.timing, event.cancelled
                    self.last_timing = event.timing
                elif isinstance(event, EngineError):
                    reply.error = event.message
                elif isinstance(event, ContextTrimmed):
                    reply.dropped = left_out + event.dropped
                    gr.Info(dropped_note(reply.dropped))  # a pop-up on the page
                yield reply
        finally:
            # A client that goes away closes this generator: stop the model too.
            reply_stream.cancel()
            if self._running.get(owner) is reply_stream:
                del self._running[owner]

    def answer(
        self,
        conversation_id: str,
        system_prompt: str,
        options: GenerationOptions,
        slot: QueueSlot | None = None,
        *,
        user: str = LOCAL_USER,
    ) -> Iterator[tuple[list, Reply]]:
        """Reply to the stored conversation: yields (chat shown, reply) as it grows, and keeps
        the answer, marked interrupted if it was stopped (also when the page goes away).
        A description (the last message is a level's prompt) starts with the AI notice, and
        its level may ask for an image detail (see describe.level_options). `slot` is a queue
        place reserved for it; without one a place is reserved before any file is read."""
        conversation = self.history.get(conversation_id, user)
        shown, _ = shown_conversation(conversation)
        level = level_of(conversation.messages[-1].text)
        prefix = f"{AI_NOTICE} " if level else ""
        options = level_options(level, options)
        note = self.intake.left_out_note(conversation.messages[-1])  # PDF pages not read
        prefix += f"*{note}*\n\n" if note else ""
        reply = Reply()
        try:
            slot = slot or self._queue_slot()
            conversation, left_out = self.intake.sent_turns(conversation, system_prompt)
            messages = self.intake.model_messages(conversation, system_prompt)
        except MediaError as exc:  # busy, or a file of this conversation went missing
            if slot is not None:
                slot.release()  # not sent: its place is free again
            reply.error = str(exc)
            yield [*shown, *shown_reply(reply)], reply
            return
        try:
            with slot:
                for reply in self.stream(
                    messages, options, conversation_id, prefix, slot, left_out
                ):
                    yield [*shown, *shown_reply(reply)], reply
        finally:
            # What was written is kept: marked interrupted when it was stopped (also when the
            # page went away) or cut off by a failure, whose sentence the page shows. A reply
            # that failed before its first word is not kept (Regenerate retries it).
            if reply.timing or reply.thinking or reply.answer != prefix:
                finished = reply.timing and not reply.cancelled and reply.error is None
                status = "complete" if finished else "interrupted"
                self.history.append(
                    conversation_id,
                    StoredMessage(
                        "assistant",
                        reply.answer,
                        (),
                        reply.thinking,
                        status,
                        image_detail=reply.image_detail,
                    ),
                )

    def _page_reply(
        self,
        conversation_id: str,
        system_prompt: str,
        options: GenerationOptions,
        slot: QueueSlot | None = None,
        *,
        user: str = LOCAL_USER,
    ) -> Iterator[tuple]:
        """Streams (chat, message box, id, status line, *side list, title) as the reply grows.
        The side list and the title box change at the start; the status line at the end."""
        listed = self.conversations.listing(conversation_id, user=user)
        title = self.history.get(conversation_id, user).title
        for shown, _ in self.answer(conversation_id, system_prompt, options, slot, user=user):
            yield shown, None, conversation_id, gr.skip(), *listed, title
            listed, title = (gr.skip(),) * len(listed), gr.skip()
        status = status_text(self.engine.status(), self.last_timing)
        listed = self.conversations.listing(conversation_id, user=user)
        yield gr.skip(), gr.skip(), conversation_id, status, *listed, gr.skip()

    def _api_reply(
        self,
        conversation_id: str,
        system_prompt: str,
        options: GenerationOptions,
        slot: QueueSlot | None = None,
        *,
        user: str = LOCAL_USER,
    ) -> Iterator[str]:
        for _, reply in self.answer(conversation_id, system_prompt, options, slot, user=user):
            if reply.error:
                raise refused(reply.error)
            yield with_dropped_note(reply, reply.answer)

    def _ask_for_description(
        self,
        conversation_id: str,
        image: str,
        level: str,
        attachment: Attachment | None = None,
        *,
        user: str = LOCAL_USER,
    ) -> None:
        """Keep the level's prompt with the image (or the `attachment` made of it, such as a
        PDF with its pages chosen) as the person's message; a conversation that starts with it
        is named after the level and the file, not after the long prompt."""
        name = display_name(image)
        if self.history.get(conversation_id, user).title == NEW_TITLE:
            self.history.rename(conversation_id, f"{LEVELS[level].label}: {name}")
        attachment = attachment or Attachment("image", image, name)
        self.history.append(
            conversation_id, StoredMessage("user", level_prompt(level), (attachment,))
        )

    def _queue_slot(self) -> QueueSlot:
        """A place in the engine's queue, taken before a request's files are decoded, so that
        a busy Loupe says so at once and decodes nothing; MediaError (busy) when it is full."""
        slot = self.engine.reserve()
        if slot is None:
            raise MediaError(BUSY)
        return slot

    def _drop_last_answer(self, conversation_id: str, user: str) -> bool:
        """Forget the last answer (if the conversation ends with one); False if it is gone."""
        conversation = self.history.get(conversation_id or "", user)
        if conversation is None or not conversation.messages:
            return False
        if conversation.messages[-1].role == "assistant":
            self.history.truncate(conversation_id, len(conversation.messages) - 1)
        return True

    def _shown(self, conversation_id: str, user: str) -> list[dict]:
        return shown_conversation(self.history.get(conversation_id, user))[0]


def _unchanged(box: Any, conversation_id: str) -> tuple:
    """The page's reply outputs (see _page_reply) when no reply starts: only the box may
    change."""
    return gr.skip(), box, conversation_id, gr.skip(), *(gr.skip(),) * LISTING_OUTPUTS, gr.skip()


def generation_options(
    system_prompt: str,
    temperature: float,
    top_p: float,
    top_k: int,
    max_new_tokens: int,
    thinking: bool,
    image_tokens: int,
    video_frame_tokens: int = DEFAULT_VIDEO_FRAME_TOKENS,
) -> tuple[str, GenerationOptions]:
    """The settings panel's values (in its order) as a system prompt and GenerationOptions."""
    return valid_text(system_prompt), GenerationOptions(
        temperature=float(temperature),
        top_p=float(top_p),
        top_k=int(top_k),
        max_new_tokens=int(max_new_tokens),
        thinking=bool(thinking),
        image_tokens=int(image_tokens),
        video_frame_tokens=int(video_frame_tokens),
    )


def _length_only(max_new_tokens: int) -> GenerationOptions:
    """The API's regenerate and edit: the model's own defaults, the length asked for."""
    return GenerationOptions(max_new_tokens=whole_number(max_new_tokens, "max_new_tokens", 1))
