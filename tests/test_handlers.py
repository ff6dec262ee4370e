"""The page's handlers: banner and status line per engine state, and sending a message."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.config import AppConfig
from app.handlers import ChatHandlers, banner_text, status_text
from model import Engine, EngineStatus, ModelConfig, ModelInfo, Timing
from model.loader import LoadError, locate

DEMO = ModelInfo("Loupe miniature (random weights)", True, "cpu", "4bit")
# The settings panel: system prompt, temperature, top-p, top-k, max new tokens, thinking, detail.
SETTINGS = ("", 1.0, 0.95, 64, 24, False, 280)
REAL = ModelInfo("google/gemma-4-12B-it", False, "cuda", "4bit")


def test_fallback_banner_gives_the_reason_and_the_fix():
    reason = locate_failure()
    status = EngineStatus("ready", "Ready", DEMO, busy=False, queued=0, fallback_reason=reason)
    banner = banner_text(status)
    assert reason in banner
    assert "hf download google/gemma-4-12B-it" in banner and "--model PATH" in banner
    assert "random weights" in banner


def test_loading_and_failure_banners():
    assert "loading: Loading weights: 40%" in banner_text(
        EngineStatus("loading", "Loading weights: 40%", None, False, 0)
    )
    assert "No model could be loaded. Out of disk." in banner_text(
        EngineStatus("error", "", None, False, 0, error="Out of disk.")
    )
    assert banner_text(EngineStatus("ready", "Ready", REAL, False, 0)) == ""


def test_status_line_names_model_mode_device_and_speed():
    line = status_text(EngineStatus("ready", "Ready", REAL, False, 0), Timing(0.41, 23.456, 100))
    assert line == (
        "google/gemma-4-12B-it (real) on cuda, 4bit · last reply: first token 0.41 s, 23.5 tokens/s"
    )
    assert "(demo)" in status_text(EngineStatus("ready", "Ready", DEMO, False, 0), None)


def locate_failure() -> str:
    """The loader's own sentence for weights that are missing with no hub to fetch them from."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        patch.setenv("HF_HOME", "/nonexistent-hf-home")
        with pytest.raises(LoadError) as error:
            locate(ModelConfig())
    return str(error.value)


def test_page_send_streams_into_the_chat_and_keeps_the_image_for_follow_ups(
    engine: Engine, image_file: Path
):
    handlers = ChatHandlers(engine, AppConfig())
    value = {"text": "What is this?", "files": [str(image_file)]}
    updates = list(handlers.respond(value, [], [], *SETTINGS))
    assert len(updates) >= 3  # the reply grew in the chat pane
    shown, box, turns, status = updates[-1]
    assert box is None  # the input box is cleared once the reply is complete
    assert shown[0] == {"role": "user", "content": {"path": str(image_file)}}
    assert shown[1] == {"role": "user", "content": "What is this?"}
    assert shown[-1]["role"] == "assistant" and shown[-1]["content"]
    assert [turn.role for turn in turns] == ["user", "assistant"]
    assert len(turns[0].images) == 1  # the next question still sees the picture
    assert "tokens/s" in status


def test_page_send_with_an_unreadable_file_loses_nothing(engine: Engine, tmp_path: Path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    handlers = ChatHandlers(engine, AppConfig())
    value = {"text": "Read this", "files": [str(broken)]}
    earlier = [{"role": "user", "content": "hi"}]
    [(shown, box, turns, _)] = list(
        handlers.respond(value, ["turn"], earlier, "", 1, 1, 1, 8, 0, 280)
    )
    assert (shown, box, turns) == (earlier, value, ["turn"])
