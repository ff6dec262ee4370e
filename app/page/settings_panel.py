"""The Settings panel: the generation settings (tasks.settings.Settings, in its order and with its
defaults), where recordings go, reading aloud, and Reset to defaults."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from model import (
    AUTO_IMAGE_TOKENS,
    IMAGE_TOKEN_BUDGETS,
    VIDEO_FRAME_TOKEN_BUDGETS,
)

from ..tasks.settings import SETTING_NAMES, Settings
from .voice import DEFAULT_VOICE_ROUTE, VOICE_ROUTES

DEFAULT = Settings()  # what the Settings panel starts with


@dataclass
class SettingsPanel:
    """The panel's components: the generation settings by name, in tasks.settings.Settings'
    order; where recordings go; the read-aloud controls (read by assets/accessibility.js in the
    browser, never by Python); and Reset to defaults."""

    panel: gr.Sidebar
    settings: dict[str, gr.components.Component]
    voice_route: gr.Radio
    auto_read: gr.Checkbox
    read_rate: gr.Slider
    reset: gr.Button


def settings_sidebar() -> SettingsPanel:
    """The settings panel on the right, closed until asked for."""
    with gr.Sidebar(label="Settings", position="right", open=False, elem_id="settings") as panel:
        system_prompt = gr.Textbox(
            DEFAULT.system_prompt,
            label="System prompt",
            info="For new chats: a conversation keeps the one it started with, shown at its top.",
            lines=2,
        )
        temperature = gr.Slider(0.0, 2.0, value=DEFAULT.temperature, step=0.05, label="Temperature")
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
        # `interactive`: Gradio disables a control that no event takes as an input.
        auto_read = gr.Checkbox(
            label="Auto-read answers aloud",
            value=False,
            interactive=True,
            elem_id="auto-read",
        )
        read_rate = gr.Slider(
            0.5,
            2.0,
            value=1.0,
            step=0.1,
            label="Reading rate",
            interactive=True,
            elem_id="read-rate",
        )
        reset = gr.Button("Reset to defaults", size="sm", elem_id="reset-settings")
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
    settings = {name: made[name] for name in SETTING_NAMES}
    return SettingsPanel(panel, settings, voice_route, auto_read, read_rate, reset)
