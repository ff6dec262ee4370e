"""The multi-token-prediction drafter: found beside the model, used, and greedy-identical."""

from __future__ import annotations

import contextlib
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from bench.samples import photo, tone
from model import ChatRequest, GenerationOptions, Message, ModelConfig
from model.messages import AudioClip
from model.prompts import context_length

NEW_TOKENS = 64  # with each prompt below, past the miniature's 64-token sliding window


@pytest.fixture(scope="module")
def paired(miniature: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model folder (the miniature) with a random drafter beside it as `<folder>-assistant`."""
    from model.miniature import build_miniature_drafter

    root = tmp_path_factory.mktemp("paired")
    (root / "gemma").symlink_to(miniature)
    build_miniature_drafter(miniature, root / "gemma-assistant")
    return root / "gemma"


def prompts() -> dict[str, tuple[Message, ...]]:
    return {
        "text": (Message("user", "Describe this image in detail."),),
        "image": (Message("user", "What is in this picture?", images=(photo(),)),),
        "audio": (Message("user", "What is said?", audio=(AudioClip(tone(2.0), 16_000),)),),
    }


def greedy(model, inputs, **settings) -> torch.Tensor:
    with torch.inference_mode():
        return model.generate(
            **inputs,
            max_new_tokens=NEW_TOKENS,
            min_new_tokens=NEW_TOKENS,
            do_sample=False,
            **settings,
        )


def test_greedy_output_is_the_same_with_and_without_the_drafter(paired: Path, processor):
    """In float32, where checking several tokens at once rounds like checking one at a time.

    (In bf16 on random weights the top two logits can be one rounding step apart, and the
    order of a sum decides; the benchmark reports that case.)
    """
    from transformers import AutoModelForCausalLM, AutoModelForMultimodalLM

    from model.drafter import kv_sharing_fix
    from model.prompts import build_inputs

    with kv_sharing_fix():
        target = AutoModelForMultimodalLM.from_pretrained(paired, dtype=torch.float32).eval()
        drafter = AutoModelForCausalLM.from_pretrained(
            f"{paired}-assistant", dtype=torch.float32
        ).eval()
    drafter.generation_config.num_assistant_tokens = 4
    for name, messages in prompts().items():
        inputs = build_inputs(processor, messages, GenerationOptions())
        plain = greedy(target, inputs)
        assert torch.equal(greedy(target, inputs, assistant_model=drafter), plain), name


def test_transformers_still_needs_the_fix(paired: Path, processor, monkeypatch, tmp_path):
    """When this fails, transformers 5.23's bugs are fixed: remove model.drafter.kv_sharing_fix."""
    from transformers import AutoModelForCausalLM, AutoModelForMultimodalLM

    import model.drafter
    from model.miniature import build_miniature_drafter
    from model.prompts import build_inputs

    with model.drafter.kv_sharing_fix():
        drafter = AutoModelForCausalLM.from_pretrained(f"{paired}-assistant").eval()
    drafter.generation_config.num_assistant_tokens = 4
    target = AutoModelForMultimodalLM.from_pretrained(paired).eval()  # built without the fix
    inputs = build_inputs(processor, prompts()["text"], GenerationOptions())
    with pytest.raises(KeyError, match="full_attention"):  # the target shares no keys and values
        greedy(target, inputs, assistant_model=drafter)
    monkeypatch.setattr(model.drafter, "kv_sharing_fix", contextlib.nullcontext)
    with pytest.raises(ValueError, match="layer types"):  # a drafter cannot even be built
        build_miniature_drafter(paired, tmp_path / "drafter")


def test_loader_finds_the_drafter_beside_the_model_and_the_worker_uses_it(
    paired: Path, cache_root: Path
):
    from model.loader import load, locate_drafter
    from model.worker import PreparedInputs, answer

    assert locate_drafter(ModelConfig(demo=True, cache_root=cache_root)) is None
    assert locate_drafter(ModelConfig(model_id=str(paired))) == f"{paired}-assistant"
    loaded = load(ModelConfig(model_id=str(paired)), progress=lambda sentence: None)
    assert loaded.info.drafter
    assert type(loaded.drafter).__name__ == "Gemma4UnifiedAssistantForCausalLM"
    assert loaded.drafter.generation_config.num_assistant_tokens  # set when the config has none

    drafts = []
    original = loaded.drafter.forward
    loaded.drafter.forward = lambda *args, **kwargs: drafts.append(1) or original(*args, **kwargs)
    sent = []
    for speculative in (True, False):
        options = GenerationOptions(
            temperature=0.0, max_new_tokens=24, min_new_tokens=24, speculative=speculative
        )
        request = ChatRequest(prompts()["image"], options)
        answer(
            loaded,
            1,
            request,
            SimpleNamespace(send=sent.append),
            SimpleNamespace(value=0),
            PreparedInputs(
                loaded.processor, loaded.model.device, context_length(loaded.model.config)
            ),
        )
        assert sent[-1][0] == "done" and sent[-1][2].tokens == 24, sent[-1]
        if speculative:
            assert drafts, "the drafter was not asked for drafts"
            drafted = len(drafts)
    assert len(drafts) == drafted  # speculative=False leaves it alone
