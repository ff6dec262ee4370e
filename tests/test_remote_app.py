"""Loupe with `--engine-url` at a real OpenAI-compatible server (`transformers serve` on the
miniature): the page in Chromium, the named API through gradio_client, /health, and the server
going away and coming back while Loupe runs."""

from __future__ import annotations

import time
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect

from tests.conftest import (
    ModelServer,
    console_text,
    health_when_loaded,
    open_page,
    start_app,
    stop_app,
    wait_until_idle,
)
from tests.test_browser import REPLY_TIMEOUT_MS, open_settings, shoot

SERVER_BUSY_MS = 4 * REPLY_TIMEOUT_MS
ATTEMPTS = 3

SECRET = "sk-loupe-test-never-shown"


@pytest.fixture(scope="module")
def remote_app(model_server: ModelServer) -> Iterator[tuple[object, str]]:
    process, url = start_app(
        "--engine-url",
        model_server.url,
        "--engine-model",
        model_server.model,
        "--engine-api-key",
        SECRET,
    )
    try:
        health = health_when_loaded(process, url)
        assert health["status"] == "ok", health
        yield process, url
    finally:
        stop_app(process)


@pytest.fixture
def page(browser, remote_app):
    page = open_page(browser, remote_app[1])
    yield page
    page.context.close()


def test_health_names_the_server_and_never_the_key(remote_app, model_server: ModelServer):
    process, url = remote_app
    response = httpx.get(f"{url}/health")
    health = response.json()
    assert health["model"] == model_server.model
    assert health["engine"] == {
        "kind": "remote",
        "state": "idle",
        "queue": 0,
        "url": model_server.url,
    }
    assert (health["device"], health["quantization"], health["demo"]) == ("remote", None, False)
    assert SECRET not in response.text
    assert SECRET not in httpx.get(url).text
    assert SECRET not in console_text(process)


def test_a_message_with_an_image_and_audio_streams_through_the_api(
    remote_app, image_file: Path, audio_file: Path
):
    from gradio_client import Client, handle_file

    _, url = remote_app
    job = Client(url, verbose=False).submit(
        {"text": "What is in these?", "files": [handle_file(image_file), handle_file(audio_file)]},
        max_new_tokens=64,
        api_name="/chat",
    )
    updates = list(job)
    assert len(updates) > 1 and updates[-1].strip()
    assert all(after.startswith(before) for before, after in pairwise(updates))


def test_a_reply_streams_on_the_page_and_stop_ends_it(page, remote_app):
    _, url = remote_app
    open_settings(page)
    page.get_by_label("number input for Max new tokens").fill("4096")
    stop = page.locator("#message button[aria-label='Stop']")
    # The served demo model's random words may end a reply before Stop reaches it: then the
    # question is asked again in a new chat, up to ATTEMPTS times.
    for _ in range(ATTEMPTS):
        page.fill("#message textarea", "Tell me about this at length.")
        page.keyboard.press("Enter")
        reply = page.locator("#chat .bot").last
        reply.wait_for(timeout=REPLY_TIMEOUT_MS)
        first = len(reply.inner_text())
        # It grows while it is written. The session's server is shared: it may first finish a
        # reply an earlier test stopped listening to (`transformers serve` answers one at a time).
        page.wait_for_function(
            """(first) => {
                const replies = document.querySelectorAll("#chat .bot");
                return replies.length && replies[replies.length - 1].innerText.length > first;
            }""",
            arg=first,
            timeout=SERVER_BUSY_MS,
        )
        # Clicks are dispatched, and the screenshot waits for the end: a page redrawing a
        # fast-growing reply may give Playwright no still frame to click in or to take.
        if stop.is_visible():
            stop.dispatch_event("click")
            break
        # The reply ended by itself first.
        assert page.locator("#chat", has_text="(stopped)").count() == 0
        page.locator("#new-chat").dispatch_event("click")
        expect(page.locator("#chat .message")).to_have_count(0)
    else:
        raise AssertionError(f"each of {ATTEMPTS} replies ended before Stop")
    page.locator("#chat", has_text="(stopped)").wait_for(timeout=REPLY_TIMEOUT_MS)
    shoot(page, "remote-1-stopped")
    wait_until_idle(url, timeout_s=5.0)


def test_the_server_going_away_mid_reply_keeps_the_conversation(
    page, remote_app, model_server: ModelServer
):
    _, url = remote_app
    open_settings(page)
    page.get_by_label("number input for Max new tokens").fill("4096")
    page.fill("#message textarea", "Talk at length.")
    page.keyboard.press("Enter")
    page.locator("#chat .bot").last.wait_for(timeout=REPLY_TIMEOUT_MS)
    model_server.kill()
    try:
        cut_off = "The model server stopped answering in the middle of the reply."
        page.locator("#chat", has_text=cut_off).wait_for(timeout=REPLY_TIMEOUT_MS)
        down = f"The model server at {model_server.url} is not answering; Loupe keeps trying."
        page.locator("#banner", has_text=down).wait_for(timeout=REPLY_TIMEOUT_MS)
        shoot(page, "remote-2-server-gone")
        assert httpx.get(f"{url}/health").json()["error"] == down
        # What was written is kept, marked as stopped, once the page is opened again.
        page.reload()
        page.locator("#chat .bot", has_text="(stopped)").wait_for(timeout=REPLY_TIMEOUT_MS)
    finally:
        model_server.start()
    deadline = time.monotonic() + 60
    while httpx.get(f"{url}/health").json()["status"] != "ok":
        assert time.monotonic() < deadline, "Loupe did not find the server again"
        time.sleep(0.5)
    page.locator("#banner", has_text=down).wait_for(state="hidden", timeout=REPLY_TIMEOUT_MS)
    page.fill("#message textarea", "Are you back?")
    page.keyboard.press("Enter")
    page.locator("#chat .bot").nth(1).wait_for(timeout=REPLY_TIMEOUT_MS)
    assert page.locator("#chat", has_text=cut_off).count() == 0


def test_a_server_down_at_start_is_said_in_one_sentence(miniature: Path):
    server = ModelServer(miniature)  # never started
    process, url = start_app("--engine-url", server.url)
    try:
        health = health_when_loaded(process, url)
        down = f"The model server at {server.url} is not answering; Loupe keeps trying."
        assert health["status"] == "error" and health["error"] == down
        assert health["engine"]["url"] == server.url
        assert console_text(process).count(down) == 1  # said once, not at every try
        assert "Traceback" not in console_text(process)
    finally:
        stop_app(process)
