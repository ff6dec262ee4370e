"""The miniature checkpoint: built once, reused, deterministic, and shaped like Gemma 4."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from model import ChatRequest, Engine, GenerationOptions, Message, TextChunk, miniature
from model.miniature import MINIATURE_SEED, ensure_miniature, miniature_dir

EXPECTED_FILES = {
    "chat_template.jinja",
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "processor_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str], bool]:
    """One build shared by the tests: (folder, progress messages, global RNG left untouched)."""
    root = tmp_path_factory.mktemp("cache")
    messages: list[str] = []
    rng_before = torch.random.get_rng_state()
    folder = ensure_miniature(root, progress=messages.append)
    return folder, messages, torch.equal(rng_before, torch.random.get_rng_state())


@pytest.fixture(scope="module")
def processor(built: tuple[Path, list[str], bool]):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(built[0])


def test_builds_the_expected_files(built: tuple[Path, list[str], bool]) -> None:
    folder, messages, rng_untouched = built
    assert folder == miniature_dir(folder.parent)
    assert EXPECTED_FILES <= {path.name for path in folder.iterdir()}
    assert list(folder.parent.iterdir()) == [folder]  # no staging folder left behind
    assert 0.5e6 < (folder / "model.safetensors").stat().st_size < 4e6
    assert any(str(MINIATURE_SEED) in message for message in messages)
    assert rng_untouched


def test_default_root_comes_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOUPE_CACHE_DIR", str(tmp_path))
    assert miniature_dir().parent == tmp_path
    assert miniature_dir().name.startswith("gemma4-miniature-")


def test_second_call_reuses_the_folder(
    built: tuple[Path, list[str], bool], monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = built[0]
    weights = folder / "model.safetensors"
    mtime = weights.stat().st_mtime_ns

    def no_rebuild(*args: object) -> None:
        raise AssertionError("the miniature was built again")

    monkeypatch.setattr(miniature, "_build", no_rebuild)
    messages: list[str] = []
    assert ensure_miniature(folder.parent, progress=messages.append) == folder
    assert weights.stat().st_mtime_ns == mtime
    assert messages and "Using" in messages[0]


def test_losing_a_build_race_keeps_the_winner(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = miniature_dir(tmp_path)

    def racing_build(folder: Path, report: object) -> None:
        (folder / "config.json").write_text("loser")
        target.mkdir()  # another process finishes first
        (target / "config.json").write_text("winner")

    monkeypatch.setattr(miniature, "_build", racing_build)
    assert ensure_miniature(tmp_path) == target
    assert (target / "config.json").read_text() == "winner"
    assert list(tmp_path.iterdir()) == [target]


def test_builds_are_byte_identical(built: tuple[Path, list[str], bool], tmp_path: Path) -> None:
    first = built[0]
    second = ensure_miniature(tmp_path)
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


def test_control_token_ids_agree_with_the_config(
    built: tuple[Path, list[str], bool], processor
) -> None:
    folder = built[0]
    tokenizer = processor.tokenizer
    config = json.loads((folder / "config.json").read_text())
    generation = json.loads((folder / "generation_config.json").read_text())
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in miniature.CONTROL_TOKENS}

    assert len(set(ids.values())) == len(miniature.CONTROL_TOKENS)
    assert (ids["<pad>"], ids["<eos>"], ids["<bos>"]) == (0, 1, 2)
    assert (tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.bos_token_id) == (0, 1, 2)
    assert config["boi_token_id"] == ids["<|image>"] == tokenizer.boi_token_id
    assert config["eoi_token_id"] == ids["<image|>"] == tokenizer.eoi_token_id
    assert config["image_token_id"] == ids["<|image|>"] == tokenizer.image_token_id
    assert config["boa_token_id"] == ids["<|audio>"]
    assert config["eoa_token_index"] == ids["<audio|>"]
    assert config["audio_token_id"] == ids["<|audio|>"] == tokenizer.audio_token_id
    assert config["video_token_id"] == ids["<|video|>"]
    assert config["text_config"]["vocab_size"] >= len(tokenizer)
    assert generation["eos_token_id"] == [ids["<eos>"], ids["<turn|>"], ids["<|tool_response>"]]
    assert (generation["pad_token_id"], generation["bos_token_id"]) == (0, 2)
    assert generation["do_sample"] is True
    assert (generation["temperature"], generation["top_p"], generation["top_k"]) == (1.0, 0.95, 64)


def test_only_readable_tokens_can_be_sampled(
    built: tuple[Path, list[str], bool], processor
) -> None:
    tokenizer = processor.tokenizer
    generation = json.loads((built[0] / "generation_config.json").read_text())
    suppressed = set(generation["suppress_tokens"])
    reply_ids = {tokenizer.convert_tokens_to_ids(token) for token in miniature.REPLY_TOKENS}
    assert not reply_ids & suppressed  # a reply can still end, and think
    assert tokenizer.convert_tokens_to_ids("<|image|>") in suppressed
    sampled = set(range(len(tokenizer))) - suppressed - reply_ids
    assert len(sampled) > 350  # letters, digits, plain punctuation and the corpus's word pieces
    for token_id in sampled:
        assert set(tokenizer.decode([token_id])) <= miniature.READABLE, token_id


def test_demo_replies_read_as_words(engine: Engine) -> None:
    options = GenerationOptions(max_new_tokens=200, min_new_tokens=200)
    replies = []
    for question in ("Hello!", "What is in this picture?", "Read the text.", "Summarise it."):
        events = engine.submit(ChatRequest((Message("user", question),), options))
        replies.append("".join(event.text for event in events if isinstance(event, TextChunk)))
    text = "".join(replies)
    assert "\ufffd" not in text
    assert all(character.isprintable() or character == "\n" for character in text)
    # Random weights over ~400 readable tokens, most of them letters (measured: 96 %).
    assert sum(character.isalpha() or character == " " for character in text) > 0.8 * len(text)


CHAT = [
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": [{"type": "text", "text": "Hello"}]},
    {
        "role": "user",
        "content": [
            {"type": "image", "image": None},
            {"type": "audio", "audio": None},
            {"type": "text", "text": "What is this?"},
        ],
    },
]
TURNS = (
    "<|turn>user\nHi<turn|>\n<|turn>model\nHello<turn|>\n"
    "<|turn>user\n<|image|><|audio|>What is this?<turn|>\n<|turn>model\n"
)
NO_THOUGHT = "<|channel>thought\n<channel|>"


@pytest.mark.parametrize(
    ("system", "thinking", "expected"),
    [
        (False, False, "<bos>" + TURNS + NO_THOUGHT),
        (False, True, "<bos><|turn>system\n<|think|><turn|>\n" + TURNS),
        (True, False, "<bos><|turn>system\nBe brief.<turn|>\n" + TURNS + NO_THOUGHT),
        (True, True, "<bos><|turn>system\n<|think|>Be brief.<turn|>\n" + TURNS),
    ],
)
def test_chat_template_renders_the_gemma4_format(
    processor, system: bool, thinking: bool, expected: str
) -> None:
    messages = ([{"role": "system", "content": "Be brief."}] if system else []) + CHAT
    rendered = processor.apply_chat_template(
        messages, add_generation_prompt=True, enable_thinking=thinking
    )
    assert rendered == expected


def test_chat_template_without_generation_prompt(processor) -> None:
    rendered = processor.apply_chat_template(CHAT[:1])
    assert rendered == "<bos><|turn>user\nHi<turn|>\n"


def test_processor_expands_image_and_audio_placeholders(processor) -> None:
    image = Image.new("RGB", (64, 48), "red")
    audio = np.zeros(32_000, dtype=np.float32)  # 2 s at 16 kHz = 50 frames of 40 ms
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "image", "image": image},
                {"type": "audio", "audio": audio},
                {"type": "text", "text": "Describe"},
            ],
        }
    ]
    inputs = processor.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
    )
    text = processor.tokenizer.decode(inputs["input_ids"][0])
    # A 4:3 image at the default budget of 280 is resized to 14 x 19 patches of 48 px.
    assert "<|image>" + "<|image|>" * 266 + "<image|>" in text
    assert "<|audio>" + "<|audio|>" * 50 + "<audio|>" in text
    assert text.startswith("<bos><|turn>user\n<|image>")
    assert "mm_token_type_ids" in inputs


def test_loads_in_4bit_and_generates(built: tuple[Path, list[str], bool], processor) -> None:
    from transformers import AutoModelForMultimodalLM, BitsAndBytesConfig

    quantization = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_compute_dtype=torch.bfloat16,
        bnb_4bit_use_double_quant=True,
        llm_int8_skip_modules=["lm_head", "model.embed_vision", "model.embed_audio"],
    )
    model = AutoModelForMultimodalLM.from_pretrained(
        built[0], quantization_config=quantization, device_map={"": "cpu"}, dtype=torch.bfloat16
    )
    modules = dict(model.named_modules())
    assert type(modules["model.language_model.layers.0.mlp.up_proj"]).__name__ == "Linear4bit"
    for name in ("lm_head", "model.embed_vision", "model.embed_audio"):  # kept in bf16
        linears = [m for m in modules[name].modules() if isinstance(m, torch.nn.Linear)]
        assert linears and all(type(m) is torch.nn.Linear for m in linears), name

    messages = [
        {
            "role": "user",
            "content": [
                {"type": "image", "image": Image.new("RGB", (96, 96), "blue")},
                {"type": "audio", "audio": np.zeros(16_000, dtype=np.float32)},
                {"type": "text", "text": "Hello"},
            ],
        }
    ]
    inputs = processor.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
    )
    output = model.generate(**inputs, max_new_tokens=4)
    assert output.shape[0] == 1 and inputs["input_ids"].shape[1] < output.shape[1]
