"""Loupe's OpenAI-compatible /v1, driven by the official `openai` client: against launched
`--demo` apps (replies, media, usage, thinking, refusals, keys, a full queue, disconnects,
transcriptions), and on a scripted engine for what a real one rarely does on cue."""

from __future__ import annotations

import base64
import io
import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import openai
import pytest
import soundfile
from PIL import Image
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.testclient import TestClient

from app.config import AppConfig, Limits
from app.server import ApiKeyGuard, HostGuard, api_closed_reason
from app.v1.cors import api_cors, origin_of
from app.v1.routes import OpenAiApi
from app.v1.serving import ChatCall, ReplyWriter, new_completion
from bench.samples import photo, tone, write_video
from model import (
    ChatRequest,
    ContextTrimmed,
    EngineError,
    EngineStatus,
    Finished,
    GenerationOptions,
    ModelInfo,
    QueueSlot,
    ReplyStream,
    TextChunk,
    Timing,
)
from model.openai_wire import RequestError, messages_from_body, stop_strings
from tests.conftest import (
    MAX_WER,
    QUESTION,
    health_when_loaded,
    start_app,
    stop_app,
    wait_until_idle,
    word_error_rate,
)
from tests.test_mcp import TOOLS as MCP_TOOLS
from tests.test_mcp import calls as mcp_calls

KEY = "correct-horse-battery"
SERVED = ""  # a request may leave the model unnamed: it means the one Loupe serves
IDLE_DEADLINE_S = 2.0
SHORT = {"max_tokens": 16}
# Greedy, so the demo model's reply is the same every time: a few hundred tokens, seconds long.
LONG = {"max_tokens": 4000, "temperature": 0.0}
# Forced to run far longer than IDLE_DEADLINE_S, so only a cancel makes the model idle in time.
ENDLESS = {"max_tokens": 3000, "min_tokens": 3000, "temperature": 0.0}
# Forced to run seconds, long past the arrival of requests sent while it runs.
SECONDS = {"max_tokens": 250, "temperature": 0.0, "extra_body": {"min_tokens": 250}}
TALK = [{"role": "user", "content": "Talk at length."}]


def client(url: str, key: str = "unused") -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=120)


def image_part() -> dict[str, Any]:
    buffer = io.BytesIO()
    photo(96, 64).save(buffer, "PNG")
    url = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    return {"type": "image_url", "image_url": {"url": url}}


def audio_part(path: Path) -> dict[str, Any]:
    data = base64.b64encode(path.read_bytes()).decode()
    return {"type": "input_audio", "input_audio": {"data": data, "format": "wav"}}


def ask(part: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"role": "user", "content": [part, {"type": "text", "text": "What is this?"}]}]


def engine_state(url: str) -> dict:
    return httpx.get(f"{url}/health", timeout=5).json()["engine"]


def check_usage(usage: Any) -> None:
    assert usage.prompt_tokens > 0 and usage.completion_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


# -- the session's --demo app ---------------------------------------------------------------------


def test_models_lists_the_served_model(demo_app):
    url, health = demo_app
    listed = client(url).models.list()
    assert [model.id for model in listed.data] == [health["model"]]
    assert listed.data[0].owned_by == "loupe" and listed.data[0].object == "model"


@pytest.mark.parametrize("media", ["image", "audio"])
def test_a_whole_reply_to_media(demo_app, media, spoken_question):
    url, health = demo_app
    part = image_part() if media == "image" else audio_part(spoken_question)
    reply = client(url).chat.completions.create(model=health["model"], messages=ask(part), **SHORT)
    assert reply.object == "chat.completion" and reply.model == health["model"]
    choice = reply.choices[0]
    assert choice.message.role == "assistant" and isinstance(choice.message.content, str)
    assert choice.finish_reason in ("stop", "length")
    check_usage(reply.usage)
    assert reply.usage.completion_tokens <= SHORT["max_tokens"]


@pytest.mark.parametrize("media", ["image", "audio"])
def test_a_streamed_reply_to_media_ends_with_usage(demo_app, media, spoken_question):
    url, _ = demo_app
    part = image_part() if media == "image" else audio_part(spoken_question)
    chunks = list(
        client(url).chat.completions.create(
            model=SERVED,
            messages=ask(part),
            stream=True,
            stream_options={"include_usage": True},
            **SHORT,
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    assert len({chunk.id for chunk in chunks}) == 1
    finishing = [chunk for chunk in chunks if chunk.choices and chunk.choices[0].finish_reason]
    assert len(finishing) == 1 and finishing[0].choices[0].finish_reason in ("stop", "length")
    assert chunks[-1].choices == [] and chunks[-2] is finishing[0]
    check_usage(chunks[-1].usage)
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks[:-1])
    assert text.strip() or chunks[-1].usage.completion_tokens <= 2


def test_audio_longer_than_30_s_is_taken_in_clips(demo_app, tmp_path):
    url, _ = demo_app
    burst = np.concatenate([tone(9.0), np.zeros(16_000, dtype=np.float32)])  # 10 s each
    path = tmp_path / "long.wav"
    soundfile.write(path, np.tile(burst, 4), 16_000)  # 40 s, pauses every 10 s
    reply = client(url).chat.completions.create(
        model=SERVED, messages=ask(audio_part(path)), max_tokens=4
    )
    check_usage(reply.usage)


@pytest.mark.parametrize(
    "thinking",
    [{"chat_template_kwargs": {"enable_thinking": True}}, {"reasoning_effort": "high"}],
    ids=["chat_template_kwargs", "reasoning_effort"],
)
def test_thinking_on_streams_and_answers(demo_app, thinking):
    url, _ = demo_app
    api = client(url)
    whole = api.chat.completions.create(
        model=SERVED, messages=TALK, extra_body=thinking, max_tokens=24
    )
    reasoning = getattr(whole.choices[0].message, "reasoning_content", None)
    assert reasoning is None or isinstance(reasoning, str)
    check_usage(whole.usage)
    chunks = list(
        api.chat.completions.create(
            model=SERVED, messages=TALK, stream=True, extra_body=thinking, max_tokens=24
        )
    )
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")
    for chunk in chunks:
        extra = chunk.choices[0].delta.model_extra or {}
        assert set(extra) <= {"reasoning_content"}


def pdf_part(pages: int) -> dict[str, Any]:
    """A PDF of `pages` plain pages as OpenAI's file part: more than 10 makes the reply's note."""
    sheets = [Image.new("RGB", (200, 280), (255, 255, 255 - page)) for page in range(pages)]
    buffer = io.BytesIO()
    sheets[0].save(buffer, "PDF", save_all=True, append_images=sheets[1:])
    data = "data:application/pdf;base64," + base64.b64encode(buffer.getvalue()).decode()
    return {"type": "file", "file": {"file_data": data, "filename": "minutes.pdf"}}


def streamed_and_whole(api: openai.OpenAI, messages: list, **options: Any) -> tuple[dict, dict]:
    """The same greedy request streamed (its pieces joined) and whole: content and reasoning."""
    options = {"model": SERVED, "messages": messages, "temperature": 0.0, **options}
    joined = {"content": "", "reasoning_content": ""}
    for chunk in api.chat.completions.create(stream=True, **options):
        for delta in (chunk.choices[0].delta,) if chunk.choices else ():
            joined["content"] += delta.content or ""
            joined["reasoning_content"] += (delta.model_extra or {}).get("reasoning_content", "")
    message = api.chat.completions.create(**options).choices[0].message
    reasoning = (message.model_extra or {}).get("reasoning_content") or ""
    return joined, {"content": message.content, "reasoning_content": reasoning}


@pytest.mark.parametrize(
    ("messages", "options"),
    [
        ([{"role": "user", "content": "Count to ten."}], {"max_tokens": 4}),
        (TALK, {"max_tokens": 40}),
        (ask(image_part()), {"max_tokens": 12}),
        (ask(pdf_part(12)), {"max_tokens": 8}),
        (TALK, {"max_tokens": 24, "extra_body": {"reasoning_effort": "high"}}),
    ],
    ids=["count", "talk", "image", "pdf-note", "thinking"],
)
def test_streamed_pieces_join_to_the_whole_reply(demo_app, messages, options):
    url, _ = demo_app
    joined, whole = streamed_and_whole(client(url), messages, **options)
    assert joined == whole
    assert whole["content"] or whole["reasoning_content"]


def test_every_path_under_v1_answers_in_openai_shape(demo_app):
    url, health = demo_app
    served = health["model"]
    card = client(url).models.retrieve(served)
    assert (card.id, card.object) == (served, "model")
    with pytest.raises(openai.NotFoundError) as unknown:
        client(url).models.retrieve("gpt-4o")
    assert unknown.value.body["code"] == "model_not_found"
    missing = httpx.post(f"{url}/v1/embeddings", json={"input": "x"}, timeout=10)
    assert missing.status_code == 404
    error = missing.json()["error"]
    assert error["message"].startswith("Invalid URL (POST /v1/embeddings): Loupe serves ")
    assert (error["type"], error["code"], error["param"]) == ("invalid_request_error", None, None)
    wrong = httpx.get(f"{url}/v1/chat/completions", timeout=10)
    assert wrong.status_code == 405
    assert wrong.json()["error"]["message"] == "/v1/chat/completions takes POST, not GET."
    body = {"messages": TALK, "logprobs": True, "top_logprobs": 2}
    logprobs = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=10)
    assert logprobs.status_code == 400 and logprobs.json()["error"]["param"] == "logprobs"
    # A page of another web site gets no /v1 answer it could read (no --allowed-origin here).
    foreign = {"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    preflight = httpx.options(f"{url}/v1/chat/completions", headers=foreign, timeout=10)
    assert preflight.status_code == 403 and preflight.json()["error"]["type"] == "permission_error"


def test_refusals_in_openai_shape(demo_app):
    url, _ = demo_app
    api = client(url)
    web_image = {"type": "image_url", "image_url": {"url": "https://example.com/car.png"}}
    with pytest.raises(openai.BadRequestError) as refused:
        api.chat.completions.create(model=SERVED, messages=ask(web_image), **SHORT)
    error = refused.value.body
    assert "data URL" in error["message"] and error["message"].endswith(".")
    assert error["code"] is None and error["type"] == "invalid_request_error"  # as OpenAI's
    assert error["param"] == "messages[0].content[0]"

    with pytest.raises(openai.NotFoundError) as unknown:
        api.chat.completions.create(model="gpt-4o", messages=TALK, **SHORT)
    assert "gpt-4o" in unknown.value.body["message"] and unknown.value.body["param"] == "model"

    legacy = [{"role": "function", "content": "42", "name": "answer"}]  # OpenAI's old role
    with pytest.raises(openai.BadRequestError, match="user, assistant or tool"):
        api.chat.completions.create(model=SERVED, messages=legacy, **SHORT)
    with pytest.raises(openai.BadRequestError, match="min_tokens"):
        api.chat.completions.create(
            model=SERVED, messages=TALK, max_tokens=4, extra_body={"min_tokens": 5}
        )
    with pytest.raises(openai.BadRequestError, match="temperature"):
        api.chat.completions.create(model=SERVED, messages=TALK, temperature=7, **SHORT)

    broken = httpx.post(f"{url}/v1/chat/completions", content=b"{not json", timeout=10)
    assert broken.status_code == 400 and "JSON" in broken.json()["error"]["message"]

    # Unknown fields are ignored, seed is taken, stop works.
    reply = api.chat.completions.create(
        model=SERVED, messages=TALK, seed=7, stop=["e"], extra_body={"frobnicate": True}, **LONG
    )
    assert "e" not in reply.choices[0].message.content
    assert reply.choices[0].finish_reason == "stop"
    assert engine_state(url)["state"] == "idle"


@pytest.mark.parametrize(
    ("fields", "param", "sentence"),
    [
        ('"max_tokens": Infinity', "max_tokens", "a whole number of at least 1"),
        ('"max_tokens": 1e400', "max_tokens", "a whole number of at least 1"),
        ('"max_tokens": [5]', "max_tokens", "a whole number of at least 1"),
        ('"max_tokens": "abc"', "max_tokens", "a whole number of at least 1"),
        ('"max_tokens": 2.5', "max_tokens", "a whole number of at least 1"),
        ('"chat_template_kwargs": 5', "chat_template_kwargs", "an object such as"),
        ('"stream_options": 5', "stream_options", "an object such as"),
        (
            '"stream": true, "stream_options": {"include_usage": "yes"}',
            "stream_options.include_usage",
            "true or false",
        ),
        ('"stream": "no"', "stream", "true or false"),
        ('"temperature": NaN', "temperature", "a number between 0 and 2"),
        ('"top_p": true', "top_p", "a number between 0 and 1"),
        ('"reasoning_effort": 3', "reasoning_effort", "one of none, minimal"),
        ('"mm_processor_kwargs": [280]', "mm_processor_kwargs", "an object such as"),
    ],
)
def test_every_field_of_the_wrong_type_is_a_400_naming_it(demo_app, fields, param, sentence):
    url, _ = demo_app
    body = '{"messages": [{"role": "user", "content": "Hi"}], ' + fields + "}"
    answer = httpx.post(
        f"{url}/v1/chat/completions",
        content=body,
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["param"] == param and error["message"].startswith(f"{param} must be {sentence}")
    assert error["message"].endswith(".") and "\n" not in error["message"]


def test_a_max_tokens_past_the_context_is_cut_to_the_room_left(demo_app):
    url, _ = demo_app
    # Accepted and answered, not refused; the stop ends it early, after the limit was cut.
    reply = client(url).chat.completions.create(
        model=SERVED, messages=TALK, max_tokens=10**15, temperature=0.0, stop=["e"]
    )
    assert reply.choices[0].finish_reason == "stop"
    check_usage(reply.usage)


def test_a_client_that_disconnects_mid_stream_stops_its_reply(demo_app):
    url, _ = demo_app
    body = {"messages": TALK, "stream": True, **ENDLESS}
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=30) as response:
        assert response.status_code == 200
        lines = response.iter_lines()
        for _ in range(6):
            assert next(lines).startswith(("data: {", ""))
        assert engine_state(url)["state"] == "busy"
    wait_until_idle(url, IDLE_DEADLINE_S)


def test_a_client_that_gives_up_on_a_whole_reply_stops_it(demo_app):
    url, _ = demo_app
    body = {"messages": TALK, **ENDLESS}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{url}/v1/chat/completions", json=body, timeout=httpx.Timeout(10, read=0.5))
    wait_until_idle(url, IDLE_DEADLINE_S)


@pytest.mark.parametrize("response_format", ["json", "text", "verbose_json"])
def test_transcriptions(demo_app, spoken_question, response_format):
    url, _ = demo_app
    with spoken_question.open("rb") as audio:
        transcript = client(url).audio.transcriptions.create(
            model="whisper-1", file=audio, response_format=response_format
        )
    text = transcript if response_format == "text" else transcript.text
    assert word_error_rate(QUESTION, text) <= MAX_WER
    if response_format == "verbose_json":
        assert transcript.language == "en" and 3 < transcript.duration < 8
        segments = transcript.segments
        assert [segment.id for segment in segments] == list(range(len(segments)))
        assert all(0 <= s.start < s.end <= transcript.duration + 0.5 for s in segments)
        assert " ".join(segment.text for segment in segments) == transcript.text


def test_subtitles_a_video_s_sound_and_languages_the_model_cannot(
    demo_app, spoken_question, tmp_path
):
    url, _ = demo_app
    video = write_video(tmp_path / "clip.mp4", 7, speech=spoken_question)
    api = client(url)
    with video.open("rb") as file:  # the sound of a video, as OpenAI's endpoint takes it
        srt = api.audio.transcriptions.create(model="whisper-1", file=file, response_format="srt")
    cues = srt.strip().split("\n\n")
    assert cues[0].startswith("1\n00:00:0") and " --> 00:00:0" in cues[0]
    heard = " ".join(cue.split("\n", 2)[2] for cue in cues)
    assert word_error_rate(QUESTION, heard) <= MAX_WER
    with spoken_question.open("rb") as file:
        vtt = api.audio.transcriptions.create(model="whisper-1", file=file, response_format="vtt")
    assert vtt.startswith("WEBVTT\n\n00:00:0") and "." in vtt.split(" --> ")[1][:12]
    with spoken_question.open("rb") as file:  # English named: as without it
        english = api.audio.transcriptions.create(model="whisper-1", file=file, language="en")
    assert word_error_rate(QUESTION, english.text) <= MAX_WER
    for call, options in (
        (api.audio.transcriptions.create, {"language": "fr"}),
        (api.audio.translations.create, {}),
    ):
        with spoken_question.open("rb") as file, pytest.raises(openai.BadRequestError) as refused:
            call(model="whisper-1", file=file, **options)
        message = refused.value.body["message"]
        assert message.startswith("The speech model 'tiny.en' knows English only"), message
        assert "--asr-model small" in message


def test_transcriptions_refuse_what_is_not_audio(demo_app, tmp_path):
    url, _ = demo_app
    picture = tmp_path / "speech.wav"  # an image, whatever its name says
    photo().save(picture, "PNG")
    with picture.open("rb") as file, pytest.raises(openai.BadRequestError) as refused:
        client(url).audio.transcriptions.create(model="whisper-1", file=file)
    assert (
        refused.value.body["message"] == "speech.wav is not an audio or video file Loupe can read."
    )


# -- apps with other flags ------------------------------------------------------------------------


WEB_APP = "https://notes-app.test"  # a web app's origin, served by the browser's routing


@pytest.fixture(scope="module")
def keyed_app(miniature: Path) -> Iterator[str]:
    """A --demo app with an API key, a queue of one and a web app's origin allowed; its URL."""
    flags = ("--api-key", KEY, "--queue-size", "1", "--allowed-origin", WEB_APP)
    process, url = start_app("--demo", *flags)
    try:
        health_when_loaded(process, url)
        yield url
    finally:
        stop_app(process)


def test_a_key_is_required_when_set(keyed_app):
    url = keyed_app
    with pytest.raises(openai.AuthenticationError) as refused:
        client(url, "wrong").models.list()
    assert refused.value.status_code == 401 and "--api-key" in refused.value.body["message"]
    empty = httpx.get(f"{url}/v1/models", headers={"Authorization": "Bearer"}, timeout=10)
    assert empty.status_code == 401
    bare = httpx.post(f"{url}/v1/chat/completions", json={"messages": TALK}, timeout=10)
    assert bare.status_code == 401 and bare.json()["error"]["type"] == "authentication_error"
    assert httpx.get(f"{url}/health", timeout=10).status_code == 200  # not guarded
    reply = client(url, KEY).chat.completions.create(model=SERVED, messages=TALK, **SHORT)
    check_usage(reply.usage)
    # The MCP server at /mcp takes the same key.
    unkeyed = httpx.post(f"{url}/mcp/", json={}, timeout=10)
    assert unkeyed.status_code == 401 and "--api-key" in unkeyed.json()["error"]["message"]
    listed, _ = mcp_calls(url, key=KEY)
    assert {tool.name for tool in listed} == MCP_TOOLS


def test_a_web_app_in_a_real_browser_calls_v1_only_from_an_allowed_origin(keyed_app, browser):
    """Chromium itself sends the preflight and enforces the answer: a page served from the
    allowed origin reads the reply; a page of another origin never gets to. Both are https
    pages whose person allowed Chrome's prompt to reach this machine (Local Network Access),
    as a public web app needs: an http page of a public site is refused by Chrome itself."""
    call = """async ([url, key]) => {
        try {
            const response = await fetch(url + "/v1/chat/completions", {
                method: "POST",
                headers: {"Authorization": "Bearer " + key, "Content-Type": "application/json"},
                body: JSON.stringify(
                    {model: "", messages: [{role: "user", content: "Hi"}], max_tokens: 2}),
            });
            return [response.status, (await response.json()).object];
        } catch (error) {
            return ["refused", String(error)];
        }
    }"""
    outcomes = {}
    for origin in (WEB_APP, "https://other-app.test"):
        context = browser.new_context(permissions=["local-network-access"])
        page = context.new_page()
        page.route(  # the web app's own page, served from its origin
            f"{origin}/**", lambda route: route.fulfill(body="Notes", content_type="text/html")
        )  # fmt: skip
        page.goto(f"{origin}/")
        outcomes[origin] = page.evaluate(call, [keyed_app, KEY])
        context.close()
    assert outcomes[WEB_APP] == [200, "chat.completion"]
    assert outcomes["https://other-app.test"] == ["refused", "TypeError: Failed to fetch"]


def test_a_full_queue_is_told_busy_with_retry_after(keyed_app):
    url = keyed_app
    api = client(url, KEY)

    def long_reply(_: int) -> str:
        try:
            chunks = list(
                api.chat.completions.create(model=SERVED, messages=TALK, stream=True, **SECONDS)
            )
        except openai.RateLimitError as exc:
            assert exc.response.headers["retry-after"] == "1"
            assert exc.body["type"] == "rate_limit_error"
            return "busy"
        assert chunks[-1].choices[0].finish_reason == "length"
        return "served"

    with ThreadPoolExecutor(4) as pool:
        running = pool.submit(long_reply, 0)
        while engine_state(url)["state"] != "busy":
            assert not running.done(), running.result()
            time.sleep(0.02)
        outcomes = list(pool.map(long_reply, range(3)))
        outcomes.append(running.result())
    # One runs, one waits in the queue of one (a place is held from the request's arrival);
    # the others are told at once.
    assert sorted(outcomes) == ["busy", "busy", "served", "served"], outcomes
    wait_until_idle(url, IDLE_DEADLINE_S)
    assert engine_state(url)["queue"] == 0
    check_usage(api.chat.completions.create(model=SERVED, messages=TALK, **SHORT).usage)


# On the network without --api-key /v1 is closed: test_launch checks it on the app it starts
# with --host 0.0.0.0.


# -- the guard on its own -------------------------------------------------------------------------


def guarded(key: str, closed: str | None) -> TestClient:
    async def answer(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    return TestClient(ApiKeyGuard(answer, key=key, closed_reason=closed))


def test_the_key_guard():
    keyed = guarded(KEY, None)
    assert keyed.get("/v1/models").status_code == 401
    assert keyed.get("/v1/models", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert keyed.get("/v1/models", headers={"Authorization": f"Basic {KEY}"}).status_code == 401
    assert keyed.get("/v1/models", headers={"Authorization": f"Bearer {KEY}"}).text == "ok"
    assert keyed.get("/health").text == "ok"  # the page and /health are the page's business
    closed = guarded("", "Loupe listens on the network (0.0.0.0) and no --api-key is set")
    refused = closed.get("/v1/chat/completions")
    assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
    assert "start Loupe with --api-key" in refused.json()["error"]["message"]
    assert guarded("", None).get("/v1/models").text == "ok"


def test_a_web_app_of_an_allowed_origin_may_call_v1_and_others_may_not():
    app = "https://notes.example"

    async def answer(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    cors = api_cors((origin_of(app + "/"),))
    stack = cors.cls(ApiKeyGuard(answer, key=KEY, closed_reason=None), *cors.args, **cors.kwargs)
    client = TestClient(HostGuard(stack, {"testserver"}, False, frozenset({app})))
    ask = {"Origin": app, "Access-Control-Request-Method": "POST"}
    preflight = client.options("/v1/chat/completions", headers=ask)  # no key: browsers send none
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == app
    assert "Authorization" in preflight.headers["access-control-allow-headers"]
    call = client.post("/v1/models", headers={"Origin": app, "Authorization": f"Bearer {KEY}"})
    assert call.text == "ok" and call.headers["access-control-allow-origin"] == app
    keyless = client.post("/v1/models", headers={"Origin": app})
    assert keyless.status_code == 401  # the key still applies
    assert keyless.headers["access-control-allow-origin"] == app  # and the app can read why
    # Another site: the preflight and the request alike are refused, in OpenAI's shape.
    other = {"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    for refused in (
        client.options("/v1/chat/completions", headers=other),
        client.post("/v1/models", headers={**other, "Authorization": f"Bearer {KEY}"}),
    ):
        assert refused.status_code == 403
        assert "access-control-allow-origin" not in refused.headers
        assert refused.json()["error"]["code"] == "origin_not_allowed"
        assert "--allowed-origin" in refused.json()["error"]["message"]
    # The page's own routes never take a call from another origin, allowed or not.
    assert client.post("/gradio_api/queue/join", headers={"Origin": app}).status_code == 403
    with pytest.raises(ValueError, match="scheme, host and port, no path"):
        origin_of("notes.example/app")


def test_v1_is_open_without_a_key_only_on_this_machine_without_a_login():
    assert api_closed_reason(AppConfig()) is None
    assert "network" in api_closed_reason(AppConfig(host="0.0.0.0"))
    assert "--auth" in api_closed_reason(AppConfig(auth=(("ana", "pw"),)))
    assert "--share" in api_closed_reason(AppConfig(share=True))
    assert api_closed_reason(AppConfig(host="0.0.0.0", auth=(("a", "b"),), api_key=KEY)) is None


# -- the wire and the writer, pure ----------------------------------------------------------------


def test_messages_from_body_takes_text_images_and_audio_and_refuses_the_rest():
    body = {
        "messages": [
            {"role": "developer", "content": "Be brief."},
            {"role": "user", "content": [image_part(), {"type": "text", "text": "Hi"}]},
            {"role": "assistant", "content": None},
        ]
    }
    system, user, assistant = messages_from_body(body)
    assert (system.role, system.text) == ("system", "Be brief.")
    assert user.text == "Hi" and [part.kind for part in user.media] == ["image"]
    assert user.media[0].data.startswith(b"\x89PNG") and assistant.text == ""
    for bad, param in [
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "user", "content": [{"type": "video_url"}]}]}, "[0].content[0]"),
        ({"messages": [{"role": "assistant", "content": [image_part()]}]}, "[0].content[0]"),
        ({"messages": [{"role": ["user"], "content": "x"}]}, "messages[0].role"),
        (
            {"messages": ask({"type": "input_audio", "input_audio": {"data": "!!"}})},
            "[0].content[0]",
        ),
    ]:
        with pytest.raises(RequestError) as refused:
            messages_from_body(bad)
        assert refused.value.param.endswith(param) and str(refused.value).endswith(".")
    assert stop_strings({"stop": "x"}) == ("x",) and stop_strings({}) == ()
    with pytest.raises(RequestError):
        stop_strings({"stop": 3})


def writer(stops: tuple[str, ...] = (), max_tokens: int = 8, usage: bool = False) -> ReplyWriter:
    request = ChatRequest((), GenerationOptions(max_new_tokens=max_tokens))
    return ReplyWriter(new_completion("m"), ChatCall(request, True, usage, stops))


def contents(chunks: list[dict]) -> str:
    return "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])


def test_a_stop_string_split_across_chunks_ends_the_reply_before_it():
    reply = writer(stops=("STOP", "never"))
    sent = reply.read(TextChunk("Hello ST")) + reply.read(TextChunk("OP and more"))
    assert contents(sent) == "Hello " and reply.stopped
    assert reply.read(TextChunk("ignored")) == []
    final = reply.read(Finished(Timing(0.1, 10.0, 8, 5), cancelled=True))
    assert final[-1]["choices"][0]["finish_reason"] == "stop"  # not "length", though 8 tokens
    assert reply.whole()["choices"][0]["message"]["content"] == "Hello "


def test_held_text_that_is_no_stop_string_is_sent_at_the_end():
    reply = writer(stops=("STOP",), usage=True)
    sent = reply.read(TextChunk("a ST", thinking=False)) + reply.read(TextChunk("why", True))
    assert contents(sent) == "a " and sent[-1]["choices"][0]["delta"] == {
        "reasoning_content": "why"
    }
    final = reply.read(Finished(Timing(0.1, 10.0, 8, 5)))
    assert contents(final) == "ST"
    assert final[-2]["choices"][0]["finish_reason"] == "length"
    assert final[-1]["choices"] == [] and final[-1]["usage"]["total_tokens"] == 13
    whole = reply.whole()
    assert whole["choices"][0]["message"]["reasoning_content"] == "why"


# -- HTTP on a scripted engine --------------------------------------------------------------------


class ScriptedEngine:
    """Answers every request with the same events; says it is loading until `ready`."""

    def __init__(self, events: list, ready: bool = True):
        self.events = events
        self.ready = ready
        self.cancelled = threading.Event()

    def status(self) -> EngineStatus:
        info = ModelInfo("scripted", True, "cpu", None) if self.ready else None
        return EngineStatus("ready" if self.ready else "loading", "12%", info, False, 0)

    def reserve(self) -> QueueSlot:
        return QueueSlot(lambda: None)

    def submit(self, request: ChatRequest, slot: QueueSlot | None = None) -> ReplyStream:
        stream = ReplyStream(1, self.cancelled.set)
        for event in self.events:
            stream.put(event)
        return stream


def scripted(events: list, ready: bool = True, limits: Limits | None = None) -> openai.OpenAI:
    api = OpenAiApi(ScriptedEngine(events, ready), None, limits or Limits())  # type: ignore[arg-type]
    app = Starlette(
        routes=api.routes(), middleware=[Middleware(ApiKeyGuard, key="", closed_reason=None)]
    )
    return openai.OpenAI(
        base_url="http://testserver/v1", api_key="x", max_retries=0, http_client=TestClient(app)
    )


DONE = Finished(Timing(0.1, 10.0, 3, 7))


def test_a_busy_engine_is_429_with_retry_after_and_a_loading_one_503():
    busy = scripted([EngineError("busy", "The model is busy.")])
    for stream in (False, True):
        with pytest.raises(openai.RateLimitError) as refused:
            busy.chat.completions.create(messages=TALK, model="scripted", stream=stream)
        assert refused.value.response.headers["retry-after"] == "1"
        assert refused.value.body["message"] == "The model is busy."
    with pytest.raises(openai.InternalServerError) as loading:
        scripted([], ready=False).models.list()
    assert loading.value.status_code == 503 and "loading" in loading.value.body["message"]
    assert loading.value.response.headers["retry-after"] == "1"


def test_an_error_mid_stream_reaches_the_client():
    failing = scripted([TextChunk("Half"), EngineError("worker_crashed", "The model crashed.")])
    chunks = []
    with pytest.raises(openai.APIError, match="The model crashed."):
        for chunk in failing.chat.completions.create(model=SERVED, messages=TALK, stream=True):
            chunks.append(chunk)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[1].choices[0].delta.content == "Half"
    whole = scripted([EngineError("bad_input", "The conversation is too long.")])
    with pytest.raises(openai.BadRequestError, match="too long"):
        whole.chat.completions.create(model=SERVED, messages=TALK, stream=True)


def test_text_read_before_the_stream_starts_is_sent_once():
    api = scripted([TextChunk("Hel"), TextChunk("lo"), DONE])
    chunks = list(api.chat.completions.create(model=SERVED, messages=TALK, stream=True))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(chunk.choices[0].delta.content or "" for chunk in chunks) == "Hello"


def test_dropped_messages_go_in_an_extension_field_not_the_text():
    trimmed = scripted([ContextTrimmed(2), TextChunk("Hi"), DONE])
    first = next(iter(trimmed.chat.completions.create(model=SERVED, messages=TALK, stream=True)))
    assert first.model_extra["x_loupe"] == {"dropped_messages": 2}
    reply = scripted([ContextTrimmed(2), TextChunk("Hi"), DONE]).chat.completions.create(
        model=SERVED, messages=TALK
    )
    assert reply.choices[0].message.content == "Hi"
    assert reply.model_extra["x_loupe"] == {"dropped_messages": 2}


def test_a_body_over_the_limits_is_413_and_media_checks_are_the_uploads():
    small = Limits(max_file_mb=1, max_files_per_message=2)
    api = scripted([DONE], limits=small)
    with pytest.raises(openai.APIStatusError) as too_large:
        api.chat.completions.create(
            model=SERVED, messages=[{"role": "user", "content": "x" * (3 << 20)}]
        )
    assert too_large.value.status_code == 413
    with pytest.raises(openai.BadRequestError, match="at most 2 files"):
        api.chat.completions.create(
            model=SERVED,
            messages=[{"role": "user", "content": [image_part(), image_part(), image_part()]}],
        )
    wav = io.BytesIO()
    soundfile.write(wav, tone(1.0), 16_000, format="WAV")
    url = "data:image/png;base64," + base64.b64encode(wav.getvalue()).decode()
    as_image = {"type": "image_url", "image_url": {"url": url}}
    with pytest.raises(openai.BadRequestError, match="holds audio, not an image"):
        api.chat.completions.create(model=SERVED, messages=ask(as_image))
    with pytest.raises(openai.BadRequestError, match="characters"):
        scripted([DONE], limits=Limits(max_message_chars=10)).chat.completions.create(
            model=SERVED, messages=[{"role": "user", "content": "x" * 11}]
        )
    assert json.loads(json.dumps(api.models.list().model_dump()))["data"][0]["id"] == "scripted"


def test_loupe_on_loupe(keyed_app, image_file: Path):
    """One Loupe with --engine-url at another's /v1: the key is checked at start, and a message
    with an image streams a reply through both."""
    from gradio_client import Client, handle_file

    served = httpx.get(f"{keyed_app}/health", timeout=10).json()["model"]
    wrong, wrong_url = start_app("--engine-url", f"{keyed_app}/v1", "--engine-api-key", "nope")
    try:
        health = health_when_loaded(wrong, wrong_url)
        assert health["status"] == "error" and health["error"] == (
            f"The model server at {keyed_app}/v1 refused Loupe's API key; check --engine-api-key."
        )
    finally:
        stop_app(wrong)
    front, url = start_app("--engine-url", f"{keyed_app}/v1", env={"LOUPE_ENGINE_API_KEY": KEY})
    try:
        health = health_when_loaded(front, url)
        assert health["status"] == "ok" and health["model"] == served  # the one it lists
        assert health["engine"]["kind"] == "remote"
        updates = list(
            Client(url, verbose=False).submit(
                {"text": "What is this?", "files": [handle_file(image_file)]},
                max_new_tokens=48,
                api_name="/chat",
            )
        )
        assert len(updates) > 1 and updates[-1].strip()
        wait_until_idle(keyed_app, IDLE_DEADLINE_S)
        joined, whole = streamed_and_whole(client(url), ask(image_part()), max_tokens=12)
        assert joined == whole
        # Text goes through as it is (an image is sent on re-encoded, so it reads differently).
        joined, whole = streamed_and_whole(client(url), TALK, max_tokens=24)
        direct = client(keyed_app, KEY).chat.completions.create(
            model=SERVED, messages=TALK, temperature=0.0, max_tokens=24
        )
        assert joined == whole and whole["content"] == direct.choices[0].message.content
    finally:
        stop_app(front)
