"""Zoom into a region: the person marks a rectangle of an image (in the message box or earlier in
the conversation), by dragging over it or by typing its edges, and the region joins the next
message as an image of its own, so the model sees it at full detail beside the whole image.

The region is an ordinary attachment once made: kept with the conversation, exported, and sent
to either engine like any image.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import gradio as gr
from PIL import Image

from ..config import Limits
from ..history import LOCAL_USER, History
from ..intake.files import file_kind, file_path
from ..intake.image import load_image
from ..intake.probe import MediaError
from .box import with_file
from .errors import refused
from .owners import for_user

MIN_REGION_PX = 8  # a smaller region holds nothing the model could read
EDGES = ("Left", "Top", "Width", "Height")  # of the region, in percent of the image
DEFAULT_REGION = (25.0, 25.0, 50.0, 50.0)


class Zoom:
    """The Zoom panel's handlers: which images can be zoomed into, and the region as a file."""

    def __init__(self, history: History, limits: Limits):
        self.history, self.limits = history, limits

    def sources(self, value: dict | None, conversation_id: str, *, user: str = LOCAL_USER) -> dict:
        """The images to choose from, newest first: the message box's, then the conversation's
        (if it is `user`'s). Opens the panel on the first."""
        choices = [
            (f"In the message box: {Path(path).name}", path) for path in self._box_images(value)
        ][::-1]
        conversation = self.history.get(conversation_id, user) if conversation_id else None
        for message in reversed(conversation.messages if conversation else ()):
            for attachment in message.attachments:
                if attachment.kind == "image":
                    choices.append((f"In the conversation: {attachment.name}", attachment.path))
        if not choices:
            raise refused("Attach an image first, or open a conversation with one, to zoom in.")
        return gr.update(choices=choices, value=choices[0][1])

    def attach(
        self,
        value: dict | None,
        source: str,
        left: float,
        top: float,
        width: float,
        height: float,
    ) -> Any:
        """The message box with the region added (the whole image stays where it was)."""
        if not source:
            raise refused("Choose the image to zoom into.")
        try:
            # Upright as the model sees it, every pixel kept: the region is read at full detail.
            image = load_image(Path(source), self.limits, max_pixels=None)
        except MediaError as exc:
            raise refused(exc) from None
        region = crop(image, left, top, width, height)
        with tempfile.NamedTemporaryFile(prefix="region-", suffix=".png", delete=False) as file:
            region.save(file, format="PNG")
        return with_file(value, file.name)

    def _box_images(self, value: dict | None) -> list[str]:
        return [
            path for path in map(file_path, (value or {}).get("files") or []) if self._image(path)
        ]

    def _image(self, path: str) -> bool:
        try:
            return file_kind(path, self.limits) == "image"
        except MediaError:
            return False


def crop(image: Image.Image, left: float, top: float, width: float, height: float) -> Image.Image:
    """The region given in percent of the image, kept inside it; refused in one sentence when
    it is too small to hold anything."""
    edges = [left, top, width, height]
    if any(edge is None for edge in edges):
        raise refused("Give the region's left, top, width and height, in percent.")
    right, bottom = float(left) + max(float(width), 0.0), float(top) + max(float(height), 0.0)
    left, top, right, bottom = (min(max(edge, 0.0), 100.0) for edge in (left, top, right, bottom))
    box = (
        round(image.width * left / 100),
        round(image.height * top / 100),
        round(image.width * right / 100),
        round(image.height * bottom / 100),
    )
    if box[2] - box[0] < MIN_REGION_PX or box[3] - box[1] < MIN_REGION_PX:
        raise refused(f"That region is under {MIN_REGION_PX} pixels across; mark a larger one.")
    return image.crop(box)


def render_zoom_panel(
    zoom: Zoom, button: gr.Button, box: gr.MultimodalTextbox, conversation_id: gr.Textbox
) -> None:
    """The Zoom panel (closed until `button` opens it) and its events: choose an image, drag
    over it or type the region's edges, attach the region to the message box."""
    # The image beside its controls, so that the panel fits a laptop's window with the
    # conversation still in view (assets/page.css caps the image's height).
    with gr.Row(visible=False, elem_id="zoom-panel") as panel:
        preview = gr.Image(
            type="filepath",
            interactive=False,
            label="Drag over the part to zoom into, or type its edges",
            buttons=["fullscreen"],
            scale=3,
            elem_id="zoom-image",
        )
        with gr.Column(scale=2, min_width=320):
            source = gr.Dropdown(
                label="Image to zoom into",
                choices=[],
                container=False,  # its choices say what they are: "In the message box: x.png"
                elem_id="zoom-source",
            )
            with gr.Row():
                edges = [
                    gr.Number(
                        value,
                        label=f"{name} (%)",
                        minimum=0,
                        maximum=100,
                        min_width=70,
                        elem_id=f"zoom-{name.lower()}",
                    )
                    for name, value in zip(EDGES, DEFAULT_REGION, strict=True)
                ]
            with gr.Row():
                attach = gr.Button(
                    "Attach this region", variant="primary", size="sm", elem_id="zoom-attach"
                )
                close = gr.Button("Close", size="sm", elem_id="zoom-close")  # and Escape

    button.click(
        for_user(zoom.sources), [box, conversation_id], source, api_visibility="private"
    ).success(
        lambda: (gr.update(visible=True), *DEFAULT_REGION),
        None,
        [panel, *edges],
        queue=False,
        api_visibility="private",
    )
    source.change(lambda path: path, source, preview, api_visibility="private")
    attach.click(zoom.attach, [box, source, *edges], box, api_visibility="private").success(
        lambda: gr.update(visible=False), None, panel, queue=False, api_visibility="private"
    )
    close.click(
        lambda: gr.update(visible=False), None, panel, queue=False, api_visibility="private"
    )
