"""The page in a real browser: Debian's Chromium driven by Playwright, with a fake camera and
microphone. Screenshots go to test-artifacts/browser/ for a person to look at."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.conftest import MAX_WER, QUESTION, ROOT, word_error_rate

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = ROOT / "test-artifacts" / "browser"
RECORD_S = 6.0  # the spoken question lasts about 4.5 s
REPLY_TIMEOUT_MS = 60_000
LONG_ANSWER_QUESTION = "Tell me everything about these two pictures."


@pytest.fixture
def browser(spoken_question: Path) -> Iterator:
    """A fresh Chromium per test: its fake microphone plays the recording only once."""
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
        permissions=["microphone", "camera", "clipboard-read", "clipboard-write"],
        viewport={"width": 1280, "height": 1000},
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


def test_ask_about_an_upload_and_a_pasted_screenshot_watch_it_stream_then_stop(
    page, image_file: Path, demo_app
):
    import httpx

    url, _ = demo_app
    page.set_input_files("#message input[type=file]", str(image_file))
    paste_image(page, ROOT / "assets" / "example-error.png")
    attachments = page.locator("#message .thumbnail-item")
    attachments.nth(1).wait_for(timeout=REPLY_TIMEOUT_MS)
    # Greedy decoding makes the demo model's reply the same every time; for this question and
    # these pictures it runs past 512 tokens (seconds on this CPU), long enough to watch.
    page.click("#settings")
    page.get_by_label("number input for Temperature").fill("0")
    page.fill("#message textarea", LONG_ANSWER_QUESTION)
    shoot(page, "1-question-with-two-images")
    page.keyboard.press("Enter")
    reply = page.locator("#chat .bot").last
    reply.wait_for(timeout=REPLY_TIMEOUT_MS)
    lengths = []
    for frame in range(3):  # the reply grows while it streams
        time.sleep(0.5)
        lengths.append(len(reply.inner_text()))
        shoot(page, f"2-streaming-{frame}")
    assert lengths[0] < lengths[1] < lengths[2], lengths
    page.click("#message button[aria-label='Stop']")
    page.locator("#chat", has_text="(stopped)").wait_for(timeout=REPLY_TIMEOUT_MS)
    shoot(page, "3-stopped")
    deadline = time.monotonic() + 2
    while httpx.get(f"{url}/health").json()["engine"]["state"] != "idle":
        assert time.monotonic() < deadline, "the model kept generating after Stop"
        time.sleep(0.05)
    assert page.locator("#chat img").count() == 2  # both pictures are in the conversation


def test_a_saved_conversation_opens_from_the_side_list(page):
    page.fill("#message textarea", "Remember this conversation")
    page.keyboard.press("Enter")
    page.locator("#conversations", has_text="Remember this conversation").wait_for()
    page.locator("#chat .bot").last.wait_for(timeout=REPLY_TIMEOUT_MS)
    page.click("#new-chat")
    page.wait_for_function("document.querySelectorAll('#chat .message').length === 0")
    page.get_by_label("Remember this conversation").first.check()
    page.locator("#chat", has_text="Remember this conversation").wait_for()
    expect(page.locator("#title textarea")).to_have_value("Remember this conversation")
    shoot(page, "4-opened-from-the-side-list")


def test_a_webcam_snapshot_attaches_to_the_next_message(page):
    page.click("#webcam >> text=Click to Access Webcam")
    # Chromium's fake camera shows a test pattern; capture once the video is playing.
    page.wait_for_function("document.querySelector('#webcam video')?.readyState >= 2")
    page.click("#webcam button[aria-label='capture photo']")
    page.locator("#message .thumbnail-item").first.wait_for(timeout=REPLY_TIMEOUT_MS)
    shoot(page, "5-webcam-snapshot-attached")
