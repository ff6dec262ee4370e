"""A conversation longer than the context window: the oldest turns are left out of the prompt,
the system prompt and the newest message stay, and the person is told."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from app.config import AppConfig
from app.history import History, StoredMessage
from app.page.chat_events import ChatHandlers
from app.page.voice import Voice
from app.tasks.reply import dropped_note
from bench.samples import photo
from bench.serving import wait_until_ready
from model import (
    ChatRequest,
    ContextTrimmed,
    Finished,
    GenerationOptions,
    LocalEngine,
    Message,
    TextChunk,
)
from model.prompts import ContextOverflow, build_inputs, context_length, fit_to_context

OPTIONS = GenerationOptions(max_new_tokens=8, image_tokens=280)
SYSTEM = Message("system", "Please answer in one short sentence.")
TURNS = [
    ("What colour is the car in the photo?", "The car is red."),
    ("How many birds are sitting on the wire?", "There are three birds."),
    ("What is written on the screenshot?", "Open every day from nine to five."),
    ("Summarise the document and list the main points.", "The chart compares sales."),
]
NEWEST = Message("user", "Explain what the error message means and how to fix it.")


def _conversation(first_image: bool = False) -> tuple[Message, ...]:
    messages = [SYSTEM]
    for number, (question, answer) in enumerate(TURNS):
        images = (photo(),) if first_image and number == 0 else ()
        messages += [Message("user", question, images), Message("assistant", answer)]
    return (*messages, NEWEST)


def _length(processor, messages) -> int:
    return build_inputs(processor, messages, OPTIONS)["input_ids"].shape[-1]


def test_the_oldest_whole_turns_go_and_the_system_prompt_and_newest_message_stay(processor):
    messages = _conversation()
    # Room for the system prompt, the last two turns and the newest message, plus the reply.
    kept = (SYSTEM, *messages[-5:])
    context = _length(processor, kept) + OPTIONS.max_new_tokens
    inputs, dropped = fit_to_context(processor, messages, OPTIONS, context)
    assert dropped == 4  # two turns of two messages, the oldest
    assert torch.equal(inputs["input_ids"], build_inputs(processor, kept, OPTIONS)["input_ids"])
    # The fewest dropped: one turn more would not have fitted.
    assert _length(processor, (SYSTEM, *messages[-7:])) + OPTIONS.max_new_tokens > context


def test_a_conversation_that_fits_is_sent_whole(processor):
    messages = _conversation()
    context = _length(processor, messages) + OPTIONS.max_new_tokens
    inputs, dropped = fit_to_context(processor, messages, OPTIONS, context)
    assert dropped == 0 and inputs["input_ids"].shape[-1] == context - OPTIONS.max_new_tokens


def test_images_count_as_the_soft_tokens_they_become(processor):
    context = _length(processor, _conversation()) + OPTIONS.max_new_tokens
    _, dropped = fit_to_context(processor, _conversation(first_image=True), OPTIONS, context)
    assert dropped == 2  # the same words fit without the picture; with it the first turn goes


def test_a_newest_message_too_long_by_itself_is_one_clear_sentence(processor):
    long_message = Message("user", " ".join([NEWEST.text] * 40))
    with pytest.raises(ContextOverflow, match=r"^This message is too long for the model: it "):
        fit_to_context(processor, (SYSTEM, long_message), OPTIONS, 64)


def test_the_window_is_the_models_own_unless_capped(miniature: Path):
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(miniature)
    own = config.get_text_config().max_position_embeddings
    assert context_length(config) == own
    assert context_length(config, cap=512) == 512
    assert context_length(config, cap=own * 2) == own


def test_the_person_is_told_and_the_saved_conversation_keeps_every_turn(
    demo_config, recognizer, processor, tmp_path: Path
):
    context = _length(processor, (SYSTEM, *_conversation()[-3:])) + OPTIONS.max_new_tokens
    engine = LocalEngine(replace(demo_config, context_tokens=context))
    engine.start()
    try:
        wait_until_ready(engine)
        events = list(engine.submit(ChatRequest(_conversation(), OPTIONS)))
        assert events[0] == ContextTrimmed(6)  # before any text
        assert isinstance(events[1], TextChunk) and isinstance(events[-1], Finished)

        history = History(tmp_path / "data")
        handlers = ChatHandlers(engine, Voice(recognizer), history, AppConfig())
        conversation_id = history.create()
        for message in _conversation()[1:]:
            history.append(conversation_id, StoredMessage(message.role, message.text))
        *_, (shown, reply) = handlers.answer(conversation_id, SYSTEM.text, OPTIONS)
    finally:
        engine.close()
    assert reply.dropped == 6 and reply.error is None and reply.timing is not None
    assert shown[-1]["content"].startswith(f"*{dropped_note(6)}*")
    saved = history.get(conversation_id).messages
    assert len(saved) == 2 * len(TURNS) + 2 and saved[0].text == TURNS[0][0]
    assert saved[-1].role == "assistant" and saved[-1].text == reply.answer
