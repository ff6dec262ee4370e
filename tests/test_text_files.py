"""Text files in a message (notes, Markdown, code, CSV, JSON, logs): told by their content, held
to --max-text-kb, given to the model fenced under their name; through the intake, the page,
/chat (kept, exported, reopened) and /v1 (file parts of a text type)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import httpx
import openai
import pytest
from gradio_client import Client, handle_file
from playwright.sync_api import expect

from app.config import Limits
from app.intake.files import file_kind
from app.intake.probe import MediaError
from app.intake.text_file import TextFile
from tests.conftest import short_replies
from tests.test_browser import REPLY_TIMEOUT_MS, shoot, wait_until_saved
from tests.test_pdf import model_message, stored

LIMITS = Limits()
NOTES = "Meeting notes\n- ship the camera fix\n- the café's Wi-Fi password is in the drawer\n"
CODE = 'def greet():\n    """Say hello."""\n    print("```not a fence```")\n'


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    written = {
        "notes.txt": NOTES.encode(),
        "greet.py": CODE.encode(),
        "sales.csv": b"month,units\nJanuary,12\nFebruary,15\n",
        "config.json": b'{"name": "Loupe", "port": 7860}\n',
        "windows.log": "\ufeffline one\r\nline two\r\n".encode(),  # a BOM and CRLF, as Notepad
        "latin1.txt": "café".encode("latin-1"),
        "program.txt": b"\x7fELF\x02\x01\x01\x00" + bytes(64),
        "big.md": b"# Notes\n" + b"words and more words\n" * 1200,  # 24.6 KB, over the 20 KB
    }
    for name, data in written.items():
        (tmp_path / name).write_bytes(data)
    return {name: tmp_path / name for name in written}


def test_text_files_are_told_by_their_content(files):
    for name in ("notes.txt", "greet.py", "sales.csv", "config.json", "windows.log"):
        assert file_kind(files[name], LIMITS) == "text", name
    with pytest.raises(MediaError, match=r"^latin1\.txt is not UTF-8 text; save it as UTF-8"):
        file_kind(files["latin1.txt"], LIMITS)
    with pytest.raises(MediaError, match=r"^program\.txt is not an image, a PDF, a video, audio"):
        file_kind(files["program.txt"], LIMITS)
    with pytest.raises(
        MediaError,
        match=r"^big\.md is 24\.6 KB of text; Loupe takes text files up to 20 KB \(--max-text-kb\)",
    ):
        file_kind(files["big.md"], LIMITS)
    assert file_kind(files["big.md"], Limits(max_text_kb=32)) == "text"


def test_the_model_reads_each_file_fenced_under_its_name_before_the_question(files):
    message = stored("What do these say?", files["notes.txt"], files["greet.py"])
    assert [(a.kind, a.name) for a in message.attachments] == [
        ("text", "notes.txt"),
        ("text", "greet.py"),
    ]
    sent = model_message(message)
    assert sent.text == (
        f"notes.txt:\n```\n{NOTES}\n```\n\n"
        f"greet.py:\n````\n{CODE}\n````\n\n"  # longer than the backticks inside
        "What do these say?"
    )
    assert not sent.images and not sent.audio
    windows = model_message(stored("", files["windows.log"]))
    assert windows.text == "windows.log:\n```\nline one\nline two\n\n```"
    assert TextFile("a.txt", "x").fenced() == "a.txt:\n```\nx\n```"


def test_chat_keeps_a_text_file_and_exports_and_reopens_it(demo_app, files):
    url, _ = demo_app
    client = Client(url, verbose=False)
    conversation_id = client.predict(api_name="/new_conversation")
    message = {"text": "Summarise my notes.", "files": [handle_file(files["notes.txt"])]}
    client.predict(message, max_new_tokens=16, conversation_id=conversation_id, api_name="/chat")
    exported = client.predict(conversation_id, api_name="/export")  # the Markdown
    assert "[📝 notes.txt](file://" in exported
    link = exported.split("[📝 notes.txt](file://")[1].split(")")[0]
    assert Path(link).read_text() == NOTES  # kept whole in the data folder
    assert "Summarise my notes." in exported
    kept = json.loads(client.predict(conversation_id, "json", api_name="/export"))
    [attachment] = kept["messages"][0]["attachments"]
    assert (attachment["kind"], attachment["name"]) == ("text", "notes.txt")


def test_v1_takes_a_text_file_part_and_the_model_reads_it(demo_app, files):
    url, health = demo_app
    api = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=120)

    def asked(*parts: dict) -> int:
        messages = [{"role": "user", "content": [*parts, {"type": "text", "text": "Sum up."}]}]
        reply = api.chat.completions.create(
            model=health["model"], messages=messages, max_tokens=4, temperature=0.0
        )
        return reply.usage.prompt_tokens

    data = base64.b64encode(files["sales.csv"].read_bytes()).decode()
    part = {
        "type": "file",
        "file": {"file_data": f"data:text/csv;base64,{data}", "filename": "sales.csv"},
    }
    assert asked(part) >= asked() + 15  # the file's rows reached the model
    mislabelled = {"type": "file", "file": {"file_data": f"data:application/pdf;base64,{data}"}}
    refused = httpx.post(
        f"{url}/v1/chat/completions",
        json={"messages": [{"role": "user", "content": [mislabelled]}]},
        timeout=30,
    )
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert error["message"] == "messages[0].content[0] holds a text file, not a PDF."
    assert error["param"] == "messages[0].content[0]"


def test_the_page_sends_a_text_file_and_shows_it_by_name(page, demo_app, files):
    url, _ = demo_app
    short_replies(page)
    page.set_input_files("#message input[type=file]", str(files["greet.py"]))
    page.locator("#message .thumbnail-item").first.wait_for()
    page.fill("#message textarea", "What does this code do?")
    page.keyboard.press("Enter")
    page.locator("#chat .bot").last.wait_for(timeout=REPLY_TIMEOUT_MS)
    expect(page.locator("#chat .user a", has_text="greet.py")).to_be_visible()
    expect(page.locator("#chat .user", has_text="📝 65 bytes, 3 lines")).to_be_visible()
    shoot(page, "text-file-sent")
    wait_until_saved(url)
    page.reload()  # reopened from its address, the file is still there
    expect(page.locator("#chat .user a", has_text="greet.py")).to_be_visible(
        timeout=REPLY_TIMEOUT_MS
    )
