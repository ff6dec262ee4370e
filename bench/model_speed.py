"""Model figures measured in this process, on raw `generate`.

Load time and memory per quantization; time to first token for text, one screenshot at each
image budget and audio clips; decode speed at forced lengths against the memory-bandwidth
ceiling; and the speed settings (the drafter, a static cache) with a greedy-identical check.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from model.loader import LoadedModel
from model.messages import AUTO_IMAGE_TOKENS, AudioClip, GenerationOptions, Message

from .harness import Figure, figure, repeat, seconds
from .samples import photo, speak, tone, write_video

SCREENSHOT_PX = (1024, 768)
DECODE_PROMPT = "Write a short poem about the sea, the wind and the light."
IMAGE_PROMPT = "What is written on the screenshot?"
AUDIO_PROMPT = "Transcribe the audio clip and summarise what the speaker says."
COPY_BYTES = 512 * 2**20  # enough to leave every cache behind
ASSETS = Path(__file__).resolve().parent.parent / "assets"


@dataclass(frozen=True)
class Subject:
    """What is measured: a name, and how to get it loaded in a given quantization."""

    label: str
    load: Callable[[str], LoadedModel]


def screenshot(seed: int = 0) -> Any:
    """A 1024x768 random picture (the processor's work depends on size, not content)."""
    return photo(*SCREENSHOT_PX, seed=seed)


def speech_like(seconds_long: float) -> AudioClip:
    return AudioClip(tone(seconds_long), 16_000)


def first_token_inputs(budgets: tuple[int, ...], audio_s: tuple[int, ...]) -> list[tuple]:
    """(name, messages, options) for each time-to-first-token case."""
    cases = [("text", (Message("user", DECODE_PROMPT),), GenerationOptions())]
    for budget in budgets:
        message = Message("user", IMAGE_PROMPT, images=(screenshot(),))
        cases.append((f"image {budget}", (message,), GenerationOptions(image_tokens=budget)))
    cases += auto_detail_inputs()
    for length_s in audio_s:
        message = Message("user", AUDIO_PROMPT, audio=(speech_like(length_s),))
        cases.append((f"audio {length_s} s", (message,), GenerationOptions()))
    return cases


def auto_detail_inputs() -> list[tuple]:
    """Image detail Auto against the model's default of 280, on the app's real example
    screenshot and photo. Auto's own look at the image is part of what is timed: the
    processor's inputs are built with it (model.prompts.build_inputs)."""
    from model.detail import image_tokens_for

    cases = []
    for kind, name in (("screenshot", "example-error.png"), ("photo", "example-photo.jpg")):
        image = Image.open(ASSETS / name)
        image.load()
        message = (Message("user", IMAGE_PROMPT, images=(image,)),)
        cases.append((f"{kind} {name} at 280", message, GenerationOptions(image_tokens=280)))
        auto = f"{kind} {name} Auto: {image_tokens_for([image])}"
        cases.append((auto, message, GenerationOptions(image_tokens=AUTO_IMAGE_TOKENS)))
    return cases


def release() -> None:
    """Free models no longer referenced, so the next one's memory figures stand alone."""
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def measure_load(subject: Subject, quant: str, runs: int) -> tuple[list[Figure], LoadedModel]:
    """Load time (the first load apart: it imports and warms caches), memory afterwards, and
    the first reply's first token on the freshly loaded model (what a person's first message
    waits for, work a library leaves to first use included)."""
    import psutil
    import torch

    stage = f"load {quant}"
    rss_before = psutil.Process().memory_info().rss
    times, loaded = [], None
    for _ in range(runs + 1):
        loaded = None
        release()
        started = time.perf_counter()
        loaded = subject.load(quant)
        times.append(time.perf_counter() - started)
    figures = [figure(stage, "first load", "s", times[0]), figure(stage, "load", "s", times[1:])]
    figures.append(figure(stage, "weights", "GB", loaded.model.get_memory_footprint() / 1e9))
    rss_gb = (psutil.Process().memory_info().rss - rss_before) / 1e9
    figures.append(figure(stage, "RAM added", "GB", rss_gb))
    if torch.cuda.is_available():
        figures.append(figure(stage, "VRAM allocated", "GB", torch.cuda.memory_allocated() / 1e9))
    inputs = prepared(loaded, (Message("user", DECODE_PROMPT),), GenerationOptions())
    first_s = seconds(lambda: generate(loaded, inputs, 1))
    figures.append(figure(stage, "first reply, time to first token (text)", "s", first_s))
    return figures, loaded


def prepared(loaded: LoadedModel, messages: tuple[Message, ...], options: GenerationOptions):
    import torch

    from model.prompts import build_inputs

    inputs = build_inputs(loaded.processor, messages, options)
    return inputs.to(loaded.model.device, dtype=torch.bfloat16)


def generate(loaded: LoadedModel, inputs: Any, new_tokens: int, **settings: Any) -> Any:
    """Greedy `generate` of exactly `new_tokens` tokens (stop tokens held back)."""
    import torch

    with torch.inference_mode():
        output = loaded.model.generate(
            **inputs,
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,
            do_sample=False,
            **settings,
        )
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return output


def measure_first_token(loaded: LoadedModel, cases: list[tuple], runs: int) -> list[Figure]:
    """Processor time, and processor + prefill + first token, for each case."""
    figures = []
    for name, messages, options in cases:

        def prepare(m=messages, o=options):
            return prepared(loaded, m, o)

        prepare_s = repeat(lambda: seconds(prepare), runs)
        first_s = repeat(lambda: seconds(lambda: generate(loaded, prepare(), 1)), runs)
        tokens = prepared(loaded, messages, options)["input_ids"].shape[1]
        figures.append(figure("time to first token", f"{name} ({tokens} tokens)", "s", first_s))
        figures.append(figure("processor", name, "s", prepare_s))
    return figures


class TokenClock:
    """A `generate` streamer that notes when each new token came out."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.prompt_seen = False

    def put(self, value: Any) -> None:
        if not self.prompt_seen:  # generate() first passes the prompt
            self.prompt_seen = True
            return
        now = time.perf_counter()
        self.times.extend([now] * value.numel())

    def end(self) -> None:
        pass

    def rate(self) -> float:
        """Tokens per second after the first token (decode only, no prefill)."""
        return (len(self.times) - 1) / (self.times[-1] - self.times[0])


def decode_rate(loaded: LoadedModel, inputs: Any, new_tokens: int, **settings: Any) -> float:
    clock = TokenClock()
    generate(loaded, inputs, new_tokens, streamer=clock, **settings)
    return clock.rate()


def copy_bandwidth(device: str, size: int = COPY_BYTES) -> float:
    """Bytes per second moved by a large tensor copy (each byte read once, written once)."""
    import torch

    source = torch.empty(size, dtype=torch.uint8, device=device).fill_(1)
    target = torch.empty_like(source)

    def copy() -> None:
        target.copy_(source)
        if device == "cuda":
            torch.cuda.synchronize()

    return 2 * size / min(repeat(lambda: seconds(copy), 5))


def bytes_per_token(model: Any) -> int:
    """Weight bytes one decoding step reads: the decoder and the output head, not the embedders.

    A tied embedding is counted once, as the output head. Quantization constants outside the
    parameters (NF4's absmax, ~1.6%) are left out.
    """
    skipped = {id(p) for name in ("embed_vision", "embed_audio") for p in _module(model, name)}
    tensors = {id(t): t for t in [*model.parameters(), *model.buffers()] if id(t) not in skipped}
    return sum(t.numel() * t.element_size() for t in tensors.values())


def _module(model: Any, name: str) -> list:
    module = getattr(model.model, name, None)
    return [*module.parameters(), *module.buffers()] if module is not None else []


def measure_decode(
    loaded: LoadedModel, lengths: tuple[int, ...], runs: int, bandwidth: float
) -> tuple[list[Figure], dict[str, Any]]:
    """Decode tokens per second at each forced length, and the share of the bandwidth ceiling."""
    inputs = prepared(loaded, (Message("user", DECODE_PROMPT),), GenerationOptions())
    weight_bytes = bytes_per_token(loaded.model)
    ceiling = bandwidth / weight_bytes
    figures, shares = [], {}
    for length in lengths:
        rates = repeat(lambda n=length: decode_rate(loaded, inputs, n), runs)
        figures.append(figure("decode", f"{length} new tokens", "tokens/s", rates))
        figures.append(
            figure(
                "decode",
                f"{length} new tokens, share of ceiling",
                "%",
                [100 * rate / ceiling for rate in rates],
            )
        )
        shares[length] = [rate / ceiling for rate in rates]
    figures.append(figure("decode", "weights read per token", "GB", weight_bytes / 1e9))
    figures.append(figure("decode", "bandwidth ceiling", "tokens/s at most", ceiling))
    return figures, {"bytes_per_token": weight_bytes, "ceiling_tokens_per_s": ceiling}


def measure_settings(loaded: LoadedModel, new_tokens: int, runs: int) -> tuple[list[Figure], dict]:
    """Each speed setting against plain decoding: tokens per second, and greedy identical?

    On random weights in bf16 the top two logits can differ by one rounding step, so a setting
    that changes the order of a sum (several tokens checked at once, a padded cache) may pick
    the other one; the float32 check of the same settings is in tests/test_drafter.py.
    """
    settings: dict[str, dict[str, Any]] = {
        "plain": {},
        "static cache": {"cache_implementation": "static"},
    }
    if loaded.drafter is not None:
        settings["drafter"] = {"assistant_model": loaded.drafter}
    cases = {
        "text": prepared(loaded, (Message("user", DECODE_PROMPT),), GenerationOptions()),
        "image": prepared(
            loaded, (Message("user", IMAGE_PROMPT, images=(screenshot(),)),), GenerationOptions()
        ),
    }
    figures, identical = [], {}
    for case, inputs in cases.items():
        plain = generate(loaded, inputs, new_tokens)
        for name, extra in settings.items():
            rates = repeat(lambda e=extra, i=inputs: decode_rate(loaded, i, new_tokens, **e), runs)
            figures.append(figure("settings", f"{case}, {name}", "tokens/s", rates))
            if name != "plain":
                same = bool((generate(loaded, inputs, new_tokens, **extra) == plain).all())
                identical[f"{case}, {name}"] = same
    return figures, identical


def load_subject(config: Any) -> LoadedModel:
    from model.loader import load

    return load(config, progress=lambda sentence: None)


def shape_subject(shape: str, processor_folder: Path, device: str) -> Subject:
    """A random-weight model of a real shape, built on `device` (see bench/shapes.py)."""
    from transformers import AutoProcessor

    from model.loader import ModelInfo, build_random

    from .shapes import gemma4_12b_config

    processor = AutoProcessor.from_pretrained(processor_folder)
    config = gemma4_12b_config(processor)

    def load(quant: str) -> LoadedModel:
        model = build_random(config, quant, device, progress=print)  # minutes on a CPU
        return LoadedModel(model, processor, ModelInfo(f"{shape} shape", True, device, quant))

    return Subject(f"Gemma 4 {shape} shape, random weights", load)


RECORDING_PROMPT = "What happens in this screen recording, and what is said?"
RECORDING_SPEECH = (
    "First I open the settings window. Then I choose the network tab and press connect. "
    "An error appears: access is denied. I try again as administrator, and it works. "
)


def screen_recording(seconds_long: int, size: tuple[int, int], folder: Path) -> tuple:
    """A screen recording with speech made as an MP4 (H.264 and AAC, 30 frames a second), read
    as the app's intake reads it: (decode seconds, the first-token case)."""
    import numpy as np
    import soundfile

    from app.config import Limits
    from app.intake.video import load_video

    speech = speak(RECORDING_SPEECH * 4, folder / "speech.wav")
    samples, rate = soundfile.read(speech, dtype="float32")
    samples = np.resize(samples, seconds_long * rate)  # spoken all through, looped if short
    soundfile.write(speech, samples, rate)
    path = write_video(folder / "recording.mp4", seconds_long, size=size, speech=speech)
    started = time.perf_counter()
    video = load_video(path, Limits())
    decode_s = time.perf_counter() - started
    audio = (video.soundtrack,) if video.soundtrack is not None else ()
    message = Message("user", RECORDING_PROMPT, video=(video.clip,), audio=audio)
    name = f"screen recording {seconds_long} s {size[0]}x{size[1]} with sound"
    return decode_s, (name, (message,), GenerationOptions())


def measure_recording_memory(loaded: LoadedModel, case: tuple) -> list[Figure]:
    """The memory one answer to the recording takes on top of the loaded model: the highest
    resident set seen while its inputs are built and its first token made (and on a GPU the
    highest allocation), over what was resident before."""
    import threading

    import psutil
    import torch

    name, messages, options = case
    process, highest, done = psutil.Process(), [0], threading.Event()

    def watch() -> None:
        while not done.wait(0.005):
            highest[0] = max(highest[0], process.memory_info().rss)

    gc.collect()
    before = process.memory_info().rss
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    generate(loaded, prepared(loaded, messages, options), 1)
    done.set()
    watcher.join()
    figures = [figure("memory", f"{name}: RAM added", "GB", max(highest[0] - before, 0) / 1e9)]
    if torch.cuda.is_available():
        peak = torch.cuda.max_memory_allocated() - torch.cuda.memory_allocated()
        figures.append(figure("memory", f"{name}: VRAM added at peak", "GB", peak / 1e9))
    return figures
