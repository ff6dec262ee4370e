"""The speed work in the worker and the stream: forced lengths, reused inputs, cheap streaming."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest
import torch

from bench.samples import photo
from model import ChatRequest, Finished, GenerationOptions, Message, TextChunk
from model.engine import ReplyStream
from model.messages import IMAGE_TOKEN_BUDGETS
from model.miniature import CONTROL_TOKENS
from model.prompts import context_length
from model.streaming import ReplyStreamer


@pytest.fixture(scope="module")
def loaded(demo_config):
    from model.loader import load

    return load(demo_config, progress=lambda sentence: None)


def reply(loaded, request: ChatRequest, prepared) -> list[tuple]:
    """The worker's messages for one request, answered in this process."""
    from model.worker import answer

    sent: list[tuple] = []
    answer(
        loaded, 7, request, SimpleNamespace(send=sent.append), SimpleNamespace(value=0), prepared
    )
    return sent


def picture_request(**options) -> ChatRequest:
    message = Message("user", "What is in this picture?", images=(photo(),))
    return ChatRequest((message,), GenerationOptions(temperature=0.0, **options))


def test_min_new_tokens_forces_the_reply_length_and_chunks_carry_their_send_time(loaded):
    from model.worker import PreparedInputs

    before = time.time()
    sent = reply(
        loaded,
        picture_request(max_new_tokens=40, min_new_tokens=40),
        PreparedInputs(loaded.processor, loaded.model.device, context_length(loaded.model.config)),
    )
    assert sent[-1][0] == "done" and sent[-1][2].tokens == 40
    chunks = [message for message in sent if message[0] == "chunk"]
    assert chunks and all(before <= chunk[4] <= time.time() for chunk in chunks)
    with pytest.raises(ValueError):
        GenerationOptions(min_new_tokens=-1)


def test_a_repeated_request_skips_the_processor(loaded, monkeypatch):
    import model.prompts
    from model.worker import PreparedInputs

    calls = []
    build_inputs = model.prompts.build_inputs
    monkeypatch.setattr(
        model.prompts, "build_inputs", lambda *args: calls.append(1) or build_inputs(*args)
    )
    prepared = PreparedInputs(
        loaded.processor, loaded.model.device, context_length(loaded.model.config)
    )
    first = reply(loaded, picture_request(max_new_tokens=12), prepared)
    again = reply(loaded, picture_request(max_new_tokens=12), prepared)  # equal, not the same
    assert len(calls) == 1
    assert [m[:4] for m in again if m[0] == "chunk"] == [m[:4] for m in first if m[0] == "chunk"]
    reply(loaded, picture_request(max_new_tokens=12, image_tokens=70), prepared)
    assert len(calls) == 2  # another budget is another prompt


def test_images_are_prepared_at_the_chosen_budget_only(processor):
    from model.prompts import build_inputs

    image_token = processor.tokenizer.convert_tokens_to_ids("<|image|>")
    messages = (Message("user", "What is in this picture?", images=(photo(1024, 768),)),)
    for budget in IMAGE_TOKEN_BUDGETS:
        inputs = build_inputs(processor, messages, GenerationOptions(image_tokens=budget))
        assert inputs["pixel_values"].shape[1] == budget  # patches padded to this budget, no more
        assert 0.8 * budget <= (inputs["input_ids"] == image_token).sum() <= budget


def test_streamed_text_equals_the_whole_decode_however_long_the_reply(processor):
    tokenizer = processor.tokenizer
    first = len(CONTROL_TOKENS)  # text and byte tokens only
    ids = torch.randint(first, len(tokenizer), (1500,), generator=torch.Generator().manual_seed(0))
    emoji = tokenizer("😀 é", add_special_tokens=False)["input_ids"]  # multi-byte pieces
    generated = [*ids[:700].tolist(), *emoji, *ids[700:].tolist(), *emoji]
    received = []
    streamer = ReplyStreamer(tokenizer, emit=lambda text, thinking: received.append(text))
    streamer.put(torch.tensor([[1, 2]]))  # the prompt
    for token in generated:
        streamer.put(torch.tensor([token]))
    streamer.end()
    assert "".join(received) == tokenizer.decode(generated, skip_special_tokens=True)


def test_chunks_that_queued_up_come_as_one_and_keep_their_order():
    stream = ReplyStream(1, None)
    events = [
        TextChunk("a", sent_at=1.0),
        TextChunk("b", sent_at=2.0),
        TextChunk("t", thinking=True, sent_at=3.0),
        TextChunk("c", sent_at=4.0),
        TextChunk("d", sent_at=5.0),
        Finished(timing=None),
    ]
    for event in events:
        stream.put(event)
    assert list(stream) == [
        TextChunk("ab", sent_at=1.0),  # the oldest send time: delays are not understated
        TextChunk("t", thinking=True, sent_at=3.0),
        TextChunk("cd", sent_at=4.0),
        Finished(timing=None),
    ]
