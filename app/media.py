"""Intake of what people send: images, audio, PDFs, videos and message text, checked, decoded and
limited.

A file's kind is decided by its content, never by its name: an image named .wav is an image,
an executable named .png is refused. Every refusal is a MediaError with one sentence.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import gradio as gr
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from model import MAX_IMAGE_PIXELS, AudioClip

from .config import Limits

Kind = Literal["image", "audio", "pdf", "video"]

# The image formats PIL may parse; others (PSD, ICNS, EPS via Ghostscript, ...) are refused so
# that only well-trodden decoders ever see an upload. (JPEG includes cameras' MPO files.)
IMAGE_FORMATS = ("PNG", "JPEG", "GIF", "WEBP", "BMP", "TIFF")
# 16-bit greyscale modes: PIL's convert("RGB") would clip them to white, so they are scaled.
SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N"})
# Gemma 4 reads an image as 48x48-pixel patches, one soft token each, at most 1120 of them: its
# processor resizes every image to about 2.58 megapixels or less (1350x1910 for an A4 page,
# 1967x1311 for a 3:2 photo). Images are scaled down to that as they are decoded, so that no
# larger copy lives on (a 25-megapixel PNG takes 100 MB decoded; this, 7.7 MB): MAX_IMAGE_PIXELS.
# Image.resize first shrinks by whole factors (box averaging) down to this many times the size
# it aims for, then resamples (bicubic): as Image.thumbnail does, 2-3 times faster than Lanczos
# on a 25-megapixel photo; the processor resamples the image again anyway.
REDUCING_GAP = 2.0
# Modes Image.resize takes by nearest neighbour only; they are converted first.
NEAREST_ONLY_MODES = {"1": "L", "P": "RGBA", "PA": "RGBA"}
# How much of a file is read to tell which audio container it is.
SNIFF_BYTES = 64
# A decoded recording shorter than its header says by more than this fraction (and by more than
# TRUNCATION_SLACK_S) is cut short. The slack absorbs encoder padding and estimated durations.
TRUNCATION_FRACTION = 0.9
TRUNCATION_SLACK_S = 0.5


# PIL warns from 89 megapixels; Loupe's own limit (max_image_mp) refuses such images in a
# sentence, so the warning would only repeat it in the console.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


class MediaError(ValueError):
    """Input that cannot be used; the message is one sentence for the person."""


# -- text -----------------------------------------------------------------------------------------


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


# -- files ----------------------------------------------------------------------------------------


def attachment_kinds(paths: list[str], limits: Limits) -> list[Kind]:
    """Each file's kind, after the checks that need no decoding: count, size, type by content,
    megapixels and duration from the headers."""
    if len(paths) > limits.max_files_per_message:
        raise MediaError(
            f"One message can carry at most {limits.max_files_per_message} files; "
            f"this one has {len(paths)}."
        )
    return [file_kind(path, limits) for path in paths]


def check_audio_file(path: str | Path, limits: Limits, name: str) -> None:
    """MediaError, saying so of `name`, unless the file is audio Loupe can read (the checks
    that need no decoding, as for any attachment)."""
    if attachment_kinds([str(path)], limits) != ["audio"]:
        raise MediaError(f"{name} is not an audio file Loupe can read.")


def file_kind(path: str | Path, limits: Limits) -> Kind:
    """What the file holds, "image", "pdf", "video" or "audio"; MediaError if none, or over a
    limit (for a PDF: encrypted, damaged or without pages; for a video: its length, from the
    header). An MP4 or WebM with pictures is a video; one with only sound is audio."""
    from . import pdf, video

    path = Path(path)
    _check_size(path, limits)
    try:
        with _open_image(path, limits):
            return "image"
    except MediaError as exc:
        if not isinstance(exc.__cause__, UnidentifiedImageError):
            raise  # an image, but a bad one: say why
    if pdf.is_pdf(path):
        pdf.page_count(path)
        return "pdf"
    if video.is_video(path, limits):
        video.check_video(path, limits)
        return "video"
    if _audio_format(path) is None:
        raise MediaError(f"{path.name} is not an image, a PDF or an audio file Loupe can use.")
    with _open_audio(path, limits):
        return "audio"


def load_attachments(paths: list[str], limits: Limits) -> tuple[list[Image.Image], list[AudioClip]]:
    """Files decoded into images and audio, sorted by content; MediaError names a bad one.

    The count is checked by attachment_kinds when a message arrives, not here: a kept
    conversation stays readable if the limit is lowered later."""
    from .pdf import render_pages

    images, audio = [], []
    for path in paths:
        kind = file_kind(path, limits)
        decoded = load_file(path, kind, limits)
        if kind == "pdf":
            images += render_pages(path, decoded)
        elif kind == "video":  # its frames as images, its soundtrack as audio
            images += decoded.clip.frames
            audio += [decoded.soundtrack] if decoded.soundtrack else []
        else:
            (images if kind == "image" else audio).append(decoded)
    return images, audio


def load_file(path: str | Path, kind: Kind, limits: Limits) -> Image.Image | AudioClip | Any:
    """A file whose kind is known (from file_kind or attachment_kinds), decoded; for a PDF,
    which pages the model reads when the message names none (pdf.PdfPages, not rendered); for
    a video, its frames and soundtrack (video.Video)."""
    if kind == "video":
        from .video import load_video

        return load_video(path, limits)
    if kind == "pdf":
        from .pdf import choose_pages, page_count

        name = Path(path).name
        return choose_pages(name, page_count(path), None, limits.max_pdf_pages)
    return load_image(path, limits) if kind == "image" else load_audio(path, limits)


def _check_size(path: Path, limits: Limits) -> None:
    """MediaError unless the file can be opened, holds something and is within the size limit.
    Opened here so that a file Loupe may not read is said to be so, not to be no image."""
    try:
        size = path.stat().st_size
        with path.open("rb"):
            pass
    except OSError as exc:
        raise MediaError(unreadable(path.name, exc)) from exc
    if size == 0:
        raise MediaError(f"{path.name} is empty.")
    if size > limits.max_file_mb * 1024 * 1024:
        raise MediaError(
            f"{path.name} is {plain_number(size / 1024 / 1024)} MB; Loupe takes files up to "
            f"{plain_number(limits.max_file_mb)} MB."
        )


def unreadable(name: str, error: OSError) -> str:
    """The sentence for a file that could not be opened, with why when it is a common case."""
    why = {
        PermissionError: "Loupe is not allowed to open it",
        FileNotFoundError: "it is no longer there",
        IsADirectoryError: "it is a folder",
    }.get(type(error))
    return f"{name} could not be read: {why}." if why else f"{name} could not be read."


def plain_number(value: float) -> str:
    """A number as a sentence says it: three significant digits, thousands separated, never
    in exponent form (10,000 and 0.0576, not 1e+04 and 5.76e-02)."""
    return format(Decimal(f"{value:.3g}"), ",f")


# -- images ---------------------------------------------------------------------------------------


def load_image(
    path: str | Path, limits: Limits, max_pixels: int | None = MAX_IMAGE_PIXELS
) -> Image.Image:
    """An upright RGB image: the first frame of an animation, transparency composited onto
    white, 16-bit greyscale scaled to 8 bits; scaled down (in its aspect ratio) to at most
    `max_pixels` as it is decoded, None keeping every pixel (to crop a region at full detail)."""
    path = Path(path)
    _check_size(path, limits)
    with _open_image(path, limits) as opened:
        try:
            if max_pixels:  # a JPEG is decoded at 1/2, 1/4 or 1/8 of its size when that is enough
                opened.draft(opened.mode, fitting(opened.size, max_pixels))
            opened.load()  # decode fully now, so a truncated file fails here
            # Turned before scaling (a scaled copy has lost a TIFF's tags), in place (no copy).
            ImageOps.exif_transpose(opened, in_place=True)
            return _rgb(_shrunk(opened, max_pixels))
        except Exception as exc:  # PIL's decoders raise many types for damaged files
            if "truncated" in str(exc) or isinstance(exc, EOFError):
                problem = "is cut short: the image file is incomplete"
            else:
                problem = "is not an image Loupe can read"
            raise MediaError(f"{path.name} {problem}.") from exc


def _open_image(path: Path, limits: Limits) -> Image.Image:
    """The image with only its header read; refuses it by pixel count before any decoding."""
    try:
        opened = Image.open(path, formats=IMAGE_FORMATS)
    except Image.DecompressionBombError as exc:  # PIL's own ceiling, far above ours
        # PIL gives the size only in its message: "Image size (400000000 pixels) exceeds ..."
        declared = re.search(r"\((\d+) pixels\)", str(exc))
        pixels = int(declared[1]) if declared else None
        raise MediaError(_too_many_pixels(path.name, pixels, limits)) from exc
    except Exception as exc:  # UnidentifiedImageError, or a plugin's own error type
        raise MediaError(f"{path.name} is not an image Loupe can read.") from exc
    width, height = opened.size
    if width * height > limits.max_image_mp * 1_000_000:
        opened.close()
        raise MediaError(_too_many_pixels(path.name, width * height, limits))
    if width < 1 or height < 1:
        opened.close()
        raise MediaError(f"{path.name} is not an image Loupe can read.")
    return opened


def fitting(size: tuple[int, int], max_pixels: int) -> tuple[int, int]:
    """`size` (width, height) scaled down in its aspect ratio to at most `max_pixels`; as it is
    when it already fits."""
    width, height = size
    if width * height <= max_pixels:
        return width, height
    factor = math.sqrt(max_pixels / (width * height))
    return max(1, math.floor(width * factor)), max(1, math.floor(height * factor))


def _shrunk(image: Image.Image, max_pixels: int | None) -> Image.Image:
    """`image` scaled down to at most `max_pixels` (None: as it is)."""
    size = fitting(image.size, max_pixels) if max_pixels else image.size
    if size == image.size:
        return image
    if image.mode in NEAREST_ONLY_MODES:
        image = image.convert(NEAREST_ONLY_MODES[image.mode])
    return image.resize(size, Image.Resampling.BICUBIC, reducing_gap=REDUCING_GAP)


def _too_many_pixels(name: str, pixels: int | None, limits: Limits) -> str:
    size = "more pixels than PIL reads"
    if pixels:
        size = f"{plain_number(pixels / 1_000_000)} megapixels"
    limit = plain_number(limits.max_image_mp)
    return f"{name} has {size}; Loupe takes images up to {limit} megapixels."


def _rgb(image: Image.Image) -> Image.Image:
    if image.mode in SIXTEEN_BIT_MODES:
        scaled = np.asarray(image, dtype=np.float32) / 257.0  # 0..65535 -> 0..255
        image = Image.fromarray(scaled.round().clip(0, 255).astype(np.uint8), "L")
    elif image.mode in ("I", "F"):
        image = Image.fromarray(_to_8_bits(np.asarray(image, dtype=np.float64)), "L")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _to_8_bits(values: np.ndarray) -> np.ndarray:
    """32-bit integer or float pixels as 8 bits, by the range they use: 0..1, 0..255, 0..65535,
    or else their own minimum to maximum."""
    values = np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)
    low, high = float(values.min(initial=0.0)), float(values.max(initial=0.0))
    if low >= 0 and high <= 1.0:
        values = values * 255
    elif low >= 0 and high > 255 and high <= 65535:
        values = values / 257
    elif low < 0 or high > 65535:
        values = (values - low) * (255 / (high - low or 1))
    return values.round().clip(0, 255).astype(np.uint8)


# -- audio ----------------------------------------------------------------------------------------


def load_audio(path: str | Path, limits: Limits) -> AudioClip:
    """The file's audio as float32 samples, shape (samples, channels), at its own rate."""
    path = Path(path)
    _check_size(path, limits)
    with _open_audio(path, limits) as (container, declared_s):
        stream = container.streams.audio[0]
        planes, samples_so_far, rate = [], 0, 0
        cut_short = MediaError(f"{path.name} is cut short: the audio file is incomplete.")
        if container.format.name == "wav" and _wav_cut_short(path):
            raise cut_short
        try:
            for plane, rate in _float_frames(container, stream, path.name):
                planes.append(plane)
                samples_so_far += plane.shape[1]
                # Without a duration in the header, stop decoding as soon as it is too long.
                if samples_so_far > limits.max_audio_s * rate:
                    raise MediaError(too_long(path.name, None, limits.max_audio_s, "recording"))
        except MediaError:
            raise
        except Exception as exc:  # PyAV raises many types for corrupt input
            if samples_so_far:  # good audio, then damage: most often a file cut short
                raise cut_short from exc
            raise MediaError(f"{path.name} is not an audio file Loupe can read.") from exc
    if not samples_so_far:
        raise MediaError(f"{path.name} holds no audio.")
    decoded_s = samples_so_far / rate
    if declared_s and decoded_s < min(
        declared_s * TRUNCATION_FRACTION, declared_s - TRUNCATION_SLACK_S
    ):
        raise cut_short
    samples = np.concatenate(planes, axis=1).T  # (channels, n) planes -> (n, channels)
    # Float files can hold NaN, infinities or peaks past full scale; one NaN would spread
    # through the whole audio encoder.
    samples = np.clip(np.nan_to_num(samples, nan=0.0, posinf=1.0, neginf=-1.0), -1.0, 1.0)
    return AudioClip(np.ascontiguousarray(samples, dtype=np.float32), rate)


def _audio_format(path: Path) -> str | None:
    """The FFmpeg demuxer for this file, from its first bytes; None if it is no audio file
    Loupe takes. Naming the demuxer keeps FFmpeg from guessing (and from following
    playlists such as HLS, which can read other files)."""
    try:
        with path.open("rb") as file:
            head = file.read(SNIFF_BYTES)
            if head.startswith(b"ID3") and len(head) >= 10:
                # An ID3 tag can sit in front of MP3 or FLAC; look past it.
                size = int.from_bytes(bytes(b & 0x7F for b in head[6:10]), "big")
                file.seek(10 + size)
                after = file.read(SNIFF_BYTES)
                return "flac" if after.startswith(b"fLaC") else "mp3"
    except OSError:
        return None
    if head[:4] in (b"RIFF", b"RF64") and head[8:12] == b"WAVE":
        return "wav"
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return "aiff"
    if head.startswith(b"fLaC"):
        return "flac"
    if head.startswith(b"OggS"):
        return "ogg"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "matroska"  # also WebM, what browsers record
    if head[4:8] == b"ftyp":
        return "mov"  # MP4 and M4A
    if len(head) >= 4 and head[0] == 0xFF and head[1] & 0xF6 == 0xF0:
        return "aac"  # ADTS framing: sync, then layer bits 00
    if len(head) >= 4 and _mpeg_audio_frame(head[:4]):
        return "mp3"
    return None


def _mpeg_audio_frame(header: bytes) -> bool:
    """Whether four bytes are a valid MPEG audio frame header (an MP3 without an ID3 tag)."""
    word = int.from_bytes(header, "big")
    sync, version, layer = word >> 21, (word >> 19) & 3, (word >> 17) & 3
    bitrate, sample_rate = (word >> 12) & 15, (word >> 10) & 3
    return sync == 0x7FF and version != 1 and layer != 0 and bitrate != 15 and sample_rate != 3


def _wav_cut_short(path: Path) -> bool:
    """Whether a WAV file holds fewer sample bytes than its data chunk declares. FFmpeg goes by
    the file's length and does not tell; streaming writers declare 0 or 0xFFFFFFFF."""
    with path.open("rb") as file:
        if file.read(12)[:4] != b"RIFF":
            return False
        while len(header := file.read(8)) == 8:
            kind, size = header[:4], int.from_bytes(header[4:], "little")
            if kind == b"data":
                present = path.stat().st_size - file.tell()
                return 0 < size < 0xFFFFFFFF and size > present
            file.seek(size + size % 2, 1)  # chunks are padded to an even length
    return False


@contextmanager
def _open_audio(path: Path, limits: Limits) -> Iterator[tuple[Any, float | None]]:
    """An FFmpeg container with an audio stream, and the duration its header declares (if it
    declares one); refused by that duration before decoding."""
    import av

    demuxer = _audio_format(path)
    if demuxer is None:
        raise MediaError(f"{path.name} is not an audio file Loupe can read.")
    try:
        container = av.open(str(path), format=demuxer)
    except Exception as exc:  # PyAV raises many types for corrupt input
        raise MediaError(f"{path.name} is not an audio file Loupe can read.") from exc
    with container:
        if not container.streams.audio:
            raise MediaError(f"{path.name} has no audio in it.")
        if container.streams.audio[0].codec_context is None:  # a codec FFmpeg does not know
            raise MediaError(f"{path.name} is not an audio file Loupe can read.")
        declared_s = declared_seconds(container, container.streams.audio[0])
        if declared_s and declared_s > limits.max_audio_s:
            raise MediaError(too_long(path.name, declared_s, limits.max_audio_s, "recording"))
        yield container, declared_s


def audio_seconds(path: str | Path) -> float:
    """How long a recording (its kind already known) lasts, without decoding it: what its
    header declares, else the span of its packets' times (browsers' WebM declares none)."""
    import av

    path = Path(path)
    try:
        with av.open(str(path), format=_audio_format(path)) as container:
            stream = container.streams.audio[0]
            declared = declared_seconds(container, stream)
            if declared:
                return declared
            start, end = math.inf, 0.0
            for packet in container.demux(stream):
                if packet.pts is not None and packet.size:
                    at = float(packet.pts * stream.time_base)
                    start = min(start, at)
                    end = max(end, at + float((packet.duration or 0) * stream.time_base))
    except Exception as exc:  # PyAV raises many types for damaged input
        raise MediaError(f"{path.name} is not an audio file Loupe can read.") from exc
    return max(0.0, end - start) if end else 0.0


def declared_seconds(container: Any, stream: Any) -> float | None:
    """The duration a recording's or a video's header declares, if it declares one (a zero is
    none: browsers' WebM says 0)."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration and container.duration > 0:
        return container.duration / 1_000_000  # AV_TIME_BASE
    return None


def too_long(name: str, seconds: float | None, limit_s: float, what: str) -> str:
    """The sentence for a recording or a video (`what`) over its limit; `seconds` its length
    when known."""
    limit = _duration(limit_s)
    if seconds:
        return f"{name} lasts {_duration(seconds)}; Loupe takes {what}s up to {limit}."
    return f"{name} is longer than {limit}, the longest {what} Loupe takes."


def _duration(seconds: float) -> str:
    """A length as people say it: 45 s, 5 min, 7.5 min, 3 h."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min".replace(".0 min", " min")
    return f"{seconds / 3600:,.0f} h"


def _float_frames(container: Any, stream: Any, name: str) -> Iterator[tuple[np.ndarray, int]]:
    """Decoded audio as planar float32 arrays shaped (channels, n), each with its sample rate:
    the first frame's channels and rate (which can differ from the header's, as in HE-AAC)."""
    import av

    resampler, first = None, None
    for frame in container.decode(stream):
        layout = (frame.layout.nb_channels, frame.sample_rate)
        if resampler is None:
            resampler = av.AudioResampler("fltp", frame.layout.name, frame.sample_rate)
            first = layout
        elif layout != first:  # only damaged or spliced files do this, and PyAV cannot follow
            raise MediaError(f"{name} changes its channels or sample rate part way through.")
        for resampled in resampler.resample(frame):
            yield resampled.to_ndarray(), frame.sample_rate
    for resampled in resampler.resample(None) if resampler else ():
        yield resampled.to_ndarray(), first[1]


# -- Gradio values --------------------------------------------------------------------------------


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
