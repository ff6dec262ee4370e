"""launch.py as a person runs it: a real server, /health, and /chat through gradio_client."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from gradio_client import Client, handle_file

ROOT = Path(__file__).resolve().parent.parent
START_S = 240


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start(*flags: str, env: dict[str, str] | None = None) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "launch.py", "--port", str(port), *flags],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return process, f"http://127.0.0.1:{port}"


def _health_when_loaded(process: subprocess.Popen, url: str) -> dict:
    deadline = time.monotonic() + START_S
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stdout.read()
        try:
            response = httpx.get(f"{url}/health", timeout=2)
        except httpx.HTTPError:
            response = None  # not listening yet
        if response is not None and response.status_code == 200:
            health = response.json()
            if health["status"] != "loading":
                return health
        time.sleep(0.5)
    raise AssertionError(f"no loaded model after {START_S} s")


def _stop(process: subprocess.Popen) -> str:
    process.terminate()
    try:
        output, _ = process.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
    return output


@pytest.fixture(scope="module")
def demo_app(miniature: Path) -> Iterator[str]:
    process, url = _start("--demo")
    try:
        yield url, _health_when_loaded(process, url)
    finally:
        _stop(process)


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
    process, url = _start(env={"HF_HOME": str(tmp_path), "HF_HUB_OFFLINE": "1"})
    try:
        health = _health_when_loaded(process, url)
    finally:
        output = _stop(process)
    assert health["status"] == "ok" and health["demo"] is True
    assert "hf download google/gemma-4-12B-it" in health["fallback_reason"]
    assert "Traceback" not in output
    assert "Running the demo model instead" in output and "hf download" in output
