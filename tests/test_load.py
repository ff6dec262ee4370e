"""Load, overflow, cancel and disconnect against a launched `--demo` app, as API clients meet it."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from model.engine import BUSY
from tests.conftest import health_when_loaded, start_app, stop_app, wait_until_idle
from tests.figures import record, spread_s

SESSIONS = 8
REQUESTS_PER_SESSION = 25
BURST = 40
SMALL_QUEUE = 2
# Room for a few short turns; the greedy long reply is cut at the window's end (about 185 tokens).
SMALL_CONTEXT_TOKENS = 200
STOPS_EACH = 50
IDLE_DEADLINE_S = 2.0
START_ATTEMPTS = 20  # replies started to catch one mid-stream; a refused call ends at once
# Greedy, so the demo model's reply is the same every time: about 350 tokens, several seconds.
LONG_REPLY = {"text": "Talk at length.", "files": []}
LONG = {"temperature": 0.0, "max_new_tokens": 4000}


def _engine(url: str) -> dict:
    """/health's engine: its kind, state and queue (not which library runs the model)."""
    engine = httpx.get(f"{url}/health", timeout=5).json()["engine"]
    return {key: engine[key] for key in ("kind", "state", "queue")}


@pytest.mark.heavy
def test_eight_sessions_of_25_requests_all_complete(demo_app):
    url, _ = demo_app

    def session(number: int) -> tuple[int, list[str]]:
        client = Client(url, verbose=False)
        served, errors = 0, []
        for request in range(REQUESTS_PER_SESSION):
            message = {"text": f"Question {request} from session {number}.", "files": []}
            try:
                reply = client.predict(message, max_new_tokens=16, api_name="/chat")
            except Exception as exc:  # counted, so the figure says how many and which
                errors.append(f"{type(exc).__name__}: {exc}")
            else:
                served += isinstance(reply, str)
        return served, errors

    started = time.monotonic()
    with ThreadPoolExecutor(SESSIONS) as pool:
        results = list(pool.map(session, range(SESSIONS)))
    elapsed = time.monotonic() - started
    served = sum(count for count, _ in results)
    errors = [error for _, session_errors in results for error in session_errors]
    record(
        "load-8x25",
        {
            "sessions": SESSIONS,
            "requests": SESSIONS * REQUESTS_PER_SESSION,
            "served": served,
            "errors": len(errors),
            "wall_s": round(elapsed, 1),
        },
    )
    assert errors == [] and served == SESSIONS * REQUESTS_PER_SESSION
    assert _engine(url) == {"kind": "in-process", "state": "idle", "queue": 0}


@pytest.fixture(scope="module")
def small_app(miniature: Path) -> Iterator[str]:
    """A `--demo` app with a short queue and a small context window; its URL."""
    process, url = start_app(
        "--demo", "--queue-size", str(SMALL_QUEUE), "--context-tokens", str(SMALL_CONTEXT_TOKENS)
    )
    try:
        health_when_loaded(process, url)
        yield url
    finally:
        stop_app(process)


@pytest.mark.heavy
def test_a_burst_past_the_queue_is_told_busy_at_once_and_service_recovers(small_app: str):
    url = small_app
    client = Client(url, verbose=False)
    ended_at: dict[int, float] = {}
    jobs = []
    for number in range(BURST):
        job = client.submit(LONG_REPLY, **LONG, api_name="/chat")
        job.add_done_callback(
            lambda _, number=number: ended_at.setdefault(number, time.monotonic())
        )
        jobs.append(job)
    served, busy, other = [], [], []
    for number, job in enumerate(jobs):
        try:
            job.result(timeout=300)
        except AppError as exc:
            (busy if str(exc) == BUSY else other).append(number)
        except Exception as exc:
            other.append(f"{type(exc).__name__}: {exc}")
        else:
            served.append(number)
    after = client.predict(
        {"text": "Hello again.", "files": []}, max_new_tokens=16, api_name="/chat"
    )
    engine = _engine(url)
    record(
        "load-burst",
        {
            "burst": BURST,
            "queue_size": SMALL_QUEUE,
            "served": len(served),
            "busy": len(busy),
            "other_errors": len(other),
        },
    )
    assert other == []
    assert len(busy) > 0 and len(served) + len(busy) == BURST
    assert len(served) >= SMALL_QUEUE + 1  # the running one and the waiting ones
    # At once: every "busy" came while the first reply was still being written.
    assert max(ended_at[number] for number in busy) < min(ended_at[number] for number in served)
    assert isinstance(after, str) and engine == {"kind": "in-process", "state": "idle", "queue": 0}


def _stop_mid_reply(url: str, stop) -> float:
    """Start a long reply, let it stream, `stop()` it; seconds until the model is idle."""
    for _ in range(START_ATTEMPTS):
        if stop.start() and _engine(url)["state"] == "busy":
            break
        stop()  # the reply already ended (or was refused): start another
    else:
        raise AssertionError(f"no reply was still streaming in {START_ATTEMPTS} attempts")
    stop()
    return wait_until_idle(url, IDLE_DEADLINE_S)  # the model stops once its client goes


@pytest.mark.heavy
def test_50_cancelled_replies_each_leave_the_model_idle_within_2_s(demo_app):
    url, _ = demo_app
    client = Client(url, verbose=False)

    class Cancel:
        def start(self) -> bool:
            self.job = client.submit(LONG_REPLY, **LONG, api_name="/chat")
            deadline = time.monotonic() + 60
            while len(self.job.outputs()) < 3 and not self.job.done():
                assert time.monotonic() < deadline, "no reply streamed"
                time.sleep(0.02)
            return not self.job.done()

        def __call__(self) -> None:
            self.job.cancel()  # what the page's Stop and gradio_client's cancel send

    to_idle = [_stop_mid_reply(url, Cancel()) for _ in range(STOPS_EACH)]
    record("cancel-50", {"cancelled": len(to_idle), "to_idle": spread_s(to_idle)})
    assert len(to_idle) == STOPS_EACH


@pytest.mark.heavy
def test_50_clients_that_disconnect_mid_reply_each_leave_the_model_idle_within_2_s(demo_app):
    url, _ = demo_app
    inputs = [LONG_REPLY, "", LONG["temperature"], 0.95, 64, LONG["max_new_tokens"], False, 280, ""]

    class Disconnect:
        def start(self) -> bool:
            """The HTTP API's two steps: queue the call, then read its event stream."""
            posted = httpx.post(f"{url}/gradio_api/call/chat", json={"data": inputs}, timeout=10)
            event_id = posted.json()["event_id"]
            self.stream = httpx.stream("GET", f"{url}/gradio_api/call/chat/{event_id}", timeout=60)
            response = self.stream.__enter__()
            # Read with next() and keep the iterator: closing it (leaving a for loop early, or
            # dropping the last reference) closes the connection, which is the disconnect itself.
            self.lines = response.iter_lines()
            updates = 0
            while updates < 3:
                line = next(self.lines, "event: complete")
                if line.startswith(("event: complete", "event: error")):
                    self()
                    return False
                updates += line.startswith("event: generating")
            return True

        def __call__(self) -> None:
            self.stream.__exit__(None, None, None)  # the client goes away mid-stream

    to_idle = [_stop_mid_reply(url, Disconnect()) for _ in range(STOPS_EACH)]
    record("disconnect-50", {"disconnected": len(to_idle), "to_idle": spread_s(to_idle)})
    assert len(to_idle) == STOPS_EACH


def test_an_api_client_is_told_when_old_turns_no_longer_fit(small_app: str):
    client = Client(small_app, verbose=False)
    conversation_id = client.predict(api_name="/new_conversation")
    replies = []
    for turn in range(12):  # each turn adds about 30 tokens to a window of 200
        replies.append(
            client.predict(
                {"text": f"Question {turn}: what colour is the car?", "files": []},
                conversation_id=conversation_id,
                max_new_tokens=16,
                api_name="/chat",
            )
        )
        if replies[-1].startswith("*The conversation is longer than the model can read"):
            break
    noted = replies[-1]
    assert noted.startswith("*The conversation is longer than the model can read"), replies
    exported = json.loads(client.predict(conversation_id, "json", api_name="/export"))
    saved = exported["messages"]
    assert len(saved) == 2 * len(replies)  # every turn kept on disk
    assert saved[0]["text"] == "Question 0: what colour is the car?"
    assert noted.endswith(saved[-1]["text"]) and not saved[-1]["text"].startswith("*The")


def test_an_idle_app_looks_for_new_events_every_20_ms_not_every_millisecond():
    """Gradio's queue looks every millisecond on Linux, which kept an idle Loupe at about 9%
    of a core (the bench's app stage measures it); the attributes Gradio reads are set."""
    import gradio as gr

    from app.server import PROGRESS_POLL_S, QUEUE_POLL_S, quiet_when_idle

    with gr.Blocks() as page:
        gr.Markdown("Loupe")
    page.queue()
    queue = page._queue
    assert queue.sleep_when_free < QUEUE_POLL_S  # Gradio's own (Linux), which it reads
    assert queue.progress_update_sleep_when_free < PROGRESS_POLL_S
    quiet_when_idle(page)
    assert (queue.sleep_when_free, queue.progress_update_sleep_when_free) == (
        QUEUE_POLL_S,
        PROGRESS_POLL_S,
    )
