"""The remote engine against a real OpenAI-compatible server: `transformers serve` on the
miniature checkpoint, started on a loopback port."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bench.samples import photo, tone
from bench.serving import wait_until_ready
from model import (
    AudioClip,
    ChatRequest,
    EngineError,
    Finished,
    GenerationOptions,
    Message,
    RemoteEngine,
    RemoteEngineConfig,
    TextChunk,
)
from model.remote_engine import LOADING_POLL_S
from tests.conftest import ModelServer, free_port

SHORT = GenerationOptions(max_new_tokens=8)
# Replies of the served miniature never end early: this one runs about a minute on this CPU.
LONG = GenerationOptions(max_new_tokens=4000)
RECONNECT_S = 45  # the back-off tops out at 30 s between tries


def remote(server: ModelServer, model: str | None = None, **options) -> RemoteEngine:
    config = RemoteEngineConfig(server.url, model=server.model if model is None else model)
    engine = RemoteEngine(config, queue_size=4, **options)
    engine.start()
    return engine


@pytest.fixture
def engine(model_server: ModelServer) -> Iterator[RemoteEngine]:
    engine = remote(model_server)
    wait_until_ready(engine, 30)
    yield engine
    engine.close()


def ask(text: str, options: GenerationOptions = SHORT, **media) -> ChatRequest:
    return ChatRequest((Message("user", text, **media),), options)


def test_a_message_with_an_image_and_audio_streams_a_reply(engine: RemoteEngine):
    plain = list(engine.submit(ask("Hello there.")))
    sound = AudioClip(tone(2.5, rate=44_100, channels=2), 44_100)
    events = list(engine.submit(ask("What is this?", images=(photo(),), audio=(sound,))))
    chunks = [event for event in events if isinstance(event, TextChunk)]
    assert chunks and all(not chunk.thinking for chunk in chunks)
    finished = events[-1]
    assert isinstance(finished, Finished) and not finished.cancelled
    assert finished.timing.tokens == SHORT.max_new_tokens  # counted by the server
    assert finished.timing.time_to_first_token_s > 0 and finished.timing.tokens_per_s > 0
    # The image's and the clip's soft tokens reached the model's prompt.
    assert finished.timing.prompt_tokens > plain[-1].timing.prompt_tokens + 200
    status = engine.status()
    assert status.info.engine == "remote" and status.info.url == engine._where
    # transformers serve refuses top_k and per-request image budgets: learnt, and said once.
    assert "top-k" in status.notice and "image detail" in status.notice


def test_stop_ends_the_servers_generation(engine: RemoteEngine):
    stream = engine.submit(ask("Talk at length.", LONG))
    events = iter(stream)
    assert isinstance(next(events), TextChunk)
    stopped = time.monotonic()
    stream.cancel()
    *_, last = events
    assert isinstance(last, Finished) and last.cancelled
    assert time.monotonic() - stopped < 5
    # The server generates one reply at a time: had it gone on with the stopped one (about a
    # minute), this one would wait for it.
    asked = time.monotonic()
    *_, done = engine.submit(ask("And now briefly."))
    assert isinstance(done, Finished) and time.monotonic() - asked < 20


def test_a_model_name_the_server_does_not_serve_gets_one_sentence(model_server: ModelServer):
    engine = remote(model_server, model="gemma-4-12b")
    try:
        wait_until_ready(engine, 30)  # it lists no models, so the name cannot be checked early
        [error] = list(engine.submit(ask("Hello.")))
        assert error == EngineError(
            "unavailable", 'The model server does not serve "gemma-4-12b"; check --engine-model.'
        )
    finally:
        engine.close()


def test_a_server_that_lists_no_models_needs_a_name(model_server: ModelServer):
    engine = remote(model_server, model="")
    try:
        deadline = time.monotonic() + 30
        while engine.status().load_state == "loading" and time.monotonic() < deadline:
            time.sleep(0.1)
        status = engine.status()
        assert status.load_state == "error"
        assert status.error == (
            f"The model server at {model_server.url} lists no models; name the one to use with "
            "--engine-model."
        )
    finally:
        engine.close()


def test_a_server_down_at_start_is_found_once_it_starts(model_server: ModelServer):
    late = ModelServer(model_server.folder, port=free_port())
    engine = remote(late)
    try:
        deadline = time.monotonic() + 10
        while engine.status().load_state == "loading" and time.monotonic() < deadline:
            time.sleep(0.1)
        status = engine.status()
        down = f"The model server at {late.url} is not answering; Loupe keeps trying."
        assert status.load_state == "error" and status.error == down
        assert list(engine.submit(ask("Hello?"))) == [EngineError("unreachable", down)]
        late.start()
        wait_for_ready(engine)
        *_, done = engine.submit(ask("Hello again."))
        assert isinstance(done, Finished)
    finally:
        engine.close()
        late.kill()


def test_a_server_killed_mid_reply_gives_one_sentence_and_comes_back(model_server: ModelServer):
    engine = remote(model_server)
    try:
        wait_until_ready(engine, 30)
        events = iter(engine.submit(ask("Talk at length.", LONG)))
        assert isinstance(next(events), TextChunk)
        model_server.kill()
        *_, last = events
        assert last == EngineError(
            "unreachable", "The model server stopped answering in the middle of the reply."
        )
        assert engine.status().load_state == "error"
        model_server.start()
        wait_for_ready(engine)
        *_, done = engine.submit(ask("Are you back?"))
        assert isinstance(done, Finished) and not done.cancelled
    finally:
        engine.close()
        if model_server.process is None:
            model_server.start()


def wait_for_ready(engine: RemoteEngine) -> None:
    deadline = time.monotonic() + RECONNECT_S
    while engine.status().load_state != "ready":
        assert time.monotonic() < deadline, engine.status()
        time.sleep(0.2)


def test_the_engine_flags_build_a_remote_config_that_never_shows_the_key(
    monkeypatch: pytest.MonkeyPatch,
):
    from launch import build_config, parse_args

    monkeypatch.setenv("LOUPE_ENGINE_API_KEY", "sk-secret")
    config = build_config(
        parse_args(["--engine-url", "http://user:pw@gpu-box:8000/v1/", "--engine-concurrency", "3"])
    )
    remote = config.remote
    assert (remote.url, remote.api_key, remote.concurrency) == (
        "http://user:pw@gpu-box:8000/v1/",
        "sk-secret",
        3,
    )
    assert remote.public_url == "http://gpu-box:8000/v1"
    assert "sk-secret" not in repr(config) and "pw" not in remote.public_url
    assert build_config(parse_args([])).remote is None  # the in-process engine by default
    with pytest.raises(SystemExit, match=r"^--engine-url takes the server's base URL"):
        build_config(parse_args(["--engine-url", "gpu-box:8000"]))
    with pytest.raises(SystemExit, match=r"^--engine-concurrency takes 1 or more"):
        build_config(parse_args(["--engine-url", "http://gpu-box/v1", "--engine-concurrency", "0"]))


@pytest.fixture
def loading_server() -> Iterator[tuple[str, threading.Event, list[float]]]:
    """A model server that answers /v1/models as llama.cpp's does while it loads its weights
    (503), until the event is set; then it lists one model. Its URL, the event, and when it
    was asked."""
    loaded = threading.Event()
    asked: list[float] = []

    class Models(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            asked.append(time.monotonic())
            if loaded.is_set():
                status, body = 200, {"object": "list", "data": [{"id": "gemma", "object": "model"}]}
            else:
                error = {"code": 503, "message": "Loading model", "type": "unavailable_error"}
                status, body = 503, {"error": error}
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:  # quiet test output
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Models)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/v1", loaded, asked
    finally:
        server.shutdown()
        server.server_close()


def test_a_server_still_loading_is_said_to_load_and_is_used_once_loaded(
    loading_server: tuple[str, threading.Event, list[float]],
):
    url, loaded, asked = loading_server
    engine = RemoteEngine(RemoteEngineConfig(url, model=""), queue_size=4)
    engine.start()
    try:
        deadline = time.monotonic() + 10
        while engine.status().load_state == "loading" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert engine.status().error == (
            f"The model server at {url} is still loading its model; Loupe keeps trying."
        )
        # Asked every second, not on the back-off (1, 2, 4, 8 s ...): it is there, loading.
        while len(asked) < 6:
            assert time.monotonic() < deadline, asked
            time.sleep(0.05)
        loaded.set()
        wait_for_ready(engine)
        assert engine.status().info.name == "gemma"
        assert asked[-1] - asked[-2] < 2 * LOADING_POLL_S
    finally:
        engine.close()
