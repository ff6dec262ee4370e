"""The page in a real browser: Debian's Chromium driven by Playwright, with a fake microphone."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import MAX_WER, QUESTION, word_error_rate

CHROMIUM = Path("/usr/bin/chromium")
RECORD_S = 6.0  # the spoken question lasts about 4.5 s
REPLY_TIMEOUT_MS = 60_000


@pytest.fixture(scope="module")
def browser(spoken_question: Path) -> Iterator:
    from playwright.sync_api import sync_playwright

    assert CHROMIUM.exists(), "Chromium is needed: ./test.sh installs Debian's chromium"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--use-fake-ui-for-media-stream",
                "--use-fake-device-for-media-stream",
                # The microphone plays this recording once, then silence.
                f"--use-file-for-fake-audio-capture={spoken_question}%noloop",
            ],
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser, demo_app):
    url, _ = demo_app
    context = browser.new_context(
        permissions=["microphone"], viewport={"width": 1280, "height": 1000}
    )
    page = context.new_page()
    page.goto(url)
    page.wait_for_selector("#microphone button.record-button")
    yield page
    context.close()


def record(page) -> None:
    page.click("#microphone button.record-button")
    time.sleep(RECORD_S)
    page.click("#microphone button.stop-button")


def heard_the_question(text: str) -> bool:
    return word_error_rate(QUESTION, text) < MAX_WER


def test_a_recording_is_transcribed_into_the_box_for_checking(page):
    record(page)
    page.wait_for_function(
        "document.querySelector('#message textarea').value.length > 0", timeout=REPLY_TIMEOUT_MS
    )
    assert heard_the_question(page.input_value("#message textarea"))
    assert page.locator("#chat .message").count() == 0  # nothing is sent until the person sends


def test_a_recording_sent_as_audio_gets_a_caption_and_a_reply(page):
    page.get_by_label("Send audio to Gemma").check()
    record(page)
    page.wait_for_selector("#message audio, #message .thumbnail-item", timeout=REPLY_TIMEOUT_MS)
    page.fill("#message textarea", "Answer the question in the recording.")
    page.keyboard.press("Enter")
    caption = page.locator("#chat", has_text="Heard:")
    caption.wait_for(timeout=REPLY_TIMEOUT_MS)
    caption_text = page.inner_text("#chat").split("Heard:")[1].split("”")[0]
    assert heard_the_question(caption_text), caption_text
    reply = page.locator("#chat .bot").last
    reply.wait_for(timeout=REPLY_TIMEOUT_MS)
    assert reply.inner_text().strip()
