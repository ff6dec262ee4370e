"""Describe mode: each level asks for what it names in its own prompt; a description is a turn of
a conversation that starts with the AI notice, and follow-up questions continue it; the alt text
lands in its box."""

from __future__ import annotations

from pathlib import Path

import gradio as gr
import pytest

from app.page.chat_events import ChatHandlers
from app.page.display import shown_conversation
from app.page.side_list import hidden_alt_text
from app.page.voice import SEND_AUDIO
from app.tasks.describe import (
    AI_NOTICE,
    LEVELS,
    alt_text_of,
    description_messages,
    level_of,
    level_prompt,
)
from app.tasks.moderation import verdict_in_words
from bench.samples import photo
from model import GenerationOptions
from model.prompts import render_prompt
from tests.test_conversations import LONG, SETTINGS, handlers  # noqa: F401 (a fixture)


def test_each_level_renders_its_own_prompt_with_the_image(processor):
    prompts = {
        level: render_prompt(processor, description_messages(photo(), level), GenerationOptions())
        for level in LEVELS
    }
    assert len(set(prompts.values())) == len(LEVELS)
    for level, prompt in prompts.items():
        assert prompt.startswith("<bos><|turn>user\n<|image|>")
        assert f"{LEVELS[level].prompt}<turn|>\n<|turn>model\n" in prompt
        if level != "check_content":  # a moderation verdict (tests/test_moderation.py)
            assert "<|image|>You are describing an image for" in prompt
            assert "blind or has low vision" in prompt
    assert "one or two sentences" in prompts["brief"]
    assert "most important things first" in prompts["detailed"]
    for kind in ("decorative:", "informative:", "complex:", "W3C alt decision tree"):
        assert kind in prompts["alt_text"]
    assert "Long description:" in prompts["alt_text"] and "125 characters" in prompts["alt_text"]
    for asked in ("word for word", "reading order", "[?]", "No text found"):
        assert asked in prompts["read_text"]
    for asked in ("axes", "legend", "every value you can read", "trend"):
        assert asked in prompts["diagram"]


def test_an_unknown_level_is_refused():
    with pytest.raises(ValueError, match="must be one of brief, detailed, alt_text"):
        description_messages(photo(), "poem")


def test_a_prompt_is_known_as_its_level_and_nothing_else_is():
    assert all(level_of(level_prompt(level)) == level for level in LEVELS)
    assert level_of("Describe this photo.") is None


@pytest.mark.parametrize(
    ("answer", "kind", "text", "long"),
    [
        ("Kind: decorative\nAlt text:\nLong description:", "decorative", "", ""),
        (
            f"{AI_NOTICE} Kind: informative\nAlt text: A red car on a hill road.",
            "informative",
            "A red car on a hill road.",
            "",
        ),
        (
            'Kind: complex\nAlt text: "Sales doubled in 2024."\n'
            "Long description: A bar chart.\nQ1 10, Q2 20.",
            "complex",
            "Sales doubled in 2024.",
            "A bar chart.\nQ1 10, Q2 20.",
        ),
        (f"{AI_NOTICE} A cat asleep on a sofa.", "", "A cat asleep on a sofa.", ""),
        # Control characters go (a browser's text box would turn \r into \n anyway).
        ("A cat\x08 on\r\na sofa\x7f,\rasleep\x00", "", "A cat on\na sofa,\nasleep", ""),
    ],
)
def test_an_alt_text_answer_is_taken_apart(answer, kind, text, long):
    alt = alt_text_of(answer)
    assert (alt.kind, alt.text, alt.long_description) == (kind, text, long)


def describe(chat: ChatHandlers, image: Path, level: str, conversation_id: str = ""):
    value = {"text": "typed, not sent", "files": [str(image)]}
    return list(chat.describe_page(value, conversation_id, level, *SETTINGS))


def test_a_description_is_a_conversation_turn_and_a_follow_up_continues_it(
    handlers: ChatHandlers,  # noqa: F811
    image_file: Path,
):
    updates = describe(handlers, image_file, "brief")
    shown, box, conversation_id, *_, alt_box = updates[0]
    assert box == {"text": "typed, not sent", "files": []}  # the typed text waits in the box
    assert shown[1] == {"role": "user", "content": "Describe this image: Brief"}
    assert handlers.history.get(conversation_id).title == f"Brief: {image_file.name}"
    assert shown[0]["content"]["alt_text"] == f"Image you sent: {image_file.name}"
    assert shown[-1]["content"].startswith(AI_NOTICE)  # the notice comes first, at once
    assert alt_box == hidden_alt_text()  # emptied: it belongs to an Alt text description only
    assert all(update[-1] == gr.skip() for update in updates[1:])

    follow_up = {"text": "What colour is it?", "files": []}
    list(handlers.respond(follow_up, conversation_id, SEND_AUDIO, *SETTINGS))
    messages = handlers.history.get(conversation_id).messages
    assert [m.role for m in messages] == ["user", "assistant", "user", "assistant"]
    assert messages[0].text == LEVELS["brief"].prompt and messages[0].attachments
    assert messages[1].text.startswith(f"{AI_NOTICE} ")
    assert not messages[3].text.startswith(AI_NOTICE)  # an answer to a question, not a description
    model_messages = handlers.intake.model_messages(handlers.history.get(conversation_id), "")
    assert model_messages[0].images and model_messages[2].text == "What colour is it?"
    shown_now, _ = shown_conversation(handlers.history.get(conversation_id))
    assert shown_now[1]["content"] == "Describe this image: Brief"


def test_the_alt_text_reply_fills_the_alt_text_box(
    handlers: ChatHandlers,  # noqa: F811
    image_file: Path,
):
    updates = describe(handlers, image_file, "alt_text")
    conversation_id = updates[0][2]
    alt_box = updates[-1][-1]
    answer = handlers.history.get(conversation_id).messages[-1].text
    assert alt_box["visible"] is True
    alt = alt_text_of(answer)
    assert alt_box["value"] == alt.text and not alt.text.startswith(AI_NOTICE)
    # Held to the asked-for form, even the miniature model's random answer has a kind, and an
    # empty alt text exactly when it is decorative; the box's label says what to do with it.
    assert alt.kind in ("decorative", "informative", "complex"), answer
    assert (alt.text == "") == (alt.kind == "decorative")
    assert (alt.kind == "decorative") == ("decorative" in alt_box["label"])


def test_a_content_check_says_its_verdict_in_words_in_the_box(
    handlers: ChatHandlers,  # noqa: F811
    image_file: Path,
):
    value = {"text": "typed, not sent", "files": [str(image_file)]}
    updates = list(handlers.describe_page(value, "", "check_content", *LONG))
    conversation_id = updates[0][2]
    assert handlers.history.get(conversation_id).title == f"Check content: {image_file.name}"
    answer = handlers.history.get(conversation_id).messages[-1].text
    box = updates[-1][-1]
    assert box["visible"] is True and box["label"].startswith("Content check")
    # Held to the verdict's schema, even the miniature model's random answer is a verdict.
    assert box["value"] == verdict_in_words(answer)
    assert box["value"].startswith(("Flagged: ", "Not flagged ")), box["value"]
    # Cut short by the length limit, it is none, and the box says so rather than guess.
    short = describe(handlers, image_file, "check_content")[-1][-1]
    assert short["value"].startswith("No verdict: ")


def test_a_new_description_takes_the_alt_text_box_from_the_one_before(
    handlers: ChatHandlers,  # noqa: F811
    image_file: Path,
    tmp_path: Path,
):
    described_a = describe(handlers, image_file, "alt_text")
    # Image A's alt text is in the box (empty, and its label says so, if it is decorative).
    box_a = described_a[-1][-1]
    assert box_a["visible"] is True and (box_a["value"] or "decorative" in box_a["label"])
    image_b = tmp_path / "chart.png"
    photo(seed=1).save(image_b)
    # New chat, then image B described as a diagram: A's alt text must not stay under it.
    new_chat = handlers.conversations.new_chat()
    assert new_chat[3] == hidden_alt_text()
    described_b = describe(handlers, image_b, "diagram")
    boxes = [update[-1] for update in described_b if update[-1] != gr.skip()]
    assert boxes == [hidden_alt_text()]


def test_describe_mode_describes_what_is_sent_with_an_image(
    handlers: ChatHandlers,  # noqa: F811
    image_file: Path,
):
    value = {"text": "", "files": [str(image_file)]}
    updates = list(handlers.send(value, "", "read_text", SEND_AUDIO, *SETTINGS))
    conversation_id = updates[0][2]
    assert handlers.history.get(conversation_id).messages[0].text == LEVELS["read_text"].prompt
    question = {"text": "Is any of it in bold?", "files": []}  # no image: a follow-up question
    list(handlers.send(question, conversation_id, "read_text", SEND_AUDIO, *SETTINGS))
    assert handlers.history.get(conversation_id).messages[2].text == "Is any of it in bold?"


def test_describe_needs_exactly_one_image(handlers: ChatHandlers, audio_file: Path):  # noqa: F811
    for files in ([], [str(audio_file)]):
        updates = list(handlers.describe_page({"text": "", "files": files}, "", "brief", *SETTINGS))
        assert len(updates) == 1 and updates[0][2] == ""  # nothing sent, no conversation made
    assert handlers.history.list() == []
