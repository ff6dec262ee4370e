"""Uploaded files -> images and audio the model package takes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile
from PIL import Image

from app.media import MediaError, load_attachments, load_audio, load_image
from tests.conftest import photo, tone


def test_transparent_png_is_composited_onto_white(tmp_path: Path):
    path = tmp_path / "clear.png"
    Image.new("RGBA", (8, 8), (255, 0, 0, 0)).save(path)
    image = load_image(path)
    assert image.mode == "RGB" and image.getpixel((0, 0)) == (255, 255, 255)


def test_exif_rotated_photo_comes_out_upright(tmp_path: Path):
    path = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to view
    Image.new("RGB", (40, 20), "blue").save(path, exif=exif)
    assert load_image(path).size == (20, 40)


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_truncated_image_is_refused_in_one_sentence(tmp_path: Path, suffix: str):
    path = tmp_path / f"cut{suffix}"
    photo(200, 200).save(path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(
        MediaError, match=rf"^cut\{suffix} is cut short: the image file is incomplete\.$"
    ):
        load_image(path)


def test_random_bytes_named_png_are_refused(tmp_path: Path):
    path = tmp_path / "noise.png"
    path.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(MediaError, match=r"^noise\.png is not an image Loupe can read\.$"):
        load_image(path)


@pytest.mark.parametrize("suffix", [".wav", ".flac", ".ogg"])
def test_audio_keeps_its_rate_and_channels(tmp_path: Path, suffix: str):
    path = tmp_path / f"tone{suffix}"
    soundfile.write(path, tone(1.5, rate=44_100, channels=2), 44_100)
    clip = load_audio(path)
    assert clip.sample_rate == 44_100 and clip.samples.shape[1] == 2
    assert clip.samples.dtype == np.float32
    assert abs(clip.duration_s - 1.5) < 0.05
    assert 0.25 < np.abs(clip.samples).max() < 0.35


def test_non_audio_named_wav_and_empty_file_are_refused(tmp_path: Path):
    fake = tmp_path / "fake.wav"
    fake.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200))
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    for path in (fake, empty):
        with pytest.raises(MediaError, match=rf"^{path.name} "):
            load_audio(path)


def test_attachments_are_sorted_and_limited(tmp_path: Path, image_file: Path, audio_file: Path):
    images, audio = load_attachments([str(image_file), str(audio_file)], max_files=4)
    assert len(images) == 1 and len(audio) == 1
    with pytest.raises(MediaError, match="at most 2 files; this one has 3"):
        load_attachments([str(image_file), str(audio_file), str(image_file)], max_files=2)
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    with pytest.raises(MediaError, match="neither an image nor an audio file"):
        load_attachments([str(notes)], max_files=4)
