"""Chat messages -> processor inputs for Gemma 4 (chat template, images, audio, thinking)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .audio import AUDIO_SAMPLE_RATE_HZ, MAX_AUDIO_CLIP_S, to_model_rate
from .messages import AudioClip, GenerationOptions, Message


def normalise_audio(clip: AudioClip) -> np.ndarray:
    """16 kHz mono float32, at most MAX_AUDIO_CLIP_S long. Shape (samples,)."""
    # Cut before resampling so a long clip costs no more than 30 s of work.
    head = AudioClip(clip.samples[: int(MAX_AUDIO_CLIP_S * clip.sample_rate)], clip.sample_rate)
    return to_model_rate(head)[: int(MAX_AUDIO_CLIP_S * AUDIO_SAMPLE_RATE_HZ)]


def template_messages(messages: tuple[Message, ...] | list[Message]) -> list[dict[str, Any]]:
    """The chat-template form: a content list per turn, images then audio then text."""
    rendered = []
    for message in messages:
        content: list[dict[str, Any]] = [
            {"type": "image", "image": image.convert("RGB")} for image in message.images
        ]
        content += [{"type": "audio", "audio": normalise_audio(clip)} for clip in message.audio]
        if message.text:
            content.append({"type": "text", "text": message.text})
        rendered.append({"role": message.role, "content": content})
    return rendered


def _template_kwargs(options: GenerationOptions) -> dict[str, Any]:
    return {
        "add_generation_prompt": True,
        "enable_thinking": options.thinking,
        "processor_kwargs": {"images_kwargs": {"max_soft_tokens": options.image_tokens}},
    }


def render_prompt(
    processor: Any, messages: tuple[Message, ...] | list[Message], options: GenerationOptions
) -> str:
    """The prompt text before placeholder expansion (for inspection and tests)."""
    return processor.apply_chat_template(
        template_messages(messages), tokenize=False, **_template_kwargs(options)
    )


def build_inputs(
    processor: Any, messages: tuple[Message, ...] | list[Message], options: GenerationOptions
) -> Any:
    """Tokenised inputs for `generate`: every processor output, `mm_token_type_ids` included.

    Control tokens typed by a person are encoded as plain text, so a message cannot open a turn
    or smuggle in image placeholders.
    """
    return processor.apply_chat_template(
        template_messages(messages),
        tokenize=True,
        return_dict=True,
        return_tensors="pt",
        sanitize_control_tokens=True,
        **_template_kwargs(options),
    )
