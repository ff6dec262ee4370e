"""What every decoder of people's files shares: the refusal type, a file's kind, the checks made
before decoding (opened, not empty, within the size limit), the container sniff that names
FFmpeg's demuxer, a recording's or video's declared length, and the sentences that say so.

A file's kind is decided by its content, never by its name: an image named .wav is an image,
an executable named .png is refused. Every refusal is a MediaError with one sentence.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from ..config import Limits

Kind = Literal["image", "audio", "pdf", "video", "text"]

# How much of a file is read to tell which audio container it is.
SNIFF_BYTES = 64


class MediaError(ValueError):
    """Input that cannot be used; the message is one sentence for the person."""


def check_size(path: Path, limits: Limits) -> None:
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


def audio_format(path: Path) -> str | None:
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
    limit = duration(limit_s)
    if seconds:
        return f"{name} lasts {duration(seconds)}; Loupe takes {what}s up to {limit}."
    return f"{name} is longer than {limit}, the longest {what} Loupe takes."


def duration(seconds: float) -> str:
    """A length as people say it: 45 s, 5 min, 7.5 min, 3 h."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min".replace(".0 min", " min")
    return f"{seconds / 3600:,.0f} h"

