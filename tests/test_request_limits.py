"""What one request may send the model in all (app/intake/totals.py), and the busy answer before
any decoding: through /v1 and gradio_client's /chat on the shared `--demo` app, and the page's
conversations counted over the turns they send."""

from __future__ import annotations

import base64
import io
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from gradio_client import Client, handle_file
from PIL import Image

from app.config import Limits
from app.history import Attachment, Conversation, StoredMessage
from app.intake.message import Intake
from app.intake.probe import MediaError
from app.intake.speech import Speech
from app.intake.totals import Totals
from app.page.voice import Voice
from app.tasks.describe import is_description
from bench.samples import photo
from model import SpeechRecognizer

# Held to their full length, so that the model stays busy while the queue fills behind it.
ENDLESS = {"max_tokens": 3000, "min_tokens": 3000, "temperature": 0.0}


def png(width: int = 8, height: int = 8) -> bytes:
    buffer = io.BytesIO()
    photo(width, height).save(buffer, "PNG")
    return buffer.getvalue()


def image_part(data: bytes) -> dict[str, Any]:
    url = "data:image/png;base64," + base64.b64encode(data).decode()
    return {"type": "image_url", "image_url": {"url": url}}


def completion(url: str, body: dict[str, Any], timeout: float = 60) -> httpx.Response:
    return httpx.post(f"{url}/v1/chat/completions", json=body, timeout=timeout)


def test_a_whole_prompt_over_the_message_limit_is_400_naming_messages(demo_app):
    url, _ = demo_app
    many = [{"role": "user", "content": "hi"}] * (Limits().max_request_messages + 1)
    answer = completion(url, {"messages": many, "max_tokens": 1})
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["param"] == "messages"
    assert error["message"] == (
        f"This request has {len(many):,} messages; Loupe sends the model at most "
        f"{Limits().max_request_messages:,} messages at once."
    )


def test_images_are_counted_across_the_whole_request(demo_app):
    """Each message within its own limit of files, the request past its total of images."""
    url, _ = demo_app
    limits = Limits()
    per_message = limits.max_files_per_message
    turns = -(-(limits.max_request_images + 1) // per_message)  # rounded up
    content = [{"type": "text", "text": "What are these?"}] + [image_part(png())] * per_message
    reply = {"role": "assistant", "content": "Dots."}
    messages = [
        message for _ in range(turns) for message in ({"role": "user", "content": content}, reply)
    ]
    answer = completion(url, {"messages": messages[:-1], "max_tokens": 1})
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    last = 2 * (turns - 1)  # the message with which the total passed the limit
    assert error["param"] == f"messages[{last}].content"
    assert error["message"].startswith(f"This request has {turns * per_message} images")


def _hold_the_queue(url: str, stop: threading.Event) -> None:
    """One endless reply; a queued one gives up (and so leaves the queue) after a while."""
    body = {"messages": [{"role": "user", "content": "Talk."}], "stream": True, **ENDLESS}
    try:
        with httpx.stream(
            "POST", f"{url}/v1/chat/completions", json=body, timeout=httpx.Timeout(20.0)
        ) as streamed:
            for _ in streamed.iter_lines():
                if stop.is_set():
                    return
    except httpx.HTTPError:
        pass  # a queued request that gave up


def test_a_full_queue_is_busy_before_any_file_is_decoded(demo_app, tmp_path: Path):
    """While the queue is full, a request whose image is cut short (which only decoding
    shows) is told Loupe is busy, on /v1, /chat and /describe: its files were never decoded."""
    url, health = demo_app
    cut = png(64, 64)[:-40]
    (tmp_path / "cut.png").write_bytes(cut)
    health_url = f"{url}/health"
    places = 1 + 8  # the reply running and the default queue of 8
    stop = threading.Event()
    with ThreadPoolExecutor(places) as pool:
        for _ in range(places):
            pool.submit(_hold_the_queue, url, stop)
        try:
            deadline = time.monotonic() + 30
            while httpx.get(health_url, timeout=5).json()["engine"]["queue"] < places - 1:
                assert time.monotonic() < deadline, "the queue did not fill"
                time.sleep(0.1)
            body = {"messages": [{"role": "user", "content": [image_part(cut)]}]}
            answer = completion(url, body)
            assert answer.status_code == 429, answer.text
            assert answer.json()["error"]["message"] == "Loupe is busy, try again in a moment."
            client = Client(url, verbose=False)
            with pytest.raises(Exception, match="Loupe is busy"):
                client.predict(
                    {"text": "What is this?", "files": [handle_file(tmp_path / "cut.png")]},
                    api_name="/chat",
                )
            with pytest.raises(Exception, match="Loupe is busy"):
                client.predict(handle_file(tmp_path / "cut.png"), api_name="/describe")
        finally:
            stop.set()
    deadline = time.monotonic() + 30
    while httpx.get(health_url, timeout=5).json()["engine"] != {
        **health["engine"],
        "state": "idle",
        "queue": 0,
    }:
        assert time.monotonic() < deadline, "the queue did not empty"
        time.sleep(0.2)


def test_chat_counts_a_message_against_the_request_limits(demo_app, tmp_path: Path):
    """/chat: a message within the per-message limits but past a request's total of pixels
    is refused in one sentence, before decoding."""
    url, _ = demo_app
    limits = Limits()
    side = int((limits.max_image_mp * 1_000_000) ** 0.5)
    big = tmp_path / "big.png"
    Image.new("RGB", (side, side), "white").save(big)  # a small file of many pixels
    count = int(limits.max_request_mp // limits.max_image_mp) + 1
    files = [handle_file(big)] * count
    with pytest.raises(Exception, match="megapixels in all; Loupe sends the model at most"):
        Client(url, verbose=False).predict({"text": "Compare.", "files": files}, api_name="/chat")


# -- a conversation on the page: its newest turns within the totals -------------------------------


def _turn(text: str, images: tuple[Path, ...] = ()) -> tuple[StoredMessage, StoredMessage]:
    attachments = tuple(Attachment("image", str(path), path.name) for path in images)
    return StoredMessage("user", text, attachments), StoredMessage("assistant", "Seen.")


def test_a_long_conversation_sends_its_newest_turns_within_the_totals(tmp_path: Path):
    image = tmp_path / "dot.png"
    image.write_bytes(png())
    limits = Limits(max_request_images=3, max_request_chars=100)
    intake = Intake(limits, Speech(SpeechRecognizer()), is_description)
    turns = [_turn("first", (image, image)), _turn("second", (image,)), _turn("third", (image,))]
    messages = tuple(message for turn in turns for message in turn)[:-1]
    conversation = Conversation("c", "t", 0, 0, messages)
    sent, left_out = intake.sent_turns(conversation, "Be brief.")
    assert left_out == 2 and sent.messages == messages[2:]
    long = tuple(message for turn in [_turn("x" * 60), _turn("y" * 60)] for message in turn)
    sent, left_out = intake.sent_turns(Conversation("c", "t", 0, 0, long[:-1]), "")
    assert left_out == 2 and [m.text for m in sent.messages] == ["y" * 60]
    # Nothing to leave out when all of it fits.
    assert intake.sent_turns(Conversation("c", "t", 0, 0, long[:1]), "") == (
        Conversation("c", "t", 0, 0, long[:1]),
        0,
    )


def test_a_message_past_a_request_total_is_refused_before_decoding(tmp_path: Path):
    cut = tmp_path / "cut.png"
    cut.write_bytes(png(64, 64)[:-40])  # decoding would say "cut short"; counting comes first
    intake = Intake(Limits(max_request_images=2), Speech(SpeechRecognizer()), is_description)
    files = intake.message_files({"files": [str(cut)] * 3})
    with pytest.raises(MediaError) as refused:
        intake.stored_user_message("Compare.", files)
    assert str(refused.value) == (
        "This message has 3 images (PDF pages and video frames count as images); Loupe sends "
        "the model at most 2 at once."
    )


def test_totals_say_which_limit_a_request_passes():
    limits = Limits()
    assert Totals(messages=3, chars=10, images=2).over(limits) is None
    limits = Limits(max_request_audio_s=600, max_request_video_s=90, max_request_mp=100)
    assert Totals(audio_s=601).over(limits) == (
        "This request has 10 min of recordings; Loupe sends the model at most 10 min of "
        "recordings at once."
    )
    assert "at most 90 s of video at once" in (Totals(video_s=91).over(limits) or "")
    assert "101 megapixels in all" in (Totals(megapixels=101).over(limits) or "")


def test_a_conversation_past_the_totals_is_answered_without_its_oldest_turns(
    engine, tmp_path: Path
):
    """/chat in a conversation: the turns past the request's characters are left out of the
    prompt, and the reply says so; the conversation keeps them all."""
    from app.config import AppConfig
    from app.history import History
    from app.page.chat_events import ChatHandlers

    config = AppConfig(limits=Limits(max_request_chars=100))
    handlers = ChatHandlers(engine, Voice(SpeechRecognizer()), History(tmp_path / "data"), config)
    conversation_id = handlers.api.new_conversation()
    replies = []
    for text in ("x" * 60, "y" * 60):
        message = {"text": text, "files": []}
        *_, last = handlers.api.chat(message, "", 0.0, 1.0, 0, 4, False, 280, conversation_id)
        replies.append(last)
    assert not replies[0].startswith("*The conversation is longer")
    assert replies[1].startswith(
        "*The conversation is longer than the model can read at once, so its oldest 2 "
        "messages were left out of this reply.*"
    )
    assert len(handlers.history.get(conversation_id).messages) == 4
