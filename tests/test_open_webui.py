"""Open WebUI as a client of Loupe's /v1: the requests it sends, as its source writes them
(backend/open_webui/routers/openai.py and audio.py): the model list, a streamed chat with an
image and the chat's title request, and the transcription of a recording made in the browser.
Sent to the session's demo app with httpx, as Open WebUI's aiohttp and requests send them."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import av
import httpx
import numpy as np
import soundfile
from scipy.signal import resample_poly

from bench.samples import photo
from tests.conftest import MAX_WER, QUESTION, word_error_rate

KEY = "sk-open-webui"  # Open WebUI always sends the key its connection has, here any text
# Open WebUI's headers: JSON, its key, and (ENABLE_FORWARD_USER_INFO_HEADERS) who is asking.
HEADERS = {
    "Content-Type": "application/json",
    "Authorization": f"Bearer {KEY}",
    "X-OpenWebUI-User-Name": "Ana Lima",
    "X-OpenWebUI-User-Id": "6c1f0a52-93ad-4e38-9c52-0d7b5bdf6c11",
    "X-OpenWebUI-User-Email": "ana@example.com",
    "X-OpenWebUI-User-Role": "user",
}


def browser_recording(wav: Path, path: Path) -> Path:
    """The spoken question as a browser's MediaRecorder gives it: WebM with Opus at 48 kHz."""
    samples, rate = soundfile.read(wav, dtype="float32", always_2d=True)
    samples = resample_poly(samples.mean(axis=1), 48_000, rate).astype(np.float32)
    with av.open(str(path), "w", format="webm") as container:
        stream = container.add_stream("libopus", rate=48_000, layout="mono")
        for start in range(0, len(samples), 960):
            piece = np.ascontiguousarray(samples[None, start : start + 960], dtype=np.float32)
            frame = av.AudioFrame.from_ndarray(piece, "flt", "mono")
            frame.rate, frame.pts = 48_000, start
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def test_open_webui_lists_chats_with_an_image_titles_and_transcribes(
    demo_app, spoken_question: Path, tmp_path: Path
):
    url, _ = demo_app
    base = f"{url}/v1"  # Open WebUI's connection URL: http://HOST:7860/v1
    models = httpx.get(f"{base}/models", headers=HEADERS, timeout=30).json()
    [model] = models["data"]
    chat_id = "1f7c2d9e-5b0a-4c1e-8f3a-2b6d9e0c4a71"
    buffer = io.BytesIO()
    photo().save(buffer, "PNG")
    image = base64.b64encode(buffer.getvalue()).decode("ascii")
    # The chat: the system prompt its settings add, the person's text and image, the stream's
    # usage asked for, and the last message marked for prompt caching.
    payload = {
        "stream": True,
        "model": model["id"],
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is in this picture?"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{image}"}},
                ],
                "cache_control": {"type": "ephemeral"},
            },
        ],
        "temperature": 0.8,
        "max_tokens": 12,
        "stream_options": {"include_usage": True},
    }
    headers = {**HEADERS, "X-OpenWebUI-Chat-Id": chat_id}
    body = json.dumps(payload)
    with httpx.stream(
        "POST", f"{base}/chat/completions", content=body, headers=headers, timeout=120
    ) as response:
        assert response.status_code == 200
        assert "text/event-stream" in response.headers["content-type"]
        lines = [line for line in response.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(line[6:]) for line in lines[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text  # what Open WebUI shows, piece by piece
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] > 0
    # Then its title for the chat: the same model, not streamed.
    title = httpx.post(
        f"{base}/chat/completions",
        content=json.dumps({
            "model": model["id"],
            "messages": [{"role": "user", "content": f"### Task:\nTitle this chat.\n{text}"}],
            "stream": False,
            "max_tokens": 8,
        }),  # fmt: skip
        headers=headers,
        timeout=120,
    ).json()
    assert title["choices"][0]["message"]["content"]
    # Speech to text, Open WebUI's OpenAI engine: the recording and its model, multipart.
    recording = browser_recording(spoken_question, tmp_path / "3f2a9c1e.webm")
    heard = httpx.post(
        f"{base}/audio/transcriptions",
        headers={"Authorization": f"Bearer {KEY}"},
        files={"file": (recording.name, recording.read_bytes(), "audio/webm")},
        data={"model": "whisper-1"},
        timeout=120,
    )
    assert heard.status_code == 200, heard.text
    assert word_error_rate(QUESTION, heard.json()["text"]) < MAX_WER
