"""The page's handlers: banner and status line per engine state, and sending a message."""

from __future__ import annotations

import inspect

import pytest

from app.page.gradio_api import CHAT_SETTINGS, GradioApi
from app.page.status import banner_text, status_text
from app.tasks.settings import SETTING_NAMES, Settings
from model import EngineStatus, GenerationOptions, ModelConfig, ModelInfo, Timing
from model.loader import LoadError, locate

DEMO = ModelInfo("Loupe miniature (random weights)", True, "cpu", "4bit")
# The settings panel: system prompt, temperature, top-p, top-k, max new tokens, thinking, detail.
SETTINGS = ("", 1.0, 0.95, 64, 24, False, 280)
REAL = ModelInfo("google/gemma-4-12B-it", False, "cuda", "4bit")


def test_fallback_banner_gives_the_reason_and_the_fix(no_hub):
    with pytest.raises(LoadError) as error:
        locate(ModelConfig())
    reason = str(error.value)
    status = EngineStatus("ready", "Ready", DEMO, busy=False, queued=0, fallback_reason=reason)
    banner = banner_text(status)
    assert reason in banner
    assert "hf download google/gemma-4-12B-it" in banner and "--model PATH" in banner
    assert "random weights" in banner


def test_loading_and_failure_banners():
    assert "loading: Loading weights: 40%" in banner_text(
        EngineStatus("loading", "Loading weights: 40%", None, False, 0)
    )
    memory = "Loading X in 4-bit needs about 1.0 GiB of RAM; 13.8 GiB is free."
    assert banner_text(EngineStatus("loading", memory, None, False, 0)) == (
        f"⏳ The model is loading: {memory} You can type your message meanwhile."
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


def test_the_system_prompt_is_cleaned_like_a_message():
    settings = Settings(" Be brief\x00.\ud800 ", 0.5, 0.9, 40, 64, False, 280)
    system, options = settings.system, settings.options()
    assert system == "Be brief.\ufffd"
    assert (options.temperature, options.top_k, options.max_new_tokens) == (0.5, 40, 64)


def test_the_chat_endpoint_takes_the_settings_in_their_one_order():
    # /chat's positional inputs (message, the settings, conversation id) follow Settings' order.
    parameters = list(inspect.signature(GradioApi.chat).parameters)
    assert parameters[2:-2] == list(CHAT_SETTINGS) == list(SETTING_NAMES[:-1])
    assert Settings().options() == GenerationOptions()
