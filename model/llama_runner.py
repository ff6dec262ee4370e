"""Gemma 4 on llama.cpp (llama-cpp-python), inside the supervised worker process.

The worker's other half (worker.py) runs transformers; this one loads a GGUF model and its
multimodal projector (mmproj) and answers the same requests with the same messages to the
engine: chunks as they form, thinking apart, Stop within one token, usage counts.
How a request becomes llama.cpp input is llama_prompt.py's job.
"""

from __future__ import annotations

import ctypes
import os
import time
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from .config import FAULT_TRIGGER, Fault, ModelConfig
from .constrained import GrammarRules, llama_tokenizer, reply_grammar
from .engine import ModelInfo
from .events import Timing
from .gguf_files import GgufError, locate_gguf
from .llama_model import LlamaModel
from .llama_prompt import Prompt
from .loader import LoadError, check_memory_bytes, first_line
from .messages import ChatRequest, GenerationOptions, Message
from .prompts import ContextOverflow, concrete_options, fit_turns
from .worker_protocol import SAMPLING_FLOOR, send_failure

# llama.cpp sets aside the whole context's KV cache when it loads, so the window is capped
# (--context-tokens raises it): 32k tokens of the 12B's cache take about 1 GB.
DEFAULT_CONTEXT_TOKENS = 32768
LARGEST_IMAGE_TOKENS = 1120  # the projector reads an image at most at this budget


def load(config: ModelConfig, progress: Any) -> LlamaModel:
    """Find (download, convert) and load the GGUF files. Raises LoadError with one sentence."""
    _quiet_logs()
    from llama_cpp import llama_supports_gpu_offload

    progress("Looking for the GGUF model files")
    try:
        files = locate_gguf(config, progress)
    except GgufError as exc:
        raise LoadError(str(exc)) from None
    size = files.model.stat().st_size + (files.projector.stat().st_size if files.projector else 0)
    progress(check_memory_bytes(files.name, size, files.quantization, "cpu"))
    gpu = config.device != "cpu" and bool(llama_supports_gpu_offload())
    threads = _threads()
    progress(f"Loading {files.name} with llama.cpp")
    try:
        wanted = config.context_tokens or DEFAULT_CONTEXT_TOKENS
        llm = _open(files.model, wanted, threads, gpu)
        window_key = f"{llm.metadata['general.architecture']}.context_length"
        trained = int(llm.metadata.get(window_key, wanted))
        context = min(trained, wanted)
        if context < wanted:  # a model with a shorter window than asked: its own, then
            llm.close()
            llm = _open(files.model, context, threads, gpu)
    except Exception as exc:
        raise LoadError(f"Loading {files.name} with llama.cpp failed: {first_line(exc)}") from None
    mtmd = _projector(llm, files.projector, threads, gpu) if files.projector else None
    if files.projector is None:
        progress("No projector (mmproj) file was found beside the model: text only")
    info = ModelInfo(
        files.name,
        config.demo,
        "gpu" if gpu else "cpu",
        files.quantization,
        context_tokens=context,
        backend="llama.cpp",
    )
    progress("Model loaded")
    return LlamaModel(
        llm,
        mtmd,
        _template(llm),
        info,
        _suppressed(llm),
        _ends(llm),
        _token(llm, "<|channel>"),
        _byte_tokens(llm),
    )


def _open(path: Any, context: int, threads: int, gpu: bool) -> Any:
    from llama_cpp import Llama

    return Llama(
        str(path),
        n_ctx=context,
        n_batch=512,
        n_threads=threads,
        n_threads_batch=threads,
        n_gpu_layers=-1 if gpu else 0,
        # The sliding-window layers keep only their window (llama.cpp's own tools do; the
        # library's default keeps the whole context for them: 10.7 GB more for the 12B at
        # 32k). Each request reads its prompt afresh, so nothing is lost.
        swa_full=False,
        flash_attn=True,
        verbose=False,
    )


def _threads() -> int:
    """One thread a physical core: llama.cpp's own default, and what llama-bench is run with."""
    import psutil

    return psutil.cpu_count(logical=False) or os.cpu_count() or 1


def _projector(llm: Any, path: Any, threads: int, gpu: bool) -> Any:
    import llama_cpp.mtmd_cpp as mtmd

    params = mtmd.mtmd_context_params_default()
    params.use_gpu = gpu
    params.print_timings = False
    params.n_threads = threads
    # Loupe sizes each image for its budget itself; the projector must take it as it comes.
    params.image_min_tokens = 1
    params.image_max_tokens = LARGEST_IMAGE_TOKENS
    context = mtmd.mtmd_init_from_file(str(path).encode(), llm.model, params)
    if not context:
        raise LoadError(f"The projector {path.name} could not be loaded by this llama.cpp.")
    return context


def _template(llm: Any) -> Any:
    import jinja2
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    source = llm.metadata.get("tokenizer.chat_template")
    if not source:
        raise LoadError("This GGUF file carries no chat template; use one converted for chat.")
    env = ImmutableSandboxedEnvironment(extensions=[jinja2.ext.loopcontrols])
    return env.from_string(source)


def _token(llm: Any, text: str) -> int:
    ids = llm.tokenize(text.encode(), add_bos=False, special=True)
    return ids[0] if len(ids) == 1 else -1


def _suppressed(llm: Any) -> list[int]:
    from llama_cpp import llama_cpp as lib

    count = ctypes.c_int32(0)
    vocab = lib.llama_model_get_vocab(llm.model)
    ids = lib.llama_vocab_get_suppress_tokens(vocab, ctypes.byref(count))
    return [ids[i] for i in range(count.value)] if ids else []


def _ends(llm: Any) -> list[int]:
    from llama_cpp import llama_cpp as lib

    vocab = lib.llama_model_get_vocab(llm.model)
    named = (_token(llm, text) for text in ("<eos>", "<turn|>", "<|tool_response>"))
    return sorted(
        {i for i in named if i >= 0 and lib.llama_vocab_is_eog(vocab, i)} | {llm.token_eos()}
    )


def _byte_tokens(llm: Any) -> frozenset[int]:
    from llama_cpp import llama_cpp as lib

    vocab = lib.llama_model_get_vocab(llm.model)
    return frozenset(
        i
        for i in range(llm.n_vocab())
        if lib.llama_vocab_get_attr(vocab, i) & lib.LLAMA_TOKEN_ATTR_BYTE
    )


def _quiet_logs() -> None:
    """llama.cpp and mtmd log every load and image to stderr; the worker says what matters."""
    import llama_cpp
    import llama_cpp.mtmd_cpp as mtmd

    global _LOG_SINK
    _LOG_SINK = llama_cpp.llama_log_callback(lambda level, text, data: None)
    llama_cpp.llama_log_set(_LOG_SINK, ctypes.c_void_p(0))
    mtmd.mtmd_log_set(_LOG_SINK, ctypes.c_void_p(0))
    mtmd.mtmd_helper_log_set(_LOG_SINK, ctypes.c_void_p(0))


_LOG_SINK: Any = None  # the callback must outlive the call that set it


class _Tokenizer:
    """What ReplyStreamer asks of a tokenizer, from llama.cpp's vocabulary."""

    def __init__(self, model: LlamaModel):
        self.llm = model.llm
        self.byte_ids = model.byte_ids

    def convert_tokens_to_ids(self, token: str) -> int:
        return _token(self.llm, token)

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        raw = self.llm.detokenize(ids, special=not skip_special_tokens)
        return raw.decode("utf-8", errors="replace")


def answer(
    model: LlamaModel,
    request_id: int,
    request: ChatRequest,
    conn: Connection,
    cancel_id: Any,
    inject_fault: Fault = "",
) -> bool:
    """Generate one reply, streaming chunks; every failure becomes an ("error", ...) message.
    False when this worker must be replaced."""
    from .streaming import ReplyStreamer

    started = time.perf_counter()
    options = concrete_options(request.messages, request.options)
    context = model.info.context_tokens
    prompts: list[Prompt] = []

    def build(kept: tuple[Message, ...]) -> Prompt:
        prompts.append(Prompt(model, kept, options))
        return prompts[-1]

    try:
        prompt, dropped = fit_turns(build, lambda p: p.tokens, request.messages, options, context)
    except Exception as exc:
        for built in prompts:
            built.close()
        sentence = (
            str(exc)
            if isinstance(exc, ContextOverflow)
            else f"This message could not be prepared for the model: {first_line(exc)}"
        )
        conn.send(("error", request_id, "bad_input", sentence))
        return True
    for built in prompts:
        if built is not prompt:
            built.close()
    if dropped:
        conn.send(("trimmed", request_id, dropped))
    streamer = ReplyStreamer(
        _Tokenizer(model),
        emit=lambda text, thinking: conn.send(("chunk", request_id, text, thinking, time.time())),
        call=lambda call: conn.send(("call", request_id, call)),
        tools=options.tools,
    )

    def cancelled() -> bool:
        return cancel_id.value == request_id

    fault = inject_fault if request.messages[-1].text == FAULT_TRIGGER else ""
    stopped = False
    try:
        if not prompt.evaluate(model, cancelled):
            stopped = True
        else:
            stopped = _generate(model, prompt.tokens, options, streamer, cancelled, fault)
        streamer.end()
    except Exception as exc:
        return send_failure(conn, request_id, exc, isinstance(exc, MemoryError))
    finally:
        prompt.close()
    ended = time.perf_counter()
    timing = Timing.measured(
        started, streamer.first_token_at, ended, streamer.tokens, prompt.tokens
    )
    conn.send(("done", request_id, timing, stopped))
    return True


def _generate(
    model: LlamaModel,
    prompt_tokens: int,
    options: GenerationOptions,
    streamer: Any,
    cancelled: Any,
    fault: Fault,
) -> bool:
    """Sample the reply token by token into `streamer`; True if it was stopped on request."""
    llm = model.llm
    room = llm.n_ctx() - prompt_tokens
    limit = min(options.max_new_tokens, room)
    grammar = _grammar_rules(model, options)
    # Under a grammar it alone decides what may come (see constrained.py).
    forbidden = list(model.forbidden) if grammar is None else []
    if not options.thinking and model.channel_open >= 0:
        forbidden.append(model.channel_open)  # see streaming.thinking_rules
    produced = 0

    def rules(input_ids: Any, scores: Any) -> Any:
        scores[forbidden] = -np.inf
        if produced < options.min_new_tokens:
            scores[model.end_ids] = -np.inf
        if grammar is not None:
            reply = input_ids[prompt_tokens:].tolist()
            scores[~grammar.allowed(reply, len(scores))] = -np.inf
        return scores

    sample = options.temperature >= SAMPLING_FLOOR
    # The prompt as the cache already holds it: generate() finds it all there and samples on.
    tokens = llm.generate(
        llm.input_ids[: llm.n_tokens].tolist(),
        temp=options.temperature if sample else 0.0,
        top_k=options.top_k if sample else 1,
        top_p=options.top_p if sample else 1.0,
        min_p=0.0,
        typical_p=1.0,
        repeat_penalty=1.0,
        logits_processor=[rules],
    )
    for token in tokens:
        if token in model.end_ids:
            return False
        produced += 1
        streamer.add([token])
        if fault:
            _inject(fault)
        if produced >= limit:
            return False
        if cancelled():
            return True
    return False


def _grammar_rules(model: LlamaModel, options: GenerationOptions) -> GrammarRules | None:
    """The rules that hold a reply to its grammar (None for a free reply), over the model's
    vocabulary as the grammar engine reads it (made at the first grammar, then kept)."""
    grammar = reply_grammar(options)
    if not grammar:
        return None
    if model.grammar_tokenizer is None:
        from llama_cpp import llama_cpp as lib

        vocab = lib.llama_model_get_vocab(model.llm.model)
        model.grammar_tokenizer = llama_tokenizer(vocab, model.end_ids)
    return GrammarRules(model.grammar_tokenizer, grammar)


def _inject(fault: Fault) -> None:
    """For the fault tests (ModelConfig.inject_fault): fail as a real fault would."""
    if fault == "out_of_memory":
        raise MemoryError("out of memory (injected by a fault test)")
    while True:
        time.sleep(60)
