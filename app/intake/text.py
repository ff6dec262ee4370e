"""Message text as it is kept and sent."""

from __future__ import annotations

from ..config import Limits
from .probe import MediaError


def valid_text(text: str | None) -> str:
    """Text as it is kept and sent: trimmed, valid UTF-8, no NUL.

    Lone surrogates (possible in JSON and in browsers' strings, impossible to encode as UTF-8)
    become U+FFFD; surrogate pairs become the character they stand for.
    """
    text = (text or "").replace("\x00", "")
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace").strip()


def message_text(text: str | None, limits: Limits) -> str:
    """A message's text as `valid_text`; MediaError when it is over the length limit."""
    text = valid_text(text)
    if len(text) > limits.max_message_chars:
        raise MediaError(
            f"This message is {len(text):,} characters long; Loupe takes at most "
            f"{limits.max_message_chars:,} characters in one message."
        )
    return text

