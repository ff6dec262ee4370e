"""The chat-completions mapping, both ways, and the remote engine's handling of what servers
answer, on scripted HTTP answers (httpx.MockTransport) in the shapes the servers send them."""

from __future__ import annotations

import base64
import io
import json
import time

import httpx
import numpy as np
import pytest
import soundfile
from PIL import Image

from bench.samples import photo, tone
from bench.serving import wait_until_ready
from model import (
    AudioClip,
    ChatRequest,
    ContextTrimmed,
    EngineError,
    Finished,
    GenerationOptions,
    Message,
    RemoteEngine,
    RemoteEngineConfig,
    TextChunk,
)
from model.openai_wire import (
    Completion,
    EventReader,
    WireError,
    decode_data_url,
    delta_of,
    error_message,
    options_from_body,
    request_body,
    sse,
    sse_data,
)
from tests.conftest import ROOT

URL = "http://gpu-box:8000/v1"
ASSETS = ROOT / "assets"


def test_a_request_goes_as_every_server_takes_it():
    clip = AudioClip(tone(31.0, rate=44_100, channels=2), 44_100)
    message = Message("user", "What is this?", images=(photo(),), audio=(clip,))
    options = GenerationOptions(temperature=0.3, top_p=0.9, top_k=20, max_new_tokens=99)
    body = request_body(ChatRequest((Message("system", "Be brief."), message), options), "g")
    assert body["messages"][0] == {"role": "system", "content": "Be brief."}
    image, audio, text = body["messages"][1]["content"]
    assert image["image_url"]["url"].startswith("data:image/jpeg;base64,")  # a photo
    assert audio["input_audio"]["format"] == "wav"
    samples, rate = soundfile.read(io.BytesIO(base64.b64decode(audio["input_audio"]["data"])))
    # 16 kHz mono, cut at the model's 30 s, a whole number of 40 ms audio tokens.
    assert rate == 16_000 and samples.ndim == 1 and len(samples) == 30 * 16_000
    assert len(samples) % 640 == 0
    assert text == {"type": "text", "text": "What is this?"}
    assert (body["temperature"], body["top_p"], body["max_tokens"], body["top_k"]) == (
        0.3,
        0.9,
        99,
        20,
    )
    assert body["chat_template_kwargs"] == {"enable_thinking": False}
    assert body["stream"] and body["stream_options"] == {"include_usage": True}
    refused = request_body(ChatRequest((message,), options), "g", {"top_k", "stream_options"})
    assert "top_k" not in refused and "stream_options" not in refused


def test_an_odd_length_clip_is_padded_to_whole_audio_tokens():
    clip = AudioClip(np.zeros(16_001, dtype=np.float32), 16_000)
    body = request_body(ChatRequest((Message("user", "", audio=(clip,)),)), "g")
    [audio] = body["messages"][0]["content"]
    samples, _ = soundfile.read(io.BytesIO(base64.b64decode(audio["input_audio"]["data"])))
    assert len(samples) == 16_640


@pytest.mark.parametrize(
    ("image", "mime"),
    [
        (lambda: Image.open(ASSETS / "example-error.png"), "image/png"),  # text: lossless
        (lambda: Image.open(ASSETS / "example-photo.jpg"), "image/jpeg"),
        (lambda: photo(2000, 1500), "image/jpeg"),
        (lambda: photo(64, 48), "image/jpeg"),
    ],
)
def test_images_of_text_go_as_png_and_photos_as_jpeg(image, mime):
    picture = image().convert("RGB")
    body = request_body(ChatRequest((Message("user", "", images=(picture,)),)), "g")
    url = body["messages"][0]["content"][0]["image_url"]["url"]
    assert url.startswith(f"data:{mime};base64,")
    sent = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert sent.size == picture.size
    if mime == "image/png":
        assert sent.convert("RGB").tobytes() == picture.tobytes()


@pytest.mark.parametrize(
    "deltas",
    [
        [{"reasoning": "Let me see."}, {"content": "A cat."}],  # vLLM, Ollama
        [{"reasoning_content": "Let me see."}, {"content": "A cat."}],  # llama.cpp, LM Studio
        [
            {"content": "<|chan"},
            {"content": "nel>thought\nLet me "},
            {"content": "see.<channel"},
            {"content": "|>A cat."},
        ],  # the thought channel left in the text
    ],
)
def test_reasoning_is_read_from_any_field(deltas):
    reader = EventReader()
    events = []
    for delta in deltas:
        events += reader.read({"choices": [{"delta": delta}]})
    events += reader.end()
    thinking = "".join(event.text for event in events if event.thinking)
    answer = "".join(event.text for event in events if not event.thinking)
    assert (thinking, answer) == ("Let me see.", "A cat.")


def test_what_loupe_serves_reads_back_as_the_same_events():
    completion = Completion("chatcmpl-1", 0, "gemma")
    sent = [TextChunk("Hmm.", thinking=True), TextChunk("A "), TextChunk("cat.")]
    stream = [sse(completion.chunk({"role": "assistant"}))]
    stream += [sse(completion.chunk(delta_of(event))) for event in sent]
    stream += [
        sse(completion.chunk({}, "stop")),
        sse(
            completion.chunk(usage={"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8})
        ),
        sse("[DONE]"),
    ]
    reader = EventReader()
    events = []
    for chunk in sse_data("".join(stream).splitlines()):
        events += reader.read(chunk)
    assert [(e.text, e.thinking) for e in events] == [(e.text, e.thinking) for e in sent]
    assert (reader.finish_reason, reader.completion_tokens, reader.prompt_tokens) == ("stop", 3, 5)


@pytest.mark.parametrize(
    "body, message",
    [
        (
            '{"error": {"message": "The model `x` does not exist.", "code": 404}}',
            "The model `x` does not exist.",
        ),
        ('{"error": "Unauthorized"}', "Unauthorized"),  # vLLM's 401
        ('{"detail": "Server is pinned to \'m\'."}', "Server is pinned to 'm'."),
        ('{"detail": [{"msg": "field required"}]}', "field required"),
        ("Internal Server Error", "Internal Server Error"),
    ],
)
def test_error_bodies_in_every_shape_give_their_message(body, message):
    assert error_message(body) == message


def test_an_error_mid_stream_or_a_broken_chunk_is_a_wire_error():
    with pytest.raises(WireError, match="failed mid-reply: out of blocks"):
        list(sse_data(['data: {"error": {"message": "out of blocks"}}']))
    with pytest.raises(WireError, match="failed mid-reply: boom"):
        list(sse_data(['data: {"error": "boom"}']))
    with pytest.raises(WireError, match="cannot read"):
        list(sse_data(["data: {not json"]))
    assert list(sse_data([": keep-alive", "", 'data: {"a": 1}', "data: [DONE]", "data: {}"])) == [
        {"a": 1}
    ]


def test_a_body_maps_to_options_with_the_models_defaults():
    assert options_from_body({}) == GenerationOptions()
    options = options_from_body(
        {"max_completion_tokens": 7, "max_tokens": 9, "reasoning_effort": "high", "top_k": 5}
    )
    assert (options.max_new_tokens, options.thinking, options.top_k) == (7, True, 5)
    thinking_off = {"chat_template_kwargs": {"enable_thinking": False}, "reasoning_effort": "high"}
    assert not options_from_body(thinking_off).thinking
    with pytest.raises(ValueError, match="temperature must be a number between 0 and 2"):
        options_from_body({"temperature": 9})
    with pytest.raises(ValueError, match="max_soft_tokens must be one of 70, 140"):
        options_from_body({"mm_processor_kwargs": {"max_soft_tokens": 333}})


def test_only_data_urls_are_taken():
    png = io.BytesIO()
    Image.new("RGB", (2, 2)).save(png, "PNG")
    url = "data:image/png;base64," + base64.b64encode(png.getvalue()).decode()
    assert decode_data_url(url) == ("image/png", png.getvalue())
    for refused in ("https://example.com/cat.png", "/etc/passwd", "file:///etc/passwd"):
        with pytest.raises(ValueError, match="does not fetch web addresses or open file paths"):
            decode_data_url(refused)
    with pytest.raises(ValueError, match="damaged"):
        decode_data_url("data:image/png;base64,@@@")


# -- the remote engine on scripted answers ------------------------------------------------------


class Script:
    """A scripted server: /models lists `models`; each chat request is recorded and answered by
    the next of `answers` (status, body); a list body streams as server-sent events."""

    def __init__(self, answers, models=("gemma",), models_status=200):
        self.answers, self.models, self.models_status = list(answers), models, models_status
        self.requests: list[dict] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/models"):
            data = [{"id": name, "object": "model"} for name in self.models]
            body = {"object": "list", "data": data}
            if self.models_status == 401:
                body = {"error": "Unauthorized"}
            return httpx.Response(self.models_status, json=body)
        self.requests.append(json.loads(request.content))
        status, body = self.answers.pop(0)
        if isinstance(body, list):
            return httpx.Response(status, text="".join(sse(item) for item in body))
        return httpx.Response(status, json=body)


def streamed(*texts: str) -> list:
    completion = Completion("c", 0, "gemma")
    return [completion.chunk({"content": text}) for text in texts] + [
        completion.chunk(
            {},
            "stop",
            {"prompt_tokens": 4, "completion_tokens": len(texts), "total_tokens": 4 + len(texts)},
        ),
        "[DONE]",
    ]


def scripted(script: Script, model: str = "", wait: bool = True) -> RemoteEngine:
    engine = RemoteEngine(
        RemoteEngineConfig(URL, model=model), transport=httpx.MockTransport(script)
    )
    engine.start()
    if wait:
        wait_until_ready(engine, 10)
    return engine


def conversation(turns: int) -> ChatRequest:
    messages = [Message("system", "Be kind.")]
    for n in range(turns):
        messages += [Message("user", f"Question {n}"), Message("assistant", f"Answer {n}")]
    return ChatRequest((*messages, Message("user", "Last question")))


def test_a_prompt_too_long_for_the_server_loses_its_oldest_turns():
    too_long = {
        "error": {
            "message": "This model's maximum context length is 8 tokens. However, "
            "your prompt contains 20",
            "code": 400,
        }
    }
    script = Script([(400, too_long), (400, too_long), (200, streamed("Fine."))])
    engine = scripted(script)
    events = list(engine.submit(conversation(3)))
    assert events[0] == ContextTrimmed(4)  # two whole turns
    assert isinstance(events[-1], Finished) and events[-1].timing.tokens == 1
    kept = script.requests[-1]["messages"]
    assert [m["content"] for m in kept] == ["Be kind.", "Question 2", "Answer 2", "Last question"]


def test_a_message_too_long_on_its_own_gets_one_sentence():
    too_long = (
        400,
        {
            "error": {
                "message": "The decoder prompt (length 99) is longer than the "
                "maximum model length of 8",
                "code": 400,
            }
        },
    )
    engine = scripted(Script([too_long]))
    [error] = list(engine.submit(ChatRequest((Message("user", "Long."),))))
    assert error.kind == "bad_input" and "too long for the model's context window" in error.message


def test_a_refused_field_is_learnt_once():
    refusal = {
        "error": {
            "message": "Per-request mm_processor_kwargs are disabled by default. "
            "Start the server with --trust-request-mm-kwargs",
            "code": 400,
        }
    }
    script = Script([(400, refusal), (200, streamed("a")), (200, streamed("b"))])
    engine = scripted(script)
    for _ in range(2):
        assert isinstance(list(engine.submit(ChatRequest((Message("user", "Hi"),))))[-1], Finished)
    assert ["mm_processor_kwargs" in body for body in script.requests] == [True, False, False]
    assert engine.status().notice == (
        "The server does not take the image detail per request; its own settings apply."
    )


def test_a_wrong_key_or_several_models_is_said_at_start():
    for script, sentence in [
        (
            Script([], models_status=401),
            f"The model server at {URL} refused Loupe's API key; check --engine-api-key.",
        ),
        (
            Script([], models=("a", "b")),
            f"The model server at {URL} lists several models (a, b); name the one to use with "
            "--engine-model.",
        ),
        (Script([], models=("a", "b")), None),  # with --engine-model b
    ]:
        engine = scripted(script, model="b" if sentence is None else "", wait=False)
        deadline = time.monotonic() + 10
        while engine.status().load_state == "loading" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert engine.status().error == sentence
        engine.close()


def test_server_errors_each_get_one_sentence():
    answers = [
        (429, {"error": {"message": "Too many requests"}}),
        (500, {"error": {"message": "CUDA error: an illegal memory access"}}),
        (200, [{"choices": [{"delta": {"content": "Hal"}}]}, {"error": {"message": "boom"}}]),
    ]
    engine = scripted(Script(answers))
    errors = [list(engine.submit(ChatRequest((Message("user", "Hi"),))))[-1] for _ in answers]
    assert errors == [
        EngineError("busy", "The model server is busy; try again in a moment."),
        EngineError(
            "generation_failed",
            "The model server failed to answer: CUDA error: an illegal memory access",
        ),
        EngineError("generation_failed", "The model server failed mid-reply: boom"),
    ]
