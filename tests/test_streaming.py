"""Token ids -> answer and thinking text, with the miniature tokenizer; thinking off keeps the
thought channel shut."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import LogitsProcessor, LogitsProcessorList

from model import ChatRequest, Engine, GenerationOptions, Message, TextChunk
from model.prompts import build_inputs
from model.streaming import ReplyStreamer, thinking_rules


def _ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def test_thinking_and_answer_arrive_apart_token_by_token(processor):
    tokenizer = processor.tokenizer
    received: list[tuple[str, bool]] = []
    streamer = ReplyStreamer(
        tokenizer, emit=lambda text, thinking: received.append((text, thinking))
    )
    generated = (
        [tokenizer.convert_tokens_to_ids("<|channel>")]
        + _ids(tokenizer, "thought\nThe cat is on the sofa.")
        + [tokenizer.convert_tokens_to_ids("<channel|>")]
        + _ids(tokenizer, "A cat sleeps. 😀")
        + [tokenizer.convert_tokens_to_ids("<turn|>")]
    )
    streamer.put(torch.tensor([[5, 6, 7]]))  # the prompt, which generate() passes first
    for token in generated:
        streamer.put(torch.tensor([token]))
    streamer.end()
    thinking = "".join(text for text, is_thinking in received if is_thinking)
    answer = "".join(text for text, is_thinking in received if not is_thinking)
    assert thinking == "The cat is on the sofa."
    assert answer == "A cat sleeps. 😀"
    assert all("\ufffd" not in text for text, _ in received)  # never half an emoji
    assert len(received) > 4  # streamed in pieces, not at the end
    assert streamer.tokens == len(generated)


class _Favour(LogitsProcessor):
    """Makes one token by far the likeliest: a model that wants to open the thought channel."""

    def __init__(self, token_id: int):
        self.token_id = token_id

    def __call__(self, input_ids, scores):
        scores = scores.clone()
        scores[:, self.token_id] += 1000.0
        return scores


@pytest.fixture(scope="module")
def model(miniature: Path):
    from transformers import AutoModelForMultimodalLM

    return AutoModelForMultimodalLM.from_pretrained(miniature, dtype=torch.bfloat16)


@pytest.mark.parametrize("thinking", [False, True])
def test_the_thought_channel_opens_only_with_thinking_on(model, processor, thinking: bool):
    tokenizer = processor.tokenizer
    channel_open = tokenizer.convert_tokens_to_ids("<|channel>")
    options = GenerationOptions(thinking=thinking)
    inputs = build_inputs(processor, [Message("user", "What is in this picture?")], options)
    rules = LogitsProcessorList([_Favour(channel_open), *thinking_rules(tokenizer, thinking)])
    with torch.inference_mode():
        output = model.generate(
            **inputs, logits_processor=rules, max_new_tokens=8, min_new_tokens=8, do_sample=False
        )
    generated = output[0, inputs["input_ids"].shape[1] :].tolist()
    assert (channel_open in generated) is thinking
    if not thinking:  # the rule adds to the checkpoint's suppressed tokens, not replaces them
        assert not set(generated) & set(model.generation_config.suppress_tokens)


def test_thinking_off_replies_have_no_thinking(engine: Engine):
    # The random demo model opened the channel in 2 or 3 of every 30 replies before the rule.
    options = GenerationOptions(max_new_tokens=200, min_new_tokens=200, thinking=False)
    for number in range(12):
        request = ChatRequest((Message("user", f"Describe picture {number}."),), options)
        thinking = [e for e in engine.submit(request) if isinstance(e, TextChunk) and e.thinking]
        assert not thinking, number
