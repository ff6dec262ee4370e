"""build_ui(): the page's layout and event wiring."""

from __future__ import annotations

import gradio as gr

from model import DEFAULT_IMAGE_TOKENS, IMAGE_TOKEN_BUDGETS

from .handlers import ChatHandlers

STATUS_REFRESH_S = 1.0
LATEX = [
    {"left": "$$", "right": "$$", "display": True},
    {"left": "$", "right": "$", "display": False},
]


def build_ui(handlers: ChatHandlers) -> gr.Blocks:
    """The chat page, plus the named API endpoint /chat."""
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
            [box, history, chatbot, *settings],
            [chatbot, box, history, status],
            api_visibility="private",
        )
        box.stop(None, cancels=[chat_event], api_visibility="private")

        with gr.Column(visible=False):  # inputs and output of the /chat API endpoint
            api_message = gr.MultimodalTextbox(file_count="multiple")
            api_reply = gr.Textbox()
        api_message.submit(handlers.chat, [api_message, *settings], api_reply, api_name="chat")

        gr.Timer(STATUS_REFRESH_S).tick(
            handlers.refresh,
            None,
            [banner, status],
            api_visibility="private",
            show_progress="hidden",
        )
    return page
