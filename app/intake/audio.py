"""Recordings: decoded to float32 samples, refused by their declared length before decoding, and
refused when they are cut short."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import av
import numpy as np

from model import AudioClip

from ..config import Limits
from .probe import MediaError, audio_format, check_size, declared_seconds, too_long

# A decoded recording shorter than its header says by more than this fraction (and by more than
# TRUNCATION_SLACK_S) is cut short. The slack absorbs encoder padding and estimated durations.
TRUNCATION_FRACTION = 0.9
TRUNCATION_SLACK_S = 0.5


def load_audio(path: str | Path, limits: Limits) -> AudioClip:
    """The file's audio as float32 samples, shape (samples, channels), at its own rate."""
    path = Path(path)
    check_size(path, limits)
    with open_audio(path, limits) as (container, declared_s):
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
def open_audio(path: Path, limits: Limits) -> Iterator[tuple[Any, float | None]]:
    """An FFmpeg container with an audio stream, and the duration its header declares (if it
    declares one); refused by that duration before decoding."""
    demuxer = audio_format(path)
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
    path = Path(path)
    try:
        with av.open(str(path), format=audio_format(path)) as container:
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



def _float_frames(container: Any, stream: Any, name: str) -> Iterator[tuple[np.ndarray, int]]:
    """Decoded audio as planar float32 arrays shaped (channels, n), each with its sample rate:
    the first frame's channels and rate (which can differ from the header's, as in HE-AAC)."""
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


