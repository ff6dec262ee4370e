"""Image and audio intake: decode uploaded files into what the model package takes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
from PIL import Image, ImageOps

from model import AudioClip

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp", ".tif", ".tiff"})
AUDIO_SUFFIXES = frozenset(
    {".wav", ".mp3", ".flac", ".ogg", ".oga", ".opus", ".m4a", ".aac", ".webm"}
)


class MediaError(ValueError):
    """A file could not be used; the message is one sentence for the person."""


def load_image(path: str | Path) -> Image.Image:
    """An upright RGB image; transparency is composited onto white."""
    name = Path(path).name
    try:
        with Image.open(path) as opened:
            opened.load()  # decode fully now, so a truncated file fails here
            image = ImageOps.exif_transpose(opened)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        if "truncated" in str(exc):
            raise MediaError(f"{name} is cut short: the image file is incomplete.") from exc
        raise MediaError(f"{name} is not an image Loupe can read.") from exc
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def load_audio(path: str | Path) -> AudioClip:
    """The file's audio as float32 samples, shape (samples, channels), at its own rate."""
    import av

    name = Path(path).name
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise MediaError(f"{name} has no audio in it.")
            stream = container.streams.audio[0]
            planes = [frame.to_ndarray() for frame in _float_frames(container, stream)]
            rate = stream.rate
    except MediaError:
        raise
    except Exception as exc:  # PyAV raises many types for corrupt input
        raise MediaError(f"{name} is not an audio file Loupe can read.") from exc
    if not planes or not rate:
        raise MediaError(f"{name} holds no audio.")
    samples = np.concatenate(planes, axis=1).T  # (channels, n) planes -> (n, channels)
    if samples.shape[0] == 0:
        raise MediaError(f"{name} holds no audio.")
    return AudioClip(np.ascontiguousarray(samples, dtype=np.float32), rate)


def _float_frames(container, stream):  # noqa: ANN001, ANN202 - PyAV objects
    """Decoded frames as planar float32, keeping the file's rate and channels."""
    import av

    resampler = av.AudioResampler(format="fltp", layout=stream.layout.name, rate=stream.rate)
    for frame in container.decode(stream):
        yield from resampler.resample(frame)
    yield from resampler.resample(None)


def file_path(item: Any) -> str:
    """Gradio passes files as paths, dicts with a path, or FileData-like objects."""
    if isinstance(item, str):
        return item
    if isinstance(item, dict):
        return item["path"]
    return item.path


def with_file(value: dict | None, path: str | None) -> Any:
    """The message box's value with one more attachment (a snapshot, a recording)."""
    if not path:
        return gr.skip()
    value = value or {}
    return {"text": value.get("text") or "", "files": [*(value.get("files") or []), path]}


def is_audio_file(path: str | Path) -> bool:
    return Path(path).suffix.lower() in AUDIO_SUFFIXES


def load_attachments(paths: list[str], max_files: int) -> tuple[list[Image.Image], list[AudioClip]]:
    """Sort a message's files into images and audio by their kind; MediaError names a bad one."""
    if len(paths) > max_files:
        raise MediaError(
            f"One message can carry at most {max_files} files; this one has {len(paths)}."
        )
    images, audio = [], []
    for path in paths:
        suffix = Path(path).suffix.lower()
        if suffix in IMAGE_SUFFIXES:
            images.append(load_image(path))
        elif is_audio_file(path):
            audio.append(load_audio(path))
        else:
            raise MediaError(
                f"{Path(path).name} is neither an image nor an audio file Loupe can use."
            )
    return images, audio
