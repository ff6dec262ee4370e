"""Sample inputs made on the spot: pictures, sound, speech and video, for the benchmark and the
tests alike (both import them from here; nothing here needs pytest).

`photo` and `tone` are plain (random pixels, a sine): the processor's work depends on their size,
not their content. `camera_photo`, `text_screenshot` and `bar_chart` look like what people send
(their file sizes and decoding times are a real photo's, a screenshot's and a chart's).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import soundfile
from PIL import Image, ImageDraw, ImageFont

FPS = 4  # write_video's default frame rate
# Each frame's red channel counts its frames: RED_STEP per frame (H.264 keeps a flat colour to
# within a few levels), so a decoded picture says which frame it is.
RED_STEP = 8
WORDS = (
    "invoice total amount due account settings profile password saved changes network "
    "status running stopped error warning build passed failed report quarter revenue users "
    "active session timeout folder download upload images review approved pending shipping "
    "address order number customer support ticket priority high low medium release notes"
).split()


def photo(width: int = 320, height: int = 240, seed: int = 0) -> Image.Image:
    """A random RGB picture."""
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def tone(seconds: float, rate: int = 16_000, hz: float = 440.0, channels: int = 1) -> np.ndarray:
    """A sine tone, float32, shape (samples,) or (samples, channels)."""
    t = np.arange(int(seconds * rate)) / rate
    wave = (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32)
    return wave if channels == 1 else np.repeat(wave[:, None], channels, axis=1)


def speak(text: str, path: Path, gap_s: float = 0.0) -> Path:
    """Synthetic speech from espeak-ng (22.05 kHz WAV); `gap_s` of silence after it."""
    assert shutil.which("espeak-ng"), "espeak-ng is needed (./test.sh installs it)"
    subprocess.run(["espeak-ng", "-w", str(path), text], check=True, capture_output=True)
    if gap_s:
        samples, rate = soundfile.read(path, dtype="float32")
        silence = np.zeros(int(gap_s * rate), dtype=np.float32)
        soundfile.write(path, np.concatenate([samples, silence]), rate)
    return path


def write_video(
    path: Path,
    seconds: float,
    fps: int = FPS,
    size: tuple[int, int] = (320, 180),
    speech: Path | None = None,
    container: str | None = None,
    faststart: bool = False,
) -> Path:
    """An H.264 (or, for WebM, VP8) video whose frame i is red 8*i with "frame i" written on
    it; with `speech` (a WAV), that as its soundtrack (AAC, or Opus in WebM). `faststart`
    puts an MP4's index first, as phones and web servers do."""
    import av

    webm = container == "webm"
    options = {"movflags": "faststart"} if faststart else {}
    with av.open(str(path), "w", format=container, options=options) as out:
        pictures = out.add_stream("libvpx" if webm else "libx264", rate=fps)
        pictures.width, pictures.height = size
        pictures.pix_fmt = "yuv420p"
        sound = None
        if speech is not None:
            samples, rate = soundfile.read(speech, dtype="float32")
            if webm:  # Opus takes 48 kHz
                from scipy.signal import resample_poly

                samples, rate = resample_poly(samples, 48_000, rate).astype(np.float32), 48_000
            sound = out.add_stream("libopus" if webm else "aac", rate=rate)
            sound.layout = "mono"
        for index in range(int(seconds * fps)):
            picture = Image.new("RGB", size, ((index * RED_STEP) % 256, 60, 120))
            ImageDraw.Draw(picture).text((8, 8), f"frame {index}", fill="white")
            for packet in pictures.encode(av.VideoFrame.from_image(picture)):
                out.mux(packet)
        for packet in pictures.encode():
            out.mux(packet)
        if sound is not None:
            for start in range(0, len(samples), 960):
                frame = av.AudioFrame.from_ndarray(
                    np.ascontiguousarray(samples[None, start : start + 960]),
                    format="flt",
                    layout="mono",
                )
                frame.sample_rate, frame.pts = rate, start
                for packet in sound.encode(frame):
                    out.mux(packet)
            for packet in sound.encode():
                out.mux(packet)
    return path


def camera_photo(size: tuple[int, int], rng: np.random.Generator) -> Image.Image:
    """A gradient sky over a ground colour, a few soft shapes, and sensor-like grain."""
    width, height = size
    top, bottom = rng.integers(0, 256, (2, 3)).astype(np.float32)
    down = np.linspace(0, 1, height, dtype=np.float32)[:, None, None]
    across = np.linspace(-20, 20, width, dtype=np.float32)[None, :, None]
    base = np.clip(top * (1 - down) + bottom * down + across, 0, 255).astype(np.uint8)
    image = Image.fromarray(base)
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(3, 9))):
        x, y = rng.integers(0, width), rng.integers(0, height)
        rx, ry = rng.integers(width // 20, width // 4), rng.integers(height // 20, height // 4)
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        draw.ellipse((x - rx, y - ry, x + rx, y + ry), fill=colour)
    grain = rng.standard_normal((height, width, 3), dtype=np.float32) * 9
    pixels = np.clip(np.asarray(image, dtype=np.float32) + grain, 0, 255).astype(np.uint8)
    return Image.fromarray(pixels)


def text_screenshot(size: tuple[int, int], rng: np.random.Generator) -> Image.Image:
    """A window: a title bar, a side bar, and lines of text in the default font."""
    width, height = size
    dark = bool(rng.integers(0, 2))
    background, ink = ((30, 30, 36), (225, 225, 225)) if dark else ((250, 250, 250), (20, 20, 20))
    image = Image.new("RGB", size, background)
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, width, 36), fill=(60, 90, 150))
    font = ImageFont.load_default(size=int(rng.integers(14, 24)))
    draw.text((12, 8), " ".join(rng.choice(WORDS, 4)).title(), fill=(255, 255, 255), font=font)
    side = width // 5
    draw.rectangle((0, 36, side, height), fill=(50, 50, 60) if dark else (232, 236, 242))
    line_height = font.size + 10
    for row, y in enumerate(range(50, height - line_height, line_height)):
        if row < 12:
            draw.text((12, y), str(rng.choice(WORDS)).title(), fill=ink, font=font)
        words = rng.choice(WORDS, int(rng.integers(3, 12)))
        draw.text((side + 16, y), " ".join(words).capitalize() + ".", fill=ink, font=font)
    return image


def bar_chart(size: tuple[int, int], rng: np.random.Generator) -> Image.Image:
    """A bar chart with a title, axes, labelled bars and their values."""
    width, height = size
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=max(12, height // 40))
    title = f"{str(rng.choice(WORDS)).title()} by month"
    draw.text((width // 10, height // 30), title, fill="black", font=font)
    left, right, top, bottom = width // 10, width - width // 20, height // 8, height - height // 8
    draw.line((left, top, left, bottom, right, bottom), fill="black", width=2)
    months = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov")
    bars = int(rng.integers(5, len(months) + 1))
    step = (right - left) / bars
    colour = tuple(int(c) for c in rng.integers(0, 200, 3))
    for bar, value in enumerate(rng.integers(5, 100, bars)):
        x0 = left + bar * step + step * 0.15
        y0 = bottom - (bottom - top) * value / 100
        draw.rectangle((x0, y0, x0 + step * 0.7, bottom), fill=colour)
        draw.text((x0, y0 - font.size - 4), str(value), fill="black", font=font)
        draw.text((x0, bottom + 6), months[bar], fill="black", font=font)
    return image
