"""What the page says about the model: the banner at the top and the status line."""

from __future__ import annotations

from typing import Any

from model import DEMO_FALLBACK_NOTE, EngineStatus, Timing

from ..config import AppConfig

DEMO_NOTE = "Demo model: random weights, so replies are noise. It shows the plumbing works."


def status_text(status: EngineStatus, last: Timing | None) -> str:
    """One line about the model, and the last reply's speed."""
    if status.load_state == "loading":
        return f"Loading the model: {status.progress}"
    if status.load_state == "error" and status.kind == "remote":
        return status.error or ""
    if status.load_state == "error" or status.info is None:
        return f"No model loaded: {status.error}"
    info = status.info
    if info.engine == "remote":
        line = f"{info.name} on the model server at {info.url}"
    else:
        kind = "demo" if info.demo else "real"
        line = f"{info.name} ({kind}) on {info.device}, {info.quantization}"
        if info.backend_reason:
            line += f" · {info.backend_reason}"
    if last is not None and last.tokens:
        line += (
            f" · last reply: first token {last.time_to_first_token_s:.2f} s, "
            f"{last.tokens_per_s:.1f} tokens/s"
        )
    if status.notice:
        line += f" · {status.notice}"
    return line


def banner_text(status: EngineStatus) -> str:
    """What the top of the page must say, if anything: loading, fallback or failure."""
    if status.load_state == "loading":
        return f"⏳ The model is loading: {status.progress}. You can type your message meanwhile."
    if status.load_state == "error" and status.kind == "remote":
        return f"⚠️ {status.error}"
    if status.load_state == "error":
        return f"⚠️ No model could be loaded. {status.error}"
    if status.fallback_reason:
        return f"⚠️ Gemma 4 12B could not be loaded. {status.fallback_reason} {DEMO_FALLBACK_NOTE}"
    if status.info is not None and status.info.demo:
        return "ℹ️ " + DEMO_NOTE
    return ""


def health_document(status: EngineStatus, config: AppConfig) -> dict[str, Any]:
    """GET /health: the model, the engine (its kind, state and queue; a server's URL without
    credentials; in-process, the library that runs the model and why), the speech model.
    Never the engine's API key."""
    info = status.info
    engine: dict[str, Any] = {
        "kind": "remote" if config.remote else "in-process",
        "state": "busy" if status.busy else "idle",
        "queue": status.queued,
    }
    if config.remote is not None:
        engine["url"] = config.remote.public_url
        model = info.name if info else config.remote.model or None
        demo, device, quantization = False, "remote", None
    else:
        model = info.name if info else config.model.model_id
        demo = info.demo if info else config.model.demo
        device = info.device if info else config.model.device
        quantization = info.quantization if info else config.model.quant
        if info is not None:
            engine["backend"], engine["why"] = info.backend, info.backend_reason
        else:
            engine["backend"] = config.model.backend  # "auto" until the worker has chosen
    health: dict[str, Any] = {
        "status": {"ready": "ok", "loading": "loading", "error": "error"}[status.load_state],
        "model": model,
        "demo": demo,
        "device": device,
        "quantization": quantization,
        "engine": engine,
        "asr_model": config.asr.model,
    }
    if status.error:
        health["error"] = status.error
    if status.fallback_reason:
        health["fallback_reason"] = status.fallback_reason
    return health
