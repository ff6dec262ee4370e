"""Videos and screen recordings (MP4, MOV, MKV, WebM): frames about one a second, at most
MAX_FRAMES, first and last kept, each with its time; the soundtrack as audio.

A file is a video when its container (MP4/MOV or Matroska/WebM, told by its first bytes) holds
a video stream that is not just cover art; an MP4 or WebM with only sound stays a recording.
Everything is read with PyAV, already installed for faster-whisper: no FFmpeg program needed.

The length of the pictures and of the sound, and the frames' size, are checked before any
decoding: the lengths from the header, or, where there is none (browsers' MediaRecorder writes
WebM without a duration or frame count), from the packets' times, read without decoding them and
stopped as soon as they pass the limit; the size from the stream's header, and FFmpeg itself is
told the most pixels a frame may have (its probe of a file decodes a frame). A file shorter than
its container declares is cut short. Only the chosen frames are converted to pictures, scaled
down to what the largest per-frame budget can use; the sound is decoded at most to its limit.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from model import AudioClip, VideoClip

from .config import Limits
from .decoded_files import DecodedFiles
from .media import (
    MediaError,
    _audio_format,
    _duration,
    declared_seconds,
    plain_number,
    too_long,
    unreadable,
)

# Gemma 4 plans for at most 32 frames per video (the processor's num_frames, vLLM's
# _VIDEO_MAX_FRAMES), and Google describes its video as read at one frame a second.
MAX_FRAMES = 32
FRAMES_PER_S = 1.0
# Frames are scaled to what 280 soft tokens can use (48x48 pixels each, about 1070x600 at
# 16:9), the largest per-frame budget Loupe offers; the processor scales them to the budget.
FRAME_PIXELS = 280 * 48 * 48
SOUND_RATE_HZ = 16_000
# Decoded sound may run past its packets' times by an encoder's priming and padding.
SOUND_SLACK_S = 1.0
POSTER_SUFFIX = ".poster.jpg"
# Decoded videos of the last few files: every turn of a conversation shows the model its
# earlier videos again.
CACHED_VIDEOS = 2
VIDEO_CONTAINERS = ("mov", "matroska")
# Limits for reading kept videos to show them (their label and poster): they were checked
# when they came, and the probe still needs a pixel limit.
SHOWN = Limits()
# No limit on what _read_packets reads: for showing a kept video's length.
UNBOUNDED = Limits(max_video_s=math.inf, max_audio_s=math.inf)
# Matroska's EBML header (its first element) is some 40 bytes; the segment's size follows it.
EBML_HEAD_BYTES = 256
EBML_ID = b"\x1a\x45\xdf\xa3"
SEGMENT_ID = b"\x18\x53\x80\x67"

_decoded: DecodedFiles[Video] = DecodedFiles(CACHED_VIDEOS)


class VideoError(MediaError):
    """A video that cannot be used; one sentence for the person."""


@dataclass(frozen=True)
class Video:
    """A decoded video: its frames for the model, and its soundtrack (None when it has none)."""

    name: str
    clip: VideoClip
    soundtrack: AudioClip | None

    @property
    def duration_s(self) -> float:
        return self.clip.duration_s


def is_video(path: str | Path, limits: Limits) -> bool:
    """Whether the file is a container with a video stream (cover art does not count).
    VideoError when it starts like MP4 or WebM but cannot be opened at all."""
    path = Path(path)
    demuxer = _audio_format(path)
    if demuxer not in VIDEO_CONTAINERS:
        return False
    try:
        container = _av_open(path, demuxer, limits)
    except Exception as exc:  # PyAV raises many types for damaged input
        problem = "is damaged: not a video or audio file Loupe can read"
        if _cut_short(path):  # an MP4 whose index was to come at the end
            problem = "is cut short: the file is incomplete"
        raise VideoError(f"{path.name} {problem}.") from exc
    with container:
        return _video_stream(container) is not None


def check_video(path: str | Path, limits: Limits) -> float:
    """The video's length in seconds, from its header (or its packets' times where the header
    gives none); VideoError when it is unreadable, cut short, or over a limit: its pictures'
    length (`limits.max_video_s`), its sound's (that, and `limits.max_audio_s`), its frames'
    size (`limits.max_image_mp`)."""
    path = Path(path)
    try:
        cut_short = _cut_short(path)
    except OSError as exc:  # a kept file gone since
        raise VideoError(unreadable(path.name, exc)) from exc
    if cut_short:
        raise VideoError(f"{path.name} is cut short: the video file is incomplete.")
    with _open(path, limits) as (container, stream):
        return _length(container, stream, path.name, limits)


def load_video(path: str | Path, limits: Limits) -> Video:
    """The video's chosen frames with their times, and its soundtrack at 16 kHz mono."""
    path = Path(path)
    try:
        return _decoded.get(path, limits, lambda: _decode(path, limits))
    except OSError as exc:
        raise VideoError(f"{path.name} could not be read.") from exc


def frame_times(times: list[float]) -> list[int]:
    """Which frames to show (indices into `times`, each frame's time, sorted): evenly over the
    whole length, the first and last kept, a second or a little more apart (so each has its
    own mm:ss stamp), at most MAX_FRAMES."""
    if not times:
        return []
    span = times[-1] - times[0]
    count = min(MAX_FRAMES, len(times), int(span * FRAMES_PER_S) + 1)
    if count <= 1:  # under a second: its first and last frames
        return sorted({0, len(times) - 1})
    chosen: list[int] = []
    for step in range(count):
        target = times[0] + span * step / (count - 1)
        index = bisect.bisect_left(times, target)
        nearer_before = index == len(times) or target - times[index - 1] <= times[index] - target
        if index > 0 and nearer_before:
            index -= 1
        if not chosen or index > chosen[-1]:
            chosen.append(index)
    if chosen[-1] != len(times) - 1:
        chosen.append(len(times) - 1)
    return chosen


def length_text(seconds: float) -> str:
    """A video's length as players show it: 0:07, 1:42, 1:02:03."""
    whole = int(round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def video_label(path: str | Path) -> str:
    """How the chat names a kept video: "Video, 0:42" ("Video" if its length cannot be read)."""
    try:
        with _open(Path(path), SHOWN) as (container, stream):
            seconds = declared_seconds(container, stream)
            if seconds is None or not stream.duration:  # see _length
                times = _read_packets(container, stream, None, Path(path).name, UNBOUNDED)
                seconds = _picture_span(times.frame_times, Path(path).name)
    except Exception:  # shown in the chat: a damaged file keeps its plain label
        return "Video"
    return f"Video, {length_text(seconds)}"


def poster(path: str | Path) -> str | None:
    """The path of the video's first frame as a JPEG beside it (made once), for the chat;
    None if it cannot be made."""
    path = Path(path)
    target = path.with_name(path.name + POSTER_SUFFIX)
    if target.exists():
        return str(target)
    try:
        with _open(path, SHOWN) as (container, stream):
            frame = next(container.decode(stream))
            _scaled(frame).save(target, "JPEG", quality=85)
    except Exception:  # the chat then shows the file itself
        return None
    return str(target)


# -- reading --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Packets:
    """What a video's packets say, read without decoding them."""

    frame_times: list[float]  # every picture's time in seconds, sorted
    sound_s: float  # from the first sound packet's start to the last one's end


def _av_open(path: Path, demuxer: str, limits: Limits) -> Any:
    """The container, opened by PyAV with FFmpeg told the most pixels a frame may have: opening
    probes the streams, which decodes a frame, and a small file can declare a huge one."""
    import av

    return av.open(str(path), format=demuxer, options=_max_pixels(limits))


def _max_pixels(limits: Limits) -> dict[str, str]:
    return {"max_pixels": str(int(limits.max_image_mp * 1_000_000))}


class _open:
    """The container and its video stream, open, its frames' size checked against
    `limits.max_image_mp` from the header; VideoError in one sentence if not."""

    def __init__(self, path: Path, limits: Limits):
        self.path = path
        self.limits = limits
        self.container: Any = None

    def __enter__(self) -> tuple[Any, Any]:
        name = self.path.name
        demuxer = _audio_format(self.path)
        if demuxer not in VIDEO_CONTAINERS:
            raise VideoError(f"{name} is not a video Loupe can read.")
        try:
            self.container = _av_open(self.path, demuxer, self.limits)
        except Exception as exc:
            raise VideoError(f"{name} is damaged: not a video Loupe can read.") from exc
        stream = _video_stream(self.container)
        try:
            if stream is None:
                raise VideoError(f"{name} has no pictures in it.")
            _check_frame_size(stream, name, self.limits)
        except VideoError:
            self.container.close()
            raise
        # The decoder refuses frames past the limit too: a stream can change its size.
        stream.codec_context.options = _max_pixels(self.limits)
        return self.container, stream

    def __exit__(self, *exc: object) -> None:
        self.container.close()


def _check_frame_size(stream: Any, name: str, limits: Limits) -> None:
    """VideoError when the stream's header declares frames over `limits.max_image_mp`."""
    pixels = (stream.codec_context.width or 0) * (stream.codec_context.height or 0)
    if pixels > limits.max_image_mp * 1_000_000:
        raise VideoError(
            f"{name} has frames of {plain_number(pixels / 1_000_000)} megapixels; Loupe takes "
            f"video frames up to {plain_number(limits.max_image_mp)} megapixels."
        )


def _video_stream(container: Any) -> Any:
    """The first video stream that is moving pictures (not an album's cover art) and that
    FFmpeg can decode; None if there is none."""
    from av.stream import Disposition

    for stream in container.streams.video:
        if stream.disposition & Disposition.attached_pic or stream.codec_context is None:
            continue
        return stream
    return None


def _sound_stream(container: Any) -> Any:
    """The soundtrack: the first sound stream, if FFmpeg can decode it; else None."""
    sounds = container.streams.audio
    return sounds[0] if sounds and sounds[0].codec_context is not None else None


def _sound_limit_s(limits: Limits) -> float:
    """The longest soundtrack: a video's length, and a recording's."""
    return min(limits.max_video_s, limits.max_audio_s)


def _sound_too_long(name: str, seconds: float | None, limits: Limits) -> str:
    """The sentence for a soundtrack over its limit; `seconds` its length when known."""
    limit = _duration(_sound_limit_s(limits))
    what = "videos" if limits.max_video_s <= limits.max_audio_s else "recordings"
    length = _duration(seconds) if seconds else f"over {limit}"
    return f"{name}'s sound lasts {length}; Loupe takes {what} up to {limit}."


def _length(container: Any, stream: Any, name: str, limits: Limits) -> float:
    """The pictures' length the header declares, refused if it or the sound's is too long.
    Where a stream declares no length of its own (Matroska and WebM), both are measured by
    their packets (not decoded): browsers' recordings declare no duration, and FFmpeg then
    gives an estimate from the bit rate, which can be far off."""
    declared = _check_declared(container, stream, name, limits)
    sound = _sound_stream(container)
    if declared is not None and stream.duration and (sound is None or sound.duration):  # MP4
        return declared
    packets = _read_packets(container, stream, sound, name, limits)
    return _picture_span(packets.frame_times, name)


def _check_declared(container: Any, stream: Any, name: str, limits: Limits) -> float | None:
    """The pictures' length the header declares (None: none), refused if it or the sound's
    own declared length is over its limit."""
    declared = declared_seconds(container, stream)
    if declared is not None and declared > limits.max_video_s:
        raise VideoError(too_long(name, declared, limits.max_video_s, "video"))
    sound = _sound_stream(container)
    if sound is not None and sound.duration:
        sound_s = float(sound.duration * sound.time_base)
        if sound_s > _sound_limit_s(limits):
            raise VideoError(_sound_too_long(name, sound_s, limits))
    return declared


def _picture_span(times: list[float], name: str) -> float:
    """The time from the first frame to the last; VideoError when there is no frame."""
    if not times:
        raise VideoError(f"{name} has no pictures in it.")
    return times[-1] - times[0]


def _read_packets(container: Any, stream: Any, sound: Any, name: str, limits: Limits) -> _Packets:
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
            if sound_end - sound_start > _sound_limit_s(limits):
                raise VideoError(_sound_too_long(name, None, limits))
    except VideoError:
        raise
    except Exception as exc:  # damage part way through
        if not times:
            raise VideoError(f"{name} is damaged: not a video Loupe can read.") from exc
        raise VideoError(f"{name} is cut short: the video file is incomplete.") from exc
    times.sort()
    return _Packets(times, max(0.0, sound_end - sound_start))


def _cut_short(path: Path) -> bool:
    """Whether the file holds fewer bytes than its container declares: an MP4 or MOV box, or
    a Matroska or WebM segment, that runs past the end. FFmpeg reads such a file up to where
    it stops without saying so. (Browsers' recordings declare no segment size.)"""
    size = path.stat().st_size
    with path.open("rb") as file:
        if _audio_format(path) == "mov":
            return _boxes_end(file, size) > size
        end = _segment_end(file.read(EBML_HEAD_BYTES))
    return end is not None and end > size


def _boxes_end(file: Any, size: int) -> int:
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


def _segment_end(head: bytes) -> int | None:
    """Where a Matroska file's segment ends, as its start declares; None when it declares an
    unknown size (live recordings) or the start is not as expected."""
    if not head.startswith(EBML_ID):
        return None
    size, length = _ebml_size(head, len(EBML_ID))
    if size is None:
        return None
    offset = len(EBML_ID) + length + size
    if head[offset : offset + len(SEGMENT_ID)] != SEGMENT_ID:
        return None
    size, length = _ebml_size(head, offset + len(SEGMENT_ID))
    return None if size is None else offset + len(SEGMENT_ID) + length + size


def _ebml_size(data: bytes, offset: int) -> tuple[int | None, int]:
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


def _decode(path: Path, limits: Limits) -> Video:
    import av

    name = path.name
    with _open(path, limits) as (container, stream):
        _check_declared(container, stream, name, limits)
        packets = _read_packets(container, stream, _sound_stream(container), name, limits)
    times = packets.frame_times
    _picture_span(times, name)
    chosen = frame_times(times)
    wanted = {times[i]: i for i in chosen}
    frames: dict[int, Image.Image] = {}
    with _open(path, limits) as (container, stream):
        stream.thread_type = "AUTO"
        last = times[chosen[-1]]
        try:
            for frame in container.decode(stream):
                if frame.pts is None:
                    continue
                at = float(frame.pts * stream.time_base)
                if at in wanted and wanted[at] not in frames:
                    frames[wanted[at]] = _scaled(frame)
                if at >= last:
                    break
        except av.error.FFmpegError as exc:
            if not frames:
                raise VideoError(f"{name} is damaged: not a video Loupe can read.") from exc
        if not frames:
            raise VideoError(f"{name} is damaged: not a video Loupe can read.")
        mime = _mime(path, container)
        sound = _soundtrack(container, name, limits)
    order = sorted(frames)
    start = times[0]
    clip = VideoClip(
        frames=tuple(frames[i] for i in order),
        timestamps_s=tuple(times[i] - start for i in order),
        duration_s=times[-1] - start,
        path=str(path),
        mime=mime,
    )
    return Video(name, clip, sound)


def _scaled(frame: Any) -> Image.Image:
    """A decoded frame as RGB, at most FRAME_PIXELS, its aspect ratio kept, upright: a phone
    records portrait video as landscape pictures and a rotation to show them with."""
    scale = min(1.0, math.sqrt(FRAME_PIXELS / max(1, frame.width * frame.height)))
    width, height = max(1, round(frame.width * scale)), max(1, round(frame.height * scale))
    image = frame.reformat(width=width, height=height, format="rgb24").to_image()
    # Counterclockwise degrees, as PIL turns: -90 (a phone held upright) turns it clockwise.
    turn = round((frame.rotation or 0) / 90) * 90 % 360
    return image.rotate(turn, expand=True) if turn else image


def _soundtrack(container: Any, name: str, limits: Limits) -> AudioClip | None:
    """The sound as 16 kHz mono float32; None when there is none, or no sound. VideoError when
    it decodes to more than its limit (its packets' times can understate it)."""
    import av

    sound = _sound_stream(container)
    if sound is None:
        return None
    container.seek(0)
    resampler = av.AudioResampler(format="flt", layout="mono", rate=SOUND_RATE_HZ)
    parts: list[np.ndarray] = []
    most = (_sound_limit_s(limits) + SOUND_SLACK_S) * SOUND_RATE_HZ
    count = 0
    try:
        for frame in container.decode(sound):
            for out in resampler.resample(frame):
                parts.append(out.to_ndarray()[0])
                count += len(parts[-1])
            if count > most:
                raise VideoError(_sound_too_long(name, None, limits))
        parts += [out.to_ndarray()[0] for out in resampler.resample(None)]
    except av.error.FFmpegError as exc:
        if not parts:
            raise VideoError(f"{name}'s sound is damaged.") from exc
    if not parts:
        return None
    samples = np.concatenate(parts).astype(np.float32)
    samples = np.clip(np.nan_to_num(samples, nan=0.0, posinf=1.0, neginf=-1.0), -1.0, 1.0)
    return AudioClip(samples, SOUND_RATE_HZ) if len(samples) else None


def _mime(path: Path, container: Any) -> str:
    """The file's type for a data URL."""
    if _audio_format(path) == "mov":
        with path.open("rb") as file:
            brand = file.read(12)[8:12]
        return "video/quicktime" if brand == b"qt  " else "video/mp4"
    codecs = {s.codec_context.name for s in container.streams if s.codec_context is not None}
    webm = {"vp8", "vp9", "av1", "opus", "vorbis"}
    return "video/webm" if codecs <= webm else "video/x-matroska"
