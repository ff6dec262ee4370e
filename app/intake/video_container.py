"""Reading a video container without decoding its pictures: opening it with FFmpeg told the
most pixels a frame may have, finding its moving-picture and sound streams, its length from
the header or from its packets' times, and whether the file is cut short."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av

from ..config import Limits
from .probe import MediaError, audio_format, declared_seconds, duration, plain_number, too_long

VIDEO_CONTAINERS = ("mov", "matroska")
# Matroska's EBML header (its first element) is some 40 bytes; the segment's size follows it.
EBML_HEAD_BYTES = 256
EBML_ID = b"\x1a\x45\xdf\xa3"
SEGMENT_ID = b"\x18\x53\x80\x67"


class VideoError(MediaError):
    """A video that cannot be used; one sentence for the person."""


@dataclass(frozen=True)
class Packets:
    """What a video's packets say, read without decoding them."""

    frame_times: list[float]  # every picture's time in seconds, sorted
    sound_s: float  # from the first sound packet's start to the last one's end


def av_open(path: Path, demuxer: str, limits: Limits) -> Any:
    """The container, opened by PyAV with FFmpeg told the most pixels a frame may have: opening
    probes the streams, which decodes a frame, and a small file can declare a huge one."""
    return av.open(str(path), format=demuxer, options=max_pixels(limits))


def max_pixels(limits: Limits) -> dict[str, str]:
    return {"max_pixels": str(int(limits.max_image_mp * 1_000_000))}


class open_video:
    """The container and its video stream, open, its frames' size checked against
    `limits.max_image_mp` from the header; VideoError in one sentence if not."""

    def __init__(self, path: Path, limits: Limits):
        self.path = path
        self.limits = limits
        self.container: Any = None

    def __enter__(self) -> tuple[Any, Any]:
        name = self.path.name
        demuxer = audio_format(self.path)
        if demuxer not in VIDEO_CONTAINERS:
            raise VideoError(f"{name} is not a video Loupe can read.")
        try:
            self.container = av_open(self.path, demuxer, self.limits)
        except Exception as exc:
            raise VideoError(f"{name} is damaged: not a video Loupe can read.") from exc
        stream = video_stream(self.container)
        try:
            if stream is None:
                raise VideoError(f"{name} has no pictures in it.")
            check_frame_size(stream, name, self.limits)
        except VideoError:
            self.container.close()
            raise
        # The decoder refuses frames past the limit too: a stream can change its size.
        stream.codec_context.options = max_pixels(self.limits)
        return self.container, stream

    def __exit__(self, *exc: object) -> None:
        self.container.close()


def check_frame_size(stream: Any, name: str, limits: Limits) -> None:
    """VideoError when the stream's header declares frames over `limits.max_image_mp`."""
    pixels = (stream.codec_context.width or 0) * (stream.codec_context.height or 0)
    if pixels > limits.max_image_mp * 1_000_000:
        raise VideoError(
            f"{name} has frames of {plain_number(pixels / 1_000_000)} megapixels; Loupe takes "
            f"video frames up to {plain_number(limits.max_image_mp)} megapixels."
        )


def video_stream(container: Any) -> Any:
    """The first video stream that is moving pictures (not an album's cover art) and that
    FFmpeg can decode; None if there is none."""
    from av.stream import Disposition

    for stream in container.streams.video:
        if stream.disposition & Disposition.attached_pic or stream.codec_context is None:
            continue
        return stream
    return None


def sound_stream(container: Any) -> Any:
    """The soundtrack: the first sound stream, if FFmpeg can decode it; else None."""
    sounds = container.streams.audio
    return sounds[0] if sounds and sounds[0].codec_context is not None else None


def sound_limit_s(limits: Limits) -> float:
    """The longest soundtrack: a video's length, and a recording's."""
    return min(limits.max_video_s, limits.max_audio_s)


def sound_too_long(name: str, seconds: float | None, limits: Limits) -> str:
    """The sentence for a soundtrack over its limit; `seconds` its length when known."""
    limit = duration(sound_limit_s(limits))
    what = "videos" if limits.max_video_s <= limits.max_audio_s else "recordings"
    length = duration(seconds) if seconds else f"over {limit}"
    return f"{name}'s sound lasts {length}; Loupe takes {what} up to {limit}."


def video_length(container: Any, stream: Any, name: str, limits: Limits) -> float:
    """The pictures' length the header declares, refused if it or the sound's is too long.
    Where a stream declares no length of its own (Matroska and WebM), both are measured by
    their packets (not decoded): browsers' recordings declare no duration, and FFmpeg then
    gives an estimate from the bit rate, which can be far off."""
    declared = check_declared(container, stream, name, limits)
    sound = sound_stream(container)
    if declared is not None and stream.duration and (sound is None or sound.duration):  # MP4
        return declared
    packets = read_packets(container, stream, sound, name, limits)
    return picture_span(packets.frame_times, name)


def check_declared(container: Any, stream: Any, name: str, limits: Limits) -> float | None:
    """The pictures' length the header declares (None: none), refused if it or the sound's
    own declared length is over its limit."""
    declared = declared_seconds(container, stream)
    if declared is not None and declared > limits.max_video_s:
        raise VideoError(too_long(name, declared, limits.max_video_s, "video"))
    sound = sound_stream(container)
    if sound is not None and sound.duration:
        sound_s = float(sound.duration * sound.time_base)
        if sound_s > sound_limit_s(limits):
            raise VideoError(sound_too_long(name, sound_s, limits))
    return declared


def picture_span(times: list[float], name: str) -> float:
    """The time from the first frame to the last; VideoError when there is no frame."""
    if not times:
        raise VideoError(f"{name} has no pictures in it.")
    return times[-1] - times[0]


def read_packets(container: Any, stream: Any, sound: Any, name: str, limits: Limits) -> Packets:
    """The pictures' times and the sound's length (`sound` None: none read), from the packets
    without decoding them; VideoError as soon as either passes its limit."""
    times: list[float] = []
    first = sound_start = math.inf
    sound_end = -math.inf
    try:
        for packet in container.demux(*(s for s in (stream, sound) if s is not None)):
            stamp = packet.pts if packet.pts is not None else packet.dts
            if stamp is None or packet.size == 0:
                continue  # the flush packet at the end
            at = float(stamp * packet.time_base)
            if packet.stream.index == stream.index:
                times.append(at)
                first = min(first, at)
                if at - first > limits.max_video_s:
                    raise VideoError(too_long(name, None, limits.max_video_s, "video"))
                continue
            sound_start = min(sound_start, at)
            sound_end = max(sound_end, at + float((packet.duration or 0) * packet.time_base))
            if sound_end - sound_start > sound_limit_s(limits):
                raise VideoError(sound_too_long(name, None, limits))
    except VideoError:
        raise
    except Exception as exc:  # damage part way through
        if not times:
            raise VideoError(f"{name} is damaged: not a video Loupe can read.") from exc
        raise VideoError(f"{name} is cut short: the video file is incomplete.") from exc
    times.sort()
    return Packets(times, max(0.0, sound_end - sound_start))


def is_cut_short(path: Path) -> bool:
    """Whether the file holds fewer bytes than its container declares: an MP4 or MOV box, or
    a Matroska or WebM segment, that runs past the end. FFmpeg reads such a file up to where
    it stops without saying so. (Browsers' recordings declare no segment size.)"""
    size = path.stat().st_size
    with path.open("rb") as file:
        if audio_format(path) == "mov":
            return boxes_end(file, size) > size
        end = segment_end(file.read(EBML_HEAD_BYTES))
    return end is not None and end > size


def boxes_end(file: Any, size: int) -> int:
    """Where the file's last top-level MP4 box ends, as the boxes declare their sizes."""
    offset = 0
    while offset + 8 <= size:
        file.seek(offset)
        header = file.read(16)
        length = int.from_bytes(header[:4], "big")
        if length == 1 and len(header) == 16:  # a 64-bit size follows the type
            length = int.from_bytes(header[8:16], "big")
        if length == 0:  # the last box, up to the end of the file
            return size
        if length < 8:  # damaged; FFmpeg says so when it reads it
            return offset
        offset += length
    return offset


def segment_end(head: bytes) -> int | None:
    """Where a Matroska file's segment ends, as its start declares; None when it declares an
    unknown size (live recordings) or the start is not as expected."""
    if not head.startswith(EBML_ID):
        return None
    size, length = ebml_size(head, len(EBML_ID))
    if size is None:
        return None
    offset = len(EBML_ID) + length + size
    if head[offset : offset + len(SEGMENT_ID)] != SEGMENT_ID:
        return None
    size, length = ebml_size(head, offset + len(SEGMENT_ID))
    return None if size is None else offset + len(SEGMENT_ID) + length + size


def ebml_size(data: bytes, offset: int) -> tuple[int | None, int]:
    """An EBML element size at `offset` (a variable-length integer: its first byte's leading
    zeros say how many bytes follow) and its length in bytes; None for "unknown" (all ones)."""
    if offset >= len(data) or data[offset] == 0:
        return None, 1
    length = 9 - data[offset].bit_length()
    raw = data[offset : offset + length]
    value = int.from_bytes(raw, "big") & ((1 << (7 * length)) - 1)
    if len(raw) < length or value == (1 << (7 * length)) - 1:
        return None, length
    return value, length


