"""build_ui(): the page's layout and event wiring."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import Any

import gradio as gr

from ..tasks.describe import DEFAULT_LEVEL, DESCRIBE_OFF, LEVELS
from .api_inputs import CheckedBlocks
from .batch_view import BATCH_PATH, Batches, render_batch_view
from .box import with_file
from .chat_events import ChatHandlers
from .desktop import RECORD_SCREEN, ScreenRecorder, capture_screen
from .gradio_api import CHAT_SETTINGS
from .owners import for_user, user_of
from .scripts import (
    EXAMPLES,
    LATEX,
    PUSH_TO_TALK_KEY,
    SET_ADDRESS_JS,
    SHOW_HELP_JS,
    START_WEBCAM_JS,
    help_dialog,
)
from .settings_panel import settings_sidebar
from .side_list import GROUPS
from .zoom import Zoom, render_zoom_panel

STATUS_REFRESH_S = 1.0


def build_ui(handlers: ChatHandlers, desktop: bool = False) -> gr.Blocks:
    """The chat page, laid out like a chat app's, plus the named API endpoints (see the README).

    Conversations on the left; the conversation and one composer fill the screen; the
    composer's tools (camera, voice, describe mode, reading aloud, settings, shortcuts) open
    what they need when asked; settings live in a panel on the right.
    """
    conversations = handlers.conversations
    # Uploads are copied into the conversation they belong to, so Gradio's temporary copies
    # can go: every 10 minutes those over an hour old, and all of them on Ctrl+C.
    with CheckedBlocks(title="Loupe", delete_cache=(600, 3600), fill_height=True) as page:
        # The open conversation's id: a hidden field, not a gr.State, because the page's address
        # follows it (?c=ID), and only a field's changes reach the page's own script.
        conversation_id = gr.Textbox("", visible="hidden", elem_id="conversation-id")
        gr.HTML('<h1 class="visually-hidden">Loupe</h1>', padding=False)
        with gr.Sidebar(label="Conversations", elem_id="sidebar"):
            new_chat = gr.Button("New chat", variant="primary", elem_id="new-chat")
            gr.HTML(
                f'<a href="{BATCH_PATH}" id="batch-link">Describe many images</a>', padding=False
            )
            search = gr.Textbox(
                label="Search conversations",
                placeholder="A word from a title or a message",
                max_lines=1,
                elem_id="search",
            )
            groups = [
                gr.Radio(
                    [],
                    label=name,
                    visible=False,
                    interactive=True,
                    elem_id=f"conversations-{name.lower().replace(' ', '-')}",
                    elem_classes="conversation-group",
                )
                for name in GROUPS
            ]
            with gr.Accordion("This conversation", open=False, elem_id="this-conversation"):
                title = gr.Textbox(label="Title", elem_id="title")
                with gr.Row():
                    rename = gr.Button("Rename", size="sm", elem_id="rename")
                    delete = gr.Button("Delete", size="sm", variant="stop", elem_id="delete")
                with gr.Column(visible=False, elem_id="confirm-delete") as confirm_row:
                    confirm_text = gr.Markdown()
                    with gr.Row():
                        confirm = gr.Button("Delete it", size="sm", variant="stop")
                        cancel = gr.Button("Keep it", size="sm", elem_id="keep")
                export = gr.Button("Export as Markdown and JSON", size="sm", elem_id="export")
                exported = gr.File(
                    label="Exports", file_count="multiple", interactive=False, elem_id="exports"
                )

        # Filled when the page loads, so a page opened later never shows a stale state.
        banner = gr.Markdown("", elem_id="banner")
        chatbot = gr.Chatbot(
            label="Conversation",
            height=None,
            scale=1,
            latex_delimiters=LATEX,
            editable="user",
            buttons=["copy", "copy_all"],  # no Share: it posts to Hugging Face, not local
            elem_id="chat",
            placeholder="Ask about a screenshot, a photo or a recording, or just chat.",
            examples=EXAMPLES,
        )
        box = gr.MultimodalTextbox(
            file_count="multiple",
            file_types=["image", "audio", "video", ".pdf", ".mkv"],
            stop_btn=True,
            placeholder="Type, attach, drop or paste images, PDFs, videos and audio; Enter sends.",
            show_label=False,
            autofocus=True,
            elem_id="message",
        )
        with gr.Row(elem_id="composer-tools", equal_height=True):
            camera_button = gr.Button("Camera", size="sm", elem_id="camera-button")
            voice_button = gr.Button("Voice", size="sm", elem_id="voice-button")
            zoom_button = gr.Button("Zoom", size="sm", elem_id="zoom-button")
            capture = gr.Button(
                "Capture screen", size="sm", visible=desktop, elem_id="capture-screen"
            )
            # Up to 30 s of the whole screen; pressed again (Stop recording), it is attached.
            record_screen = gr.Button(
                RECORD_SCREEN, size="sm", visible=desktop, elem_id="record-screen"
            )
            gr.Button(
                f"Hold to talk ({PUSH_TO_TALK_KEY})",
                size="sm",
                visible=desktop,
                elem_id="push-to-talk",
            )
            read_aloud = gr.Button("Read aloud", size="sm", elem_id="read-aloud")
            stop_reading = gr.Button("Stop reading", size="sm", elem_id="stop-reading")
            settings_button = gr.Button("Settings", size="sm", elem_id="settings-button")
            shortcuts = gr.Button("Shortcuts", size="sm", elem_id="help-button")
        mode = gr.Radio(
            [("Off", DESCRIBE_OFF), *((spec.label, name) for name, spec in LEVELS.items())],
            value=DESCRIBE_OFF,
            label="Describe images",
            elem_id="describe-level",
        )
        # Pressed by the page's script: Alt+Shift+D, and the push-to-talk button or key.
        describe = gr.Button(visible="hidden", elem_id="describe-button")
        talk_down = gr.Button(visible="hidden", elem_id="push-to-talk-down")
        talk_up = gr.Button(visible="hidden", elem_id="push-to-talk-up")
        with gr.Column(visible=False, elem_id="camera-panel") as camera_panel:
            webcam = gr.Image(
                sources=["webcam"], type="filepath", label="Webcam snapshot", elem_id="webcam"
            )
        with gr.Column(visible=False, elem_id="voice-panel") as voice_panel:
            microphone = gr.Audio(
                sources=["microphone"], type="filepath", label="Voice", elem_id="microphone"
            )
        render_zoom_panel(
            Zoom(handlers.history, handlers.config.limits), zoom_button, box, conversation_id
        )
        alt_text = gr.Textbox(
            label="Alt text",
            lines=2,
            interactive=True,
            buttons=["copy"],
            visible=False,
            elem_id="alt-text",
        )
        status = gr.Markdown("", elem_id="status")
        gr.HTML(help_dialog(), padding=False)

        settings_panel, settings, voice_route = settings_sidebar()
        listing = [*groups, search]
        reply_outputs = [chatbot, box, conversation_id, status, *listing, title]
        opened = [chatbot, conversation_id, title, alt_text, exported]
        fresh_chat = [*opened, box, *listing]

        sent = box.submit(
            for_user(handlers.send),
            [box, conversation_id, mode, voice_route, *settings.values()],
            [*reply_outputs, alt_text],
            api_visibility="private",
        )
        regenerated = chatbot.retry(
            for_user(handlers.regenerate),
            [conversation_id, *settings.values()],
            reply_outputs,
            api_name="page_regenerate",
            api_visibility="private",
        )
        edited = chatbot.edit(
            edit_for_user(handlers),
            [conversation_id, *settings.values()],
            reply_outputs,
            api_name="page_edit",
            api_visibility="private",
        )
        described = describe.click(
            for_user(handlers.describe_page),
            [box, conversation_id, mode, *settings.values()],
            [*reply_outputs, alt_text],
            api_visibility="private",
        )
        # Stop asks the model to stop; the reply then ends by itself, shown and kept as stopped.
        box.stop(for_user(handlers.stop), conversation_id, api_visibility="private", queue=False)
        # Leaving a conversation while its reply is written ends that reply (kept as stopped).
        replies = [sent, regenerated, edited, described]
        # Reading aloud happens in the browser (its speech synthesis works offline).
        read_aloud.click(None, js="() => window.loupe.readLatest()")
        stop_reading.click(None, js="() => window.loupe.stopReading()")
        shortcuts.click(None, js=f"() => {SHOW_HELP_JS}")
        chatbot.example_select(example_into_box, None, box, api_visibility="private")

        for group in groups:
            group.input(
                for_user(conversations.open),
                [group, search],
                [*opened, *groups],
                api_visibility="private",
                cancels=replies,
                show_progress="hidden",  # instant; and the live region says Generating on progress
            )
        search.input(
            for_user(conversations.groups),
            [conversation_id, search],
            groups,
            api_visibility="private",
            show_progress="hidden",
        )
        # The chat's own trash icon clears the view: it starts a new chat, as New chat does, so
        # the model no longer sees what was cleared (the conversation stays in the list).
        gr.on(
            [new_chat.click, chatbot.clear],
            for_user(conversations.new_chat),
            None,
            fresh_chat,
            api_visibility="private",
            cancels=replies,
            show_progress="hidden",
        )
        rename.click(
            for_user(conversations.rename),
            [conversation_id, title],
            listing,
            api_visibility="private",
        )
        delete.click(
            for_user(conversations.ask_to_delete),
            conversation_id,
            [confirm_row, confirm_text],
            api_visibility="private",
        )
        confirm.click(
            for_user(conversations.delete),
            conversation_id,
            [*fresh_chat, confirm_row],
            api_visibility="private",
            cancels=replies,
            show_progress="hidden",
        )
        cancel.click(lambda: gr.update(visible=False), None, confirm_row, queue=False)
        export.click(
            for_user(conversations.export_files),
            conversation_id,
            exported,
            api_visibility="private",
        )
        # The address names the open conversation, so a reload (or a bookmark) opens it again.
        conversation_id.change(None, conversation_id, js=SET_ADDRESS_JS)

        settings_button.click(lambda: gr.Sidebar(open=True), None, settings_panel, queue=False)
        camera_button.click(
            lambda: gr.update(visible=True), None, camera_panel, queue=False
        ).then(None, js=START_WEBCAM_JS)
        voice_button.click(lambda: gr.update(visible=True), None, voice_panel, queue=False)
        webcam.input(
            attach_snapshot, [box, webcam], [box, webcam], api_visibility="private"
        ).then(None, js=START_WEBCAM_JS)
        record_screen.click(
            ScreenRecorder().toggle, box, [box, record_screen], api_visibility="private"
        )
        capture.click(
            functools.partial(capture_screen, max_image_mp=handlers.config.limits.max_image_mp),
            box,
            box,
            api_visibility="private",
        )
        microphone.stop_recording(
            handlers.voice.take_recording,
            [microphone, box, voice_route],
            [box, microphone],
            api_visibility="private",
        )
        talk_down.click(handlers.voice.start_local, api_visibility="private")
        talk_up.click(handlers.voice.stop_local, [box, voice_route], box, api_visibility="private")

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
        # /chat's inputs stay as its callers know them (the HTTP API takes them by position):
        # Video detail, a later setting, is the page's only; /chat uses its default.
        chat_settings = [setting for name, setting in settings.items() if name in CHAT_SETTINGS]
        api_message.submit(
            handlers.api.chat,
            [api_message, *chat_settings, api_conversation],
            api_reply,
            api_name="chat",
        )
        api_audio.upload(handlers.api.transcribe, api_audio, api_transcript, api_name="transcribe")
        api_image.upload(
            handlers.api.describe,
            [api_image, api_level, api_describe_conversation],
            api_description,
            api_name="describe",
        )
        gr.api(handlers.api.new_conversation, api_name="new_conversation")
        gr.api(handlers.api.regenerate, api_name="regenerate")
        gr.api(handlers.api.edit, api_name="edit")
        gr.api(handlers.api.export, api_name="export")

        page.load(
            conversations.open_address,
            None,
            [*opened, *groups],
            api_visibility="private",
            show_progress="hidden",
        )
        timer = gr.Timer(STATUS_REFRESH_S)
        gr.on(
            [page.load, timer.tick],
            handlers.refresh,
            None,
            [banner, status],
            api_visibility="private",
            show_progress="hidden",
        )
    batches = Batches(
        handlers.engine, handlers.config.limits, handlers.config.remote, handlers.history.data_dir
    )
    with page.route("Describe many images", BATCH_PATH, show_in_navbar=False):
        render_batch_view(batches)
    page.unload(batches.close)  # a closed page's run ends, and its files go
    return page


def edit_for_user(handlers: ChatHandlers) -> Callable[..., Iterator[tuple]]:
    """The chat's edit event: for_user's, with the edit's data (which Gradio passes to a
    parameter annotated gr.EditData) before the settings."""

    def edited(
        request: gr.Request, conversation_id: str, edit: gr.EditData, *settings: Any
    ) -> Iterator[tuple]:
        yield from handlers.edit(conversation_id, edit, *settings, user=user_of(request))

    return edited


def example_into_box(selected: gr.SelectData) -> dict:
    """An example picked in the empty chat goes into the message box, to send or change."""
    example = selected.value
    files = [item["path"] if isinstance(item, dict) else item for item in example.get("files", [])]
    return {"text": example.get("text", ""), "files": files}


def attach_snapshot(value: dict | None, snapshot: str | None) -> tuple:
    """A webcam snapshot joins the message box, and the webcam is emptied for the next."""
    return with_file(value, snapshot), None
