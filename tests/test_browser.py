"""The page in a real browser: Debian's Chromium driven by Playwright, with a fake camera and
microphone. Screenshots go to test-artifacts/browser/ for a person to look at."""

from __future__ import annotations

import base64
import functools
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError
from playwright.sync_api import expect

from tests.conftest import (
    MAX_WER,
    QUESTION,
    ROOT,
    launch_chromium,
    model_state,
    open_page,
    short_replies,
    wait_until_idle,
    word_error_rate,
)

SCREENSHOTS = ROOT / "test-artifacts" / "browser"
RECORD_S = 6.0  # the spoken question lasts about 4.5 s
REPLY_TIMEOUT_MS = 60_000
PROBES = (
    "Tell me a long story.",
    "Describe everything you know.",
    "Talk about the sea.",
    "Explain how computers work.",
    "Write a long poem.",
    "List many animals.",
)
PROBE_TOKENS = 400
STOP_TRIES = 3  # replies sent until one is still running when Stop is pressed


@pytest.fixture
def heard_page(playwright, spoken_question: Path, demo_app) -> Iterator:
    """The demo app's page in a Chromium of its own, whose fake microphone plays the spoken
    question from the start, once."""
    browser = launch_chromium(playwright, heard=spoken_question)
    try:
        yield open_page(browser, demo_app[0])
    finally:
        browser.close()


def record(page) -> None:
    page.click("#voice-button")  # the composer's Voice opens the recorder
    page.click("#microphone button.record-button")
    time.sleep(RECORD_S)
    page.click("#microphone button.stop-button")


def heard_the_question(text: str) -> bool:
    return word_error_rate(QUESTION, text) < MAX_WER


def test_a_recording_is_transcribed_into_the_box_for_checking(heard_page):
    page = heard_page
    record(page)
    page.wait_for_function(
        "document.querySelector('#message textarea').value.length > 0", timeout=REPLY_TIMEOUT_MS
    )
    assert heard_the_question(page.input_value("#message textarea"))
    assert page.locator("#chat .message").count() == 0  # nothing is sent until the person sends


def test_a_recording_sent_as_audio_gets_a_caption_and_a_reply(heard_page):
    page = heard_page
    open_settings(page)
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


def shoot(page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path


def paste_image(page, image: Path) -> None:
    """Put a PNG on the system clipboard, then press Ctrl+V in the message box."""
    page.click("#message textarea")  # the clipboard is only writable from a focused page
    page.evaluate(
        """async (b64) => {
            const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
            const blob = new Blob([bytes], {type: "image/png"});
            await navigator.clipboard.write([new ClipboardItem({"image/png": blob})]);
        }""",
        base64.b64encode(image.read_bytes()).decode(),
    )
    page.keyboard.press("Control+V")


def test_an_upload_and_a_pasted_screenshot_go_with_the_question(page, image_file: Path):
    page.set_input_files("#message input[type=file]", str(image_file))
    paste_image(page, ROOT / "assets" / "example-error.png")
    page.locator("#message .thumbnail-item").nth(1).wait_for(timeout=REPLY_TIMEOUT_MS)
    page.fill("#message textarea", "What does this error mean?")
    shoot(page, "1-question-with-two-images")
    page.keyboard.press("Enter")
    page.locator("#chat .bot").last.wait_for(timeout=REPLY_TIMEOUT_MS)
    expect(page.locator("#chat img")).to_have_count(2)  # both pictures are in the conversation
    expect(page.locator("#chat", has_text="What does this error mean?")).to_have_count(1)


def test_watch_a_reply_grow_then_stop_it(page, demo_app):
    url, _ = demo_app
    question = long_greedy_question(url)
    open_settings(page)
    page.get_by_label("number input for Temperature").fill("0")  # the same reply as probed
    # Its reply runs past PROBE_TOKENS: room enough to watch it and stop it before it ends.
    page.get_by_label("number input for Max new tokens").fill("4096")
    for attempt in range(STOP_TRIES):
        if attempt:
            page.click("#new-chat")
            page.wait_for_function("document.querySelectorAll('#chat .message').length === 0")
        reply, shown = watch_it_grow(page, question, attempt)
        model = model_state(url)
        if model == "busy":
            break
        # The whole reply came before Stop could be pressed (a loaded machine): ask again.
        wait_until_saved(url)
    else:
        raise AssertionError(f"the reply had ended before Stop in each of {STOP_TRIES} tries")
    # Dispatched: a page redrawing a fast-growing reply may give Playwright no still frame.
    stop = page.locator("#message button[aria-label='Stop']")
    stop.dispatch_event("click")
    try:
        page.locator("#chat", has_text="(stopped)").wait_for(timeout=REPLY_TIMEOUT_MS)
    except PlaywrightTimeoutError:
        raise AssertionError(
            f"the reply was not marked stopped. At Stop the model was {model} and the page "
            f"showed {shown} characters; now Stop is shown: {stop.is_visible()}, and the "
            f"reply ends {reply.inner_text()[-120:]!r}"
        ) from None
    finally:
        shoot(page, "3-stopped")
    wait_until_idle(url, timeout_s=2.0)  # the model stopped, not just the page
    assert page.input_value("#message textarea") == "And then?"  # Stop kept it too


def watch_it_grow(page, question: str, attempt: int):
    """Sends the question, checks the reply grows on the page and that what the person types
    meanwhile stays in the box; the reply's locator and how many characters it showed."""
    page.fill("#message textarea", question)
    page.keyboard.press("Enter")
    reply = page.locator("#chat .bot").last
    reply.wait_for(timeout=REPLY_TIMEOUT_MS)
    lengths = []
    for frame in range(3):
        time.sleep(0.3)
        lengths.append(len(reply.inner_text()))
        if not attempt:
            shoot(page, f"2-streaming-{frame}")
    assert lengths == sorted(lengths) and lengths[0] < lengths[-1], lengths  # it grew
    page.locator("#message textarea").press_sequentially("And then?")
    time.sleep(0.3)
    assert page.input_value("#message textarea") == "And then?"
    return reply, len(reply.inner_text())


def wait_until_saved(url: str) -> None:
    """Until the model is idle and the page's handler has saved the reply, which it does just
    after the model finishes."""
    wait_until_idle(url)
    time.sleep(0.5)


@functools.cache
def long_greedy_question(url: str) -> str:
    """A question the demo model answers at length: with greedy decoding its reply is the same
    every time, so one that has not ended after 400 tokens will not end within the page's 512.
    Probed through the API, because which questions these are depends on the random weights;
    once per app, for the same weights give the same answer to every test that asks."""
    from gradio_client import Client

    client = Client(url, verbose=False)
    for question in PROBES:
        long = client.predict(
            {"text": question, "files": []},
            temperature=0.0,
            max_new_tokens=PROBE_TOKENS,
            api_name="/chat",
        )
        longer = client.predict(
            {"text": question, "files": []},
            temperature=0.0,
            max_new_tokens=PROBE_TOKENS + 8,
            api_name="/chat",
        )
        if len(longer) > len(long):  # it was cut by the limit, not ended by the model
            return question
    raise AssertionError(f"the demo model ends every probe question within {PROBE_TOKENS} tokens")


def test_a_saved_conversation_opens_from_the_side_list(page, demo_app):
    short_replies(page)
    page.fill("#message textarea", "Remember this conversation")
    page.keyboard.press("Enter")
    page.locator("#conversations-today", has_text="Remember this conversation").wait_for()
    page.locator("#chat .bot").last.wait_for(timeout=REPLY_TIMEOUT_MS)
    wait_until_saved(demo_app[0])
    page.click("#new-chat")
    page.wait_for_function("document.querySelectorAll('#chat .message').length === 0")
    page.get_by_label("Remember this conversation").first.check()
    page.locator("#chat", has_text="Remember this conversation").wait_for()
    page.click("#this-conversation")  # its title, rename, delete and export
    expect(page.locator("#title textarea")).to_have_value("Remember this conversation")
    shoot(page, "4-opened-from-the-side-list")


def test_webcam_snapshots_attach_one_after_another(page):
    page.click("#camera-button")  # the composer's Camera opens the webcam, live at once
    for count in (1, 2):
        # Chromium's fake camera shows a test pattern; capture once the video is playing.
        page.wait_for_function("document.querySelector('#webcam video')?.readyState >= 2")
        page.click("#webcam button[aria-label='capture photo']")
        page.locator("#message .thumbnail-item").nth(count - 1).wait_for(timeout=REPLY_TIMEOUT_MS)
    # The camera went back to live after each snapshot: no frozen frame to clear first, and
    # no "Click to Access Webcam" either.
    assert page.locator("#message .thumbnail-item").count() == 2
    shoot(page, "5-webcam-snapshots-attached")


def open_settings(page) -> None:
    """The composer's Settings button opens the settings panel on the right."""
    page.click("#settings-button")
    page.get_by_label("number input for Temperature").wait_for()
