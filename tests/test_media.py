"""Intake of what people send: every item of the bad-input list gets one sentence or a sensible
result, and what is accepted goes through the real processor."""

from __future__ import annotations

import os
import shutil
import struct
import sys
import tempfile
import threading
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import psutil
import pytest
import soundfile
from PIL import Image

from app.config import Limits
from app.intake.audio import load_audio
from app.intake.cache import DecodedFiles, decoded_bytes
from app.intake.files import attachment_kinds, file_kind
from app.intake.image import load_image
from app.intake.probe import MediaError
from app.intake.text import message_text
from bench.samples import photo, tone
from model import MAX_IMAGE_PIXELS, AudioClip, GenerationOptions, Message
from model.detail import image_need
from model.prompts import build_inputs
from tests.decoding import load_attachments
from tests.test_detail import SCREEN, SMALL_TEXT_PAGE

LIMITS = Limits()
RED = (255, 0, 0)
NOBODY = 65534  # the user id with no files of its own


def png_declaring(width: int, height: int) -> bytes:
    """A small PNG whose header declares width x height greyscale pixels (a decompression bomb:
    its few rows of data would be inflated into the whole canvas)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    rows = zlib.compress(b"\x00" * (width + 1) * 4)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")
    )


class PeakMemory:
    """This process's resident memory, sampled every 2 ms while a `with` block runs:
    `grown_mb` is how far its peak rose above where it started."""

    def __enter__(self) -> PeakMemory:
        self._process = psutil.Process()
        self._start = self._peak = self._process.memory_info().rss
        self._done = threading.Event()
        self._sampler = threading.Thread(target=self._sample)
        self._sampler.start()
        return self

    def __exit__(self, *_) -> None:
        self._done.set()
        self._sampler.join()

    @property
    def grown_mb(self) -> float:
        return (self._peak - self._start) / 1024 / 1024

    def _sample(self) -> None:
        while not self._done.wait(0.002):
            self._peak = max(self._peak, self._process.memory_info().rss)


def cut_in_half(path: Path) -> None:
    """Keep the first half of the file, as an interrupted download or copy would."""
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def through_processor(processor, images=(), audio=()) -> None:
    """The model's processor takes what intake gave (the shapes a real request would have)."""
    message = Message("user", "What is this?", tuple(images), tuple(audio))
    inputs = build_inputs(processor, [message], GenerationOptions())
    assert inputs["input_ids"].shape[1] > 0
    if images:
        assert inputs["pixel_values"].shape[0] == len(images)


# -- images ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("width", "height", "megapixels"),
    [(10_000, 10_000, "100"), (20_000, 20_000, "400"), (100_000, 100_000, "10,000")],
)
def test_decompression_bomb_is_refused_from_its_header(
    tmp_path: Path, width: int, height: int, megapixels: str
):
    # 100 megapixels is over Loupe's limit; 400 is over PIL's own ceiling too, which PIL raises.
    # The count is said whichever ceiling refused it, as people write numbers.
    path = tmp_path / "bomb.png"
    path.write_bytes(png_declaring(width, height))
    assert path.stat().st_size < 10_000
    with pytest.raises(
        MediaError,
        match=rf"^bomb\.png has {megapixels} megapixels; Loupe takes images up to 25 megapixels\.$",
    ):
        file_kind(path, LIMITS)
    with pytest.raises(MediaError, match="megapixels"):
        load_image(path, LIMITS)


def test_megapixel_limit_follows_the_limits(tmp_path: Path):
    path = tmp_path / "wide.png"
    photo(2000, 600).save(path)  # 1.2 megapixels
    assert load_image(path, LIMITS).size == (2000, 600)
    refusal = r"^wide\.png has 1\.2 megapixels; Loupe takes images up to 1 megapixels\.$"
    with pytest.raises(MediaError, match=refusal):
        load_image(path, Limits(max_image_mp=1))


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_truncated_image_is_refused_in_one_sentence(tmp_path: Path, suffix: str):
    path = tmp_path / f"cut{suffix}"
    photo(200, 200).save(path)
    cut_in_half(path)
    with pytest.raises(
        MediaError, match=rf"^cut\{suffix} is cut short: the image file is incomplete\.$"
    ):
        load_image(path, LIMITS)


def test_random_bytes_named_png_are_refused(tmp_path: Path):
    path = tmp_path / "noise.png"
    for seed in range(20):
        path.write_bytes(np.random.default_rng(seed).integers(0, 256, 4096, np.uint8).tobytes())
        with pytest.raises(MediaError, match=r"^noise\.png is not an image Loupe can read\.$"):
            load_image(path, LIMITS)
        # Some random bytes begin like an MP3 frame; those fail as audio instead.
        with pytest.raises(
            MediaError,
            match=r"^noise\.png is (not an image, a PDF, a video, audio or a text file Loupe can "
            r"use|not an audio file Loupe can read)\.$",
        ):
            file_kind(path, LIMITS)


def test_an_executable_named_png_is_refused(tmp_path: Path):
    path = tmp_path / "cat.png"
    path.write_bytes(Path(sys.executable).resolve().read_bytes()[:65_536])
    with pytest.raises(
        MediaError,
        match=r"^cat\.png is not an image, a PDF, a video, audio or a text file Loupe can use\.$",
    ):
        attachment_kinds([str(path)], LIMITS)


def test_animated_gif_gives_its_first_frame(tmp_path: Path):
    path = tmp_path / "blink.gif"
    frames = [Image.new("RGB", (16, 16), colour) for colour in ("red", "lime", "blue")]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert load_image(path, LIMITS).getpixel((8, 8)) == RED


def test_cmyk_jpeg_comes_out_rgb(tmp_path: Path):
    path = tmp_path / "print.jpg"
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(path, quality=95)
    pixel = load_image(path, LIMITS).getpixel((8, 8))
    assert pixel[0] > 230 and pixel[1] < 25 and pixel[2] < 25, pixel


def test_16_bit_greyscale_keeps_its_shades(tmp_path: Path):
    path = tmp_path / "scan.png"
    ramp = (np.arange(64, dtype=np.uint16) * 1040).reshape(1, 64).repeat(8, axis=0)  # 0..65520
    Image.fromarray(ramp).save(path)
    assert Image.open(path).mode.startswith("I;16")
    image = load_image(path, LIMITS)
    assert image.mode == "RGB"
    shades = [image.getpixel((x, 4))[0] for x in range(64)]
    assert shades[0] == 0 and shades[32] == round(32 * 1040 / 257) and shades[-1] == 255
    assert shades == sorted(shades)  # a ramp, not clipped to white


def test_palette_with_transparency_and_alpha_are_composited_onto_white(tmp_path: Path):
    palette = Image.new("P", (8, 8), 1)
    palette.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    palette.paste(0, (0, 0, 4, 8))  # the left half: index 0, declared transparent
    palette.save(tmp_path / "palette.png", transparency=0)
    image = load_image(tmp_path / "palette.png", LIMITS)
    assert image.getpixel((1, 1)) == (255, 255, 255) and image.getpixel((6, 1)) == RED
    Image.new("RGBA", (8, 8), (255, 0, 0, 0)).save(tmp_path / "clear.png")
    assert load_image(tmp_path / "clear.png", LIMITS).getpixel((0, 0)) == (255, 255, 255)
    Image.new("LA", (8, 8), (0, 128)).save(tmp_path / "half.png")
    assert load_image(tmp_path / "half.png", LIMITS).getpixel((0, 0)) == (127, 127, 127)


def test_exif_rotated_photo_comes_out_upright(tmp_path: Path):
    path = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to view
    Image.new("RGB", (40, 20), "blue").save(path, exif=exif)
    assert load_image(path, LIMITS).size == (20, 40)


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_a_25_megapixel_photo_is_scaled_to_what_the_model_can_use_as_it_is_decoded(
    tmp_path: Path, suffix: str
):
    # A camera's 6000 x 4166 photo, to be turned upright; a third of it red, the rest blue.
    pixels = np.zeros((4166, 6000, 3), np.uint8)
    pixels[:, :2000, 0] = 255
    pixels[:, 2000:, 2] = 255
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to view: the red third comes out on top
    path = tmp_path / f"camera{suffix}"
    Image.fromarray(pixels).save(path, exif=exif)
    del pixels
    with PeakMemory() as memory:
        image = load_image(path, LIMITS)
    # What 1120 tokens can use (2.58 megapixels, not 25): no full-size copy is kept.
    assert 0.99 * MAX_IMAGE_PIXELS <= image.width * image.height <= MAX_IMAGE_PIXELS
    assert image.height > image.width and abs(image.height / image.width - 6000 / 4166) < 0.01
    assert image.getpixel((image.width // 2, image.height // 6))[0] > 240  # red at the top
    assert image.getpixel((image.width // 2, image.height * 5 // 6))[2] > 240  # blue below
    if suffix == ".jpg":  # decoded at half its size straight away (PNG has no such shortcut)
        assert memory.grown_mb < 100, memory.grown_mb  # it was 285 MB
    # Zoom crops regions from every pixel.
    assert load_image(path, LIMITS, max_pixels=None).size == (4166, 6000)


@pytest.fixture(scope="module")
def retina_screenshot(tmp_path_factory: pytest.TempPathFactory, browser) -> Path:
    """A 5760 x 3240 (18.7-megapixel) screenshot of a page of 12 px text at 3x zoom, as a
    high-density screen takes it, by Chromium."""
    path = tmp_path_factory.mktemp("retina") / "screenshot.png"
    page = browser.new_page(viewport=SCREEN, device_scale_factor=3)
    try:
        page.set_content(SMALL_TEXT_PAGE)
        page.screenshot(path=path)
    finally:
        page.close()
    return path


def test_a_scaled_down_screenshot_of_small_text_still_gets_1120(retina_screenshot: Path):
    image = load_image(retina_screenshot, LIMITS)
    assert image.width * image.height <= MAX_IMAGE_PIXELS
    with Image.open(retina_screenshot) as whole:
        assert image_need(image)[0] == image_need(whole)[0] == 1120


def test_decoded_files_are_kept_within_their_megabytes(tmp_path: Path):
    cache: DecodedFiles[Image.Image] = DecodedFiles(10, max_mb=1)
    decoded = []  # the files decoded, not found in the cache

    def get(path: Path, megabytes: float) -> Image.Image:
        def decode() -> Image.Image:
            decoded.append(path)
            side = int((megabytes * 1024 * 1024 / 3) ** 0.5)
            return Image.new("RGB", (side, side))

        return cache.get(path, "how", decode)

    a, b, c, big = (tmp_path / name for name in "abcd")
    for path in (a, b, c, big):
        path.write_bytes(path.name.encode())
    for path in (a, b, c, b):
        get(path, 0.4)
    assert decoded == [a, b, c] and cache.bytes <= 1024 * 1024
    get(a, 0.4)  # the least recently used went to make room for c
    assert decoded == [a, b, c, a]
    get(big, 2)
    get(big, 2)  # larger than the whole cache: never kept
    assert decoded[-2:] == [big, big] and cache.bytes <= 1024 * 1024
    frames = (Image.new("RGB", (10, 10)), Image.new("L", (10, 10)))
    sound = AudioClip(np.zeros((100, 2), np.float32), 16_000)
    assert decoded_bytes((frames, sound, b"abc", "name", 3)) == 300 + 100 + 800 + 3


@pytest.mark.parametrize("size", [(1, 1), (10_000, 20), (20, 10_000)])
def test_tiny_and_extreme_images_go_through_the_processor(tmp_path: Path, processor, size):
    path = tmp_path / "odd.png"
    Image.new("RGB", size, "red").save(path)
    image = load_image(path, LIMITS)
    assert image.size == size
    through_processor(processor, images=[image])


def test_an_image_named_wav_is_taken_as_an_image(tmp_path: Path, processor):
    path = tmp_path / "photo.wav"
    photo(64, 48).save(path, format="PNG")
    assert file_kind(path, LIMITS) == "image"
    images, audio = load_attachments([str(path)], LIMITS)
    assert len(images) == 1 and not audio
    through_processor(processor, images=images)


# -- audio ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".wav", ".flac", ".ogg"])
def test_audio_keeps_its_rate_and_channels(tmp_path: Path, suffix: str):
    path = tmp_path / f"tone{suffix}"
    soundfile.write(path, tone(1.5, rate=44_100, channels=2), 44_100)
    clip = load_audio(path, LIMITS)
    assert clip.sample_rate == 44_100 and clip.samples.shape[1] == 2
    assert clip.samples.dtype == np.float32
    assert abs(clip.duration_s - 1.5) < 0.05
    assert 0.25 < np.abs(clip.samples).max() < 0.35


def test_empty_and_header_only_audio_are_refused(tmp_path: Path):
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(MediaError, match=r"^empty\.wav is empty\.$"):
        attachment_kinds([str(empty)], LIMITS)
    header_only = tmp_path / "header.wav"
    soundfile.write(header_only, np.zeros(0, dtype=np.float32), 16_000)
    assert header_only.stat().st_size == 44
    with pytest.raises(MediaError, match=r"^header\.wav holds no audio\.$"):
        load_audio(header_only, LIMITS)


@pytest.mark.parametrize("suffix", [".wav", ".flac"])
def test_truncated_audio_is_refused(tmp_path: Path, suffix: str):
    path = tmp_path / f"cut{suffix}"
    soundfile.write(path, tone(4.0, rate=16_000), 16_000)
    cut_in_half(path)
    with pytest.raises(
        MediaError, match=rf"^cut\{suffix} is cut short: the audio file is incomplete\.$"
    ):
        load_audio(path, LIMITS)


def test_non_audio_named_wav_is_refused(tmp_path: Path):
    fake = tmp_path / "fake.wav"
    fake.write_text("RIFF? no: these are just words in a text file.\n" * 20)
    with pytest.raises(MediaError, match=r"^fake\.wav is not an audio file Loupe can read\.$"):
        load_audio(fake, LIMITS)
    assert file_kind(fake, LIMITS) == "text"  # told by its content, never by its name


def test_audio_named_png_is_taken_as_audio(tmp_path: Path):
    path = tmp_path / "voice.png"
    soundfile.write(path, tone(1.0), 16_000, format="WAV")
    assert file_kind(path, LIMITS) == "audio"
    images, audio = load_attachments([str(path)], LIMITS)
    assert not images and len(audio) == 1


def test_ten_minutes_of_audio_are_refused_without_decoding_them(tmp_path: Path):
    # attachment_kinds only opens files: the length comes from the container.
    path = tmp_path / "lecture.wav"
    soundfile.write(path, np.zeros(600 * 8_000, dtype=np.int16), 8_000, subtype="PCM_16")
    with pytest.raises(
        MediaError, match=r"^lecture\.wav lasts 10 min; Loupe takes recordings up to 5 min\.$"
    ):
        attachment_kinds([str(path)], LIMITS)


@pytest.mark.parametrize(
    ("rate", "channels", "loudness"), [(8_000, 1, 1.0), (44_100, 2, 1.0), (16_000, 1, 0.0)]
)
def test_8_khz_stereo_and_silence_go_through_the_processor(
    tmp_path: Path, processor, rate: int, channels: int, loudness: float
):
    path = tmp_path / "clip.wav"
    soundfile.write(path, loudness * tone(2.0, rate=rate, channels=channels), rate)
    clip = load_audio(path, LIMITS)
    assert clip.sample_rate == rate and clip.samples.shape == (2 * rate, channels)
    through_processor(processor, audio=[clip])


def test_the_duration_limit_follows_the_limits(tmp_path: Path):
    path = tmp_path / "tone.wav"
    soundfile.write(path, tone(3.0), 16_000)
    assert load_audio(path, Limits(max_audio_s=5)).duration_s == pytest.approx(3.0)
    with pytest.raises(MediaError, match=r"^tone\.wav lasts 3 s; .* up to 2 s\.$"):
        load_audio(path, Limits(max_audio_s=2))


# -- files ----------------------------------------------------------------------------------------


def test_file_size_and_count_limits(tmp_path: Path, image_file: Path, audio_file: Path):
    images, audio = load_attachments([str(image_file), str(audio_file)], LIMITS)
    assert len(images) == 1 and len(audio) == 1
    two = Limits(max_files_per_message=2)
    with pytest.raises(
        MediaError, match=r"^One message can carry at most 2 files; this one has 3\.$"
    ):
        attachment_kinds([str(image_file), str(audio_file), str(image_file)], two)
    big = tmp_path / "big.png"
    photo(1200, 1200).save(big)  # about 4 MB of noise
    refusal = r"^big\.png is 4\.\d+ MB; Loupe takes files up to 1 MB\.$"
    with pytest.raises(MediaError, match=refusal):
        attachment_kinds([str(big)], Limits(max_file_mb=1))
    huge = tmp_path / "huge.png"
    with huge.open("wb") as file:  # sparse: nothing written to the disk
        file.truncate(1500 * 1024 * 1024)
    refusal = r"^huge\.png is 1,500 MB; Loupe takes files up to 100 MB\.$"
    with pytest.raises(MediaError, match=refusal):
        attachment_kinds([str(huge)], LIMITS)


@contextmanager
def unreadable(path: Path) -> Iterator[None]:
    """The file there but not readable by this process: mode 000, and for root, who may read
    any file, the process acting as the user nobody meanwhile."""
    path.parent.chmod(0o755)
    path.chmod(0)
    as_root = os.geteuid() == 0
    if as_root:
        os.seteuid(NOBODY)
    try:
        yield
    finally:
        if as_root:
            os.seteuid(0)
        path.chmod(0o644)


@pytest.mark.parametrize(
    "how, why",
    [
        ("mode 000", "Loupe is not allowed to open it"),
        ("a folder", "it is a folder"),
        ("gone", "it is no longer there"),
    ],
)
def test_a_file_that_cannot_be_read_is_said_to_be_so(image_file: Path, how: str, why: str):
    file_kind(image_file, LIMITS)  # the readers imported while this process may read them
    with tempfile.TemporaryDirectory() as folder:  # where the user nobody may look
        path = Path(folder, "photo.png")
        shutil.copy(image_file, path)
        sentence = rf"^photo\.png could not be read: {why}\.$"
        if how == "mode 000":
            with unreadable(path), pytest.raises(MediaError, match=sentence):
                file_kind(path, LIMITS)
            return
        path.unlink()
        if how == "a folder":
            path.mkdir()
        for read in (file_kind, load_image):
            with pytest.raises(MediaError, match=sentence):
                read(path, LIMITS)


# -- text -----------------------------------------------------------------------------------------


def test_a_message_over_the_character_limit_is_refused():
    assert message_text("a" * LIMITS.max_message_chars, LIMITS) == "a" * LIMITS.max_message_chars
    with pytest.raises(
        MediaError,
        match=r"^This message is 200,000 characters long; Loupe takes at most 100,000 "
        r"characters in one message\.$",
    ):
        message_text("x" * 200_000, LIMITS)


def test_lone_surrogates_are_replaced_and_nul_bytes_removed():
    text = message_text("a\ud800b\udfffc \ud83d\ude00 nul:\x00:", LIMITS)
    assert text == "a\ufffdb\ufffdc 😀 nul::"
    text.encode("utf-8")  # no longer raises


def test_right_to_left_and_emoji_are_kept_intact():
    text = "שלום עולם \u200f مرحبا 👩🏽‍💻🇫🇷"
    assert message_text(f"  {text}\n", LIMITS) == text


def test_a_recording_without_a_length_in_its_header_stops_decoding_at_the_limit(tmp_path: Path):
    # Browsers record WebM with no duration in the header; the limit applies while decoding.
    import av

    path = tmp_path / "recorded.webm"
    rate, samples = 48_000, tone(3.0, rate=48_000)
    with av.open(str(path), "w", format="webm", options={"live": "1"}) as container:
        stream = container.add_stream("libopus", rate=rate, layout="mono")
        for start in range(0, len(samples), 960):
            frame = av.AudioFrame.from_ndarray(samples[None, start : start + 960], "flt", "mono")
            frame.rate, frame.pts = rate, start
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    assert load_audio(path, LIMITS).duration_s == pytest.approx(3.0, abs=0.05)
    with pytest.raises(
        MediaError,
        match=r"^recorded\.webm is longer than 2 s, the longest recording Loupe takes\.$",
    ):
        load_audio(path, Limits(max_audio_s=2))


def test_an_mp3_spliced_from_mono_and_stereo_is_refused(tmp_path: Path):
    parts = []
    for channels in (1, 2):
        part = tmp_path / f"part{channels}.mp3"
        soundfile.write(part, tone(1.0, rate=16_000, channels=channels), 16_000, format="MP3")
        parts.append(part.read_bytes())
    assert load_audio(tmp_path / "part1.mp3", LIMITS).samples.shape[1] == 1
    spliced = tmp_path / "spliced.mp3"
    spliced.write_bytes(b"".join(parts))
    with pytest.raises(
        MediaError, match=r"^spliced\.mp3 changes its channels or sample rate part way through\.$"
    ):
        load_audio(spliced, LIMITS)
