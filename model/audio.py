"""Audio in the model's form: 16 kHz mono float32, and long recordings split at pauses."""

from __future__ import annotations

from itertools import pairwise
from math import gcd

import numpy as np

from .messages import AudioClip

AUDIO_SAMPLE_RATE_HZ = 16_000
# The processor's audio_seq_length (750 tokens x 40 ms) is the model's limit per clip, but the
# processor does not enforce it: longer audio must be cut or split here.
MAX_AUDIO_CLIP_S = 30.0
# A pause this long between two stretches of speech is a place to split.
MIN_PAUSE_MS = 300


def to_model_rate(clip: AudioClip) -> np.ndarray:
    """The clip as 16 kHz mono float32, shape (samples,)."""
    from scipy.signal import resample_poly

    samples = np.asarray(clip.samples, dtype=np.float32)
    if samples.ndim == 2:  # (samples, channels)
        samples = samples.mean(axis=1)
    rate = clip.sample_rate
    if rate != AUDIO_SAMPLE_RATE_HZ:
        common = gcd(rate, AUDIO_SAMPLE_RATE_HZ)
        samples = resample_poly(samples, AUDIO_SAMPLE_RATE_HZ // common, rate // common)
    return np.ascontiguousarray(samples, dtype=np.float32)


def split_at_pauses(clip: AudioClip, max_clip_s: float = MAX_AUDIO_CLIP_S) -> list[AudioClip]:
    """16 kHz mono clips of at most `max_clip_s`, cut in the pauses between speech.

    Uses the Silero voice-activity detector shipped with faster-whisper. Each cut goes in the
    middle of the last pause that keeps the clip short enough; a stretch of speech longer than
    `max_clip_s` with no pause in it is cut hard.
    """
    samples = to_model_rate(clip)
    limit = int(max_clip_s * AUDIO_SAMPLE_RATE_HZ)
    if len(samples) <= limit:
        return [AudioClip(samples, AUDIO_SAMPLE_RATE_HZ)]
    pauses = _pause_midpoints(samples)
    clips, start = [], 0
    while len(samples) - start > limit:
        fitting = [cut for cut in pauses if start < cut <= start + limit]
        end = fitting[-1] if fitting else start + limit
        clips.append(AudioClip(samples[start:end], AUDIO_SAMPLE_RATE_HZ))
        start = end
    clips.append(AudioClip(samples[start:], AUDIO_SAMPLE_RATE_HZ))
    return clips


def _pause_midpoints(samples: np.ndarray) -> list[int]:
    """Sample indices in the middle of each pause between two stretches of speech."""
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    options = VadOptions(min_silence_duration_ms=MIN_PAUSE_MS, speech_pad_ms=0)
    speech = get_speech_timestamps(samples, options, sampling_rate=AUDIO_SAMPLE_RATE_HZ)
    return [(before["end"] + after["start"]) // 2 for before, after in pairwise(speech)]
