"""The model worker process: loads the model once, then answers requests one at a time.

Runs in a child process started by `engine.Engine`, so a crash, an out-of-memory or a CUDA fault
here never takes the web server down. Talks to its parent through one `Connection`:

parent -> worker: (request_id, ChatRequest)
worker -> parent: ("progress", sentence) | ("loaded", ModelInfo) | ("load_failed", sentence)
                  | ("chunk", request_id, text, thinking, sent_at)
                  | ("done", request_id, Timing, cancelled)
                  | ("error", request_id, kind, sentence)
"""

from __future__ import annotations

import hashlib
import pickle
import time
from collections import OrderedDict
from multiprocessing.connection import Connection
from typing import Any

from .config import ModelConfig
from .events import Timing
from .loader import LoadError, first_line, load
from .messages import ChatRequest, GenerationOptions, Message

SAMPLING_FLOOR = 1e-5  # temperatures below this mean greedy decoding
PREPARED_INPUTS_KEPT = 4  # processed requests kept, so "answer again" skips the processor


def serve(config: ModelConfig, conn: Connection, cancel_id: Any) -> None:
    """The child process's main: load, report, then serve until the parent goes away."""
    try:
        loaded = load(config, progress=lambda sentence: conn.send(("progress", sentence)))
    except LoadError as exc:
        conn.send(("load_failed", str(exc)))
        return
    except Exception as exc:  # anything else still deserves a sentence, not a dead page
        conn.send(
            (
                "load_failed",
                f"Loading the model failed unexpectedly ({type(exc).__name__}: {first_line(exc)}).",
            )
        )
        return
    conn.send(("loaded", loaded.info))
    prepared = PreparedInputs(loaded.processor, loaded.model.device)
    while True:
        try:
            request_id, request = conn.recv()
        except (EOFError, OSError):
            return
        answer(loaded, request_id, request, conn, cancel_id, prepared)


class PreparedInputs:
    """Model inputs (on the model's device) of the last few requests, keyed by their content.

    The same conversation with the same prompt settings (a regenerated reply) is looked up
    instead of being templated, tokenised, cut into patches and copied to the device again.
    """

    def __init__(self, processor: Any, device: Any, kept: int = PREPARED_INPUTS_KEPT):
        self.processor = processor
        self.device = device
        self.kept = kept
        self.entries: OrderedDict[bytes, Any] = OrderedDict()
        self.misses = 0

    def get(self, messages: tuple[Message, ...], options: GenerationOptions) -> Any:
        import torch

        from .prompts import build_inputs

        # Only what reaches the processor: images and audio pickle as their pixels and samples.
        key = hashlib.sha256(
            pickle.dumps((messages, options.thinking, options.image_tokens))
        ).digest()
        if key in self.entries:
            self.entries.move_to_end(key)
            return self.entries[key]
        self.misses += 1
        inputs = build_inputs(self.processor, messages, options)
        inputs = inputs.to(self.device, dtype=torch.bfloat16)  # casts only float tensors
        self.entries[key] = inputs
        if len(self.entries) > self.kept:
            self.entries.popitem(last=False)
        return inputs


class _CancelCheck:
    """A StoppingCriteria: stops after the current decoding step once this request is cancelled."""

    def __init__(self, cancel_id: Any, request_id: int):
        self.cancel_id, self.request_id = cancel_id, request_id
        self.cancelled = False

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        self.cancelled = self.cancel_id.value == self.request_id
        return torch.full(
            (input_ids.shape[0],), self.cancelled, dtype=torch.bool, device=input_ids.device
        )


def answer(
    loaded: Any,
    request_id: int,
    request: ChatRequest,
    conn: Connection,
    cancel_id: Any,
    prepared: PreparedInputs,
) -> None:
    """Generate one reply, streaming chunks; every failure becomes an ("error", ...) message."""
    import torch
    from transformers import StoppingCriteriaList

    from .streaming import ReplyStreamer

    started = time.perf_counter()
    options = request.options
    try:
        inputs = prepared.get(request.messages, options)
    except Exception as exc:
        conn.send(
            (
                "error",
                request_id,
                "bad_input",
                f"This message could not be prepared for the model: {first_line(exc)}",
            )
        )
        return
    streamer = ReplyStreamer(
        loaded.processor.tokenizer,
        emit=lambda text, thinking: conn.send(("chunk", request_id, text, thinking, time.time())),
    )
    cancel = _CancelCheck(cancel_id, request_id)
    sample = options.temperature >= SAMPLING_FLOOR
    drafter = loaded.drafter if options.speculative else None
    try:
        with torch.inference_mode():
            loaded.model.generate(
                **inputs,
                streamer=streamer,
                stopping_criteria=StoppingCriteriaList([cancel]),
                max_new_tokens=options.max_new_tokens,
                min_new_tokens=options.min_new_tokens or None,
                assistant_model=drafter,
                do_sample=sample,
                temperature=options.temperature if sample else None,
                top_p=options.top_p if sample else None,
                top_k=options.top_k if sample else None,
            )
    except torch.OutOfMemoryError:
        torch.cuda.empty_cache()
        conn.send(
            (
                "error",
                request_id,
                "out_of_memory",
                "The model ran out of memory on this message; try a lower image detail, "
                "fewer images or shorter audio.",
            )
        )
        return
    except Exception as exc:
        conn.send(
            (
                "error",
                request_id,
                "generation_failed",
                f"The model failed while answering ({type(exc).__name__}: {first_line(exc)}).",
            )
        )
        return
    conn.send(("done", request_id, _timing(started, streamer), cancel.cancelled))


def _timing(started: float, streamer: Any) -> Timing:
    ended = time.perf_counter()
    first = streamer.first_token_at or ended
    decode_s = ended - first
    rate = (streamer.tokens - 1) / decode_s if streamer.tokens > 1 and decode_s > 0 else 0.0
    return Timing(time_to_first_token_s=first - started, tokens_per_s=rate, tokens=streamer.tokens)
