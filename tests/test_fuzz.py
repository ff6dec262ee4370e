"""Fuzzing the intake: whatever bytes or text arrive, the only error is the app's own MediaError
(one sentence for the person), and what is accepted is what the model package expects.

Inputs are random bytes, and valid small files of every accepted format with bytes overwritten,
cut off or inserted, so the decoders get past the first check. Derandomized: CI sees the same
1,000 examples of each kind on every run. By hand, LOUPE_FUZZ_EXAMPLES=20000 runs that many
fresh random examples of each kind instead.
"""

from __future__ import annotations

import io
import json
import os
import sqlite3
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from app.config import Limits
from app.intake.files import file_kind
from app.intake.probe import MediaError
from app.intake.text import message_text
from bench.samples import photo, tone
from tests.decoding import load_attachments

EXAMPLES = int(os.environ.get("LOUPE_FUZZ_EXAMPLES", "0"))
FUZZ = settings(
    max_examples=EXAMPLES or 1_000,
    derandomize=not EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,  # one scratch folder, the file rewritten each time
    ],
)
LIMITS = Limits()
# A small ceiling on text, so that the refusal is exercised as well as the cleaning.
TEXT_LIMITS = Limits(max_message_chars=300)


def _image_seeds() -> list[bytes]:
    seeds = []
    picture = photo(32, 24, seed=3)
    for format, image in [
        ("PNG", picture),
        ("PNG", picture.convert("P")),
        ("PNG", Image.fromarray(np.arange(768, dtype=np.uint16).reshape(24, 32) * 80)),
        ("JPEG", picture),
        ("JPEG", picture.convert("CMYK")),
        ("GIF", picture.convert("P")),
        ("WEBP", picture.convert("RGBA")),
        ("BMP", picture),
        ("TIFF", picture.convert("LA")),
    ]:
        buffer = io.BytesIO()
        image.save(buffer, format=format)
        seeds.append(buffer.getvalue())
    return seeds


def _audio_seeds() -> list[bytes]:
    seeds = []
    for format, subtype, channels in [
        ("WAV", "PCM_16", 1),
        ("WAV", "FLOAT", 2),
        ("FLAC", "PCM_16", 1),
        ("OGG", "VORBIS", 2),
        ("MP3", "MPEG_LAYER_III", 1),
    ]:
        buffer = io.BytesIO()
        samples = tone(0.25, rate=8_000, channels=channels)
        soundfile.write(buffer, samples, 8_000, format=format, subtype=subtype)
        seeds.append(buffer.getvalue())
    return seeds


@st.composite
def mutated(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    """A seed file with some bytes overwritten, a stretch inserted, and maybe cut short."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for position, value in draw(st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(0, 255)))):
        data[position % len(data)] = value
    if draw(st.booleans()):
        at = draw(st.integers(0, len(data)))
        data[at:at] = draw(st.binary(max_size=64))
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    return bytes(data)


def file_bytes(seeds: list[bytes]) -> st.SearchStrategy[bytes]:
    return st.one_of(st.binary(max_size=2048), mutated(seeds))


outcomes: dict[str, Counter] = {"image": Counter(), "audio": Counter(), "text": Counter()}


def take_file(path: Path, data: bytes, kind_fuzzed: str) -> None:
    """Intake of one file: MediaError, or images and audio as the model package takes them."""
    path.write_bytes(data)
    try:
        kind = file_kind(path, LIMITS)
        images, audio = load_attachments([str(path)], LIMITS)
    except MediaError as exc:
        message = str(exc)
        assert message.startswith(path.name) and message.endswith(".") and "\n" not in message
        outcomes[kind_fuzzed][message.removeprefix(path.name).strip()] += 1
        return
    outcomes[kind_fuzzed][f"accepted as {kind}"] += 1
    for image in images:
        assert image.mode == "RGB" and image.width >= 1 and image.height >= 1
    for clip in audio:
        assert clip.samples.dtype == np.float32 and clip.samples.ndim == 2
        assert clip.sample_rate > 0 and np.abs(clip.samples).max(initial=0.0) <= 1.0
        assert clip.duration_s <= LIMITS.max_audio_s


@FUZZ
@given(data=file_bytes(_image_seeds()))
def test_image_bytes_give_an_image_or_one_sentence(tmp_path: Path, data: bytes):
    take_file(tmp_path / "upload.png", data, "image")


@FUZZ
@given(data=file_bytes(_audio_seeds()))
def test_audio_bytes_give_audio_or_one_sentence(tmp_path: Path, data: bytes):
    take_file(tmp_path / "upload.wav", data, "audio")


ODD_CHARACTERS = st.sampled_from(["\x00", "\ud800", "\udfff", "\u202e", "\u200f", "🇫🇷", "👩🏽‍💻"])
TEXT = st.one_of(
    st.lists(st.one_of(st.characters(exclude_categories=()), ODD_CHARACTERS), max_size=400).map(
        "".join
    ),
    st.builds(lambda text, times: text * times, st.text(max_size=8), st.integers(0, 200)),
)


@FUZZ
@given(text=TEXT)
def test_message_text_is_kept_intact_or_refused(text: str):
    try:
        cleaned = message_text(text, TEXT_LIMITS)
    except MediaError as exc:
        assert str(exc).startswith("This message is ")
        outcomes["text"]["refused: over the limit"] += 1
        return
    outcomes["text"]["accepted"] += 1
    assert len(cleaned) <= TEXT_LIMITS.max_message_chars and "\x00" not in cleaned
    cleaned.encode("utf-8")  # what SQLite and JSON need
    assert sqlite3.connect(":memory:").execute("SELECT ?", (cleaned,)).fetchone() == (cleaned,)
    assert json.loads(json.dumps(cleaned)) == cleaned
    if not any(c == "\x00" or "\ud800" <= c <= "\udfff" for c in text):
        assert cleaned == text.strip()  # everything else, right-to-left and emoji too, is kept


@pytest.fixture(scope="module", autouse=True)
def report_outcomes():
    """Prints what the fuzzing found (pytest -s shows it): the figures for the closing note."""
    yield
    for kind, counts in outcomes.items():
        if counts:
            print(f"\nfuzzed {kind}: {sum(counts.values())} inputs")
            for outcome, count in counts.most_common():
                print(f"  {count:5d}  {outcome}")
