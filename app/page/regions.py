"""The page's regions, as their render functions (layout.py) return them and its events
(events.py) wire them: each a record of named components."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr


@dataclass
class SideList:
    """The conversations on the left: New chat, search, the list by date, this conversation's
    title, rename, delete (with its confirmation) and export."""

    new_chat: gr.Button
    search: gr.Textbox
    groups: list[gr.Radio]
    title: gr.Textbox
    rename: gr.Button
    delete: gr.Button
    confirm_row: gr.Column
    confirm_text: gr.Markdown
    confirm: gr.Button
    cancel: gr.Button
    export: gr.Button
    exported: gr.File


@dataclass
class Composer:
    """The message box, its tools' buttons, describe mode, the hidden buttons the page's script
    presses, and the camera and voice panels."""

    box: gr.MultimodalTextbox
    camera_button: gr.Button
    voice_button: gr.Button
    zoom_button: gr.Button
    capture: gr.Button
    record_screen: gr.Button
    read_aloud: gr.Button
    stop_reading: gr.Button
    settings_button: gr.Button
    shortcuts: gr.Button
    mode: gr.Radio
    describe: gr.Button
    talk_down: gr.Button
    talk_up: gr.Button
    camera_panel: gr.Row
    webcam: gr.Image
    close_camera: gr.Button
    voice_panel: gr.Column
    microphone: gr.Audio


@dataclass
class PageParts:
    """The page's components that events read or change, by region."""

    conversation_id: gr.Textbox
    side: SideList
    banner: gr.Markdown
    chatbot: gr.Chatbot
    composer: Composer
    alt_text: gr.Textbox
    status: gr.Markdown
    settings_panel: gr.Sidebar
    settings: dict[str, gr.components.Component]
    voice_route: gr.Radio
