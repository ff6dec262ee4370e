"""launch.py as a person runs it: a real server, /health, and /chat through gradio_client."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from gradio_client import Client, handle_file
from PIL import Image

from bench.samples import photo, write_video
from tests.conftest import (
    MAX_WER,
    QUESTION,
    ROOT,
    health_when_loaded,
    start_app,
    stop_app,
    word_error_rate,
)


def test_health_reports_the_demo_model(demo_app):
    _, health = demo_app
    assert health["status"] == "ok" and health["demo"] is True
    assert health["quantization"] == "4bit" and health["device"] == "cpu"
    assert health["engine"] == {
        "kind": "in-process",
        "state": "idle",
        "queue": 0,
        "backend": "transformers",  # the demo's default, whatever the machine
        "why": "transformers (the demo's default)",
    }
    assert health["asr_model"] == "tiny.en"
    assert "random weights" in health["model"]


def test_chat_with_an_image_streams_text(demo_app, image_file: Path):
    url, _ = demo_app
    client = Client(url, verbose=False)
    # Greedy: the demo model's reply to this picture and question runs past 128 tokens, so it
    # is cut at 48, streamed in several updates.
    job = client.submit(
        {"text": "What is in this picture?", "files": [handle_file(image_file)]},
        temperature=0.0,
        max_new_tokens=48,
        api_name="/chat",
    )
    final = job.result(timeout=120)
    updates = job.outputs()
    assert isinstance(final, str) and final
    assert len(updates) >= 2, updates  # streamed: several growing updates, not one
    pairs = zip(updates, updates[1:], strict=False)
    assert all(later.startswith(earlier) for earlier, later in pairs)
    assert updates[-1] == final


def test_chat_explains_a_file_it_cannot_read(demo_app, tmp_path: Path):
    url, _ = demo_app
    fake = tmp_path / "notes.txt"
    fake.write_bytes(b"\x7fELF\x02\x01\x01" + bytes(64))  # a program, named as notes
    client = Client(url, verbose=False)
    with pytest.raises(Exception, match="not an image, a PDF, a video, audio or a text file"):
        client.predict({"text": "Read this", "files": [handle_file(fake)]}, api_name="/chat")


def test_the_named_api_lists_only_its_endpoints_and_takes_what_it_advertises(demo_app):
    url, _ = demo_app
    client = Client(url, verbose=False)
    api = client.view_api(return_format="dict", print_info=False)
    assert sorted(api["named_endpoints"]) == [
        "/chat",
        "/describe",
        "/edit",
        "/export",
        "/new_conversation",
        "/regenerate",
        "/transcribe",
    ]  # none of the page's own events (Gradio's /lambda_N) among them
    assert not api["unnamed_endpoints"]
    [image_tokens] = [
        p
        for p in api["named_endpoints"]["/chat"]["parameters"]
        if p["parameter_name"] == "image_tokens"
    ]
    advertised = image_tokens["python_type"]["type"]  # Literal['0', '70', ..., '1120']
    assert "'280'" in advertised
    reply = client.predict(
        {"text": "Hi", "files": []}, max_new_tokens=16, image_tokens="280", api_name="/chat"
    )
    assert reply
    with pytest.raises(Exception, match=r"image_tokens input must be one of 0, 70, 140, 280"):
        client.predict({"text": "Hi", "files": []}, image_tokens="lots", api_name="/chat")
    conversation_id = client.predict(api_name="/new_conversation")
    with pytest.raises(Exception, match="format must be markdown or json, not 'pdf'"):
        client.predict(conversation_id, "pdf", api_name="/export")


def test_a_missing_model_folder_is_one_sentence_and_no_traceback():
    result = subprocess.run(
        [sys.executable, "launch.py", "--model", "/no/such/path"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "/no/such/path" in lines[0]
    assert "Traceback" not in result.stderr + result.stdout


def test_default_model_unavailable_falls_back_to_demo_and_on_the_network_v1_is_closed(
    miniature: Path, tmp_path: Path
):
    # Also open to the network, as `--host 0.0.0.0` is: the console names the addresses, and
    # /v1 and /mcp are closed without --api-key.
    env = {"HF_HOME": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    process, url = start_app("--host", "0.0.0.0", env=env)
    try:
        health = health_when_loaded(process, url)
        response = httpx.get(f"{url}/v1/models", timeout=10)
        mcp = httpx.post(f"{url}/mcp/", json={}, timeout=10)
    finally:
        output = stop_app(process)
    assert response.status_code == 401 and mcp.status_code == 401
    message = response.json()["error"]["message"]
    assert "network" in message and "--api-key" in message
    closed = [line for line in output.splitlines() if "/mcp) is closed" in line]
    assert len(closed) == 1 and "--api-key" in closed[0], output
    assert health["status"] == "ok" and health["demo"] is True
    # No GPU here: auto chose llama.cpp, whose files are the GGUF build's.
    assert "hf download ggml-org/gemma-4-12B-it-GGUF" in health["fallback_reason"]
    assert "Traceback" not in output
    assert "Running the demo model instead" in output and "hf download" in output
    assert f"Other machines on your network reach it at http://{socket.gethostname()}:" in output
    assert "without --auth" in output  # and it warns that anyone there may use it


def test_transcribe_endpoint_returns_the_words(demo_app, spoken_question: Path):
    url, _ = demo_app
    client = Client(url, verbose=False)
    text = client.predict(handle_file(spoken_question), api_name="/transcribe")
    assert word_error_rate(QUESTION, text) < MAX_WER, text


def test_two_images_and_text_stream_a_reply(demo_app, image_file: Path, tmp_path: Path):
    url, _ = demo_app
    second = tmp_path / "second.png"
    photo(200, 300, seed=7).save(second)
    client = Client(url, verbose=False)
    files = [handle_file(image_file), handle_file(second)]
    job = client.submit(
        {"text": "Compare these two.", "files": files}, max_new_tokens=32, api_name="/chat"
    )
    assert isinstance(job.result(timeout=120), str)  # a reply, whatever its length


def test_regenerate_and_edit_produce_new_replies(demo_app):
    url, _ = demo_app
    client = Client(url, verbose=False)
    conversation_id = client.predict(api_name="/new_conversation")
    first = client.predict(
        {"text": "Hello", "files": []},
        conversation_id=conversation_id,
        max_new_tokens=24,
        api_name="/chat",
    )
    again = client.predict(conversation_id, 24, api_name="/regenerate")
    edited = client.predict(conversation_id, 0, "Hello again", 24, api_name="/edit")
    assert len({first, again, edited}) == 3  # three different samples
    exported = json.loads(client.predict(conversation_id, "json", api_name="/export"))
    assert [m["text"] for m in exported["messages"]] == ["Hello again", edited]


def test_a_conversation_with_an_image_survives_a_restart_and_exports(
    miniature: Path, image_file: Path, tmp_path: Path
):
    data = {"LOUPE_DATA_DIR": str(tmp_path / "data")}
    process, url = start_app("--demo", env=data)
    try:
        health_when_loaded(process, url)
        client = Client(url, verbose=False)
        conversation_id = client.predict(api_name="/new_conversation")
        reply = client.predict(
            {"text": "What is this?", "files": [handle_file(image_file)]},
            conversation_id=conversation_id,
            max_new_tokens=16,
            api_name="/chat",
        )
    finally:
        stop_app(process)
    process, url = start_app("--demo", env=data)
    try:
        health_when_loaded(process, url)
        client = Client(url, verbose=False)
        markdown = client.predict(conversation_id, api_name="/export")
        exported = json.loads(client.predict(conversation_id, "json", api_name="/export"))
    finally:
        stop_app(process)
    question, answer = exported["messages"]
    image = Path(question["attachments"][0]["path"])
    assert image.is_file() and image.read_bytes() == image_file.read_bytes()
    assert (question["text"], answer["text"]) == ("What is this?", reply)
    assert markdown.startswith("# What is this?") and image.as_uri() in markdown


def test_describe_streams_a_description_that_says_it_is_ai_generated(demo_app, image_file: Path):
    url, _ = demo_app
    client = Client(url, verbose=False)
    job = client.submit(handle_file(image_file), "brief", api_name="/describe")
    description = job.result(timeout=120)
    assert description.startswith("AI description, may be wrong: ")
    assert all(update.startswith("AI description") for update in job.outputs())
    with pytest.raises(Exception, match="The level must be one of brief, .*, not 'poem'"):
        client.predict(handle_file(image_file), "poem", api_name="/describe")
    checked = json.loads(
        client.predict(handle_file(image_file), "check_content", api_name="/describe")
    )  # a document a program parses; held to the verdict's schema, even noise is a verdict
    assert checked["notice"] == "AI description, may be wrong:"
    assert set(checked["verdict"]) == {"flagged", "categories", "category_scores", "rationale"}
    assert checked["verdict_problem"] is None and isinstance(checked["answer"], str)


def test_describe_takes_a_pdf_and_a_video_as_the_page_does(demo_app, tmp_path: Path):
    url, _ = demo_app
    client = Client(url, verbose=False)
    pages = [Image.new("RGB", (200, 280), (255, 255, 255 - n)) for n in range(3)]
    pdf = tmp_path / "minutes.pdf"
    pages[0].save(pdf, "PDF", save_all=True, append_images=pages[1:])
    video = write_video(tmp_path / "clip.mp4", 2)
    for file in (pdf, video):
        description = client.predict(handle_file(file), "brief", api_name="/describe")
        assert description.startswith("AI description, may be wrong: "), file.name
    conversation = client.predict(api_name="/new_conversation")
    client.predict(handle_file(pdf), "detailed", conversation, api_name="/describe")
    exported = json.loads(client.predict(conversation, "json", api_name="/export"))
    [attachment] = exported["messages"][0]["attachments"]
    assert (attachment["kind"], attachment["name"]) == ("pdf", "minutes.pdf")
    assert attachment["caption"] == "Pages 1-3 of 3"
    with pytest.raises(Exception, match="Send one image, PDF or video to describe"):
        notes = tmp_path / "notes.txt"
        notes.write_text("Some notes.")
        client.predict(handle_file(notes), "brief", api_name="/describe")


def test_describe_in_a_conversation_takes_follow_up_questions(demo_app, image_file: Path):
    url, _ = demo_app
    client = Client(url, verbose=False)
    conversation = client.predict(api_name="/new_conversation")
    description = client.predict(
        handle_file(image_file), "alt_text", conversation, api_name="/describe"
    )
    client.predict(
        {"text": "Is there text in it?", "files": []},
        conversation_id=conversation,
        max_new_tokens=16,
        api_name="/chat",
    )
    exported = json.loads(client.predict(conversation, "json", api_name="/export"))
    prompt, answer, question, _ = exported["messages"]
    assert prompt["text"].startswith("You are describing an image") and prompt["attachments"]
    assert answer["text"] == description and description.startswith("AI description, may be wrong")
    assert question["text"] == "Is there text in it?"
