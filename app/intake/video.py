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

from ..config import Limits
from .cache import DecodedFiles
from .probe import audio_format, declared_seconds, unreadable
from .video_container import (
    VIDEO_CONTAINERS,
    VideoError,
    av_open,
    check_declared,
    is_cut_short,
    open_video,
    picture_span,
    read_packets,
    sound_limit_s,
    sound_stream,
    sound_too_long,
    video_length,
    video_stream,
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
# Limits for reading kept videos to show them (their label and poster): they were checked
# when they came, and the probe still needs a pixel limit.
SHOWN = Limits()
# No limit on what read_packets reads: for showing a kept video's length.
UNBOUNDED = Limits(max_video_s=math.inf, max_audio_s=math.inf)

_decoded: DecodedFiles[Video] = DecodedFiles(CACHED_VIDEOS)


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
    demuxer = audio_format(path)
    if demuxer not in VIDEO_CONTAINERS:
        return False
    try:
        container = av_open(path, demuxer, limits)
    except Exception as exc:  # PyAV raises many types for damaged input
        problem = "is damaged: not a video or audio file Loupe can read"
        if is_cut_short(path):  # an MP4 whose index was to come at the end
            problem = "is cut short: the file is incomplete"
        raise VideoError(f"{path.name} {problem}.") from exc
    with container:
        return video_stream(container) is not None


def check_video(path: str | Path, limits: Limits) -> float:
    """The video's length in seconds, from its header (or its packets' times where the header
    gives none); VideoError when it is unreadable, cut short, or over a limit: its pictures'
    length (`limits.max_video_s`), its sound's (that, and `limits.max_audio_s`), its frames'
    size (`limits.max_image_mp`)."""
    path = Path(path)
    try:
        cut_short = is_cut_short(path)
    except OSError as exc:  # a kept file gone since
        raise VideoError(unreadable(path.name, exc)) from exc
    if cut_short:
        raise VideoError(f"{path.name} is cut short: the video file is incomplete.")
    with open_video(path, limits) as (container, stream):
        return video_length(container, stream, path.name, limits)


def load_video(path: str | Path, limits: Limits) -> Video:
    """The video's chosen frames with their times, and its soundtrack at 16 kHz mono."""
    path = Path(path)
    try:
        return _decoded.get(path, limits, lambda: _decode(path, limits))
    except OSError as exc:
        raise VideoError(unreadable(path.name, exc)) from exc


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
        with open_video(Path(path), SHOWN) as (container, stream):
            seconds = declared_seconds(container, stream)
            if seconds is None or not stream.duration:  # see video_length
                times = read_packets(container, stream, None, Path(path).name, UNBOUNDED)
                seconds = picture_span(times.frame_times, Path(path).name)
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
        with open_video(path, SHOWN) as (container, stream):
            frame = next(container.decode(stream))
            _scaled(frame).save(target, "JPEG", quality=85)
    except Exception:  # the chat then shows the file itself
        return None
    return str(target)


# -- reading --------------------------------------------------------------------------------------
def _decode(path: Path, limits: Limits) -> Video:
    import av

    name = path.name
    with open_video(path, limits) as (container, stream):
        check_declared(container, stream, name, limits)
        packets = read_packets(container, stream, sound_stream(container), name, limits)
    times = packets.frame_times
    picture_span(times, name)
    chosen = frame_times(times)
    wanted = {times[i]: i for i in chosen}
    frames: dict[int, Image.Image] = {}
    with open_video(path, limits) as (container, stream):
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

    sound = sound_stream(container)
    if sound is None:
        return None
    container.seek(0)
    resampler = av.AudioResampler(format="flt", layout="mono", rate=SOUND_RATE_HZ)
    parts: list[np.ndarray] = []
    most = (sound_limit_s(limits) + SOUND_SLACK_S) * SOUND_RATE_HZ
    count = 0
    try:
        for frame in container.decode(sound):
            for out in resampler.resample(frame):
                parts.append(out.to_ndarray()[0])
                count += len(parts[-1])
            if count > most:
                raise VideoError(sound_too_long(name, None, limits))
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
    if audio_format(path) == "mov":
        with path.open("rb") as file:
            brand = file.read(12)[8:12]
        return "video/quicktime" if brand == b"qt  " else "video/mp4"
    codecs = {s.codec_context.name for s in container.streams if s.codec_context is not None}
    webm = {"vp8", "vp9", "av1", "opus", "vorbis"}
    return "video/webm" if codecs <= webm else "video/x-matroska"
