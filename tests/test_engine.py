"""The supervised worker, on the miniature checkpoint in 4-bit, through its real process."""

from __future__ import annotations

import os
import signal
import threading
import time

from bench.samples import photo, tone
from model import (
    AudioClip,
    ChatRequest,
    Engine,
    EngineError,
    Finished,
    GenerationOptions,
    Message,
    TextChunk,
)

CANCEL_DEADLINE_S = 2.0


def _request(max_new_tokens: int = 24, text: str = "What do you see and hear?") -> ChatRequest:
    message = Message("user", text, images=(photo(),), audio=(AudioClip(tone(2.0), 16_000),))
    return ChatRequest(
        (message,), GenerationOptions(max_new_tokens=max_new_tokens, min_new_tokens=max_new_tokens)
    )


def _long_request() -> ChatRequest:
    """A reply that runs until it is stopped: the random demo model may sample an end token
    first, so end tokens are held back (min_new_tokens)."""
    options = GenerationOptions(max_new_tokens=4000, min_new_tokens=4000)
    return ChatRequest((Message("user", "Talk for a long time."),), options)


def test_image_audio_text_request_streams_chunks_then_finishes(engine: Engine):
    events = list(engine.submit(_request(max_new_tokens=24)))
    chunks = [event for event in events if isinstance(event, TextChunk)]
    assert len(chunks) >= 2, events
    assert isinstance(events[-1], Finished) and not events[-1].cancelled
    timing = events[-1].timing
    assert timing.tokens == 24
    assert timing.time_to_first_token_s > 0
    assert engine.status().busy is False


def test_cancel_stops_within_a_step_and_the_next_request_works(engine: Engine):
    stream = engine.submit(_long_request())
    events = iter(stream)
    first = next(events)
    assert isinstance(first, TextChunk)
    cancelled_at = time.monotonic()
    stream.cancel()
    last = [event for event in events][-1]
    assert time.monotonic() - cancelled_at < CANCEL_DEADLINE_S
    assert isinstance(last, Finished) and last.cancelled
    assert last.timing.tokens < 4000
    assert isinstance(list(engine.submit(_request()))[-1], Finished)


def test_concurrent_requests_complete_in_queue_order(engine: Engine):
    log: list[tuple[str, str]] = []
    lock = threading.Lock()

    def consume(name: str, stream) -> None:
        for event in stream:
            with lock:
                log.append((name, type(event).__name__))

    first, second = engine.submit(_request(16)), engine.submit(_request(16))
    threads = [
        threading.Thread(target=consume, args=pair) for pair in (("a", first), ("b", second))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert ("a", "Finished") in log and ("b", "Finished") in log
    assert log.index(("a", "Finished")) < min(i for i, (name, _) in enumerate(log) if name == "b")


def test_a_full_queue_answers_busy_at_once(engine: Engine):
    running = engine.submit(_long_request())
    next(iter(running))  # now generating, so the queue is empty
    waiting = [engine.submit(_request()) for _ in range(4)]  # the test engine's queue size
    started = time.monotonic()
    overflow = list(engine.submit(_request()))
    assert time.monotonic() - started < 0.5
    assert overflow == [EngineError("busy", "Loupe is busy, try again in a moment.")]
    for stream in [running, *waiting]:
        stream.cancel()
    assert all(isinstance(list(stream)[-1], Finished) for stream in waiting)


def test_killed_worker_fails_the_running_request_and_restarts(engine: Engine):
    stream = engine.submit(_long_request())
    events = iter(stream)
    assert isinstance(next(events), TextChunk)
    old_pid = engine.worker_pid
    os.kill(old_pid, signal.SIGKILL)
    last = [event for event in events][-1]
    assert isinstance(last, EngineError) and last.kind == "worker_crashed"
    assert "restarting" in last.message
    after = list(engine.submit(_request()))
    assert isinstance(after[-1], Finished), after
    assert engine.worker_pid not in (None, old_pid)
