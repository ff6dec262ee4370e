"""Videos and screen recordings (MP4, MOV, MKV, WebM): frames about one a second, at most
MAX_FRAMES, first and last kept, each with its time; the soundtrack as audio.

A file is a video when its container (MP4/MOV or Matroska/WebM, told by its first bytes) holds
a video stream that is not just cover art; an MP4 or WebM with only sound stays a recording.
Everything is read with PyAV, already installed for faster-whisper: no FFmpeg program needed.

The length is checked before any decoding: from the header, or, where there is none (browsers'
MediaRecorder writes WebM without a duration or frame count), from the packets' times, read
without decoding them and stopped as soon as they pass the limit. Only the chosen frames are
converted to pictures, scaled down to what the largest per-frame budget can use.
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
from .media import MediaError, _audio_format, declared_seconds, too_long

# Gemma 4 plans for at most 32 frames per video (the processor's num_frames, vLLM's
# _VIDEO_MAX_FRAMES), and Google describes its video as read at one frame a second.
MAX_FRAMES = 32
FRAMES_PER_S = 1.0
# Frames are scaled to what 280 soft tokens can use (48x48 pixels each, about 1070x600 at
# 16:9), the largest per-frame budget Loupe offers; the processor scales them to the budget.
FRAME_PIXELS = 280 * 48 * 48
SOUND_RATE_HZ = 16_000
POSTER_SUFFIX = ".poster.jpg"
# Decoded videos of the last few files: every turn of a conversation shows the model its
# earlier videos again.
CACHED_VIDEOS = 2
VIDEO_CONTAINERS = ("mov", "matroska")

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


def is_video(path: str | Path) -> bool:
    """Whether the file is a container with a video stream (cover art does not count).
    VideoError when it starts like MP4 or WebM but cannot be opened at all."""
    import av

    path = Path(path)
    demuxer = _audio_format(path)
    if demuxer not in VIDEO_CONTAINERS:
        return False
    try:
        container = av.open(str(path), format=demuxer)
    except Exception as exc:  # PyAV raises many types for damaged input
        problem = "is damaged: not a video or audio file Loupe can read"
        raise VideoError(f"{path.name} {problem}.") from exc
    with container:
        return _video_stream(container) is not None


def check_video(path: str | Path, limits: Limits) -> float:
    """The video's length in seconds, from its header (or its packets' times where the header
    gives none); VideoError when it is over `limits.max_video_s` or unreadable."""
    path = Path(path)
    with _open(path) as (container, stream):
        return _length(container, stream, path.name, limits)


def load_video(path: str | Path, limits: Limits) -> Video:
    """The video's chosen frames with their times, and its soundtrack at 16 kHz mono."""
    path = Path(path)
    try:
        return _decoded.get(path, limits.max_video_s, lambda: _decode(path, limits))
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
        with _open(Path(path)) as (container, stream):
            seconds = declared_seconds(container, stream)
            if seconds is None or not stream.duration:  # see _length
                seconds = _packet_span(container, stream, math.inf, Path(path).name)
    except Exception:  # shown in the chat: a damaged file keeps its plain label
        return "Video"
    return f"Video, {length_text(seconds)}"


def poster(path: str | Path) -> str | None:
    """The path of the video's first frame as a JPEG beside it (made once), for the chat;
    None if it cannot be made."""
    import av

    path = Path(path)
    target = path.with_name(path.name + POSTER_SUFFIX)
    if target.exists():
        return str(target)
    try:
        with av.open(str(path), format=_audio_format(path)) as container:
            stream = _video_stream(container)
            frame = next(container.decode(stream))
            _scaled(frame).save(target, "JPEG", quality=85)
    except Exception:  # the chat then shows the file itself
        return None
    return str(target)


# -- reading --------------------------------------------------------------------------------------


class _open:
    """The container and its video stream, open; VideoError in one sentence if not."""

    def __init__(self, path: Path):
        self.path = path
        self.container: Any = None

    def __enter__(self) -> tuple[Any, Any]:
        import av

        name = self.path.name
        demuxer = _audio_format(self.path)
        if demuxer not in VIDEO_CONTAINERS:
            raise VideoError(f"{name} is not a video Loupe can read.")
        try:
            self.container = av.open(str(self.path), format=demuxer)
        except Exception as exc:
            raise VideoError(f"{name} is damaged: not a video Loupe can read.") from exc
        stream = _video_stream(self.container)
        if stream is None:
            self.container.close()
            raise VideoError(f"{name} has no pictures in it.")
        return self.container, stream

    def __exit__(self, *exc: object) -> None:
        self.container.close()


def _video_stream(container: Any) -> Any:
    """The first video stream that is moving pictures (not an album's cover art) and that
    FFmpeg can decode; None if there is none."""
    from av.stream import Disposition

    for stream in container.streams.video:
        if stream.disposition & Disposition.attached_pic or stream.codec_context is None:
            continue
        return stream
    return None


def _length(container: Any, stream: Any, name: str, limits: Limits) -> float:
    """The length the header declares, refused if too long. Matroska and WebM are also measured
    by their packets (not decoded): browsers' recordings declare no duration, and FFmpeg then
    gives an estimate from the bit rate, which can be far off."""
    declared = declared_seconds(container, stream)
    if declared is not None and declared > limits.max_video_s:
        raise VideoError(too_long(name, declared, limits.max_video_s, "video"))
    if declared is not None and stream.duration:  # the stream's own: MP4 and MOV declare it
        return declared
    return _packet_span(container, stream, limits.max_video_s, name)


def _packet_span(container: Any, stream: Any, max_s: float, name: str) -> float:
    """The time from the first frame to the last, from the packets (not decoded); VideoError
    as soon as it passes `max_s`."""
    times = _packet_times(container, stream, max_s, name)
    if not times:
        raise VideoError(f"{name} has no pictures in it.")
    return times[-1] - times[0]


def _packet_times(container: Any, stream: Any, max_s: float, name: str) -> list[float]:
    """Every frame's time in seconds (sorted), read from the packets without decoding them."""
    base = stream.time_base
    times: list[float] = []
    first = math.inf
    try:
        for packet in container.demux(stream):
            stamp = packet.pts if packet.pts is not None else packet.dts
            if stamp is None or packet.size == 0:
                continue  # the flush packet at the end
            times.append(float(stamp * base))
            first = min(first, times[-1])
            if times[-1] - first > max_s:
                raise VideoError(too_long(name, None, max_s, "video"))
    except VideoError:
        raise
    except Exception as exc:  # damage part way through
        if not times:
            raise VideoError(f"{name} is damaged: not a video Loupe can read.") from exc
        raise VideoError(f"{name} is cut short: the video file is incomplete.") from exc
    times.sort()
    return times


def _decode(path: Path, limits: Limits) -> Video:
    import av

    name = path.name
    with _open(path) as (container, stream):
        declared = declared_seconds(container, stream)
        if declared is not None and declared > limits.max_video_s:
            raise VideoError(too_long(name, declared, limits.max_video_s, "video"))
        times = _packet_times(container, stream, limits.max_video_s, name)
    if not times:
        raise VideoError(f"{name} has no pictures in it.")
    chosen = frame_times(times)
    wanted = {times[i]: i for i in chosen}
    frames: dict[int, Image.Image] = {}
    with _open(path) as (container, stream):
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
        sound = _soundtrack(container, name)
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


def _soundtrack(container: Any, name: str) -> AudioClip | None:
    """The first sound stream as 16 kHz mono float32; None when there is none, or no sound."""
    import av

    if not container.streams.audio or container.streams.audio[0].codec_context is None:
        return None
    container.seek(0)
    resampler = av.AudioResampler(format="flt", layout="mono", rate=SOUND_RATE_HZ)
    parts: list[np.ndarray] = []
    try:
        for frame in container.decode(container.streams.audio[0]):
            parts += [out.to_ndarray()[0] for out in resampler.resample(frame)]
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
