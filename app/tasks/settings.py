"""The generation settings a person chooses, in one record: the page's Settings panel, the named
API's /chat inputs, describe, batch runs and /v1 all build a reply's options from it, so the
settings' order and defaults are written here only."""

from __future__ import annotations

from dataclasses import dataclass, fields

from model import GenerationOptions

from ..intake.text import valid_text

DEFAULTS = GenerationOptions()


@dataclass(frozen=True)
class Settings:
    """A system prompt and sampling settings, in the order the page's panel shows them (and the
    page's events and /chat take them); each default the model's own."""

    system_prompt: str = ""
    temperature: float = DEFAULTS.temperature
    top_p: float = DEFAULTS.top_p
    top_k: int = DEFAULTS.top_k
    max_new_tokens: int = DEFAULTS.max_new_tokens
    thinking: bool = DEFAULTS.thinking
    image_tokens: int = DEFAULTS.image_tokens
    video_frame_tokens: int = DEFAULTS.video_frame_tokens

    @property
    def system(self) -> str:
        """The system prompt as it is kept and sent (see intake.text.valid_text)."""
        return valid_text(self.system_prompt)

    def options(self) -> GenerationOptions:
        """The settings as the engine takes them; ValueError names one out of range."""
        return GenerationOptions(
            temperature=float(self.temperature),
            top_p=float(self.top_p),
            top_k=int(self.top_k),
            max_new_tokens=int(self.max_new_tokens),
            thinking=bool(self.thinking),
            image_tokens=int(self.image_tokens),
            video_frame_tokens=int(self.video_frame_tokens),
        )


# The settings' names in their order: the page's panel and its events' inputs follow it.
SETTING_NAMES = tuple(field.name for field in fields(Settings))
