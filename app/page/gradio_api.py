"""The named Gradio API (/chat, /transcribe, /describe, /new_conversation, /regenerate, /edit,
/export): each call over the reply loop, its refusals one sentence (errors.refused). Every
endpoint acts for the logged-in user of its `request` and sees only that user's conversations."""

from __future__ import annotations

import json
from collections.abc import Iterator

import gradio as gr

from model import (
    AUTO_IMAGE_TOKENS,
    IMAGE_TOKEN_BUDGETS,
    ChatRequest,
    GenerationOptions,
    QueueSlot,
)

from ..history import Conversation
from ..intake.files import check_audio_file
from ..intake.message import display_name
from ..intake.probe import MediaError
from ..intake.text import message_text
from ..tasks.describe import (
    AI_NOTICE,
    DEFAULT_LEVEL,
    LEVELS,
    checked_content,
    level_options,
    level_prompt,
)
from ..tasks.replies import Replies
from ..tasks.reply import Reply, with_dropped_note
from ..tasks.settings import SETTING_NAMES, Settings
from .api_inputs import whole_number
from .errors import refused
from .notices import noted
from .owners import user_of
from .voice import Voice

GONE = "This conversation no longer exists; start a new chat."
EXPORT_FORMATS = ("markdown", "json")
# /chat's settings, which its callers pass by position: the page's, but for Video detail.
CHAT_SETTINGS = tuple(name for name in SETTING_NAMES if name != "video_frame_tokens")


class GradioApi:
    """The named API's endpoints."""

    def __init__(self, replies: Replies, voice: Voice):
        self.replies = replies
        self.voice = voice
        self.history = replies.history
        self.intake = replies.intake
        self.limits = replies.config.limits

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
        # A number, or the string view_api writes for one ('280'): Gradio's own check of the
        # choices is off for this input, so it is made here, in the same words.
        allowed = (AUTO_IMAGE_TOKENS, *IMAGE_TOKEN_BUDGETS)
        if str(image_tokens) not in map(str, allowed):
            raise refused(
                f"The image_tokens input must be one of {', '.join(map(str, allowed))}; "
                f"got {image_tokens!r}."
            )
        image_tokens = int(image_tokens)
        settings = Settings(
            system_prompt, temperature, top_p, top_k, max_new_tokens, thinking, image_tokens
        )
        try:
            system, options = settings.system, settings.options()
        except (TypeError, ValueError) as exc:
            raise refused(exc) from None
        try:
            slot = self.replies.queue_slot()  # a busy Loupe says so before reading any file
        except MediaError as exc:
            raise refused(exc) from None
        with slot:
            user = user_of(request)
            yield from self._chat_reply(message, system, options, conversation_id, slot, user)

    def _chat_reply(
        self,
        message: dict,
        system: str,
        options: GenerationOptions,
        conversation_id: str,
        slot: QueueSlot,
        user: str,
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
            replies = self.replies.answer(conversation_id, system, options, slot, user=user)
            yield from _answers(replies, with_note=True)
            return
        note = self.intake.left_out_note(stored)  # PDF pages not read
        prefix = f"*{note}*\n\n" if note else ""
        request = ChatRequest(tuple(messages), options)
        yield from _answers(self.replies.stream(request, prefix=prefix, slot=slot))

    def transcribe(self, audio: str) -> str:
        """/transcribe: an audio file -> its transcript ("" when no speech is heard)."""
        if audio:
            try:
                check_audio_file(audio, self.limits, display_name(audio))
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
        """Describe an image, a PDF (its first pages) or a video (its frames and sound) at a
        level (brief, detailed, alt_text, read_text, diagram); streams the description, which
        always starts by saying it is AI-generated. check_content gives, once the answer is
        whole, a JSON document: {"notice", "verdict" (null when the answer held none),
        "verdict_problem", "answer"} (see verdict_document).

        With a `conversation_id` (from /new_conversation) the description is kept there, and
        /chat with the same id asks follow-up questions about it.
        """
        if not image:
            raise refused("Send an image, a PDF or a video to describe.")
        try:
            slot = self.replies.queue_slot()  # a busy Loupe says so before decoding the file
        except MediaError as exc:
            raise refused(exc) from None
        with slot:  # given back on leaving unless the reply took it
            try:
                prompt = level_prompt(level)
                files = self.intake.message_files({"files": [image]})
                if [kind for _, kind in files] not in (["image"], ["pdf"], ["video"]):
                    raise MediaError("Send one image, PDF or video to describe.")
                stored = self.intake.stored_user_message(prompt, files, pages_from="")
                if not conversation_id:  # decoded here, so a bad file is refused before
                    alone = Conversation("", "", 0, 0, (stored,))
                    messages = self.intake.model_messages(alone, "")
            except (MediaError, ValueError) as exc:
                raise refused(exc) from None
            if conversation_id:
                user = user_of(request)
                if not self.history.get(conversation_id, user):
                    raise refused(GONE)
                [file] = stored.attachments
                self.replies.ask_for_description(conversation_id, level, file, user)
                options = GenerationOptions()
                replies = self.replies.answer(conversation_id, "", options, slot, user=user)
            else:
                options = level_options(level, GenerationOptions())
                described = ChatRequest(tuple(messages), options)
                notice = "" if level == "check_content" else f"{AI_NOTICE} "
                replies = self.replies.stream(described, prefix=notice, slot=slot)
            if level == "check_content":
                yield verdict_document(replies)
            else:
                yield from _answers(replies, with_note=bool(conversation_id))

    def new_conversation(self, request: gr.Request | None = None) -> str:
        """Start a conversation that /chat can continue; its id."""
        return self.history.create(owner=user_of(request))

    def regenerate(
        self, conversation_id: str, max_new_tokens: int = 512, request: gr.Request | None = None
    ) -> Iterator[str]:
        """Answer the conversation's last message again; streams the new reply."""
        user = user_of(request)
        options = _length_only(max_new_tokens)  # checked before the last answer is dropped
        if not self.replies.drop_last_answer(conversation_id, user):
            raise refused(GONE)
        replies = self.replies.answer(conversation_id, "", options, user=user)
        yield from _answers(replies, with_note=True)

    def edit(
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
            text = message_text(text, self.limits)
        except MediaError as exc:
            raise refused(exc) from None
        self.history.edit_text(conversation_id, index, text)
        replies = self.replies.answer(conversation_id, "", options, user=user)
        yield from _answers(replies, with_note=True)

    def export(
        self, conversation_id: str, format: str = "markdown", request: gr.Request | None = None
    ) -> str:
        """The conversation as Markdown ("markdown") or JSON ("json")."""
        if format not in EXPORT_FORMATS:
            raise refused(f"format must be {' or '.join(EXPORT_FORMATS)}, not {format!r}.")
        user = user_of(request)
        if self.history.get(conversation_id, user) is None:
            raise refused(GONE)
        markdown, json_file = self.history.export(conversation_id, user)
        return (json_file if format == "json" else markdown).read_text()


def _answers(replies: Iterator[Reply], with_note: bool = False) -> Iterator[str]:
    """What an endpoint streams of a reply: its answer as it grows (`with_note`: led by the
    note that the oldest messages were left out); a failure refused in its sentence."""
    for reply in noted(replies):
        if reply.error:
            raise refused(reply.error)
        yield with_dropped_note(reply, reply.answer) if with_note else reply.answer


def verdict_document(replies: Iterator[Reply]) -> str:
    """/describe's Check content answer, once it is whole: a JSON document a program can parse,
    the AI notice beside the verdict object (moderation.Verdict's fields), or a null verdict
    with the sentence saying why the answer held none; the model's answer as it came."""
    answer = ""
    for reply in noted(replies):
        if reply.error:
            raise refused(reply.error)
        answer = reply.answer
    return json.dumps(checked_content(answer), ensure_ascii=False)


def _length_only(max_new_tokens: int) -> GenerationOptions:
    """The API's regenerate and edit: the model's own defaults, the length asked for."""
    return GenerationOptions(max_new_tokens=whole_number(max_new_tokens, "max_new_tokens", 1))


def render_api(api: GradioApi, settings: dict[str, gr.components.Component]) -> None:
    """The named API: its hidden input and output components, and its endpoints. /chat takes the
    page's settings components as inputs, so that its defaults are the page's."""
    with gr.Column(visible=False):  # inputs and outputs of the API endpoints
        api_message = gr.MultimodalTextbox(file_count="multiple")
        api_conversation = gr.Textbox("")
        api_reply = gr.Textbox()
        api_audio = gr.Audio(type="filepath")
        api_transcript = gr.Textbox()
        # A plain file: gr.Image would decode (and re-encode) it before intake could check it.
        api_image = gr.File(type="filepath")
        # Any value reaches the handler, which refuses an unknown level in one sentence.
        api_level = gr.Dropdown(list(LEVELS), value=DEFAULT_LEVEL, allow_custom_value=True)
        api_description = gr.Textbox()
        api_describe_conversation = gr.Textbox("")
        # /chat's Image detail: the page's choices, taken as view_api writes them (strings)
        # as well as numbers; the handler refuses others in one sentence.
        image_detail = settings["image_tokens"]
        api_image_tokens = gr.Dropdown(
            image_detail.choices,
            value=image_detail.value,
            label=image_detail.label,
            allow_custom_value=True,
        )
    # /chat's inputs stay as its callers know them (the HTTP API takes them by position):
    # Video detail, a later setting, is the page's only; /chat uses its default.
    chat_settings = [
        api_image_tokens if name == "image_tokens" else setting
        for name, setting in settings.items()
        if name in CHAT_SETTINGS
    ]
    api_message.submit(
        api.chat,
        [api_message, *chat_settings, api_conversation],
        api_reply,
        api_name="chat",
    )
    api_audio.upload(api.transcribe, api_audio, api_transcript, api_name="transcribe")
    api_image.upload(
        api.describe,
        [api_image, api_level, api_describe_conversation],
        api_description,
        api_name="describe",
    )
    gr.api(api.new_conversation, api_name="new_conversation")
    gr.api(api.regenerate, api_name="regenerate")
    gr.api(api.edit, api_name="edit")
    gr.api(api.export, api_name="export")
