"""build_ui(): the page's layout and event wiring."""

from __future__ import annotations

import functools
from pathlib import Path

import gradio as gr

from model import DEFAULT_IMAGE_TOKENS, IMAGE_TOKEN_BUDGETS

from .describe import DEFAULT_LEVEL, LEVELS
from .desktop import capture_screen
from .handlers import ChatHandlers
from .media import with_file
from .voice import DEFAULT_VOICE_ROUTE, VOICE_ROUTES

ASSETS = Path(__file__).resolve().parent.parent / "assets"
STATUS_REFRESH_S = 1.0
PUSH_TO_TALK_KEY = "F8"  # the key assets/push_to_talk.js listens for
PUSH_TO_TALK_JS = ASSETS / "push_to_talk.js"
ACCESSIBILITY_JS = ASSETS / "accessibility.js"  # live region, shortcuts, read aloud, names
PAGE_CSS = ASSETS / "page.css"
# The keys assets/accessibility.js listens for (with Alt+Shift), as the page and README list them.
SHORTCUTS = (
    ("L", "go to the latest answer"),
    ("S", "stop the answer"),
    ("R", "repeat the latest answer"),
    ("M", "go to the message box"),
    ("D", "describe the attached image"),
)
LATEX = [
    {"left": "$$", "right": "$$", "display": True},
    {"left": "$", "right": "$", "display": False},
]
EXAMPLES = [
    {
        "text": "What does this error mean, and how do I fix it?",
        "files": [str(ASSETS / "example-error.png")],
    },
    {"text": "Describe this photo.", "files": [str(ASSETS / "example-photo.jpg")]},
]


def build_ui(handlers: ChatHandlers, desktop: bool = False) -> gr.Blocks:
    """The chat page, plus the named API endpoints (see the README)."""
    banner_now, status_now = handlers.refresh()
    # Uploads are copied into the conversation they belong to, so Gradio's temporary copies
    # can go: every 10 minutes those over an hour old, and all of them on Ctrl+C.
    with gr.Blocks(title="Loupe", delete_cache=(600, 3600)) as page:
        conversation_id = gr.State("")
        gr.HTML('<h1 class="visually-hidden">Loupe</h1>', padding=False)
        with gr.Sidebar(label="Conversations", elem_id="sidebar"):
            new_chat = gr.Button("New chat", variant="primary", elem_id="new-chat")
            conversations = gr.Radio(
                [], label="Saved conversations", elem_id="conversations", interactive=True
            )
            title = gr.Textbox(label="Title of this conversation", elem_id="title")
            with gr.Row():
                rename = gr.Button("Rename", size="sm")
                delete = gr.Button("Delete", size="sm", variant="stop")
            export = gr.Button("Export as Markdown and JSON", size="sm")
            exported = gr.File(label="Exports", file_count="multiple", interactive=False)

        banner = gr.Markdown(banner_now, elem_id="banner")
        chatbot = gr.Chatbot(
            label="Conversation",
            height=520,
            latex_delimiters=LATEX,
            editable="user",
            buttons=["copy", "copy_all"],  # no Share: it posts to Hugging Face, not local
            elem_id="chat",
            placeholder="Ask about a screenshot, a photo or a recording, or just chat.",
        )
        box = gr.MultimodalTextbox(
            file_count="multiple",
            file_types=["image", "audio"],
            stop_btn=True,
            placeholder="Type, attach, drop or paste images and audio; Enter sends.",
            show_label=False,
            autofocus=True,
            elem_id="message",
        )
        with gr.Row(elem_id="describe", equal_height=True):
            level = gr.Radio(
                [(spec.label, name) for name, spec in LEVELS.items()],
                value=DEFAULT_LEVEL,
                label="Description level",
                elem_id="describe-level",
                scale=4,
            )
            describe = gr.Button("Describe image", elem_id="describe-button", scale=1)
        alt_text = gr.Textbox(
            label="Alt text",
            lines=2,
            interactive=True,
            buttons=["copy"],
            visible=False,
            elem_id="alt-text",
        )
        gr.Markdown(shortcuts_text(), elem_id="shortcuts")
        with gr.Row():
            regenerate = gr.Button("Regenerate", size="sm", elem_id="regenerate")
            read_aloud = gr.Button("Read aloud", size="sm", elem_id="read-aloud")
            stop_reading = gr.Button("Stop reading", size="sm", elem_id="stop-reading")
            capture = gr.Button(
                "Capture screen", size="sm", visible=desktop, elem_id="capture-screen"
            )
        with gr.Row(equal_height=True):
            webcam = gr.Image(
                sources=["webcam"], type="filepath", label="Webcam snapshot", elem_id="webcam"
            )
            microphone = gr.Audio(
                sources=["microphone"], type="filepath", label="Voice", elem_id="microphone"
            )
            with gr.Column():
                voice_route = gr.Radio(
                    list(VOICE_ROUTES),
                    value=DEFAULT_VOICE_ROUTE,
                    label="Recordings and audio files",
                    elem_id="voice-route",
                )
                gr.Button(
                    f"Hold to talk ({PUSH_TO_TALK_KEY})", visible=desktop, elem_id="push-to-talk"
                )
                # Pressed and released by the page's script while the talk button or key is held.
                talk_down = gr.Button(visible="hidden", elem_id="push-to-talk-down")
                talk_up = gr.Button(visible="hidden", elem_id="push-to-talk-up")
        gr.Examples(EXAMPLES, inputs=[box], label="Try an example")
        with gr.Accordion("Settings", open=False, elem_id="settings"):
            system_prompt = gr.Textbox("", label="System prompt", lines=2)
            with gr.Row():
                temperature = gr.Slider(0.0, 2.0, value=1.0, step=0.05, label="Temperature")
                top_p = gr.Slider(0.0, 1.0, value=0.95, step=0.01, label="Top-p")
                top_k = gr.Slider(0, 200, value=64, step=1, label="Top-k")
            with gr.Row():
                max_new_tokens = gr.Slider(16, 4096, value=512, step=16, label="Max new tokens")
                image_tokens = gr.Dropdown(
                    list(IMAGE_TOKEN_BUDGETS),
                    value=DEFAULT_IMAGE_TOKENS,
                    label="Image detail (tokens per image: more reads small text better)",
                )
                thinking = gr.Checkbox(label="Thinking", value=False)
            # Read by assets/accessibility.js in the browser, never by Python; `interactive`
            # because Gradio disables a control that no event takes as an input.
            with gr.Row():
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
        status = gr.Markdown(status_now, elem_id="status")
        settings = [
            system_prompt,
            temperature,
            top_p,
            top_k,
            max_new_tokens,
            thinking,
            image_tokens,
        ]
        reply_outputs = [chatbot, box, conversation_id, status, conversations, title]

        sent = box.submit(
            handlers.respond,
            [box, conversation_id, voice_route, *settings],
            reply_outputs,
            api_visibility="private",
        )
        regenerated = gr.on(
            [regenerate.click, chatbot.retry],
            handlers.regenerate,
            [conversation_id, *settings],
            reply_outputs,
            api_name="page_regenerate",
            api_visibility="private",
        )
        edited = chatbot.edit(
            handlers.edit,
            [conversation_id, *settings],
            reply_outputs,
            api_name="page_edit",
            api_visibility="private",
        )
        described = describe.click(
            handlers.describe_page,
            [box, conversation_id, level, *settings],
            [*reply_outputs, alt_text],
            api_visibility="private",
        )
        # Stop asks the model to stop; the reply then ends by itself, shown and kept as stopped.
        box.stop(handlers.stop, conversation_id, api_visibility="private", queue=False)
        # Leaving a conversation while its reply is written ends that reply (kept as stopped).
        replies = [sent, regenerated, edited, described]
        # Reading aloud happens in the browser (its speech synthesis works offline).
        read_aloud.click(None, js="() => window.loupe.readLatest()")
        stop_reading.click(None, js="() => window.loupe.stopReading()")

        conversations.input(
            handlers.open_conversation,
            conversations,
            [chatbot, conversation_id, title],
            api_visibility="private",
            cancels=replies,
        )
        new_chat.click(
            handlers.new_chat,
            None,
            [chatbot, conversation_id, title, conversations],
            api_visibility="private",
            cancels=replies,
        )
        rename.click(
            handlers.rename, [conversation_id, title], conversations, api_visibility="private"
        )
        delete.click(
            handlers.delete,
            conversation_id,
            [chatbot, conversation_id, title, conversations],
            api_visibility="private",
            cancels=replies,
        )
        export.click(handlers.export_files, conversation_id, exported, api_visibility="private")

        webcam.input(with_file, [box, webcam], box, api_visibility="private")
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
            api_level = gr.Dropdown(list(LEVELS), value=DEFAULT_LEVEL)
            api_description = gr.Textbox()
            api_describe_conversation = gr.Textbox("")
        api_message.submit(
            handlers.chat, [api_message, *settings, api_conversation], api_reply, api_name="chat"
        )
        api_audio.upload(handlers.transcribe, api_audio, api_transcript, api_name="transcribe")
        api_image.upload(
            handlers.describe,
            [api_image, api_level, api_describe_conversation],
            api_description,
            api_name="describe",
        )
        gr.api(handlers.new_conversation, api_name="new_conversation")
        gr.api(handlers.regenerate_api, api_name="regenerate")
        gr.api(handlers.edit_api, api_name="edit")
        gr.api(handlers.export_api, api_name="export")

        page.load(
            lambda: handlers.conversation_list(None),
            None,
            conversations,
            api_visibility="private",
        )
        gr.Timer(STATUS_REFRESH_S).tick(
            handlers.refresh,
            None,
            [banner, status],
            api_visibility="private",
            show_progress="hidden",
        )
    return page


def shortcuts_text() -> str:
    """The keyboard shortcuts, as the page shows them."""
    keys = " · ".join(f"**Alt+Shift+{key}** {what}" for key, what in SHORTCUTS)
    return f"Keyboard shortcuts: {keys}."


def page_js(desktop: bool) -> str:
    """The page's script for launch(js=): the accessibility script, plus push-to-talk on the
    desktop. Each file is one arrow function; this calls them in turn."""
    scripts = [ACCESSIBILITY_JS] + ([PUSH_TO_TALK_JS] if desktop else [])
    calls = "\n".join(f"({path.read_text().strip()})();" for path in scripts)
    return f"() => {{\n{calls}\n}}"
