"""The model worker process: loads the model once, then answers requests one at a time.

Runs in a child process started by `engine.Engine`, so a crash, an out-of-memory or a CUDA fault
here never takes the web server down. Talks to its parent through one `Connection`:

parent -> worker: (request_id, ChatRequest)
worker -> parent: ("progress", sentence) | ("loaded", ModelInfo) | ("load_failed", sentence)
                  | ("trimmed", request_id, dropped_messages)
                  | ("chunk", request_id, text, thinking, sent_at)
                  | ("call", request_id, ToolCall)
                  | ("done", request_id, Timing, cancelled)
                  | ("error", request_id, kind, sentence)

After an error of a kind in REPLACED_AFTER the worker exits, and the engine starts a fresh one.
"""

from __future__ import annotations

import hashlib
import pickle
import signal
import time
from collections import OrderedDict
from dataclasses import replace
from multiprocessing.connection import Connection
from typing import Any

from .config import FAULT_TRIGGER, Fault, ModelConfig
from .constrained import GrammarRules, hf_tokenizer, reply_grammar
from .events import Timing
from .loader import LoadError, first_line, load
from .messages import ChatRequest, GenerationOptions, Message
from .worker_protocol import SAMPLING_FLOOR, send_failure

PREPARED_INPUTS_KEPT = 4  # processed requests kept, so "answer again" skips the processor
def serve(config: ModelConfig, conn: Connection, cancel_id: Any) -> None:
    """The child process's main: load, report, then serve until the parent goes away."""
    # Ctrl+C in a terminal reaches the whole process group, this process too; the engine ends
    # it by closing its connection, so the interrupt must not kill it mid-reply.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from .engine_choice import choose_backend

    choice = choose_backend(config)
    progress = lambda sentence: conn.send(("progress", sentence))  # noqa: E731
    try:
        progress(f"Engine: {choice.reason}")
        if choice.backend == "llama.cpp":
            from . import llama_runner

            loaded: Any = llama_runner.load(config, progress)
            info = loaded.info
        else:
            loaded = load(config, progress=progress)
            from .prompts import context_length

            context_tokens = context_length(loaded.model.config, config.context_tokens)
            info = replace(loaded.info, context_tokens=context_tokens)
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
    conn.send(("loaded", replace(info, backend=choice.backend, backend_reason=choice.reason)))
    if choice.backend == "llama.cpp":

        def answer_one(request_id: int, request: ChatRequest) -> bool:
            return llama_runner.answer(
                loaded, request_id, request, conn, cancel_id, config.inject_fault
            )
    else:
        prepared = PreparedInputs(loaded.processor, loaded.model.device, info.context_tokens)

        def answer_one(request_id: int, request: ChatRequest) -> bool:
            return answer(
                loaded, request_id, request, conn, cancel_id, prepared, config.inject_fault
            )

    while True:
        try:
            request_id, request = conn.recv()
        except (EOFError, OSError):
            return
        try:
            answered = answer_one(request_id, request)
        except (BrokenPipeError, ConnectionResetError):
            return  # the parent closed the connection mid-reply (Loupe stopped): nothing to say
        if not answered:
            return


class PreparedInputs:
    """Model inputs (on the model's device) of the last few requests, keyed by their content.

    The same conversation with the same prompt settings (a regenerated reply) is looked up
    instead of being templated, tokenised, cut into patches and copied to the device again.
    A conversation too long for `context_tokens` loses its oldest turns (prompts.fit_to_context).
    """

    def __init__(
        self, processor: Any, device: Any, context_tokens: int, kept: int = PREPARED_INPUTS_KEPT
    ):
        self.processor = processor
        self.device = device
        self.context_tokens = context_tokens
        self.kept = kept
        self.entries: OrderedDict[bytes, Any] = OrderedDict()
        self.misses = 0

    def get(self, messages: tuple[Message, ...], options: GenerationOptions) -> tuple[Any, int]:
        """The inputs, and how many of the oldest messages were left out to fit the window."""
        import torch

        from .prompts import fit_to_context, reply_room

        # Only what reaches the processor (images and audio pickle as their pixels and samples),
        # and the room the reply needs, which decides what fits.
        room = reply_room(options, self.context_tokens)
        key = hashlib.sha256(
            pickle.dumps(
                (
                    messages,
                    options.thinking,
                    options.image_tokens,
                    options.video_frame_tokens,
                    options.offered_tools,
                    room,
                )
            )
        ).digest()
        if key in self.entries:
            self.entries.move_to_end(key)
            return self.entries[key]
        self.misses += 1
        inputs, dropped = fit_to_context(self.processor, messages, options, self.context_tokens)
        inputs = inputs.to(self.device, dtype=torch.bfloat16)  # casts only float tensors
        self.entries[key] = inputs, dropped
        if len(self.entries) > self.kept:
            self.entries.popitem(last=False)
        return inputs, dropped


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


class _InjectedFault:
    """A StoppingCriteria for the fault tests (ModelConfig.inject_fault): after the first token,
    raises the out-of-memory error CUDA would, or never returns, as a stuck kernel would not."""

    def __init__(self, fault: Fault):
        self.fault = fault

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        if self.fault == "out_of_memory":
            raise torch.OutOfMemoryError("CUDA out of memory (injected by a fault test)")
        while True:
            time.sleep(60)


def answer(
    loaded: Any,
    request_id: int,
    request: ChatRequest,
    conn: Connection,
    cancel_id: Any,
    prepared: PreparedInputs,
    inject_fault: Fault = "",
) -> bool:
    """Generate one reply, streaming chunks; every failure becomes an ("error", ...) message.

    False when this worker must be replaced (an error in REPLACED_AFTER).
    """
    import torch
    from transformers import StoppingCriteriaList

    from .prompts import ContextOverflow
    from .streaming import ReplyStreamer, reply_rules

    started = time.perf_counter()
    options = request.options
    try:
        inputs, dropped = prepared.get(request.messages, options)
    except ContextOverflow as exc:
        conn.send(("error", request_id, "bad_input", str(exc)))
        return True
    except Exception as exc:
        conn.send(
            (
                "error",
                request_id,
                "bad_input",
                f"This message could not be prepared for the model: {first_line(exc)}",
            )
        )
        return True
    if dropped:
        conn.send(("trimmed", request_id, dropped))
    streamer = ReplyStreamer(
        loaded.processor.tokenizer,
        emit=lambda text, thinking: conn.send(("chunk", request_id, text, thinking, time.time())),
        call=lambda call: conn.send(("call", request_id, call)),
        tools=options.tools,
    )
    cancel = _CancelCheck(cancel_id, request_id)
    criteria = [cancel]
    if inject_fault and request.messages[-1].text == FAULT_TRIGGER:
        criteria.append(_InjectedFault(inject_fault))
    # Never past the end of the window, whatever length was asked for.
    room = prepared.context_tokens - int(inputs["input_ids"].shape[-1])
    sample = options.temperature >= SAMPLING_FLOOR
    try:
        grammar = _grammar_rules(loaded, options)
        # The drafter proposes tokens the grammar has not checked: such a reply goes without it.
        drafter = loaded.drafter if options.speculative and grammar is None else None
        prompt_tokens = int(inputs["input_ids"].shape[-1])
        rules = reply_rules(loaded.processor.tokenizer, options.thinking, grammar, prompt_tokens)
        # Under a grammar it alone decides what may come (see constrained.py); passed only
        # then, as `generate` takes None as "suppress nothing" too.
        unsuppressed = {"suppress_tokens": []} if grammar is not None else {}
        with torch.inference_mode():
            loaded.model.generate(
                **inputs,
                streamer=streamer,
                logits_processor=rules,
                stopping_criteria=StoppingCriteriaList(criteria),
                max_new_tokens=min(options.max_new_tokens, room),
                min_new_tokens=options.min_new_tokens or None,
                assistant_model=drafter,
                do_sample=sample,
                temperature=options.temperature if sample else None,
                top_p=options.top_p if sample else None,
                top_k=options.top_k if sample else None,
                **unsuppressed,
            )
    except Exception as exc:
        return send_failure(conn, request_id, exc, isinstance(exc, torch.OutOfMemoryError))
    prompt_tokens = int(inputs["input_ids"].shape[-1])
    conn.send(("done", request_id, _timing(started, streamer, prompt_tokens), cancel.cancelled))
    return True


def _grammar_rules(loaded: Any, options: GenerationOptions) -> GrammarRules | None:
    """The rules that hold a reply to its grammar (None for a free reply), over the loaded
    model's tokenizer as the grammar engine reads it (made at the first grammar, then kept)."""
    grammar = reply_grammar(options)
    if not grammar:
        return None
    if loaded.grammar_tokenizer is None:
        ends = loaded.model.generation_config.eos_token_id
        ends = list(ends) if isinstance(ends, (list, tuple)) else [ends]
        loaded.grammar_tokenizer = hf_tokenizer(loaded.processor.tokenizer, ends)
    return GrammarRules(loaded.grammar_tokenizer, grammar)


def _timing(started: float, streamer: Any, prompt_tokens: int) -> Timing:
    ended = time.perf_counter()
    first = streamer.first_token_at or ended
    return Timing.measured(started, first, ended, streamer.tokens, prompt_tokens)
