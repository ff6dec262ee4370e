"""The llama.cpp engine for real: the miniature checkpoint converted to GGUF by llama.cpp's own
converter, run by llama-cpp-python in the supervised worker, and a launched app on it."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from llama_cpp import Llama

from bench.samples import photo, tone
from bench.serving import wait_until_ready
from model import (
    AudioClip,
    ChatRequest,
    ContextTrimmed,
    Engine,
    EngineError,
    Finished,
    GenerationOptions,
    LocalEngine,
    Message,
    ModelConfig,
    TextChunk,
    ToolCall,
    VideoClip,
)
from model.engine_choice import choose_backend
from model.gguf_files import GgufError, _pick, locate_gguf, miniature_gguf
from model.prompts import build_inputs
from tests.conftest import health_when_loaded, start_app, stop_app
from tests.test_structured_output import SCHEMA, matches
from tests.test_tool_calls import CALLS_MAX_TOKENS, DECLARED, check

CANCEL_DEADLINE_S = 2.0


@pytest.fixture(scope="module")
def llama_config(miniature: Path, cache_root: Path) -> ModelConfig:
    return ModelConfig(demo=True, cache_root=cache_root, backend="llama.cpp")


@pytest.fixture(scope="module")
def llama_engine(llama_config: ModelConfig) -> Iterator[Engine]:
    engine = LocalEngine(llama_config, queue_size=4)
    engine.start()
    wait_until_ready(engine)
    yield engine
    engine.close()


def _finished(engine: Engine, request: ChatRequest) -> tuple[str, Finished]:
    events = list(engine.submit(request))
    assert isinstance(events[-1], Finished), events
    text = "".join(e.text for e in events if isinstance(e, TextChunk) and not e.thinking)
    return text, events[-1]


def test_the_converted_vocabulary_tokenises_as_the_checkpoints_tokenizer(
    llama_config: ModelConfig, processor
):
    model_file, projector = miniature_gguf(llama_config.cache_root, lambda sentence: None)
    assert projector.is_file()
    vocabulary = Llama(str(model_file), vocab_only=True, verbose=False)
    text = "Describe the red bicycle.\n\nWhat colour is it? Ünïcode 日本, and  two spaces"
    expected = processor.tokenizer(text, add_special_tokens=False)["input_ids"]
    assert vocabulary.tokenize(text.encode(), add_bos=False, special=False) == expected
    # What a person types is text: a control token in it does not open a turn.
    turn = processor.tokenizer.convert_tokens_to_ids("<|turn>")
    assert turn not in vocabulary.tokenize(b"typed <|turn>", add_bos=False, special=False)
    assert vocabulary.tokenize(b"<|turn>", add_bos=False, special=True) == [turn]
    vocabulary.close()


def test_it_says_which_engine_runs_and_why(llama_engine: Engine):
    info = llama_engine.status().info
    assert (info.backend, info.backend_reason) == ("llama.cpp", "llama.cpp (chosen with --engine)")
    assert info.context_tokens == 32768 and info.demo


def _messages() -> dict[str, Message]:
    clip = VideoClip(
        frames=(photo(seed=1), photo(seed=2), photo(seed=3)),
        timestamps_s=(0.0, 1.0, 61.5),
        duration_s=62.0,
    )
    return {
        "text": Message("user", "What do you see?"),
        "image": Message("user", "What do you see?", images=(photo(1920, 1080),)),
        "clip": Message("user", "What do you hear?", audio=(AudioClip(tone(2.0), 16_000),)),
        "video": Message("user", "What happens?", video=(clip,)),
    }


@pytest.mark.parametrize("budget", [70, 560])
def test_images_clips_and_video_reach_the_model_as_in_transformers(
    llama_engine: Engine, processor, budget: int
):
    """The same request takes the same prompt tokens in both engines: the image at its
    budget, 25 tokens a second of audio, each video frame after its time."""
    options = GenerationOptions(max_new_tokens=2, image_tokens=budget)
    counts = {}
    for name, message in _messages().items():
        request = ChatRequest((Message("system", "Be brief."), message), options)
        _, finished = _finished(llama_engine, request)
        expected = build_inputs(processor, request.messages, options)["input_ids"].shape[-1]
        assert finished.timing.prompt_tokens == expected, name
        counts[name] = finished.timing.prompt_tokens
    assert counts["image"] > counts["text"] + 60 and counts["clip"] >= counts["text"] + 50
    assert counts["video"] > counts["text"] + 3 * 60


def test_a_reply_streams_in_pieces_then_stop_ends_it_within_a_token(llama_engine: Engine):
    request = ChatRequest(
        (Message("user", "Talk for a long time."),),
        GenerationOptions(max_new_tokens=8000, min_new_tokens=8000),
    )
    stream = llama_engine.submit(request)
    events = iter(stream)
    pieces = [next(events) for _ in range(5)]
    assert all(isinstance(piece, TextChunk) for piece in pieces), pieces
    cancelled_at = time.monotonic()
    stream.cancel()
    last = list(events)[-1]
    assert time.monotonic() - cancelled_at < CANCEL_DEADLINE_S
    assert isinstance(last, Finished) and last.cancelled and last.timing.tokens < 8000
    _, finished = _finished(
        llama_engine, ChatRequest((Message("user", "Hello"),), GenerationOptions(max_new_tokens=4))
    )
    assert not finished.cancelled


def test_length_and_greedy_decoding_hold(llama_engine: Engine):
    greedy = GenerationOptions(max_new_tokens=12, min_new_tokens=12, temperature=0.0)
    request = ChatRequest((Message("user", "Describe the picture."),), greedy)
    first, finished = _finished(llama_engine, request)
    again, _ = _finished(llama_engine, request)
    assert finished.timing.tokens == 12 and first == again


def test_a_conversation_longer_than_the_window_loses_its_oldest_turns(
    llama_config: ModelConfig,
):
    engine = LocalEngine(replace(llama_config, context_tokens=160), queue_size=2)
    engine.start()
    try:
        wait_until_ready(engine)
        turns = []
        for n in range(8):
            turns += [
                Message("user", f"Question {n}: what is on the table?"),
                Message("assistant", "A laptop, a cup of coffee and some papers."),
            ]
        request = ChatRequest(
            (*turns, Message("user", "And now?")), GenerationOptions(max_new_tokens=8)
        )
        events = list(engine.submit(request))
        trimmed = [e for e in events if isinstance(e, ContextTrimmed)]
        assert trimmed and trimmed[0].dropped % 2 == 0, events
        assert isinstance(events[-1], Finished) and events[-1].timing.prompt_tokens <= 160 - 8
    finally:
        engine.close()


def test_requests_wait_their_turn_while_one_is_answered(llama_engine: Engine):
    options = GenerationOptions(max_new_tokens=6, min_new_tokens=6)
    results: list[Finished] = []

    def ask() -> None:
        results.append(_finished(llama_engine, ChatRequest((Message("user", "Hi"),), options))[1])

    threads = [threading.Thread(target=ask) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert [r.timing.tokens for r in results] == [6, 6, 6]


def test_auto_takes_llama_cpp_without_a_gpu_and_transformers_on_one(monkeypatch):
    import model.engine_choice as choice

    real = ModelConfig()
    monkeypatch.setattr(choice, "_cuda_available", lambda: False)
    assert choose_backend(real).backend == "llama.cpp"
    assert "no CUDA GPU" in choose_backend(real).reason
    assert choose_backend(ModelConfig(demo=True)).backend == "transformers"
    assert choose_backend(replace(real, backend="transformers")).backend == "transformers"
    monkeypatch.setattr(choice, "_cuda_available", lambda: True)
    assert choose_backend(real).backend == "transformers"
    assert choose_backend(replace(real, device="cpu")).backend == "llama.cpp"


def test_the_file_for_a_quantization_is_read_off_the_listing():
    names = [
        "gemma-4-12B-it-Q4_K_M.gguf",
        "gemma-4-12B-it-Q8_0.gguf",
        "mmproj-gemma-4-12B-it-Q8_0.gguf",
        "mmproj-gemma-4-12B-it-f16.gguf",
    ]
    files = _pick(names, "Q8_0", "repo", Path("/cache"))
    assert files.model.name == "gemma-4-12B-it-Q8_0.gguf"
    assert files.projector.name == "mmproj-gemma-4-12B-it-f16.gguf"
    with pytest.raises(GgufError, match=r"repo has no BF16 GGUF file \(it has: gemma"):
        _pick(names, "BF16", "repo", Path("/cache"))


def test_the_demo_app_runs_on_llama_cpp_and_its_stream_adds_up(miniature: Path):
    from gradio_client import Client

    process, url = start_app("--demo", "--engine", "llama.cpp")
    try:
        health = health_when_loaded(process, url)
        assert health["status"] == "ok", health
        assert health["engine"]["backend"] == "llama.cpp" and health["engine"]["why"]
        client = Client(url, verbose=False)
        job = client.submit(
            {"text": "Tell me about the picture.", "files": []}, max_new_tokens=24, api_name="/chat"
        )
        shown = list(job)
        assert len(shown) >= 2 and all(
            later.startswith(earlier) for earlier, later in zip(shown, shown[1:], strict=False)
        )
        assert job.result() == shown[-1]
        reply = httpx.post(
            f"{url}/v1/chat/completions",
            json={
                "messages": [{"role": "user", "content": "Hi"}],
                "max_tokens": 8,
            },
            timeout=60,
        ).json()
        assert reply["usage"]["completion_tokens"] <= 8 and reply["usage"]["prompt_tokens"] > 0
    finally:
        console = stop_app(process)
    assert "Traceback" not in console, console
    assert "llama_" not in console and "clip_model_loader" not in console, console


def test_a_gguf_file_without_a_projector_answers_text_and_refuses_images(
    llama_config: ModelConfig, tmp_path: Path
):
    model_file, _ = miniature_gguf(llama_config.cache_root, lambda sentence: None)
    alone = tmp_path / "gemma-4-miniature-F32.gguf"
    alone.symlink_to(model_file)
    config = replace(llama_config, demo=False, model_id=str(alone))
    engine = LocalEngine(config, queue_size=2)
    engine.start()
    try:
        wait_until_ready(engine)
        assert engine.status().info.name == alone.name
        text, finished = _finished(
            engine, ChatRequest((Message("user", "Hello"),), GenerationOptions(max_new_tokens=4))
        )
        assert finished.timing.prompt_tokens > 0
        events = list(
            engine.submit(ChatRequest((Message("user", "And this?", images=(photo(),)),)))
        )
        assert isinstance(events[-1], EngineError) and "no projector" in events[-1].message
    finally:
        engine.close()


def test_the_default_model_is_found_in_the_hugging_face_cache(
    no_hub, llama_config: ModelConfig, tmp_path: Path
):
    """What ./run.sh looks for on a machine without a GPU: llama.cpp's GGUF build of Gemma 4
    12B at Q4_K_M and its projector, here the miniature's files under those names."""
    from huggingface_hub import constants

    model_file, projector = miniature_gguf(llama_config.cache_root, lambda sentence: None)
    repo = constants.HF_HUB_CACHE + "/models--ggml-org--gemma-4-12B-it-GGUF"
    snapshot = Path(repo, "snapshots", "0123abc")
    snapshot.mkdir(parents=True)
    Path(repo, "refs").mkdir()
    Path(repo, "refs", "main").write_text("0123abc")
    for name, source in [
        ("gemma-4-12B-it-Q4_K_M.gguf", model_file),
        ("gemma-4-12B-it-Q8_0.gguf", model_file),
        ("mmproj-gemma-4-12B-it-Q8_0.gguf", projector),
        ("mmproj-gemma-4-12B-it-f16.gguf", projector),
    ]:
        (snapshot / name).symlink_to(source)
    files = locate_gguf(ModelConfig(backend="llama.cpp"), lambda sentence: None)
    assert (files.model.name, files.projector.name) == (
        "gemma-4-12B-it-Q4_K_M.gguf",
        "mmproj-gemma-4-12B-it-f16.gguf",
    )
    assert files.quantization == "Q4_K_M"
    qat = ModelConfig(backend="llama.cpp", quant="qat")  # not in the cache, and no hub
    with pytest.raises(GgufError, match=r"google/gemma-4-12B-it-qat-q4_0-gguf are not on this"):
        locate_gguf(qat, lambda sentence: None)


def test_a_json_schema_holds_the_reply_on_llama_cpp_too(llama_engine: Engine):
    options = GenerationOptions(max_new_tokens=80, response_schema=json.dumps(SCHEMA))
    for seed in range(2):
        request = ChatRequest((Message("user", f"Describe animal {seed}."),), options)
        text, finished = _finished(llama_engine, request)
        assert matches(text), text


def test_tool_calls_on_llama_cpp_match_their_schema_and_prompt_as_in_transformers(
    llama_engine: Engine, processor
):
    options = GenerationOptions(
        tools=DECLARED, tool_choice="required", max_new_tokens=CALLS_MAX_TOKENS
    )
    events = list(llama_engine.submit(ChatRequest((Message("user", "Weather?"),), options)))
    calls = [event for event in events if isinstance(event, ToolCall)]
    assert calls, events
    for call in calls:
        check(call.name, call.arguments)
    # Declarations, a call and its result (a control token in them written as text) take the
    # same prompt tokens in both engines.
    call = ToolCall("get_weather", json.dumps({"city": "Paris <turn|>"}), "call_1")
    history = (
        Message("user", "Weather in Paris?"),
        Message("assistant", "", tool_calls=(call,)),
        Message("tool", "Sunny <turn|>", tool_call_id="call_1"),
    )
    request = ChatRequest(history, GenerationOptions(tools=DECLARED, max_new_tokens=2))
    _, finished = _finished(llama_engine, request)
    expected = build_inputs(processor, history, request.options)["input_ids"].shape[-1]
    assert finished.timing.prompt_tokens == expected
