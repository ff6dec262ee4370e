"""Zoom into a region: the crop itself, and in real Chromium on `launch.py --demo`, a region
marked by dragging over an attached image, and one typed by keyboard on an image from earlier in
the conversation; the message sent holds the region as an image of its own, kept with the
conversation."""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import gradio as gr
import pytest
from PIL import Image, ImageDraw

from app.history import History
from app.page.zoom import crop
from tests.conftest import short_replies
from tests.test_browser import shoot, wait_until_saved

WIDTH, HEIGHT = 400, 300
DRAG_TOLERANCE_PX = 6  # a drag lands on whole screen pixels


def picture(path: Path) -> Path:
    """A white image with a red block in its lower right quarter, and small text in it."""
    image = Image.new("RGB", (WIDTH, HEIGHT), "white")
    draw = ImageDraw.Draw(image)
    draw.rectangle((200, 150, 399, 299), fill=(200, 30, 30))
    draw.text((220, 200), "Error 0x80070005", fill="white")
    image.save(path)
    return path


def test_crop_takes_percent_of_the_image_and_stays_inside_it(tmp_path: Path) -> None:
    image = Image.open(picture(tmp_path / "a.png"))
    assert crop(image, 50, 50, 50, 50).tobytes() == image.crop((200, 150, 400, 300)).tobytes()
    assert crop(image, 90, 90, 50, 50).size == (40, 30)  # cut at the edges
    assert crop(image, -10, 0, 20, 100).size == (40, 300)


@pytest.mark.parametrize("edges", [(10, 10, 1, 50), (0, 0, 100, 0), (100, 100, 10, 10)])
def test_a_region_too_small_is_refused_in_one_sentence(tmp_path: Path, edges) -> None:
    image = Image.open(picture(tmp_path / "a.png"))
    with pytest.raises(gr.Error, match="under 8 pixels across"):
        crop(image, *edges)


def open_zoom(page) -> None:
    page.click("#zoom-button")
    page.wait_for_function(
        "() => document.querySelector('#zoom-image img')?.naturalWidth > 0", timeout=20_000
    )


def edges(page) -> list[float]:
    return [
        float(page.input_value(f"#zoom-{name} input[type=number]"))
        for name in ("left", "top", "width", "height")
    ]


def attached(page) -> int:
    return page.locator("#message [role='group'] img, #message .thumbnail-item img").count()


def sent_images(page, home: Path) -> list[Image.Image]:
    """The images of the conversation's latest message as kept in the data folder."""
    conversation_id = parse_qs(urlsplit(page.url).query)["c"][0]
    stored = History(home / ".loupe").get(conversation_id)
    (question,) = [m for m in stored.messages if m.role == "user"][-1:]
    return [Image.open(a.path) for a in question.attachments if a.kind == "image"]


def send(page, url: str, text: str) -> None:
    page.fill("#message textarea", text)
    page.press("#message textarea", "Enter")
    page.wait_for_function("() => new URL(location.href).searchParams.get('c')")
    time.sleep(1)
    wait_until_saved(url)


def test_drag_over_an_attached_image_sends_the_region_beside_it(page, demo_app, home, tmp_path):
    url, _ = demo_app
    short_replies(page)
    page.set_input_files("#message input[type=file]", [str(picture(tmp_path / "shot.png"))])
    page.wait_for_function("() => document.querySelectorAll('#message img').length >= 1")
    open_zoom(page)
    drawn = page.locator("#zoom-image img").bounding_box()
    scale = min(drawn["width"] / WIDTH, drawn["height"] / HEIGHT)
    left = drawn["x"] + (drawn["width"] - WIDTH * scale) / 2
    top = drawn["y"] + (drawn["height"] - HEIGHT * scale) / 2
    # Drag from the red block's corner (200, 150) to (320, 240), in the image's own pixels.
    page.mouse.move(left + 200 * scale, top + 150 * scale)
    page.mouse.down()
    page.mouse.move(left + 320 * scale, top + 240 * scale, steps=6)
    page.mouse.up()
    assert edges(page) == pytest.approx([50, 50, 30, 30], abs=1.5)
    assert page.locator("#zoom-mark").is_visible()  # the marked region is drawn
    shoot(page, "zoom-marked")
    page.click("#zoom-attach")
    page.wait_for_function("() => document.querySelectorAll('#message img').length >= 2")
    page.wait_for_selector("#zoom-panel", state="hidden")  # closed once the region is in

    send(page, url, "What does the error in the red box say?")
    whole, region = sent_images(page, home)
    assert whole.size == (WIDTH, HEIGHT)
    assert abs(region.width - 120) <= DRAG_TOLERANCE_PX
    assert abs(region.height - 90) <= DRAG_TOLERANCE_PX
    assert region.convert("RGB").getpixel((2, 2)) == (200, 30, 30)  # inside the red block


def test_a_region_typed_by_keyboard_from_an_image_earlier_in_the_conversation(
    page, demo_app, home, tmp_path
):
    url, _ = demo_app
    short_replies(page)
    page.set_input_files("#message input[type=file]", [str(picture(tmp_path / "shot.png"))])
    page.wait_for_function("() => document.querySelectorAll('#message img').length >= 1")
    send(page, url, "What is this?")

    open_zoom(page)  # the message box is empty: the conversation's image is offered
    assert "In the conversation: shot.png" in page.input_value("#zoom-source input")
    for name, value in zip(("left", "top", "width", "height"), (50, 50, 50, 50), strict=True):
        page.fill(f"#zoom-{name} input[type=number]", str(value))
    page.focus("#zoom-attach")
    page.keyboard.press("Enter")
    page.wait_for_function("() => document.querySelectorAll('#message img').length >= 1")
    send(page, url, "And this part?")
    (region,) = sent_images(page, home)
    original = Image.open(tmp_path / "shot.png").convert("RGB")
    assert region.convert("RGB").tobytes() == original.crop((200, 150, 400, 300)).tobytes()
    shoot(page, "zoom-sent")


def test_zoom_without_any_image_says_so(page):
    page.click("#zoom-button")
    page.wait_for_selector("text=Attach an image first", timeout=10_000)
    page.wait_for_selector("#zoom-panel", state="hidden")  # closed once the region is in
