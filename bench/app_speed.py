"""Loupe's own overhead: the same forced-length replies through the engine and through the app.

The engine stage submits requests to an `Engine` (worker process, pipe, dispatcher thread)
in this process. The app stage starts the app (`bench/forced_app.py`: launch.py with reply
lengths forced and chunk send times logged) and streams replies with gradio_client. Both time
first text, tokens per second after it, and each chunk's delay from leaving the worker
(`TextChunk.sent_at`) to reaching the engine's reader or the client (one clock: same machine).
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator

import psutil

from model import (
    ChatRequest,
    Engine,
    Finished,
    GenerationOptions,
    LocalEngine,
    Message,
    ModelConfig,
    TextChunk,
)

from .harness import Figure, figure
from .model_speed import IMAGE_PROMPT, screenshot
from .serving import Shared, logged, logged_count, wait_until_ready

IDLE_S = 5.0  # how long the app's idle use of the CPU is measured


def request(run: int, new_tokens: int) -> ChatRequest:
    """One screenshot (a new one each run, so no run reuses another's prepared inputs)."""
    options = GenerationOptions(
        temperature=0.0, max_new_tokens=new_tokens, min_new_tokens=new_tokens
    )
    message = Message("user", IMAGE_PROMPT, images=(screenshot(seed=run),))
    return ChatRequest((message,), options)


def measure_engine(config: ModelConfig, new_tokens: int, runs: int) -> list[Figure]:
    """Engine figures; each run also sends its request again, which skips the processor."""
    engine = LocalEngine(config)
    engine.start()
    wait_until_ready(engine)
    first, again, rates, delays = [], [], [], []
    try:
        for run in range(runs + 1):
            timing, run_delays = _engine_reply(engine, request(run, new_tokens))
            repeated, _ = _engine_reply(engine, request(run, new_tokens))
            if run:  # the first run warms up
                first.append(timing.time_to_first_token_s)
                again.append(repeated.time_to_first_token_s)
                rates.append(timing.tokens_per_s)
                delays.extend(run_delays)
    finally:
        engine.close()
    return [
        figure("engine", "time to first token", "s", first),
        figure("engine", "time to first token, same request again", "s", again),
        figure("engine", f"{new_tokens} new tokens", "tokens/s", rates),
        figure("engine", "worker to engine reader, per chunk", "ms", delays),
    ]


def _engine_reply(engine: Engine, chat: ChatRequest) -> tuple:
    delays = []
    for event in engine.submit(chat):
        if isinstance(event, TextChunk):
            delays.append(1000 * (time.time() - event.sent_at))
        elif isinstance(event, Finished):
            return event.timing, delays
        else:
            raise RuntimeError(f"the engine answered {event}")
    raise RuntimeError("the reply ended without Finished")


def measure_app(shared: Shared, flags: list[str], new_tokens: int, runs: int) -> list[Figure]:
    """App figures through gradio_client against `python -m bench.forced_app FLAGS`."""
    from gradio_client import Client, handle_file

    url, process, log = shared.forced_app(flags)
    folder = log.parent
    before = logged_count(log)
    first, rates, delays, handler_delays = [], [], [], []
    client = Client(url, verbose=False)
    for run in range(runs + 1):
        image = folder / f"screenshot-{run}.png"
        screenshot(seed=run).save(image)
        started = time.time()
        job = client.submit(
            {"text": IMAGE_PROMPT, "files": [handle_file(image)]},
            temperature=0.0,
            max_new_tokens=new_tokens,
            api_name="/chat",
        )
        arrivals = [(len(text), time.time()) for text in job if text]
        sent = logged(log, before + run)
        if run:
            first.append(arrivals[0][1] - started)
            rates.append((new_tokens - 1) / (arrivals[-1][1] - arrivals[0][1]))
            delays.extend(_delays(sent, arrivals))
            handler_delays.extend(1000 * (took - sent_at) for _, sent_at, took in sent)
    idle = idle_cpu(process)
    return [
        figure("app", f"idle for {IDLE_S:g} s, with its worker", "% of a core", idle),
        figure("app", "time to first text", "s", first),
        figure("app", f"{new_tokens} new tokens", "tokens/s", rates),
        figure("app", "worker to client, per chunk", "ms", delays),
        figure("app", "worker to the page's handler, per chunk", "ms", handler_delays),
    ]


def idle_cpu(process: subprocess.Popen) -> float:
    """How much of a core the app and its worker use while nobody asks anything."""
    family = [psutil.Process(process.pid)]
    family += family[0].children(recursive=True)

    def used() -> float:
        return sum(member.cpu_times().user + member.cpu_times().system for member in family)

    before = used()
    time.sleep(IDLE_S)
    return 100 * (used() - before) / IDLE_S


def measure_gradio_alone(new_tokens: int, rate: float, runs: int) -> list[Figure]:
    """The floor under the app's delay: a bare Gradio generator, read the same way.

    It yields a growing string at `rate` updates per second (the model's speed) and notes when
    each update left; no model, no engine, no Loupe.
    """
    import gradio as gr
    from gradio_client import Client

    sent: list[tuple[int, float, float]] = []

    def grow(count: str) -> Iterator[str]:
        sent.clear()
        text = ""
        for _ in range(int(count)):
            time.sleep(1 / rate)
            text += "word "
            sent.append((len(text), time.time(), 0.0))
            yield text

    with gr.Blocks() as page:
        count, text = gr.Textbox(), gr.Textbox()
        count.submit(grow, count, text, api_name="grow")
    page.launch(prevent_thread_lock=True, quiet=True)
    try:
        client = Client(page.local_url, verbose=False)
        delays = []
        for run in range(runs + 1):
            job = client.submit(str(new_tokens), api_name="/grow")
            arrivals = [(len(text), time.time()) for text in job if text]
            if run:
                delays.extend(_delays(sent, arrivals))
    finally:
        page.close()
    return [figure("gradio alone", "generator to client, per update", "ms", delays)]


def _delays(sent: list[list[float]], arrivals: list[tuple[int, float]]) -> list[float]:
    """For each chunk the worker sent, ms until the first client update that held it."""
    delays, index = [], 0
    for length, sent_at, _ in sent:
        while index < len(arrivals) and arrivals[index][0] < length:
            index += 1
        if index < len(arrivals):
            delays.append(1000 * (arrivals[index][1] - sent_at))
    return delays
