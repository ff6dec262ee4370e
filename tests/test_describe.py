"""Each description level asks for what it names, in its own prompt."""

from __future__ import annotations

import pytest

from app.describe import LEVELS, description_messages
from model import GenerationOptions
from model.prompts import render_prompt
from tests.conftest import photo


def test_each_level_renders_its_own_prompt_with_the_image(processor):
    prompts = {
        level: render_prompt(processor, description_messages(photo(), level), GenerationOptions())
        for level in LEVELS
    }
    assert len(set(prompts.values())) == len(LEVELS)
    for level, prompt in prompts.items():
        assert f"<|turn>user\n<|image|>{LEVELS[level]}<turn|>" in prompt
        assert prompt.startswith("<bos><|turn>system\nYou describe images for people who are blind")
    assert "alt attribute" in prompts["alt_text"] and "word for word" in prompts["read_text"]


def test_an_unknown_level_is_refused():
    with pytest.raises(ValueError, match="must be one of brief, detailed, alt_text"):
        description_messages(photo(), "poem")
