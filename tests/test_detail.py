"""Image detail "Auto": the budget per request from its task and its images, on real images (a
page of small text screenshotted by Chromium, the app's example photo and screenshot); the
task's and the person's settings; the context window; and the value reaching the processor,
the chat and the API."""

from __future__ import annotations

import io
import json
from pathlib import Path

import httpx
import pytest
from PIL import Image

from app.config import AppConfig
from app.history import Attachment, History, StoredMessage, export_json
from app.page.chat_events import ChatHandlers
from app.page.display import IMAGE_DETAIL_TITLE, shown_reply
from app.page.voice import Voice
from app.tasks.describe import LEVELS, level_options, level_prompt
from app.tasks.reply import Reply
from app.v1.serving import ChatCall, ReplyWriter, new_completion
from bench.samples import photo
from bench.serving import wait_until_ready
from model import (
    AUTO_IMAGE_TOKENS,
    IMAGE_TOKEN_BUDGETS,
    ChatRequest,
    Finished,
    GenerationOptions,
    ImageDetail,
    Message,
    RemoteEngine,
    RemoteEngineConfig,
    SpeechRecognizer,
    Timing,
)
from model.detail import estimate_tokens, image_need, resolve, soft_tokens, text_lines
from model.prompts import build_inputs
from tests.conftest import ROOT

ASSETS = ROOT / "assets"
SCREEN = {"width": 1920, "height": 1080}
WORDS = (
    "Traceback (most recent call last): File config.py, line 42, in load_settings: "
    "PermissionError: [Errno 13] Permission denied: /etc/loupe/settings.json. "
)
# An ordinary page at 12 px (a settings dialog, a log, a spreadsheet at 100% zoom).
SMALL_TEXT_PAGE = (
    "<html><body style='margin:16px; font: 12px/1.4 sans-serif; color:#222; background:#fff'>"
    f"<div style='column-count:3'>{WORDS * 60}</div>"
    "<table border=1 style='border-collapse:collapse; font-size:12px'>"
    + "".join(
        f"<tr>{''.join(f'<td>row {r}, value {r * c}</td>' for c in range(9))}</tr>"
        for r in range(12)
    )
    + "</table></body></html>"
)


@pytest.fixture(scope="module")
def screenshot(browser) -> Image.Image:
    """A 1920 x 1080 screenshot of a page of 12 px text, taken by Chromium."""
    page = browser.new_page(viewport=SCREEN)
    try:
        page.set_content(SMALL_TEXT_PAGE)
        png = page.screenshot()
    finally:
        page.close()
    image = Image.open(io.BytesIO(png))
    image.load()
    return image


def example_photo() -> Image.Image:
    return Image.open(ASSETS / "example-photo.jpg")


def ask(*images: Image.Image, **options) -> ChatRequest:
    return ChatRequest(
        (Message("user", "What does it say?", images),), GenerationOptions(**options)
    )


def test_a_screenshot_of_small_text_gets_1120(screenshot: Image.Image):
    assert screenshot.size == (1920, 1080)
    lines = text_lines(screenshot)
    assert lines.is_text and lines.share > 0.2
    assert 7 <= lines.line_px <= 12  # ascender to descender of a 12 px font
    assert image_need(screenshot)[0] == 1120  # at 560 its lines would be under 10 px
    request, detail = resolve(ask(screenshot))
    assert request.options.image_tokens == 1120
    assert detail == ImageDetail(1120, True, f"small text, lines about {lines.line_px:.0f} px high")


def test_a_photo_gets_280():
    for picture in (example_photo(), photo(1024, 768)):  # a drawn scene; camera-like noise
        lines = text_lines(picture)
        assert not lines.is_text and lines.tiles <= 1
        request, detail = resolve(ask(picture))
        assert request.options.image_tokens == 280
        assert detail.auto and detail.reason == "a photo or picture, no small text"


def test_the_example_screenshot_has_larger_text_and_gets_560():
    terminal = Image.open(ASSETS / "example-error.png")
    budget, reason = image_need(terminal)
    assert budget == 560 and reason.startswith("text, lines about")


def test_a_request_gets_what_its_neediest_image_needs(screenshot: Image.Image):
    # One budget per request: the processor takes one per call, vLLM one per request.
    request, detail = resolve(ask(example_photo(), screenshot))
    assert request.options.image_tokens == 1120 and detail.auto


def test_read_all_text_and_diagram_ask_for_1120_whatever_the_image():
    assert {name for name, level in LEVELS.items() if level.image_tokens} == {
        "read_text",
        "diagram",
    }
    asked = level_options("read_text", GenerationOptions())
    assert asked.preferred_image_tokens == 1120 and asked.image_tokens == AUTO_IMAGE_TOKENS
    request, detail = resolve(ChatRequest(ask(example_photo()).messages, asked))
    assert request.options.image_tokens == 1120
    assert detail == ImageDetail(1120, True, "the task asks for it")
    assert level_options("brief", GenerationOptions()).preferred_image_tokens == 0
    assert level_options(None, GenerationOptions()) == GenerationOptions()


def test_a_budget_the_person_set_wins_over_everything(screenshot: Image.Image):
    chosen = GenerationOptions(image_tokens=280)
    assert level_options("read_text", chosen) == chosen  # over the task
    request, detail = resolve(ChatRequest(ask(screenshot).messages, chosen))
    assert request.options.image_tokens == 280 and detail == ImageDetail(280, auto=False)
    # Over the window too: what does not fit loses old turns or is refused, as before.
    tight = ask(screenshot, image_tokens=1120, max_new_tokens=16)
    assert resolve(tight, context_tokens=300)[0].options.image_tokens == 1120
    with pytest.raises(ValueError, match="0 \\(Auto\\) or one of"):
        GenerationOptions(image_tokens=300)


def test_without_images_there_is_nothing_to_show_and_servers_still_get_a_budget():
    request, detail = resolve(ChatRequest((Message("user", "Hello"),)))
    assert detail is None and request.options.image_tokens in IMAGE_TOKEN_BUDGETS


def test_auto_steps_down_to_fit_the_context_window(screenshot: Image.Image):
    newest = ask(screenshot, max_new_tokens=64)
    messages = newest.messages

    def window(budget: int) -> int:  # just enough for the prompt at `budget` and the reply
        return estimate_tokens(messages, budget) + 64

    for fits, expected in ((window(1120), 1120), (window(560), 560), (window(280), 280)):
        request, detail = resolve(newest, context_tokens=fits)
        assert request.options.image_tokens == expected, fits
    assert "1120 would not fit the context window" in resolve(newest, window(560))[1].reason

    # A long conversation: below 280 Auto goes only for the newest message; older turns may go.
    chat = [Message("user", "Tell me a long story. " * 300), Message("assistant", "Once… " * 900)]
    long = ChatRequest((*chat, *messages), newest.options)
    assert estimate_tokens(long.messages, 70) > window(280)
    assert resolve(long, context_tokens=window(280))[0].options.image_tokens == 280
    assert resolve(long, context_tokens=window(140))[0].options.image_tokens == 140


@pytest.mark.parametrize("size", [(1920, 1080), (1024, 640), (320, 240), (37, 4000), (1000, 3)])
def test_soft_tokens_are_counted_as_the_processor_counts_them(processor, size):
    for budget in IMAGE_TOKEN_BUDGETS:
        image = Image.new("RGB", size)
        processed = processor.image_processor(image, max_soft_tokens=budget)
        assert processed["num_soft_tokens_per_image"][0] == soft_tokens(*size, budget)


def test_auto_reaches_the_processor_and_is_shown_with_the_answer(
    engine, screenshot: Image.Image, processor, tmp_path: Path
):
    """Through the page's handlers and the in-process engine: the worker's prompt holds the
    screenshot at 1120 tokens, the chat shows "Image detail: 1120 (Auto)" above the answer,
    the answer keeps it, and the JSON export (the API's /export) gives it."""
    wait_until_ready(engine)
    shot = tmp_path / "settings-dialog.png"
    screenshot.save(shot)
    history = History(tmp_path / "data")
    handlers = ChatHandlers(engine, Voice(SpeechRecognizer()), history, AppConfig())
    conversation_id = history.create()
    attachment = Attachment("image", str(shot), shot.name)
    history.append(conversation_id, StoredMessage("user", "What does it say?", (attachment,)))
    *_, (shown, reply) = handlers.answer(conversation_id, "", GenerationOptions(max_new_tokens=4))
    assert reply.error is None and reply.timing is not None
    expected = build_inputs(
        processor, ask(screenshot).messages, GenerationOptions(image_tokens=1120)
    )
    image_token = processor.tokenizer.convert_tokens_to_ids("<|image|>")  # one per soft token
    assert int((expected["input_ids"] == image_token).sum()) == soft_tokens(1920, 1080, 1120)
    assert reply.timing.prompt_tokens == expected["input_ids"].shape[-1]
    assert reply.image_detail.tokens == 1120 and reply.image_detail.auto
    note = next(entry for entry in shown if entry.get("metadata"))
    assert note["metadata"]["title"] == f"{IMAGE_DETAIL_TITLE}: 1120 (Auto)"
    assert "small text" in note["content"]
    assert shown[-1]["content"] == (reply.answer or "…")  # random weights may answer nothing
    saved = history.get(conversation_id).messages[-1]
    assert saved.image_detail == reply.image_detail  # shown again when the chat is reopened
    exported = json.loads(export_json(history.get(conversation_id)))["messages"][-1]
    assert exported["image_detail"] == {
        "tokens": 1120,
        "auto": True,
        "reason": reply.image_detail.reason,
    }


def test_a_description_level_reaches_the_engine(engine, tmp_path: Path):
    """Read all text asks for 1120 even for a photo, through the stored description."""
    wait_until_ready(engine)
    picture = tmp_path / "photo.jpg"
    example_photo().save(picture)
    history = History(tmp_path / "data")
    handlers = ChatHandlers(engine, Voice(SpeechRecognizer()), history, AppConfig())
    conversation_id = history.create()
    attachment = Attachment("image", str(picture), picture.name)
    history.append(conversation_id, StoredMessage("user", level_prompt("read_text"), (attachment,)))
    *_, (_, reply) = handlers.answer(conversation_id, "", GenerationOptions(max_new_tokens=2))
    assert reply.image_detail == ImageDetail(1120, True, "the task asks for it")


def test_the_api_returns_the_detail_in_an_extension_object():
    writer = ReplyWriter(new_completion("gemma"), ChatCall(ask(photo())))
    writer.image_detail = ImageDetail(560, True, "text, lines about 15 px high")
    writer.read(Finished(Timing(0.1, 10.0, 3, 300)))
    detail = {"tokens": 560, "auto": True, "reason": "text, lines about 15 px high"}
    assert writer.whole()["x_loupe"] == {"image_detail": detail}
    assert writer.opening()["x_loupe"] == {"image_detail": detail}
    assert shown_reply(Reply("Hi", image_detail=writer.image_detail))[-1]["content"] == "Hi"


def test_a_remote_servers_window_steps_auto_down_before_turns_go(screenshot: Image.Image):
    """A server that refuses the prompt as too long at 1120 gets it again at 560."""
    budgets = []

    def serve(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/models"):
            return httpx.Response(200, json={"data": [{"id": "gemma"}]})
        budget = json.loads(request.content)["mm_processor_kwargs"]["max_soft_tokens"]
        budgets.append(budget)
        if budget > 560:
            message = "This model's maximum context length is 1000 tokens."
            return httpx.Response(400, json={"error": {"message": message}})
        done = {"choices": [{"index": 0, "delta": {"content": "ok"}, "finish_reason": "stop"}]}
        return httpx.Response(200, text=f"data: {json.dumps(done)}\n\ndata: [DONE]\n\n")

    engine = RemoteEngine(
        RemoteEngineConfig("http://server/v1"), transport=httpx.MockTransport(serve)
    )
    engine.start()
    try:
        wait_until_ready(engine, 10)
        stream = engine.submit(ask(screenshot, max_new_tokens=4))
        assert stream.image_detail.tokens == 1120
        events = list(stream)
    finally:
        engine.close()
    assert isinstance(events[-1], Finished) and budgets == [1120, 560]
    assert stream.image_detail.tokens == 560 and "did not fit the server's window" in (
        stream.image_detail.reason
    )
