"""GET /health: the model, the engine and the speech model, as the README documents them."""

from __future__ import annotations

from typing import Any

from model import EngineStatus

from .config import AppConfig


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
