"""Shared fixtures: the miniature checkpoint is built once per test session, in a temp cache."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile
from PIL import Image

from model import Engine, ModelConfig

ENGINE_READY_S = 180


@pytest.fixture(scope="session")
def cache_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("loupe-cache")
    os.environ["LOUPE_CACHE_DIR"] = str(root)  # for app processes the tests start
    return root


@pytest.fixture(scope="session")
def miniature(cache_root: Path) -> Path:
    from model.miniature import ensure_miniature

    return ensure_miniature(cache_root)


@pytest.fixture(scope="session")
def processor(miniature: Path):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(miniature)


@pytest.fixture(scope="session")
def demo_config(miniature: Path, cache_root: Path) -> ModelConfig:
    return ModelConfig(demo=True, cache_root=cache_root)


@pytest.fixture(scope="session")
def engine(demo_config: ModelConfig):
    engine = Engine(demo_config, queue_size=4)
    engine.start()
    wait_until_ready(engine)
    yield engine
    engine.close()


def wait_until_ready(engine: Engine, timeout_s: float = ENGINE_READY_S) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = engine.status()
        if status.load_state == "ready":
            return
        assert status.load_state != "error", status.error
        time.sleep(0.1)
    raise AssertionError(f"engine not ready after {timeout_s} s: {engine.status()}")


def photo(width: int = 320, height: int = 240, seed: int = 0) -> Image.Image:
    """A random RGB picture."""
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def tone(seconds: float, rate: int = 16_000, hz: float = 440.0, channels: int = 1) -> np.ndarray:
    """A sine tone, float32, shape (samples,) or (samples, channels)."""
    t = np.arange(int(seconds * rate)) / rate
    wave = (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32)
    return wave if channels == 1 else np.repeat(wave[:, None], channels, axis=1)


@pytest.fixture
def image_file(tmp_path: Path) -> Path:
    path = tmp_path / "photo.png"
    photo().save(path)
    return path


@pytest.fixture
def audio_file(tmp_path: Path) -> Path:
    path = tmp_path / "tone.wav"
    soundfile.write(path, tone(2.0, rate=44_100, channels=2), 44_100)
    return path
