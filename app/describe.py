"""Image descriptions at five levels, for people who cannot see the image; one prompt each."""

from __future__ import annotations

from PIL import Image

from model import Message

AI_NOTICE = "AI description, may be wrong:"
SYSTEM = (
    "You describe images for people who are blind or have low vision. Be accurate and plain; "
    "never guess at what you cannot see, and say when something is unclear."
)
LEVELS = {
    "brief": "Describe this image in one or two sentences: what it is and what matters most.",
    "detailed": (
        "Describe this image in detail: the scene or subject first, then people and objects, "
        "their positions, colours, any text, and the mood. Go from the most to the least "
        "important."
    ),
    "alt_text": (
        "Write alt text for this image, as for an HTML alt attribute: at most 125 characters, "
        "no 'image of'. If the image is purely decorative, answer only: decorative."
    ),
    "read_text": (
        "Read out all the text in this image, word for word, in reading order. Keep line breaks. "
        "Mark any word you are unsure of with [?]. Do not add anything else."
    ),
    "diagram": (
        "This is a diagram or chart. Say what kind it is and what it shows, then its structure: "
        "axes, labels, units, series or parts and how they connect, then the data values and "
        "the main trend or conclusion."
    ),
}
DEFAULT_LEVEL = "detailed"


def description_messages(image: Image.Image, level: str) -> list[Message]:
    """The conversation that asks for a description at `level` (ValueError if unknown)."""
    if level not in LEVELS:
        raise ValueError(f"The level must be one of {', '.join(LEVELS)}, not {level!r}.")
    return [Message("system", SYSTEM), Message("user", LEVELS[level], images=(image,))]
