"""The page's layout, by region: the conversations on the left, the conversation, the composer
and its tools' panels, the Settings panel on the right; each region's render function returns
its named components, and events.py wires them. build_ui() puts the page together."""

from __future__ import annotations

import gradio as gr

from ..tasks.describe import DESCRIBE_OFF, LEVELS
from .api_inputs import CheckedBlocks
from .batch_view import BATCH_PATH, Batches, render_batch_view
from .chat_events import ChatHandlers
from .desktop import RECORD_SCREEN
from .events import wire_page
from .gradio_api import render_api
from .kept_settings import keep_settings
from .regions import Composer, PageParts, SideList
from .scripts import EXAMPLES, LATEX, PUSH_TO_TALK_KEY, help_dialog
from .settings_panel import settings_sidebar
from .side_list import GROUPS
from .zoom import Zoom, render_zoom_panel


def build_ui(handlers: ChatHandlers, desktop: bool = False) -> gr.Blocks:
    """The chat page, laid out like a chat app's, plus the named API endpoints (see the README).

    Conversations on the left; the conversation and one composer fill the screen; the
    composer's tools (camera, voice, describe mode, reading aloud, settings, shortcuts) open
    what they need when asked; settings live in a panel on the right.
    """
    # Uploads are copied into the conversation they belong to, so Gradio's temporary copies
    # can go: every 10 minutes those over an hour old, and all of them on Ctrl+C.
    with CheckedBlocks(title="Loupe", delete_cache=(600, 3600), fill_height=True) as page:
        # The open conversation's id: a hidden field, not a gr.State, because the page's address
        # follows it (?c=ID), and only a field's changes reach the page's own script.
        conversation_id = gr.Textbox("", visible="hidden", elem_id="conversation-id")
        gr.HTML('<h1 class="visually-hidden">Loupe</h1>', padding=False)
        side = render_side_list()
        banner, chatbot = render_conversation()
        composer = render_composer(desktop)
        render_zoom_panel(
            Zoom(handlers.history, handlers.config.limits),
            composer.zoom_button,
            composer.box,
            conversation_id,
        )
        alt_text, status = render_answer_tools()
        panel = settings_sidebar()
        parts = PageParts(
            conversation_id,
            side,
            banner,
            chatbot,
            composer,
            alt_text,
            status,
            panel.panel,
            panel.settings,
            panel.voice_route,
        )
        wire_page(page, handlers, parts)
        keep_settings(page, panel, composer.mode, handlers.history.data_dir)
        render_api(handlers.api, panel.settings)
    batches = Batches(
        handlers.engine, handlers.config.limits, handlers.config.remote, handlers.history.data_dir
    )
    with page.route("Describe many images", BATCH_PATH, show_in_navbar=False):
        render_batch_view(batches)
    page.unload(batches.close)  # a closed page's run ends, and its files go
    return page


def render_side_list() -> SideList:
    """The conversations on the left (see SideList)."""
    with gr.Sidebar(label="Conversations", elem_id="sidebar"):
        new_chat = gr.Button("New chat", variant="primary", elem_id="new-chat")
        gr.HTML(f'<a href="{BATCH_PATH}" id="batch-link">Describe many images</a>', padding=False)
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

    return SideList(
        new_chat,
        search,
        groups,
        title,
        rename,
        delete,
        confirm_row,
        confirm_text,
        confirm,
        cancel,
        export,
        exported,
    )


def render_conversation() -> tuple[gr.Markdown, gr.Chatbot]:
    """The banner (loading, fallback, failure) and the conversation."""
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
    return banner, chatbot


def render_composer(desktop: bool) -> Composer:
    """The composer (see Composer); the desktop's tools are shown with `desktop`."""
    box = gr.MultimodalTextbox(
        file_count="multiple",
        # Any file: its kind is told by its content (text files have countless extensions).
        file_types=None,
        stop_btn=True,
        placeholder=(
            "Type, attach, drop or paste images, PDFs, videos, audio and text files; Enter sends."
        ),
        show_label=False,
        autofocus=True,
        elem_id="message",
    )
    with gr.Row(elem_id="composer-tools", equal_height=True):
        camera_button = gr.Button("Camera", size="sm", elem_id="camera-button")
        voice_button = gr.Button("Voice", size="sm", elem_id="voice-button")
        zoom_button = gr.Button("Zoom", size="sm", elem_id="zoom-button")
        capture = gr.Button("Capture screen", size="sm", visible=desktop, elem_id="capture-screen")
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
    with gr.Row(visible=False, elem_id="camera-panel") as camera_panel:
        webcam = gr.Image(
            sources=["webcam"],
            type="filepath",
            label="Webcam snapshot",
            scale=1,
            elem_id="webcam",
        )
        # Camera again, and Escape, close it too (accessibility.js).
        close_camera = gr.Button("Close the camera", size="sm", scale=0, elem_id="camera-close")
    with gr.Column(visible=False, elem_id="voice-panel") as voice_panel:
        microphone = gr.Audio(
            sources=["microphone"], type="filepath", label="Voice", elem_id="microphone"
        )
    return Composer(
        box,
        camera_button,
        voice_button,
        zoom_button,
        capture,
        record_screen,
        read_aloud,
        stop_reading,
        settings_button,
        shortcuts,
        mode,
        describe,
        talk_down,
        talk_up,
        camera_panel,
        webcam,
        close_camera,
        voice_panel,
        microphone,
    )


def render_answer_tools() -> tuple[gr.Textbox, gr.Markdown]:
    """Under the composer: the alt-text box (shown after a description) and the status line;
    the shortcuts' help dialog."""
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

    return alt_text, status
