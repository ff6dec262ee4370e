"""Desktop push-to-talk: record from this machine's microphone while a key or button is held."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from model import AudioClip

RECORD_RATE_HZ = 16_000
NO_PORTAUDIO = (
    "The microphone cannot be used because PortAudio is missing; on Debian or Ubuntu install it "
    "with `sudo apt install libportaudio2`, or record with the page's Voice button."
)
NO_MICROPHONE = "No microphone was found; plug one in or check the system's sound settings."
NOTHING_RECORDED = "Nothing was recorded; hold the key or button while you speak."


class MicrophoneUnavailable(Exception):
    """Recording cannot start; the message is one sentence for the person."""


def _open_sounddevice_stream(**kwargs: Any) -> Any:
    try:  # sounddevice raises OSError at import when the PortAudio library is missing
        import sounddevice
    except (ImportError, OSError) as exc:
        raise MicrophoneUnavailable(NO_PORTAUDIO) from exc
    try:
        return sounddevice.InputStream(**kwargs)
    except (sounddevice.PortAudioError, ValueError) as exc:
        raise MicrophoneUnavailable(NO_MICROPHONE) from exc


class PushToTalk:
    """Collects microphone blocks between start() and stop().

    `open_stream` makes a sounddevice-like InputStream (start/stop/close, calling
    `callback(block, frames, time, status)` with float32 blocks of shape (frames, 1)).
    """

    def __init__(self, open_stream: Callable[..., Any] = _open_sounddevice_stream):
        self._open_stream = open_stream
        self._lock = threading.Lock()
        self._stream: Any = None
        self._blocks: list[np.ndarray] = []

    @property
    def recording(self) -> bool:
        return self._stream is not None

    def start(self) -> None:
        """Start recording (MicrophoneUnavailable if there is no usable microphone)."""
        with self._lock:
            if self._stream is not None:
                return
            self._blocks = []
            stream = self._open_stream(
                samplerate=RECORD_RATE_HZ, channels=1, dtype="float32", callback=self._collect
            )
            stream.start()
            self._stream = stream

    def stop(self) -> AudioClip:
        """Stop and return what was recorded (MicrophoneUnavailable if nothing was)."""
        with self._lock:
            stream, self._stream = self._stream, None
            if stream is not None:
                stream.stop()
                stream.close()
            blocks, self._blocks = self._blocks, []
        if not blocks:
            raise MicrophoneUnavailable(NOTHING_RECORDED)
        return AudioClip(np.concatenate(blocks)[:, 0], RECORD_RATE_HZ)

    def _collect(self, block: np.ndarray, frames: int, time: Any, status: Any) -> None:
        self._blocks.append(block.copy())  # sounddevice reuses its buffer
