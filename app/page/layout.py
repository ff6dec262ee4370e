"""build_ui(): the page's layout and event wiring."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import gradio as gr

from model import (
    AUTO_IMAGE_TOKENS,
    IMAGE_TOKEN_BUDGETS,
    VIDEO_FRAME_TOKEN_BUDGETS,
)

from ..tasks.describe import DEFAULT_LEVEL, DESCRIBE_OFF, LEVELS
from ..tasks.settings import SETTING_NAMES, Settings
from .api_inputs import CheckedBlocks
from .batch_view import BATCH_PATH, Batches, render_batch_view
from .box import with_file
from .chat_events import ChatHandlers
from .desktop import RECORD_SCREEN, ScreenRecorder, capture_screen
from .gradio_api import CHAT_SETTINGS
from .owners import for_user, user_of
from .side_list import ADDRESS_PARAMETER, GROUPS
from .voice import DEFAULT_VOICE_ROUTE, VOICE_ROUTES
from .zoom import Zoom, render_zoom_panel

ASSETS = Path(__file__).resolve().parents[2] / "assets"
STATUS_REFRESH_S = 1.0
DEFAULT = Settings()  # what the Settings panel starts with
PUSH_TO_TALK_KEY = "F8"  # the key assets/push_to_talk.js listens for
PUSH_TO_TALK_JS = ASSETS / "push_to_talk.js"
ACCESSIBILITY_JS = ASSETS / "accessibility.js"  # live region, shortcuts, read aloud, names
ZOOM_JS = ASSETS / "zoom.js"  # marking a region by dragging over the image
PAGE_CSS = ASSETS / "page.css"
# The keys assets/accessibility.js listens for (with Alt+Shift), as the page and README list them.
SHORTCUTS = (
    ("L", "go to the latest answer"),
    ("S", "stop the answer"),
    ("R", "repeat the latest answer"),
    ("M", "go to the message box"),
    ("D", "describe the attached image (at the chosen level, else Detailed)"),
    ("H", "show these shortcuts"),
)
SHOW_HELP_JS = "document.getElementById('help-dialog')?.showModal()"
# Puts the open conversation's id in the page's address (?c=ID), without reloading.
SET_ADDRESS_JS = f"""(id) => {{
    const address = new URL(window.location.href);
    if (id) address.searchParams.set("{ADDRESS_PARAMETER}", id);
    else address.searchParams.delete("{ADDRESS_PARAMETER}");
    window.history.replaceState(null, "", address);
}}"""
# Starts the webcam's live view once Gradio has drawn its "Click to Access Webcam" button: when
# the camera opens, and again after each snapshot, so the next one is one click away.
START_WEBCAM_JS = """() => {
    const start = (tries) => {
        const button = document.querySelector("#webcam [title='grant webcam access'] button");
        if (button) button.click();
        else if (tries > 0) setTimeout(() => start(tries - 1), 100);
    };
    start(30);
}"""
LATEX = [
    {"left": "$$", "right": "$$", "display": True},
    {"left": "$", "right": "$", "display": False},
]
EXAMPLES = [
    {
        "text": "What does this error mean, and how do I fix it?",
        "files": [str(ASSETS / "example-error.png")],
        "icon": str(ASSETS / "example-error.png"),
    },
    {
        "text": "Describe this photo.",
        "files": [str(ASSETS / "example-photo.jpg")],
        "icon": str(ASSETS / "example-photo.jpg"),
    },
]


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


def settings_sidebar() -> tuple[gr.Sidebar, dict[str, gr.components.Component], gr.Radio]:
    """The settings panel on the right, closed until asked for: (the panel, the generation
    settings by name in tasks.settings.Settings' order, where recordings go)."""
    with gr.Sidebar(
        label="Settings", position="right", open=False, elem_id="settings"
    ) as panel:
        system_prompt = gr.Textbox(DEFAULT.system_prompt, label="System prompt", lines=2)
        temperature = gr.Slider(
            0.0, 2.0, value=DEFAULT.temperature, step=0.05, label="Temperature"
        )
        top_p = gr.Slider(0.0, 1.0, value=DEFAULT.top_p, step=0.01, label="Top-p")
        top_k = gr.Slider(0, 200, value=DEFAULT.top_k, step=1, label="Top-k")
        max_new_tokens = gr.Slider(
            16, 4096, value=DEFAULT.max_new_tokens, step=16, label="Max new tokens"
        )
        image_tokens = gr.Dropdown(
            [("Auto", AUTO_IMAGE_TOKENS), *((str(n), n) for n in IMAGE_TOKEN_BUDGETS)],
            value=DEFAULT.image_tokens,
            label="Image detail (tokens per image; Auto: 280 for photos, 560 or 1120 for text)",
            elem_id="image-detail",
        )
        video_frame_tokens = gr.Dropdown(
            [(str(n), n) for n in VIDEO_FRAME_TOKEN_BUDGETS],
            value=DEFAULT.video_frame_tokens,
            label="Video detail (tokens per frame; a video is up to 32 frames)",
            elem_id="video-detail",
        )
        thinking = gr.Checkbox(label="Thinking", value=DEFAULT.thinking)
        voice_route = gr.Radio(
            list(VOICE_ROUTES),
            value=DEFAULT_VOICE_ROUTE,
            label="Recordings and audio files",
            elem_id="voice-route",
        )
        # Read by assets/accessibility.js in the browser, never by Python; `interactive`
        # because Gradio disables a control that no event takes as an input.
        gr.Checkbox(
            label="Auto-read answers aloud",
            value=False,
            interactive=True,
            elem_id="auto-read",
        )
        gr.Slider(
            0.5,
            2.0,
            value=1.0,
            step=0.1,
            label="Reading rate",
            interactive=True,
            elem_id="read-rate",
        )
    made = {
        "system_prompt": system_prompt,
        "temperature": temperature,
        "top_p": top_p,
        "top_k": top_k,
        "max_new_tokens": max_new_tokens,
        "thinking": thinking,
        "image_tokens": image_tokens,
        "video_frame_tokens": video_frame_tokens,
    }
    return panel, {name: made[name] for name in SETTING_NAMES}, voice_route


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


def help_dialog() -> str:
    """The keyboard shortcuts, in a dialog the Shortcuts button (or Alt+Shift+H) opens."""
    rows = "".join(
        f"<tr><td><kbd>Alt+Shift+{key}</kbd></td><td>{what}</td></tr>" for key, what in SHORTCUTS
    )
    return (
        '<dialog id="help-dialog" aria-labelledby="help-title">'
        '<h2 id="help-title">Keyboard shortcuts</h2>'
        f"<table><tbody>{rows}</tbody></table>"
        "<p>Enter sends; Shift+Enter starts a new line.</p>"
        '<form method="dialog"><button id="help-close">Close</button></form>'
        "</dialog>"
    )


def page_js(desktop: bool) -> str:
    """The page's script for launch(js=): the accessibility script, plus push-to-talk on the
    desktop. Each file is one arrow function; this calls them in turn."""
    scripts = [ACCESSIBILITY_JS, ZOOM_JS] + ([PUSH_TO_TALK_JS] if desktop else [])
    calls = "\n".join(f"({path.read_text().strip()})();" for path in scripts)
    return f"() => {{\n{calls}\n}}"
