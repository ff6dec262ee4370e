"""Chat messages -> processor inputs for Gemma 4 (chat template, images, audio, thinking)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any, TypeVar

import numpy as np

from .audio import AUDIO_SAMPLE_RATE_HZ, MAX_AUDIO_CLIP_S, to_model_rate
from .detail import image_tokens_for
from .messages import (
    AUTO_IMAGE_TOKENS,
    AudioClip,
    GenerationOptions,
    Message,
    VideoClip,
    turn_starts,
)
from .tool_calls import template_call, template_tools


def normalise_audio(clip: AudioClip) -> np.ndarray:
    """16 kHz mono float32, at most MAX_AUDIO_CLIP_S long. Shape (samples,)."""
    # Cut before resampling so a long clip costs no more than 30 s of work.
    head = AudioClip(clip.samples[: int(MAX_AUDIO_CLIP_S * clip.sample_rate)], clip.sample_rate)
    return to_model_rate(head)[: int(MAX_AUDIO_CLIP_S * AUDIO_SAMPLE_RATE_HZ)]


T = TypeVar("T")

# The processor stamps each frame with frames_indices / fps (as mm:ss). Frames are given with a
# clock of milliseconds as their "index", so a recording with a variable frame rate (browsers')
# is stamped with each frame's own time.
VIDEO_CLOCK_HZ = 1000


def template_messages(messages: tuple[Message, ...] | list[Message]) -> list[dict[str, Any]]:
    """The chat-template form: a content list per turn, images, videos (their frames as an
    array (frames, height, width, 3)), audio, then text; an assistant's tool calls, and the
    id of the call a tool's result answers."""
    rendered = []
    for message in messages:
        content: list[dict[str, Any]] = [
            {"type": "image", "image": image.convert("RGB")} for image in message.images
        ]
        content += [{"type": "video", "video": video_frames(clip)} for clip in message.video]
        content += [{"type": "audio", "audio": normalise_audio(clip)} for clip in message.audio]
        if message.text:
            content.append({"type": "text", "text": message.text})
        rendered.append(with_tool_fields({"role": message.role, "content": content}, message))
    return rendered


def with_tool_fields(rendered: dict[str, Any], message: Message) -> dict[str, Any]:
    """A rendered message with its tool calls, or the id of the call it answers, if any."""
    if message.tool_calls:
        rendered["tool_calls"] = [template_call(call) for call in message.tool_calls]
    if message.role == "tool":
        rendered["tool_call_id"] = message.tool_call_id
    return rendered


def concrete_options(
    messages: tuple[Message, ...] | list[Message], options: GenerationOptions
) -> GenerationOptions:
    """The options with Auto's image budget chosen from the messages' images (no context
    window counted: the engines resolve Auto with it before a request gets here)."""
    if options.image_tokens != AUTO_IMAGE_TOKENS:
        return options
    images = [image for message in messages for image in message.images]
    budget = image_tokens_for(images, options.preferred_image_tokens)
    return replace(options, image_tokens=budget)


def video_frames(clip: VideoClip) -> np.ndarray:
    """A clip's frames as uint8 RGB, shape (frames, height, width, 3)."""
    return np.stack([np.asarray(frame.convert("RGB"), dtype=np.uint8) for frame in clip.frames])


def video_metadata(clip: VideoClip) -> dict[str, Any]:
    """What the processor needs to stamp the frames already chosen with their times (it would
    otherwise assume 24 fps and number them 0, 1, 2, ...)."""
    indices = [round(t * VIDEO_CLOCK_HZ) for t in clip.timestamps_s]
    total = max(round(clip.duration_s * VIDEO_CLOCK_HZ), indices[-1]) + 1
    return {"total_num_frames": total, "fps": VIDEO_CLOCK_HZ, "frames_indices": indices}


def _template_kwargs(
    options: GenerationOptions, messages: tuple[Message, ...] | list[Message] = ()
) -> dict[str, Any]:
    processor_kwargs: dict[str, Any] = {"images_kwargs": {"max_soft_tokens": options.image_tokens}}
    videos = [clip for message in messages for clip in message.video]
    if videos:
        # Frames are chosen by Loupe (about one a second, first and last kept), and their
        # budget is their own: a flat max_soft_tokens would change the images' too.
        processor_kwargs |= {
            "do_sample_frames": False,
            "video_metadata": [video_metadata(clip) for clip in videos],
            "videos_kwargs": {"max_soft_tokens": options.video_frame_tokens},
        }
    return {
        "add_generation_prompt": True,
        "enable_thinking": options.thinking,
        "processor_kwargs": processor_kwargs,
        "tools": template_tools(options.offered_tools),
    }


def render_prompt(
    processor: Any, messages: tuple[Message, ...] | list[Message], options: GenerationOptions
) -> str:
    """The prompt text before placeholder expansion (for inspection and tests)."""
    options = concrete_options(messages, options)
    return processor.apply_chat_template(
        template_messages(messages), tokenize=False, **_template_kwargs(options, messages)
    )


def build_inputs(
    processor: Any, messages: tuple[Message, ...] | list[Message], options: GenerationOptions
) -> Any:
    """Tokenised inputs for `generate`: every processor output, `mm_token_type_ids` included.

    Control tokens typed by a person are encoded as plain text, so a message cannot open a turn
    or smuggle in image placeholders.
    """
    options = concrete_options(messages, options)
    return processor.apply_chat_template(
        template_messages(messages),
        tokenize=True,
        return_dict=True,
        return_tensors="pt",
        sanitize_control_tokens=True,
        **_template_kwargs(options, messages),
    )


class ContextOverflow(ValueError):
    """The newest message alone does not fit in the context window; the message says so."""


def context_length(model_config: Any, cap: int = 0) -> int:
    """Tokens a prompt and its reply may take together: the model's own limit, or `cap` if less."""
    own = model_config.get_text_config().max_position_embeddings
    return min(own, cap) if cap else own


def reply_room(options: GenerationOptions, context_tokens: int) -> int:
    """Tokens kept free for the reply: its length limit, but at most a quarter of the window."""
    return max(1, min(options.max_new_tokens, context_tokens // 4))


def fit_to_context(
    processor: Any,
    messages: tuple[Message, ...] | list[Message],
    options: GenerationOptions,
    context_tokens: int,
) -> tuple[Any, int]:
    """Inputs for `generate` that leave `reply_room` in the window, and how many messages were
    left out to get there (see fit_turns). Tokens are counted by the processor itself, so
    images and audio count as the soft tokens they become."""
    options = concrete_options(tuple(messages), options)
    return fit_turns(
        lambda kept: build_inputs(processor, kept, options),
        _length,
        messages,
        options,
        context_tokens,
    )


def fit_turns(
    build: Callable[[tuple[Message, ...]], T],
    length: Callable[[T], int],
    messages: tuple[Message, ...] | list[Message],
    options: GenerationOptions,
    context_tokens: int,
) -> tuple[T, int]:
    """A prompt built by `build` whose `length` leaves `reply_room` in the window, and how many
    messages were left out to get there; for any engine.

    When the whole conversation is too long, its oldest turns go, whole (a turn starts at one
    of the person's messages), until the rest fits; the system prompt and the newest message
    always stay. Raises ContextOverflow when even the newest turn is too long.
    """
    messages = tuple(messages)
    budget = context_tokens - reply_room(options, context_tokens)
    inputs = build(messages)
    if length(inputs) <= budget:
        return inputs, 0
    kept_head = 1 if messages and messages[0].role == "system" else 0
    starts = turn_starts(messages)
    fitting: tuple[T, int] | None = None
    low, high = 0, len(starts) - 1
    while low <= high:  # the fewest dropped turns that fit; dropping more only shortens it
        middle = (low + high) // 2
        start = starts[middle]
        candidate = build(messages[:kept_head] + messages[start:])
        if length(candidate) <= budget:
            fitting, high = (candidate, start - kept_head), middle - 1
        else:
            low = middle + 1
    if fitting is None:
        newest = messages[:kept_head] + messages[starts[-1] :] if starts else messages
        tokens = length(build(newest))
        raise ContextOverflow(
            f"This message is too long for the model: it takes {tokens} tokens and at "
            f"most {budget} fit with room for the reply; shorten it or send fewer or smaller files."
        )
    return fitting


def _length(inputs: Any) -> int:
    return int(inputs["input_ids"].shape[-1])
