"""The functions page events and API endpoints call."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import gradio as gr

from model import (
    DEMO_FALLBACK_NOTE,
    ChatRequest,
    Engine,
    EngineError,
    EngineStatus,
    Finished,
    GenerationOptions,
    Message,
    TextChunk,
    Timing,
    split_at_pauses,
)

from .config import AppConfig
from .media import MediaError, file_path, is_audio_file, load_attachments
from .voice import TRANSCRIBE, Voice

DEMO_NOTE = "Demo model: random weights, so replies are noise. It shows the plumbing works."


@dataclass
class Reply:
    """A reply as it grows."""

    answer: str = ""
    thinking: str = ""
    timing: Timing | None = None
    error: str | None = None
    cancelled: bool = False


class ChatHandlers:
    """Turns page and API input into engine requests and streams replies back."""

    def __init__(self, engine: Engine, voice: Voice, config: AppConfig):
        self.engine = engine
        self.voice = voice
        self.config = config
        self.last_timing: Timing | None = None  # the app's most recent reply, for the status line

    def user_message(self, value: dict[str, Any]) -> Message:
        """A MultimodalTextbox value {"text", "files"} as a model Message (MediaError if bad)."""
        paths = [file_path(item) for item in value.get("files") or []]
        images, audio = load_attachments(paths, self.config.limits.max_files_per_message)
        # The model takes at most 30 s per clip: longer recordings become several clips.
        clips = tuple(piece for clip in audio for piece in split_at_pauses(clip))
        return Message("user", (value.get("text") or "").strip(), tuple(images), clips)

    def respond(
        self, value: dict, turns: list[Message], shown: list[dict], route: str, *settings: Any
    ) -> Iterator[tuple]:
        """The page's send: streams (chat shown, input box, model history, status line).

        With the Transcribe voice route, audio files are first turned into text in the box for
        the person to check; with the other, they go to the model with captions of what was heard.
        """
        audio_paths = [
            path for path in map(file_path, value.get("files") or []) if is_audio_file(path)
        ]
        if route == TRANSCRIBE and audio_paths:
            yield shown, self.voice.into_box(value, audio_paths), turns, gr.skip()
            return
        try:
            latest = self.user_message(value)
        except MediaError as exc:
            gr.Warning(str(exc))
            yield shown, value, turns, gr.skip()
            return
        if not (latest.text or latest.images or latest.audio):
            yield shown, value, turns, gr.skip()
            return
        system_prompt, options = generation_options(*settings)
        captions = [self.voice.caption(path) for path in audio_paths]
        shown = [*shown, *shown_user_message(value, captions)]
        reply = Reply()
        for reply in self.stream(conversation(system_prompt, turns, latest), options):
            yield [*shown, *shown_reply(reply)], None, turns, gr.skip()
        if reply.error:  # give back what the person wrote, to send again
            yield [*shown, *shown_reply(reply)], value, turns, gr.skip()
            return
        turns = [*turns, latest, Message("assistant", reply.answer)]
        status = status_text(self.engine.status(), self.last_timing)
        yield [*shown, *shown_reply(reply)], None, turns, status

    def chat(
        self,
        message: dict,
        system_prompt: str,
        temperature: float,
        top_p: float,
        top_k: int,
        max_new_tokens: int,
        thinking: bool,
        image_tokens: int,
    ) -> Iterator[str]:
        """Answer one message (text, images, audio files); streams the reply as it grows."""
        try:
            latest = self.user_message(message)
        except MediaError as exc:
            raise gr.Error(str(exc)) from None
        settings = (temperature, top_p, top_k, max_new_tokens, thinking, image_tokens)
        system_prompt, options = generation_options(system_prompt, *settings)
        for reply in self.stream(conversation(system_prompt, [], latest), options):
            if reply.error:
                raise gr.Error(reply.error)
            yield reply.answer

    def refresh(self) -> tuple[str, str]:
        """The banner and status line, as they stand now."""
        status = self.engine.status()
        return banner_text(status), status_text(status, self.last_timing)

    def health(self) -> dict[str, Any]:
        """The /health document (see the README)."""
        status = self.engine.status()
        info = status.info
        model_config = self.config.model
        health: dict[str, Any] = {
            "status": {"ready": "ok", "loading": "loading", "error": "error"}[status.load_state],
            "model": info.name if info else model_config.model_id,
            "demo": info.demo if info else model_config.demo,
            "device": info.device if info else model_config.device,
            "quantization": info.quantization if info else model_config.quant,
            "engine": {"state": "busy" if status.busy else "idle", "queue": status.queued},
            "asr_model": self.config.asr.model,
        }
        if status.error:
            health["error"] = status.error
        if status.fallback_reason:
            health["fallback_reason"] = status.fallback_reason
        return health

    def stream(self, messages: list[Message], options: GenerationOptions) -> Iterator[Reply]:
        """Yields the growing reply; cancels the request if the consumer stops early."""
        reply = Reply()
        reply_stream = self.engine.submit(ChatRequest(tuple(messages), options))
        try:
            for event in reply_stream:
                if isinstance(event, TextChunk):
                    if event.thinking:
                        reply.thinking += event.text
                    else:
                        reply.answer += event.text
                elif isinstance(event, Finished):
                    reply.timing, reply.cancelled = event.timing, event.cancelled
                    self.last_timing = event.timing
                elif isinstance(event, EngineError):
                    reply.error = event.message
                yield reply
        finally:
            # Gradio's Stop closes this generator: stop the model too, not just the page.
            reply_stream.cancel()


def generation_options(
    system_prompt: str,
    temperature: float,
    top_p: float,
    top_k: int,
    max_new_tokens: int,
    thinking: bool,
    image_tokens: int,
) -> tuple[str, GenerationOptions]:
    """The settings panel's values (in its order) as a system prompt and GenerationOptions."""
    return system_prompt or "", GenerationOptions(
        temperature=float(temperature),
        top_p=float(top_p),
        top_k=int(top_k),
        max_new_tokens=int(max_new_tokens),
        thinking=bool(thinking),
        image_tokens=int(image_tokens),
    )


def conversation(system_prompt: str, history: list[Message], latest: Message) -> list[Message]:
    """The messages to send: the system prompt (if any), earlier turns, the new message."""
    system = [Message("system", system_prompt.strip())] if system_prompt.strip() else []
    return [*system, *history, latest]


def status_text(status: EngineStatus, last: Timing | None) -> str:
    """One line about the model, and the last reply's speed."""
    if status.load_state == "loading":
        return f"Loading the model: {status.progress}"
    if status.load_state == "error" or status.info is None:
        return f"No model loaded: {status.error}"
    info = status.info
    kind = "demo" if info.demo else "real"
    line = f"{info.name} ({kind}) on {info.device}, {info.quantization}"
    if last is not None and last.tokens:
        line += (
            f" · last reply: first token {last.time_to_first_token_s:.2f} s, "
            f"{last.tokens_per_s:.1f} tokens/s"
        )
    return line


def banner_text(status: EngineStatus) -> str:
    """What the top of the page must say, if anything: loading, fallback or failure."""
    if status.load_state == "loading":
        return f"⏳ The model is loading: {status.progress}. You can type your message meanwhile."
    if status.load_state == "error":
        return f"⚠️ No model could be loaded. {status.error}"
    if status.fallback_reason:
        return f"⚠️ Gemma 4 12B could not be loaded. {status.fallback_reason} {DEMO_FALLBACK_NOTE}"
    if status.info is not None and status.info.demo:
        return "ℹ️ " + DEMO_NOTE
    return ""


def shown_user_message(value: dict, captions: list[str]) -> list[dict]:
    """Chatbot entries for what the person sent: each file, captions of audio, then the text."""
    paths = [file_path(item) for item in value.get("files") or []]
    entries = [{"role": "user", "content": {"path": path}} for path in paths]
    entries += [{"role": "user", "content": caption} for caption in captions]
    text = (value.get("text") or "").strip()
    return entries + ([{"role": "user", "content": text}] if text else [])


def shown_reply(reply: Reply) -> list[dict]:
    """Chatbot entries for a reply: a collapsed Thinking section (if any), then the answer."""
    shown = []
    if reply.thinking:
        shown.append(
            {
                "role": "assistant",
                "content": reply.thinking,
                "metadata": {"title": "Thinking", "status": "done"},
            }
        )
    answer = reply.answer
    if reply.error:
        answer = f"{answer}\n\n⚠️ {reply.error}".strip()
    elif reply.cancelled:
        answer = f"{answer} *(stopped)*".strip()
    shown.append({"role": "assistant", "content": answer or "…"})
    return shown
