"""Token ids -> answer and thinking text, with the miniature tokenizer."""

from __future__ import annotations

import torch

from model.streaming import ReplyStreamer


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
