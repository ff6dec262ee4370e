"""Speech recognition with the real faster-whisper tiny.en on synthesised speech; no mocks.

The speech is made by espeak-ng and converted by sox, once per module; the model loads once.
"""

from __future__ import annotations

import shutil
import subprocess
import time
import wave
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import soundfile

from bench.samples import photo
from model.asr import AsrError, SpeechRecognizer
from tests.conftest import MAX_WER, QUESTION, word_error_rate

LOAD_TIMEOUT_S = 60
FILES = ("22k-mono.wav", "44k-stereo.wav", "8k.wav", "speech.mp3", "speech.ogg")


def _run(*command: str) -> None:
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        pytest.fail(f"{' '.join(command)} failed: {done.stderr.strip()}")


def assert_one_sentence(message: str, name: str) -> None:
    assert name in message, message
    assert "\n" not in message and message.endswith("."), message
    assert ". " not in message, message  # a second sentence would start after ". "


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of the same spoken text in several rates, channel layouts and formats."""
    for tool in ("espeak-ng", "sox"):
        if shutil.which(tool) is None:
            pytest.fail(
                f"{tool} is not installed; these tests make their speech with it "
                "(apt-get install espeak-ng sox libsox-fmt-all)."
            )
    folder = tmp_path_factory.mktemp("speech")
    source = folder / "22k-mono.wav"
    _run("espeak-ng", "-w", str(source), QUESTION)  # 22.05 kHz mono, espeak-ng's own rate
    # -D: no dither, so the files are the same on every run
    _run("sox", "-D", str(source), "-r", "44100", "-c", "2", str(folder / "44k-stereo.wav"))
    _run("sox", "-D", str(source), "-r", "8000", str(folder / "8k.wav"))
    _run("sox", "-D", str(source), "-r", "16000", str(folder / "16k-mono.wav"))
    _run("sox", "-D", str(source), str(folder / "speech.mp3"))
    _run("sox", "-D", str(source), str(folder / "speech.ogg"))
    _run("sox", "-D", str(source), str(folder / "short.wav"), "trim", "0", "0.1")
    return folder


@pytest.fixture(scope="module")
def recognizer() -> SpeechRecognizer:
    """This module's own, not yet loading (it overrides conftest's session-wide one)."""
    return SpeechRecognizer()


def test_word_error_rate() -> None:
    assert word_error_rate("What color, is it?", "what colour is it") == 0.25
    assert word_error_rate("a b c", "a c") == pytest.approx(1 / 3)  # deletion
    assert word_error_rate("a b", "a x b y") == 1.0  # insertions
    assert word_error_rate("a b", "") == 1.0


def test_loads_in_the_background() -> None:
    # Its own recognizer, so it sees "idle" whichever test ran first; tiny.en loads in ~0.4 s.
    recognizer = SpeechRecognizer()
    assert recognizer.state == "idle" and recognizer.load_seconds is None
    started = time.perf_counter()
    recognizer.start_loading()
    assert time.perf_counter() - started < 0.1
    assert recognizer.state == "loading"
    recognizer.start_loading()  # idempotent: no second load
    deadline = time.monotonic() + LOAD_TIMEOUT_S
    while recognizer.state == "loading" and time.monotonic() < deadline:
        time.sleep(0.02)
    assert recognizer.state == "ready", recognizer.error
    assert recognizer.error is None
    assert 0 < recognizer.load_seconds < LOAD_TIMEOUT_S


@pytest.mark.parametrize("file_name", FILES)
def test_transcribes_speech_files(
    recognizer: SpeechRecognizer, speech: Path, file_name: str
) -> None:
    transcript = recognizer.transcribe(speech / file_name)
    assert word_error_rate(QUESTION, transcript.text) < MAX_WER, transcript.text
    assert transcript.heard and transcript.language == "en"
    spoken_s = soundfile.info(speech / "22k-mono.wav").duration
    assert transcript.duration_s == pytest.approx(spoken_s, abs=0.1)  # mp3 adds a little padding
    assert transcript.segments
    assert " ".join(segment.text for segment in transcript.segments) == transcript.text
    assert all(0 <= segment.start_s < segment.end_s for segment in transcript.segments)


@pytest.mark.parametrize("file_name", ["16k-mono.wav", "44k-stereo.wav"])
def test_transcribes_samples(recognizer: SpeechRecognizer, speech: Path, file_name: str) -> None:
    samples, rate = soundfile.read(speech / file_name, dtype="float32")  # (samples[, channels])
    transcript = recognizer.transcribe(samples, sample_rate=rate)
    assert word_error_rate(QUESTION, transcript.text) < MAX_WER, transcript.text
    assert transcript.duration_s == pytest.approx(len(samples) / rate, abs=0.01)


@pytest.mark.parametrize(
    "samples",
    [
        np.zeros(32_000, dtype=np.float32),
        (0.02 * np.random.default_rng(0).standard_normal(32_000)).astype(np.float32),
    ],
    ids=["silence", "noise"],
)
def test_hears_nothing_in_silence_or_noise(
    recognizer: SpeechRecognizer, samples: np.ndarray
) -> None:
    transcript = recognizer.transcribe(samples)
    assert not transcript.heard
    assert transcript.text == "" and transcript.segments == ()
    assert transcript.duration_s == pytest.approx(2.0)


def test_one_transcription_at_a_time(recognizer: SpeechRecognizer, speech: Path) -> None:
    with ThreadPoolExecutor(max_workers=2) as pool:
        texts = list(pool.map(lambda _: recognizer.transcribe(speech / "22k-mono.wav").text, "ab"))
    assert texts[0] == texts[1] and word_error_rate(QUESTION, texts[0]) < MAX_WER


def _corrupt(path: Path) -> None:
    path.write_bytes(np.random.default_rng(0).bytes(4096))


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _header_only(path: Path) -> None:
    with wave.open(str(path), "wb") as out:  # a 44-byte header and no frames
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16_000)
    assert path.stat().st_size == 44


def _png(path: Path) -> None:
    photo(32, 32).save(path, format="PNG")


@pytest.mark.parametrize("make", [_corrupt, _empty, _header_only, _png], ids=lambda m: m.__name__)
def test_unusable_files_raise_one_sentence(
    recognizer: SpeechRecognizer, tmp_path: Path, make: Callable[[Path], None]
) -> None:
    path = tmp_path / f"clip{make.__name__}.wav"
    make(path)
    with pytest.raises(AsrError) as raised:
        recognizer.transcribe(path)
    assert_one_sentence(str(raised.value), path.name)


def test_too_short_clip(recognizer: SpeechRecognizer, speech: Path) -> None:
    with pytest.raises(AsrError, match="too short") as raised:
        recognizer.transcribe(speech / "short.wav")
    assert_one_sentence(str(raised.value), "short.wav")


@pytest.mark.parametrize("model", ["/no/such/folder", "nonexistent-size", "small"])
def test_unknown_model_fails_fast(
    model: str, speech: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub.constants

    # The hub reads HF_HUB_OFFLINE when it is imported, which may have happened already.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    recognizer = SpeechRecognizer(model)
    recognizer.start_loading()
    deadline = time.monotonic() + 10
    while recognizer.state == "loading" and time.monotonic() < deadline:
        time.sleep(0.02)
    assert recognizer.state == "error"
    assert_one_sentence(recognizer.error, f"'{model}'")
    assert recognizer.load_seconds is None
    with pytest.raises(AsrError) as raised:
        recognizer.transcribe(speech / "22k-mono.wav")
    assert str(raised.value) == recognizer.error
