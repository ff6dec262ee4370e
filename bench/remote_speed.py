"""Loupe on a model server: the same forced-length replies straight from the server and through
`RemoteEngine`, one at a time and eight at once, and the delay Loupe adds to each chunk.

The server is a real `transformers serve` on this machine's CPU, serving a copy of the demo
checkpoint whose replies never end before `max_tokens` (`model.miniature.long_winded_copy`), so
every reply is exactly the forced length both ways. Direct requests go with httpx and the body
Loupe itself would send (`model.openai_wire.request_body`, less the fields transformers serve
refuses), so the two sides ask the server for the same work.

Figures: tokens per second straight and through RemoteEngine and their ratio; each chunk's
delay from RemoteEngine's reader thread parsing it off the HTTP stream (`TextChunk.sent_at`) to
the ReplyStream's reader getting it; total tokens per second for eight chats at once; and,
where the app serves `/v1/chat/completions`, each chunk's delay from Loupe's worker to a client
of that stream (the forced app of `bench/forced_app.py`, its log of worker send times).
"""

from __future__ import annotations

import statistics
import threading
import time
from pathlib import Path

import httpx

from model import (
    ChatRequest,
    EngineError,
    Finished,
    GenerationOptions,
    Message,
    RemoteEngine,
    RemoteEngineConfig,
    TextChunk,
)
from model.openai_wire import request_body, sse_data

from .app_speed import _delays
from .harness import Figure, figure
from .serving import START_S, Shared, logged, logged_count, wait_until_ready

CHATS_AT_ONCE = 8
PROMPT = "Tell me a long story about a lighthouse keeper and the ships she watches."
# What transformers serve answers 422 to; RemoteEngine learns this on its first request.
SERVER_REFUSES = ("top_k", "mm_processor_kwargs")
RATE_GOAL = 0.98  # one reply through RemoteEngine over straight from the server
CONCURRENT_GOAL = 0.95  # eight at once, the same
DELAY_GOAL_MS = 2.0  # socket to the stream's reader, per chunk, median
V1_DELAY_GOAL_MS = 10.0  # worker to a client of the app's /v1 stream, per chunk, median


def chat(tokens: int) -> ChatRequest:
    """A text prompt with its reply length set; the served copy runs every reply to it."""
    options = GenerationOptions(temperature=0.0, max_new_tokens=tokens)
    return ChatRequest((Message("user", PROMPT),), options)


class Direct:
    """Requests straight to the server: the body Loupe sends, less what the server refuses."""

    def __init__(self, url: str, model: str):
        self.url, self.model = url, model
        self.http = httpx.Client(
            base_url=url,
            timeout=httpx.Timeout(120, connect=5),
            limits=httpx.Limits(max_connections=CHATS_AT_ONCE + 2),
        )

    def reply(self, tokens: int) -> tuple[int, list[float]]:
        """(tokens the server counted, when each text chunk arrived: time.time())."""
        body = request_body(chat(tokens), self.model, SERVER_REFUSES)
        arrivals, counted = [], None
        with self.http.stream("POST", "/chat/completions", json=body) as response:
            response.raise_for_status()
            for data in sse_data(response.iter_lines()):
                arrived = time.time()
                usage = data.get("usage") or {}
                counted = usage.get("completion_tokens", counted)
                for choice in data.get("choices") or ():
                    if (choice.get("delta") or {}).get("content"):
                        arrivals.append(arrived)
        return counted if counted is not None else tokens, arrivals

    def close(self) -> None:
        self.http.close()


def _through(engine: RemoteEngine, tokens: int) -> tuple[int, list[float], list[float]]:
    """(tokens, when each TextChunk reached this reader, its delay from the socket in ms)."""
    arrivals, delays = [], []
    for event in engine.submit(chat(tokens)):
        if isinstance(event, TextChunk):
            now = time.time()
            arrivals.append(now)
            delays.append(1000 * (now - event.sent_at))
        elif isinstance(event, Finished):
            return event.timing.tokens, arrivals, delays
        elif isinstance(event, EngineError):
            raise RuntimeError(f"the remote engine answered {event}")
    raise RuntimeError("the reply ended without Finished")


def _rate(tokens: int, arrivals: list[float]) -> float:
    """Tokens per second after the first text, as the other stages count them."""
    if tokens < 2 or len(arrivals) < 2 or arrivals[-1] <= arrivals[0]:
        raise RuntimeError(f"too short a reply to time: {tokens} tokens, {len(arrivals)} chunks")
    return (tokens - 1) / (arrivals[-1] - arrivals[0])


def _at_once(reply, count: int) -> float:
    """Total tokens per second of `count` replies started together, each on its own thread."""
    totals: list[int] = []
    failures: list[BaseException] = []

    def one() -> None:
        try:
            totals.append(reply())
        except BaseException as exc:  # reported below, on the measuring thread
            failures.append(exc)

    threads = [threading.Thread(target=one) for _ in range(count)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    took = time.perf_counter() - started
    if failures:
        raise RuntimeError(f"a reply of {count} at once failed: {failures[0]}")
    return sum(totals) / took


def measure(
    shared: Shared, miniature: Path, tokens: int, concurrent_tokens: int, runs: int
) -> tuple[list[Figure], list[str]]:
    """The remote figures and their notes; `tokens` for one reply at a time,
    `concurrent_tokens` for each of eight at once."""
    url, model, start_s = shared.model_server(miniature)
    direct = Direct(url, model)
    engine = RemoteEngine(
        RemoteEngineConfig(url, model=model, concurrency=CHATS_AT_ONCE), queue_size=16
    )
    engine.start()
    try:
        wait_until_ready(engine, START_S)
        figures, notes = _measure(direct, engine, tokens, concurrent_tokens, runs)
    finally:
        engine.close()
        direct.close()
    figures.insert(0, figure("remote", "transformers serve: start to /health", "s", start_s))
    return figures, notes


def _measure(
    direct: Direct, engine: RemoteEngine, tokens: int, concurrent_tokens: int, runs: int
) -> tuple[list[Figure], list[str]]:
    straight, through, delays, chunks = [], [], [], [[], []]
    # Each run times both ways back to back, in turns which goes first, so a slower or faster
    # spell of a shared machine falls on both; the ratios are taken run by run.
    for run in range(runs + 1):  # the first run warms up (and RemoteEngine learns the refusals)
        (counted, arrivals), (got, reached, run_delays) = _in_turns(
            run, lambda: direct.reply(tokens), lambda: _through(engine, tokens)
        )
        if run:
            straight.append(_rate(counted, arrivals))
            through.append(_rate(got, reached))
            delays.extend(run_delays)
            chunks[0].append(len(arrivals))
            chunks[1].append(len(reached))
    together_direct, together_through = [], []
    for run in range(runs + 1):
        by_direct, by_engine = _in_turns(
            run,
            lambda: _at_once(lambda: direct.reply(concurrent_tokens)[0], CHATS_AT_ONCE),
            lambda: _at_once(lambda: _through(engine, concurrent_tokens)[0], CHATS_AT_ONCE),
        )
        if run:
            together_direct.append(by_direct)
            together_through.append(by_engine)
    ratios = [b / a for a, b in zip(straight, through, strict=True)]
    together_ratios = [b / a for a, b in zip(together_direct, together_through, strict=True)]
    ratio, together = statistics.median(ratios), statistics.median(together_ratios)
    p90 = statistics.quantiles(delays, n=10)[-1] if len(delays) > 1 else delays[0]
    figures = [
        figure("remote", f"straight to the server, {tokens} new tokens", "tokens/s", straight),
        figure("remote", f"through RemoteEngine, {tokens} new tokens", "tokens/s", through),
        figure("remote", "through RemoteEngine over straight, run by run", "ratio", ratios),
        figure("remote", "socket to the stream's reader, per chunk", "ms", delays),
        figure("remote", "socket to the stream's reader, per chunk, 90th percentile", "ms", p90),
        figure(
            "remote",
            f"{CHATS_AT_ONCE} chats at once straight, {concurrent_tokens} new tokens each",
            "tokens/s",
            together_direct,
        ),
        figure(
            "remote",
            f"{CHATS_AT_ONCE} chats at once through RemoteEngine, {concurrent_tokens} each",
            "tokens/s",
            together_through,
        ),
        figure(
            "remote",
            f"{CHATS_AT_ONCE} chats at once, through over straight, run by run",
            "ratio",
            together_ratios,
        ),
    ]
    merged = sum(chunks[0]) - sum(chunks[1])
    delay = statistics.median(delays)
    notes = [
        f"remote: {ratio:.3f} of the server's tokens per second straight (goal {RATE_GOAL}: "
        f"{_met(ratio >= RATE_GOAL)}); {CHATS_AT_ONCE} at once {together:.3f} (goal "
        f"{CONCURRENT_GOAL}: {_met(together >= CONCURRENT_GOAL)})",
        f"remote: chunk delay from the socket to the stream's reader {delay:.3f} ms median, "
        f"{p90:.3f} ms 90th percentile (goal under {DELAY_GOAL_MS:g} ms: "
        f"{_met(delay < DELAY_GOAL_MS)}); {sum(chunks[1])} chunks read of the server's "
        f"{sum(chunks[0])} ({merged} merged into the one before while the reader was busy)",
    ]
    return figures, notes


def _in_turns(run: int, one, other) -> tuple:
    """(one(), other()), run in that order on even runs and the other way round on odd ones."""
    if run % 2:
        second = other()
        return one(), second
    first = one()
    return first, other()


def _met(met: bool) -> str:
    return "met" if met else "not met"


def measure_v1(
    shared: Shared, flags: list[str], tokens: int, runs: int
) -> tuple[list[Figure], list[str]]:
    """Each chunk's delay from Loupe's worker to a client of the app's own /v1 stream.

    The forced app (`bench/forced_app.py`) logs each answer chunk's worker send time and when
    the serving code took it; the client notes when each content delta arrived. No figures
    (and a note saying why) when the app does not serve /v1/chat/completions.
    """
    base, _, log = shared.forced_app(flags)
    before = logged_count(log)
    delays, handler_delays, rates = [], [], []
    with httpx.Client(base_url=base, timeout=httpx.Timeout(300, connect=5)) as http:
        listed = http.get("/v1/models")
        if listed.status_code == 404:
            return [], ["app /v1: not measured, the app does not serve /v1/chat/completions"]
        listed.raise_for_status()
        model = listed.json()["data"][0]["id"]
        for run in range(runs + 1):
            arrivals = _v1_reply(http, model, tokens)
            sent = logged(log, before + run)
            if run:
                delays.extend(_delays(sent, arrivals))
                handler_delays.extend(1000 * (took - sent_at) for _, sent_at, took in sent)
                rates.append((tokens - 1) / (arrivals[-1][1] - arrivals[0][1]))
    median = statistics.median(delays)
    figures = [
        figure("app /v1", f"{tokens} new tokens, streamed", "tokens/s", rates),
        figure("app /v1", "worker to client, per chunk", "ms", delays),
        figure("app /v1", "worker to the /v1 handler, per chunk", "ms", handler_delays),
    ]
    note = (
        f"app /v1: chunk delay from the worker to a client of /v1/chat/completions {median:.2f} "
        f"ms median (goal under {V1_DELAY_GOAL_MS:g} ms: {_met(median < V1_DELAY_GOAL_MS)})"
    )
    return figures, [note]


def _v1_reply(http: httpx.Client, model: str, tokens: int) -> list[tuple[int, float]]:
    """(answer length so far, arrival time) for each content delta of one streamed reply."""
    body = {
        "model": model,
        "messages": [{"role": "user", "content": PROMPT}],
        "stream": True,
        "max_tokens": tokens,
        "temperature": 0.0,
    }
    arrivals, length = [], 0
    with http.stream("POST", "/v1/chat/completions", json=body) as response:
        response.raise_for_status()
        for data in sse_data(response.iter_lines()):
            arrived = time.time()
            for choice in data.get("choices") or ():
                text = (choice.get("delta") or {}).get("content")
                if text:
                    length += len(text)
                    arrivals.append((length, arrived))
    if len(arrivals) < 2:
        raise RuntimeError(f"/v1 streamed {len(arrivals)} content chunks")
    return arrivals
