"""launch.py as a person runs it: a real server, /health, and /chat through gradio_client."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from gradio_client import Client, handle_file

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
    assert health["engine"] == {"state": "idle", "queue": 0}
    assert health["asr_model"] == "tiny.en"
    assert "random weights" in health["model"]


def test_chat_with_an_image_streams_text(demo_app, image_file: Path):
    url, _ = demo_app
    client = Client(url, verbose=False)
    job = client.submit(
        {"text": "What is in this picture?", "files": [handle_file(image_file)]}, api_name="/chat"
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
    fake.write_text("not media")
    client = Client(url, verbose=False)
    with pytest.raises(Exception, match="neither an image nor an audio file"):
        client.predict({"text": "Read this", "files": [handle_file(fake)]}, api_name="/chat")


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


def test_default_model_unavailable_falls_back_to_demo_and_says_why(miniature: Path, tmp_path: Path):
    process, url = start_app(env={"HF_HOME": str(tmp_path), "HF_HUB_OFFLINE": "1"})
    try:
        health = health_when_loaded(process, url)
    finally:
        output = stop_app(process)
    assert health["status"] == "ok" and health["demo"] is True
    assert "hf download google/gemma-4-12B-it" in health["fallback_reason"]
    assert "Traceback" not in output
    assert "Running the demo model instead" in output and "hf download" in output


def test_transcribe_endpoint_returns_the_words(demo_app, spoken_question: Path):
    url, _ = demo_app
    client = Client(url, verbose=False)
    text = client.predict(handle_file(spoken_question), api_name="/transcribe")
    assert word_error_rate(QUESTION, text) < MAX_WER, text
