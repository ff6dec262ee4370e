"""build_ui(): the page's layout and event wiring."""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from model import DEFAULT_IMAGE_TOKENS, IMAGE_TOKEN_BUDGETS

from .handlers import ChatHandlers
from .voice import DEFAULT_VOICE_ROUTE, VOICE_ROUTES

STATUS_REFRESH_S = 1.0
PUSH_TO_TALK_KEY = "F8"  # the key assets/push_to_talk.js listens for
PUSH_TO_TALK_JS = Path(__file__).resolve().parent.parent / "assets" / "push_to_talk.js"
LATEX = [
    {"left": "$$", "right": "$$", "display": True},
    {"left": "$", "right": "$", "display": False},
]


def build_ui(handlers: ChatHandlers, desktop: bool = False) -> gr.Blocks:
    """The chat page, plus the named API endpoints /chat and /transcribe."""
    banner_now, status_now = handlers.refresh()
    with gr.Blocks(title="Loupe") as page:
        banner = gr.Markdown(banner_now, elem_id="banner")
        chatbot = gr.Chatbot(
            label="Conversation", height=520, latex_delimiters=LATEX, elem_id="chat"
        )
        history = gr.State([])  # list[Message]: what the model sees, images and audio included
        box = gr.MultimodalTextbox(
            file_count="multiple",
            file_types=["image", "audio"],
            stop_btn=True,
            placeholder="Ask about an image, a recording, or anything. Attach or paste files.",
            show_label=False,
            autofocus=True,
            elem_id="message",
        )
        with gr.Row(equal_height=True):
            microphone = gr.Audio(
                sources=["microphone"], type="filepath", label="Voice", elem_id="microphone"
            )
            voice_route = gr.Radio(
                list(VOICE_ROUTES),
                value=DEFAULT_VOICE_ROUTE,
                label="Recordings and audio files",
                elem_id="voice-route",
            )
            gr.Button(
                f"🎙 Hold to talk ({PUSH_TO_TALK_KEY})", visible=desktop, elem_id="push-to-talk"
            )
            # Pressed and released by the page's script while the talk button or key is held.
            talk_down = gr.Button(visible="hidden", elem_id="push-to-talk-down")
            talk_up = gr.Button(visible="hidden", elem_id="push-to-talk-up")
        with gr.Accordion("Settings", open=False):
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
                    label="Image detail (tokens per image)",
                )
                thinking = gr.Checkbox(label="Thinking", value=False)
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

        chat_event = box.submit(
            handlers.respond,
            [box, history, chatbot, voice_route, *settings],
            [chatbot, box, history, status],
            api_visibility="private",
        )
        box.stop(None, cancels=[chat_event], api_visibility="private")

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
            api_reply = gr.Textbox()
            api_audio = gr.Audio(type="filepath")
            api_transcript = gr.Textbox()
        api_message.submit(handlers.chat, [api_message, *settings], api_reply, api_name="chat")
        api_audio.upload(
            handlers.voice.transcribe_endpoint, api_audio, api_transcript, api_name="transcribe"
        )

        gr.Timer(STATUS_REFRESH_S).tick(
            handlers.refresh,
            None,
            [banner, status],
            api_visibility="private",
            show_progress="hidden",
        )
    return page
