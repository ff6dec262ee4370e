"""The screen as an image for the model, in desktop mode: the whole screen, scaled down to the
image limit when it is larger (an 8K display is 33 megapixels)."""

from __future__ import annotations

import math

from PIL import Image, ImageGrab

from .probe import MediaError


def grab_screen(max_image_mp: float) -> Image.Image:
    """The whole screen now (needs a desktop session); MediaError in one sentence without one."""
    try:
        shot = ImageGrab.grab()
    except OSError as exc:  # no display, or the platform's grabber is missing
        raise MediaError(f"The screen could not be captured: {exc}.") from None
    scale = math.sqrt(max_image_mp * 1e6 / (shot.width * shot.height))
    if scale < 1:
        shot = shot.resize((int(shot.width * scale), int(shot.height * scale)), Image.LANCZOS)
    return shot
