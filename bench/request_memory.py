"""Memory of the worst request the limits allow: the largest /v1 request within every
per-request total at once (text, 25-megapixel images, a video, recordings), sent to a launched
app; the peak resident memory of the app and of its model worker (every process under the app,
sampled) while it is read and answered, over what they held idle.

`--quick` runs the same request for limits a tenth of the defaults (flags passed to the app),
so that it takes seconds.
"""

from __future__ import annotations

import base64
import io
import math
import tempfile
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from app.config import Limits

from .harness import Figure, figure
from .serving import app

SAMPLE_S = 0.02
MB = 1024 * 1024
# The limits the worst request is made of, scaled together by `scaled`.
SCALED = (
    "max_request_chars",
    "max_request_mp",
    "max_request_audio_s",
    "max_request_video_s",
    "max_image_mp",
    "max_audio_s",
    "max_video_s",
    "max_message_chars",
)


def scaled(limits: Limits, factor: float) -> Limits:
    """The per-request totals (and the per-file limits they are made of) times `factor`."""
    changed: dict[str, Any] = {}
    for name in SCALED:
        value = getattr(limits, name)
        changed[name] = max(1, round(value * factor)) if isinstance(value, int) else value * factor
    return replace(limits, **changed)


def limit_flags(limits: Limits) -> list[str]:
    """launch.py flags that give the app `limits` (those that differ from the defaults)."""
    from app.command_line import LIMIT_FLAGS

    flags = []
    for flag, (name, _, _) in LIMIT_FLAGS.items():
        if getattr(limits, name) != getattr(Limits(), name):
            flags += [flag, str(getattr(limits, name))]
    return flags


@dataclass(frozen=True)
class WorstRequest:
    """A /v1 body within every per-request total, and what it holds."""

    body: dict[str, Any]
    summary: str


def worst_request(limits: Limits) -> WorstRequest:
    """A video of the longest length, then as many images of the largest size as the pixels
    left allow, recordings of the longest length up to the request's seconds, and text up to
    its characters; files spread over messages of at most `max_files_per_message`."""
    from app.intake.video import FRAME_PIXELS, FRAMES_PER_S, MAX_FRAMES

    parts: list[dict[str, Any]] = []
    images, megapixels = 0, 0.0
    video_s = min(limits.max_video_s, limits.max_request_video_s)
    frames = min(MAX_FRAMES, math.floor(video_s * FRAMES_PER_S) + 1)
    with_video = video_s >= 1 and frames <= limits.max_request_images
    if with_video:
        parts.append(_video_part(video_s))
        images, megapixels = frames, frames * FRAME_PIXELS / 1e6
    side = math.isqrt(int(limits.max_image_mp * 1_000_000))
    while (
        images < limits.max_request_images
        and megapixels + side * side / 1e6 <= limits.max_request_mp
    ):
        parts.append(_image_part(side))
        images, megapixels = images + 1, megapixels + side * side / 1e6
    recordings = int(limits.max_request_audio_s // limits.max_audio_s)
    parts += [_audio_part(limits.max_audio_s) for _ in range(recordings)]
    per_message = limits.max_files_per_message
    groups = [parts[at : at + per_message] for at in range(0, len(parts), per_message)] or [[]]
    text_left = limits.max_request_chars
    messages = []
    for group in groups:
        text = _words(min(text_left // (len(groups) - len(messages)), limits.max_message_chars))
        text_left -= len(text)
        messages.append({"role": "user", "content": [{"type": "text", "text": text}, *group]})
    summary = (
        f"{len(messages)} messages, {limits.max_request_chars - text_left:,} characters, "
        f"{len(parts) - recordings - with_video} images of {side}x{side}, "
        f"{f'a {video_s:g} s video, ' if with_video else ''}"
        f"{recordings} recordings of {limits.max_audio_s:g} s; {images} images in all "
        f"(frames too), {megapixels:.0f} megapixels"
    )
    body = {"messages": messages, "max_tokens": 8, "temperature": 0.0}
    return WorstRequest(body, summary)


def measure(flags: list[str], limits: Limits) -> tuple[list[Figure], list[str]]:
    """Peak RSS of the app and its worker for `worst_request(limits)`; the app is started with
    `flags` and `limits`' flags."""
    worst = worst_request(limits)
    with (
        tempfile.TemporaryDirectory(prefix="loupe-bench-memory-") as folder,  # its data folder
        app([*flags, *limit_flags(limits)], Path(folder)) as (base, process),
    ):
        sampler = Sampler(process.pid)
        time.sleep(1.0)
        idle = sampler.now()
        sampler.start()
        started = time.perf_counter()
        answer = httpx.post(f"{base}/v1/chat/completions", json=worst.body, timeout=1800)
        took = time.perf_counter() - started
        sampler.stop()
    body_mb = len(httpx.Request("POST", base, json=worst.body).content) / MB
    added = (sampler.peak_app - idle[0]) / MB, (sampler.peak_worker - idle[1]) / MB
    together = (sampler.peak_together - sum(idle)) / MB
    figures = [
        figure("request memory", "app, idle", "MB", idle[0] / MB),
        figure("request memory", "app, peak", "MB", sampler.peak_app / MB),
        figure("request memory", "worker, idle", "MB", idle[1] / MB),
        figure("request memory", "worker, peak", "MB", sampler.peak_worker / MB),
        figure("request memory", "added by the request, app and worker together", "MB", together),
        figure("request memory", "request answered in", "s", took),
    ]
    outcome = answer.json().get("error", {}).get("message") if answer.is_error else "answered"
    notes = [
        f"request memory: the worst request the limits allow ({worst.summary}; a {body_mb:.0f} "
        f"MB body) added {added[0]:.0f} MB to the app and {added[1]:.0f} MB to its worker at "
        f"their peaks, {together:.0f} MB together; HTTP {answer.status_code}, {outcome}"
    ]
    return figures, notes


class Sampler:
    """Resident memory of a process (the app) and of everything under it (its model worker and
    the fork server it comes from), sampled every SAMPLE_S in a thread; the peaks."""

    def __init__(self, pid: int):
        import psutil

        self._app = psutil.Process(pid)
        self.peak_app = self.peak_worker = self.peak_together = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def now(self) -> tuple[int, int]:
        """(app, worker and fork server) resident bytes now."""
        import psutil

        worker = 0
        for child in self._app.children(recursive=True):
            try:
                worker += child.memory_info().rss
            except psutil.Error:
                pass  # gone between listing and reading
        return self._app.memory_info().rss, worker

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._done.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._done.wait(SAMPLE_S):
            app, worker = self.now()
            self.peak_app = max(self.peak_app, app)
            self.peak_worker = max(self.peak_worker, worker)
            self.peak_together = max(self.peak_together, app + worker)


# -- the request's parts, made for the run --------------------------------------------------------


def _data_url(kind: str, mime: str, data: bytes) -> dict[str, Any]:
    url = f"data:{mime};base64,{base64.b64encode(data).decode()}"
    return {"type": f"{kind}_url", f"{kind}_url": {"url": url}}


def _image_part(side: int) -> dict[str, Any]:
    """A PNG of `side` x `side` pixels: a smooth gradient, a small file that decodes in full."""
    from PIL import Image

    ramp = np.linspace(0, 255, side, dtype=np.uint8)
    image = Image.merge("RGB", [Image.fromarray(np.broadcast_to(ramp, (side, side)))] * 3)
    buffer = io.BytesIO()
    image.save(buffer, "PNG", compress_level=1)
    return _data_url("image", "image/png", buffer.getvalue())


def _audio_part(seconds: float) -> dict[str, Any]:
    """A WAV of `seconds` at 48 kHz stereo (the largest recordings decode to the most)."""
    import soundfile

    rate = 48_000
    t = np.arange(int(seconds * rate), dtype=np.float32) / rate
    wave = (0.2 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    buffer = io.BytesIO()
    soundfile.write(buffer, np.stack([wave, wave], axis=1), rate, format="WAV", subtype="PCM_16")
    data = base64.b64encode(buffer.getvalue()).decode()
    return {"type": "input_audio", "input_audio": {"data": data, "format": "wav"}}


def _video_part(seconds: float) -> dict[str, Any]:
    """An H.264 MP4 of `seconds` at 1920x1080, two frames a second, with an AAC soundtrack."""
    import av

    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        video = container.add_stream("libx264", rate=2)
        video.width, video.height, video.pix_fmt = 1920, 1080, "yuv420p"
        sound = container.add_stream("aac", rate=48_000)
        for index in range(int(seconds * 2)):
            pixels = np.full((1080, 1920, 3), (index * 7) % 256, dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            container.mux(video.encode(frame))
        container.mux(video.encode())
        samples = np.zeros((1, 1024), dtype=np.float32)
        for index in range(int((seconds - 1) * 48_000 / 1024)):  # encoder padding: within
            frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 48_000, index * 1024
            container.mux(sound.encode(frame))
        container.mux(sound.encode())
    return _data_url("video", "video/mp4", buffer.getvalue())


def _words(length: int) -> str:
    """Ordinary English text of `length` characters."""
    sentence = "The quick brown fox jumps over the lazy dog. "
    return (sentence * (length // len(sentence) + 1))[:length]
