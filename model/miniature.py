"""A miniature Gemma 4 unified checkpoint with random weights, for tests and the demo mode.

Same model and processor classes as google/gemma-4-12B-it, the same control tokens and prompt
format, but a 64-wide, 6-layer decoder and a ~600-token tokenizer trained here on a few
sentences. It is built once into the cache folder (about 2 MB) and reused. Its replies are
noise, though made of readable word pieces: it proves the plumbing, not the quality.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import string
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from . import miniature_template
from .config import default_cache_root
from .miniature_template import CHAT_TEMPLATE

MINIATURE_SEED = 1234

# The real tokenizer's control tokens. pad, eos and bos keep their real ids (0, 1, 2); the rest
# get the next ids in this order.
CONTROL_TOKENS = tuple(
    "<pad> <eos> <bos> <|tool> <tool|> <|tool_call> <tool_call|> <|tool_response> "
    '<tool_response|> <|"|> <|think|> '
    "<|channel> <channel|> <|turn> <turn|> <|image> <|audio> <|image|> <|audio|> <image|> "
    "<audio|> <|video|>".split()
)
NAMED_TOKENS = {  # the tokenizer attributes the processor (and the real tokenizer) name
    "image_token": "<|image|>",
    "boi_token": "<|image>",
    "eoi_token": "<image|>",
    "audio_token": "<|audio|>",
    "boa_token": "<|audio>",
    "eoa_token": "<audio|>",
    "sot_token": "<|turn>",
    "soc_token": "<|channel>",
    "think_token": "<|think|>",
}
# The control tokens a reply may contain: its possible ends (the generation config's
# eos_token_id) and the thought channel's brackets. The random weights may sample any token, so
# the others are suppressed, as are bytes that are not readable text (see _unreadable_ids).
REPLY_TOKENS = ("<eos>", "<turn|>", "<|tool_response>", "<|channel>", "<channel|>")
# What the demo's replies may be made of: letters, digits, spaces, plain punctuation, newlines.
READABLE = frozenset(string.ascii_letters + string.digits + " \n.,;:!?'-")
VOCAB_SIZE = 800
SPACE = "\u2581"  # "▁", how the tokenizer writes a space
BYTE_TOKENS = tuple(f"<0x{byte:02X}>" for byte in range(256))
# The largest merged-patch coordinate: an image one patch high at the largest budget (1120).
MAX_SOFT_TOKENS = 1120

# Training text for the tokenizer: the words a demo conversation is likely to contain.
CORPUS = (
    "Describe this image in detail.",
    "What is written on the screenshot?",
    "Transcribe the audio clip and summarise what the speaker says.",
    "The picture shows a red bicycle leaning against a stone wall.",
    "A cat is sleeping on a blue sofa next to the window.",
    "The chart compares sales for the first and second quarter of the year.",
    "There are three people standing in front of an old building.",
    "The speaker talks about the weather and the train timetable.",
    "Please answer in one short sentence.",
    "Think step by step before you give the final answer.",
    "I can see a table with a laptop, a cup of coffee and some papers.",
    "The text in the image says: open every day from nine to five.",
    "This is a random miniature model, so its answers are noise.",
    "Hello! How can I help you today?",
    "Thank you, that was very helpful.",
    "What colour is the car in the photo?",
    "How many birds are sitting on the wire?",
    "The recording is about two seconds long and contains a tone.",
    "Summarise the document and list the main points.",
    "The user interface has a button, a text box and a menu.",
    "Explain what the error message means and how to fix it.",
    "The map shows the river, the bridge and the city centre.",
    "She said the meeting will start at ten o'clock tomorrow morning.",
    "Translate the sentence into French, German and Spanish.",
    "The graph rises quickly, then it falls slowly towards zero.",
    "Read the numbers on the receipt and add them up.",
    "The dog runs across the green field after a yellow ball.",
    "Is there anything unusual or dangerous in this scene?",
    "The model writes its thoughts in a channel before the answer.",
    "Call the weather tool with the city name and read the response.",
    "Images are cut into patches and audio into short frames.",
    "Write a short poem about the sea, the wind and the light.",
)


def miniature_dir(cache_root: Path | None = None) -> Path:
    """The miniature checkpoint's folder: named by a hash of this builder and its chat
    template, so edits rebuild it."""
    root = Path(cache_root) if cache_root is not None else default_cache_root()
    sources = Path(__file__).read_bytes() + Path(miniature_template.__file__).read_bytes()
    version = hashlib.sha256(sources).hexdigest()[:10]
    return root / f"gemma4-miniature-{version}"


def ensure_miniature(
    cache_root: Path | None = None, progress: Callable[[str], None] | None = None
) -> Path:
    """The miniature checkpoint's folder, built on first use (atomically) and reused after."""
    report = progress or (lambda message: None)
    target = miniature_dir(cache_root)
    if target.is_dir():
        report(f"Using the miniature checkpoint in {target}.")
        return target
    report(f"Building the miniature checkpoint (random weights) in {target}.")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        _build(staging, report)
        try:
            os.rename(staging, target)
        except OSError:
            if not target.is_dir():  # not a lost race with another process: a real failure
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    report(f"Miniature checkpoint ready in {target}.")
    return target


def _build(folder: Path, report: Callable[[str], None]) -> None:
    """Write tokenizer, processor, config, generation config and random weights into `folder`."""
    import torch
    from transformers import (
        Gemma4UnifiedAudioConfig,
        Gemma4UnifiedAudioFeatureExtractor,
        Gemma4UnifiedConfig,
        Gemma4UnifiedForConditionalGeneration,
        Gemma4UnifiedImageProcessor,
        Gemma4UnifiedProcessor,
        Gemma4UnifiedTextConfig,
        Gemma4UnifiedVideoProcessor,
        Gemma4UnifiedVisionConfig,
        GenerationConfig,
    )

    report("Training the miniature tokenizer.")
    tokenizer = _train_tokenizer()
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in CONTROL_TOKENS}
    feature_extractor = Gemma4UnifiedAudioFeatureExtractor()
    processor = Gemma4UnifiedProcessor(
        feature_extractor=feature_extractor,
        image_processor=Gemma4UnifiedImageProcessor(),
        tokenizer=tokenizer,
        video_processor=Gemma4UnifiedVideoProcessor(),
        chat_template=CHAT_TEMPLATE,
    )
    # Every control token special, as in the real tokenizer (llama.cpp's converter marks only
    # special tokens as control tokens): the named ones by name, the rest unnamed (added after
    # the processor, which sets the unnamed list to its video token).
    unnamed = set(CONTROL_TOKENS) - set(tokenizer.all_special_tokens)
    tokenizer.add_special_tokens(
        {"extra_special_tokens": sorted(unnamed)}, replace_extra_special_tokens=False
    )
    processor.save_pretrained(folder)

    text_config = Gemma4UnifiedTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=6,  # five sliding-window layers, then one full-attention layer
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=32,
        global_head_dim=64,
        num_global_key_value_heads=1,
        attention_k_eq_v=True,
        sliding_window=64,
        final_logit_softcapping=30.0,
        moe_intermediate_size=None,  # a dense model, as llama.cpp's converter reads the config
    )
    config = Gemma4UnifiedConfig(
        text_config=text_config,
        vision_config=Gemma4UnifiedVisionConfig(
            mm_embed_dim=64, output_proj_dims=64, mm_posemb_size=MAX_SOFT_TOKENS
        ),
        audio_config=Gemma4UnifiedAudioConfig(
            audio_embed_dim=feature_extractor.audio_samples_per_token
        ),
        boi_token_id=ids["<|image>"],
        eoi_token_id=ids["<image|>"],
        image_token_id=ids["<|image|>"],
        video_token_id=ids["<|video|>"],
        boa_token_id=ids["<|audio>"],
        eoa_token_index=ids["<audio|>"],
        audio_token_id=ids["<|audio|>"],
    )
    report(f"Creating random weights (seed {MINIATURE_SEED}).")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(MINIATURE_SEED)
        model = Gemma4UnifiedForConditionalGeneration(config).to(torch.bfloat16)
    model.generation_config = GenerationConfig(
        bos_token_id=ids["<bos>"],
        eos_token_id=[ids["<eos>"], ids["<turn|>"], ids["<|tool_response>"]],
        pad_token_id=ids["<pad>"],
        do_sample=True,
        temperature=1.0,
        top_p=0.95,
        top_k=64,
        suppress_tokens=_unreadable_ids(tokenizer),
    )
    report("Saving the miniature checkpoint.")
    model.save_pretrained(folder)


def build_miniature_drafter(target: Path, folder: Path) -> Path:
    """A random multi-token-prediction drafter for the miniature checkpoint in `target`.

    Same class as google/gemma-4-12B-it-assistant: two layers (one of each attention type) that
    read the target's keys and values, with query heads sized to match them. Tests and the
    benchmark put it beside a model folder as `<folder>-assistant`, where the loader finds it.
    """
    import torch
    from transformers import (
        AutoConfig,
        Gemma4UnifiedAssistantConfig,
        Gemma4UnifiedAssistantForCausalLM,
        Gemma4UnifiedTextConfig,
    )

    from .drafter import kv_sharing_fix

    target_text = AutoConfig.from_pretrained(target).text_config
    # Each drafter layer attends to the keys and values of the target's layers of its type.
    sliding, full = (
        target_text.per_layer_config[target_text.layer_types.index(kind)]
        for kind in ("sliding_attention", "full_attention")
    )
    config = Gemma4UnifiedAssistantConfig(
        text_config=Gemma4UnifiedTextConfig(
            vocab_size=target_text.vocab_size,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            layer_types=["sliding_attention", "full_attention"],
            num_attention_heads=2,
            num_key_value_heads=sliding.num_key_value_heads,
            head_dim=sliding.head_dim,
            global_head_dim=full.head_dim,
            num_global_key_value_heads=full.num_key_value_heads,
            attention_k_eq_v=True,
            sliding_window=target_text.sliding_window,
            final_logit_softcapping=30.0,
        ),
        backbone_hidden_size=target_text.hidden_size,
    )
    with torch.random.fork_rng(devices=[]), kv_sharing_fix():
        torch.manual_seed(MINIATURE_SEED)
        drafter = Gemma4UnifiedAssistantForCausalLM(config).to(torch.bfloat16)
    drafter.save_pretrained(folder)
    return folder


def _unreadable_ids(tokenizer) -> list[int]:
    """Token ids the random weights must not sample, so that their noise reads as words.

    A byte-level tokenizer keeps a token for each of the 256 bytes, so that any text encodes;
    sampled alone, a byte of a multi-byte character decodes to U+FFFD and a control byte to an
    invisible character. Symbols such as * _ ` $ # < would be read as Markdown or LaTeX by the
    page, so only READABLE characters stay. Control tokens outside REPLY_TOKENS would be skipped
    in the reply text (a media placeholder, a turn opening) or mean nothing here (tools).
    """
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in CONTROL_TOKENS}
    suppressed = {ids[token] for token in CONTROL_TOKENS if token not in REPLY_TOKENS}
    for token_id in set(range(len(tokenizer))) - set(ids.values()):
        if not set(tokenizer.decode([token_id])) <= READABLE:
            suppressed.add(token_id)
    return sorted(suppressed)


def _train_tokenizer():
    """A tokenizer built as Gemma 4's is: BPE over text whose spaces are written "▁", with a
    token for each of the 256 bytes (<0x00>..<0xFF>) to fall back on, so any text encodes, and
    the Gemma 4 control tokens. llama.cpp's converter and tokenizer take it as Gemma 4's."""
    from tokenizers import (
        Regex,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        trainers,
    )
    from transformers import PreTrainedTokenizerFast

    def configured(model):
        tokenizer = Tokenizer(model)
        tokenizer.normalizer = normalizers.Replace(" ", SPACE)
        # BPE runs on whole lines; newlines are tokens of their own (as in llama.cpp's gemma4).
        tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex("\n+"), behavior="isolated")
        tokenizer.decoder = decoders.Sequence(
            [decoders.Replace(SPACE, " "), decoders.ByteFallback(), decoders.Fuse()]
        )
        return tokenizer

    trained = configured(models.BPE())
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE - len(CONTROL_TOKENS) - len(BYTE_TOKENS),
        initial_alphabet=sorted(set(READABLE) - {" "} | {SPACE}),
        show_progress=False,
    )
    trained.train_from_iterator(CORPUS, trainer=trainer)
    learned = json.loads(trained.to_str())["model"]
    vocab = {token: i for i, token in enumerate(CONTROL_TOKENS + BYTE_TOKENS)}
    for token in sorted(learned["vocab"], key=learned["vocab"].get):
        vocab.setdefault(token, len(vocab))
    merges = [
        tuple(merge) if isinstance(merge, list) else tuple(merge.split(" "))
        for merge in learned["merges"]
    ]
    backend = configured(models.BPE(vocab=vocab, merges=merges, byte_fallback=True))
    backend.add_special_tokens(list(CONTROL_TOKENS))
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        add_bos_token=True,
        extra_special_tokens=NAMED_TOKENS,
    )


def long_winded_copy(folder: Path, target: Path) -> Path:
    """A copy of the miniature checkpoint at `target` whose replies never end before their
    length limit (its end-of-reply tokens are suppressed). For servers that take no minimum
    length: timing a forced length, and stopping a reply that is surely still running."""
    shutil.copytree(folder, target, dirs_exist_ok=True)
    config_path = target / "generation_config.json"
    config = json.loads(config_path.read_text())
    config["suppress_tokens"] = sorted(set(config["suppress_tokens"]) | set(config["eos_token_id"]))
    config_path.write_text(json.dumps(config, indent=2))
    return target


def serve_command(folder: Path, port: int, hub_cache: Path) -> tuple[list[str], dict[str, str]]:
    """The command line and environment of a real OpenAI-compatible server for a checkpoint
    folder: `transformers serve`, offline, on a loopback port, on the CPU. It lists the models
    of the Hugging Face cache `hub_cache` (an empty one: none); it answers to `str(folder)`."""
    command = [str(Path(sys.executable).parent / "transformers"), "serve", str(folder)]
    command += ["--host", "127.0.0.1", "--port", str(port), "--device", "cpu"]
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_HUB_DISABLE_UPDATE_CHECK": "1",
        "HF_HUB_CACHE": str(hub_cache),
    }
    return command, env
