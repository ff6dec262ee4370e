"""A request as llama.cpp input, and its reading into the model's cache.

The prompt is the model's own chat template (from the GGUF), rendered with each piece of
content replaced by a marker; the rendered text is then cut at the markers into parts for
`mtmd_tokenize_from_parts`: the template's text with its control tokens, what a person wrote
as plain text (so it cannot open a turn), and images and audio as bitmaps.

Images are resized here to the size Gemma's processor gives them at the request's image budget;
the projector then reads them at that size, so an image costs the same soft tokens as in
transformers. Video frames are images at the frame budget, each after its "mm:ss" time, as the
processor lays them out. Audio goes as 16 kHz samples, as the processor takes it.
"""

from __future__ import annotations

import ctypes
import re
from typing import Any

import numpy as np

from .detail import resized
from .llama_model import LlamaModel
from .messages import GenerationOptions, Message
from .prompts import normalise_audio, with_tool_fields
from .tool_calls import template_tools

MARKER = "\x00{}\x00"  # stands for one piece of content while the template is rendered
MARKER_PATTERN = re.compile("\x00(\\d+)\x00")


def _layout(model: LlamaModel, messages: tuple[Message, ...], options: GenerationOptions):
    """The prompt in order: ("text", text, parse control tokens) for the template's text and
    what people wrote, ("image", image, budget), ("audio", 16 kHz samples)."""
    pieces: list[tuple[str, Any]] = []

    def marker(kind: str, value: Any) -> dict[str, str]:
        pieces.append((kind, value))
        return {"type": "text", "text": MARKER.format(len(pieces) - 1)}

    def marked(value: Any) -> Any:
        """A call's arguments with every string a marker: read as plain text, as a message is."""
        if isinstance(value, str):
            return marker("text", value)["text"]
        if isinstance(value, dict):
            return {key: marked(item) for key, item in value.items()}
        if isinstance(value, list):
            return [marked(item) for item in value]
        return value

    rendered = []
    for message in messages:
        content = [marker("image", image) for image in message.images]
        content += [marker("video", clip) for clip in message.video]
        content += [marker("audio", clip) for clip in message.audio]
        if message.text:
            content.append(marker("text", message.text))
        entry = with_tool_fields({"role": message.role, "content": content}, message)
        for call in entry.get("tool_calls", ()):  # the name stays: a tool's, checked
            call["function"]["arguments"] = marked(call["function"]["arguments"])
        rendered.append(entry)
    # A tool's description is free text, a marker; its schema's words the template reads (types
    # it compares), so they stay, as /v1 refuses control tokens in them (openai_wire.tools).
    tools = template_tools(options.offered_tools) or []
    for tool in tools:
        tool["function"]["description"] = marked(tool["function"]["description"])
    text = model.template.render(
        messages=rendered,
        tools=tools or None,
        add_generation_prompt=True,
        enable_thinking=options.thinking,
        bos_token=model.llm.detokenize([model.llm.token_bos()], special=True).decode(),
        eos_token="<eos>",
    )
    layout: list[tuple] = []
    for i, piece in enumerate(MARKER_PATTERN.split(text)):
        if i % 2 == 0:
            layout += [("text", piece, True)] if piece else []
            continue
        kind, value = pieces[int(piece)]
        if kind == "text":
            layout.append(("text", value, False))
        elif kind == "image":
            layout.append(("image", value, options.image_tokens))
        elif kind == "audio":
            layout.append(("audio", normalise_audio(value)))
        else:  # a video: each frame after its time, as Gemma's processor lays them out
            for n, (frame, at) in enumerate(zip(value.frames, value.timestamps_s, strict=True)):
                stamp = f"{' ' if n else ''}{int(at // 60):02d}:{int(at % 60):02d} "
                layout += [("text", stamp, False), ("image", frame, options.video_frame_tokens)]
    return layout


class Prompt:
    """A request as llama.cpp input: mtmd chunks (with a projector), or token ids (text only);
    `tokens` is what it takes of the window."""

    def __init__(
        self, model: LlamaModel, messages: tuple[Message, ...], options: GenerationOptions
    ):
        import llama_cpp.mtmd_cpp as mtmd

        self._mtmd = mtmd
        self.chunks: Any = None
        self.ids: list[int] = []
        layout = _layout(model, messages, options)
        if model.mtmd is None:
            if any(kind != "text" for kind, *_ in layout):
                raise ValueError("this model file has no projector (mmproj), so it reads text only")
            for _, text, special in layout:
                self.ids += model.llm.tokenize(text.encode(), add_bos=False, special=special)
            self.tokens = len(self.ids)
            return
        keep: list[Any] = []  # the texts and bitmaps, alive until tokenised
        parts = [self._part(item, keep) for item in layout]
        pointers = (ctypes.POINTER(mtmd.mtmd_input_part) * len(parts))(
            *[ctypes.pointer(part) for part in parts]
        )
        self.chunks = mtmd.mtmd_input_chunks_init()
        failed = mtmd.mtmd_tokenize_from_parts(model.mtmd, self.chunks, pointers, len(parts), False)
        for item in keep:
            if not isinstance(item, tuple):
                mtmd.mtmd_bitmap_free(item)
        if failed:
            self.close()
            raise ValueError(f"llama.cpp could not read it (mtmd error {failed})")
        self.tokens = int(mtmd.mtmd_helper_get_n_tokens(self.chunks))

    def _part(self, item: tuple, keep: list[Any]) -> Any:
        mtmd = self._mtmd
        part = mtmd.mtmd_input_part()
        if item[0] == "text":
            raw = item[1].encode()
            text = mtmd.mtmd_input_text()
            text.text, text.text_len, text.add_special, text.parse_special = (
                raw,
                len(raw),
                False,
                item[2],
            )
            keep.append((raw, text))
            part.text = ctypes.pointer(text)
            return part
        if item[0] == "image":
            rgb = item[1].convert("RGB")
            rgb = rgb.resize(resized(*rgb.size, item[2]), resample=3)  # bicubic, as the processor
            pixels = np.ascontiguousarray(np.asarray(rgb, dtype=np.uint8))
            buffer = (ctypes.c_uint8 * pixels.size).from_buffer_copy(pixels.tobytes())
            bitmap = mtmd.mtmd_bitmap_init(rgb.width, rgb.height, buffer)
        else:
            data = np.ascontiguousarray(item[1], dtype=np.float32)
            buffer = (ctypes.c_float * data.size).from_buffer_copy(data.tobytes())
            bitmap = mtmd.mtmd_bitmap_init_from_audio(data.size, buffer)
        if not bitmap:
            raise ValueError("llama.cpp could not take an image or a clip")
        keep.append(bitmap)
        part.bitmap = bitmap
        return part

    def evaluate(self, model: LlamaModel, cancelled: Any) -> bool:
        """Read the prompt into the model's cache; False if cancelled between chunks."""
        from llama_cpp import llama_cpp as lib

        mtmd, llm = self._mtmd, model.llm
        llm.reset()
        llm._ctx.kv_cache_clear()
        if self.chunks is None:
            return _read(llm, self.ids, cancelled)
        for i in range(mtmd.mtmd_input_chunks_size(self.chunks)):
            if cancelled():
                return False
            chunk = mtmd.mtmd_input_chunks_get(self.chunks, i)
            if mtmd.mtmd_input_chunk_get_type(chunk) == mtmd.MTMD_INPUT_CHUNK_TYPE_TEXT:
                count = ctypes.c_size_t()
                ids = mtmd.mtmd_input_chunk_get_tokens_text(chunk, ctypes.byref(count))
                if not _read(llm, [ids[j] for j in range(count.value)], cancelled):
                    return False
                continue
            after = lib.llama_pos(0)
            failed = mtmd.mtmd_helper_eval_chunk_single(
                model.mtmd,
                llm._ctx.ctx,
                chunk,
                lib.llama_pos(llm.n_tokens),
                lib.llama_seq_id(0),
                llm.n_batch,
                False,
                ctypes.byref(after),
            )
            if failed:
                raise RuntimeError(f"llama.cpp could not read an image or a clip (error {failed})")
            llm.n_tokens = after.value
        return True

    def close(self) -> None:
        if self.chunks:
            self._mtmd.mtmd_input_chunks_free(self.chunks)
            self.chunks = None


def _read(llm: Any, ids: list[int], cancelled: Any) -> bool:
    """Evaluate text tokens a batch at a time, so that Stop is heard between batches."""
    for start in range(0, len(ids), llm.n_batch):
        if cancelled():
            return False
        llm.eval(ids[start : start + llm.n_batch])
    return True
