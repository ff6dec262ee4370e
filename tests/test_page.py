"""The page as a new user meets it, in real Chromium against the session's demo app, whose data
folder is ~/.loupe under a home folder (see conftest.home): export, the alt-text box, the chat's
trash icon, delete, the banner, the address of a conversation, the composer and the layout."""

from __future__ import annotations

import re
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

import httpx
import pytest
from gradio_client import Client, handle_file
from playwright.sync_api import expect

from app.page.kept_settings import SECRET_FILE, STORAGE_KEY, browser_secret
from bench.samples import photo
from tests.conftest import ROOT, short_replies
from tests.test_browser import (
    REPLY_TIMEOUT_MS,
    long_greedy_question,
    open_settings,
    shoot,
    wait_until_saved,
)

# Records every text the banner shows from the first paint on, before Gradio's own script runs.
BANNER_SPY = """
window.bannerTexts = [];
new MutationObserver(() => {
    const banner = document.querySelector("#banner [data-testid='markdown']");
    const text = banner ? banner.innerText.trim() : "";
    if (text && window.bannerTexts[window.bannerTexts.length - 1] !== text) {
        window.bannerTexts.push(text);
    }
}).observe(document, {childList: true, subtree: true, characterData: true});
"""


def send(page, text: str, url: str) -> None:
    """Type and send a message, then wait until its reply is saved."""
    page.fill("#message textarea", text)
    page.keyboard.press("Enter")
    page.locator("#chat .bot").last.wait_for(timeout=REPLY_TIMEOUT_MS)
    wait_until_saved(url)


def attach(page, image: Path) -> None:
    page.set_input_files("#message input[type=file]", str(image))
    page.locator("#message .thumbnail-item").first.wait_for()


def send_with(page, url: str, path: Path, text: str) -> None:
    """Attach a file and send it with `text`, asking for a short reply; until it is saved."""
    short_replies(page)
    attach(page, path)
    send(page, text, url)


def open_this_conversation(page) -> None:
    if not page.locator("#title textarea").is_visible():
        page.click("#this-conversation .label-wrap")


def test_export_offers_both_files_with_the_data_folder_under_home(page, demo_app, home: Path):
    url, _ = demo_app
    short_replies(page)
    send(page, "Something to export", url)
    open_this_conversation(page)
    page.click("#export")
    links = page.locator("#exports a")
    expect(links).to_have_count(2, timeout=REPLY_TIMEOUT_MS)
    addresses = links.evaluate_all("links => links.map((link) => link.href)")
    assert sorted(Path(unquote(urlsplit(a).path)).suffix for a in addresses) == [".json", ".md"]
    assert page.locator("#exports", has_text="Error").count() == 0
    exports = home / ".loupe" / "exports"
    assert len(list(exports.rglob("Something to export.md"))) == 1  # the default data folder
    for address in addresses:
        download = httpx.get(address, timeout=10)
        assert download.status_code == 200 and "Something to export" in download.text


def test_the_alt_text_box_belongs_to_the_description_it_came_from(page, demo_app, tmp_path):
    url, _ = demo_app
    short_replies(page)
    first, second = tmp_path / "first.png", tmp_path / "second.png"
    photo(seed=3).save(first)
    photo(seed=4).save(second)
    attach(page, first)
    page.get_by_label("Alt text", exact=True).check()
    page.click("#message textarea")
    page.keyboard.press("Enter")
    page.locator("#alt-text textarea").wait_for(timeout=REPLY_TIMEOUT_MS)
    wait_until_saved(url)
    # The box holds the alt text, or, for an image the model calls decorative, says so.
    label = page.locator("#alt-text label, #alt-text span[data-testid='block-info']").first
    assert page.input_value("#alt-text textarea") or "decorative" in label.inner_text()
    page.click("#new-chat")
    expect(page.locator("#alt-text")).to_be_hidden()
    attach(page, second)
    page.get_by_label("Diagram or chart", exact=True).check()
    page.click("#message textarea")
    page.keyboard.press("Enter")
    page.locator("#chat .bot").last.wait_for(timeout=REPLY_TIMEOUT_MS)
    wait_until_saved(url)
    expect(page.locator("#alt-text")).to_be_hidden()  # no alt text of the first image here
    shoot(page, "page-diagram-after-alt-text")


def test_the_trash_icon_starts_afresh_and_the_model_no_longer_sees_what_it_cleared(page, demo_app):
    url, _ = demo_app
    short_replies(page)
    send(page, "A message to clear", url)
    first_address = page.url
    page.click("#chat button[aria-label='Clear']")
    expect(page.locator("#chat .message")).to_have_count(0)
    # The chat empties in the browser at once; the address follows when the new chat has begun.
    expect(page).not_to_have_url(first_address)
    send(page, "After clearing", url)
    assert page.locator("#chat", has_text="A message to clear").count() == 0
    # The message after clearing started a conversation of its own; the cleared one is kept.
    conversation_id = page.evaluate("new URL(location.href).searchParams.get('c')")
    saved = Client(url, verbose=False).predict(conversation_id, "json", api_name="/export")
    assert '"A message to clear"' not in saved and '"After clearing"' in saved
    expect(page.locator(".conversation-group", has_text="A message to clear")).to_have_count(1)


def test_delete_asks_first_and_keep_it_keeps_it(page, demo_app):
    url, _ = demo_app
    short_replies(page)
    send(page, "Worth keeping", url)
    open_this_conversation(page)
    page.click("#delete")
    expect(page.locator("#confirm-delete")).to_contain_text("Delete “Worth keeping” and its files?")
    page.click("#keep")
    expect(page.locator("#confirm-delete")).to_be_hidden()
    listed = page.locator(".conversation-group", has_text="Worth keeping")
    expect(listed).to_have_count(1)
    page.click("#delete")
    address = page.url
    page.get_by_role("button", name="Delete it").click()
    expect(listed).to_have_count(0)
    expect(page.locator("#chat .message")).to_have_count(0)
    # Its address, bookmarked or still in another tab, says it is gone and opens a new chat.
    page.goto(address)
    expect(page.locator(".toast-body")).to_contain_text("it was deleted")
    page.wait_for_function("!new URL(location.href).searchParams.get('c')")


def test_a_page_opened_after_loading_never_says_the_model_is_loading(browser, demo_app):
    url, _ = demo_app
    context = browser.new_context()
    context.add_init_script(BANNER_SPY)
    later = context.new_page()
    later.goto(url)
    later.wait_for_function("window.bannerTexts.length > 0")
    time.sleep(1.5)  # past the first refresh of the status
    seen = later.evaluate("window.bannerTexts")
    assert seen and not any("loading" in text.lower() for text in seen), seen
    assert "Demo model" in seen[0]
    context.close()


def test_a_reload_opens_the_same_conversation_from_its_address(page, demo_app):
    url, _ = demo_app
    short_replies(page)
    send(page, "Still here after a reload?", url)
    page.wait_for_function("new URL(location.href).searchParams.get('c')")
    page.reload()
    page.locator("#chat", has_text="Still here after a reload?").wait_for(timeout=REPLY_TIMEOUT_MS)
    time.sleep(1.0)  # past the live region's end-of-reply quiet time
    # Opening it is no reply: the live region says nothing (no "Generating", no "Done").
    assert page.locator("#announcer p").count() == 0
    open_this_conversation(page)
    expect(page.locator("#title textarea")).to_have_value("Still here after a reload?")
    page.click("#new-chat")
    page.wait_for_function("!new URL(location.href).searchParams.get('c')")


def test_new_chat_starts_with_an_empty_message_box(page):
    page.set_input_files("#message input[type=file]", str(ROOT / "assets" / "example-photo.jpg"))
    page.fill("#message textarea", "A draft for the old conversation")
    page.click("#new-chat")
    expect(page.locator("#message textarea")).to_have_value("")
    expect(page.locator("#message .thumbnail-item")).to_have_count(0)


def test_send_or_stop_one_at_a_time(page, demo_app):
    url, _ = demo_app
    send_button = page.locator("#message .submit-button")
    stop_button = page.locator("#message .stop-button")
    expect(send_button).to_be_visible()
    expect(stop_button).to_be_hidden()  # nothing to stop, and no Tab stop
    question = long_greedy_question(url)  # a reply long enough to be stopped
    page.click("#settings-button")
    page.get_by_label("number input for Temperature").fill("0")  # the same reply as probed
    page.locator("#settings button[aria-label='Toggle Sidebar']").click()
    page.fill("#message textarea", question)
    page.keyboard.press("Enter")
    expect(stop_button).to_be_visible(timeout=REPLY_TIMEOUT_MS)
    expect(send_button).to_be_hidden()
    stop_button.click()
    wait_until_saved(url)
    expect(send_button).to_be_visible(timeout=REPLY_TIMEOUT_MS)
    expect(stop_button).to_be_hidden()


def test_at_1280_by_800_the_conversation_and_composer_fill_the_screen(browser, demo_app):
    url, _ = demo_app
    # A conversation taller than the window: a photo, a question and a reply, twice.
    client = Client(url, verbose=False)
    conversation_id = client.predict(api_name="/new_conversation")
    for _ in range(2):
        photo_file = handle_file(ROOT / "assets" / "example-photo.jpg")
        message = {"text": "Describe this photo.", "files": [photo_file]}
        client.predict(
            message, max_new_tokens=64, conversation_id=conversation_id, api_name="/chat"
        )
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    first = context.new_page()
    first.goto(f"{url}/?c={conversation_id}")
    expect(first.locator("#chat img")).to_have_count(2, timeout=REPLY_TIMEOUT_MS)
    chat = first.locator("#chat").bounding_box()
    tools = first.locator("#describe-level").bounding_box()
    assert chat and tools and tools["y"] + tools["height"] <= 800, tools  # all in the window
    assert chat["height"] >= 0.45 * 800, chat  # the conversation takes most of it, and scrolls
    assert first.evaluate("document.documentElement.scrollHeight") <= 800
    # What used to fill the page is one click away, not on it.
    for hidden in ("#webcam", "#microphone", "#help-dialog"):
        expect(first.locator(hidden).first).to_be_hidden()
    # One Settings on the page (Gradio's footer has none), and no Share, which only fails here.
    expect(first.locator("footer")).not_to_contain_text("Settings")
    expect(first.locator("footer")).to_contain_text("Use via API")
    first.locator("#chat img").first.hover()
    expect(first.locator("#chat button[aria-label='Download']").first).to_be_visible()
    expect(first.locator("#chat button[aria-label='Share']").first).to_be_hidden()
    settings = first.locator("#settings").bounding_box()
    assert settings is None or settings["x"] >= 1280  # the settings panel is closed
    first.click("#help-button")
    expect(first.locator("#help-dialog")).to_contain_text("Alt+Shift+D")
    first.keyboard.press("Escape")
    expect(first.locator("#help-dialog")).to_be_hidden()
    first.keyboard.press("Alt+Shift+H")
    expect(first.locator("#help-dialog")).to_be_visible()
    first.keyboard.press("Escape")
    shoot(first, "page-1280x800")
    context.close()


def test_a_long_title_takes_one_line_of_the_side_list_and_shows_whole_on_hover(page, demo_app):
    url, _ = demo_app
    client = Client(url, verbose=False)
    conversation_id = client.predict(api_name="/new_conversation")
    question = "A question about the holiday photos from the mountains and the lake, all of them"
    message = {"text": question, "files": []}
    client.predict(message, max_new_tokens=16, conversation_id=conversation_id, api_name="/chat")
    page.goto(f"{url}/?c={conversation_id}")
    choice = page.locator(".conversation-group label", has_text="A question about the").first
    expect(choice).to_have_attribute("title", re.compile(r"^A question about the holiday .{20,}…$"))
    box, side = choice.bounding_box(), page.locator(".conversation-group").first.bounding_box()
    assert box and side and box["x"] + box["width"] <= side["x"] + side["width"], (box, side)
    text = choice.locator("span").last
    assert text.evaluate("(span) => span.scrollWidth > span.clientWidth")  # cut, not wrapped
    line = text.evaluate("(span) => parseFloat(getComputedStyle(span).lineHeight)")
    assert box["height"] < 2 * line, (box, line)


def test_search_follows_every_edit_of_its_field_backspace_delete_and_paste_too(page, demo_app):
    url, _ = demo_app
    client = Client(url, verbose=False)
    conversation_id = client.predict(api_name="/new_conversation")
    message = {"text": "Findable conversation", "files": []}
    client.predict(message, max_new_tokens=16, conversation_id=conversation_id, api_name="/chat")
    page.reload()
    listed = page.locator(".conversation-group label", has_text="Findable conversation")
    expect(listed).to_have_count(1)
    page.click("#search input")
    page.keyboard.type("nothing-matches")
    expect(listed).to_have_count(0)
    for _ in "nothing-matches":
        page.keyboard.press("Backspace")
    expect(listed).to_have_count(1)  # the field is empty again: the whole list
    page.keyboard.type("Findable")
    page.keyboard.press("Home")
    page.keyboard.press("Delete")  # "indable" still matches
    expect(listed).to_have_count(1)
    page.keyboard.press("Control+A")
    page.evaluate("navigator.clipboard.writeText('nothing-matches')")
    page.keyboard.press("Control+V")
    expect(listed).to_have_count(0)
    page.keyboard.press("Control+A")
    page.keyboard.press("Delete")
    expect(listed).to_have_count(1)


def test_read_aloud_says_when_there_is_nothing_to_read_or_no_voice_to_read_with(page, demo_app):
    url, _ = demo_app
    page.get_by_role("button", name="Read aloud").click()
    expect(page.locator("#loupe-notice")).to_have_text("There is no answer to read aloud yet.")
    client = Client(url, verbose=False)
    conversation_id = client.predict(api_name="/new_conversation")
    message = {"text": "Something to read aloud", "files": []}
    client.predict(message, max_new_tokens=16, conversation_id=conversation_id, api_name="/chat")
    page.goto(f"{url}/?c={conversation_id}")
    page.locator("#chat .bot").last.wait_for()
    # Chromium without a speech service (as here, and on some Linux desktops) lists no voice.
    assert page.evaluate("speechSynthesis.getVoices().length") == 0
    page.get_by_role("button", name="Read aloud").click()
    expect(page.locator("#loupe-notice")).to_contain_text("No voice for reading aloud is installed")
    expect(page.locator("#announcer")).to_contain_text("No voice for reading aloud is installed")


def test_an_example_in_the_empty_chat_goes_into_the_message_box(page):
    page.get_by_role("button", name="Select example 2: Describe this photo.").click()
    expect(page.locator("#message textarea")).to_have_value("Describe this photo.")
    expect(page.locator("#message .thumbnail-item")).to_have_count(1)


RESTORE_S = 15  # a reloaded page puts its kept settings back within this, on a busy machine
MIN_CHAT_PX = 150  # about five lines of a conversation, still readable beside an open panel
# A control, a picture or a field of an open panel: each must be inside the window.
PANEL_PARTS = "button:visible, input:visible, video:visible, img:visible, textarea:visible"


def assert_fits(page, panel: str, width: int, height: int) -> None:
    """Every part of the open `panel` inside the window, and the conversation usable beside it."""
    parts = page.locator(panel).locator(PANEL_PARTS)
    assert parts.count() >= 2, panel
    for n in range(parts.count()):
        box = parts.nth(n).bounding_box()
        assert box and box["x"] >= 0 and box["y"] >= 0, (panel, n, box)
        right, bottom = box["x"] + box["width"], box["y"] + box["height"]
        assert right <= width and bottom <= height, (
            panel,
            parts.nth(n).evaluate("(e) => e.outerHTML.slice(0, 120)"),
            box,
        )
    chat = page.locator("#chat").bounding_box()
    assert chat and chat["height"] >= MIN_CHAT_PX, chat


@pytest.mark.parametrize("width,height", [(1280, 800), (1366, 768)])
def test_the_camera_and_zoom_panels_fit_the_window_and_close(browser, demo_app, width, height):
    context = browser.new_context(
        permissions=["camera"], viewport={"width": width, "height": height}
    )
    page = context.new_page()
    page.goto(demo_app[0])
    page.wait_for_function("!!window.loupe")
    live = "document.querySelector('#webcam video')?.readyState >= 2"
    page.click("#camera-button")
    page.wait_for_function(live)
    # Chromium's fake camera gives what Gradio asks for: 1920 x 1440, as a good webcam does.
    assert page.evaluate("document.querySelector('#webcam video').videoHeight") == 1440
    assert_fits(page, "#camera-panel", width, height)
    shoot(page, f"camera-{width}x{height}")
    page.evaluate("window.camera = document.querySelector('#webcam video').srcObject")
    page.click("#camera-button")  # Camera again closes it, and turns the camera off
    expect(page.locator("#camera-panel")).to_be_hidden()
    assert page.evaluate("window.camera.getTracks().every((t) => t.readyState === 'ended')")
    page.click("#camera-button")
    page.wait_for_function(live)
    page.keyboard.press("Escape")
    expect(page.locator("#camera-panel")).to_be_hidden()

    attach(page, ROOT / "assets" / "example-photo.jpg")
    page.click("#zoom-button")
    page.locator("#zoom-image img").wait_for()
    assert_fits(page, "#zoom-panel", width, height)
    shoot(page, f"zoom-{width}x{height}")
    page.keyboard.press("Escape")
    expect(page.locator("#zoom-panel")).to_be_hidden()
    context.close()


def test_settings_stay_after_a_reload_until_reset_to_defaults(browser, demo_app, tmp_path):
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.goto(demo_app[0])
    page.wait_for_function("!!window.loupe")
    open_settings(page)
    system = page.get_by_label("System prompt")
    tokens = page.get_by_label("number input for Max new tokens")
    rate = page.get_by_label("number input for Reading rate")
    defaults = (system.input_value(), tokens.input_value(), rate.input_value())
    system.fill("Answer in French.")
    system.press("Tab")
    tokens.fill("48")
    tokens.press("Enter")
    rate.fill("1.5")
    rate.press("Enter")
    page.get_by_label("Thinking").check()
    kept = page.evaluate(f"localStorage.getItem('{STORAGE_KEY}')")
    page.get_by_label("Brief", exact=True).check()
    page.wait_for_function(  # each change is saved as it is made: the last one too
        f"(before) => localStorage.getItem('{STORAGE_KEY}') !== before", arg=kept
    )

    def values() -> tuple:
        return (
            system.input_value(),
            tokens.input_value(),
            rate.input_value(),
            page.get_by_label("Thinking").is_checked(),
            page.get_by_label("Brief", exact=True).is_checked(),
        )

    def after_reload(expected: tuple) -> tuple:
        """The values shown once the page, reloaded, has put its kept settings back (they may
        come a moment after the page), and still a moment later."""
        page.reload()
        page.wait_for_function("!!window.loupe")
        open_settings(page)
        deadline = time.monotonic() + RESTORE_S
        while values() != expected and time.monotonic() < deadline:
            page.wait_for_timeout(100)
        page.wait_for_timeout(1000)
        return values()

    expected = ("Answer in French.", "48", "1.5", True, True)
    assert after_reload(expected) == expected
    # A conversation started now shows the system prompt it keeps, collapsed at its top.
    page.fill("#message textarea", "Bonjour")
    page.keyboard.press("Enter")
    kept_prompt = page.locator("#chat").get_by_text("System prompt", exact=True)
    expect(kept_prompt).to_be_visible(timeout=60_000)
    expect(page.locator("#chat")).not_to_contain_text("Answer in French.")
    kept_prompt.click()
    expect(page.locator("#chat")).to_contain_text("Answer in French.")
    shoot(page, "system-prompt-kept")
    page.click("#reset-settings")
    expect(system).to_have_value(defaults[0])
    assert after_reload((*defaults, False, False)) == (*defaults, False, False)
    context.close()


def test_the_key_that_keeps_settings_outlives_a_restart(tmp_path):
    first = browser_secret(tmp_path / "data")
    assert browser_secret(tmp_path / "data") == first  # Loupe started again on the same folder
    assert (tmp_path / "data" / SECRET_FILE).stat().st_mode & 0o077 == 0  # its owner's alone
    assert browser_secret(tmp_path / "other") != first
