"""Speech recognition: faster-whisper tiny.en (int8) load time and real-time factor.

Makes speech clips of the asked lengths with espeak-ng, then times `SpeechRecognizer.transcribe`
on each file (decoding, voice detection and the model). The real-time factor is transcription
time over clip length (below 1 is faster than real time). Load time is for fresh
SpeechRecognizer objects; the first one also imports faster-whisper.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile

from model.asr import BEAM_SIZE, DEFAULT_ASR_MODEL, SpeechRecognizer

from .harness import Figure, figure, repeat, seconds

RATE_HZ = 16_000
SETTINGS = f"{DEFAULT_ASR_MODEL}, int8 on the CPU, beam {BEAM_SIZE}, VAD on"
TEXT = (
    "Loupe looks at pictures and listens to questions about them. You can hold a receipt up to "
    "the camera and ask what the total was, or take a screenshot of an error and ask what it "
    "means. The speech model turns your voice into text first, and that text goes to the "
    "language model together with the picture. Short questions work best, spoken at an ordinary "
    "pace in a quiet room. If the recording holds no speech at all, the assistant says so "
    "instead of guessing. Everything runs on this computer: the pictures and the recordings "
    "never leave it, and nothing is sent to a server. The first answer takes a little longer "
    "while the models load, and later answers start within a second or two. You can stop a "
    "long answer at any time, ask for a shorter one, or ask the assistant to read the text in "
    "a picture out loud. Conversations are kept on disk, so you can come back to them tomorrow "
    "and carry on where you left off, or export them as a file to share with someone else."
)


def wait_until_ready(recognizer: SpeechRecognizer, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while recognizer.state == "loading" and time.monotonic() < deadline:
        time.sleep(0.01)
    if recognizer.state != "ready":
        raise RuntimeError(recognizer.error or f"the speech model is still {recognizer.state}")


def make_clips(folder: Path, lengths_s: tuple[int, ...]) -> dict[int, Path]:
    """Speech clips of exactly these lengths, 16 kHz mono; the text repeats if short."""
    spoken = folder / "spoken.wav"
    subprocess.run(["espeak-ng", "-w", str(folder / "espeak.wav"), TEXT], check=True)
    subprocess.run(
        ["sox", "-D", "-G", str(folder / "espeak.wav"), "-r", str(RATE_HZ), str(spoken)], check=True
    )
    samples, _ = soundfile.read(spoken, dtype="float32")
    pause = np.zeros(RATE_HZ // 2, dtype=np.float32)
    longest = max(lengths_s) * RATE_HZ
    repeats = -(-longest // (len(samples) + len(pause)))  # ceiling division
    speech = np.concatenate([samples, pause] * repeats)
    clips = {}
    for length_s in lengths_s:
        clips[length_s] = folder / f"speech-{length_s}s.wav"
        soundfile.write(clips[length_s], speech[: length_s * RATE_HZ], RATE_HZ)
    return clips


def measure(lengths_s: tuple[int, ...], runs: int) -> list[Figure]:
    """Load time, and transcription time and real-time factor for each clip length."""
    folder = Path(tempfile.mkdtemp(prefix="loupe-asr-bench-"))
    try:
        clips = make_clips(folder, lengths_s)
        loads, recognizer = [], None
        for _ in range(runs + 1):
            recognizer = SpeechRecognizer(DEFAULT_ASR_MODEL, device="cpu")
            recognizer.start_loading()
            wait_until_ready(recognizer)
            loads.append(recognizer.load_seconds)
        figures = [
            figure("speech recognition", "first load", "s", loads[0]),
            figure("speech recognition", "load", "s", loads[1:]),
        ]
        for length_s, clip in clips.items():
            took = repeat(lambda c=clip: seconds(lambda: recognizer.transcribe(c)), runs)
            figures.append(figure("speech recognition", f"transcribe {length_s} s", "s", took))
            figures.append(
                figure(
                    "speech recognition",
                    f"real-time factor, {length_s} s",
                    "x",
                    [t / length_s for t in took],
                )
            )
        return figures
    finally:
        shutil.rmtree(folder, ignore_errors=True)
