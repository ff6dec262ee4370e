"""build_ui(): the page's layout and event wiring."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import gradio as gr

from model import DEFAULT_IMAGE_TOKENS, IMAGE_TOKEN_BUDGETS, GenerationOptions, Message

from .handlers import (
    ChatHandlers,
    Reply,
    banner_text,
    conversation,
    file_path,
    status_text,
)
from .media import MediaError

STATUS_REFRESH_S = 1.0
LATEX = [
    {"left": "$$", "right": "$$", "display": True},
    {"left": "$", "right": "$", "display": False},
]


def build_ui(handlers: ChatHandlers) -> gr.Blocks:
    """The chat page, plus the named API endpoint /chat."""
    with gr.Blocks(title="Loupe") as page:
        banner = gr.Markdown(banner_text(handlers.engine.status()), elem_id="banner")
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
        status = gr.Markdown(status_text(handlers.engine.status(), None), elem_id="status")
        settings = [
            system_prompt,
            temperature,
            top_p,
            top_k,
            max_new_tokens,
            thinking,
            image_tokens,
        ]

        def respond(value: dict, turns: list[Message], shown: list, *options: Any) -> Iterator:
            try:
                latest = handlers.user_message(value)
            except MediaError as exc:
                gr.Warning(str(exc))
                yield shown, value, turns, gr.skip()
                return
            if not (latest.text or latest.images or latest.audio):
                yield shown, value, turns, gr.skip()
                return
            system, generation = _options(*options)
            shown = [*shown, *_shown_user(value)]
            messages = conversation(system, turns, latest)
            reply = Reply()
            for reply in handlers.stream(messages, generation):
                yield [*shown, *_shown_reply(reply)], None, turns, gr.skip()
            if reply.error:  # keep what the person wrote, to send again
                yield [*shown, *_shown_reply(reply)], value, turns, gr.skip()
                return
            turns = [*turns, latest, Message("assistant", reply.answer)]
            yield (
                [*shown, *_shown_reply(reply)],
                None,
                turns,
                status_text(handlers.engine.status(), handlers.last_timing),
            )

        chat_event = box.submit(
            respond,
            [box, history, chatbot, *settings],
            [chatbot, box, history, status],
            api_visibility="private",
        )
        box.stop(None, cancels=[chat_event], api_visibility="private")

        def chat(
            message: dict,
            system_prompt: str,
            temperature: float,
            top_p: float,
            top_k: int,
            max_new_tokens: int,
            thinking: bool,
            image_tokens: int,
        ) -> Iterator[str]:
            """Answer one message (text, images, audio files); streams the reply as it grows."""
            try:
                latest = handlers.user_message(message)
            except MediaError as exc:
                raise gr.Error(str(exc)) from None
            system, generation = _options(
                system_prompt, temperature, top_p, top_k, max_new_tokens, thinking, image_tokens
            )
            for reply in handlers.stream(conversation(system, [], latest), generation):
                if reply.error:
                    raise gr.Error(reply.error)
                yield reply.answer

        with gr.Column(visible=False):  # inputs and output of the /chat API endpoint
            api_message = gr.MultimodalTextbox(file_count="multiple")
            api_reply = gr.Textbox()
        api_message.submit(chat, [api_message, *settings], api_reply, api_name="chat")

        def refresh() -> tuple[str, str]:
            engine_status = handlers.engine.status()
            return banner_text(engine_status), status_text(engine_status, handlers.last_timing)

        gr.Timer(STATUS_REFRESH_S).tick(
            refresh, None, [banner, status], api_visibility="private", show_progress="hidden"
        )
    return page


def _options(
    system_prompt: str,
    temperature: float,
    top_p: float,
    top_k: int,
    max_new_tokens: int,
    thinking: bool,
    image_tokens: int,
) -> tuple[str, GenerationOptions]:
    return system_prompt or "", GenerationOptions(
        temperature=float(temperature),
        top_p=float(top_p),
        top_k=int(top_k),
        max_new_tokens=int(max_new_tokens),
        thinking=bool(thinking),
        image_tokens=int(image_tokens),
    )


def _shown_user(value: dict) -> list[dict]:
    files = [
        {"role": "user", "content": {"path": file_path(item)}} for item in value.get("files") or []
    ]
    text = (value.get("text") or "").strip()
    return files + ([{"role": "user", "content": text}] if text else [])


def _shown_reply(reply: Reply) -> list[dict]:
    shown = []
    if reply.thinking:
        shown.append(
            {
                "role": "assistant",
                "content": reply.thinking,
                "metadata": {"title": "Thinking", "status": "done"},
            }
        )
    answer = reply.answer
    if reply.error:
        answer = f"{answer}\n\n⚠️ {reply.error}".strip()
    elif reply.cancelled:
        answer = f"{answer} *(stopped)*".strip()
    shown.append({"role": "assistant", "content": answer or "…"})
    return shown
