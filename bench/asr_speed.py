"""Speech-recognition figures on this CPU: faster-whisper tiny.en (int8) load time and speed.

Makes a 10 s and a 60 s speech clip with espeak-ng, then times `SpeechRecognizer.transcribe`
on each file (decoding, voice detection and the model; warm: one run first is discarded).
The real-time factor is transcription time over clip length (below 1 is faster than real
time). Load time is for fresh SpeechRecognizer objects; the first one also imports
faster-whisper. Each figure is the median of the runs, with min and max. Writes
bench/results/asr-cpu.json and prints it.

    .venv/bin/python bench/asr_speed.py [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from model.asr import BEAM_SIZE, DEFAULT_ASR_MODEL, SpeechRecognizer  # noqa: E402

RATE_HZ = 16_000
CLIP_LENGTHS_S = (10, 60)
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


def summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def wait_until_ready(recognizer: SpeechRecognizer, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while recognizer.state == "loading" and time.monotonic() < deadline:
        time.sleep(0.01)
    if recognizer.state != "ready":
        raise RuntimeError(recognizer.error or f"the speech model is still {recognizer.state}")


def make_clips(folder: Path) -> dict[int, Path]:
    """Speech clips of exactly CLIP_LENGTHS_S seconds, 16 kHz mono; the text repeats if short."""
    spoken = folder / "spoken.wav"
    subprocess.run(["espeak-ng", "-w", str(folder / "espeak.wav"), TEXT], check=True)
    subprocess.run(
        ["sox", "-D", "-G", str(folder / "espeak.wav"), "-r", str(RATE_HZ), str(spoken)], check=True
    )
    samples, _ = soundfile.read(spoken, dtype="float32")
    pause = np.zeros(RATE_HZ // 2, dtype=np.float32)
    longest = max(CLIP_LENGTHS_S) * RATE_HZ
    repeats = -(-longest // (len(samples) + len(pause)))  # ceiling division
    speech = np.concatenate([samples, pause] * repeats)
    clips = {}
    for length_s in CLIP_LENGTHS_S:
        clips[length_s] = folder / f"speech-{length_s}s.wav"
        soundfile.write(clips[length_s], speech[: length_s * RATE_HZ], RATE_HZ)
    return clips


def measure_loads(runs: int) -> tuple[dict[str, float], SpeechRecognizer]:
    loads = []
    for _ in range(runs):
        recognizer = SpeechRecognizer(DEFAULT_ASR_MODEL, device="cpu")
        recognizer.start_loading()
        wait_until_ready(recognizer)
        loads.append(recognizer.load_seconds)
    return {**summary(loads), "first": loads[0]}, recognizer


def measure_clip(recognizer: SpeechRecognizer, clip: Path, length_s: int, runs: int) -> dict:
    recognizer.transcribe(clip)  # warm-up
    seconds, words = [], 0
    for _ in range(runs):
        started = time.perf_counter()
        transcript = recognizer.transcribe(clip)
        seconds.append(time.perf_counter() - started)
        words = len(transcript.text.split())
    return {
        "audio_s": length_s,
        "words_heard": words,
        "transcribe_s": summary(seconds),
        "real_time_factor": summary([s / length_s for s in seconds]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="loupe-asr-bench-"))
    try:
        clips = make_clips(folder)
        load_s, recognizer = measure_loads(args.runs)
        results = {
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, {cpu_name()}",
            "model": DEFAULT_ASR_MODEL,
            "device": "cpu",
            "compute_type": "int8",
            "beam_size": BEAM_SIZE,
            "vad_filter": True,
            "runs": args.runs,
            "load_s": load_s,
            "clips": {
                f"{length_s}s": measure_clip(recognizer, clip, length_s, args.runs)
                for length_s, clip in clips.items()
            },
        }
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    out = ROOT / "bench" / "results" / "asr-cpu.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
